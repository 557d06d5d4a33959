//! The command line: flags for the common settings on top of an optional
//! config file, and the `hash-password` helper.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::address::Advertised;
use crate::config::{Config, PortRange};
use crate::server::Server;

#[derive(Debug, Parser)]
#[command(
    name = "kubeftp-server",
    version,
    about = "An FTP server built for NAT and Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommands>,
    /// TOML config file; flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory to serve (created if missing) [default: ./ftp-root].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Control connection address [default: 127.0.0.1:2121].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Passive data ports, MIN-MAX [default: 30000-30009].
    #[arg(long, value_name = "MIN-MAX")]
    pub passive_ports: Option<PortRange>,
    /// IPv4 address or DNS name to advertise in PASV replies.
    #[arg(long, value_name = "ADDR")]
    pub advertised_address: Option<Advertised>,
    /// File holding the advertised address, watched for changes.
    #[arg(long, value_name = "FILE")]
    pub advertised_address_file: Option<PathBuf>,
    /// TOML users file with argon2/bcrypt hashes, re-read on change.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Allow read-only anonymous logins.
    #[arg(long)]
    pub anonymous: bool,
    /// Allow active mode (PORT/EPRT) back to the client's own address.
    #[arg(long)]
    pub active_mode: bool,
    /// HTTP listener for /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub ops_listen: Option<std::net::SocketAddr>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Subcommands {
    /// Read a password on stdin and print an argon2id hash for the users file.
    HashPassword,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// The config file (if any) with the flags applied on top.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(root) = &self.root {
            config.root = root.clone();
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(ports) = self.passive_ports {
            config.passive.ports = ports;
        }
        if let Some(addr) = &self.advertised_address {
            config.passive.advertised_address = Some(addr.clone());
        }
        if let Some(file) = &self.advertised_address_file {
            config.passive.advertised_address_file = Some(file.clone());
        }
        if let Some(file) = &self.users_file {
            config.users_file = Some(file.clone());
        }
        if let Some(ops) = self.ops_listen {
            config.ops.listen = Some(ops);
        }
        config.anonymous.enabled |= self.anonymous;
        config.active.enabled |= self.active_mode;
        Ok(config)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Subcommands::HashPassword) = cli.command {
        return hash_password();
    }
    init_logging(cli.log_format);
    // Past a file-size limit (ulimit -f) a write fails with EFBIG, which
    // the upload answers with 552; the default action of SIGXFSZ would
    // kill the server with every session.
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread
    // starts; no handler runs.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let config = cli.to_config()?;
    let dev_account = (config.users_file.is_none()
        && !config.anonymous.enabled
        && config.listen.ip().is_loopback())
    .then(DevAccount::generate);
    return_large_allocations_to_the_os();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let users = dev_account.as_ref().map(DevAccount::database);
        let server = Server::bind_with_accounts(config, users).await?;
        print_banner(&server, dev_account.as_ref());
        server.run(shutdown_signal()).await
    })
}

/// A first run on a laptop, with no users file: one account for this run
/// only, with a random password shown once on the terminal. Only offered on
/// loopback; anonymous access stays off unless asked for.
struct DevAccount {
    password: String,
}

impl DevAccount {
    const NAME: &str = "dev";

    fn generate() -> DevAccount {
        use rand::distr::{Alphanumeric, SampleString};
        DevAccount {
            password: Alphanumeric.sample_string(&mut rand::rng(), 16),
        }
    }

    fn database(&self) -> crate::users::UserDb {
        let account = crate::users::Account {
            name: Self::NAME.into(),
            home: "/".into(),
            read_only: false,
        };
        crate::users::UserDb::single(account, &self.password)
    }
}

/// Says where the server listens and how to connect. A closed stdout (a
/// supervisor or pipe that stopped reading) does not stop the server: the
/// banner is a courtesy, so write errors are ignored.
fn print_banner(server: &Server, dev: Option<&DevAccount>) {
    let _ = write_banner(&mut std::io::stdout().lock(), server, dev);
}

fn write_banner(
    out: &mut impl std::io::Write,
    server: &Server,
    dev: Option<&DevAccount>,
) -> std::io::Result<()> {
    let config = server.config();
    let addr = server.local_addr();
    writeln!(
        out,
        "kubeftp-server listening on ftp://{addr} (passive ports {})",
        config.passive.ports
    )?;
    writeln!(out, "serving {}", config.root.display())?;
    if let Some(addr) = server.implicit_tls_addr() {
        writeln!(out, "implicit FTPS on ftps://{addr}")?;
    }
    if let Some(addr) = server.ops_addr() {
        writeln!(
            out,
            "ops endpoints on http://{addr} (/healthz /readyz /metrics)"
        )?;
    }
    let tls_required = config.tls.mode == crate::tls::TlsMode::Required;
    if let Some(dev) = dev {
        let (name, password) = (DevAccount::NAME, &dev.password);
        writeln!(
            out,
            "no users file: for this run only, user {name} password {password}"
        )?;
        let login = format!("{name}:{password}");
        writeln!(out, "{}", try_line(addr, tls_required, Some(&login)))?;
        writeln!(
            out,
            "for lasting accounts: kubeftp-server hash-password, then --users-file (see README)"
        )?;
    } else if config.anonymous.enabled {
        writeln!(out, "{}", try_line(addr, tls_required, None))?;
    } else if config.users_file.is_none() {
        writeln!(
            out,
            "no users file and no anonymous access: nobody can log in (give --users-file, or --anonymous)"
        )?;
    }
    out.flush()
}

/// The `try: curl ...` line: a command that works against this server.
/// Under `tls.mode = "required"` curl must use TLS, and trust the server's
/// certificate.
fn try_line(addr: std::net::SocketAddr, tls_required: bool, login: Option<&str>) -> String {
    let login = login.map(|l| format!("-u {l} ")).unwrap_or_default();
    if tls_required {
        format!(
            "try: curl --ssl-reqd {login}ftp://{addr}/ (add --cacert with the CA of tls.cert-file)"
        )
    } else {
        format!("try: curl {login}ftp://{addr}/")
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a pod's log is a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `kubeftp-server hash-password`: a prompt without echo on a terminal,
/// otherwise the first line of stdin.
fn hash_password() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    println!("{}", crate::users::hash_password(&password));
    Ok(())
}

/// glibc raises its mmap threshold each time a large block is freed, after
/// which large blocks come from per-thread arenas and stay there. Each login
/// frees argon2's 19 MiB on some blocking thread, so without this an idle
/// session cost ~6.6 MiB of retained heap (measured by `make bench-ftp`);
/// with a fixed threshold such blocks are mmapped and returned when freed.
fn return_large_allocations_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_curl_uses_tls_when_the_server_requires_it() {
        let addr = "127.0.0.1:2121".parse().unwrap();
        assert_eq!(
            try_line(addr, false, Some("dev:pw")),
            "try: curl -u dev:pw ftp://127.0.0.1:2121/"
        );
        let tls = try_line(addr, true, None);
        assert!(
            tls.starts_with("try: curl --ssl-reqd ftp://127.0.0.1:2121/"),
            "{tls}"
        );
        assert!(tls.contains("--cacert"), "{tls}");
    }
}
