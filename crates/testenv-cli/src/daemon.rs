//! Running the control plane as a background process tracked by a pid file.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kubeftp_testenv::{ControlPlane, Options};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

struct Files {
    pid: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
}

fn files(dir: &Path) -> Files {
    Files {
        pid: dir.join("pid"),
        kubeconfig: dir.join("kubeconfig"),
        log: dir.join("testenv.log"),
    }
}

/// The pid in DIR/pid, if that process still runs.
fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(files(dir).pid)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Starts `run` detached and waits until it has written the kubeconfig.
pub fn up(dir: &Path) -> Result<PathBuf> {
    let files = files(dir);
    if running_pid(dir).is_some() && files.kubeconfig.exists() {
        eprintln!("already running (pid file {})", files.pid.display());
        return Ok(files.kubeconfig);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = fs::remove_file(&files.kubeconfig);
    let log =
        File::create(&files.log).with_context(|| format!("creating {}", files.log.display()))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the shell that ran `up` must
        // not reach it.
        .process_group(0)
        .spawn()
        .context("starting `kubeftp-testenv run`")?;
    let started = Instant::now();
    while !files.kubeconfig.exists() {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(&files.log).unwrap_or_default();
            bail!("the control plane exited ({status}):\n{log}");
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            bail!(
                "the control plane was not ready in {START_TIMEOUT:?}; see {}",
                files.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(files.kubeconfig)
}

/// Stops the process in DIR/pid (SIGTERM, then SIGKILL) and removes DIR.
pub fn down(dir: &Path) -> Result<()> {
    if let Some(pid) = running_pid(dir) {
        // SAFETY: plain system calls on a pid we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while running_pid(dir).is_some() {
            if started.elapsed() > STOP_TIMEOUT {
                // Its children die with it (parent-death signal).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("stopped control plane (pid {pid})");
    } else {
        eprintln!("no control plane running in {}", dir.display());
    }
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Runs the control plane until SIGINT or SIGTERM.
pub fn run(dir: &Path) -> Result<()> {
    let files = files(dir);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(&files.pid, std::process::id().to_string())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let plane = ControlPlane::start(Options::default().with_controller_manager()).await?;
        // Written last and atomically: its existence means "ready".
        let staged = dir.join(".kubeconfig.tmp");
        fs::copy(plane.kubeconfig_path(), &staged)?;
        fs::rename(&staged, &files.kubeconfig)?;
        eprintln!(
            "ready: {} (state in {})",
            plane.server(),
            plane.dir().display()
        );
        wait_for_termination().await?;
        eprintln!("stopping");
        drop(plane);
        anyhow::Ok(())
    });
    let _ = fs::remove_file(&files.kubeconfig);
    let _ = fs::remove_file(&files.pid);
    result
}

async fn wait_for_termination() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
