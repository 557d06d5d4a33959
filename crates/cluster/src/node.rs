//! The node: containerd, kubelet, kube-proxy and kube-scheduler, started
//! alongside the control plane in the node's network namespace.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::Api;
use kubeftp_testenv::ControlPlane;

use crate::command::run;
use crate::layout::*;

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the node's configuration files are rendered to.
struct Configs {
    containerd: PathBuf,
    kubelet: PathBuf,
    kube_proxy: PathBuf,
}

/// Starts the node's components and waits until the Node is Ready.
/// `images` are OCI archives to import before the kubelet starts.
pub async fn start(
    plane: &ControlPlane,
    dirs: &Dirs,
    tools_dir: &Path,
    images: &[PathBuf],
) -> Result<()> {
    prepare_cgroups()?;
    let configs = render_configs(plane, dirs)?;

    let containerd = vec!["--config".into(), path_arg(&configs.containerd)];
    plane.spawn("containerd", Path::new(CONTAINERD), &containerd)?;
    wait_for_socket(plane, &dirs.containerd_socket()).await?;
    for image in images {
        import_image(dirs, image)?;
    }

    let kubeconfig = path_arg(plane.kubeconfig_path());
    let kubelet = vec![
        format!("--config={}", configs.kubelet.display()),
        format!("--kubeconfig={kubeconfig}"),
        format!("--hostname-override={NODE_NAME}"),
        format!("--node-ip={NODE_ADDRESS}"),
        format!("--root-dir={}", dirs.kubelet_root().display()),
        format!("--cert-dir={}", dirs.kubelet_root().join("pki").display()),
        "--v=1".into(),
    ];
    plane.spawn("kubelet", &tools_dir.join("kubelet"), &kubelet)?;
    let kube_proxy = vec![format!("--config={}", configs.kube_proxy.display())];
    plane.spawn("kube-proxy", &tools_dir.join("kube-proxy"), &kube_proxy)?;
    let scheduler = vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
    ];
    plane.spawn(
        "kube-scheduler",
        &tools_dir.join("kube-scheduler"),
        &scheduler,
    )?;

    wait_until_ready(plane).await
}

/// Imports an OCI archive whose index names its image
/// (`io.containerd.image.name`, as e2e/images/build.sh writes it).
pub fn import_image(dirs: &Dirs, archive: &Path) -> Result<()> {
    let socket = dirs.containerd_socket();
    run(
        CTR,
        [
            "--address".as_ref(),
            socket.as_os_str(),
            "--namespace".as_ref(),
            "k8s.io".as_ref(),
            "images".as_ref(),
            "import".as_ref(),
            archive.as_os_str(),
        ],
    )
    .with_context(|| format!("importing image {}", archive.display()))?;
    Ok(())
}

/// Renders the configuration templates into the state directory.
fn render_configs(plane: &ControlPlane, dirs: &Dirs) -> Result<Configs> {
    let vars = template_vars(dirs, &plane.pki().ca_cert, plane.kubeconfig_path())?;
    let config_dir = dirs.state.join("config");
    for dir in [&config_dir, &dirs.cni_config(), &dirs.run] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let write = |path: PathBuf, template: &str| -> Result<PathBuf> {
        let text = render(template, &vars)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    write(
        dirs.cni_config().join("10-kubeftp.conflist"),
        include_str!("../config/cni.conflist"),
    )?;
    Ok(Configs {
        containerd: write(
            config_dir.join("containerd.toml"),
            include_str!("../config/containerd.toml"),
        )?,
        kubelet: write(
            config_dir.join("kubelet.yaml"),
            include_str!("../config/kubelet.yaml"),
        )?,
        kube_proxy: write(
            config_dir.join("kube-proxy.yaml"),
            include_str!("../config/kube-proxy.yaml"),
        )?,
    })
}

/// The values the templates in config/ are rendered with.
fn template_vars(
    dirs: &Dirs,
    ca_cert: &Path,
    kubeconfig: &Path,
) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("STATE", path_arg(&dirs.state)),
        ("RUN", path_arg(&dirs.run)),
        ("CNI_BIN_DIR", CNI_BIN_DIR.into()),
        ("PAUSE_IMAGE", pause_image()?),
        ("NODE_POD_SUBNET", NODE_POD_SUBNET.into()),
        ("NODE_ADDRESS", NODE_ADDRESS.to_string()),
        ("NODE_NAME", NODE_NAME.into()),
        ("CA_CERT", path_arg(ca_cert)),
        ("CGROUP_ROOT", CGROUP_ROOT.into()),
        ("CLUSTER_CIDR", CLUSTER_CIDR.into()),
        ("KUBECONFIG", path_arg(kubeconfig)),
    ])
}

/// The sandbox image, built from the pinned Kubernetes sources.
pub fn pause_image() -> Result<String> {
    let version = kubeftp_testenv::tools::version("PAUSE_VERSION")
        .context("PAUSE_VERSION missing from e2e/tools/VERSIONS")?;
    Ok(format!("registry.k8s.io/pause:{version}"))
}

/// Replaces every `${NAME}` in `template`; a name without a value is an
/// error, so a template can't silently keep a placeholder.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut text = template.to_owned();
    for (name, value) in vars {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    if let Some(start) = text.find("${") {
        let rest = &text[start..];
        let end = rest.find('}').map_or(rest.len(), |i| i + 1);
        bail!("no value for {} in a node template", &rest[..end]);
    }
    Ok(text)
}

/// The kubelet wants its cgroup root to exist in every hierarchy it
/// manages, and the hugetlb controller mounted. Both are created here;
/// cpuset needs its CPUs and memory nodes filled in before use.
fn prepare_cgroups() -> Result<()> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        bail!("this host runs cgroup v2 only; the node is set up for cgroup v1 hosts");
    }
    let hugetlb = base.join("hugetlb");
    if !hugetlb.join("tasks").exists() {
        std::fs::create_dir_all(&hugetlb).context("creating the hugetlb cgroup mount point")?;
        run(
            "mount",
            [
                "-t",
                "cgroup",
                "-o",
                "hugetlb",
                "cgroup",
                "/sys/fs/cgroup/hugetlb",
            ],
        )?;
    }
    for hierarchy in cgroup_hierarchies()? {
        let root = hierarchy.join(CGROUP_ROOT);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let parent = hierarchy.join(file);
            if parent.exists() {
                let value = std::fs::read_to_string(&parent)?;
                std::fs::write(root.join(file), value.trim())
                    .with_context(|| format!("filling {}", root.join(file).display()))?;
            }
        }
    }
    Ok(())
}

/// The mounted cgroup v1 hierarchies (and the v2 one of a hybrid host).
pub fn cgroup_hierarchies() -> Result<Vec<PathBuf>> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_, target, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup" || kind == "cgroup2").then(|| PathBuf::from(target))
        })
        .collect())
}

async fn wait_for_socket(plane: &ControlPlane, socket: &Path) -> Result<()> {
    let started = Instant::now();
    while !socket.exists() {
        plane.check_running()?;
        if started.elapsed() > Duration::from_secs(30) {
            bail!("containerd did not create {} in 30 s", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits for the Node to be Ready and the default ServiceAccount to exist
/// (pods can't be created before it).
async fn wait_until_ready(plane: &ControlPlane) -> Result<()> {
    let client = plane.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
    let started = Instant::now();
    loop {
        plane.check_running()?;
        let node = nodes.get_opt(NODE_NAME).await?;
        let ready = node.as_ref().is_some_and(is_ready);
        if ready && accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        if started.elapsed() > NODE_READY_TIMEOUT {
            let state = match node {
                None => "never registered".to_owned(),
                Some(node) => format!("conditions {:?}", node.status.and_then(|s| s.conditions)),
            };
            bail!(
                "node {NODE_NAME} not Ready after {NODE_READY_TIMEOUT:?} ({state}); see the logs in {}",
                plane.dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_placeholder() {
        let text = render(
            "a=${A} b=${B} a=${A}",
            &[("A", "1".into()), ("B", "2".into())],
        );
        assert_eq!(text.unwrap(), "a=1 b=2 a=1");
    }

    #[test]
    fn render_refuses_a_placeholder_without_value() {
        let message = render("x=${MISSING}", &[]).unwrap_err().to_string();
        assert!(message.contains("${MISSING}"), "{message}");
    }

    #[test]
    fn every_template_renders_with_the_values_node_gives() {
        let dirs = Dirs::new(Path::new("/state"));
        let vars = template_vars(&dirs, Path::new("/ca.crt"), Path::new("/kubeconfig")).unwrap();
        for template in [
            include_str!("../config/containerd.toml"),
            include_str!("../config/kubelet.yaml"),
            include_str!("../config/kube-proxy.yaml"),
            include_str!("../config/cni.conflist"),
        ] {
            render(template, &vars).unwrap();
        }
        let conflist = render(include_str!("../config/cni.conflist"), &vars).unwrap();
        serde_json::from_str::<serde_json::Value>(&conflist).unwrap();
    }
}
