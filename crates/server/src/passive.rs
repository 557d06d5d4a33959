//! The passive-port pool.
//!
//! Every port of the declared range is bound once, at startup, and stays
//! bound: no port outside the range is ever used, and none is re-bound per
//! PASV (which is what makes small ranges run out elsewhere). A PASV
//! *reserves* a port for its session; when a data connection arrives on a
//! port it is handed to the session that reserved that port for the
//! connecting client's IP. Sessions from different client IPs therefore share
//! ports, and a 10-port range serves hundreds of concurrent clients. Only a
//! client IP holding a reservation on every port at once gets a 425.
//!
//! With `allow-foreign-data-source` (load balancers that SNAT) the source IP
//! says nothing about the session, so a port is reserved by one session at a
//! time.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::config::PortRange;

/// One session waiting for its data connection on a port.
struct Waiter {
    id: u64,
    client: IpAddr,
    deliver: oneshot::Sender<TcpStream>,
}

pub struct PassivePool {
    ports: Vec<u16>,
    waiters: Mutex<HashMap<u16, Vec<Waiter>>>,
    allow_foreign: bool,
    next_id: AtomicU64,
    /// Where the next reservation starts looking, so load spreads over ports.
    cursor: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("all passive ports are waiting for connections from this client")]
pub struct PoolExhausted;

/// A port reserved for one session. Dropping it cancels the reservation.
pub struct Reservation {
    pool: Arc<PassivePool>,
    pub port: u16,
    id: u64,
    incoming: oneshot::Receiver<TcpStream>,
}

impl PassivePool {
    /// Binds every port of `range` on `ip` and starts accepting.
    pub async fn bind(
        ip: IpAddr,
        range: PortRange,
        allow_foreign: bool,
    ) -> io::Result<Arc<PassivePool>> {
        let mut listeners = Vec::new();
        for port in range.ports() {
            let listener =
                crate::server::bind_listener(SocketAddr::new(ip, port)).map_err(|e| {
                    io::Error::new(e.kind(), format!("binding passive port {ip}:{port}: {e}"))
                })?;
            listeners.push((port, listener));
        }
        let pool = Arc::new(PassivePool {
            ports: range.ports().collect(),
            waiters: Mutex::default(),
            allow_foreign,
            next_id: AtomicU64::new(1),
            cursor: AtomicUsize::new(0),
        });
        for (port, listener) in listeners {
            tokio::spawn(accept_loop(Arc::downgrade(&pool), port, listener));
        }
        Ok(pool)
    }

    /// Reserves a port for a session whose client is `client`.
    pub fn reserve(self: &Arc<Self>, client: IpAddr) -> Result<Reservation, PoolExhausted> {
        let client = client.to_canonical();
        let mut waiters = self.waiters.lock().unwrap();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let n = self.ports.len();
        let free = (0..n).map(|i| self.ports[(start + i) % n]).find(|port| {
            let list = waiters.get_mut(port).map(|l| {
                l.retain(|w| !w.deliver.is_closed());
                &*l
            });
            match list {
                None => true,
                Some(l) if self.allow_foreign => l.is_empty(),
                Some(l) => l.iter().all(|w| w.client != client),
            }
        });
        let port = free.ok_or(PoolExhausted)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (deliver, incoming) = oneshot::channel();
        waiters.entry(port).or_default().push(Waiter {
            id,
            client,
            deliver,
        });
        Ok(Reservation {
            pool: self.clone(),
            port,
            id,
            incoming,
        })
    }

    /// Sessions currently waiting for a data connection.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().unwrap().values().map(Vec::len).sum()
    }

    /// Hands an accepted connection to the session waiting for it.
    fn dispatch(&self, port: u16, mut stream: TcpStream, peer: IpAddr) {
        let peer = peer.to_canonical();
        let mut waiters = self.waiters.lock().unwrap();
        let Some(list) = waiters.get_mut(&port) else {
            return;
        };
        while let Some(i) = list
            .iter()
            .position(|w| self.allow_foreign || w.client == peer)
        {
            let waiter = list.remove(i);
            match waiter.deliver.send(stream) {
                Ok(()) => return,
                Err(back) => stream = back, // that session has gone; try the next
            }
        }
        tracing::debug!(port, %peer, "refused a data connection no session was waiting for");
    }

    fn cancel(&self, port: u16, id: u64) {
        if let Some(list) = self.waiters.lock().unwrap().get_mut(&port) {
            list.retain(|w| w.id != id);
        }
    }
}

impl Reservation {
    /// Waits for the client's data connection.
    pub async fn accept(mut self) -> Option<TcpStream> {
        (&mut self.incoming).await.ok()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.cancel(self.port, self.id);
    }
}

async fn accept_loop(pool: std::sync::Weak<PassivePool>, port: u16, listener: TcpListener) {
    loop {
        let accepted = listener.accept().await;
        let Some(pool) = pool.upgrade() else { return };
        match accepted {
            Ok((stream, peer)) => pool.dispatch(port, stream, peer.ip()),
            Err(e) => {
                // Out of file descriptors and similar: back off briefly.
                tracing::warn!(port, error = %e, "accept failed on passive port");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    async fn pool(ports: u16, allow_foreign: bool) -> Arc<PassivePool> {
        for _ in 0..50 {
            let base = 20000 + rand::random::<u16>() % 30000;
            let range = PortRange {
                min: base,
                max: base + ports - 1,
            };
            if let Ok(p) = PassivePool::bind(Ipv4Addr::LOCALHOST.into(), range, allow_foreign).await
            {
                return p;
            }
        }
        panic!("no free port range");
    }

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(127, 0, 0, last).into()
    }

    #[tokio::test]
    async fn one_client_ip_exhausts_only_its_own_slots() {
        let pool = pool(2, false).await;
        let a1 = pool.reserve(ip(1)).unwrap();
        let a2 = pool.reserve(ip(1)).unwrap();
        assert_ne!(a1.port, a2.port);
        assert!(
            pool.reserve(ip(1)).is_err(),
            "third concurrent reservation from one IP"
        );
        // Another client IP shares both ports.
        let b1 = pool.reserve(ip(2)).unwrap();
        let b2 = pool.reserve(ip(2)).unwrap();
        assert_eq!(pool.waiting(), 4);
        drop((a1, b1, b2));
        assert_eq!(pool.waiting(), 1);
        assert!(
            pool.reserve(ip(1)).is_ok(),
            "a dropped reservation frees its slot"
        );
    }

    #[tokio::test]
    async fn connections_reach_the_session_of_their_source_ip() {
        let pool = pool(1, false).await;
        let from_2 = pool.reserve(ip(2)).unwrap();
        let from_3 = pool.reserve(ip(3)).unwrap();
        let port = from_2.port;
        let connect = |src: u8| async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip(src), 0)).unwrap();
            sock.connect(SocketAddr::new(ip(1), port)).await.unwrap()
        };
        let _c3 = connect(3).await;
        let _c2 = connect(2).await;
        let s3 = from_3.accept().await.unwrap();
        let s2 = from_2.accept().await.unwrap();
        assert_eq!(s3.peer_addr().unwrap().ip(), ip(3));
        assert_eq!(s2.peer_addr().unwrap().ip(), ip(2));
    }

    #[tokio::test]
    async fn foreign_sources_are_refused_unless_allowed() {
        let strict = pool(1, false).await;
        let r = strict.reserve(ip(2)).unwrap();
        let port = r.port;
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip(9), 0)).unwrap();
        let _c = sock.connect(SocketAddr::new(ip(1), port)).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_millis(300), r.accept()).await;
        assert!(
            got.is_err(),
            "a connection from another IP must not be handed over"
        );

        let lax = pool(1, true).await;
        let r = lax.reserve(ip(2)).unwrap();
        assert!(
            lax.reserve(ip(3)).is_err(),
            "with foreign sources allowed a port serves one session"
        );
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip(9), 0)).unwrap();
        let _c = sock.connect(SocketAddr::new(ip(1), r.port)).await.unwrap();
        assert!(r.accept().await.is_some());
    }
}
