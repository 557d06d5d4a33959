//! A real Kubernetes control plane for tests: etcd, kube-apiserver and
//! optionally kube-controller-manager, built at pinned versions by
//! `make tools` and run as child processes on loopback ports.
//!
//! ```no_run
//! # async fn example() -> kubeftp_testenv::Result<()> {
//! // Shared by every test in the process; each gets its own namespace.
//! let ns = kubeftp_testenv::shared_namespace("my-test").await?;
//! // ... use ns.client in namespace ns.name ...
//!
//! // Or a private control plane, stopped when dropped.
//! let plane = kubeftp_testenv::ControlPlane::start(Default::default()).await?;
//! let client = plane.client().await?;
//! # Ok(()) }
//! ```

pub mod background;
mod control_plane;
mod error;
mod kubeconfig;
mod pki;
mod ports;
pub mod process;
mod shared;
pub mod tools;

pub use control_plane::{ControlPlane, Network, Options};
pub use error::{Error, Result};
pub use pki::Pki;
pub use shared::{TestNamespace, shared, shared_namespace};
