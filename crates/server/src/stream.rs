//! A TCP connection that may have been upgraded to TLS: the control
//! connection after AUTH TLS (or from the start, for implicit FTPS), and data
//! connections under PROT P.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use rustls::{HandshakeKind, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during [`MaybeTls::upgrade`], and after a failed one.
    Detached,
}

impl MaybeTls {
    /// Accepts a TLS handshake on a fresh connection.
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<MaybeTls> {
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }

    /// Turns a plain connection into TLS in place (AUTH TLS). On failure the
    /// stream is left detached: the session cannot go on.
    pub async fn upgrade(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        match std::mem::replace(self, MaybeTls::Detached) {
            MaybeTls::Plain(tcp) => {
                *self = MaybeTls::accept(tcp, config).await?;
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("the connection is not plain TCP"))
            }
        }
    }

    /// The TCP connection underneath, if not detached.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTls::Plain(tcp) => Some(tcp),
            MaybeTls::Tls(tls) => Some(tls.get_ref().0),
            MaybeTls::Detached => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Whether the TLS handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        match self {
            MaybeTls::Tls(tls) => tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed),
            _ => false,
        }
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during TLS upgrade",
    )
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            // A peer that closes without close_notify (curl after an
            // upload, like many FTP clients) has still sent all its data:
            // treat it as the end of the stream, as vsftpd does by default.
            MaybeTls::Tls(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    /// For TLS this sends close_notify, which clients check to tell a
    /// complete download from a truncated one.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}
