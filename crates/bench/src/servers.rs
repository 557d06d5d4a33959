//! Starting the two servers on loopback with equivalent setups: the same
//! files (hard links to one copy, so they share the page cache), passive
//! ranges of the same size, and limits high enough for 1000 sessions.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;

use crate::mem;

/// Passive ports per server (disjoint ranges of the same size).
pub const PASSIVE_PORTS: u16 = 200;
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub user: &'static str,
    pub pass: &'static str,
    /// FTP path of the directory holding the test files.
    pub dir: &'static str,
    /// The same directory on disk.
    pub disk_dir: PathBuf,
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// PSS of the server's whole process tree, in bytes.
    pub fn pss(&self) -> Result<u64> {
        mem::tree_pss(self.pid())
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

/// kubeftp-server with a users file (argon2id hash from `hash-password`).
/// `env` is added to the server's environment (allocator tunables).
pub async fn kubeftp(
    bin: &Path,
    work: &Path,
    port: u16,
    passive: u16,
    env: &[(&str, &str)],
) -> Result<Server> {
    let base = work.join("kubeftp");
    fresh_dir(&base)?;
    let home = base.join("root").join(USER);
    populate(&work.join("data"), &home)?;
    let hash = hash_password(bin)?;
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
             [passive]\nports = \"{passive}-{last}\"\n\
             [limits]\nmax-sessions = 5000\nmax-sessions-per-ip = 5000\nidle-timeout-seconds = 3600\n",
            root = base.join("root").display(),
            users = users.display(),
            last = passive + PASSIVE_PORTS - 1,
        ),
    )?;
    let child = Command::new(bin)
        .envs(env.iter().copied())
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
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        user: USER,
        pass: PASSWORD,
        dir: "",
        disk_dir: home,
        child,
    };
    wait_ready(server).await
}

fn hash_password(bin: &Path) -> Result<String> {
    let mut child = Command::new(bin)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("kubeftp-server hash-password")?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(PASSWORD.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("kubeftp-server hash-password failed");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// vsftpd standalone, anonymous with uploads allowed. Its chroot (the anon
/// root) must not be writable, so the files live in `pub/`, owned by `ftp`.
pub async fn vsftpd(work: &Path, port: u16, passive: u16) -> Result<Server> {
    let base = work.join("vsftpd");
    fresh_dir(&base)?;
    let root = base.join("root");
    let home = root.join("pub");
    populate(&work.join("data"), &home)?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
    let status = Command::new("chown")
        .args(["ftp:ftp"])
        .arg(&home)
        .arg(home.join("up"))
        .status()?;
    if !status.success() {
        bail!(
            "chown ftp {} failed (is there an ftp user?)",
            home.display()
        );
    }
    let config = base.join("vsftpd.conf");
    fs::write(
        &config,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nseccomp_sandbox=NO\n\
             anonymous_enable=YES\nlocal_enable=NO\nno_anon_password=YES\n\
             anon_root={root}\nwrite_enable=YES\nanon_upload_enable=YES\n\
             anon_mkdir_write_enable=YES\nanon_other_write_enable=YES\nanon_umask=022\n\
             pasv_enable=YES\npasv_min_port={passive}\npasv_max_port={last}\n\
             max_clients=0\nmax_per_ip=0\nidle_session_timeout=3600\n\
             data_connection_timeout=3600\nconnect_from_port_20=NO\n\
             xferlog_enable=YES\nvsftpd_log_file={log}\ndirmessage_enable=NO\n\
             secure_chroot_dir=/var/run/vsftpd/empty\n",
            root = root.display(),
            last = passive + PASSIVE_PORTS - 1,
            log = work.join("vsftpd-xfer.log").display(),
        ),
    )?;
    let child = Command::new("vsftpd")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file(&work.join("vsftpd.log"))?)
        .stderr(log_file(&work.join("vsftpd.log"))?)
        .process_group(0)
        .spawn()
        .context("starting vsftpd (apt-get install vsftpd)")?;
    let server = Server {
        name: "vsftpd",
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        user: "anonymous",
        pass: "bench@",
        dir: "/pub",
        disk_dir: home,
        child,
    };
    wait_ready(server).await
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
