//! FTPS (RFC 4217): the TLS policy and the certificate, reloaded when its
//! files change (cert-manager renewals) without touching running sessions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
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

#[derive(Debug, Clone, Default, Deserialize)]
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
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.mode != TlsMode::Off || self.implicit_listen.is_some()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.enabled() && (self.cert_file.is_none() || self.key_file.is_none()) {
            anyhow::bail!("tls: cert-file and key-file are required when TLS is on");
        }
        Ok(())
    }
}

/// The TLS configurations of one certificate generation.
pub struct TlsConfigs {
    /// For control connections: issues session tickets.
    pub control: Arc<ServerConfig>,
    /// For data connections: resumes the control connection's session and
    /// issues no tickets. A ticket arriving on an upload's data connection
    /// reads as zero bytes to some clients (lftp), which take it for EOF.
    pub data: Arc<ServerConfig>,
}

/// The current TLS configurations; replaced on certificate reload.
pub type SharedTls = watch::Receiver<Arc<TlsConfigs>>;

/// Loads the certificate and key and keeps them current. All reloaded
/// configurations share the resumption state, so data connections can resume
/// the control connection's TLS session across a reload.
pub fn load(config: &TlsConfig) -> anyhow::Result<Option<SharedTls>> {
    if !config.enabled() {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        anyhow::bail!("tls: cert-file and key-file are required when TLS is on");
    };
    let resumption = Resumption {
        cache: ServerSessionMemoryCache::new(4096),
        ticketer: rustls::crypto::ring::Ticketer::new()
            .map_err(|e| anyhow::anyhow!("tls: ticketer: {e}"))?,
    };
    let rx = watch_files(&[cert, key], move |files| {
        configs(files, &resumption).map(Arc::new)
    })
    .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    Ok(Some(rx))
}

/// Session resumption state shared by every certificate generation. FTP
/// clients resume the control connection's TLS session on each data
/// connection, so tickets must be reusable: stateless tickets are (TLS 1.3
/// stateful ones are single-use); the cache serves TLS 1.2 session IDs.
struct Resumption {
    cache: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

fn configs(files: &[Option<Vec<u8>>], resumption: &Resumption) -> Result<TlsConfigs, String> {
    let control = server_config(files, resumption)?;
    let mut data = control.clone();
    data.send_tls13_tickets = 0;
    Ok(TlsConfigs {
        control: Arc::new(control),
        data: Arc::new(data),
    })
}

fn server_config(
    files: &[Option<Vec<u8>>],
    resumption: &Resumption,
) -> Result<ServerConfig, String> {
    let [Some(cert_pem), Some(key_pem)] = files else {
        return Err("certificate or key file missing".into());
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key file: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.session_storage = resumption.cache.clone();
    config.ticketer = resumption.ticketer.clone();
    Ok(config)
}
