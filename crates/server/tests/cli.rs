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
