//! A certificate authority and a server certificate for FTPS tests.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

pub struct Certificates {
    /// The CA clients trust (PEM).
    pub ca: String,
    /// The server's certificate and key (PEM), for a kubernetes.io/tls Secret.
    pub cert: String,
    pub key: String,
}

/// A fresh CA and a certificate it signed for `name`.
pub fn certificates_for(name: &str) -> anyhow::Result<Certificates> {
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kubeftp e2e CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server = CertificateParams::new(vec![name.to_owned()])?;
    server.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca)?;
    Ok(Certificates {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
