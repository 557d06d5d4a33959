//! Running the server in production: the ops endpoints and metrics,
//! graceful shutdown on SIGTERM, and structured logs without secrets.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubeftp_server::config::UnknownAddress;
use support::{ALICE, RawClient, TestServer, eventually, http_get, metric, random_bytes};
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_kubeftp-server");

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let address_file = dir.path().join("address");
    let f = address_file.clone();
    let server = TestServer::start_with(move |c| {
        c.ops.listen = Some("127.0.0.1:0".parse().unwrap());
        c.passive.advertised_address_file = Some(f.clone());
        c.passive.when_address_unknown = UnknownAddress::Refuse;
        c.passive.ports.max = c.passive.ports.min; // one port, to exhaust it
    })
    .await;
    let ops = server.ops.unwrap();
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    let (code, body) = http_get(ops, "/readyz").await;
    assert_eq!(code, 503, "not ready until the advertised address is known");
    assert!(body.contains("not known yet"), "{body}");
    // A name that does not resolve is as good as none: PASV would refuse.
    std::fs::write(&address_file, "nonexistent.invalid").unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || http_get(ops, "/readyz")
            .await
            .1
            .contains("cannot resolve the passive address nonexistent.invalid"))
        .await
    );
    std::fs::write(&address_file, "127.0.0.1").unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || http_get(ops, "/readyz")
            .await
            .0
            == 200)
        .await
    );

    // Some traffic: a failed and a good login, a download, an exhausted pool.
    std::fs::write(server.alice_path("f"), random_bytes(12345)).unwrap();
    let mut bad = RawClient::connect(server.addr).await;
    bad.expect("USER alice", 331).await;
    bad.expect("PASS nope", 530).await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    let (code, bytes) = c.transfer_in("RETR f").await;
    assert_eq!((code, bytes.len()), (226, 12345));
    let (code, listing) = c.transfer_in("LIST").await;
    assert_eq!(code, 226);
    c.pasv().await; // holds the only port
    let mut other = RawClient::login(server.addr, ALICE).await;
    other.expect("PASV", 425).await;

    let (code, page) = http_get(ops, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(metric(&page, "kubeftp_sessions_open "), 3.0);
    assert_eq!(metric(&page, "kubeftp_logins_total{result=\"ok\"}"), 2.0);
    assert_eq!(
        metric(&page, "kubeftp_logins_total{result=\"failed\"}"),
        1.0
    );
    assert_eq!(
        metric(&page, "kubeftp_commands_total{verb=\"RETR\",class=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        metric(&page, "kubeftp_commands_total{verb=\"PASS\",class=\"5xx\"}"),
        1.0
    );
    assert_eq!(
        metric(&page, "kubeftp_bytes_total{direction=\"out\"}"),
        (12345 + listing.len()) as f64,
        "file and listing bytes"
    );
    assert_eq!(
        metric(
            &page,
            "kubeftp_transfer_duration_seconds_count{op=\"RETR\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &page,
            "kubeftp_transfer_duration_seconds_count{op=\"LIST\"}"
        ),
        1.0
    );
    assert_eq!(metric(&page, "kubeftp_passive_waiting "), 1.0);
    assert_eq!(metric(&page, "kubeftp_passive_ports "), 1.0);
    assert_eq!(
        metric(
            &page,
            "kubeftp_data_connection_refusals_total{reason=\"pool_exhausted\"}"
        ),
        1.0
    );
}

/// The server binary, killed on drop; stdout is its banner.
struct Running {
    child: Child,
    control: SocketAddr,
    ops: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The ops listener holds a bounded number of connections, each for a
/// bounded time: clients that connect and stay idle, or trickle a request,
/// cannot keep its places nor take the descriptors FTP sessions need.
#[tokio::test(flavor = "multi_thread")]
async fn ops_connections_are_bounded_in_number_and_lifetime() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let server =
        TestServer::start_with(|c| c.ops.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let ops = server.ops.unwrap();
    let mut slow = TcpStream::connect(ops).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(ops).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Those over the limit are closed at once: reading finds the end.
    let closed = idle
        .iter()
        .filter(|c| matches!(c.try_read(&mut [0u8; 1]), Ok(0)))
        .count();
    assert!(
        closed >= 200 - 64,
        "only {closed} of 200 idle connections closed"
    );
    // FTP is served meanwhile.
    RawClient::login(server.addr, ALICE).await;
    // The trickling request is cut off at the end of its lifetime (the
    // 60 s here only bound the test).
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(60), slow.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "a trickling request kept its connection");
    // Then so are the idle ones, and the probes get in again.
    assert!(
        eventually(Duration::from_secs(30), async || http_get(ops, "/healthz")
            .await
            .0
            == 200)
        .await
    );
}

fn start_binary(root: &std::path::Path, extra_config: &str) -> Running {
    let config = root.join("server.toml");
    let users = root.join("users.toml");
    std::fs::write(&users, support::users_toml("")).unwrap();
    std::fs::create_dir_all(root.join("srv/alice")).unwrap();
    // A random passive range may be taken by another test: try again.
    for _ in 0..20 {
        let base = 20000 + rand::random::<u16>() % 40000;
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nroot = \"{}\"\nusers-file = \"{}\"\n\
                 [passive]\nports = \"{base}-{}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n{extra_config}",
                root.join("srv").display(),
                users.display(),
                base + 9
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut control, mut ops) = (None, None);
        while control.is_none() || ops.is_none() {
            let Some(Ok(line)) = lines.next() else { break };
            let addr = |prefix: &str| line.split(prefix).nth(1)?.split(' ').next()?.parse().ok();
            control = control.or_else(|| addr("listening on ftp://"));
            ops = ops.or_else(|| addr("ops endpoints on http://"));
        }
        if let (Some(control), Some(ops)) = (control, ops) {
            return Running {
                child,
                control,
                ops,
            };
        }
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        child.wait().unwrap();
        assert!(
            stderr.contains("in use"),
            "the server did not start:\n{stderr}"
        );
    }
    panic!("no free passive port range found");
}

fn sigterm(child: &Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Reads a data connection slowly, so a transfer is still running when the
/// test acts.
async fn slow_read(mut data: tokio::net::TcpStream, per_chunk: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = data.read(&mut chunk).await.unwrap();
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&chunk[..n]);
        tokio::time::sleep(per_chunk).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_running_transfers_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_binary(dir.path(), "[shutdown]\ngrace-seconds = 30\n");
    // Larger than loopback socket buffers, so the server is still sending.
    let payload = random_bytes(32 * 1024 * 1024);
    std::fs::write(dir.path().join("srv/alice/big"), &payload).unwrap();

    let mut idle = RawClient::login(server.control, ALICE).await;
    let mut waiting = RawClient::login(server.control, ALICE).await;
    waiting.pasv().await;
    waiting.send_raw(b"RETR big\r\n").await;
    let mut busy = RawClient::login(server.control, ALICE).await;
    let data = busy.start_download("RETR big").await;
    // 512 chunks of 64 KiB at 5 ms each: a few seconds of transfer.
    let download = tokio::spawn(slow_read(data, Duration::from_millis(5)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&server.child);

    // Idle sessions are told at once; new connections are refused; not ready.
    assert_eq!(idle.read_reply().await.0, 421);
    // So is one whose transfer still waits for its data connection: no data
    // moves there yet.
    assert_eq!(waiting.read_reply().await.0, 426);
    assert_eq!(waiting.read_reply().await.0, 421);
    assert!(
        eventually(Duration::from_secs(2), async || {
            tokio::net::TcpStream::connect(server.control)
                .await
                .is_err()
        })
        .await,
        "new connections must be refused while draining"
    );
    let (code, body) = http_get(server.ops, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    // The transfer is still running during the drain...
    let (code, text) = busy.cmd("STAT").await;
    assert_eq!(code, 213, "{text}");
    assert!(text.contains("in progress"), "{text}");
    // ...and completes, byte for byte, then the session ends.
    let got = download.await.unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
    assert_eq!(busy.read_reply().await.0, 226);
    assert_eq!(busy.read_reply().await.0, 421);
    let started = Instant::now();
    while server.child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = server
        .child
        .try_wait()
        .unwrap()
        .expect("server exited after draining");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_still_running_after_the_grace_period_are_cut_with_421() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_binary(dir.path(), "[shutdown]\ngrace-seconds = 1\n");
    std::fs::write(
        dir.path().join("srv/alice/big"),
        random_bytes(16 * 1024 * 1024),
    )
    .unwrap();
    let mut busy = RawClient::login(server.control, ALICE).await;
    let data = busy.start_download("RETR big").await;
    // Far slower than the grace period allows.
    let download = tokio::spawn(slow_read(data, Duration::from_millis(100)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(&server.child);
    assert_eq!(busy.read_reply().await.0, 426);
    assert_eq!(busy.read_reply().await.0, 421);
    assert!(download.await.unwrap().len() < 16 * 1024 * 1024);
    assert!(
        eventually(Duration::from_secs(10), async || server
            .child
            .try_wait()
            .unwrap()
            .is_some())
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_line_per_event_and_never_a_password() {
    let dir = tempfile::tempdir().unwrap();
    // A users file whose password is known, and a wrong one to try.
    let secret = "S3cret-Pa55-4-logs";
    let wrong = "Wr0ng-Secret-4-logs";
    let mut server = start_binary(dir.path(), "");
    let users = format!(
        "[[user]]\nname = \"logger\"\npassword-hash = \"{}\"\n",
        kubeftp_server::users::hash_password(secret)
    );
    std::fs::write(dir.path().join("users.toml"), support::users_toml(&users)).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await; // reload
    std::fs::create_dir_all(dir.path().join("srv/logger")).unwrap();
    std::fs::write(dir.path().join("srv/logger/f"), "data").unwrap();

    let mut bad = RawClient::connect(server.control).await;
    bad.expect("USER logger", 331).await;
    bad.expect(&format!("PASS {wrong}"), 530).await;
    let mut c = RawClient::login(server.control, ("logger", secret)).await;
    let (code, _) = c.transfer_in("RETR f").await;
    assert_eq!(code, 226);
    let (code, _) = c.transfer_in("NLST").await;
    assert_eq!(code, 226);
    c.expect("QUIT", 221).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&server.child);
    server.child.wait().unwrap();
    let mut logs = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();

    assert!(
        !logs.contains(secret) && !logs.contains(wrong),
        "a password reached the logs:\n{logs}"
    );
    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} event in:\n{logs}"))
    };
    let transfer = find("transfer");
    assert_eq!(transfer["fields"]["op"], "RETR");
    assert_eq!(transfer["fields"]["path"], "/f");
    assert_eq!(transfer["fields"]["bytes"], 4);
    assert_eq!(transfer["fields"]["result"], "ok");
    assert!(transfer["fields"]["duration_ms"].is_u64());
    assert_eq!(transfer["span"]["user"], "logger");
    assert!(
        transfer["span"]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let listing = events
        .iter()
        .find(|e| e["fields"]["op"] == "NLST")
        .unwrap_or_else(|| panic!("no NLST transfer in:\n{logs}"));
    assert_eq!(listing["fields"]["message"], "transfer");
    assert_eq!(listing["fields"]["path"], "/");
    assert_eq!(listing["fields"]["bytes"], 3, "\"f\\r\\n\"");
    assert_eq!(listing["fields"]["result"], "ok");
    let failed = find("login failed");
    assert_eq!(failed["fields"]["user"], "logger");
    find("logged in");
    find("connected");
    find("closed");
}
