//! One control plane per test process, shared by all its tests; each test
//! works in a namespace of its own.
//!
//! Statics are never dropped, so an exit hook stops the shared instance
//! when the process exits normally (including after failed tests). If the
//! process is killed outright, the parent-death signal takes the children
//! and the next start sweeps the directory.

use std::sync::OnceLock;

use crate::control_plane::{ControlPlane, Options};
use crate::error::{Error, Result};

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The process-wide control plane (with kube-controller-manager), started
/// on first use.
pub async fn shared() -> Result<&'static ControlPlane> {
    // Starting blocks on a runtime of its own: a plane must not depend on
    // the runtime of whichever test happened to come first.
    let shared = tokio::task::spawn_blocking(|| SHARED.get_or_init(start_shared))
        .await
        .map_err(|error| Error::Shared(error.to_string()))?;
    shared
        .as_ref()
        .map_err(|message| Error::Shared(message.clone()))
}

/// A fresh namespace on the shared control plane, with a client for the
/// calling test's runtime.
pub async fn shared_namespace(prefix: &str) -> Result<TestNamespace> {
    let plane = shared().await?;
    let client = plane.client().await?;
    let name = plane.create_namespace(&client, prefix).await?;
    Ok(TestNamespace { client, name })
}

/// A namespace for one test and an admin client.
#[derive(Clone)]
pub struct TestNamespace {
    pub client: kube::Client,
    pub name: String,
}

fn start_shared() -> Result<ControlPlane, String> {
    let started = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        runtime
            .block_on(ControlPlane::start(
                Options::default().with_controller_manager(),
            ))
            .map_err(|error| error.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("starting the control plane panicked".into()));
    if started.is_ok() {
        // SAFETY: registers a plain function; it runs once, at exit.
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
    }
    started
}

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(plane)) = SHARED.get() {
        plane.stop();
    }
}
