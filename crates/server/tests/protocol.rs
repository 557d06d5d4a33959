//! Protocol behaviour through a raw client: every reply code asserted.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kubeftp_server::config::{PortRange, UnknownAddress};
use support::{ALICE, READER, RawClient, TestServer, eventually, parse_227, random_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lo(last: u8) -> IpAddr {
    Ipv4Addr::new(127, 0, 0, last).into()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_reply_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let mut c = RawClient::connect(server.addr).await;
    // Before login.
    c.expect("LIST", 530).await;
    c.expect("RETR x", 530).await;
    c.expect("PASS nouser", 503).await;
    // Over-long line, non-UTF-8, unknown, unimplemented.
    let long = format!("USER {}\r\n", "a".repeat(100_000));
    c.send_raw(long.as_bytes()).await;
    assert_eq!(c.read_reply().await.0, 500);
    c.send_raw(b"CWD \xc3\x28\r\n").await;
    assert_eq!(c.read_reply().await.0, 500);
    c.expect("XYZZY plugh", 500).await;
    c.expect("SITE CHMOD 777 x", 502).await;
    c.expect("", 500).await;
    // Still usable: log in and check malformed arguments.
    c.expect("USER alice", 331).await;
    c.expect("PASS alice-pw", 230).await;
    c.expect("CWD", 501).await;
    c.expect("REST -5", 501).await;
    c.expect("PORT 1,2,3", 501).await;
    // RFC 2428: an unknown network protocol is 522, with the supported list.
    let text = c.expect("EPRT |9|x|1|", 522).await;
    assert!(text.contains("(1,2)"), "{text}");
    let text = c.expect("EPSV 3", 522).await;
    assert!(text.contains("(1,2)"), "{text}");
    c.expect("TYPE Z", 501).await;
    c.expect("MODE B", 504).await;
    c.expect("STRU R", 504).await;
    c.expect("RNTO nowhere", 503).await;
    c.expect("OPTS NOPE", 501).await;
    c.expect("RETR", 501).await;
    c.expect("LIST", 425).await; // no PASV/EPSV first
    c.expect("NOOP", 200).await;
    c.expect("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn informational_commands() {
    let server = TestServer::start().await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    assert!(c.expect("SYST", 215).await.contains("UNIX"));
    let feat = c.expect("FEAT", 211).await;
    for f in [
        " EPSV",
        " MLST",
        " REST STREAM",
        " SIZE",
        " MDTM",
        " UTF8",
        " EPRT",
    ] {
        assert!(feat.contains(f), "FEAT lacks {f}: {feat}");
    }
    c.expect("OPTS UTF8 ON", 200).await;
    c.expect("HELP", 214).await;
    assert!(c.expect("STAT", 211).await.contains("alice"));
    c.expect("ALLO 100", 202).await;
    c.expect("MODE S", 200).await;
    c.expect("STRU F", 200).await;
    c.expect("ABOR", 225).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn directories_files_and_metadata() {
    let server = TestServer::start().await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    assert!(c.expect("PWD", 257).await.contains("\"/\""));
    assert!(
        c.expect("MKD a \"q\"", 257)
            .await
            .contains("\"/a \"\"q\"\"\""),
        "quotes doubled"
    );
    c.expect("CWD a \"q\"", 250).await;
    assert!(c.expect("PWD", 257).await.contains("/a \"\"q\"\""));
    c.expect("CDUP", 200).await;
    c.expect("CWD nope", 550).await;
    c.expect("RMD a \"q\"", 250).await;

    assert_eq!(c.transfer_out("STOR f.txt", b"line1\nline2\n").await, 226);
    assert_eq!(c.expect("SIZE f.txt", 213).await.trim(), "213 12");
    let mdtm = c.expect("MDTM f.txt", 213).await;
    assert_eq!(mdtm.trim().len(), "213 20261125000000".len(), "{mdtm}");
    let mlst = c.expect("MLST f.txt", 250).await;
    assert!(
        mlst.contains("type=file;size=12;") && mlst.contains("/f.txt"),
        "{mlst}"
    );
    c.expect("SIZE .", 550).await;
    let stat = c.expect("STAT /", 213).await;
    assert!(stat.contains("f.txt"), "{stat}");

    // TYPE A converts line endings both ways; SIZE stays the stored size.
    c.expect("TYPE A", 200).await;
    assert_eq!(c.expect("SIZE f.txt", 213).await.trim(), "213 12");
    let (code, bytes) = c.transfer_in("RETR f.txt").await;
    assert_eq!((code, bytes.as_slice()), (226, &b"line1\r\nline2\r\n"[..]));
    assert_eq!(c.transfer_out("STOR g.txt", b"x\r\ny\r\n").await, 226);
    assert_eq!(
        std::fs::read(server.alice_path("g.txt")).unwrap(),
        b"x\ny\n"
    );
    c.expect("TYPE I", 200).await;

    // REST + RETR, APPE, STOU.
    c.expect("REST 6", 350).await;
    let (code, bytes) = c.transfer_in("RETR f.txt").await;
    assert_eq!((code, bytes.as_slice()), (226, &b"line2\n"[..]));
    c.expect("REST 99", 350).await;
    let addr = c.pasv().await;
    let _data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("RETR f.txt", 554).await;
    assert_eq!(c.transfer_out("APPE f.txt", b"line3\n").await, 226);
    assert_eq!(
        std::fs::read(server.alice_path("f.txt")).unwrap(),
        b"line1\nline2\nline3\n"
    );
    let addr = c.pasv().await;
    let mut data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    let opening = c.expect("STOU", 150).await;
    let name = opening
        .trim()
        .strip_prefix("150 FILE: ")
        .expect("RFC 1123 STOU reply")
        .to_string();
    data.write_all(b"unique").await.unwrap();
    drop(data);
    assert!(c.read_reply().await.1.contains(&name));
    assert_eq!(std::fs::read(server.alice_path(&name)).unwrap(), b"unique");

    // Listings: LIST with ls options, NLST, MLSD.
    let (_, list) = c.transfer_in("LIST -la").await;
    let list = String::from_utf8(list).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rw-r--r-- 1 ftp ftp") && l.ends_with(" f.txt")),
        "{list}"
    );
    let (_, nlst) = c.transfer_in("NLST").await;
    let mut names: Vec<_> = String::from_utf8(nlst)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["f.txt".to_string(), "g.txt".into(), name.clone()]
    );
    let (_, mlsd) = c.transfer_in("MLSD").await;
    assert!(
        String::from_utf8(mlsd)
            .unwrap()
            .contains("type=file;size=18;")
    );
    let (code, _) = c.transfer_in("MLSD f.txt").await;
    assert_eq!(code, 501, "MLSD of a file");

    c.expect("RNFR f.txt", 350).await;
    c.expect("RNTO h.txt", 250).await;
    c.expect("RNFR missing", 550).await;
    c.expect("DELE h.txt", 250).await;
    c.expect("DELE h.txt", 550).await;
}

/// Names with line breaks cannot be created, and those made by other means
/// stay out of listings, whose lines they would break. Paths starting with
/// `-` can be listed: only real ls flags are taken for options.
/// OPTS MLST selects the facts MLST and MLSD send, and FEAT marks them.
#[tokio::test(flavor = "multi_thread")]
async fn opts_mlst_selects_the_facts() {
    let server = TestServer::start().await;
    std::fs::write(server.alice_path("f"), "12345").unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;
    assert_eq!(
        c.expect("OPTS MLST size;Type;bogus;", 200).await.trim(),
        "200 MLST OPTS type;size;"
    );
    let feat = c.expect("FEAT", 211).await;
    assert!(feat.contains(" MLST type*;size*;modify;perm;"), "{feat}");
    let mlst = c.expect("MLST f", 250).await;
    assert!(mlst.contains(" type=file;size=5; /f"), "{mlst}");
    let (_, mlsd) = c.transfer_in("MLSD").await;
    assert_eq!(String::from_utf8(mlsd).unwrap(), "type=file;size=5; f\r\n");
    // No facts at all, then all of them again.
    assert_eq!(c.expect("OPTS MLST", 200).await.trim(), "200 MLST OPTS");
    assert!(c.expect("MLST f", 250).await.contains("\r\n  /f\r\n"));
    c.expect("OPTS MLST type;size;modify;perm;", 200).await;
    assert!(c.expect("MLST f", 250).await.contains("perm=adfrw; /f"));
}

/// A link is listed as what it leads to, as SIZE, RETR and CWD see it;
/// links that lead nowhere or out of the home are not listed.
#[tokio::test(flavor = "multi_thread")]
async fn listings_show_links_as_what_they_lead_to() {
    let server = TestServer::start().await;
    std::fs::create_dir(server.alice_path("d3")).unwrap();
    std::fs::write(server.alice_path("a.txt"), "hello").unwrap();
    let link = |to: &str, name: &str| std::os::unix::fs::symlink(to, server.alice_path(name));
    link("d3", "dlink").unwrap();
    link("a.txt", "flink").unwrap();
    link("nowhere", "dangling").unwrap();
    link("/etc", "out").unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;

    let (code, mlsd) = c.transfer_in("MLSD").await;
    assert_eq!(code, 226);
    let mlsd = String::from_utf8(mlsd).unwrap();
    let facts = |name: &str| {
        mlsd.lines()
            .find(|line| line.ends_with(&format!(" {name}")))
            .map(str::to_owned)
    };
    assert!(facts("dlink").unwrap().starts_with("type=dir;"), "{mlsd}");
    assert!(
        facts("flink").unwrap().starts_with("type=file;size=5;"),
        "{mlsd}"
    );
    assert_eq!((facts("dangling"), facts("out")), (None, None), "{mlsd}");
    assert!(c.expect("MLST flink", 250).await.contains("size=5;"));
    assert_eq!(c.expect("SIZE flink", 213).await.trim(), "213 5");

    let (_, list) = c.transfer_in("LIST").await;
    let list = String::from_utf8(list).unwrap();
    let line = list.lines().find(|l| l.ends_with(" dlink")).unwrap();
    assert!(line.starts_with('d'), "{list}");
    c.expect("CWD dlink", 250).await;
}

/// Requests that cannot succeed for their path get a permanent 5xx, so
/// clients do not retry them as they would a 451.
#[tokio::test(flavor = "multi_thread")]
async fn impossible_paths_get_permanent_replies() {
    let server = TestServer::start().await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    let long = "n".repeat(256);
    c.expect(&format!("MKD {long}"), 553).await;
    c.expect(&format!("CWD {long}"), 550).await;
    c.expect("MKD a\0b/c", 553).await;
    c.expect("MKD d1", 257).await;
    c.expect("MKD d1/d2", 257).await;
    c.expect("RNFR d1", 350).await;
    c.expect("RNTO d1/d2/inner", 550).await;
    c.expect("NOOP", 200).await;
}

/// An upload onto a directory is refused before any data moves (the
/// directory could not be replaced), and the session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_onto_a_directory_are_refused_before_the_data() {
    let server = TestServer::start().await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    c.expect("MKD d", 257).await;
    for command in ["STOR d", "APPE d"] {
        c.pasv().await;
        let (code, text) = c.cmd(command).await;
        assert_eq!(code, 550, "{command}: {text}");
        assert!(text.contains("Is a directory"), "{command}: {text}");
    }
    c.expect("REST 0", 350).await;
    c.pasv().await;
    c.expect("STOR d", 550).await;
    assert!(server.alice_path("d").is_dir());
    assert_eq!(c.transfer_out("STOR d/f", b"ok").await, 226);

    // A directory made under the target's name while the data flows: the
    // data cannot be put there, which is the server's side failing (550),
    // not the connection (426).
    let addr = c.pasv().await;
    let mut data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("STOR late", 150).await;
    data.write_all(b"some bytes").await.unwrap();
    std::fs::create_dir(server.alice_path("late")).unwrap();
    data.shutdown().await.unwrap();
    drop(data);
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 550, "{text}");
    c.expect("NOOP", 200).await;
}

/// An upload a stopped server left unfinished (hidden, so no client can
/// delete it) is removed when the server starts; one written to recently
/// may be another server's upload in progress, and stays.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_left_unfinished_by_an_earlier_run_are_removed_at_start() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("alice/sub");
    std::fs::create_dir_all(&home).unwrap();
    let left = home.join(".kubeftp-upload-00000000000000aa");
    let running = home.join(".kubeftp-upload-00000000000000bb");
    std::fs::write(&left, vec![0u8; 4096]).unwrap();
    std::fs::write(&running, b"in progress").unwrap();
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&left)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    let srv = root.path().to_path_buf();
    let _server = TestServer::start_with(|c| c.root = srv.clone()).await;
    assert!(eventually(Duration::from_secs(10), async || !left.exists()).await);
    assert!(running.exists());
}

/// tmpfs stores any 64-bit time, far past what a calendar shows: such a
/// file is listed with the last time a four-digit year can show, and the
/// session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn files_with_times_past_year_9999_are_listed() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm (tmpfs) here: skipped");
        return;
    }
    let root = tempfile::tempdir_in(shm).unwrap();
    let srv = root.path().to_path_buf();
    let server = TestServer::start_with(|c| c.root = srv.clone()).await;
    std::fs::create_dir_all(srv.join("alice")).unwrap();
    let file = std::fs::File::create(srv.join("alice/far.txt")).unwrap();
    let far = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 62);
    file.set_modified(far).unwrap();

    let mut c = RawClient::login(server.addr, ALICE).await;
    assert_eq!(
        c.expect("MDTM far.txt", 213).await.trim(),
        "213 99991231235959"
    );
    assert!(
        c.expect("MLST far.txt", 250)
            .await
            .contains("modify=99991231235959;")
    );
    let (code, listing) = c.transfer_in("LIST").await;
    assert_eq!(code, 226);
    let listing = String::from_utf8(listing).unwrap();
    assert!(listing.contains("Dec 31  9999 far.txt"), "{listing}");
    c.expect("NOOP", 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_names_in_listings() {
    let server = TestServer::start().await;
    std::fs::write(server.alice_path("-notes.txt"), "").unwrap();
    std::fs::write(server.alice_path("-l"), "").unwrap();
    std::fs::write(server.alice_path("two\nlines"), "").unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;

    let addr = c.pasv().await;
    let _data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("STOR bad\rname", 553).await;
    c.expect("MKD bad\rdir", 553).await;
    c.expect("RNFR -l", 350).await;
    c.expect("RNTO bad\rname", 553).await;

    let (code, list) = c.transfer_in("LIST -la").await;
    assert_eq!(code, 226);
    let list = String::from_utf8(list).unwrap();
    let lines: Vec<&str> = list.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2, "two entries, one line each: {list:?}");
    assert!(
        lines.iter().all(|l| l.starts_with("-rw-r--r-- 1 ftp ftp")),
        "{list:?}"
    );
    let (_, nlst) = c.transfer_in("NLST").await;
    let mut names: Vec<_> = String::from_utf8(nlst)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(names, ["-l", "-notes.txt"]);

    let (code, list) = c.transfer_in("LIST -notes.txt").await;
    assert_eq!(code, 226);
    assert!(
        String::from_utf8(list)
            .unwrap()
            .trim_end()
            .ends_with(" -notes.txt")
    );
    let (code, nlst) = c.transfer_in("NLST -- -l").await;
    assert_eq!((code, nlst.as_slice()), (226, &b"-l\r\n"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_escapes_the_home_directory() {
    let server = TestServer::start().await;
    let srv = server.root.path().join("srv");
    std::fs::write(srv.join("outside.txt"), "secret").unwrap();
    std::fs::create_dir_all(srv.join("bob")).unwrap();
    std::fs::write(srv.join("bob/private.txt"), "bob's").unwrap();
    std::os::unix::fs::symlink(&srv, server.alice_path("abs-link")).unwrap();
    std::os::unix::fs::symlink("../bob", server.alice_path("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", server.alice_path("passwd")).unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;

    for path in [
        "../outside.txt",
        "../../../../../etc/passwd",
        "/../outside.txt",
        "..%2foutside.txt",
        "abs-link/outside.txt",
        "rel-link/private.txt",
        "passwd",
        "./../bob/private.txt",
    ] {
        let (code, bytes) = c.transfer_in(&format!("RETR {path}")).await;
        assert_eq!(
            code,
            550,
            "RETR {path} must fail: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // `..` at the root stays at the root.
    c.expect("CWD ../../..", 250).await;
    assert!(c.expect("PWD", 257).await.contains("\"/\""));
    c.expect("CWD rel-link", 550).await;
    // Writes cannot land outside either.
    assert_eq!(c.transfer_out("STOR ../escaped.txt", b"x").await, 226);
    assert!(!srv.join("escaped.txt").exists());
    assert!(
        server.alice_path("escaped.txt").exists(),
        "../ from / resolves to / itself"
    );
    c.expect("RNFR escaped.txt", 350).await;
    c.expect("RNTO rel-link/stolen.txt", 550).await;
    c.expect("MKD abs-link/newdir", 550).await;
    c.expect("DELE rel-link/private.txt", 550).await;
    assert!(srv.join("bob/private.txt").exists());
    assert!(!srv.join("newdir").exists());
    let (_, list) = c.transfer_in("LIST rel-link").await;
    assert!(!String::from_utf8_lossy(&list).contains("private"));
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_users_and_anonymous() {
    let server = TestServer::start_with(|c| c.anonymous.enabled = true).await;
    std::fs::write(server.alice_path("shared.txt"), "hello").unwrap();
    let mut r = RawClient::login(server.addr, READER).await;
    let (code, bytes) = r.transfer_in("RETR shared.txt").await;
    assert_eq!((code, bytes.as_slice()), (226, &b"hello"[..]));
    r.expect("MKD d", 550).await;
    r.expect("DELE shared.txt", 550).await;
    r.expect("RNFR shared.txt", 550).await;
    let addr = r.pasv().await;
    let _d = r
        .data_connect(SocketAddr::new(r.server_ip(), addr.port()))
        .await;
    r.expect("STOR new.txt", 550).await;
    assert!(!server.alice_path("new.txt").exists());

    let mut anon = RawClient::login(server.addr, ("anonymous", "me@example.com")).await;
    let (code, _) = anon.transfer_in("RETR alice/shared.txt").await;
    assert_eq!(code, 226, "anonymous reads the root");
    anon.expect("MKD x", 550).await;

    let off = TestServer::start().await;
    let mut c = RawClient::connect(off.addr).await;
    c.expect("USER anonymous", 331).await;
    c.expect("PASS x", 530).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_delayed_then_the_session_closed() {
    let server = TestServer::start_with(|c| c.limits.failed_login_delay_ms = 300).await;
    let mut c = RawClient::connect(server.addr).await;
    // Known and unknown users are delayed alike.
    for (attempt, user) in [(1, "alice"), (2, "nobody"), (3, "alice")] {
        c.expect(&format!("USER {user}"), 331).await;
        let started = std::time::Instant::now();
        c.expect("PASS wrong", 530).await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "attempt {attempt} was not delayed"
        );
    }
    // The third failure (the default maximum) closes the session.
    assert_eq!(c.read_reply().await.0, 421);
    assert_eq!(c.read_reply().await.0, 0, "connection closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_with_too_many_failed_logins_is_locked_out() {
    let server = TestServer::start_with(|c| {
        c.limits.max_failed_logins_per_ip = 4;
        c.limits.lockout_seconds = 2;
    })
    .await;
    // Four failures over two sessions from 127.0.0.2, with a login to an
    // account of the client's own in between: that clears nothing.
    for session in 0..2 {
        let mut c = RawClient::connect_from(server.addr, Some(lo(2))).await;
        for _ in 0..2 {
            c.expect("USER alice", 331).await;
            c.expect("PASS wrong", 530).await;
        }
        if session == 0 {
            RawClient::login_from(server.addr, Some(lo(2)), READER).await;
        }
    }
    // Now even the right password is refused from there, but not elsewhere.
    let mut c = RawClient::connect_from(server.addr, Some(lo(2))).await;
    c.expect("USER alice", 331).await;
    let text = c.expect("PASS alice-pw", 530).await;
    assert!(text.contains("Too many failed logins"), "{text}");
    RawClient::login_from(server.addr, Some(lo(3)), ALICE).await;
    // The lockout ends.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    RawClient::login_from(server.addr, Some(lo(2)), ALICE).await;
}

/// A session ends (421) at its next command once the users file removes
/// its account or changes its password; edits to other accounts leave it be.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_when_their_account_is_removed_or_changed() {
    let server = TestServer::start().await;
    let mut alice = RawClient::login(server.addr, ALICE).await;
    let mut reader = RawClient::login(server.addr, READER).await;
    let carol = format!(
        "[[user]]\nname = \"carol\"\npassword-hash = \"{}\"\n",
        kubeftp_server::users::hash_password("carol-pw")
    );
    std::fs::write(&server.users_file, support::users_toml(&carol)).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alice.expect("NOOP", 200).await;
    reader.expect("NOOP", 200).await;

    // A new password for alice: her session ends, reader's goes on.
    let renamed = support::users_toml(&carol).replacen("name = \"alice\"", "name = \"alice2\"", 1);
    let alice_again = format!(
        "[[user]]\nname = \"alice\"\npassword-hash = \"{}\"\n",
        kubeftp_server::users::hash_password("new-pw")
    );
    std::fs::write(&server.users_file, format!("{renamed}\n{alice_again}")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, text) = alice.cmd("MKD x").await;
    assert_eq!(code, 421, "{text}");
    assert!(!server.alice_path("x").exists());
    reader.expect("NOOP", 200).await;

    // reader removed: its session ends too.
    std::fs::write(&server.users_file, format!("{alice_again}\n{carol}")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reader.cmd("PWD").await.0, 421);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_file_changes_apply_without_restart() {
    let server = TestServer::start().await;
    let carol = format!(
        "[[user]]\nname = \"carol\"\npassword-hash = \"{}\"\n",
        kubeftp_server::users::hash_password("carol-pw")
    );
    let try_login = |user: &'static str, pass: &'static str| async move {
        let mut c = RawClient::connect(server.addr).await;
        c.expect(&format!("USER {user}"), 331).await;
        c.cmd(&format!("PASS {pass}")).await.0 == 230
    };
    assert!(!try_login("carol", "carol-pw").await);
    std::fs::write(&server.users_file, support::users_toml(&carol)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || try_login(
            "carol", "carol-pw"
        )
        .await)
        .await
    );
    // A broken file is ignored: the previous accounts stay.
    std::fs::write(
        &server.users_file,
        "[[user]]\nname = \"x\"\npassword-hash = \"plaintext\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(try_login("carol", "carol-pw").await);
    // So is an empty one, as a rewrite in place shows it for a moment.
    std::fs::write(&server.users_file, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(try_login("carol", "carol-pw").await);
    // Removing the account takes effect.
    std::fs::write(&server.users_file, support::users_toml("")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || !try_login(
            "carol", "carol-pw"
        )
        .await)
        .await
    );
    assert!(try_login("alice", "alice-pw").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn advertised_address_follows_the_file_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("address");
    std::fs::write(&file, "").unwrap();
    let f = file.clone();
    let server = TestServer::start_with(move |c| {
        c.passive.advertised_address_file = Some(f.clone());
        c.passive.when_address_unknown = UnknownAddress::Refuse;
    })
    .await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    let refused = c.expect("PASV", 425).await;
    assert!(refused.contains("not known"), "{refused}");
    c.epsv().await; // EPSV needs no address

    std::fs::write(&file, "203.0.113.10\n").unwrap();
    let started = std::time::Instant::now();
    let seen = eventually(Duration::from_secs(2), async || {
        let (code, text) = c.cmd("PASV").await;
        code == 227 && parse_227(&text).ip() == "203.0.113.10".parse::<IpAddr>().unwrap()
    })
    .await;
    assert!(seen, "new address not used within 2 s");
    std::fs::write(&file, "localhost").unwrap();
    let seen = eventually(Duration::from_secs(2), async || {
        let (code, text) = c.cmd("PASV").await;
        code == 227 && parse_227(&text).ip() == lo(1)
    })
    .await;
    assert!(seen, "DNS name not resolved within 2 s");
    // Same session throughout, and it still transfers.
    let (code, _) = c.transfer_in("LIST").await;
    assert_eq!(code, 226);
    eprintln!("address switches took {:?} in total", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_clients_get_the_local_address() {
    let server = TestServer::start_with(|c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.passive.advertised_address = Some("203.0.113.10".parse().unwrap());
        c.passive.internal_cidrs = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let addr = SocketAddr::new(lo(1), server.addr.port());
    let mut outside = RawClient::login_from(addr, Some(lo(3)), ALICE).await;
    assert_eq!(
        outside.pasv().await.ip(),
        "203.0.113.10".parse::<IpAddr>().unwrap()
    );
    let mut inside = RawClient::login_from(addr, Some(lo(2)), ALICE).await;
    assert_eq!(inside.pasv().await.ip(), lo(1));
}

/// Hundreds of clients (distinct loopback IPs) wait on a 10-port range at
/// the same time, then all transfer.
#[tokio::test(flavor = "multi_thread")]
async fn ten_ports_serve_hundreds_of_concurrent_clients() {
    const CLIENTS: u8 = 200;
    let server = TestServer::start_with(|c| c.limits.max_sessions = 1000).await;
    std::fs::write(server.alice_path("f"), "payload").unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = RawClient::connect_from(server.addr, Some(lo(10 + i))).await;
        c.expect("USER alice", 331).await;
        c.expect("PASS alice-pw", 230).await;
        let addr = c.pasv().await;
        assert!(
            server.ports.contains(addr.port()),
            "port {} outside the range",
            addr.port()
        );
        clients.push((c, addr.port()));
    }
    // Every session is now waiting on one of 10 ports.
    let tasks = clients.into_iter().map(|(mut c, port)| {
        tokio::spawn(async move {
            let mut data = c.data_connect(SocketAddr::new(c.server_ip(), port)).await;
            c.expect("RETR f", 150).await;
            let mut got = Vec::new();
            data.read_to_end(&mut got).await.unwrap();
            assert_eq!(c.read_reply().await.0, 226);
            got
        })
    });
    for t in tasks {
        assert_eq!(t.await.unwrap(), b"payload");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_pasv_list_round_trips_never_see_425() {
    let server = TestServer::start().await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        let (code, _) = c.transfer_in("LIST").await;
        assert_eq!(code, 226, "round trip {i}");
        if i == 999 {
            eprintln!("1000 round trips took {:?}", started.elapsed());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_exhaustion_is_a_clear_425_and_recovers() {
    let server = TestServer::start_with(|c| {
        c.passive.ports = PortRange {
            min: c.passive.ports.min,
            max: c.passive.ports.min + 1,
        }
    })
    .await;
    let mut a = RawClient::login(server.addr, ALICE).await;
    let mut b = RawClient::login(server.addr, ALICE).await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    a.pasv().await;
    b.pasv().await;
    let text = c.expect("PASV", 425).await;
    assert!(text.contains("passive"), "{text}");
    // Another client IP still gets a port.
    let mut other = RawClient::login_from(server.addr, Some(lo(7)), ALICE).await;
    other.pasv().await;
    // Once a waiting session transfers, its port is free again.
    let (code, _) = a.transfer_in("NLST").await; // re-PASVs: replaces a's own reservation
    assert_eq!(code, 226);
    a.expect("QUIT", 221).await;
    assert!(
        eventually(Duration::from_secs(2), async || c.cmd("PASV").await.0
            == 227)
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_connections_from_another_ip_are_refused() {
    let server = TestServer::start_with(|c| c.passive.data_connect_timeout_seconds = 1).await;
    let mut c = RawClient::login_from(server.addr, Some(lo(2)), ALICE).await;
    let addr = c.pasv().await;
    let intruder = tokio::net::TcpSocket::new_v4().unwrap();
    intruder.bind(SocketAddr::new(lo(3), 0)).unwrap();
    let mut stolen = intruder
        .connect(SocketAddr::new(lo(1), addr.port()))
        .await
        .unwrap();
    c.expect("LIST", 425).await;
    let mut buf = [0u8; 16];
    assert_eq!(
        stolen.read(&mut buf).await.unwrap_or(0),
        0,
        "the intruder got nothing"
    );

    // With allow-foreign-data-source (SNAT load balancers) it is accepted.
    let lax = TestServer::start_with(|c| c.passive.allow_foreign_data_source = true).await;
    let mut c = RawClient::login_from(lax.addr, Some(lo(2)), ALICE).await;
    let addr = c.pasv().await;
    let via_lb = tokio::net::TcpSocket::new_v4().unwrap();
    via_lb.bind(SocketAddr::new(lo(3), 0)).unwrap();
    let mut data = via_lb
        .connect(SocketAddr::new(lo(1), addr.port()))
        .await
        .unwrap();
    c.expect("LIST", 150).await;
    data.read_to_end(&mut Vec::new()).await.unwrap();
    assert_eq!(c.read_reply().await.0, 226);
}

#[tokio::test(flavor = "multi_thread")]
async fn active_mode_is_off_by_default_and_never_bounces() {
    let server = TestServer::start().await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    c.expect("PORT 127,0,0,1,200,10", 502).await;
    c.expect("EPRT |1|127.0.0.1|51210|", 502).await;

    let server = TestServer::start_with(|c| c.active.enabled = true).await;
    let mut c = RawClient::login(server.addr, ALICE).await;
    c.expect("PORT 127,0,0,9,200,10", 504).await; // someone else's address
    c.expect("EPRT |1|10.1.2.3|51210|", 504).await;
    // An IPv4-mapped address is still protocol 2.
    c.expect("EPRT |2|::ffff:127.0.0.1|51210|", 522).await;
    let text = c.expect("EPRT |2|::1|51210|", 522).await; // wrong family
    assert!(text.contains("use (1)"), "{text}");
    c.expect("PORT 127,0,0,1,0,80", 504).await; // privileged port
    std::fs::write(server.alice_path("f"), "active!").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    c.expect(
        &format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff),
        200,
    )
    .await;
    let (code, _) = c.cmd("RETR f").await;
    assert_eq!(code, 150);
    let (mut data, from) = listener.accept().await.unwrap();
    assert_eq!(from.ip(), lo(1));
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"active!");
    assert_eq!(c.read_reply().await.0, 226);

    // EPSV ALL locks out everything but EPSV.
    c.expect("EPSV ALL", 200).await;
    c.expect("PASV", 503).await;
    c.expect(&format!("EPRT |1|127.0.0.1|{port}|"), 503).await;
    c.epsv().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_control_connections_use_epsv_and_eprt() {
    let server = TestServer::start_with(|c| {
        c.listen = "[::1]:0".parse().unwrap();
        c.active.enabled = true;
    })
    .await;
    std::fs::write(server.alice_path("f"), "six").unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;
    c.expect("EPSV 1", 522).await;
    c.expect("EPSV 2", 229).await;
    let port = c.epsv().await;
    let mut data = c.data_connect(SocketAddr::new(c.server_ip(), port)).await;
    c.expect("RETR f", 150).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!((got.as_slice(), c.read_reply().await.0), (&b"six"[..], 226));
    // PASV cannot express an IPv6 address...
    c.expect("PASV", 425).await;
    // ...but can advertise a configured IPv4 one.
    let advertised = TestServer::start_with(|c| {
        c.listen = "[::1]:0".parse().unwrap();
        c.passive.advertised_address = Some("203.0.113.10".parse().unwrap());
    })
    .await;
    let mut other = RawClient::login(advertised.addr, ALICE).await;
    assert_eq!(
        other.pasv().await.ip(),
        "203.0.113.10".parse::<IpAddr>().unwrap()
    );
    let text = c.expect("EPRT |1|127.0.0.1|51210|", 522).await;
    assert!(text.contains("use (2)"), "{text}");

    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    c.expect(&format!("EPRT |2|::1|{port}|"), 200).await;
    c.expect("RETR f", 150).await;
    let (mut data, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!((got.as_slice(), c.read_reply().await.0), (&b"six"[..], 226));
}

#[tokio::test(flavor = "multi_thread")]
async fn abor_stops_a_download_and_the_session_goes_on() {
    let server = TestServer::start().await;
    std::fs::write(server.alice_path("big"), random_bytes(64 * 1024 * 1024)).unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;
    let mut data = c.start_download("RETR big").await;
    let mut first = vec![0u8; 4096];
    data.read_exact(&mut first).await.unwrap();
    // STAT answers mid-transfer, then ABOR (with Telnet IP/DM, as clients send it).
    assert!(c.expect("STAT", 213).await.contains("in progress"));
    c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n").await;
    assert_eq!(c.read_reply().await.0, 426);
    assert_eq!(c.read_reply().await.0, 226);
    drop(data);
    c.expect("NOOP", 200).await;
    let (code, _) = c.transfer_in("NLST").await;
    assert_eq!(code, 226);
}

/// ABOR and QUIT are answered while the server waits for the client's
/// data connection, not after the wait's timeout (here an hour; the raw
/// client waits 20 s for a reply).
#[tokio::test(flavor = "multi_thread")]
async fn abor_and_quit_end_the_wait_for_a_data_connection() {
    let server = TestServer::start_with(|c| c.passive.data_connect_timeout_seconds = 3600).await;
    std::fs::write(server.alice_path("f"), "data").unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;
    for command in ["RETR f", "STOR g", "LIST"] {
        c.pasv().await;
        c.send_raw(format!("{command}\r\nABOR\r\n").as_bytes())
            .await;
        assert_eq!(c.read_reply().await.0, 426, "{command}");
        assert_eq!(c.read_reply().await.0, 226, "{command}");
        c.expect("NOOP", 200).await;
    }
    assert!(!server.alice_path("g").exists());
    // Commands that arrive while the data connection opens, and during the
    // transfer, are answered after it, in the order they were sent.
    let addr = c.pasv().await;
    c.send_raw(b"RETR f\r\nPWD\r\nSYST\r\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"data");
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.read_reply().await.0);
    }
    assert_eq!(codes, [150, 226, 257, 215]);
    // The session goes on: a transfer after the aborted ones works.
    let (code, bytes) = c.transfer_in("RETR f").await;
    assert_eq!((code, bytes.as_slice()), (226, &b"data"[..]));

    c.pasv().await;
    c.send_raw(b"STOR g\r\nQUIT\r\n").await;
    assert_eq!(c.read_reply().await.0, 426);
    assert_eq!(c.read_reply().await.0, 221);
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_uploads_never_replace_the_target() {
    let server = TestServer::start().await;
    std::fs::write(server.alice_path("target"), "original").unwrap();
    let only_target = || {
        let names: Vec<_> = std::fs::read_dir(server.alice_path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["target"], "no temp file left behind");
        assert_eq!(
            std::fs::read(server.alice_path("target")).unwrap(),
            b"original"
        );
    };

    // 1. ABOR mid-upload.
    let mut c = RawClient::login(server.addr, ALICE).await;
    let addr = c.pasv().await;
    let mut data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("STOR target", 150).await;
    data.write_all(&random_bytes(1 << 20)).await.unwrap();
    c.send_raw(b"ABOR\r\n").await;
    assert_eq!(c.read_reply().await.0, 426);
    assert_eq!(c.read_reply().await.0, 226);
    drop(data);
    assert!(
        eventually(Duration::from_secs(2), async || std::fs::read_dir(
            server.alice_path("")
        )
        .unwrap()
        .count()
            == 1)
        .await
    );
    only_target();

    // 2. The client dies: the kernel closes both of its connections
    // cleanly, the control connection first or at once; no QUIT came.
    for control_first_by in [Duration::from_millis(200), Duration::ZERO] {
        let mut c = RawClient::login(server.addr, ALICE).await;
        let addr = c.pasv().await;
        let mut data = c
            .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
            .await;
        c.expect("STOR target", 150).await;
        data.write_all(&random_bytes(1 << 16)).await.unwrap();
        drop(c);
        tokio::time::sleep(control_first_by).await;
        drop(data); // FIN, as a clean end would
        tokio::time::sleep(Duration::from_millis(500)).await;
        only_target();
    }

    // 3. The data connection is reset mid-transfer.
    let mut c = RawClient::login(server.addr, ALICE).await;
    let addr = c.pasv().await;
    let data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("STOR target", 150).await;
    let std = data.into_std().unwrap();
    socket2::SockRef::from(&std)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    std::io::Write::write_all(&mut &std, &random_bytes(1 << 16)).unwrap();
    drop(std); // RST
    assert_eq!(c.read_reply().await.0, 426);
    only_target();
}

/// Uploads that run alongside four or more others write directly from
/// buffers sized for the crowd rather than through the page cache: eight
/// at once each arrive whole, and one aborted midway leaves its target as
/// it was.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_arrive_whole_and_an_aborted_one_changes_nothing() {
    let server = TestServer::start().await;
    std::fs::write(server.alice_path("aborted"), "original").unwrap();
    let mut uploads = Vec::new();
    for i in 0..8 {
        let mut c = RawClient::login(server.addr, ALICE).await;
        let addr = c.pasv().await;
        let data = c
            .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
            .await;
        let name = if i == 6 {
            "aborted".to_string()
        } else {
            format!("up-{i}")
        };
        c.expect(&format!("STOR {name}"), 150).await;
        uploads.push((c, data, name, random_bytes((2 << 20) + i * 4099)));
    }
    // Every upload is running before any byte is sent.
    let sending = uploads.into_iter().map(|(mut c, mut data, name, payload)| {
        tokio::spawn(async move {
            if name == "aborted" {
                data.write_all(&payload[..1 << 20]).await.unwrap();
                c.send_raw(b"ABOR\r\n").await;
                assert_eq!(c.read_reply().await.0, 426);
                assert_eq!(c.read_reply().await.0, 226);
                return (name, None);
            }
            data.write_all(&payload).await.unwrap();
            data.shutdown().await.unwrap();
            let (code, text) = c.read_reply().await;
            assert_eq!(code, 226, "{name}: {text}");
            (name, Some(payload))
        })
    });
    for task in sending.collect::<Vec<_>>() {
        let (name, payload) = task.await.unwrap();
        let stored = std::fs::read(server.alice_path(&name)).unwrap();
        match payload {
            Some(payload) => assert!(stored == payload, "{name} differs"),
            None => assert_eq!(stored, b"original"),
        }
    }
}

/// In stream mode the end of the data connection is the end of the file:
/// an upload whose data connection ends cleanly is kept even if the client
/// sent QUIT, or closed the control connection, before the 226 came.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_is_kept_when_the_client_quits_before_the_226() {
    let server = TestServer::start().await;
    let payload = random_bytes(3 << 20);
    let mut c = RawClient::login(server.addr, ALICE).await;
    let addr = c.pasv().await;
    let mut data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("STOR after-quit", 150).await;
    data.write_all(&payload).await.unwrap();
    // Done sending: QUIT and leave without reading the 226.
    c.send_raw(b"QUIT\r\n").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    data.shutdown().await.unwrap(); // EOF: the file is complete
    drop(data);
    let path = server.alice_path("after-quit");
    let kept = eventually(Duration::from_secs(10), async || {
        std::fs::read(&path).is_ok_and(|got| got == payload)
    })
    .await;
    assert!(kept, "the complete upload was discarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_data_connections_time_out_and_the_session_goes_on() {
    let server = TestServer::start_with(|c| c.limits.data_timeout_seconds = 1).await;
    // Far larger than any socket buffer; sparse, so instant to make.
    let big = std::fs::File::create(server.alice_path("big")).unwrap();
    big.set_len(1 << 30).unwrap();
    let mut c = RawClient::login(server.addr, ALICE).await;

    // An upload whose client stops sending, data connection still open.
    let addr = c.pasv().await;
    let mut data = c
        .data_connect(SocketAddr::new(c.server_ip(), addr.port()))
        .await;
    c.expect("STOR stalled", 150).await;
    data.write_all(b"the first bytes, then nothing")
        .await
        .unwrap();
    let (code, text) = c.read_reply().await;
    assert_eq!(code, 426, "{text}");
    assert!(text.contains("timed out"), "{text}");
    c.expect("NOOP", 200).await;
    assert!(!server.alice_path("stalled").exists());

    // A download whose client stops reading, over sendfile and over TYPE A.
    for kind in ["I", "A"] {
        c.expect(&format!("TYPE {kind}"), 200).await;
        let _data = c.start_download("RETR big").await;
        let (code, text) = c.read_reply().await;
        assert_eq!(code, 426, "TYPE {kind}: {text}");
        c.expect("NOOP", 200).await;
    }
    drop(data);
}

/// A client that sends commands but never reads the replies cannot keep its
/// session (and its place in the limits) once the replies stop fitting in
/// the socket buffers.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_replies_loses_its_session() {
    let server = TestServer::start_with(|c| {
        c.limits.idle_timeout_seconds = 1;
        c.limits.max_sessions_per_ip = 1;
    })
    .await;
    for i in 0..500 {
        std::fs::write(server.alice_path(&format!("{i:0>100}")), "").unwrap();
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut deaf = socket.connect(server.addr).await.unwrap();
    // About 60 KB per STAT reply: megabytes nobody reads.
    let mut commands = String::from("USER alice\r\nPASS alice-pw\r\n");
    commands.push_str(&"STAT /\r\n".repeat(200));
    deaf.write_all(commands.as_bytes()).await.unwrap();

    let session_freed = eventually(Duration::from_secs(15), async || {
        let mut c = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut greeting = [0u8; 3];
        c.read_exact(&mut greeting).await.is_ok() && &greeting == b"220"
    })
    .await;
    assert!(session_freed, "the deaf client still holds its session");
    drop(deaf);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_limits_and_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.limits.max_sessions_per_ip = 2;
        c.limits.max_sessions = 3;
        c.limits.idle_timeout_seconds = 1;
    })
    .await;
    let _a = RawClient::connect(server.addr).await;
    let _b = RawClient::connect(server.addr).await;
    let refused = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(refused), &mut line)
        .await
        .unwrap();
    assert!(line.starts_with("421 "), "per-IP limit: {line}");
    let mut other = RawClient::connect_from(server.addr, Some(lo(5))).await;
    let refused = tokio::net::TcpSocket::new_v4().unwrap();
    refused.bind(SocketAddr::new(lo(6), 0)).unwrap();
    let refused = refused.connect(server.addr).await.unwrap();
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(refused), &mut line)
        .await
        .unwrap();
    assert!(line.starts_with("421 "), "total limit: {line}");
    // Idle sessions are closed.
    assert_eq!(other.read_reply().await.0, 421);
}
