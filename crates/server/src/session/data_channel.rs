//! Setting up data connections: PASV, EPSV, PORT and EPRT, then opening
//! the connection when a transfer command needs it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::{DataChannel, Session, TLS_HANDSHAKE_TIMEOUT};
use crate::command::EpsvArg;
use crate::passive::Reservation;
use crate::reply::Reply;
use crate::stream::MaybeTls;
use crate::tls::TlsMode;

impl Session {
    pub(super) async fn passive(&mut self) -> Reply {
        if self.epsv_all {
            return Reply::new(503, "EPSV ALL in effect; use EPSV");
        }
        self.data = DataChannel::None;
        let ip = match self
            .shared
            .addresses
            .for_client(self.peer.ip(), self.local.ip())
            .await
        {
            Ok(ip) => ip,
            Err(e) => {
                self.shared.metrics.refusal("address_unknown");
                return Reply::new(425, e.to_string());
            }
        };
        let reservation = match self.reserve_port() {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let port = reservation.port;
        self.data = DataChannel::Passive(reservation);
        let [a, b, c, d] = ip.octets();
        Reply::new(
            227,
            format!(
                "Entering Passive Mode ({a},{b},{c},{d},{},{})",
                port >> 8,
                port & 0xff
            ),
        )
    }

    /// RFC 2428's network protocol number of the control connection.
    fn family(&self) -> u8 {
        if self.local.ip().to_canonical().is_ipv4() {
            1
        } else {
            2
        }
    }

    pub(super) fn extended_passive(&mut self, arg: EpsvArg) -> Reply {
        let family = self.family();
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                return Reply::new(200, "EPSV ALL accepted");
            }
            EpsvArg::Protocol(p) if p != family => {
                return Reply::new(
                    522,
                    format!("Network protocol not supported, use ({family})"),
                );
            }
            _ => {}
        }
        self.data = DataChannel::None;
        match self.reserve_port() {
            Ok(reservation) => {
                let port = reservation.port;
                self.data = DataChannel::Passive(reservation);
                Reply::new(229, format!("Entering Extended Passive Mode (|||{port}|)"))
            }
            Err(reply) => reply,
        }
    }

    fn reserve_port(&self) -> Result<Reservation, Reply> {
        self.shared.passive.reserve(self.peer.ip()).map_err(|e| {
            tracing::warn!(client = %self.peer.ip(), "passive pool exhausted");
            self.shared.metrics.refusal("pool_exhausted");
            Reply::new(425, format!("Cannot open passive connection: {e}"))
        })
    }

    /// PORT, or EPRT when `extended`.
    pub(super) fn active(&mut self, target: SocketAddr, extended: bool) -> Reply {
        if !self.shared.config.active.enabled {
            return Reply::new(
                502,
                "Active mode is disabled on this server; use PASV or EPSV",
            );
        }
        if self.epsv_all {
            return Reply::new(503, "EPSV ALL in effect; use EPSV");
        }
        let family = self.family();
        // The address as sent: an IPv4-mapped IPv6 address (|2|::ffff:..|)
        // is protocol 2, which an IPv4 connection cannot reach.
        if extended && target.ip().is_ipv4() != (family == 1) {
            return Reply::new(
                522,
                format!("Network protocol not supported, use ({family})"),
            );
        }
        // No FTP bounce: data may only go back to the client itself, and
        // never to a privileged port.
        // The command is well formed, so 504 (not for that parameter), as
        // RFC 2577 asks for privileged ports, rather than 500 (syntax).
        if target.ip().to_canonical() != self.peer.ip().to_canonical() {
            return Reply::new(504, "Refused PORT: the address must be the client's own");
        }
        if target.port() < 1024 {
            return Reply::new(504, "Refused PORT: privileged port");
        }
        self.data = DataChannel::Active(target);
        Reply::new(200, "PORT command successful")
    }

    /// The TCP data connection for a transfer command, or the reply
    /// explaining why there is none. The channel set up by PASV, EPSV,
    /// PORT or EPRT is spent either way. The future borrows nothing from
    /// the session, so the session can read the control connection while
    /// it waits ([`Session::await_data`]). Under PROT P,
    /// [`Session::secure_data`] follows the 150 reply: clients start the TLS
    /// handshake only then.
    pub(super) fn open_data(
        &mut self,
    ) -> impl Future<Output = Result<TcpStream, Reply>> + Send + 'static {
        let channel = std::mem::replace(&mut self.data, DataChannel::None);
        let unprotected = self.shared.config.tls.mode == TlsMode::Required && !self.protect_data;
        let timeout = Duration::from_secs(self.shared.config.passive.data_connect_timeout_seconds);
        let (shared, local) = (self.shared.clone(), self.local);
        async move {
            if unprotected {
                return Err(Reply::new(
                    521,
                    "Data connections must be protected: send PBSZ 0 and PROT P",
                ));
            }
            connect_data(channel, local, timeout)
                .await
                .inspect_err(|_| shared.metrics.refusal("not_opened"))
        }
    }

    /// Wraps the data connection in TLS under PROT P. Like
    /// [`Session::open_data`], the future borrows nothing from the session.
    /// It is boxed: a handshake's state is kilobytes, and inline it would
    /// stay in every transfer's state, plain or not, while the transfer runs.
    pub(super) fn secure_data(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = Result<MaybeTls, Reply>> + Send + 'static {
        let config = self
            .tls
            .as_ref()
            .filter(|_| self.protect_data)
            .map(|t| t.data.clone());
        let shared = self.shared.clone();
        Box::pin(async move {
            let Some(config) = config else {
                return Ok(MaybeTls::Plain(tcp));
            };
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, MaybeTls::accept(tcp, config))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "TLS handshake on the data connection failed");
                        shared.metrics.refusal("tls_failed");
                        return Err(Reply::new(
                            425,
                            "TLS handshake on the data connection failed",
                        ));
                    }
                    Err(_) => {
                        shared.metrics.refusal("tls_failed");
                        return Err(Reply::new(
                            425,
                            "TLS handshake on the data connection timed out",
                        ));
                    }
                };
            if shared.config.tls.require_session_reuse && !stream.resumed() {
                // Only this session's client holds this session's TLS state.
                tracing::warn!("refused a data connection that did not resume the TLS session");
                shared.metrics.refusal("tls_not_resumed");
                close_quietly(stream).await;
                return Err(Reply::new(
                    425,
                    "The data connection must resume the control connection's TLS session",
                ));
            }
            Ok(stream)
        })
    }
}

/// Opens the connection `channel` was set up for: accepts the client's
/// (passive) or connects to it (active), within `timeout`. `local` is the
/// control connection's local address, whose IP active connections use.
async fn connect_data(
    channel: DataChannel,
    local: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, Reply> {
    match channel {
        DataChannel::None => Err(Reply::new(425, "Use PASV, EPSV, PORT or EPRT first")),
        DataChannel::Passive(reservation) => {
            match tokio::time::timeout(timeout, reservation.accept()).await {
                Ok(Some(stream)) => Ok(stream),
                _ => Err(Reply::new(425, "Data connection was not opened")),
            }
        }
        DataChannel::Active(target) => {
            let connect = async {
                let socket = if target.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                let local_ip: IpAddr = match (local.ip().to_canonical(), target.is_ipv4()) {
                    (ip @ IpAddr::V4(_), true) | (ip @ IpAddr::V6(_), false) => ip,
                    _ => return Err(io::Error::other("address family mismatch")),
                };
                socket.bind(SocketAddr::new(local_ip, 0))?;
                socket.connect(target).await
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(stream)) => Ok(stream),
                _ => Err(Reply::new(425, "Cannot connect to your data port")),
            }
        }
    }
}

/// Ends a refused data connection with close_notify, so the client reads a
/// clean end and then the 425 on the control connection.
async fn close_quietly(mut stream: MaybeTls) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}
