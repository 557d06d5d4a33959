//! The listening side: binding, per-IP and total session limits, and the
//! state every session shares.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::{AddressBook, parse_address_file};
use crate::config::{Config, UnknownAddress};
use crate::filewatch::watch_file;
use crate::lockout::LoginLimiter;
use crate::metrics::Metrics;
use crate::passive::PassivePool;
use crate::session::Session;
use crate::tls::SharedTls;
use crate::users::{SharedUsers, UserDb};

/// State shared by all sessions of one server.
pub struct Shared {
    pub config: Config,
    /// `None` when no users file is configured (anonymous only).
    pub users: Option<SharedUsers>,
    pub addresses: AddressBook,
    pub passive: Arc<PassivePool>,
    /// `None` when TLS is off.
    pub tls: Option<SharedTls>,
    pub metrics: Metrics,
    pub logins: LoginLimiter,
    /// Password verifications allowed at once (one per core).
    pub hash_slots: tokio::sync::Semaphore,
    /// Cancelled on shutdown: idle sessions close, running transfers finish.
    pub draining: CancellationToken,
    /// Cancelled when the grace period is over: transfers are cut too.
    pub stopping: CancellationToken,
    sessions: SessionCounter,
}

impl Shared {
    /// Sessions open now. Counted by each session's place, which is given
    /// back however the session ends, so the figure cannot drift.
    pub fn sessions_open(&self) -> usize {
        self.sessions.open()
    }

    /// Why the server should not get new traffic, if it should not: it is
    /// shutting down, or it would refuse PASV (no advertised address, or
    /// one that does not resolve, under `when-address-unknown = "refuse"`).
    pub async fn not_ready_reason(&self) -> Option<String> {
        if self.draining.is_cancelled() {
            return Some("shutting down".into());
        }
        if self.config.passive.when_address_unknown == UnknownAddress::Refuse {
            let unavailable = self.addresses.unavailable().await;
            return unavailable.map(|why| format!("PASV would be refused: {why}"));
        }
        None
    }
}

pub struct Server {
    listener: TcpListener,
    implicit_tls: Option<TcpListener>,
    ops: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Server {
    /// Validates the config, loads the users file, binds the control port
    /// and every passive port. Errors say which setting is wrong.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Self::bind_with_accounts(config, None).await
    }

    /// Like [`bind`](Server::bind), with a fixed in-memory user database used
    /// when no users file is configured.
    pub async fn bind_with_accounts(
        config: Config,
        fixed_users: Option<UserDb>,
    ) -> anyhow::Result<Server> {
        config.validate()?;
        std::fs::create_dir_all(&config.root)
            .with_context(|| format!("creating root {}", config.root.display()))?;

        let users = match &config.users_file {
            None => fixed_users.map(|db| tokio::sync::watch::channel(Arc::new(db)).1),
            Some(path) => Some(
                watch_file(path, |bytes| {
                    let bytes = bytes.ok_or_else(|| "users file does not exist".to_string())?;
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| "users file is not UTF-8".to_string())?;
                    // What a rewrite in place shows between truncating and
                    // writing; a file meant to hold no account says so in a
                    // comment.
                    if text.trim().is_empty() {
                        return Err(
                            "users file is empty (write `# no accounts` to mean none)".into()
                        );
                    }
                    UserDb::parse(text).map(Arc::new).map_err(|e| e.to_string())
                })
                .map_err(|e| anyhow::anyhow!("users file {}: {e}", path.display()))?,
            ),
        };
        let passive_cfg = &config.passive;
        let address_file =
            match &passive_cfg.advertised_address_file {
                None => None,
                Some(path) => Some(watch_file(path, parse_address_file).map_err(|e| {
                    anyhow::anyhow!("advertised address file {}: {e}", path.display())
                })?),
            };
        let addresses = AddressBook::new(
            passive_cfg.advertised_address.clone(),
            address_file,
            passive_cfg.internal_cidrs.clone(),
            passive_cfg.when_address_unknown,
        );
        let listener = bind_listener(config.listen)
            .with_context(|| format!("binding control port {}", config.listen))?;
        let passive = PassivePool::bind(
            config.listen.ip(),
            passive_cfg.ports,
            passive_cfg.allow_foreign_data_source,
        )
        .await
        .context("binding the passive port range")?;
        let tls = crate::tls::load(&config.tls)?;
        let implicit_tls = match config.tls.implicit_listen {
            Some(addr) => Some(
                bind_listener(addr)
                    .with_context(|| format!("binding implicit FTPS port {addr}"))?,
            ),
            None => None,
        };
        let ops = match config.ops.listen {
            Some(addr) => Some(
                bind_listener(addr).with_context(|| format!("binding the ops listener {addr}"))?,
            ),
            None => None,
        };
        let metrics = Metrics::default();
        metrics
            .passive_ports
            .set(i64::from(passive_cfg.ports.max - passive_cfg.ports.min) + 1);
        let limits = &config.limits;
        let shared = Shared {
            hash_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            logins: LoginLimiter::new(
                limits.max_failed_logins_per_ip,
                Duration::from_secs(limits.lockout_seconds),
            ),
            sessions: SessionCounter::new(limits.max_sessions, limits.max_sessions_per_ip),
            config,
            users,
            addresses,
            passive,
            tls,
            metrics,
            draining: CancellationToken::new(),
            stopping: CancellationToken::new(),
        };
        Ok(Server {
            listener,
            implicit_tls,
            ops,
            shared: Arc::new(shared),
        })
    }

    /// The ops listener's address, when one is configured.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The implicit FTPS listener's address, when one is configured.
    pub fn implicit_tls_addr(&self) -> Option<SocketAddr> {
        self.implicit_tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Accepts sessions until `shutdown` completes, then shuts down
    /// gracefully: no new connections, not ready, idle sessions closed with
    /// 421, running transfers given `shutdown.grace-seconds` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            listener,
            implicit_tls,
            ops,
            shared,
        } = self;
        let stale = shared.config.limits.data_timeout() + Duration::from_secs(60);
        tokio::spawn(crate::leftovers::sweep(shared.config.root.clone(), stale));
        let ops_stop = CancellationToken::new();
        if let Some(ops) = ops {
            tokio::spawn(crate::ops::serve(ops, shared.clone(), ops_stop.clone()));
        }
        let sessions = TaskTracker::new();
        let accept_implicit = async || match &implicit_tls {
            Some(l) => l.accept().await,
            None => std::future::pending().await,
        };
        tokio::pin!(shutdown);
        let mut next_id: u64 = 0;
        loop {
            let (accepted, implicit) = tokio::select! {
                _ = &mut shutdown => break,
                a = listener.accept() => (a, false),
                a = accept_implicit() => (a, true),
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            next_id += 1;
            let span = tracing::info_span!("session", id = next_id, client = %peer, user = tracing::field::Empty);
            sessions.spawn(serve(shared.clone(), stream, peer.ip(), implicit).instrument(span));
        }

        // Closing the listeners refuses new connections at once.
        drop((listener, implicit_tls));
        shared.draining.cancel();
        sessions.close();
        let grace = Duration::from_secs(shared.config.shutdown.grace_seconds);
        tracing::info!(
            sessions = sessions.len(),
            grace_seconds = grace.as_secs(),
            "draining"
        );
        if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
            tracing::warn!(
                sessions = sessions.len(),
                "grace period over, closing remaining sessions"
            );
            shared.stopping.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), sessions.wait()).await;
        }
        ops_stop.cancel();
        tracing::info!("stopped");
        Ok(())
    }
}

async fn serve(shared: Arc<Shared>, mut stream: TcpStream, ip: IpAddr, implicit_tls: bool) {
    let Some(_slot) = shared.sessions.try_enter(ip) else {
        tracing::warn!("session limit reached, refusing");
        if !implicit_tls {
            let _ = stream
                .write_all(b"421 Too many connections, try again later\r\n")
                .await;
        }
        return;
    };
    tracing::info!(implicit_tls, "connected");
    let result = match Session::start(shared.clone(), stream, implicit_tls).await {
        Ok(session) => session.run().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => tracing::info!("closed"),
        Err(e) => tracing::info!(error = %e, "closed with error"),
    }
}

/// Binds a listening TCP socket with SO_REUSEADDR (restarts must not wait
/// for TIME_WAIT) and, for `[::]`, dual-stack.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Counts open sessions, in total and per client IP.
struct SessionCounter {
    max_total: usize,
    max_per_ip: usize,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

/// Holds one session's place; dropping it frees the place.
struct SessionSlot {
    ip: IpAddr,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

impl SessionCounter {
    fn new(max_total: usize, max_per_ip: usize) -> Self {
        SessionCounter {
            max_total,
            max_per_ip,
            open: Arc::default(),
        }
    }

    /// Sessions holding a place now.
    fn open(&self) -> usize {
        self.open.lock().unwrap().0
    }

    fn try_enter(&self, ip: IpAddr) -> Option<SessionSlot> {
        let ip = ip.to_canonical();
        let mut guard = self.open.lock().unwrap();
        let (total, per_ip) = &mut *guard;
        let mine = per_ip.entry(ip).or_default();
        if *total >= self.max_total || *mine >= self.max_per_ip {
            if *mine == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(SessionSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut guard = self.open.lock().unwrap();
        let (total, per_ip) = &mut *guard;
        *total -= 1;
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A session's task is allocated whole when the session starts, so an
    /// idle session holds memory for the largest state it could reach: the
    /// states of transfers and logins (TLS handshakes and all) are boxed
    /// while they run. Inline they made the task 10.7 KiB, and each of 1000
    /// idle sessions took 12.1 KiB of the server's memory (PSS) where boxed
    /// they take 4.1 (`kubeftp-bench ftp --phases idle --kubeftp-only`).
    #[test]
    fn an_idle_sessions_task_stays_small() {
        let size = future_size(serve);
        assert!(size <= 4096, "a session's task takes {size} bytes");
    }

    #[test]
    fn session_counter_enforces_both_limits() {
        let c = SessionCounter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = c.try_enter(a).unwrap();
        let _a2 = c.try_enter(a).unwrap();
        assert!(c.try_enter(a).is_none(), "per-IP limit");
        let _b1 = c.try_enter(b).unwrap();
        assert!(c.try_enter(b).is_none(), "total limit");
        drop(a1);
        assert!(c.try_enter(b).is_some(), "a closed session frees its place");
    }

    /// A session that ends in a panic still gives its place back, so the
    /// open-sessions figure (read from the counter) does not drift.
    #[test]
    fn a_panicking_session_gives_its_place_back() {
        let c = SessionCounter::new(3, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _open = c.try_enter(ip).unwrap();
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _slot = c.try_enter(ip).unwrap();
            assert_eq!(c.open(), 2);
            panic!("a session's bug");
        }));
        assert!(ended.is_err());
        assert_eq!(c.open(), 1);
        assert!(c.try_enter(ip).is_some(), "the per-IP place is free again");
    }
}
