//! Real FTP clients against the server on loopback: curl, lftp and Python's
//! ftplib each log in, list, upload, download, resume both ways, rename and
//! delete, through PASV and through EPSV. Files are compared byte for byte,
//! on the wire and on disk.

mod support;

use std::path::Path;

use kubeftp_server::config::UnknownAddress;
use support::{ALICE, TestServer, check, random_bytes, run};

const SIZE: usize = 3 * 1024 * 1024 + 17;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pasv,
    Epsv,
}

/// For EPSV runs the server refuses PASV (no address known, policy
/// `refuse`), so a client that silently fell back to PASV would fail.
async fn server_for(mode: Mode) -> TestServer {
    TestServer::start_with(|c| {
        if mode == Mode::Epsv {
            c.passive.when_address_unknown = UnknownAddress::Refuse;
        }
    })
    .await
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).unwrap();
    name.to_string()
}

async fn curl(server: &TestServer, mode: Mode) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = random_bytes(SIZE);
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "-sS",
            "--fail",
            "--user",
            "alice:alice-pw",
            "--connect-timeout",
            "5",
        ]
        .map(String::from)
        .to_vec();
        if mode == Mode::Pasv {
            args.push("--disable-epsv".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Upload, list, download.
    let up = write(dir, "up.bin", &data);
    check(
        &run("curl", base(&["-T", &up, &server.url("/up.bin")]), dir).await,
        "curl upload",
    );
    assert_eq!(std::fs::read(server.alice_path("up.bin")).unwrap(), data);
    let listing = check(
        &run("curl", base(&[&server.url("/")]), dir).await,
        "curl list",
    );
    assert!(
        listing.contains(&format!("{SIZE} ")) && listing.contains("up.bin"),
        "{listing}"
    );
    check(
        &run(
            "curl",
            base(&["-o", "down.bin", &server.url("/up.bin")]),
            dir,
        )
        .await,
        "curl download",
    );
    assert_eq!(std::fs::read(dir.join("down.bin")).unwrap(), data);

    // Resume a download (REST + RETR) from a local half.
    write(dir, "half.bin", &data[..SIZE / 2]);
    check(
        &run(
            "curl",
            base(&["-C", "-", "-o", "half.bin", &server.url("/up.bin")]),
            dir,
        )
        .await,
        "curl resume down",
    );
    assert_eq!(std::fs::read(dir.join("half.bin")).unwrap(), data);

    // Resume an upload (SIZE + APPE) onto a remote half.
    std::fs::write(server.alice_path("resumed.bin"), &data[..SIZE / 3]).unwrap();
    check(
        &run(
            "curl",
            base(&["-C", "-", "-T", &up, &server.url("/resumed.bin")]),
            dir,
        )
        .await,
        "curl resume up",
    );
    assert_eq!(
        std::fs::read(server.alice_path("resumed.bin")).unwrap(),
        data
    );

    // Rename and delete.
    let quote = base(&[
        "-Q",
        "RNFR up.bin",
        "-Q",
        "RNTO renamed.bin",
        "-Q",
        "DELE resumed.bin",
        &server.url("/"),
    ]);
    let listing = check(&run("curl", quote, dir).await, "curl rename/delete");
    assert!(
        listing.contains("renamed.bin") && !listing.contains("resumed.bin"),
        "{listing}"
    );
    assert!(server.alice_path("renamed.bin").exists() && !server.alice_path("up.bin").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_through_pasv() {
    curl(&server_for(Mode::Pasv).await, Mode::Pasv).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_through_epsv() {
    curl(&server_for(Mode::Epsv).await, Mode::Epsv).await;
}

async fn lftp(server: &TestServer, mode: Mode) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = random_bytes(SIZE);
    write(dir, "up.bin", &data);
    write(dir, "got-half.bin", &data[..SIZE / 2]);
    std::fs::write(server.alice_path("remote-half.bin"), &data[..SIZE / 4]).unwrap();
    std::fs::write(server.alice_path("doomed.bin"), "delete me").unwrap();
    let epsv = if mode == Mode::Epsv { "yes" } else { "no" };
    let script = format!(
        "set ftp:passive-mode on; set ftp:prefer-epsv {epsv}; set ftp:ssl-allow no; \
         set net:max-retries 1; set net:timeout 10; set xfer:clobber on; \
         put up.bin; cls -l; get up.bin -o got.bin; \
         get -c up.bin -o got-half.bin; put -c up.bin -o remote-half.bin; \
         mkdir sub; mv up.bin sub/moved.bin; rm doomed.bin; cls -1 sub; bye"
    );
    let args = vec![
        "-u".into(),
        format!("{},{}", ALICE.0, ALICE.1),
        "-p".into(),
        server.addr.port().to_string(),
        "-e".into(),
        script,
        server.addr.ip().to_string(),
    ];
    let out = check(&run("lftp", args, dir).await, "lftp session");
    assert!(
        out.contains("up.bin") && out.contains(&SIZE.to_string()),
        "listing: {out}"
    );
    assert!(out.contains("moved.bin"), "listing after mv: {out}");
    assert_eq!(std::fs::read(dir.join("got.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(dir.join("got-half.bin")).unwrap(),
        data,
        "get -c resumed the download"
    );
    assert_eq!(
        std::fs::read(server.alice_path("sub/moved.bin")).unwrap(),
        data
    );
    assert!(
        std::fs::read(server.alice_path("remote-half.bin")).unwrap() == data,
        "put -c resumed the upload"
    );
    assert!(!server.alice_path("doomed.bin").exists(), "rm removed it");
}

#[tokio::test(flavor = "multi_thread")]
async fn lftp_through_pasv() {
    lftp(&server_for(Mode::Pasv).await, Mode::Pasv).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lftp_through_epsv() {
    lftp(&server_for(Mode::Epsv).await, Mode::Epsv).await;
}

/// The ftplib half of the test: prints "OK" when every check passed.
const FTPLIB_SCRIPT: &str = r#"
import ftplib, io, sys
host, port, user, password, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
data = open("up.bin", "rb").read()
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=20)
ftp.login(user, password)
if mode == "epsv":
    # ftplib uses EPSV only on IPv6; force it here.
    ftp.makepasv = lambda: ftplib.parse229(ftp.sendcmd("EPSV"), ftp.sock.getpeername())
else:
    ftp.makepasv = lambda: ftplib.parse227(ftp.sendcmd("PASV"))
ftp.storbinary("STOR up.bin", io.BytesIO(data))
assert "up.bin" in ftp.nlst(), ftp.nlst()
facts = dict(ftp.mlsd())
assert facts["up.bin"]["size"] == str(len(data)), facts
assert ftp.size("up.bin") == len(data)
out = io.BytesIO()
ftp.retrbinary("RETR up.bin", out.write)
assert out.getvalue() == data, "download differs"
# Resume: REST n before RETR and before STOR.
half = len(data) // 2
out = io.BytesIO()
ftp.retrbinary("RETR up.bin", out.write, rest=half)
assert out.getvalue() == data[half:], "resumed download differs"
ftp.storbinary("STOR part.bin", io.BytesIO(data[:half]))
ftp.storbinary("STOR part.bin", io.BytesIO(data[half:]), rest=half)
out = io.BytesIO()
ftp.retrbinary("RETR part.bin", out.write)
assert out.getvalue() == data, "resumed upload differs"
ftp.rename("part.bin", "renamed.bin")
ftp.delete("up.bin")
assert sorted(ftp.nlst()) == ["renamed.bin"], ftp.nlst()
ftp.quit()
print("OK")
"#;

async fn ftplib(server: &TestServer, mode: Mode) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = random_bytes(SIZE);
    write(dir, "up.bin", &data);
    write(dir, "check.py", FTPLIB_SCRIPT.as_bytes());
    let mode = if mode == Mode::Epsv { "epsv" } else { "pasv" };
    let args = [
        "check.py",
        &server.addr.ip().to_string(),
        &server.addr.port().to_string(),
        ALICE.0,
        ALICE.1,
        mode,
    ]
    .map(String::from)
    .to_vec();
    let out = check(&run("python3", args, dir).await, "ftplib script");
    assert_eq!(out.trim(), "OK");
    assert_eq!(
        std::fs::read(server.alice_path("renamed.bin")).unwrap(),
        data
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ftplib_through_pasv() {
    ftplib(&server_for(Mode::Pasv).await, Mode::Pasv).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ftplib_through_epsv() {
    ftplib(&server_for(Mode::Epsv).await, Mode::Epsv).await;
}
