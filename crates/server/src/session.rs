//! One control connection: login, then commands until QUIT.
//!
//! Commands run one at a time. A transfer runs while the control connection
//! is still read, so ABOR, STAT and NOOP are answered mid-transfer; any other
//! command waits until the transfer's final reply (RFC 959 §4.1.3).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::command::{self, Command, EpsvArg, TransferType};
use crate::control::{ControlReader, ControlWriter, Line};
use crate::listing::{self, Entry};
use crate::passive::Reservation;
use crate::reply::Reply;
use crate::server::Shared;
use crate::storage::{Storage, StorageError, UploadMode};
use crate::transfer::{self, Direction, Progress};
use crate::users::{self, Account};
use crate::vpath::VPath;

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
    },
}

/// How the next transfer gets its data connection.
enum DataChannel {
    None,
    Passive(Reservation),
    Active(SocketAddr),
}

/// How a supervised transfer ended.
enum Outcome<T> {
    Finished(io::Result<T>),
    Aborted,
    ControlClosed,
}

pub struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    control_fd: RawFd,
    reader: ControlReader<ReadHalf<TcpStream>>,
    writer: ControlWriter<WriteHalf<TcpStream>>,
    auth: Auth,
    failed_logins: u32,
    cwd: VPath,
    transfer_type: TransferType,
    data: DataChannel,
    epsv_all: bool,
    restart_at: u64,
    rename_from: Option<VPath>,
    /// A command that arrived during a transfer, handled after it.
    deferred: Option<Line>,
}

impl Session {
    pub fn new(shared: Arc<Shared>, stream: TcpStream) -> io::Result<Session> {
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        // Replies are small, complete writes: send each at once. With Nagle,
        // a 226 right after a 150 waits for the client's delayed ACK (40 ms).
        stream.set_nodelay(true)?;
        let control_fd = stream.as_raw_fd();
        let (read, write) = tokio::io::split(stream);
        Ok(Session {
            shared,
            peer,
            local,
            control_fd,
            reader: ControlReader::new(read),
            writer: ControlWriter::new(write),
            auth: Auth::Anonymous,
            failed_logins: 0,
            cwd: VPath::root(),
            transfer_type: TransferType::Binary,
            data: DataChannel::None,
            epsv_all: false,
            restart_at: 0,
            rename_from: None,
            deferred: None,
        })
    }

    /// Serves the connection until QUIT, timeout, error or close.
    pub async fn run(mut self) -> io::Result<()> {
        self.reply(220, "kubeftp ready").await?;
        let idle = self.shared.config.limits.idle_timeout();
        loop {
            let line = match self.deferred.take() {
                Some(line) => line,
                None => match tokio::time::timeout(idle, self.reader.next_line()).await {
                    Ok(line) => line?,
                    Err(_) => {
                        self.reply(421, "Idle timeout, closing control connection")
                            .await?;
                        return Ok(());
                    }
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
                    continue;
                }
            };
            if let Flow::Close = self.handle(command).await? {
                return Ok(());
            }
        }
    }

    async fn reply(&mut self, code: u16, text: impl Into<String>) -> io::Result<()> {
        self.send(Reply::new(code, text)).await
    }

    async fn send(&mut self, reply: Reply) -> io::Result<()> {
        self.writer.send(&reply).await
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
            Auth::LoggedIn { account, storage } => (account.clone(), storage.clone()),
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
            | Command::Help => {
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
            Command::Port(addr) | Command::Eprt(addr) => self.active(addr),
            Command::List(p) => {
                return self
                    .list(ListKind::List, p.map(|p| resolve(&p)), &storage)
                    .await;
            }
            Command::Nlst(p) => {
                return self
                    .list(ListKind::Nlst, p.map(|p| resolve(&p)), &storage)
                    .await;
            }
            Command::Mlsd(p) => {
                return self
                    .list(ListKind::Mlsd, p.map(|p| resolve(&p)), &storage)
                    .await;
            }
            Command::Retr(p) => return self.retrieve(resolve(&p), restart_at, &storage).await,
            Command::Stor(p) => {
                let mode = if restart_at > 0 {
                    UploadMode::Resume(restart_at)
                } else {
                    UploadMode::Replace
                };
                return self.store(resolve(&p), mode, false, &storage).await;
            }
            Command::Appe(p) => {
                return self
                    .store(resolve(&p), UploadMode::Append, false, &storage)
                    .await;
            }
            Command::Stou => match storage.unique_name(&self.cwd).await {
                Ok(path) => return self.store(path, UploadMode::Replace, true, &storage).await,
                Err(e) => e.reply(),
            },
        };
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    /// Commands that work the same logged in or not.
    async fn handle_before_login(&mut self, command: Command) -> io::Result<Flow> {
        let reply = match command {
            Command::Quit => {
                self.reply(221, "Goodbye").await?;
                return Ok(Flow::Close);
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
            Command::Pass(password) => return self.login(password).await,
            Command::Noop => Reply::new(200, "OK"),
            Command::Syst => Reply::new(215, "UNIX Type: L8"),
            Command::Feat => Reply::multi(
                211,
                "Features:",
                FEATURES.iter().map(|f| format!(" {f}")).collect(),
                "End",
            ),
            Command::Opts(opt) => {
                let upper = opt.to_ascii_uppercase();
                if upper == "UTF8 ON" || upper == "UTF8" {
                    Reply::new(200, "Always in UTF8 mode")
                } else if upper.starts_with("MLST") {
                    Reply::new(200, "MLST OPTS type;size;modify;perm;")
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
        let account = self.authenticate(&name, password).await;
        let Some(account) = account else {
            self.failed_logins += 1;
            tracing::warn!(user = %name, attempt = self.failed_logins, "login failed");
            tokio::time::sleep(Duration::from_millis(
                self.shared.config.limits.failed_login_delay_ms,
            ))
            .await;
            self.reply(530, "Login incorrect").await?;
            if self.failed_logins >= self.shared.config.limits.max_login_attempts {
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
                tracing::info!(user = %account.name, read_only = account.read_only, "logged in");
                self.cwd = VPath::root();
                self.auth = Auth::LoggedIn { account, storage };
                self.reply(230, "Logged in").await?;
            }
            Err(e) => {
                tracing::error!(user = %account.name, error = %e, "cannot open home directory");
                self.reply(530, "Home directory unavailable").await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn authenticate(&self, name: &str, password: String) -> Option<Account> {
        let config = &self.shared.config;
        if users::is_anonymous_name(name) {
            return config.anonymous.enabled.then(|| Account {
                name: "anonymous".into(),
                home: config.anonymous.home.clone(),
                read_only: true,
            });
        }
        let db = self.shared.users.as_ref()?.borrow().clone();
        let name = name.to_string();
        // Hash verification is deliberately slow: keep it off the runtime.
        tokio::task::spawn_blocking(move || db.verify(&name, &password))
            .await
            .ok()
            .flatten()
    }

    async fn change_dir(&mut self, path: VPath, storage: &Storage, code: u16) -> Reply {
        match storage.entry(&path).await {
            Ok(e) if e.is_dir => {
                self.cwd = path;
                Reply::new(code, format!("Directory is now {}", quote(&self.cwd)))
            }
            Ok(_) => Reply::new(550, "Not a directory"),
            Err(e) => e.reply(),
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

    // ---- data connection setup ----

    async fn passive(&mut self) -> Reply {
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
            Err(e) => return Reply::new(425, e.to_string()),
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

    fn extended_passive(&mut self, arg: EpsvArg) -> Reply {
        let family = if self.local.ip().to_canonical().is_ipv4() {
            1
        } else {
            2
        };
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
            Reply::new(425, format!("Cannot open passive connection: {e}"))
        })
    }

    fn active(&mut self, target: SocketAddr) -> Reply {
        if !self.shared.config.active.enabled {
            return Reply::new(
                502,
                "Active mode is disabled on this server; use PASV or EPSV",
            );
        }
        if self.epsv_all {
            return Reply::new(503, "EPSV ALL in effect; use EPSV");
        }
        // No FTP bounce: data may only go back to the client itself, and
        // never to a privileged port.
        if target.ip().to_canonical() != self.peer.ip().to_canonical() {
            return Reply::new(
                500,
                "Illegal PORT command: the address must be the client's own",
            );
        }
        if target.port() < 1024 {
            return Reply::new(500, "Illegal PORT command: privileged port");
        }
        self.data = DataChannel::Active(target);
        Reply::new(200, "PORT command successful")
    }

    /// The data connection for a transfer command, or the reply explaining
    /// why there is none.
    async fn open_data(&mut self) -> Result<TcpStream, Reply> {
        let timeout = Duration::from_secs(self.shared.config.passive.data_connect_timeout_seconds);
        match std::mem::replace(&mut self.data, DataChannel::None) {
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
                    let local_ip: IpAddr = match (self.local.ip().to_canonical(), target.is_ipv4())
                    {
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

    // ---- transfers ----

    async fn list(
        &mut self,
        kind: ListKind,
        path: Option<VPath>,
        storage: &Storage,
    ) -> io::Result<Flow> {
        let path = path.unwrap_or_else(|| self.cwd.clone());
        let entries = match storage.list(&path).await {
            Ok(rx) => rx,
            Err(e) => return self.finish_early(e.reply()).await,
        };
        if kind == ListKind::Mlsd && !storage.is_dir(&path).await {
            return self
                .finish_early(Reply::new(501, "MLSD needs a directory"))
                .await;
        }
        let data = match self.open_data().await {
            Ok(d) => d,
            Err(reply) => return self.finish_early(reply).await,
        };
        self.reply(150, "Here comes the directory listing").await?;
        let writable = !storage.read_only();
        let now = std::time::SystemTime::now();
        let format = move |e: &Entry| match kind {
            ListKind::List => listing::ls_line(e, writable, now),
            ListKind::Nlst => e.name.clone(),
            ListKind::Mlsd => listing::mlsx_facts(e, writable),
        };
        let job = transfer::send_listing(entries, data, format);
        let outcome = self.supervise(job, &Progress::default()).await?;
        self.conclude(outcome.map(|_| ()), "Directory send OK")
            .await
    }

    async fn retrieve(&mut self, path: VPath, offset: u64, storage: &Storage) -> io::Result<Flow> {
        let (file, size) = match storage.open_read(&path, offset).await {
            Ok(f) => f,
            Err(e) => return self.finish_early(e.reply()).await,
        };
        let data = match self.open_data().await {
            Ok(d) => d,
            Err(reply) => return self.finish_early(reply).await,
        };
        let mode = self.mode_name();
        self.reply(
            150,
            format!("Opening {mode} mode data connection for {path} ({size} bytes)"),
        )
        .await?;
        let started = Instant::now();
        let progress = Progress::default();
        let ascii = (self.transfer_type == TransferType::Ascii).then_some(Direction::Outbound);
        let outcome = self
            .supervise(
                transfer::copy(file, data, ascii, progress.clone()),
                &progress,
            )
            .await?;
        log_transfer("RETR", &path, &progress, started, &outcome);
        self.conclude(outcome.map(|_| ()), "Transfer complete")
            .await
    }

    async fn store(
        &mut self,
        path: VPath,
        mode: UploadMode,
        unique: bool,
        storage: &Storage,
    ) -> io::Result<Flow> {
        let mut upload = match storage.begin_upload(&path, mode).await {
            Ok(u) => u,
            Err(e) => return self.finish_early(e.reply()).await,
        };
        let data = match self.open_data().await {
            Ok(d) => d,
            Err(reply) => return self.finish_early(reply).await,
        };
        let name = path.file_name().unwrap_or_default().to_string();
        let opening = if unique {
            format!("FILE: {name}")
        } else {
            format!(
                "Opening {} mode data connection for {path}",
                self.mode_name()
            )
        };
        self.reply(150, opening).await?;
        let started = Instant::now();
        let progress = Progress::default();
        let ascii = (self.transfer_type == TransferType::Ascii).then_some(Direction::Inbound);
        let job = {
            let progress = progress.clone();
            async move {
                transfer::copy(data, upload.file(), ascii, progress).await?;
                Ok(upload)
            }
        };
        let outcome = match self.supervise(job, &progress).await? {
            // The data stream ended cleanly, but if the control connection
            // is gone the client died mid-upload: do not commit.
            Outcome::Finished(Ok(_)) if self.control_hung_up() => Outcome::ControlClosed,
            Outcome::Finished(Ok(upload)) => {
                Outcome::Finished(upload.commit().await.map_err(|e| match e {
                    StorageError::Io(io) => io,
                    other => io::Error::other(other),
                }))
            }
            other => other.map(|_| ()),
        };
        log_transfer("STOR", &path, &progress, started, &outcome);
        let done = if unique {
            format!("Transfer complete (unique file name: {name})")
        } else {
            "Transfer complete".into()
        };
        self.conclude(outcome, &done).await
    }

    /// Runs a transfer while still answering the control connection.
    async fn supervise<T>(
        &mut self,
        job: impl std::future::Future<Output = io::Result<T>>,
        progress: &Progress,
    ) -> io::Result<Outcome<T>> {
        tokio::pin!(job);
        let mut reading = true;
        loop {
            tokio::select! {
                result = &mut job => return Ok(Outcome::Finished(result)),
                line = self.reader.next_line(), if reading => {
                    let line = line?;
                    let command = match &line {
                        Line::Closed => return Ok(Outcome::ControlClosed),
                        Line::Command(text) => command::parse(text).ok(),
                        Line::TooLong | Line::NotUtf8 => None,
                    };
                    match command {
                        Some(Command::Abor) => return Ok(Outcome::Aborted),
                        Some(Command::Noop) => self.reply(200, "OK").await?,
                        Some(Command::Stat(None)) => {
                            let moved = progress.load(Ordering::Relaxed);
                            self.reply(213, format!("Transfer in progress, {moved} bytes so far")).await?;
                        }
                        _ => {
                            // Anything else (QUIT included) is answered
                            // after the transfer's final reply.
                            self.deferred = Some(line);
                            reading = false;
                        }
                    }
                }
            }
        }
    }

    /// The final reply of a transfer.
    async fn conclude(&mut self, outcome: Outcome<()>, success: &str) -> io::Result<Flow> {
        match outcome {
            Outcome::Finished(Ok(())) => self.reply(226, success).await?,
            Outcome::Finished(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) =>
            {
                self.reply(452, "Insufficient storage space").await?
            }
            Outcome::Finished(Err(_)) => {
                self.reply(426, "Connection closed; transfer aborted")
                    .await?
            }
            Outcome::Aborted => {
                self.reply(426, "Transfer aborted").await?;
                self.reply(226, "ABOR successful").await?;
            }
            Outcome::ControlClosed => return Ok(Flow::Close),
        }
        Ok(Flow::Continue)
    }

    /// A transfer command that failed before any data moved. The data
    /// channel it would have used is spent either way.
    async fn finish_early(&mut self, reply: Reply) -> io::Result<Flow> {
        self.data = DataChannel::None;
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    fn mode_name(&self) -> &'static str {
        if self.transfer_type == TransferType::Ascii {
            "ASCII"
        } else {
            "BINARY"
        }
    }

    /// Whether the client has closed its side of the control connection.
    fn control_hung_up(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.control_fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout; the fd is owned by
        // `self.reader`/`self.writer` and outlives this call.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Finished(r) => Outcome::Finished(r.map(f)),
            Outcome::Aborted => Outcome::Aborted,
            Outcome::ControlClosed => Outcome::ControlClosed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    List,
    Nlst,
    Mlsd,
}

const FEATURES: &[&str] = &[
    "EPRT",
    "EPSV",
    "MDTM",
    "MLST type*;size*;modify*;perm*;",
    "PASV",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
];

const HELP: &str = "ABOR ALLO APPE CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MKD MLSD MLST MODE NLST NOOP \
                    OPTS PASS PASV PORT PWD QUIT REST RETR RMD RNFR RNTO SIZE STAT STOR STOU STRU SYST TYPE USER";

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

fn log_transfer<T>(
    op: &str,
    path: &VPath,
    progress: &Progress,
    started: Instant,
    outcome: &Outcome<T>,
) {
    let (result, error) = match outcome {
        Outcome::Finished(Ok(_)) => ("ok", None),
        Outcome::Finished(Err(e)) => ("failed", Some(e.to_string())),
        Outcome::Aborted => ("aborted", None),
        Outcome::ControlClosed => ("interrupted", None),
    };
    tracing::info!(
        op,
        path = %path,
        bytes = progress.load(Ordering::Relaxed),
        duration_ms = started.elapsed().as_millis() as u64,
        result,
        error,
        "transfer"
    );
}
