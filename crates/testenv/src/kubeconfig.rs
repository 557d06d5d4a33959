//! The admin kubeconfig of a control plane, and clients made from it.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, IoContext, Result};
use crate::pki::Pki;

/// Writes a kubeconfig for `server` that authenticates with the admin
/// certificate. Files are referenced by path, so it is valid as long as the
/// control plane's directory exists.
pub(crate) fn write(path: &Path, server: &str, pki: &Pki) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubeftp-testenv
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: kubeftp-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: kubeftp-testenv
  context:
    cluster: kubeftp-testenv
    user: kubeftp-admin
    namespace: default
current-context: kubeftp-testenv
",
        ca = pki.ca_cert.display(),
        cert = pki.admin_cert.display(),
        key = pki.admin_key.display(),
    );
    std::fs::write(path, text).context(|| format!("writing {}", path.display()))
}

/// A new client for the kubeconfig at `path`. A `kube::Client` belongs to
/// the tokio runtime it was made in, so make one per test.
pub(crate) async fn client(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    Ok(kube::Client::try_from(config)?)
}
