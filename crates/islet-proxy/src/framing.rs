//! Refusing ambiguous HTTP/1 framing (request smuggling).
//!
//! hyper resolves `Content-Length` with `Transfer-Encoding` the RFC's way (chunked wins, the
//! connection closes) and merges equal duplicate `Content-Length`s, so the handler never sees
//! the ambiguity. The edge refuses such requests outright instead, so this wrapper follows the
//! request stream's framing itself: it parses each request head as it is read, marks the
//! connection when a head carries both headers or two lengths, and skips bodies by their
//! declared framing to find the next head. HTTP/2 is passed through (its framing is binary).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest request head followed (and accepted: hyper's buffer is set to the same size).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers(Vec<u8>),
    /// HTTP/2, or something hyper will reject anyway: stop following.
    Passthrough,
}

/// Follows request framing over the bytes of one connection.
#[derive(Debug)]
pub(crate) struct Tracker {
    state: State,
    ambiguous: Arc<AtomicBool>,
}

impl Tracker {
    pub(crate) fn new(ambiguous: Arc<AtomicBool>) -> Self {
        Self { state: State::Head(Vec::new()), ambiguous }
    }

    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match &mut self.state {
                State::Passthrough => return,
                State::Head(buf) => {
                    let room = MAX_HEAD.saturating_sub(buf.len()).min(data.len());
                    let before = buf.len();
                    buf.extend_from_slice(&data[..room]);
                    match self.parse_head() {
                        Some(head_len) => head_len - before,
                        None if room == 0 => {
                            // A head this large is refused by hyper (its buffer is this size
                            // too); marking it ambiguous keeps that true should hyper change.
                            self.ambiguous.store(true, Ordering::SeqCst);
                            self.state = State::Passthrough;
                            return;
                        }
                        None => room,
                    }
                }
                State::Body(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                    n as usize
                }
                State::ChunkSize(line) => match data.iter().position(|b| *b == b'\n') {
                    Some(at) => {
                        line.extend_from_slice(&data[..at]);
                        let text = String::from_utf8_lossy(line);
                        let hex = text.split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(hex, 16) {
                            Ok(0) => State::Trailers(Vec::new()),
                            Ok(size) => State::ChunkData(size),
                            Err(_) => State::Passthrough,
                        };
                        at + 1
                    }
                    None => {
                        line.extend_from_slice(data);
                        if line.len() > 1024 {
                            self.state = State::Passthrough;
                        }
                        data.len()
                    }
                },
                State::ChunkData(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                    n as usize
                }
                State::ChunkEnd(left) => {
                    let n = usize::from(*left).min(data.len());
                    *left -= n as u8;
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                    n
                }
                State::Trailers(buf) => match data.iter().position(|b| *b == b'\n') {
                    Some(at) => {
                        buf.extend_from_slice(&data[..at]);
                        let blank = buf.iter().all(|b| *b == b'\r');
                        self.state = if blank {
                            State::Head(Vec::new())
                        } else {
                            State::Trailers(Vec::new())
                        };
                        at + 1
                    }
                    None => {
                        buf.extend_from_slice(data);
                        data.len()
                    }
                },
            };
            data = &data[used..];
        }
    }

    /// Parse the buffered head; on a complete one, set the next state and return the head's
    /// length within the buffer.
    fn parse_head(&mut self) -> Option<usize> {
        let buf = match std::mem::replace(&mut self.state, State::Passthrough) {
            State::Head(buf) => buf,
            other => {
                self.state = other;
                return None;
            }
        };
        match inspect(&buf) {
            Inspected::Partial => {
                self.state = State::Head(buf);
                None
            }
            // hyper refuses what it cannot parse; nothing more to follow.
            Inspected::Invalid => Some(buf.len()),
            Inspected::Complete { len, ambiguous, next } => {
                if ambiguous {
                    self.ambiguous.store(true, Ordering::SeqCst);
                }
                self.state = next;
                Some(len)
            }
        }
    }
}

enum Inspected {
    Partial,
    Invalid,
    Complete { len: usize, ambiguous: bool, next: State },
}

fn inspect(buf: &[u8]) -> Inspected {
    // Tolerate the blank lines RFC 9112 §2.2 allows between messages.
    let skip = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(&buf[skip..]) {
        Ok(httparse::Status::Complete(n)) => skip + n,
        Ok(httparse::Status::Partial) => return Inspected::Partial,
        Err(_) => return Inspected::Invalid,
    };
    let mut lengths = Vec::new();
    let mut chunked = false;
    let mut transfer_encoding = false;
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(String::from_utf8_lossy(h.value).trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            chunked = String::from_utf8_lossy(h.value)
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let ambiguous = lengths.len() > 1 || (!lengths.is_empty() && transfer_encoding);
    // After an upgrade or CONNECT the bytes are another protocol's, but whether one happens
    // is up to the answer; following on is harmless (after a real switch nothing reaches the
    // handler any more) and keeps a declined upgrade from blinding the guard.
    let next = if transfer_encoding && !chunked {
        State::Passthrough
    } else if chunked {
        State::ChunkSize(Vec::new())
    } else {
        match lengths.first() {
            Some(Some(0)) | None => State::Head(Vec::new()),
            Some(Some(n)) => State::Body(*n),
            Some(None) => State::Passthrough,
        }
    };
    Inspected::Complete { len, ambiguous, next }
}

/// A connection whose reads are followed by a [`Tracker`].
pub(crate) struct Guarded<S> {
    inner: S,
    tracker: Tracker,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, ambiguous: Arc<AtomicBool>) -> Self {
        Self { inner, tracker: Tracker::new(ambiguous) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.tracker.feed(&buf.filled()[before..]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ambiguous(chunks: &[&[u8]]) -> bool {
        let flag = Arc::new(AtomicBool::new(false));
        let mut tracker = Tracker::new(flag.clone());
        for c in chunks {
            tracker.feed(c);
        }
        flag.load(Ordering::SeqCst)
    }

    #[test]
    fn spots_ambiguity_in_any_message_of_a_connection() {
        let clean = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: v\r\n\r\n";
        let te_cl = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let two_cl =
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\nabcd";
        assert!(!ambiguous(&[clean, chunked, clean]));
        assert!(ambiguous(&[te_cl]));
        assert!(ambiguous(&[two_cl]));
        // Found behind other messages, and across arbitrary read boundaries.
        let mut stream = Vec::new();
        stream.extend_from_slice(clean);
        stream.extend_from_slice(chunked);
        stream.extend_from_slice(two_cl);
        let pieces: Vec<&[u8]> = stream.chunks(7).collect();
        assert!(ambiguous(&pieces));
        // A body that looks like a smuggled head is skipped as a body, and the guard still
        // follows the connection afterwards.
        let fake_head = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        let mut body_with_head =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", fake_head.len()).into_bytes();
        body_with_head.extend_from_slice(fake_head);
        assert!(!ambiguous(&[&body_with_head[..]]));
        assert!(ambiguous(&[&body_with_head[..], two_cl]));
        // A declined upgrade does not stop the guard.
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n";
        assert!(ambiguous(&[upgrade, two_cl]));
        // Nor does an oversized head pass unnoticed.
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(ambiguous(&[&huge[..]]));
    }
}
