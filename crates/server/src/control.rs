//! Framing of the control connection: CRLF-terminated command lines in,
//! replies out. Reading is bounded and cancel-safe: all partial state lives in
//! `ControlConn`, so a `select!` may drop `next_line` at any await point (and
//! then reply from its handler, since the dropped read no longer borrows).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::reply::Reply;

/// Longest command line accepted, terminator included. Paths are the longest
/// arguments; 4 KiB covers PATH_MAX.
pub const MAX_LINE: usize = 4096;

/// What the reader produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete command line without its terminator or Telnet sequences.
    Command(String),
    /// A line longer than [`MAX_LINE`]; its bytes were discarded.
    TooLong,
    /// A line that is not valid UTF-8.
    NotUtf8,
    /// The client closed the connection.
    Closed,
}

pub struct ControlConn<S> {
    inner: S,
    buf: Vec<u8>,
    /// Set while discarding the rest of an over-long line.
    discarding: bool,
}

impl<S> ControlConn<S> {
    pub fn new(inner: S) -> Self {
        ControlConn {
            inner,
            buf: Vec::with_capacity(256),
            discarding: false,
        }
    }

    /// True when the client sent bytes not yet read as a command (it must
    /// not, right before a TLS handshake).
    pub fn has_buffered_input(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The underlying stream, to upgrade it in place.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> ControlConn<S> {
    /// Reads the next line. Cancel-safe.
    pub async fn next_line(&mut self) -> std::io::Result<Line> {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                if std::mem::take(&mut self.discarding) {
                    return Ok(Line::TooLong);
                }
                return Ok(decode(&raw));
            }
            if self.buf.len() >= MAX_LINE {
                // Keep memory bounded: drop what we have, remember to drop
                // the rest of this line too.
                self.buf.clear();
                self.discarding = true;
            }
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                return Ok(Line::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Telnet command bytes (RFC 854).
const IAC: u8 = 0xFF;
const WILL: u8 = 251;
const DONT: u8 = 254;
const SB: u8 = 250;
const SE: u8 = 240;

/// Strips the terminator and Telnet IAC sequences (clients send ABOR as
/// `IAC IP IAC DM ABOR`), then checks UTF-8.
fn decode(raw: &[u8]) -> Line {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        if b == IAC {
            match bytes.next() {
                // IAC IAC is a literal 0xFF.
                Some(IAC) => out.push(IAC),
                // Option negotiation (WILL, WONT, DO, DONT) names an
                // option in the next byte; it is refused by ignoring it.
                Some(WILL..=DONT) => {
                    bytes.next();
                }
                // A subnegotiation runs to IAC SE.
                Some(SB) => {
                    let mut previous = 0;
                    for b in bytes.by_ref() {
                        if previous == IAC && b == SE {
                            break;
                        }
                        previous = b;
                    }
                }
                // Any other command (IP, DM, ...) is one byte.
                _ => {}
            }
            continue;
        }
        out.push(b);
    }
    while matches!(out.last(), Some(b'\n' | b'\r')) {
        out.pop();
    }
    match String::from_utf8(out) {
        Ok(s) => Line::Command(s),
        Err(_) => Line::NotUtf8,
    }
}

impl<S: AsyncWrite + Unpin> ControlConn<S> {
    /// Writes one reply and flushes it.
    pub async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        self.inner.write_all(reply.to_string().as_bytes()).await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<Line> {
        let mut r = ControlConn::new(input);
        let mut out = vec![];
        loop {
            let l = r.next_line().await.unwrap();
            let done = l == Line::Closed;
            out.push(l);
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_strips_telnet() {
        let got = lines(b"USER a\r\n\xff\xf4\xff\xf2ABOR\r\nNOOP\n").await;
        assert_eq!(
            got,
            vec![
                Line::Command("USER a".into()),
                Line::Command("ABOR".into()),
                Line::Command("NOOP".into()),
                Line::Closed
            ]
        );
    }

    /// Option negotiation takes three bytes and a subnegotiation runs to
    /// IAC SE; none of it is left in the command. IAC IAC is a data 0xFF.
    #[tokio::test]
    async fn telnet_negotiation_is_dropped_whole() {
        let got = lines(b"\xff\xfb\x01NOOP\r\n\xff\xfd\x03\xff\xfe\x18PWD\r\n\xff\xfa\x18\x00xterm\xff\xf0SYST\r\n").await;
        assert_eq!(
            got,
            vec![
                Line::Command("NOOP".into()),
                Line::Command("PWD".into()),
                Line::Command("SYST".into()),
                Line::Closed
            ]
        );
        assert_eq!(
            decode(b"MKD a\xff\xffb\r\n"),
            Line::NotUtf8,
            "a literal 0xFF"
        );
    }

    #[tokio::test]
    async fn over_long_line_is_reported_once_and_reading_goes_on() {
        let mut input = vec![b'A'; MAX_LINE * 3];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let got = lines(&input).await;
        assert_eq!(
            got,
            vec![Line::TooLong, Line::Command("NOOP".into()), Line::Closed]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_flagged() {
        let got = lines(b"CWD \xc3\x28\r\n").await;
        assert_eq!(got, vec![Line::NotUtf8, Line::Closed]);
    }
}
