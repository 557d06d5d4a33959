//! One control connection: login, then commands until QUIT.
//!
//! Commands run one at a time. A transfer runs while the control connection
//! is still read, so ABOR, STAT and NOOP are answered mid-transfer; any other
//! command waits until the transfer's final reply (RFC 959 §4.1.3).
//!
//! - this file: the command loop, login and file commands;
//! - `data_channel`: PASV, EPSV, PORT, EPRT and opening data connections;
//! - `transfers`: LIST, RETR, STOR and friends, supervised for ABOR;
//! - `security`: AUTH TLS, PBSZ and PROT (RFC 4217).

mod data_channel;
mod security;
mod transfers;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::command::{self, Command, TransferType};
use crate::control::{ControlConn, Line};
use crate::listing::{self, Entry};
use crate::passive::Reservation;
use crate::reply::Reply;
use crate::server::Shared;
use crate::storage::{Storage, StorageError, UploadMode};
use crate::stream::MaybeTls;
use crate::tls::{TlsConfigs, TlsMode};
use crate::users::{self, Account, UserDb};
use crate::vpath::VPath;
use transfers::ListKind;

/// How long a client has to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the session does after a command.
enum Flow {
    Continue,
    Close,
}

enum Auth {
    Anonymous,
    /// USER given, waiting for PASS.
    UserGiven(String),
    LoggedIn {
        account: Account,
        storage: Storage,
        /// The accounts the login was checked against (none for
        /// anonymous), to see whether this one changed since.
        accounts: Option<Arc<UserDb>>,
    },
}

/// How the next transfer gets its data connection.
enum DataChannel {
    None,
    Passive(Reservation),
    Active(SocketAddr),
}

pub struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    /// The control connection's socket, to see whether the client hung up.
    control_fd: RawFd,
    control: ControlConn<MaybeTls>,
    /// The TLS configuration of this session once the control connection is
    /// protected; data connections use the same one (and its session cache).
    tls: Option<Arc<TlsConfigs>>,
    pbsz_done: bool,
    /// PROT P: data connections are TLS too.
    protect_data: bool,
    auth: Auth,
    failed_logins: u32,
    cwd: VPath,
    transfer_type: TransferType,
    data: DataChannel,
    epsv_all: bool,
    restart_at: u64,
    rename_from: Option<VPath>,
    /// The facts MLSD and MLST send (OPTS MLST).
    mlst_facts: listing::Facts,
    /// A command that arrived during a transfer, handled after it.
    deferred: Option<Line>,
    /// The client closed the control connection during a transfer.
    control_closed: bool,
    /// The code of the last reply sent, for metrics.
    last_code: u16,
}

impl Session {
    /// Prepares a session on an accepted connection; with `implicit_tls`
    /// the TLS handshake comes first (implicit FTPS).
    pub async fn start(
        shared: Arc<Shared>,
        tcp: TcpStream,
        implicit_tls: bool,
    ) -> io::Result<Session> {
        let peer = tcp.peer_addr()?;
        let local = tcp.local_addr()?;
        // Replies are small, complete writes: send each at once. With Nagle,
        // a 226 right after a 150 waits for the client's delayed ACK (40 ms).
        tcp.set_nodelay(true)?;
        let control_fd = tcp.as_raw_fd();
        let (stream, tls) = match (implicit_tls, &shared.tls) {
            (true, Some(tls)) => {
                let certificate = tls.borrow().clone();
                let config =
                    Arc::new(TlsConfigs::for_session(&certificate).map_err(io::Error::other)?);
                let accept = MaybeTls::accept(tcp, config.control.clone());
                let stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept)
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
                (stream, Some(config))
            }
            _ => (MaybeTls::Plain(tcp), None),
        };
        Ok(Session {
            shared,
            peer,
            local,
            control_fd,
            control: ControlConn::new(stream),
            // Implicit FTPS protects data connections from the start.
            protect_data: tls.is_some(),
            pbsz_done: tls.is_some(),
            tls,
            auth: Auth::Anonymous,
            failed_logins: 0,
            cwd: VPath::root(),
            transfer_type: TransferType::Binary,
            data: DataChannel::None,
            epsv_all: false,
            restart_at: 0,
            mlst_facts: listing::Facts::default(),
            rename_from: None,
            deferred: None,
            control_closed: false,
            last_code: 0,
        })
    }

    /// Serves the connection until QUIT, timeout, shutdown, error or close.
    pub async fn run(mut self) -> io::Result<()> {
        let result = self.command_loop().await;
        // Under TLS this sends close_notify, so clients see a clean end.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.control.stream_mut().shutdown())
            .await;
        result
    }

    async fn command_loop(&mut self) -> io::Result<()> {
        self.reply(220, "kubeftp ready").await?;
        let idle = self.shared.config.limits.idle_timeout();
        let draining = self.shared.draining.clone();
        loop {
            let line = match self.deferred.take() {
                Some(line) => line,
                None => tokio::select! {
                    biased;
                    _ = draining.cancelled() => {
                        self.reply(421, "Server is shutting down, closing control connection").await?;
                        return Ok(());
                    }
                    line = tokio::time::timeout(idle, self.control.next_line()) => match line {
                        Ok(line) => line?,
                        Err(_) => {
                            self.reply(421, "Idle timeout, closing control connection").await?;
                            return Ok(());
                        }
                    },
                },
            };
            let text = match line {
                Line::Closed => return Ok(()),
                Line::TooLong => {
                    self.reply(500, "Command line too long").await?;
                    continue;
                }
                Line::NotUtf8 => {
                    self.reply(500, "Command is not valid UTF-8").await?;
                    continue;
                }
                Line::Command(text) => text,
            };
            let command = match command::parse(&text) {
                Ok(c) => c,
                Err(e) => {
                    self.reply(e.code(), e.text()).await?;
                    self.shared.metrics.command("invalid", e.code());
                    continue;
                }
            };
            let verb = text
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let flow = self.handle(command).await?;
            self.shared.metrics.command(&verb, self.last_code);
            if let Flow::Close = flow {
                return Ok(());
            }
        }
    }

    async fn reply(&mut self, code: u16, text: impl Into<String>) -> io::Result<()> {
        self.send(Reply::new(code, text)).await
    }

    /// Writes a reply. A client that reads none of it for the idle timeout
    /// is gone as far as we are concerned: the session ends.
    async fn send(&mut self, reply: Reply) -> io::Result<()> {
        self.last_code = reply.code;
        let limit = self.shared.config.limits.idle_timeout();
        tokio::time::timeout(limit, self.control.send(&reply))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read no reply within the idle timeout",
                )
            })?
    }

    async fn handle(&mut self, command: Command) -> io::Result<Flow> {
        // RNFR applies only to the command right after it. REST waits for
        // the next transfer command: clients send PASV between the two.
        let rename_from = self.rename_from.take();
        let restart_at = if command.is_transfer() {
            std::mem::take(&mut self.restart_at)
        } else {
            self.restart_at
        };

        let (account, storage) = match &self.auth {
            Auth::LoggedIn {
                accounts: Some(at_login),
                account,
                ..
            } if self.account_changed(at_login, &account.name) => {
                tracing::info!("account removed or changed in the users file, closing");
                self.reply(421, "Your account has changed; log in again")
                    .await?;
                return Ok(Flow::Close);
            }
            Auth::LoggedIn {
                account, storage, ..
            } => (account.clone(), storage.clone()),
            _ if command.allowed_before_login() => return self.handle_before_login(command).await,
            _ => {
                self.reply(530, "Please log in with USER and PASS").await?;
                return Ok(Flow::Continue);
            }
        };
        let resolve = |p: &str| self.cwd.resolve(p);

        let reply = match command {
            Command::Pass(_) => Reply::new(503, "Already logged in"),
            Command::User(_) => {
                // Switching user: start over.
                self.auth = Auth::Anonymous;
                self.cwd = VPath::root();
                return self.handle_before_login(command).await;
            }
            Command::Quit
            | Command::Noop
            | Command::Syst
            | Command::Feat
            | Command::Opts(_)
            | Command::Help
            | Command::Auth(_)
            | Command::Pbsz(_)
            | Command::Prot(_) => {
                return self.handle_before_login(command).await;
            }
            Command::Pwd => Reply::new(
                257,
                format!("{} is the current directory", quote(&self.cwd)),
            ),
            Command::Cwd(p) => self.change_dir(resolve(&p), &storage, 250).await,
            Command::Cdup => self.change_dir(self.cwd.parent(), &storage, 200).await,
            Command::Mkd(p) => {
                let path = resolve(&p);
                match storage.mkdir(&path).await {
                    Ok(()) => Reply::new(257, format!("{} created", quote(&path))),
                    Err(e) => e.reply(),
                }
            }
            Command::Rmd(p) => done(storage.rmdir(&resolve(&p)).await, "Directory removed"),
            Command::Dele(p) => done(storage.delete(&resolve(&p)).await, "File deleted"),
            Command::Rnfr(p) => {
                let path = resolve(&p);
                match storage.entry(&path).await {
                    _ if storage.read_only() => StorageError::ReadOnly.reply(),
                    Ok(_) => {
                        self.rename_from = Some(path);
                        Reply::new(350, "Ready for RNTO")
                    }
                    Err(e) => e.reply(),
                }
            }
            Command::Rnto(p) => match rename_from {
                None => Reply::new(503, "Send RNFR first"),
                Some(from) => done(storage.rename(&from, &resolve(&p)).await, "Renamed"),
            },
            Command::Type(t) => {
                self.transfer_type = t;
                let name = if t == TransferType::Ascii {
                    "ASCII"
                } else {
                    "binary"
                };
                Reply::new(200, format!("Type set to {name}"))
            }
            Command::Mode => Reply::new(200, "Mode set to S"),
            Command::Stru => Reply::new(200, "Structure set to F"),
            Command::Allo => Reply::new(202, "No storage allocation necessary"),
            Command::Rest(offset) => {
                self.restart_at = offset;
                Reply::new(350, format!("Restarting at {offset}; send RETR or STOR"))
            }
            Command::Abor => {
                self.data = DataChannel::None;
                Reply::new(225, "No transfer to abort")
            }
            // The stored size in any TYPE, as vsftpd: the size after ASCII
            // conversion (RFC 3659) would take reading the whole file, and
            // refusing (ProFTPD) breaks clients that list (in TYPE A) and
            // then ask for a size, such as Python's ftplib.
            Command::Size(p) => match storage.entry(&resolve(&p)).await {
                Ok(e) if e.is_dir => StorageError::NotAFile.reply(),
                Ok(e) => Reply::new(213, e.size.to_string()),
                Err(e) => e.reply(),
            },
            Command::Mdtm(p) => match storage.entry(&resolve(&p)).await {
                Ok(e) => Reply::new(213, listing::timestamp(e.modified)),
                Err(e) => e.reply(),
            },
            Command::Mlst(p) => {
                let path = p.map(|p| resolve(&p)).unwrap_or_else(|| self.cwd.clone());
                match storage.entry(&path).await {
                    Ok(e) => {
                        let facts = listing::mlsx_facts(
                            &Entry {
                                name: path.to_string(),
                                ..e
                            },
                            !storage.read_only(),
                            self.mlst_facts,
                        );
                        Reply::multi(250, "Listing", vec![format!(" {facts}")], "End")
                    }
                    Err(e) => e.reply(),
                }
            }
            Command::Stat(None) => self.status(&account),
            Command::Stat(Some(p)) => self.stat_path(&storage, resolve(&p)).await,
            Command::Pasv => self.passive().await,
            Command::Epsv(arg) => self.extended_passive(arg),
            Command::Port(addr) => self.active(addr, false),
            Command::Eprt(addr) => self.active(addr, true),
            // Transfers are boxed: their states (data connection, TLS
            // handshake, buffers' bookkeeping) would otherwise make every
            // session's task as large, idle or not (see server.rs's tests).
            Command::List(p) => {
                let path = p.map(|p| resolve(&p));
                return Box::pin(self.list(ListKind::List, path, &storage)).await;
            }
            Command::Nlst(p) => {
                let path = p.map(|p| resolve(&p));
                return Box::pin(self.list(ListKind::Nlst, path, &storage)).await;
            }
            Command::Mlsd(p) => {
                let path = p.map(|p| resolve(&p));
                return Box::pin(self.list(ListKind::Mlsd, path, &storage)).await;
            }
            Command::Retr(p) => {
                return Box::pin(self.retrieve(resolve(&p), restart_at, &storage)).await;
            }
            Command::Stor(p) => {
                let mode = if restart_at > 0 {
                    UploadMode::Resume(restart_at)
                } else {
                    UploadMode::Replace
                };
                return Box::pin(self.store(resolve(&p), mode, false, &storage)).await;
            }
            Command::Appe(p) => {
                let upload = self.store(resolve(&p), UploadMode::Append, false, &storage);
                return Box::pin(upload).await;
            }
            Command::Stou => match storage.unique_name(&self.cwd).await {
                Ok(path) => {
                    return Box::pin(self.store(path, UploadMode::Replace, true, &storage)).await;
                }
                Err(e) => e.reply(),
            },
        };
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    /// Commands that work the same logged in or not.
    async fn handle_before_login(&mut self, command: Command) -> io::Result<Flow> {
        let tls_required = self.shared.config.tls.mode == TlsMode::Required;
        let reply = match command {
            Command::Quit => {
                self.reply(221, "Goodbye").await?;
                return Ok(Flow::Close);
            }
            Command::User(_) | Command::Pass(_) if tls_required && self.tls.is_none() => {
                Reply::new(530, "This server requires TLS: send AUTH TLS first")
            }
            Command::User(name) => {
                let text = if users::is_anonymous_name(&name) {
                    "Anonymous login: send your e-mail address as password"
                } else {
                    "Password required"
                };
                self.auth = Auth::UserGiven(name);
                Reply::new(331, text)
            }
            // Boxed, like transfers: a login and a TLS handshake hold large states.
            Command::Pass(password) => return Box::pin(self.login(password)).await,
            Command::Auth(mechanism) => return Box::pin(self.auth_tls(&mechanism)).await,
            Command::Pbsz(size) => self.pbsz(&size),
            Command::Prot(level) => self.prot(&level),
            Command::Noop => Reply::new(200, "OK"),
            Command::Syst => Reply::new(215, "UNIX Type: L8"),
            Command::Feat => {
                let tls: &[&str] = match (self.shared.config.tls.explicit(), self.tls.is_some()) {
                    (true, _) => TLS_FEATURES,
                    // Implicit FTPS: PBSZ and PROT, but no AUTH.
                    (false, true) => &TLS_FEATURES[1..],
                    (false, false) => &[],
                };
                let mlst = self.mlst_facts.feature();
                let mut features: Vec<&str> = FEATURES.iter().chain(tls).copied().collect();
                features.push(&mlst);
                features.sort_unstable();
                let body = features.iter().map(|f| format!(" {f}")).collect();
                Reply::multi(211, "Features:", body, "End")
            }
            Command::Opts(opt) => {
                let upper = opt.to_ascii_uppercase();
                if upper == "UTF8 ON" || upper == "UTF8" {
                    Reply::new(200, "Always in UTF8 mode")
                } else if let Some(list) = upper
                    .strip_prefix("MLST")
                    .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                {
                    self.mlst_facts = listing::Facts::select(list);
                    let selected = self.mlst_facts.selected();
                    Reply::new(200, format!("MLST OPTS {selected}").trim_end().to_string())
                } else {
                    Reply::new(501, "Option not understood")
                }
            }
            Command::Help => Reply::multi(
                214,
                "Commands recognised:",
                vec![format!(" {HELP}")],
                "Help OK",
            ),
            _ => Reply::new(530, "Please log in with USER and PASS"),
        };
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    async fn login(&mut self, password: String) -> io::Result<Flow> {
        let Auth::UserGiven(name) = std::mem::replace(&mut self.auth, Auth::Anonymous) else {
            self.reply(503, "Send USER first").await?;
            return Ok(Flow::Continue);
        };
        let limits = self.shared.config.limits.clone();
        let client = self.peer.ip();
        if self.shared.logins.is_locked(client) {
            // No hash is verified for a locked-out address.
            tracing::warn!(user = %name.escape_debug(), "login refused: too many failures from this address");
            self.shared.metrics.login(false);
            self.reply(
                530,
                "Too many failed logins from your address; try again later",
            )
            .await?;
            return Ok(Flow::Close);
        }
        let Some((account, accounts)) = self.authenticate(&name, password).await else {
            self.failed_logins += 1;
            self.shared.metrics.login(false);
            let locked = self.shared.logins.failed(client);
            tracing::warn!(user = %name.escape_debug(), attempt = self.failed_logins, locked_out = locked, "login failed");
            tokio::time::sleep(Duration::from_millis(limits.failed_login_delay_ms)).await;
            self.reply(530, "Login incorrect").await?;
            if locked || self.failed_logins >= limits.max_login_attempts {
                self.reply(421, "Too many failed logins, closing control connection")
                    .await?;
                return Ok(Flow::Close);
            }
            return Ok(Flow::Continue);
        };
        let root = self.shared.config.root.clone();
        let (home, read_only) = (account.home.clone(), account.read_only);
        let storage =
            tokio::task::spawn_blocking(move || Storage::open(&root, &home, read_only)).await?;
        match storage {
            Ok(storage) => {
                self.shared.metrics.login(true);
                tracing::Span::current().record("user", account.name.as_str());
                tracing::info!(
                    read_only = account.read_only,
                    tls = self.tls.is_some(),
                    "logged in"
                );
                self.cwd = VPath::root();
                self.auth = Auth::LoggedIn {
                    account,
                    storage,
                    accounts,
                };
                self.reply(230, "Logged in").await?;
            }
            Err(e) => {
                tracing::error!(user = %account.name, error = %e, "cannot open home directory");
                self.reply(530, "Home directory unavailable").await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The account `name` logs in to with `password`, and the accounts it
    /// was checked against (none for anonymous).
    async fn authenticate(
        &self,
        name: &str,
        password: String,
    ) -> Option<(Account, Option<Arc<UserDb>>)> {
        let config = &self.shared.config;
        if users::is_anonymous_name(name) {
            let account = Account {
                name: "anonymous".into(),
                home: config.anonymous.home.clone(),
                read_only: true,
            };
            return config.anonymous.enabled.then_some((account, None));
        }
        let db = self.shared.users.as_ref()?.borrow().clone();
        let name = name.to_string();
        // Hash verification is deliberately slow and takes ~19 MiB (argon2):
        // keep it off the runtime, and run only a few at once so a burst of
        // logins cannot exhaust memory.
        let _slot = self.shared.hash_slots.acquire().await.ok()?;
        let checked = db.clone();
        let account = tokio::task::spawn_blocking(move || checked.verify(&name, &password))
            .await
            .ok()
            .flatten()?;
        Some((account, Some(db)))
    }

    /// Whether the users file, since the login checked against `at_login`,
    /// removed `name` or changed its password, home or access. The session
    /// then ends: an account taken away takes its sessions with it.
    fn account_changed(&self, at_login: &Arc<UserDb>, name: &str) -> bool {
        let Some(users) = &self.shared.users else {
            return false;
        };
        let now = users.borrow();
        !Arc::ptr_eq(&now, at_login) && !now.unchanged_since(at_login, name)
    }

    async fn change_dir(&mut self, path: VPath, storage: &Storage, code: u16) -> Reply {
        match storage.entry(&path).await {
            Ok(e) if e.is_dir => {
                self.cwd = path;
                Reply::new(code, format!("Directory is now {}", quote(&self.cwd)))
            }
            Ok(_) => Reply::new(550, "Not a directory"),
            // CWD's permanent failure is 550 (RFC 959), whatever the name's
            // fault: 553 is for commands that make a file.
            Err(e) => match e.reply() {
                Reply { code: 553, lines } => Reply { code: 550, lines },
                other => other,
            },
        }
    }

    fn status(&self, account: &Account) -> Reply {
        let body = vec![
            format!(" Connected from {}", self.peer.ip()),
            format!(
                " Logged in as {}{}",
                account.name,
                if account.read_only {
                    " (read-only)"
                } else {
                    ""
                }
            ),
            format!(" TYPE: {:?}", self.transfer_type),
            format!(" Passive ports: {}", self.shared.config.passive.ports),
        ];
        Reply::multi(211, "kubeftp status:", body, "End of status")
    }

    async fn stat_path(&self, storage: &Storage, path: VPath) -> Reply {
        /// STAT answers on the control connection; keep it bounded.
        const MAX_LINES: usize = 10_000;
        let mut entries = match storage.list(&path).await {
            Ok(rx) => rx,
            Err(e) => return e.reply(),
        };
        let now = std::time::SystemTime::now();
        let mut lines = Vec::new();
        while let Some(entry) = entries.recv().await {
            match entry {
                Ok(e) if lines.len() < MAX_LINES => {
                    lines.push(listing::ls_line(&e, !storage.read_only(), now))
                }
                Ok(_) => {
                    lines.push("(listing truncated; use LIST)".into());
                    break;
                }
                Err(e) => return StorageError::Io(e).reply(),
            }
        }
        Reply::multi(213, format!("Status of {path}:"), lines, "End of status")
    }
}

const FEATURES: &[&str] = &[
    "EPRT",
    "EPSV",
    "MDTM",
    "PASV",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
];

/// Added to FEAT when explicit TLS is on (RFC 4217 §6); implicit FTPS
/// sessions get all but the first.
const TLS_FEATURES: &[&str] = &["AUTH TLS", "PBSZ", "PROT"];

const HELP: &str = "ABOR ALLO APPE AUTH CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MKD MLSD MLST MODE NLST \
                    NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT REST RETR RMD RNFR RNTO SIZE STAT STOR STOU \
                    STRU SYST TYPE USER";

/// A path in a 257 reply: quoted, with embedded quotes doubled (RFC 959).
fn quote(path: &VPath) -> String {
    format!("\"{}\"", path.to_string().replace('"', "\"\""))
}

fn done(result: Result<(), StorageError>, ok: &str) -> Reply {
    match result {
        Ok(()) => Reply::new(250, ok),
        Err(e) => e.reply(),
    }
}
