//! The operations HTTP listener: `/healthz` (the process serves), `/readyz`
//! (it should get traffic) and `/metrics` (Prometheus text format).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::server::Shared;

/// Connections the ops listener holds at once; more are closed as they
/// arrive. Probes and scrapes need a handful, and idle connections by the
/// thousand would take the file descriptors FTP sessions need.
const MAX_CONNECTIONS: usize = 64;

/// How long one ops connection may stay open, whatever it does: a client
/// that trickles its request or holds the connection idle gives its place
/// up then. Probes and scrapes take milliseconds; keep-alive clients
/// reconnect.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(5);

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let listener = Limited {
        listener,
        places: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// The ops listener, holding at most [`MAX_CONNECTIONS`] connections, each
/// for at most [`CONNECTION_LIFETIME`].
struct Limited {
    listener: TcpListener,
    places: Arc<Semaphore>,
}

impl axum::serve::Listener for Limited {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: wait, as for FTP.
                    tracing::warn!(error = %e, "ops accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the limit, the connection is dropped: closed at once.
            if let Ok(place) = self.places.clone().try_acquire_owned() {
                let deadline = Box::pin(tokio::time::sleep(CONNECTION_LIFETIME));
                let bounded = Bounded {
                    stream,
                    deadline,
                    _place: place,
                };
                return (bounded, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An ops connection whose reads and writes fail once its lifetime is
/// over; it gives its place back when dropped.
struct Bounded {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _place: OwnedSemaphorePermit,
}

impl Bounded {
    /// Whether the lifetime is over; otherwise `cx` is woken when it is.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn lifetime_over<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "ops connection open too long",
    )))
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return lifetime_over();
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return lifetime_over();
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    crate::server::bind_listener(addr)
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.not_ready_reason().await {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared
        .metrics
        .sessions_open
        .set(shared.sessions_open() as i64);
    shared
        .metrics
        .passive_waiting
        .set(shared.passive.waiting() as i64);
    shared
        .metrics
        .upload_buffer_bytes
        .set(crate::disk_writer::upload_buffer_bytes() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}
