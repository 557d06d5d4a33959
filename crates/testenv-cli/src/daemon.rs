//! Running the control plane as a background process tracked by a pid file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kubeftp_testenv::background::Background;
use kubeftp_testenv::{ControlPlane, Options};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// DIR/pid, DIR/kubeconfig (written once ready) and DIR/testenv.log.
fn background(dir: &Path) -> Background {
    Background {
        pid_file: dir.join("pid"),
        ready_file: dir.join("kubeconfig"),
        log: dir.join("testenv.log"),
    }
}

/// Starts `run` detached and waits until it has written the kubeconfig.
pub fn up(dir: &Path) -> Result<PathBuf> {
    let background = background(dir);
    if background.is_up() {
        eprintln!(
            "already running (pid file {})",
            background.pid_file.display()
        );
        return Ok(background.ready_file);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let args = ["run".into(), "--dir".into(), dir.as_os_str().to_owned()];
    background
        .start(&args, START_TIMEOUT)
        .context("starting the control plane")?;
    Ok(background.ready_file)
}

/// Stops the process in DIR/pid (SIGTERM, then SIGKILL) and removes DIR.
pub fn down(dir: &Path) -> Result<()> {
    match background(dir).stop(STOP_TIMEOUT) {
        Some(pid) => eprintln!("stopped control plane (pid {pid})"),
        None => eprintln!("no control plane running in {}", dir.display()),
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
    let background = background(dir);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    background.record_self()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let plane = ControlPlane::start(Options::default().with_controller_manager()).await?;
        // Written last and atomically: its existence means "ready".
        let staged = dir.join(".kubeconfig.tmp");
        fs::copy(plane.kubeconfig_path(), &staged)?;
        fs::rename(&staged, &background.ready_file)?;
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
    let _ = fs::remove_file(&background.ready_file);
    let _ = fs::remove_file(&background.pid_file);
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
