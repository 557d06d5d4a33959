//! FTPS (RFC 4217): the TLS policy and the certificate, reloaded when its
//! files change (cert-manager renewals) without touching running sessions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use serde::Deserialize;
use tokio::sync::watch;

use crate::filewatch::watch_files;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// No AUTH TLS.
    #[default]
    Off,
    /// AUTH TLS offered; plaintext sessions allowed.
    Optional,
    /// Login and data transfers only under TLS (AUTH TLS, then PROT P).
    Required,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// PEM certificate chain (a kubernetes.io/tls Secret's tls.crt).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (tls.key).
    pub key_file: Option<PathBuf>,
    /// Also accept implicit FTPS (TLS from the first byte) here, e.g.
    /// "0.0.0.0:990" or "0.0.0.0:9990".
    pub implicit_listen: Option<SocketAddr>,
    /// Refuse (425) a protected data connection that did not resume the
    /// control connection's TLS session, as vsftpd's require_ssl_reuse: a
    /// resumed session proves the data connection comes from the client that
    /// logged in, which the source address cannot under
    /// `allow-foreign-data-source`.
    pub require_session_reuse: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            mode: TlsMode::Off,
            cert_file: None,
            key_file: None,
            implicit_listen: None,
            require_session_reuse: true,
        }
    }
}

impl TlsConfig {
    /// Whether a certificate is needed: for explicit or implicit FTPS.
    pub fn enabled(&self) -> bool {
        self.explicit() || self.implicit_listen.is_some()
    }

    /// Whether AUTH TLS is offered on the plain control port. The implicit
    /// listener does not depend on it.
    pub fn explicit(&self) -> bool {
        self.mode != TlsMode::Off
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.enabled() && (self.cert_file.is_none() || self.key_file.is_none()) {
            anyhow::bail!("tls: cert-file and key-file are required when TLS is on");
        }
        Ok(())
    }
}

/// The current certificate as a TLS configuration without resumption state;
/// replaced on reload. Each session derives its own [`TlsConfigs`] from it.
pub type SharedTls = watch::Receiver<Arc<ServerConfig>>;

/// TLS 1.2 sessions one FTP session caches: its control connection's.
const SESSION_CACHE_SIZE: usize = 4;

/// One FTP session's TLS configurations. Each session has its own resumption
/// state (session cache and ticket key), so a data connection can resume
/// only its own control connection's TLS session, never another client's.
pub struct TlsConfigs {
    /// For the control connection: issues session tickets.
    pub control: Arc<ServerConfig>,
    /// For data connections: resumes the control connection's session and
    /// issues no tickets. A ticket arriving on an upload's data connection
    /// reads as zero bytes to some clients (lftp), which take it for EOF.
    pub data: Arc<ServerConfig>,
}

impl TlsConfigs {
    pub fn for_session(certificate: &ServerConfig) -> Result<TlsConfigs, rustls::Error> {
        let mut control = certificate.clone();
        // TLS 1.2 session IDs.
        control.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        // Stateless tickets can be resumed any number of times, once per data
        // connection (TLS 1.3 stateful ones are single-use).
        control.ticketer = rustls::crypto::ring::Ticketer::new()?;
        let mut data = control.clone();
        data.send_tls13_tickets = 0;
        Ok(TlsConfigs {
            control: Arc::new(control),
            data: Arc::new(data),
        })
    }
}

/// Loads the certificate and key and keeps them current. Open sessions keep
/// the configurations they started with.
pub fn load(config: &TlsConfig) -> anyhow::Result<Option<SharedTls>> {
    if !config.enabled() {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        anyhow::bail!("tls: cert-file and key-file are required when TLS is on");
    };
    let rx = watch_files(&[cert, key], |files| server_config(files).map(Arc::new))
        .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    Ok(Some(rx))
}

fn server_config(files: &[Option<Vec<u8>>]) -> Result<ServerConfig, String> {
    let (cert_pem, key_pem) = match files {
        [Some(cert), Some(key)] => (cert, key),
        [None, _] => return Err("the certificate file (tls.cert-file) does not exist".into()),
        _ => return Err("the key file (tls.key-file) does not exist".into()),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key file: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok(config)
}
