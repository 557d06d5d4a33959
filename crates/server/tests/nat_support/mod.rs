//! Real NAT for the FTP tests, built from Linux network namespaces:
//!
//! ```text
//! client 10.213.1.2 --- 10.213.1.1 router 10.213.2.1 --- 10.213.2.2 lb 10.213.3.1 --- 10.213.3.2 server
//!                       (MASQUERADE)                    (DNAT VIP 10.213.100.10)
//! ```
//!
//! The client reaches the server only through the virtual IP, and the server
//! sees the client as the router's address, as behind a home router and a
//! cloud load balancer. Namespaces are named `kftp-<pid>-<n>-<role>`, and
//! veths are created directly inside them, so tests run in parallel (also
//! with other test processes) and nothing touches the host's network.
//! Dropping a `Topology` deletes its namespaces, and with them every
//! interface and iptables rule.
//!
//! These tests need root, iproute2, iptables, curl and lftp. Without them
//! they fail, never skip: run `make deps` and the tests as root.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 2);
/// The router's outside address: the client as the server sees it.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 2, 1);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 3, 2);
/// The load balancer's virtual IP, the only server address the client can reach.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 213, 100, 10);
/// The FTP port on the VIP, DNATed to `SERVER_PORT` on the server.
pub const FTP_PORT: u16 = 21;
pub const SERVER_PORT: u16 = 2121;
pub const PASSIVE_PORTS: (u16, u16) = (30000, 30009);
pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";

#[derive(Debug, Clone, Copy)]
pub enum Role {
    Client,
    Router,
    Lb,
    Server,
}

const ROLES: [Role; 4] = [Role::Client, Role::Router, Role::Lb, Role::Server];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Router => "router",
            Role::Lb => "lb",
            Role::Server => "server",
        }
    }
}

#[derive(Default)]
pub struct TopologyBuilder {
    ftp_helper: bool,
}

impl TopologyBuilder {
    /// Attaches the kernel's FTP conntrack helper on the router and the lb,
    /// and SNATs the server's outbound connections to the VIP: what active
    /// mode through NAT needs. Never use it for passive tests: the helper
    /// rewrites 227 replies and would hide a wrong advertised address.
    pub fn ftp_conntrack_helper(mut self) -> Self {
        self.ftp_helper = true;
        self
    }

    pub fn build(self) -> Topology {
        preflight();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Created before any namespace, so a failing step still cleans up.
        let topo = Topology {
            prefix: format!("kftp-{}-{n}", std::process::id()),
        };
        for role in ROLES {
            run_ok(&["ip", "netns", "add", &topo.ns(role)]);
            topo.ip(role, "link set lo up");
        }
        topo.link(Role::Client, "to-router", Role::Router, "to-client");
        topo.link(Role::Router, "to-lb", Role::Lb, "to-router");
        topo.link(Role::Lb, "to-server", Role::Server, "to-lb");
        topo.address(Role::Client, "to-router", &format!("{CLIENT_IP}/24"));
        topo.address(Role::Router, "to-client", "10.213.1.1/24");
        topo.address(Role::Router, "to-lb", &format!("{ROUTER_IP}/24"));
        topo.address(Role::Lb, "to-router", "10.213.2.2/24");
        topo.address(Role::Lb, "to-server", "10.213.3.1/24");
        topo.address(Role::Server, "to-lb", &format!("{SERVER_IP}/24"));
        // No dummy interfaces on every kernel; lo holds the VIP just as well.
        topo.ip(Role::Lb, &format!("addr add {VIP}/32 dev lo"));

        topo.ip(Role::Client, "route add default via 10.213.1.1");
        topo.ip(Role::Router, &format!("route add {VIP}/32 via 10.213.2.2"));
        topo.ip(Role::Server, "route add default via 10.213.3.1");
        for role in [Role::Router, Role::Lb] {
            topo.exec_ok(role, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        }

        topo.iptables(
            Role::Router,
            "-t nat -A POSTROUTING -s 10.213.1.0/24 -o to-lb -j MASQUERADE",
        );
        topo.iptables(
            Role::Lb,
            &format!(
                "-t nat -A PREROUTING -d {VIP} -p tcp --dport {FTP_PORT} \
                 -j DNAT --to-destination {SERVER_IP}:{SERVER_PORT}"
            ),
        );
        let (min, max) = PASSIVE_PORTS;
        topo.iptables(
            Role::Lb,
            &format!(
                "-t nat -A PREROUTING -d {VIP} -p tcp --dport {min}:{max} \
                 -j DNAT --to-destination {SERVER_IP}"
            ),
        );
        if self.ftp_helper {
            // Both see the control connection before any DNAT: port 21.
            for role in [Role::Router, Role::Lb] {
                topo.iptables(
                    role,
                    &format!("-t raw -A PREROUTING -p tcp --dport {FTP_PORT} -j CT --helper ftp"),
                );
            }
            topo.iptables(
                Role::Lb,
                &format!(
                    "-t nat -A POSTROUTING -s {SERVER_IP} -o to-router -j SNAT --to-source {VIP}"
                ),
            );
        }
        topo
    }
}

/// Four namespaces wired as in the module docs; deleted on drop.
pub struct Topology {
    prefix: String,
}

impl Topology {
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    pub fn ns(&self, role: Role) -> String {
        format!("{}-{}", self.prefix, role.name())
    }

    /// Runs `cmd` inside the namespace of `role`.
    pub fn exec(&self, role: Role, cmd: &[&str]) -> Output {
        let ns = self.ns(role);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Like `exec`, but panics (with the output) unless `cmd` succeeds.
    pub fn exec_ok(&self, role: Role, cmd: &[&str]) -> Output {
        let out = self.exec(role, cmd);
        assert!(
            out.status.success(),
            "in {}: {cmd:?} failed: {}",
            self.ns(role),
            describe(&out)
        );
        out
    }

    /// A TCP connection opened from inside the namespace of `role`.
    pub fn connect(&self, role: Role, to: SocketAddrV4) -> io::Result<TcpStream> {
        let ns = File::open(format!("/run/netns/{}", self.ns(role)))?;
        // The network namespace is per thread: a scratch thread joins `ns`
        // to create the socket, which stays in it wherever it is used.
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a valid namespace fd; affects only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))
            })
            .join()
            .expect("connect thread panicked")
        })
    }

    fn ip(&self, role: Role, args: &str) {
        let mut cmd = vec!["ip", "-n"];
        let ns = self.ns(role);
        cmd.push(&ns);
        cmd.extend(args.split_whitespace());
        run_ok(&cmd);
    }

    fn link(&self, a: Role, a_if: &str, b: Role, b_if: &str) {
        let (a_ns, b_ns) = (self.ns(a), self.ns(b));
        run_ok(&[
            "ip", "link", "add", a_if, "netns", &a_ns, "type", "veth", "peer", "name", b_if,
            "netns", &b_ns,
        ]);
    }

    fn address(&self, role: Role, dev: &str, cidr: &str) {
        self.ip(role, &format!("addr add {cidr} dev {dev}"));
        self.ip(role, &format!("link set {dev} up"));
    }

    fn iptables(&self, role: Role, rule: &str) {
        let mut cmd = vec!["iptables", "-w"];
        cmd.extend(rule.split_whitespace());
        self.exec_ok(role, &cmd);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for role in ROLES {
            // Also runs after a failed build, when some never existed.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Fails, loudly, where the tests cannot build namespaces.
fn preflight() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the NAT tests need root (network namespaces, iptables) but run as uid {euid}; \
         run them as root, e.g. `sudo -E cargo test -p kubeftp-server --test nat`"
    );
    for (tool, flag) in [
        ("ip", "-V"),
        ("iptables", "--version"),
        ("curl", "--version"),
        ("lftp", "--version"),
        ("timeout", "--version"),
    ] {
        if let Err(e) = Command::new(tool).arg(flag).output() {
            panic!("the NAT tests need `{tool}`, which cannot run ({e}); run `make deps`");
        }
    }
}

fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &[&str]) {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", describe(&out));
}

/// Exit status and output, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `len` random bytes.
pub fn random_bytes(len: u64) -> Vec<u8> {
    let mut data = Vec::new();
    File::open("/dev/urandom")
        .and_then(|f| f.take(len).read_to_end(&mut data))
        .expect("reading /dev/urandom");
    data
}

/// A kubeftp-server running in the server namespace with `alice`/`secret`
/// in a users file; killed on drop.
pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server with `--listen 0.0.0.0:SERVER_PORT`, the passive
    /// range the lb forwards, `extra` flags, and waits for its banner.
    pub fn start(topo: &Topology, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let users = dir.path().join("users.toml");
        std::fs::write(
            &users,
            format!(
                "[[user]]\nname = \"{USER}\"\npassword-hash = \"{}\"\n",
                password_hash()
            ),
        )
        .unwrap();
        let root = dir.path().join("root");
        let log = File::create(dir.path().join("server.log")).unwrap();
        let (min, max) = PASSIVE_PORTS;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.ns(Role::Server), server_bin()])
            .arg("--root")
            .arg(&root)
            .arg("--listen")
            .arg(format!("0.0.0.0:{SERVER_PORT}"))
            .arg("--passive-ports")
            .arg(format!("{min}-{max}"))
            .arg("--users-file")
            .arg(&users)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting kubeftp-server");

        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if line.starts_with("kubeftp-server listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        let server = Server { child, dir };
        // Generous: the machine may be busy compiling something else.
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!(
                "kubeftp-server printed no banner within 60 s (args {extra:?})\n{}",
                server.log()
            );
        }
        server
    }

    /// The served root; the user's files are in `USER/` below it.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("root").join(USER)
    }

    /// A scratch directory that lives as long as the server.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's log so far (stderr), for assertion messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        format!("--- server log\n{log}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `ip netns exec` execs the server, so this is the server's pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kubeftp-server")
}

/// The hash of `PASSWORD`, computed once per test process.
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut child = Command::new(server_bin())
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running kubeftp-server hash-password");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "hash-password: {}", describe(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}
