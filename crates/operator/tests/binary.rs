//! The `kubeftp-operator` binary: `crd`, and `run` with its HTTP endpoints,
//! JSON logs and a clean exit on SIGTERM.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kubeftp_testenv::{shared, shared_namespace};

const BINARY: &str = env!("CARGO_BIN_EXE_kubeftp-operator");

#[test]
fn crd_subcommand_prints_the_crd() {
    let output = Command::new(BINARY).arg("crd").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        kubeftp_operator::crd::crd_yaml()
    );
}

/// A plain HTTP/1.0 GET: (status code, body).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[tokio::test]
async fn run_serves_health_and_metrics_logs_json_and_stops_on_sigterm() -> Result<()> {
    let ns = shared_namespace("binary").await?;
    support::install_crd(&ns.client).await?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(BINARY)
        .args(["run", "--namespace", &ns.name, "--log-format", "json"])
        .args(["--http-address", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", shared().await?.kubeconfig_path())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()?;

    let started = Instant::now();
    let ready = loop {
        if let Ok((200, body)) = get(port, "/readyz") {
            break body;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("/readyz did not answer 200 within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready, "ready\n");
    assert_eq!(get(port, "/healthz")?, (200, "ok\n".to_owned()));
    let (code, metrics) = get(port, "/metrics")?;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("kubeftp_operator_reconciliations_total"),
        "{metrics}"
    );

    // SIGTERM: a clean, prompt exit.
    Command::new("kill").arg(child.id().to_string()).status()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            bail!("no exit within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");

    let stderr = BufReader::new(child.stderr.take().unwrap());
    let lines: Vec<String> = stderr.lines().collect::<Result<_, _>>()?;
    assert!(!lines.is_empty());
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            record["level"].is_string() && record["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
    Ok(())
}
