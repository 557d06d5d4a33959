//! The cluster as a background process: `up` starts `run` detached and
//! waits for its kubeconfig; `down` stops it and removes what is left.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kubeftp_testenv::background::Background;
use kubeftp_testenv::{ControlPlane, Network, Options};

use crate::layout::*;
use crate::load_balancer::{self, Pool};
use crate::{cleanup, network, node, storage};

const START_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The pid file, the kubeconfig (written once ready) and the daemon's own
/// log, which sits beside the state directory, not in it, so that it
/// survives the teardown for a look after a failure.
fn background(dirs: &Dirs) -> Background {
    Background {
        pid_file: dirs.pid_file(),
        ready_file: dirs.kubeconfig(),
        log: dirs.state.with_extension("log"),
    }
}

/// Starts `run` detached and waits until the cluster is ready.
pub fn up(dirs: &Dirs, images: Option<&Path>) -> Result<PathBuf> {
    let background = background(dirs);
    if background.is_up() {
        eprintln!(
            "already running (pid file {})",
            background.pid_file.display()
        );
        return Ok(background.ready_file);
    }
    let mut args: Vec<OsString> = vec!["run".into(), "--dir".into(), dirs.state.clone().into()];
    if let Some(images) = images {
        args.extend(["--images".into(), images.as_os_str().to_owned()]);
    }
    background
        .start(&args, START_TIMEOUT)
        .context("starting the cluster")?;
    Ok(background.ready_file)
}

/// Stops the cluster (SIGTERM, then SIGKILL) and removes whatever is left,
/// also of a cluster whose process died.
pub fn down(dirs: &Dirs) -> Result<()> {
    if let Some(pid) = background(dirs).stop(STOP_TIMEOUT) {
        eprintln!("stopped the cluster (pid {pid})");
    }
    cleanup::everything(dirs)
}

/// Runs the cluster in the foreground until SIGINT or SIGTERM, then
/// removes everything it made.
pub fn run(dirs: &Dirs, images: Option<&Path>) -> Result<()> {
    let background = background(dirs);
    if let Some(pid) = background.running_pid()
        && pid != std::process::id() as i32
    {
        bail!("a cluster already runs (pid {pid}); `kubeftp-cluster down` stops it");
    }
    cleanup::everything(dirs).context("removing a previous cluster's leftovers")?;
    fs::create_dir_all(&dirs.state)
        .with_context(|| format!("creating {}", dirs.state.display()))?;
    background.record_self()?;
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
