//! The one error type of this crate.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "control-plane binary `{binary}` not found in {dir}: run `make tools` to build the \
         pinned Kubernetes components (or point KUBEFTP_TOOLS_DIR at a directory that has them)"
    )]
    ToolMissing { binary: String, dir: PathBuf },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),

    #[error(
        "{name} exited before the control plane was ready ({status}); last lines of {log}:\n{tail}"
    )]
    Exited {
        name: String,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "{what} not ready after {timeout:?} (last error: {last_error}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        what: String,
        timeout: Duration,
        last_error: String,
        log: PathBuf,
        tail: String,
    },

    #[error("loading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("the shared control plane failed to start: {0}")]
    Shared(String),

    #[error("the background process: {0}")]
    Background(String),
}

/// Adds context to an I/O result.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
