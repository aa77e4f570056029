//! A background process's recent output: whole lines, bounded by total bytes.

use crate::command::StreamKind;
use crate::lines::Line;
use std::collections::VecDeque;

pub(crate) const LOG_CAP: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub kind: StreamKind,
    pub line: Line,
}

pub(crate) struct LogBuf {
    entries: VecDeque<Entry>,
    bytes: usize,
    cap: usize,
}

impl LogBuf {
    pub(crate) fn new(cap: usize) -> Self {
        Self { entries: VecDeque::new(), bytes: 0, cap }
    }

    pub(crate) fn push(&mut self, entry: Entry) {
        self.bytes += cost(&entry);
        self.entries.push_back(entry);
        while self.bytes > self.cap {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= cost(&old),
                None => break,
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<Entry> {
        self.entries.iter().cloned().collect()
    }

    /// The last `n` lines (all when `None`) as the process wrote them.
    pub(crate) fn tail(&self, n: Option<usize>) -> String {
        let skip = n.map_or(0, |n| self.entries.len().saturating_sub(n));
        let mut out = String::new();
        for e in self.entries.iter().skip(skip) {
            out.push_str(&e.line.text);
            if e.line.newline {
                out.push('\n');
            }
        }
        out
    }
}

fn cost(e: &Entry) -> usize {
    e.line.text.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Entry {
        Entry { kind: StreamKind::Stdout, line: Line { text: text.into(), newline: true } }
    }

    #[test]
    fn evicts_oldest_lines_past_the_cap_and_tails() {
        let mut b = LogBuf::new(8);
        for t in ["aaa", "bbb", "ccc"] {
            b.push(entry(t));
        }
        assert_eq!(b.tail(None), "bbb\nccc\n");
        assert_eq!(b.tail(Some(1)), "ccc\n");
        assert_eq!(b.tail(Some(10)), "bbb\nccc\n");
    }
}
