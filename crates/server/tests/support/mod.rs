//! Shared by the server's integration tests: an in-process server on
//! loopback with known accounts, a raw FTP client for protocol-level
//! assertions, and runners for the real clients (curl, lftp, Python ftplib).

#![allow(dead_code)] // each test binary uses a different subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kubeftp_server::config::PortRange;
use kubeftp_server::{Config, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

pub const ALICE: (&str, &str) = ("alice", "alice-pw");
pub const READER: (&str, &str) = ("reader", "reader-pw");

/// A server running inside the test's runtime, on a random passive range.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The ops HTTP listener, when the config asked for one.
    pub ops: Option<SocketAddr>,
    /// The implicit FTPS listener, when the config asked for one.
    pub implicit_tls: Option<SocketAddr>,
    pub root: tempfile::TempDir,
    pub users_file: PathBuf,
    pub ports: PortRange,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The users file every test server starts with: alice (read-write) and
/// reader (read-only, sharing alice's home).
pub fn users_toml(extra: &str) -> String {
    static HASHES: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (a, r) = HASHES.get_or_init(|| {
        (
            kubeftp_server::users::hash_password(ALICE.1),
            bcrypt::hash(READER.1, 4).unwrap(),
        )
    });
    format!(
        "[[user]]\nname = \"alice\"\npassword-hash = \"{a}\"\n\n\
         [[user]]\nname = \"reader\"\npassword-hash = \"{r}\"\nhome = \"alice\"\nread-only = true\n{extra}"
    )
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the default test config.
    pub async fn start_with(adjust: impl Fn(&mut Config)) -> TestServer {
        Self::start_with_users("", adjust).await
    }

    /// [`TestServer::start_with`], with `extra_users` (TOML `[[user]]`
    /// tables) added to the users file.
    pub async fn start_with_users(extra_users: &str, adjust: impl Fn(&mut Config)) -> TestServer {
        let root = tempfile::tempdir().unwrap();
        let users_file = root.path().join("users.toml");
        std::fs::write(&users_file, users_toml(extra_users)).unwrap();
        for _ in 0..100 {
            let base = 20000 + rand::random::<u16>() % 40000;
            let mut config = Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                root: root.path().join("srv"),
                users_file: Some(users_file.clone()),
                ..Config::default()
            };
            config.passive.ports = PortRange {
                min: base,
                max: base + 9,
            };
            config.limits.failed_login_delay_ms = 10;
            // Tests log in wrongly on purpose; the lockout has its own test.
            config.limits.max_failed_logins_per_ip = 1000;
            adjust(&mut config);
            let ports = config.passive.ports;
            match Server::bind(config).await {
                Ok(server) => {
                    std::fs::create_dir_all(root.path().join("srv/alice")).unwrap();
                    let addr = server.local_addr();
                    let (ops, implicit_tls) = (server.ops_addr(), server.implicit_tls_addr());
                    let task = tokio::spawn(async move {
                        server.run(std::future::pending()).await.unwrap();
                    });
                    return TestServer {
                        addr,
                        ops,
                        implicit_tls,
                        root,
                        users_file,
                        ports,
                        task,
                    };
                }
                Err(e) if format!("{e:#}").contains("in use") => continue,
                Err(e) => panic!("server did not start: {e:#}"),
            }
        }
        panic!("no free passive port range found");
    }

    /// The on-disk path of a file in alice's home.
    pub fn alice_path(&self, name: &str) -> PathBuf {
        self.root.path().join("srv/alice").join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ftp://{}{path}", self.addr)
    }
}

/// A minimal FTP client that shows every reply, for protocol assertions.
pub struct RawClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub local: SocketAddr,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        Self::connect_from(addr, None).await
    }

    /// Connects from a chosen loopback source address (127.0.0.x), so tests
    /// can play many client IPs.
    pub async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> RawClient {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .unwrap();
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        let (r, w) = stream.into_split();
        let mut client = RawClient {
            reader: BufReader::new(r),
            writer: w,
            local,
        };
        let (code, _) = client.read_reply().await;
        assert_eq!(code, 220);
        client
    }

    pub async fn login(addr: SocketAddr, credentials: (&str, &str)) -> RawClient {
        Self::login_from(addr, None, credentials).await
    }

    /// Logs in from a chosen loopback source address.
    pub async fn login_from(
        addr: SocketAddr,
        source: Option<IpAddr>,
        (user, pass): (&str, &str),
    ) -> RawClient {
        let mut c = Self::connect_from(addr, source).await;
        c.expect(&format!("USER {user}"), 331).await;
        c.expect(&format!("PASS {pass}"), 230).await;
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Sends a command and returns the reply code and full text.
    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    /// Sends a command and asserts the reply code.
    pub async fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line).await;
        assert_eq!(got, code, "{line} -> {text}");
        text
    }

    /// Reads one reply, multi-line ones included. Code 0 means the server
    /// closed the connection.
    pub async fn read_reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            let mut first = String::new();
            if self.reader.read_line(&mut first).await.unwrap_or(0) == 0 {
                return 0;
            }
            text.push_str(&first);
            let code: u16 = first
                .get(..3)
                .and_then(|c| c.parse().ok())
                .expect("reply starts with a code");
            if first.as_bytes().get(3) == Some(&b'-') {
                let end = format!("{code} ");
                loop {
                    let mut line = String::new();
                    if self.reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    text.push_str(&line);
                    if line.starts_with(&end) {
                        break;
                    }
                }
            }
            code
        });
        let code = read.await.expect("reply within 20 s");
        (code, text)
    }

    /// PASV: returns the advertised address.
    pub async fn pasv(&mut self) -> SocketAddr {
        let text = self.expect("PASV", 227).await;
        parse_227(&text)
    }

    /// EPSV: returns the port.
    pub async fn epsv(&mut self) -> u16 {
        let text = self.expect("EPSV", 229).await;
        let inner = text.split("|||").nth(1).unwrap();
        inner
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap()
    }

    /// Connects a data connection from this client's own IP.
    pub async fn data_connect(&self, to: SocketAddr) -> TcpStream {
        let socket = if to.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .unwrap();
        socket.bind(SocketAddr::new(self.local.ip(), 0)).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// PASV, a data connection, then `command` (RETR, LIST ...) answered
    /// with 150: the data connection, to read at the test's own pace.
    pub async fn start_download(&mut self, command: &str) -> TcpStream {
        let addr = self.pasv().await;
        let data = self
            .data_connect(SocketAddr::new(self.server_ip(), addr.port()))
            .await;
        self.expect(command, 150).await;
        data
    }

    /// PASV + `command` + read all data + final reply.
    pub async fn transfer_in(&mut self, command: &str) -> (u16, Vec<u8>) {
        let addr = self.pasv().await;
        let server_ip = self.server_ip();
        let mut data = self
            .data_connect(SocketAddr::new(server_ip, addr.port()))
            .await;
        let (code, text) = self.cmd(command).await;
        if code != 150 {
            return (code, text.into_bytes());
        }
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).await.unwrap();
        let (code, _) = self.read_reply().await;
        (code, buf)
    }

    /// PASV + STOR-like `command` sending `bytes`.
    pub async fn transfer_out(&mut self, command: &str, bytes: &[u8]) -> u16 {
        let addr = self.pasv().await;
        let mut data = self
            .data_connect(SocketAddr::new(self.server_ip(), addr.port()))
            .await;
        let (code, text) = self.cmd(command).await;
        assert_eq!(code, 150, "{command} -> {text}");
        data.write_all(bytes).await.unwrap();
        data.shutdown().await.unwrap();
        drop(data);
        self.read_reply().await.0
    }

    pub fn server_ip(&self) -> IpAddr {
        self.writer.peer_addr().unwrap().ip()
    }
}

pub fn parse_227(text: &str) -> SocketAddr {
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    let ip = Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
    SocketAddr::new(ip.into(), n[4] << 8 | n[5])
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

/// Runs an external client to completion on the blocking pool.
pub async fn run(program: &str, args: Vec<String>, dir: &Path) -> Output {
    let program = program.to_string();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .arg("60")
            .arg(&program)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (make deps installs it): {e}"))
    })
    .await
    .unwrap()
}

/// Asserts a client run succeeded, showing its output otherwise.
pub fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// GET with curl (the ops endpoints): status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", &url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_string())
}

/// The value of one sample line (`name{labels} value`) in a metrics page.
pub fn metric(page: &str, prefix: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{page}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, as PEM
/// files in `dir`: ca.pem, tls.crt, tls.key.
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    pub fn generate(dir: &Path, name: &str) -> TestCerts {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("kubeftp test CA {name}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let certs = TestCerts {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-tls.crt")),
            key: dir.join(format!("{name}-tls.key")),
        };
        std::fs::write(&certs.ca, ca.pem()).unwrap();
        std::fs::write(&certs.cert, cert.pem()).unwrap();
        std::fs::write(&certs.key, key.serialize_pem()).unwrap();
        certs
    }
}
