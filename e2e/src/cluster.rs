//! The cluster under test: a client from `KUBECONFIG`, the operator
//! installed by the Helm chart (once per test process), and a namespace
//! per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

/// Where the chart installs the operator.
pub const OPERATOR_NAMESPACE: &str = "kubeftp-system";
/// The Helm release, and so the operator Deployment's name.
pub const RELEASE: &str = "kubeftp";

/// The repository's root (the chart and examples live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_owned()
}

/// A client for the cluster `KUBECONFIG` names, with the operator
/// installed.
pub async fn client() -> Result<kube::Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is not set: the e2e tests need a cluster (`make e2e` starts one)");
    }
    install_operator()?;
    kube::Client::try_default()
        .await
        .context("connecting to the cluster in KUBECONFIG")
}

/// `helm upgrade --install` of charts/kubeftp, once per process, waiting
/// until the operator is available.
pub fn install_operator() -> Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| helm_install().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(|message| anyhow::anyhow!("installing the operator with Helm: {message}"))
}

fn helm_install() -> Result<()> {
    let chart = repo_root().join("charts/kubeftp");
    let output = Command::new("helm")
        .args(["upgrade", "--install", RELEASE])
        .arg(&chart)
        .args(["--namespace", OPERATOR_NAMESPACE, "--create-namespace"])
        .args(["--wait", "--timeout", "3m"])
        // Text logs read better in a failed test's output.
        .args(["--set", "logFormat=text"])
        .output()
        .context("running helm (is it on PATH?)")?;
    if !output.status.success() {
        bail!(
            "helm failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A namespace of one test's own; [`TestNamespace::delete`] removes it.
pub struct TestNamespace {
    pub client: kube::Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &kube::Client, prefix: &str) -> Result<TestNamespace> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("e2e-{prefix}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .context("creating the test namespace")?;
        Ok(TestNamespace {
            client: client.clone(),
            name: created.metadata.name.context("the apiserver names it")?,
        })
    }

    /// Deletes the namespace (and all in it) without waiting. Tests call it
    /// when they pass; a failed test leaves its namespace for a look.
    pub async fn delete(self) -> Result<()> {
        Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

/// Polls `check` until it returns `Some`, or fails with what the last
/// attempt said after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let started = tokio::time::Instant::now();
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "not yet".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        if started.elapsed() > timeout {
            bail!("{what}: not after {timeout:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
