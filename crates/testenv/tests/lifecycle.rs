//! A control plane leaves nothing behind: not on drop, not when a test
//! panics, not at process exit (shared instance), and not when the test
//! process is killed outright.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kubeftp_testenv::{ControlPlane, Options};

fn alive(pid: u32) -> bool {
    // Zombies count as gone: they no longer run.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits until none of `pids` runs (the kernel may take a moment).
fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| alive(pid)) {
        assert!(Instant::now() < deadline, "still running: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn drop_stops_processes_and_removes_directory() -> Result<()> {
    let started = Instant::now();
    let plane = ControlPlane::start(Options::default()).await?;
    eprintln!("control plane ready in {:?}", started.elapsed());
    let version = plane.client().await?.apiserver_version().await?;
    assert_eq!(
        Some(version.git_version.as_str()),
        kubeftp_testenv::tools::version("KUBERNETES_VERSION")
    );

    let (pids, dir) = (plane.pids(), plane.dir().to_owned());
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    assert!(pids.iter().all(|&pid| alive(pid)) && dir.exists());
    drop(plane);
    assert_all_gone(&pids);
    assert!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}

#[test]
fn panicking_test_still_cleans_up() {
    let (report, reported) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let plane = runtime
            .block_on(ControlPlane::start(Options::default()))
            .unwrap();
        report.send((plane.pids(), plane.dir().to_owned())).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (pids, dir) = reported.recv().unwrap();
    assert_all_gone(&pids);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Set in the helper process that the next tests start.
const HELPER_ENV: &str = "KUBEFTP_TESTENV_LIFECYCLE_HELPER";

/// Not a test of its own: started by the tests below in a child process.
/// Starts the shared control plane, reports it on stdout, then returns
/// (`exit`) or waits to be killed (`hang`).
#[tokio::test]
#[ignore = "helper process for the tests below"]
async fn helper_starts_shared_control_plane() -> Result<()> {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return Ok(());
    };
    let plane = kubeftp_testenv::shared().await?;
    let pids: Vec<String> = plane.pids().iter().map(u32::to_string).collect();
    println!("READY {} {}", plane.dir().display(), pids.join(","));
    if mode == "hang" {
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    Ok(())
}

/// Runs the helper in a child process until it reports; returns the child,
/// the control plane's directory and its pids.
fn start_helper(mode: &str) -> Result<(std::process::Child, PathBuf, Vec<u32>)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "helper_starts_shared_control_plane"])
        .args(["--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, mode)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    while let Some(line) = lines.next() {
        // libtest prints "test NAME ... " on the same line first.
        if let Some((_, report)) = line?.split_once("READY ") {
            let (dir, pids) = report.rsplit_once(' ').context("report")?;
            let pids = pids.split(',').map(str::parse).collect::<Result<_, _>>()?;
            // Keep draining, or the helper fails writing to a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((child, dir.into(), pids));
        }
    }
    bail!("helper exited without reporting: {:?}", child.wait()?)
}

#[test]
fn shared_control_plane_stops_at_process_exit() -> Result<()> {
    let (mut child, dir, pids) = start_helper("exit")?;
    assert!(child.wait()?.success());
    assert_all_gone(&pids);
    assert!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}

#[test]
fn killed_test_process_takes_its_children_along() -> Result<()> {
    let (mut child, dir, pids) = start_helper("hang")?;
    child.kill()?; // SIGKILL: no destructor, no exit hook runs.
    child.wait()?;
    assert_all_gone(&pids);
    // The directory stays until the next start sweeps it; tidy up here.
    assert!(Path::new(&dir).exists());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
