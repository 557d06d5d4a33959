//! An inactivity limit for data connections: a client that stops sending
//! mid-upload, or stops reading mid-download, must not hold its session (and
//! its place in the session limits) forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error of an operation that made no progress for the whole limit.
pub fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no data moved for {} s", limit.as_secs()),
    )
}

/// A stream whose reads and writes fail with [`io::ErrorKind::TimedOut`]
/// once none of them has made progress for `limit`. Any progress, however
/// small, restarts the clock, so slow but live clients are never cut.
pub struct IdleTimeout<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        IdleTimeout {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// What to return for an operation of the inner stream: its result when
    /// ready (which counts as progress), otherwise pending until the deadline.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.deadline.as_mut().reset(Instant::now() + self.limit);
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out(self.limit))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_stalled_read_times_out_and_progress_restarts_the_clock() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = IdleTimeout::new(server, Duration::from_millis(300));
        let writer = tokio::spawn(async move {
            // Each byte comes within the limit; the three together do not.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                client.write_all(b"x").await.unwrap();
            }
            client // kept open: the stream stalls, it does not end
        });
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);
        }
        let _client = writer.await.unwrap();
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_write_nobody_reads_times_out() {
        let (_client, server) = tokio::io::duplex(64);
        let mut guarded = IdleTimeout::new(server, Duration::from_millis(200));
        let err = guarded.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
