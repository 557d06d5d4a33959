//! FtpServers for the tests: the Secrets they need, applying them, and
//! waiting until they serve.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubeftp_api::FtpServer;
use kubeftp_api::condition;
use serde_json::json;

use crate::SETTLE_TIMEOUT;
use crate::cluster::{TestNamespace, eventually};

/// The account every test logs in with.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "e2e-Pa55word";
/// The Secrets [`create_users`] and [`create_tls`] make.
pub const USERS_SECRET: &str = "ftp-users";
pub const TLS_SECRET: &str = "ftp-tls";
const MANAGER: &str = "kubeftp-e2e";

/// The spec tests start from: one replica behind a load balancer, the
/// test account, a persistent volume of the cluster's default class, ten
/// passive ports.
pub fn base_spec() -> serde_json::Value {
    json!({
        "users": { "secretName": USERS_SECRET },
        "storage": { "volumeClaimTemplate": { "size": "1Gi" } },
        "passive": { "portRange": { "min": 30000, "max": 30009 } },
    })
}

/// The users Secret, with [`USER`]'s password hashed as the server wants.
pub async fn create_users(ns: &TestNamespace) -> Result<()> {
    let hash = kubeftp_server::users::hash_password(PASSWORD);
    let users = format!("[[user]]\nname = \"{USER}\"\npassword-hash = \"{hash}\"\n");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": USERS_SECRET },
        "stringData": { "users.toml": users },
    }))?;
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the users Secret")?;
    Ok(())
}

/// A kubernetes.io/tls Secret with `cert` and `key` (PEM).
pub async fn create_tls(ns: &TestNamespace, cert: &str, key: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": TLS_SECRET },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": cert, "tls.key": key },
    }))?;
    Api::<Secret>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the TLS Secret")?;
    Ok(())
}

/// Creates or updates FtpServer `name` with `spec` (server-side apply).
pub async fn apply(ns: &TestNamespace, name: &str, spec: serde_json::Value) -> Result<()> {
    let object = json!({
        "apiVersion": "kubeftp.dev/v1alpha1",
        "kind": "FtpServer",
        "metadata": { "name": name },
        "spec": spec,
    });
    api(ns)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("applying FtpServer {name}"))?;
    Ok(())
}

pub fn api(ns: &TestNamespace) -> Api<FtpServer> {
    Api::namespaced(ns.client.clone(), &ns.name)
}

/// Waits until the operator reports FtpServer `name` Ready, for its
/// current generation, with an address for every replica.
pub async fn wait_ready(ns: &TestNamespace, name: &str) -> Result<FtpServer> {
    let api = api(ns);
    eventually(
        &format!("FtpServer {name} Ready"),
        SETTLE_TIMEOUT,
        || async {
            let ftp = api.get(name).await?;
            Ok(is_ready(&ftp).then_some(ftp))
        },
    )
    .await
}

fn is_ready(ftp: &FtpServer) -> bool {
    let Some(status) = &ftp.status else {
        return false;
    };
    let current = status.observed_generation == ftp.metadata.generation;
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::READY && c.status == "True");
    let addressed = status.endpoints.len() == ftp.spec.replicas as usize
        && status.endpoints.iter().all(|e| e.address.is_some());
    current && ready && addressed
}

/// Each replica's published address and control port, in replica order.
pub fn endpoints(ftp: &FtpServer) -> Vec<(String, u16)> {
    ftp.status
        .iter()
        .flat_map(|status| &status.endpoints)
        .filter_map(|e| Some((e.address.clone()?, e.control_port as u16)))
        .collect()
}
