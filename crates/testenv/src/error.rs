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

impl Error {
    /// A component exited because its port was taken: the ports were free
    /// when chosen, so a start on fresh ones will do.
    pub(crate) fn is_port_taken(&self) -> bool {
        matches!(self, Error::Exited { tail, .. } if tail.contains("address already in use"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exited(tail: &str) -> Error {
        Error::Exited {
            name: "etcd".into(),
            status: ExitStatus::from_raw(1 << 8),
            log: "etcd.log".into(),
            tail: tail.into(),
        }
    }

    #[test]
    fn a_taken_port_is_told_from_other_failures() {
        let taken = exited(
            r#"{"level":"fatal","msg":"discovery failed","error":"listen tcp 127.0.0.1:45407: bind: address already in use"}"#,
        );
        assert!(taken.is_port_taken());
        assert!(!exited("panic: something else").is_port_taken());
    }
}
