//! Where the cluster lives: its network plan and its directories.
//!
//! The node is a network namespace on this machine. The host reaches it
//! over a veth pair, and routes the load-balancer pool to it, where
//! kube-proxy delivers the traffic to Services:
//!
//! ```text
//!  host                                  node (netns kubeftp-node)
//!  kubeftp-node0 10.200.0.1 ---veth--- eth0 10.200.0.2  apiserver, kubelet, kube-proxy, ...
//!  route 10.203.0.0/24 via 10.200.0.2    cni0 10.201.0.1 --- pods 10.201.0.0/24
//! ```
//!
//! All ranges are private ones that the tests in this repository keep
//! clear of (the server's NAT tests use 10.213.x, the e2e clients 10.210.x).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The node's name, as a Kubernetes Node and as a network namespace.
pub const NODE_NAME: &str = "kubeftp-node";
/// The host's end of the veth pair (at most 15 characters).
pub const HOST_LINK: &str = "kubeftp-node0";
/// The node's end, inside its namespace.
pub const NODE_LINK: &str = "eth0";
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
pub const NODE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
pub const LINK_PREFIX_LEN: u8 = 24;
/// Pod IPs of the cluster, and the node's share of them.
pub const CLUSTER_CIDR: &str = "10.201.0.0/16";
pub const NODE_POD_SUBNET: &str = "10.201.0.0/24";
/// Service IPs; the first is the `kubernetes` Service's.
pub const SERVICE_CIDR: &str = "10.202.0.0/16";
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
/// Addresses the load-balancer stand-in hands to LoadBalancer Services.
pub const LOAD_BALANCER_POOL: &str = "10.203.0.0/24";
/// The lowest pool address handed out; the ones above .249 are left to
/// tests that move a Service to an address of their choosing.
pub const LOAD_BALANCER_FIRST: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 10);
pub const LOAD_BALANCER_LAST: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 249);
/// The cgroup (in every hierarchy) that holds all pods.
pub const CGROUP_ROOT: &str = "kubeftp";
/// Directory of the CNI plugins from Debian's containernetworking-plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Where `ip netns` binds named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The cluster's directories. `state` holds everything that must go when
/// the cluster goes (containerd's images, kubelet's pods, volumes);
/// `run` holds sockets and runtime state.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub state: PathBuf,
    pub run: PathBuf,
}

impl Dirs {
    pub fn new(state: &Path) -> Dirs {
        Dirs {
            state: state.to_owned(),
            run: PathBuf::from("/run/kubeftp-cluster"),
        }
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.run.join("containerd.sock")
    }

    pub fn kubelet_root(&self) -> PathBuf {
        self.state.join("kubelet")
    }

    pub fn cni_config(&self) -> PathBuf {
        self.state.join("cni")
    }

    pub fn volumes(&self) -> PathBuf {
        self.state.join("volumes")
    }

    /// The admin kubeconfig, written once the cluster is ready.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    /// The pid of the `kubeftp-cluster run` process.
    pub fn pid_file(&self) -> PathBuf {
        self.state.join("pid")
    }
}

/// The network namespace's bind mount, as `ip netns add` makes it.
pub fn netns_path() -> PathBuf {
    Path::new(NETNS_DIR).join(NODE_NAME)
}
