//! Transfer commands (LIST, NLST, MLSD, RETR, STOR, APPE, STOU): each runs
//! under `supervise`, which keeps answering the control connection so ABOR
//! and STAT work mid-transfer.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{DataChannel, Flow, Session};
use crate::command::{self, Command, TransferType};
use crate::control::Line;
use crate::idle::IdleTimeout;
use crate::listing::{self, Entry};
use crate::reply::Reply;
use crate::storage::{self, Storage, StorageError, UploadMode};
use crate::stream::MaybeTls;
use crate::transfer::{self, Direction, LocalError, Progress};
use crate::vpath::VPath;

/// How a supervised transfer ended.
pub(super) enum Outcome<T> {
    Finished(io::Result<T>),
    Aborted,
    /// QUIT before the data connection was open: the transfer is dropped,
    /// and the QUIT answered after its reply.
    Quit,
    /// The client closed the control connection without QUIT.
    ControlClosed,
    /// The shutdown grace period ran out.
    ShuttingDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListKind {
    List,
    Nlst,
    Mlsd,
}

impl Session {
    pub(super) async fn list(
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
        let connecting = self.open_data();
        let data = match self.await_data(connecting).await? {
            Ok(d) => d,
            Err(flow) => return Ok(flow),
        };
        self.reply(150, "Here comes the directory listing").await?;
        let handshake = self.secure_data(data);
        let data = match self.await_data(handshake).await? {
            Ok(d) => d,
            Err(flow) => return Ok(flow),
        };
        let writable = !storage.read_only();
        let facts = self.mlst_facts;
        let now = std::time::SystemTime::now();
        let format = move |e: &Entry| match kind {
            ListKind::List => listing::ls_line(e, writable, now),
            ListKind::Nlst => e.name.clone(),
            ListKind::Mlsd => listing::mlsx_facts(e, writable, facts),
        };
        let data = IdleTimeout::new(data, self.data_timeout());
        let started = Instant::now();
        let progress = Progress::default();
        let job = transfer::send_listing(entries, data, format, progress.clone());
        let outcome = self.supervise(job, &progress, false).await?;
        self.log_transfer(kind.verb(), &path, &progress, started, &outcome);
        self.conclude(outcome.map(|_| ()), "Directory send OK")
            .await
    }

    pub(super) async fn retrieve(
        &mut self,
        path: VPath,
        offset: u64,
        storage: &Storage,
    ) -> io::Result<Flow> {
        let (file, size) = match storage.open_read(&path, offset).await {
            Ok(f) => f,
            Err(e) => return self.finish_early(e.reply()).await,
        };
        let connecting = self.open_data();
        let data = match self.await_data(connecting).await? {
            Ok(d) => d,
            Err(flow) => return Ok(flow),
        };
        let mode = self.mode_name();
        self.reply(
            150,
            format!("Opening {mode} mode data connection for {path} ({size} bytes)"),
        )
        .await?;
        let handshake = self.secure_data(data);
        let data = match self.await_data(handshake).await? {
            Ok(d) => d,
            Err(flow) => return Ok(flow),
        };
        let started = Instant::now();
        let progress = Progress::default();
        let ascii = self.transfer_type == TransferType::Ascii;
        let limit = self.data_timeout();
        let job = {
            let progress = progress.clone();
            async move {
                match data {
                    MaybeTls::Plain(tcp) if !ascii => {
                        transfer::send_file(file, tcp, progress, limit).await
                    }
                    data => {
                        let data = IdleTimeout::new(data, limit);
                        transfer::copy(file, data, Direction::Outbound, ascii, progress).await
                    }
                }
            }
        };
        let outcome = self.supervise(job, &progress, false).await?;
        self.log_transfer("RETR", &path, &progress, started, &outcome);
        self.conclude(outcome.map(|_| ()), "Transfer complete")
            .await
    }

    pub(super) async fn store(
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
        let connecting = self.open_data();
        let data = match self.await_data(connecting).await? {
            Ok(d) => d,
            Err(flow) => return Ok(flow),
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
        let handshake = self.secure_data(data);
        let data = match self.await_data(handshake).await? {
            Ok(d) => d,
            Err(flow) => return Ok(flow),
        };
        let started = Instant::now();
        let progress = Progress::default();
        let ascii = self.transfer_type == TransferType::Ascii;
        let data = IdleTimeout::new(data, self.data_timeout());
        let job = {
            let progress = progress.clone();
            async move {
                if ascii {
                    transfer::copy(data, upload.file(), Direction::Inbound, true, progress).await?;
                } else {
                    transfer::receive_file(data, upload.file(), progress, Some(data_tcp)).await?;
                }
                Ok(upload)
            }
        };
        // A data connection that ended cleanly is the whole file, unless
        // the client went away without QUIT: a client that dies closes both
        // connections cleanly, and its upload must not replace the target.
        // One that sent QUIT has finished sending and may leave before the
        // 226.
        let outcome = match self.supervise(job, &progress, false).await? {
            Outcome::Finished(Ok(_)) if !self.quit_deferred() && self.control_hung_up() => {
                Outcome::ControlClosed
            }
            Outcome::Finished(Ok(upload)) => {
                Outcome::Finished(upload.commit().await.map_err(|e| match e {
                    StorageError::Io(io) => LocalError::wrap(io),
                    other => LocalError::wrap(io::Error::other(other)),
                }))
            }
            other => other.map(|_| ()),
        };
        self.log_transfer("STOR", &path, &progress, started, &outcome);
        let done = if unique {
            format!("Transfer complete (unique file name: {name})")
        } else {
            "Transfer complete".into()
        };
        self.conclude(outcome, &done).await
    }

    /// Waits for one step of opening a transfer's data connection (the
    /// client's connect, the TLS handshake) while still reading the control
    /// connection: ABOR or QUIT ends the wait at once rather than after the
    /// step's timeout. `Err(flow)`: the transfer command is over, its
    /// replies sent.
    async fn await_data<T>(
        &mut self,
        step: impl std::future::Future<Output = Result<T, Reply>>,
    ) -> io::Result<Result<T, Flow>> {
        let step = async { Ok(step.await) };
        let flow = match self.supervise(step, &Progress::default(), true).await? {
            Outcome::Finished(Ok(Ok(opened))) => return Ok(Ok(opened)),
            Outcome::Finished(Ok(Err(reply))) => self.finish_early(reply).await?,
            other => {
                self.data = DataChannel::None;
                self.conclude(other.map(|_| ()), "").await?
            }
        };
        Ok(Err(flow))
    }

    /// Runs a transfer while still answering the control connection.
    /// While `opening` the data connection no data moves yet, so QUIT ends
    /// the wait ([`Outcome::Quit`]) and so does the start of a shutdown, as
    /// for an idle session; once data moves, QUIT waits for the transfer's
    /// end as other commands do, and a shutdown for its grace period.
    async fn supervise<T>(
        &mut self,
        job: impl std::future::Future<Output = io::Result<T>>,
        progress: &Progress,
        opening: bool,
    ) -> io::Result<Outcome<T>> {
        tokio::pin!(job);
        let stopping = if opening {
            self.shared.draining.clone()
        } else {
            self.shared.stopping.clone()
        };
        // One command is held back at a time, in order: one held while the
        // data connection opened is answered before anything read later.
        let mut reading = self.deferred.is_none();
        loop {
            tokio::select! {
                // The job first: a step that is ready (a data connection the
                // client opened before its QUIT) goes ahead.
                biased;
                result = &mut job => return Ok(Outcome::Finished(result)),
                _ = stopping.cancelled() => return Ok(Outcome::ShuttingDown),
                line = self.control.next_line(), if reading => {
                    let line = line?;
                    let command = match &line {
                        Line::Closed => {
                            self.control_closed = true;
                            return Ok(Outcome::ControlClosed);
                        }
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
                        Some(Command::Quit) if opening => {
                            self.deferred = Some(line);
                            return Ok(Outcome::Quit);
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

    /// Whether the command held back during the transfer is QUIT.
    fn quit_deferred(&self) -> bool {
        matches!(&self.deferred, Some(Line::Command(text))
            if matches!(command::parse(text), Ok(Command::Quit)))
    }

    /// Whether the client has closed its side of the control connection
    /// (seen by the loop, or pending: its FIN may arrive with the data's).
    fn control_hung_up(&self) -> bool {
        if self.control_closed {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: self.control_fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout; the fd is owned by
        // `self.control` and outlives this call.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// The final reply of a transfer.
    async fn conclude(&mut self, outcome: Outcome<()>, success: &str) -> io::Result<Flow> {
        if self.control_closed {
            return Ok(Flow::Close); // nobody to reply to
        }
        match outcome {
            Outcome::Finished(Ok(())) => self.reply(226, success).await?,
            Outcome::Finished(Err(e)) if LocalError::is_local(&e) => {
                self.send(storage::io_reply(&e)).await?
            }
            Outcome::Finished(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) =>
            {
                self.reply(452, "Insufficient storage space").await?
            }
            Outcome::Finished(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                self.reply(426, "Data connection timed out; transfer aborted")
                    .await?
            }
            Outcome::Finished(Err(_)) => {
                self.reply(426, "Connection closed; transfer aborted")
                    .await?
            }
            Outcome::Aborted => {
                self.reply(426, "Transfer aborted").await?;
                self.reply(226, "ABOR successful").await?;
            }
            // The QUIT, held back, is answered next.
            Outcome::Quit => self.reply(426, "Transfer abandoned: QUIT").await?,
            Outcome::ControlClosed => return Ok(Flow::Close),
            Outcome::ShuttingDown => {
                self.reply(426, "Transfer aborted: the server is shutting down")
                    .await?;
                self.reply(421, "Server is shutting down, closing control connection")
                    .await?;
                return Ok(Flow::Close);
            }
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

    /// How long a data connection may move nothing before its transfer is
    /// aborted.
    fn data_timeout(&self) -> std::time::Duration {
        self.shared.config.limits.data_timeout()
    }

    fn mode_name(&self) -> &'static str {
        if self.transfer_type == TransferType::Ascii {
            "ASCII"
        } else {
            "BINARY"
        }
    }

    fn log_transfer<T>(
        &self,
        op: &str,
        path: &VPath,
        progress: &Progress,
        started: Instant,
        outcome: &Outcome<T>,
    ) {
        let (result, error) = match outcome {
            Outcome::Finished(Ok(_)) => ("ok", None),
            Outcome::Finished(Err(e)) => ("failed", Some(e.to_string())),
            Outcome::Aborted | Outcome::Quit => ("aborted", None),
            Outcome::ControlClosed => ("interrupted", None),
            Outcome::ShuttingDown => ("shutdown", None),
        };
        let bytes = progress.load(Ordering::Relaxed);
        let elapsed = started.elapsed();
        let direction = if op == "STOR" { "in" } else { "out" };
        self.shared
            .metrics
            .transfer(op, direction, bytes, elapsed.as_secs_f64());
        tracing::info!(
            op,
            // Escaped as in Rust's Debug (line breaks, terminal escapes), so
            // what the client chose cannot forge or repaint log lines.
            path = %path.to_string().escape_debug(),
            bytes,
            duration_ms = elapsed.as_millis() as u64,
            result,
            error,
            "transfer"
        );
    }
}

impl ListKind {
    fn verb(self) -> &'static str {
        match self {
            ListKind::List => "LIST",
            ListKind::Nlst => "NLST",
            ListKind::Mlsd => "MLSD",
        }
    }
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Finished(r) => Outcome::Finished(r.map(f)),
            Outcome::Aborted => Outcome::Aborted,
            Outcome::Quit => Outcome::Quit,
            Outcome::ControlClosed => Outcome::ControlClosed,
            Outcome::ShuttingDown => Outcome::ShuttingDown,
        }
    }
}

/// The TCP connection under a data connection, if it is not detached.
fn data_tcp(data: &IdleTimeout<MaybeTls>) -> Option<&tokio::net::TcpStream> {
    data.get_ref().tcp()
}
