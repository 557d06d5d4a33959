//! Passive and active FTP through real NAT (see `nat_support` for the
//! topology): a client behind a masquerading router reaches the server only
//! through a load balancer's DNATed virtual IP.
//!
//! Needs root, iproute2, iptables, curl and lftp; fails (never skips)
//! without them.

mod nat_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nat_support::{
    FTP_PORT, PASSWORD, ROUTER_IP, Role, SERVER_IP, Server, Topology, USER, VIP, describe,
    random_bytes,
};

const MIB: u64 = 1 << 20;

#[test]
fn passive_transfers_through_nat_when_the_vip_is_advertised() {
    let topo = Topology::builder().build();
    let server = Server::start(&topo, &["--advertised-address", &VIP.to_string()]);
    let data = random_bytes(MIB);

    // curl >= 7.74 ignores the address in a 227 reply and reuses the control
    // connection's unless told not to; the test is about that address.
    let pasv = ["--disable-epsv", "--no-ftp-skip-pasv-ip"];
    let dialogue = curl_round_trip(&topo, &server, &pasv, "curl-pasv.bin", &data);
    assert!(
        dialogue.contains("> PASV"),
        "curl did not use PASV:\n{dialogue}"
    );
    assert!(
        dialogue.contains(&format!("227 Entering Passive Mode ({}", pasv_octets(VIP))),
        "PASV did not advertise the VIP:\n{dialogue}"
    );

    let dialogue = curl_round_trip(&topo, &server, &[], "curl-epsv.bin", &data);
    assert!(
        dialogue.contains("> EPSV"),
        "curl did not use EPSV:\n{dialogue}"
    );
    assert!(
        !dialogue.contains("> PASV"),
        "curl fell back to PASV:\n{dialogue}"
    );

    for (epsv, sent) in [("no", "---> PASV"), ("yes", "---> EPSV")] {
        let name = format!("lftp-epsv-{epsv}.bin");
        let upload = server.scratch().join("lftp-upload");
        let download = server.scratch().join(&name);
        std::fs::write(&upload, &data).unwrap();
        let out = lftp(
            &topo,
            &format!(
                "set ftp:prefer-epsv {epsv}; put {} -o {name}; get {name} -o {}",
                upload.display(),
                download.display()
            ),
        );
        assert!(
            out.status.success(),
            "lftp (prefer-epsv {epsv}): {}\n{}",
            describe(&out),
            server.log()
        );
        let debug = String::from_utf8_lossy(&out.stderr);
        assert!(debug.contains(sent), "lftp never sent {sent}:\n{debug}");
        assert_same(&server.home().join(&name), &data, "lftp upload");
        assert_same(&download, &data, "lftp download");
    }
}

/// The negative control: without the VIP in PASV replies, NAT breaks PASV.
/// If this passes while the server is wrong, the other tests prove nothing.
#[test]
fn pasv_through_nat_fails_when_the_server_advertises_its_own_address() {
    let topo = Topology::builder().build();
    let server = Server::start(&topo, &["--advertised-address", &SERVER_IP.to_string()]);
    let data = random_bytes(MIB);
    std::fs::create_dir_all(server.home()).unwrap();
    std::fs::write(server.home().join("file.bin"), &data).unwrap();

    let out = curl(
        &topo,
        &[
            "--disable-epsv",
            "--no-ftp-skip-pasv-ip",
            "--connect-timeout",
            "3",
            &url("file.bin"),
            "-o",
            "/dev/null",
        ],
    );
    let dialogue = String::from_utf8_lossy(&out.stderr);
    assert!(
        dialogue.contains(&format!(
            "227 Entering Passive Mode ({}",
            pasv_octets(SERVER_IP)
        )),
        "PASV should advertise the server's own address:\n{dialogue}"
    );
    // 7: could not connect (no route), 28: timed out.
    assert!(
        matches!(out.status.code(), Some(7 | 28)),
        "a PASV download to the server's own address must fail to connect: {}",
        describe(&out)
    );

    // EPSV carries no address and works on this very server, so the failure
    // above is the advertised address alone, not a broken topology.
    let download = server.scratch().join("epsv.bin");
    curl_ok(&topo, &server, &[&url("file.bin"), "-o", path(&download)]);
    assert_same(&download, &data, "EPSV download");
}

#[test]
fn advertised_address_file_switches_pasv_live_on_an_open_session() {
    let topo = Topology::builder().build();
    let dir = tempfile::tempdir().unwrap();
    let address_file = dir.path().join("address");
    write_atomically(&address_file, &SERVER_IP.to_string());
    let mut server = Server::start(&topo, &["--advertised-address-file", path(&address_file)]);
    let pid = server.pid();
    let data = random_bytes(MIB);
    std::fs::create_dir_all(server.home()).unwrap();
    std::fs::write(server.home().join("file.bin"), &data).unwrap();

    let control = topo
        .connect(Role::Client, SocketAddrV4::new(VIP, FTP_PORT))
        .expect("control connection to the VIP");
    let mut ftp = FtpClient::new(control);
    ftp.expect(None, 220);
    ftp.expect(Some(&format!("USER {USER}")), 331);
    ftp.expect(Some(&format!("PASS {PASSWORD}")), 230);
    ftp.expect(Some("TYPE I"), 200);
    let status = ftp.expect(Some("STAT"), 211);
    assert!(
        status.contains(&format!("Connected from {ROUTER_IP}")),
        "the server should see the client as the router (masquerade):\n{status}"
    );
    assert_eq!(*ftp.pasv().ip(), SERVER_IP, "before the switch");

    write_atomically(&address_file, &format!("{VIP}\n"));
    let switched = Instant::now();
    let data_addr = loop {
        let addr = ftp.pasv();
        if *addr.ip() == VIP {
            break addr;
        }
        // The spec's bound: the file is polled every 0.5 s.
        assert!(
            switched.elapsed() < Duration::from_secs(2),
            "PASV still advertises {} 2 s after the address file changed\n{}",
            addr.ip(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // The same session transfers through the VIP.
    let mut data_conn = topo
        .connect(Role::Client, data_addr)
        .unwrap_or_else(|e| panic!("data connection to {data_addr}: {e}\n{}", server.log()));
    ftp.expect(Some("RETR file.bin"), 150);
    let mut received = Vec::new();
    data_conn.read_to_end(&mut received).unwrap();
    ftp.expect(None, 226);
    assert!(
        received == data,
        "RETR through the VIP returned other bytes"
    );
    ftp.expect(Some("NOOP"), 200);
    ftp.expect(Some("QUIT"), 221);
    assert!(
        server.is_running(),
        "the server (pid {pid}) exited\n{}",
        server.log()
    );
}

#[test]
fn active_mode_through_nat_with_the_ftp_conntrack_helper() {
    let topo = Topology::builder().ftp_conntrack_helper().build();
    let data = random_bytes(MIB);
    let vip = VIP.to_string();
    {
        let server = Server::start(&topo, &["--active-mode", "--advertised-address", &vip]);
        // The router's helper rewrites the client's PORT to the router's
        // own address, which is the peer the server checks it against.
        let port = ["-P", "-", "--disable-eprt"];
        let dialogue = curl_round_trip(&topo, &server, &port, "active-port.bin", &data);
        assert!(
            dialogue.contains("> PORT "),
            "curl did not use PORT:\n{dialogue}"
        );
        assert!(dialogue.contains("< 200 PORT"), "PORT refused:\n{dialogue}");

        let dialogue = curl_round_trip(&topo, &server, &["-P", "-"], "active-eprt.bin", &data);
        assert!(
            dialogue.contains("> EPRT |1|"),
            "curl did not use EPRT:\n{dialogue}"
        );
        assert!(
            !dialogue.contains("> PORT "),
            "curl fell back to PORT:\n{dialogue}"
        );
    }

    // Same topology, same client, but the server does not allow active mode.
    let server = Server::start(&topo, &["--advertised-address", &vip]);
    let out = curl(
        &topo,
        &[
            "-P",
            "-",
            "--disable-eprt",
            &url("active-port.bin"),
            "-o",
            "/dev/null",
        ],
    );
    let dialogue = String::from_utf8_lossy(&out.stderr);
    assert!(
        dialogue.contains("< 502 "),
        "PORT should get 502 without --active-mode:\n{dialogue}\n{}",
        server.log()
    );
    // 30: CURLE_FTP_PORT_FAILED.
    assert_eq!(out.status.code(), Some(30), "curl: {}", describe(&out));
}

/// A NAT test that cannot build its namespaces must fail, never skip: run
/// one in a child process without the tools, and once without root.
#[test]
fn setup_problems_fail_the_tests_with_a_clear_message() {
    let exe = std::env::current_exe().unwrap();
    let victim = "pasv_through_nat_fails_when_the_server_advertises_its_own_address";
    let args = [victim, "--exact", "--test-threads=1"];

    let out = Command::new(&exe)
        .args(args)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_failed_with(&out, "the NAT tests need `ip`");

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(args)
        .output()
        .expect("running setpriv (util-linux)");
    assert_failed_with(&out, "the NAT tests need root");
}

fn assert_failed_with(out: &Output, message: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains("test result: FAILED. 0 passed; 1 failed"),
        "the test should have failed: {}",
        describe(out)
    );
    assert!(text.contains(message), "expected {message:?} in: {text}");
}

fn url(name: &str) -> String {
    format!("ftp://{USER}:{PASSWORD}@{VIP}:{FTP_PORT}/{name}")
}

/// curl in the client namespace, verbose: the FTP dialogue is on stderr.
fn curl(topo: &Topology, args: &[&str]) -> Output {
    let mut cmd = vec!["timeout", "60", "curl", "-sS", "-v", "--max-time", "30"];
    cmd.extend_from_slice(args);
    topo.exec(Role::Client, &cmd)
}

/// `curl` that must succeed; returns the dialogue.
fn curl_ok(topo: &Topology, server: &Server, args: &[&str]) -> String {
    let out = curl(topo, args);
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{}",
        describe(&out),
        server.log()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Uploads `data` as `name` and downloads it again with curl using `mode`
/// flags, checking the bytes both ways; returns both dialogues.
fn curl_round_trip(
    topo: &Topology,
    server: &Server,
    mode: &[&str],
    name: &str,
    data: &[u8],
) -> String {
    let upload = server.scratch().join("curl-upload");
    let download = server.scratch().join(name);
    std::fs::write(&upload, data).unwrap();
    let url = url(name);
    let mut dialogue = curl_ok(topo, server, &[mode, &["-T", path(&upload), &url]].concat());
    assert_same(&server.home().join(name), data, "curl upload");
    dialogue += &curl_ok(
        topo,
        server,
        &[mode, &[&url, "-o", path(&download)]].concat(),
    );
    assert_same(&download, data, "curl download");
    dialogue
}

/// lftp in the client namespace, logged in, running `script` with debug
/// output (the commands it sends) on stderr.
fn lftp(topo: &Topology, script: &str) -> Output {
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
         set ftp:passive-mode on; set ftp:fix-pasv-address no; set xfer:clobber on; \
         open -u {USER},{PASSWORD} ftp://{VIP}:{FTP_PORT}; {script}"
    );
    topo.exec(
        Role::Client,
        &["timeout", "60", "lftp", "-d", "-c", &script],
    )
}

fn assert_same(file: &Path, expected: &[u8], what: &str) {
    let got = std::fs::read(file).unwrap_or_else(|e| panic!("{what}: {}: {e}", file.display()));
    assert!(
        got == expected,
        "{what}: {} has {} bytes that differ from the {} sent",
        file.display(),
        got.len(),
        expected.len()
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `a,b,c,d` as in a 227 reply.
fn pasv_octets(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{a},{b},{c},{d},")
}

/// Replaces the file's content in one step, as a Kubernetes volume does.
fn write_atomically(file: &Path, content: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// Just enough FTP client to keep one control connection under control.
struct FtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl FtpClient {
    fn new(control: TcpStream) -> FtpClient {
        control
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        FtpClient {
            reader: BufReader::new(control.try_clone().unwrap()),
            writer: control,
        }
    }

    /// Sends `command` (if any) and asserts the reply code; returns the
    /// reply, all its lines.
    fn expect(&mut self, command: Option<&str>, code: u16) -> String {
        if let Some(command) = command {
            write!(self.writer, "{command}\r\n").unwrap();
        }
        let reply = self.reply();
        assert!(
            reply.starts_with(&code.to_string()),
            "{command:?}: expected {code}, got {reply:?}"
        );
        reply
    }

    /// One reply; a multi-line one runs from `ddd-` to `ddd `.
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        if reply.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{} ", &reply[..3]);
            loop {
                let mut line = String::new();
                assert!(
                    self.reader.read_line(&mut line).unwrap() > 0,
                    "EOF in reply"
                );
                reply += &line;
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        reply.trim_end().to_string()
    }

    /// PASV, and the address from the 227 reply.
    fn pasv(&mut self) -> SocketAddrV4 {
        let reply = self.expect(Some("PASV"), 227);
        let inner = reply
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(inner, _)| inner)
            .unwrap_or_else(|| panic!("no (h1,h2,h3,h4,p1,p2) in {reply:?}"));
        let n: Vec<u8> = inner.split(',').map(|n| n.parse().unwrap()).collect();
        let [a, b, c, d, p1, p2] = n[..] else {
            panic!("bad PASV reply {reply:?}");
        };
        SocketAddrV4::new(
            Ipv4Addr::new(a, b, c, d),
            u16::from(p1) << 8 | u16::from(p2),
        )
    }
}
