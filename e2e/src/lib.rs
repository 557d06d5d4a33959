//! Support for kubeftp's end-to-end tests. They run against whatever
//! cluster `KUBECONFIG` names (the local one of `make up`, or kind in a
//! user's CI), as a platform team would use the product: the Helm chart
//! installs the operator, FtpServers are applied, and real FTP clients
//! (curl, lftp) in a network namespace behind NAT reach the servers
//! through their load balancers' addresses.
//!
//! Needs root (network namespaces), `helm`, curl and lftp on PATH.

pub mod cluster;
pub mod ftp;
pub mod nat;
pub mod server;
pub mod tls;

/// How long anything in these tests may take to settle: pods starting,
/// load balancers assigning, kubelets syncing a ConfigMap into a pod
/// (kind's kubelets sync every minute).
pub const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);
