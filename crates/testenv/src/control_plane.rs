//! Starting, probing and stopping one control plane.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::error::{Error, IoContext, Result};
use crate::pki::Pki;
use crate::ports::free_ports;
use crate::process::{Process, log_tail};
use crate::{kubeconfig, tools};

/// Service IPs come from here; the first is the `kubernetes` service. A /16,
/// so `make bench-operator` can create hundreds of Services.
const SERVICE_CIDR: &str = "10.0.0.0/16";
pub(crate) const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";
/// Temp directories are named `<prefix><pid>-<random>`; see [`sweep_stale_dirs`].
const DIR_PREFIX: &str = "kubeftp-testenv-";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also run kube-controller-manager (garbage collector, namespace,
    /// Deployment, ReplicaSet, StatefulSet, service-account and volume
    /// binding controllers).
    pub controller_manager: bool,
    /// Where the binaries are; default [`tools::tools_dir`].
    pub tools_dir: Option<PathBuf>,
    /// Serve a whole cluster from a network namespace instead of tests from
    /// loopback; see [`Network`].
    pub network: Option<Network>,
}

impl Options {
    pub fn with_controller_manager(mut self) -> Self {
        self.controller_manager = true;
        self
    }
}

/// A control plane for a cluster with nodes: every component runs in the
/// network namespace `netns`, the apiserver serves on `address` (reachable
/// from pods and, by route, from the host), publishes itself as the
/// `kubernetes` Service's endpoint, and kube-controller-manager runs all its
/// default controllers.
#[derive(Debug, Clone)]
pub struct Network {
    /// A bound network namespace, e.g. `/run/netns/NAME`.
    pub netns: PathBuf,
    /// The apiserver's address in that namespace.
    pub address: std::net::Ipv4Addr,
    /// Service IPs; the first is the `kubernetes` Service's.
    pub service_cidr: String,
    /// The `kubernetes` Service's IP (the first of `service_cidr`).
    pub kubernetes_service_ip: std::net::Ipv4Addr,
    /// Pod IPs, for kube-controller-manager.
    pub cluster_cidr: String,
}

/// etcd and kube-apiserver (and kube-controller-manager when asked) on free
/// loopback ports, in a fresh temp directory. Dropping it, or calling
/// [`ControlPlane::stop`], kills the processes and removes the directory.
pub struct ControlPlane {
    server: String,
    /// The network namespace every component runs in, if not ours.
    netns: Option<PathBuf>,
    kubeconfig: PathBuf,
    dir: PathBuf,
    pki: Pki,
    running: Mutex<Running>,
}

struct Running {
    /// In start order; stopped in reverse.
    processes: Vec<Process>,
    dir: Option<tempfile::TempDir>,
}

/// Starts of a control plane whose ports were taken before it gives up.
const START_ATTEMPTS: u32 = 3;

impl ControlPlane {
    /// Starts a control plane and waits until it serves requests. A
    /// component that finds its port taken (free a moment before, then
    /// grabbed by someone's outgoing connection) gets a fresh start on new
    /// ports.
    pub async fn start(options: Options) -> Result<ControlPlane> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&options).await {
                Err(error) if error.is_port_taken() && attempt < START_ATTEMPTS => {
                    eprintln!("starting the control plane again on other ports: {error}");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(options: &Options) -> Result<ControlPlane> {
        let tools_dir = options.tools_dir.clone().unwrap_or_else(tools::tools_dir);
        let etcd = tools::binary_in(&tools_dir, "etcd")?;
        let apiserver = tools::binary_in(&tools_dir, "kube-apiserver")?;
        let controller_manager = match options.controller_manager {
            true => Some(tools::binary_in(&tools_dir, "kube-controller-manager")?),
            false => None,
        };

        let temp = std::env::temp_dir();
        sweep_stale_dirs(&temp);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&temp)
            .context(|| format!("creating a directory in {}", temp.display()))?;
        let path = dir.path().to_owned();
        let extra_names: Vec<String> = match &options.network {
            Some(network) => vec![
                network.address.to_string(),
                network.kubernetes_service_ip.to_string(),
            ],
            None => Vec::new(),
        };
        let pki = Pki::generate(&path, &extra_names)?;
        let [
            etcd_port,
            etcd_peer_port,
            apiserver_port,
            controller_manager_port,
        ] = free_ports()?;
        let host = match &options.network {
            Some(network) => network.address.to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let plane = ControlPlane {
            server: format!("https://{host}:{apiserver_port}"),
            netns: options.network.as_ref().map(|n| n.netns.clone()),
            kubeconfig: path.join("kubeconfig"),
            dir: path.clone(),
            pki,
            running: Mutex::new(Running {
                processes: Vec::new(),
                dir: Some(dir),
            }),
        };
        // From here on an early return drops `plane`, which cleans up.
        kubeconfig::write(&plane.kubeconfig, &plane.server, &plane.pki)?;
        let pki = &plane.pki;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        plane.spawn("etcd", &etcd, &etcd_args(&path, &etcd_url, &etcd_peer_url))?;
        plane.spawn(
            "kube-apiserver",
            &apiserver,
            &apiserver_args(pki, &etcd_url, apiserver_port, options.network.as_ref()),
        )?;
        let client = kubeconfig::client(&plane.kubeconfig).await?;
        plane
            .wait_ready("kube-apiserver", &client, "/readyz")
            .await?;

        if let Some(binary) = controller_manager {
            let args = controller_manager_args(
                pki,
                &plane.kubeconfig,
                controller_manager_port,
                options.network.as_ref(),
            );
            let url = format!("https://{host}:{controller_manager_port}");
            plane.start_controller_manager(&binary, &args, &url).await?;
        }
        Ok(plane)
    }

    async fn start_controller_manager(
        &self,
        binary: &Path,
        args: &[String],
        url: &str,
    ) -> Result<()> {
        self.spawn("kube-controller-manager", binary, args)?;
        let mut config = kube::Config::new(url.parse().expect("valid URL"));
        // Its serving certificate is self-signed; /healthz needs no auth.
        config.accept_invalid_certs = true;
        let client = kube::Client::try_from(config)?;
        self.wait_ready("kube-controller-manager", &client, "/healthz")
            .await
    }

    /// The apiserver's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// An admin kubeconfig for this control plane.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The certificates and keys; the admin identity is also what a
    /// cluster's own components use.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The directory holding certificates, data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Process ids of the running components.
    pub fn pids(&self) -> Vec<u32> {
        self.running().processes.iter().map(Process::pid).collect()
    }

    /// A new admin client, bound to the calling tokio runtime.
    pub async fn client(&self) -> Result<kube::Client> {
        kubeconfig::client(&self.kubeconfig).await
    }

    /// Creates a namespace named `<prefix>-<random>` and returns its name.
    pub async fn create_namespace(&self, client: &kube::Client, prefix: &str) -> Result<String> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(created.metadata.name.expect("the apiserver names it"))
    }

    /// Kills the processes and removes the directory. Idempotent.
    pub fn stop(&self) {
        let mut running = self.running();
        while let Some(mut process) = running.processes.pop() {
            process.kill();
        }
        if let Some(dir) = running.dir.take() {
            let _ = dir.close();
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts one more component alongside the control plane (in its
    /// network namespace, logging to `<dir>/<name>.log`); it is stopped
    /// with the rest, before the components started earlier.
    pub fn spawn(&self, name: &str, binary: &Path, args: &[String]) -> Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let process = Process::spawn_in(name, binary, args, &log, self.netns.as_deref())?;
        self.running().processes.push(process);
        Ok(())
    }

    /// An error if any component has exited.
    pub fn check_running(&self) -> Result<()> {
        for process in self.running().processes.iter_mut() {
            process.check_running()?;
        }
        Ok(())
    }

    /// Polls `path` through `client` until it answers, failing early if any
    /// component exits.
    async fn wait_ready(&self, what: &str, client: &kube::Client, path: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            let request = http::Request::get(path)
                .body(Vec::new())
                .expect("valid request");
            let last_error = match client.request_text(request).await {
                Ok(_) => return Ok(()),
                Err(error) => error.to_string(),
            };
            if started.elapsed() > READY_TIMEOUT {
                let log = self.dir.join(format!("{what}.log"));
                return Err(Error::NotReady {
                    what: what.to_owned(),
                    timeout: READY_TIMEOUT,
                    last_error,
                    tail: log_tail(&log),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn etcd_args(dir: &Path, client_url: &str, peer_url: &str) -> Vec<String> {
    vec![
        "--name=testenv".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=testenv={peer_url}"),
        // Throwaway data: durability only costs time.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(pki: &Pki, etcd_url: &str, port: u16, network: Option<&Network>) -> Vec<String> {
    let mut args = vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", pki.apiserver_cert.display()),
        format!("--tls-private-key-file={}", pki.apiserver_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!(
            "--service-account-key-file={}",
            pki.service_account_public_key.display()
        ),
        format!(
            "--service-account-signing-key-file={}",
            pki.service_account_key.display()
        ),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        // As hardened clusters (OpenShift) have it: changing an object's
        // owner references takes delete on the object, and one with
        // blockOwnerDeletion update on its owner's finalizers. The tests of
        // the chart's RBAC run against it.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
    ];
    match network {
        None => args.extend([
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // No kubernetes-service endpoints to publish for a loopback address.
            "--endpoint-reconciler-type=none".into(),
        ]),
        Some(network) => args.extend([
            format!("--bind-address={}", network.address),
            format!("--advertise-address={}", network.address),
            format!("--service-cluster-ip-range={}", network.service_cidr),
            // For logs, exec and port-forward; kubelets trust our CA.
            format!("--kubelet-client-certificate={}", pki.admin_cert.display()),
            format!("--kubelet-client-key={}", pki.admin_key.display()),
            // Nodes are reached by address: there is no DNS for their names.
            "--kubelet-preferred-address-types=InternalIP".into(),
        ]),
    }
    args
}

fn controller_manager_args(
    pki: &Pki,
    kubeconfig: &Path,
    port: u16,
    network: Option<&Network>,
) -> Vec<String> {
    let bind = network.map_or("127.0.0.1".to_owned(), |n| n.address.to_string());
    let mut args = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--bind-address={bind}"),
        format!("--secure-port={port}"),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=false".into(),
        format!(
            "--service-account-private-key-file={}",
            pki.service_account_key.display()
        ),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        "--profiling=false".into(),
    ];
    match network {
        None => args.extend([
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!("--controllers={}", CONTROLLERS.join(",")),
        ]),
        // A real cluster: every default controller (endpoint slices for
        // kube-proxy, volume binding, node lifecycle, ...).
        Some(network) => args.extend([
            format!("--service-cluster-ip-range={}", network.service_cidr),
            format!("--cluster-cidr={}", network.cluster_cidr),
            "--controllers=*".into(),
        ]),
    }
    args
}

/// kube-controller-manager's controllers that tests rely on.
const CONTROLLERS: &[&str] = &[
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    // Claims bind to volumes, and deleted claims and volumes can go.
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
];

/// Removes temp directories left by processes that died without cleaning
/// up (killed outright, so no destructor or exit hook ran).
fn sweep_stale_dirs(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_dirs_of_dead_processes() {
        let temp = tempfile::tempdir().unwrap();
        let mine = temp
            .path()
            .join(format!("{DIR_PREFIX}{}-abc", std::process::id()));
        // Pids above pid_max (4194304 at most) never exist.
        let dead = temp.path().join(format!("{DIR_PREFIX}99999999-abc"));
        let other = temp.path().join("unrelated-99999999-abc");
        for dir in [&mine, &dead, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep_stale_dirs(temp.path());
        assert!(mine.exists() && other.exists());
        assert!(!dead.exists());
    }

    #[tokio::test]
    async fn missing_binaries_fail_naming_make_tools() {
        let empty = tempfile::tempdir().unwrap();
        let options = Options {
            tools_dir: Some(empty.path().to_owned()),
            ..Default::default()
        };
        let message = ControlPlane::start(options)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("`make tools`"), "{message}");
    }
}
