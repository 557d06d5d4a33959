//! Starting the two servers on loopback with equivalent setups: the same
//! files (hard links to one copy, so they share the page cache), passive
//! ranges of the same size, limits high enough for 1000 sessions, and the
//! same kind of login: a password account on each (see [`LOGINS`]).

use std::fs;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use tokio::io::AsyncReadExt;

use crate::cpu_group::CpuGroup;
use crate::{cpus, mem};

/// Passive ports per server: disjoint ranges of the same size, between the
/// control ports (21210, 21211) and the kernel's ephemeral range
/// (32768-60999), so client sockets never hold them. vsftpd binds a port per PASV, picked at random with 9 tries, and
/// holds it until the transfer command; the timed concurrent runs open
/// every data connection before the clock starts, so 1000 sessions hold
/// 1000 ports at once: a range of 4000 keeps its odds of a failed PASV
/// below one in a million. kubeftp binds the whole range at startup (its
/// PSS includes the 4000 listeners) and would manage with 10.
pub const PASSIVE_PORTS: u16 = 4000;
pub const KUBEFTP_PASSIVE: u16 = 22000;
pub const VSFTPD_PASSIVE: u16 = KUBEFTP_PASSIVE + PASSIVE_PORTS;

/// The [`PASSIVE_PORTS`] ports from `first`.
pub fn passive_range(first: u16) -> RangeInclusive<u16> {
    first..=first + PASSIVE_PORTS - 1
}
const USER: &str = "bench";
/// vsftpd's account: a local system user with no shell, made once.
const VSFTPD_USER: &str = "kubeftp-bench";
/// vsftpd's PAM service: Debian's `vsftpd` stack without pam_shells (the
/// account has no shell) and without /etc/ftpusers.
const PAM_SERVICE: &str = "kubeftp-bench-vsftpd";

/// How each server checks logins, for the report.
pub const LOGINS: &str = "Logins: both servers check a password for an account that may write: \
     kubeftp an argon2id hash in its users file (its only kind of writable account), \
     vsftpd a local system user `kubeftp-bench` through PAM (pam_unix, /etc/shadow; \
     PAM service kubeftp-bench-vsftpd), chrooted to its directory. The password is \
     random per run. Logins happen outside every timed window; the idle-memory figure \
     is taken after them.";

pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub user: &'static str,
    pub pass: String,
    /// FTP path of the directory holding the test files.
    pub dir: &'static str,
    /// The same directory on disk.
    pub disk_dir: PathBuf,
    /// An upload is on disk when the server answers 226.
    pub fsyncs_uploads: bool,
    child: Child,
    /// Holds the server's processes, for their CPU time; `None` where no
    /// cgroup could be made (the figure then reads n/a).
    cpu: Option<CpuGroup>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// PSS of the server's whole process tree, in bytes.
    pub fn pss(&self) -> Result<u64> {
        mem::tree_pss(self.pid())
    }

    /// CPU seconds used by the server's processes since it started,
    /// counting those that have exited; NaN without a cgroup.
    pub fn cpu_seconds(&self) -> f64 {
        let usage = self.cpu.as_ref().map(|group| group.usage());
        match usage {
            Some(Ok(usage)) => usage.as_secs_f64(),
            Some(Err(e)) => {
                eprintln!("warning: {}'s CPU time: {e:#}", self.name);
                f64::NAN
            }
            None => f64::NAN,
        }
    }

    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // vsftpd's session processes first, then the listener.
        if let Ok(tree) = mem::descendants(self.pid()) {
            for pid in tree.iter().rev() {
                // SAFETY: plain kill(2) on pids of our own child's tree.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
        self.child.wait().ok();
    }
}

/// Fills `home` with the test files: hard links into `data`.
fn populate(data: &Path, home: &Path) -> Result<()> {
    fs::create_dir_all(home.join("list"))?;
    fs::create_dir_all(home.join("up"))?;
    for entry in fs::read_dir(data)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() {
            fs::hard_link(entry.path(), home.join(&name))?;
        }
    }
    for entry in fs::read_dir(data.join("list"))? {
        let entry = entry?;
        fs::hard_link(entry.path(), home.join("list").join(entry.file_name()))?;
    }
    Ok(())
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn log_file(path: &Path) -> Result<Stdio> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(f.into())
}

/// A fresh random password, for both servers' accounts.
pub fn password() -> String {
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(b'a' + rng.random_range(0..26)))
        .collect()
}

/// kubeftp-server with a users file (argon2id hash from `hash-password`),
/// passive ports `passive`, on CPU `cpu` only if given.
pub async fn kubeftp(
    bin: &Path,
    work: &Path,
    port: u16,
    passive: RangeInclusive<u16>,
    password: &str,
    cpu: Option<usize>,
) -> Result<Server> {
    let base = work.join("kubeftp");
    fresh_dir(&base)?;
    let home = base.join("root").join(USER);
    populate(&work.join("data"), &home)?;
    let hash = hash_password(bin, password)?;
    let users = base.join("users.toml");
    fs::write(
        &users,
        format!("[[user]]\nname = \"{USER}\"\npassword-hash = \"{hash}\"\nhome = \"{USER}\"\n"),
    )?;
    let config = base.join("config.toml");
    fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nroot = \"{root}\"\nusers-file = \"{users}\"\n\
             [passive]\nports = \"{first}-{last}\"\n\
             [limits]\nmax-sessions = 5000\nmax-sessions-per-ip = 5000\nidle-timeout-seconds = 3600\n",
            root = base.join("root").display(),
            users = users.display(),
            first = passive.start(),
            last = passive.end(),
        ),
    )?;
    let child = cpus::pin_command(&mut Command::new(bin), cpu)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file(&work.join("kubeftp.log"))?)
        .stderr(log_file(&work.join("kubeftp.log"))?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let server = Server {
        name: "kubeftp",
        fsyncs_uploads: true,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        user: USER,
        pass: password.to_owned(),
        dir: "",
        disk_dir: home,
        cpu: cpu_group("kubeftp", &child),
        child,
    };
    wait_ready(server).await
}

fn hash_password(bin: &Path, password: &str) -> Result<String> {
    let mut child = Command::new(bin)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("kubeftp-server hash-password")?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(password.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("kubeftp-server hash-password failed");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// vsftpd standalone, with the local account [`VSFTPD_USER`] chrooted to
/// the test files, passive ports `passive`; on CPU `cpu` only (its session
/// processes too) if given.
pub async fn vsftpd(
    work: &Path,
    port: u16,
    passive: RangeInclusive<u16>,
    password: &str,
    cpu: Option<usize>,
) -> Result<Server> {
    vsftpd_account(password)?;
    let base = work.join("vsftpd");
    fresh_dir(&base)?;
    let home = base.join("root");
    populate(&work.join("data"), &home)?;
    let status = Command::new("chown")
        .arg(format!("{VSFTPD_USER}:"))
        .arg(&home)
        .arg(home.join("up"))
        .status()?;
    if !status.success() {
        bail!("chown {VSFTPD_USER} {} failed", home.display());
    }
    let config = base.join("vsftpd.conf");
    fs::write(
        &config,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nseccomp_sandbox=NO\n\
             anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
             pam_service_name={PAM_SERVICE}\nuserlist_enable=NO\n\
             local_root={home}\nchroot_local_user=YES\nallow_writeable_chroot=YES\n\
             pasv_enable=YES\npasv_min_port={first}\npasv_max_port={last}\n\
             max_clients=0\nmax_per_ip=0\nidle_session_timeout=3600\n\
             data_connection_timeout=3600\nconnect_from_port_20=NO\n\
             xferlog_enable=YES\nvsftpd_log_file={log}\ndirmessage_enable=NO\n\
             secure_chroot_dir=/var/run/vsftpd/empty\n",
            home = home.display(),
            first = passive.start(),
            last = passive.end(),
            log = work.join("vsftpd-xfer.log").display(),
        ),
    )?;
    let child = cpus::pin_command(&mut Command::new("vsftpd"), cpu)
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file(&work.join("vsftpd.log"))?)
        .stderr(log_file(&work.join("vsftpd.log"))?)
        .process_group(0)
        .spawn()
        .context("starting vsftpd (apt-get install vsftpd)")?;
    let server = Server {
        name: "vsftpd",
        fsyncs_uploads: false,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        user: VSFTPD_USER,
        pass: password.to_owned(),
        dir: "",
        disk_dir: home,
        cpu: cpu_group("vsftpd", &child),
        child,
    };
    wait_ready(server).await
}

/// Makes the system user vsftpd logs in (home /, no shell) if missing,
/// sets its password, and writes its PAM service.
fn vsftpd_account(password: &str) -> Result<()> {
    let exists = Command::new("id")
        .arg(VSFTPD_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/"])
            .args(["--shell", "/usr/sbin/nologin", VSFTPD_USER])
            .status()
            .context("useradd")?;
        if !status.success() {
            bail!("useradd {VSFTPD_USER} failed (run as root)");
        }
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .context("chpasswd")?;
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{VSFTPD_USER}:{password}")?;
    if !child.wait()?.success() {
        bail!("chpasswd for {VSFTPD_USER} failed");
    }
    fs::write(
        Path::new("/etc/pam.d").join(PAM_SERVICE),
        "# kubeftp-bench (make bench-ftp): Debian's vsftpd PAM stack without\n\
         # /etc/ftpusers and pam_shells; its one user has no shell.\n\
         @include common-account\n@include common-session\n@include common-auth\n",
    )
    .context("writing the PAM service")?;
    Ok(())
}

/// A cgroup for the server just started, before it takes a connection
/// (vsftpd's session processes then start in it).
fn cpu_group(name: &str, child: &Child) -> Option<CpuGroup> {
    CpuGroup::new(name, child.id())
        .inspect_err(|e| eprintln!("warning: no CPU figures for {name}: {e:#}"))
        .ok()
}

/// Waits until the server answers with a banner.
async fn wait_ready(mut server: Server) -> Result<Server> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited at startup: {status} (see its log)", server.name);
        }
        if let Ok(mut s) = tokio::net::TcpStream::connect(server.addr).await {
            let mut b = [0u8; 4];
            if s.read_exact(&mut b).await.is_ok() && &b[..3] == b"220" {
                return Ok(server);
            }
        }
        if Instant::now() > deadline {
            bail!("{} did not answer on {}", server.name, server.addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
