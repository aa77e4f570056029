//! Splits a byte stream into lines for SSE frames and process logs.

/// Longer lines are cut so one runaway line cannot grow a buffer without bound.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub text: String,
    /// False for a cut-off piece or the final partial line.
    pub newline: bool,
}

#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let (body, newline) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            self.pending.extend_from_slice(body);
            if newline {
                out.push(self.take(true));
            } else {
                while self.pending.len() >= MAX_LINE {
                    let rest = self.pending.split_off(MAX_LINE);
                    let cut = std::mem::replace(&mut self.pending, rest);
                    out.push(Line {
                        text: String::from_utf8_lossy(&cut).into_owned(),
                        newline: false,
                    });
                }
            }
        }
        out
    }

    /// The unterminated tail, if any, once the stream has ended.
    pub(crate) fn finish(&mut self) -> Option<Line> {
        (!self.pending.is_empty()).then(|| self.take(false))
    }

    fn take(&mut self, newline: bool) -> Line {
        let mut bytes = std::mem::take(&mut self.pending);
        if bytes.last() == Some(&b'\r') && newline {
            bytes.pop();
        }
        Line { text: String::from_utf8_lossy(&bytes).into_owned(), newline }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: Vec<Line>) -> Vec<String> {
        lines.into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn splits_across_chunks_and_keeps_the_tail() {
        let mut s = LineSplitter::default();
        assert_eq!(texts(s.push(b"a\nb")), vec!["a"]);
        assert_eq!(texts(s.push(b"c\r\nd\n\ne")), vec!["bc", "d", ""]);
        assert_eq!(s.finish().map(|l| l.text), Some("e".to_string()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn cuts_runaway_lines() {
        let mut s = LineSplitter::default();
        let big = vec![b'x'; MAX_LINE * 2 + 5];
        let lines = s.push(&big);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| !l.newline && l.text.len() == MAX_LINE));
        assert_eq!(s.finish().map(|l| l.text.len()), Some(5));
    }
}
