//! The cluster as a background process: `up` starts `run` detached and
//! waits for its kubeconfig; `down` stops it and removes what is left.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kubeftp_testenv::{ControlPlane, Network, Options};

use crate::layout::*;
use crate::load_balancer::{self, Pool};
use crate::{cleanup, network, node, storage};

const START_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon's own log, beside (not in) the state directory, so that it
/// survives the teardown for a look after a failure.
fn log_path(dirs: &Dirs) -> PathBuf {
    dirs.state.with_extension("log")
}

/// The pid in the pid file, if that process still runs.
fn running_pid(dirs: &Dirs) -> Option<i32> {
    let pid: i32 = fs::read_to_string(dirs.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Starts `run` detached and waits until the cluster is ready.
pub fn up(dirs: &Dirs, images: Option<&Path>) -> Result<PathBuf> {
    if running_pid(dirs).is_some() && dirs.kubeconfig().exists() {
        eprintln!("already running (pid file {})", dirs.pid_file().display());
        return Ok(dirs.kubeconfig());
    }
    let log_file = log_path(dirs);
    if let Some(parent) = log_file.parent() {
        fs::create_dir_all(parent)?;
    }
    let log =
        File::create(&log_file).with_context(|| format!("creating {}", log_file.display()))?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("run").arg("--dir").arg(&dirs.state);
    if let Some(images) = images {
        command.arg("--images").arg(images);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the shell that ran `up` must
        // not reach it.
        .process_group(0)
        .spawn()
        .context("starting `kubeftp-cluster run`")?;
    let started = Instant::now();
    while !dirs.kubeconfig().exists() {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(&log_file).unwrap_or_default();
            bail!("the cluster exited ({status}):\n{log}");
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            bail!(
                "the cluster was not ready in {START_TIMEOUT:?}; see {}",
                log_file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(dirs.kubeconfig())
}

/// Stops the cluster (SIGTERM, then SIGKILL) and removes whatever is left,
/// also of a cluster whose process died.
pub fn down(dirs: &Dirs) -> Result<()> {
    if let Some(pid) = running_pid(dirs) {
        // SAFETY: plain system calls on the pid we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while running_pid(dirs).is_some() {
            if started.elapsed() > STOP_TIMEOUT {
                // Its children die with it (parent-death signal).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("stopped the cluster (pid {pid})");
    }
    cleanup::everything(dirs)
}

/// Runs the cluster in the foreground until SIGINT or SIGTERM, then
/// removes everything it made.
pub fn run(dirs: &Dirs, images: Option<&Path>) -> Result<()> {
    if let Some(pid) = running_pid(dirs)
        && pid != std::process::id() as i32
    {
        bail!("a cluster already runs (pid {pid}); `kubeftp-cluster down` stops it");
    }
    cleanup::everything(dirs).context("removing a previous cluster's leftovers")?;
    fs::create_dir_all(&dirs.state)
        .with_context(|| format!("creating {}", dirs.state.display()))?;
    fs::write(dirs.pid_file(), std::process::id().to_string())?;
    let images = match images {
        Some(dir) => image_archives(dir)?,
        None => Vec::new(),
    };

    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        network::create()?;
        let tools_dir = kubeftp_testenv::tools::tools_dir();
        let plane = ControlPlane::start(Options {
            controller_manager: true,
            tools_dir: Some(tools_dir.clone()),
            network: Some(Network {
                netns: netns_path(),
                address: NODE_ADDRESS,
                service_cidr: SERVICE_CIDR.into(),
                kubernetes_service_ip: KUBERNETES_SERVICE_IP,
                cluster_cidr: CLUSTER_CIDR.into(),
            }),
        })
        .await?;
        tracing::info!(dir = %plane.dir().display(), "control plane ready");
        node::start(&plane, dirs, &tools_dir, &images).await?;
        tracing::info!("node ready");

        let client = plane.client().await?;
        let pool = Pool {
            network: LOAD_BALANCER_POOL.parse()?,
            first: LOAD_BALANCER_FIRST,
            last: LOAD_BALANCER_LAST,
        };
        tokio::spawn(load_balancer::run(client.clone(), pool));
        let volumes = dirs.volumes();
        tokio::spawn(async move {
            if let Err(error) = storage::run(client, volumes).await {
                tracing::error!("storage provisioner stopped: {error:#}");
            }
        });

        // Written last and atomically: its existence means "ready".
        let staged = dirs.state.join(".kubeconfig.tmp");
        fs::copy(plane.kubeconfig_path(), &staged)?;
        fs::rename(&staged, dirs.kubeconfig())?;
        fs::write(
            dirs.state.join("logs-dir"),
            plane.dir().display().to_string(),
        )?;
        tracing::info!(kubeconfig = %dirs.kubeconfig().display(), "cluster ready");

        wait_for_termination(&plane).await?;
        tracing::info!("stopping");
        drop(plane);
        anyhow::Ok(())
    });
    let cleaned = cleanup::everything(dirs);
    result.and(cleaned)
}

/// The `*.tar` files in `dir`, sorted.
fn image_archives(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut archives: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading image directory {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "tar"))
        .collect();
    archives.sort();
    if archives.is_empty() {
        bail!("no image archives (*.tar) in {}", dir.display());
    }
    Ok(archives)
}

/// Waits for SIGINT or SIGTERM; fails if a component exits meanwhile.
async fn wait_for_termination(plane: &ControlPlane) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut check = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = check.tick() => plane.check_running()?,
        }
    }
}
