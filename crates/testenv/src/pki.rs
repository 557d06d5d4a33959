//! Certificates and keys for one control plane: a CA, the apiserver's
//! serving certificate, an admin client certificate (group system:masters)
//! and the service-account signing key. All ECDSA P-256, PEM on disk.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::{IoContext, Result};

/// Names and addresses the apiserver answers to: loopback for us, the
/// in-cluster names and the first service IP for pods.
const APISERVER_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    crate::control_plane::KUBERNETES_SERVICE_IP,
];

/// Paths of the generated files.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Signs service-account tokens.
    pub service_account_key: PathBuf,
    /// Verifies them (the apiserver wants the public half for that).
    pub service_account_public_key: PathBuf,
}

impl Pki {
    /// Generates everything and writes it into `dir`. The apiserver's
    /// certificate also names `extra_names` (IPs or DNS names).
    pub fn generate(dir: &Path, extra_names: &[String]) -> Result<Pki> {
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kubeftp-testenv-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let names: Vec<String> = APISERVER_NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(extra_names.iter().cloned())
            .collect();
        let mut serving = CertificateParams::new(names)?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &ca)?;

        // Kubernetes reads the user from CN and the groups from O.
        let mut admin = CertificateParams::default();
        admin
            .distinguished_name
            .push(DnType::CommonName, "kubeftp-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin_cert = admin.signed_by(&admin_key, &ca)?;

        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            apiserver_cert: dir.join("apiserver.crt"),
            apiserver_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            service_account_key: dir.join("service-account.key"),
            service_account_public_key: dir.join("service-account.pub"),
        };
        write(&pki.ca_cert, &ca.pem())?;
        write(&pki.apiserver_cert, &serving_cert.pem())?;
        write(&pki.apiserver_key, &serving_key.serialize_pem())?;
        write(&pki.admin_cert, &admin_cert.pem())?;
        write(&pki.admin_key, &admin_key.serialize_pem())?;
        let service_account = KeyPair::generate()?;
        write(&pki.service_account_key, &service_account.serialize_pem())?;
        write(
            &pki.service_account_public_key,
            &service_account.public_key_pem(),
        )?;
        Ok(pki)
    }
}

fn write(path: &Path, pem: &str) -> Result<()> {
    std::fs::write(path, pem).context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), &["10.9.8.7".into()]).unwrap();
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
        assert!(read(&pki.ca_cert).starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(read(&pki.admin_key).starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(read(&pki.service_account_key).starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(read(&pki.service_account_public_key).starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_ne!(read(&pki.admin_key), read(&pki.apiserver_key));
    }
}
