//! The binary as a person runs it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kubeftp-server");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// With no flags: ./ftp-root on 127.0.0.1:2121, and a banner saying how to
/// connect, with a one-run account that works.
#[test]
fn no_flags_serves_ftp_root_and_says_how_to_connect() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Running(child);
    let mut banner = String::new();
    let mut lines = BufReader::new(stdout).lines();
    let curl_line = loop {
        let line = lines
            .next()
            .expect("banner ends with a curl command")
            .unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(cmd) = line.strip_prefix("try: ") {
            break cmd.to_string();
        }
    };
    assert!(
        banner.contains("listening on ftp://127.0.0.1:2121"),
        "{banner}"
    );
    assert!(cwd.path().join("ftp-root").is_dir());
    std::fs::write(cwd.path().join("ftp-root/hello.txt"), "hi").unwrap();
    // Run exactly the advertised command.
    let args: Vec<&str> = curl_line.split_whitespace().collect();
    assert_eq!(args[0], "curl");
    let out = Command::new("curl")
        .args(&args[1..])
        .arg("-sS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello.txt"));
    // No anonymous access unless asked for.
    let anon = Command::new("curl")
        .args(["-sS", "ftp://127.0.0.1:2121/"])
        .output()
        .unwrap();
    assert!(
        !anon.status.success(),
        "anonymous must be refused by default"
    );
}

/// Nobody reads the banner (stdout closed before the server starts): the
/// server still serves.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_addr();
    let mut child = server(&listen, "31120-31129", dir.path())
        .arg("--anonymous")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let _guard = Running(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The banner's write has failed by the time it listens; it must still
    // be alive and serving.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let replies = converse(&listen, &["USER anonymous", "PASS guest", "NOOP", "QUIT"]);
    assert!(replies[2].starts_with("230"), "{replies:?}");
    assert!(replies[3].starts_with("200"), "{replies:?}");
}

#[test]
fn hash_password_prints_a_hash_the_users_file_accepts() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let db = kubeftp_server::users::UserDb::parse(&format!(
        "[[user]]\nname = \"u\"\npassword-hash = \"{hash}\"\n"
    ))
    .unwrap();
    assert!(db.verify("u", "correct horse").is_some());
    assert!(
        db.verify("u", "correct horse\n").is_none(),
        "the newline is not part of the password"
    );
}

#[test]
fn bad_settings_are_refused_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--passive-ports", "30010-30000"], "must not exceed"),
        (&["--advertised-address", "2001:db8::1"], "IPv4"),
        (
            &[
                "--listen",
                "127.0.0.1:30005",
                "--passive-ports",
                "30000-30009",
            ],
            "inside the passive range",
        ),
        (&["--users-file", "/nonexistent/users.toml"], "users file"),
    ];
    for (args, expected) in cases {
        let out = Command::new(BIN).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The server on `listen` with passive ports `passive`, serving `root`,
/// its banner piped.
fn server(listen: &str, passive: &str, root: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--listen", listen, "--passive-ports", passive])
        .arg("--root")
        .arg(root)
        .stdout(Stdio::piped());
    command
}

/// A loopback address with a port nothing listens on right now.
fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Reads the banner until the line saying where it listens.
fn wait_listening(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("listening on") {
            return line;
        }
    }
    panic!("the server never said where it listens");
}

/// Sends FTP commands one by one on a raw connection; returns the replies.
fn converse(addr: &str, commands: &[&str]) -> Vec<String> {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut read_reply = || {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            reply.push_str(&line);
            // The last line of a reply is "NNN text".
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return reply;
            }
        }
    };
    let mut replies = vec![read_reply()];
    for command in commands {
        writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        replies.push(read_reply());
    }
    replies
}

/// Flags win over the config file; --anonymous gives read-only access.
#[test]
fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let (file_root, flag_root) = (dir.path().join("from-file"), dir.path().join("from-flag"));
    std::fs::create_dir_all(&file_root).unwrap();
    std::fs::create_dir_all(&flag_root).unwrap();
    std::fs::write(flag_root.join("visible.txt"), "hi").unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\nroot = \"{}\"\n[passive]\nports = \"31100-31109\"\nadvertised-address = \"192.0.2.1\"\n",
            file_root.display()
        ),
    )
    .unwrap();
    let listen = free_loopback_addr();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &listen, "--anonymous"])
        .args(["--advertised-address", "198.51.100.7"])
        .arg("--root")
        .arg(&flag_root)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let banner = wait_listening(&mut child);
    let _guard = Running(child);
    assert!(banner.contains(&listen), "{banner}");

    // Anonymous works, sees the flag's root, and may not write.
    let replies = converse(
        &listen,
        &[
            "USER anonymous",
            "PASS guest",
            "PASV",
            "MKD nope",
            "SIZE visible.txt",
            "QUIT",
        ],
    );
    assert!(replies[2].starts_with("230"), "{replies:?}");
    assert!(replies[5].starts_with("213 2"), "{replies:?}");
    // The file's address is overridden by the flag's.
    assert!(
        replies[3].starts_with("227") && replies[3].contains("(198,51,100,7,"),
        "{replies:?}"
    );
    let port = |reply: &str| -> u16 {
        let numbers: Vec<u16> = reply[reply.find('(').unwrap() + 1..reply.find(')').unwrap()]
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect();
        numbers[4] * 256 + numbers[5]
    };
    assert!((31100..=31109).contains(&port(&replies[3])), "{replies:?}");
    assert!(
        replies[4].starts_with("550"),
        "anonymous may not write: {replies:?}"
    );
    assert!(!file_root.join("nope").exists() && !flag_root.join("nope").exists());
}

/// What a client sends never reaches the log raw: a line break or a
/// terminal escape in a user name or a path could forge log lines or
/// repaint an operator's terminal.
#[test]
fn client_text_is_escaped_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_addr();
    let mut child = server(&listen, "31130-31139", dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(&mut child);
    let stderr = child.stderr.take().unwrap();
    let guard = Running(child);
    let forged = "evil\r2026-01-01T00:00:00Z  INFO session: logged in \x1b[31mred";
    let replies = converse(&listen, &[&format!("USER {forged}"), "PASS wrong", "QUIT"]);
    assert!(replies[2].starts_with("530"), "{replies:?}");
    drop(guard); // the server exits, so its log ends
    let mut log = Vec::new();
    std::io::Read::read_to_end(&mut BufReader::new(stderr), &mut log).unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("login failed"), "{log}");
    assert!(!log.contains('\r') && !log.contains('\x1b'), "{log:?}");
}

/// Under a file-size limit (ulimit -f), an upload past it gets 552 and the
/// server goes on serving; SIGXFSZ would otherwise kill it.
#[test]
fn a_file_size_limit_fails_the_upload_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("u")).unwrap();
    let db = kubeftp_server::users::hash_password("pw");
    std::fs::write(
        dir.path().join("users.toml"),
        format!("[[user]]\nname = \"u\"\npassword-hash = \"{db}\"\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("big"), vec![1u8; 2 << 20]).unwrap();
    let listen = free_loopback_addr();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 1024 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["--listen", &listen, "--passive-ports", "31140-31149"])
        .arg("--root")
        .arg(&root)
        .arg("--users-file")
        .arg(dir.path().join("users.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut child);
    let mut guard = Running(child);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--user", "u:pw"])
            .args(args)
            .output()
            .unwrap()
    };
    let big = dir.path().join("big");
    // Both ways of writing an upload: binary, and TYPE A (converted).
    for ascii in [&[][..], &["--use-ascii"][..]] {
        let url = format!("ftp://{listen}/big");
        let upload = curl(&[ascii, &["-v", "-T", big.to_str().unwrap(), &url]].concat());
        let said = String::from_utf8_lossy(&upload.stderr);
        assert!(said.contains("< 552 "), "{ascii:?}: {said}");
    }
    let list = curl(&[&format!("ftp://{listen}/")]);
    assert!(list.status.success(), "the server went down");
    assert!(guard.0.try_wait().unwrap().is_none());
    let left: Vec<_> = std::fs::read_dir(root.join("u")).unwrap().collect();
    assert!(left.is_empty(), "the failed upload left {left:?}");
}

/// Off loopback with no users file and no anonymous access nobody can log
/// in: the banner says so, and how to fix it.
#[test]
fn a_server_nobody_can_log_in_to_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_loopback_addr().rsplit(':').next().unwrap().to_owned();
    let mut child = server(&format!("0.0.0.0:{port}"), "31150-31159", dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Running(child);
    // Read on a thread: the server keeps running, so its output never ends
    // (the 30 s only bound the test).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let said = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("no warning that nobody can log in");
        if line.contains("nobody can log in") {
            break line;
        }
    };
    assert!(said.contains("--users-file"), "{said}");
}
