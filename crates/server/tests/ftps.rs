//! FTPS (RFC 4217) with real clients: curl and lftp through PASV and EPSV,
//! implicit FTPS, untrusted certificates, the `required` policy, TLS session
//! resumption on data connections, and certificate reload.

mod support;

use std::path::Path;
use std::time::Duration;

use kubeftp_server::tls::TlsMode;
use support::{ALICE, RawClient, TestCerts, TestServer, check, eventually, random_bytes, run};

async fn tls_server(dir: &Path, mode: TlsMode) -> (TestServer, TestCerts) {
    let certs = TestCerts::generate(dir, "first");
    let (cert, key) = (certs.cert.clone(), certs.key.clone());
    let server = TestServer::start_with(move |c| {
        c.tls.mode = mode;
        c.tls.cert_file = Some(cert.clone());
        c.tls.key_file = Some(key.clone());
        c.tls.implicit_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    (server, certs)
}

fn curl_args(ca: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-sS",
        "--fail",
        "--user",
        "alice:alice-pw",
        "--connect-timeout",
        "5",
        "--cacert",
    ]
    .map(String::from)
    .to_vec();
    args.push(ca.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_explicit_ftps_through_pasv_and_epsv() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (server, certs) = tls_server(dir, TlsMode::Required).await;
    let data = random_bytes(2 * 1024 * 1024 + 3);
    std::fs::write(dir.join("up.bin"), &data).unwrap();
    for (mode, flags) in [("pasv", &["--disable-epsv"][..]), ("epsv", &[][..])] {
        let remote = server.url(&format!("/{mode}.bin"));
        let mut up = vec!["--ssl-reqd", "-T", "up.bin", &remote];
        up.extend(flags);
        check(
            &run("curl", curl_args(&certs.ca, &up), dir).await,
            "curl --ssl-reqd upload",
        );
        assert_eq!(
            std::fs::read(server.alice_path(&format!("{mode}.bin"))).unwrap(),
            data
        );
        let mut down = vec!["--ssl-reqd", "-o", "down.bin", &remote];
        down.extend(flags);
        check(
            &run("curl", curl_args(&certs.ca, &down), dir).await,
            "curl --ssl-reqd download",
        );
        assert_eq!(std::fs::read(dir.join("down.bin")).unwrap(), data);
        let listing = check(
            &run(
                "curl",
                curl_args(&certs.ca, &["--ssl-reqd", &server.url("/")]),
                dir,
            )
            .await,
            "list",
        );
        assert!(listing.contains(&format!("{mode}.bin")), "{listing}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_implicit_ftps() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (server, certs) = tls_server(dir, TlsMode::Required).await;
    std::fs::write(server.alice_path("f.txt"), "over implicit TLS").unwrap();
    let url = format!("ftps://{}/f.txt", server.implicit_tls.unwrap());
    let out = check(
        &run("curl", curl_args(&certs.ca, &[&url]), dir).await,
        "curl ftps://",
    );
    assert_eq!(out, "over implicit TLS");
}

#[tokio::test(flavor = "multi_thread")]
async fn lftp_with_forced_tls_through_pasv_and_epsv() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (server, certs) = tls_server(dir, TlsMode::Required).await;
    let data = random_bytes(1024 * 1024 + 11);
    std::fs::write(dir.join("up.bin"), &data).unwrap();
    for epsv in ["no", "yes"] {
        let script = format!(
            "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; \
             set ssl:ca-file {}; set ftp:passive-mode on; set ftp:prefer-epsv {epsv}; \
             set net:max-retries 1; set net:timeout 10; set xfer:clobber on; \
             put up.bin -o up-{epsv}.bin; cls -1; get up-{epsv}.bin -o got-{epsv}.bin; bye",
            certs.ca.display()
        );
        let args = vec![
            "-u".into(),
            format!("{},{}", ALICE.0, ALICE.1),
            "-p".into(),
            server.addr.port().to_string(),
            "-e".into(),
            script,
            "127.0.0.1".into(),
        ];
        let out = check(&run("lftp", args, dir).await, "lftp over TLS");
        assert!(out.contains(&format!("up-{epsv}.bin")), "{out}");
        assert_eq!(
            std::fs::read(dir.join(format!("got-{epsv}.bin"))).unwrap(),
            data
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_rejected_by_clients() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (server, _certs) = tls_server(dir, TlsMode::Required).await;
    let other = TestCerts::generate(dir, "other");
    let out = run(
        "curl",
        curl_args(&other.ca, &["--ssl-reqd", &server.url("/")]),
        dir,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "curl must fail certificate verification: {out:?}"
    );
    let script =
        "set ftp:ssl-force true; set net:max-retries 1; set net:timeout 5; cls; bye".to_string();
    let args = vec![
        "-u".into(),
        "alice,alice-pw".into(),
        "-p".into(),
        server.addr.port().to_string(),
        "-e".into(),
        script,
        "127.0.0.1".into(),
    ];
    let out = run("lftp", args, dir).await;
    assert!(!out.status.success(), "lftp must refuse the certificate");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ertificate"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_is_refused_when_tls_is_required() {
    let work = tempfile::tempdir().unwrap();
    let (server, certs) = tls_server(work.path(), TlsMode::Required).await;
    let mut c = RawClient::connect(server.addr).await;
    assert!(c.expect("FEAT", 211).await.contains(" AUTH TLS"));
    let text = c.expect("USER alice", 530).await;
    assert!(text.contains("AUTH TLS"), "{text}");
    c.expect("PASS alice-pw", 530).await;
    c.expect("PBSZ 0", 503).await;
    c.expect("PROT P", 503).await;
    c.expect("AUTH KERBEROS", 504).await;
    // curl without TLS cannot log in.
    let out = run(
        "curl",
        curl_args(&certs.ca, &[&server.url("/")]),
        work.path(),
    )
    .await;
    assert!(!out.status.success());
    // With TLS but PROT C, transfers are refused with 521.
    let script = "
import ftplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
f = ftplib.FTP_TLS(context=ctx)
f.connect('127.0.0.1', int(sys.argv[1]), timeout=10)
f.login('alice', 'alice-pw')
try:
    f.sendcmd('PBSZ abc')
except ftplib.error_perm as e:
    print(str(e)[:3])
f.prot_c()
try:
    f.nlst()
except ftplib.error_perm as e:
    print(str(e)[:3])
";
    std::fs::write(work.path().join("protc.py"), script).unwrap();
    let args = vec![
        "protc.py".into(),
        server.addr.port().to_string(),
        certs.ca.display().to_string(),
    ];
    let out = check(&run("python3", args, work.path()).await, "PROT C script");
    // PBSZ's argument is a decimal number (RFC 2228).
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["501", "521"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_tls_allows_plaintext_but_off_offers_none() {
    let work = tempfile::tempdir().unwrap();
    let (server, certs) = tls_server(work.path(), TlsMode::Optional).await;
    let out = run(
        "curl",
        curl_args(&certs.ca, &[&server.url("/")]),
        work.path(),
    )
    .await;
    check(&out, "plain curl against optional TLS");
    let out = run(
        "curl",
        curl_args(&certs.ca, &["--ssl-reqd", &server.url("/")]),
        work.path(),
    )
    .await;
    check(&out, "TLS curl against optional TLS");

    let plain = TestServer::start().await;
    let mut c = RawClient::connect(plain.addr).await;
    assert!(!c.expect("FEAT", 211).await.contains("AUTH TLS"));
    c.expect("AUTH TLS", 502).await;
}

/// `mode = "off"` with an implicit listener: FTPS on that port only; the
/// plain port neither offers nor accepts AUTH TLS.
#[tokio::test(flavor = "multi_thread")]
async fn implicit_ftps_alone_leaves_the_plain_port_plain() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (server, certs) = tls_server(dir, TlsMode::Off).await;
    let mut c = RawClient::connect(server.addr).await;
    let feat = c.expect("FEAT", 211).await;
    assert!(!feat.contains("AUTH") && !feat.contains("PROT"), "{feat}");
    c.expect("AUTH TLS", 502).await;
    c.expect("USER alice", 331).await;
    c.expect("PASS alice-pw", 230).await;

    std::fs::write(server.alice_path("f.txt"), "implicit only").unwrap();
    let url = format!("ftps://{}/f.txt", server.implicit_tls.unwrap());
    let out = check(
        &run("curl", curl_args(&certs.ca, &[&url]), dir).await,
        "curl ftps:// with mode off",
    );
    assert_eq!(out, "implicit only");
}

/// The data connection resumes the control connection's TLS session (what
/// clients such as FileZilla and servers such as vsftpd expect), and a
/// certificate renewal is picked up by new sessions while an open session
/// keeps working.
const RESUME_AND_RELOAD: &str = r#"
import ftplib, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]

class ResumingFTP(ftplib.FTP_TLS):
    """Reuses the control connection's TLS session for data connections."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
            self.reused.append(conn.session_reused)
        return conn, size

ctx = ssl.create_default_context(cafile=ca)
f = ResumingFTP(context=ctx)
f.reused = []
f.connect("127.0.0.1", port, timeout=10)
f.login("alice", "alice-pw")
f.prot_p()
f.nlst()
f.nlst()
assert f.reused and all(f.reused), f"data connections did not resume the TLS session: {f.reused}"
print("RESUMED", flush=True)
sys.stdin.readline()  # the test replaces the certificate now
f.nlst()
print("STILL-WORKS", flush=True)
f.quit()
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tls_sessions_resume_and_certificates_reload_without_dropping_sessions() {
    use std::io::{BufRead, Write};
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let (server, first) = tls_server(&dir, TlsMode::Required).await;
    std::fs::write(dir.join("resume.py"), RESUME_AND_RELOAD).unwrap();
    let mut child = std::process::Command::new("python3")
        .args([
            "resume.py",
            &server.addr.port().to_string(),
            &first.ca.display().to_string(),
        ])
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "RESUMED");

    // Renew: a certificate from another CA replaces the files in place.
    let second = TestCerts::generate(&dir, "second");
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    let reloaded = eventually(Duration::from_secs(5), async || {
        run(
            "curl",
            curl_args(&second.ca, &["--ssl-reqd", &server.url("/")]),
            &dir,
        )
        .await
        .status
        .success()
    })
    .await;
    assert!(reloaded, "new sessions did not get the renewed certificate");
    let old_ca = run(
        "curl",
        curl_args(&first.ca, &["--ssl-reqd", &server.url("/")]),
        &dir,
    )
    .await;
    assert!(
        !old_ca.status.success(),
        "the old certificate is still served"
    );

    // The session opened before the renewal goes on.
    writeln!(child.stdin.take().unwrap()).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "STILL-WORKS");
    assert!(child.wait().unwrap().success());
}

/// Data connections that do not resume their own control connection's TLS
/// session: a fresh handshake (ftplib's default), and one resuming another
/// client's session. Prints the outcome of NLST for each and for a client
/// that resumes properly.
const SESSION_REUSE: &str = r#"
import ftplib, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)

class ResumingFTP(ftplib.FTP_TLS):
    """Resumes a TLS session on data connections: by default its own."""
    session_from = None
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        source = self.session_from or self
        conn = self.context.wrap_socket(conn, server_hostname=self.host, session=source.sock.session)
        return conn, size

def login(cls):
    f = cls(context=ctx)
    f.connect("127.0.0.1", port, timeout=10)
    f.login("alice", "alice-pw")
    f.prot_p()
    return f

def nlst(f):
    try:
        f.nlst()
        result = "OK"
    except ftplib.error_temp as e:
        result = str(e)[:3]
    f.voidcmd("NOOP")  # the session goes on
    return result

fresh, own, thief = login(ftplib.FTP_TLS), login(ResumingFTP), login(ResumingFTP)
results = [nlst(fresh), nlst(own)]
thief.session_from = own
results.append(nlst(thief))
print(" ".join(results))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn data_connections_must_resume_their_own_tls_session() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("reuse.py"), SESSION_REUSE).unwrap();
    let certs = TestCerts::generate(dir, "reuse");
    for (require, expected) in [(true, "425 OK 425"), (false, "OK OK OK")] {
        let (cert, key) = (certs.cert.clone(), certs.key.clone());
        let server = TestServer::start_with(move |c| {
            c.tls.mode = TlsMode::Required;
            c.tls.cert_file = Some(cert.clone());
            c.tls.key_file = Some(key.clone());
            c.tls.require_session_reuse = require;
            c.ops.listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
        let args = vec![
            "reuse.py".into(),
            server.addr.port().to_string(),
            certs.ca.display().to_string(),
        ];
        let out = check(&run("python3", args, dir).await, "session reuse script");
        assert_eq!(out.trim(), expected, "require-session-reuse = {require}");
        let metrics = support::http_get(server.ops.unwrap(), "/metrics").await.1;
        let refusals = "kubeftp_data_connection_refusals_total{reason=\"tls_not_resumed\"} 2";
        assert_eq!(metrics.contains(refusals), require, "{metrics}");
    }
}
