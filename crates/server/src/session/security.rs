//! RFC 4217 (FTPS): AUTH TLS upgrades the control connection, PBSZ 0 and
//! PROT P protect data connections.

use std::io;
use std::sync::Arc;

use super::{Flow, Session, TLS_HANDSHAKE_TIMEOUT};
use crate::reply::Reply;
use crate::tls::TlsConfigs;

impl Session {
    pub(super) async fn auth_tls(&mut self, mechanism: &str) -> io::Result<Flow> {
        let tls = self.shared.tls.as_ref();
        let Some(tls) = tls.filter(|_| self.shared.config.tls.explicit()) else {
            self.reply(502, "TLS is not configured on this server")
                .await?;
            return Ok(Flow::Continue);
        };
        // "SSL" and "TLS-C" are older names for the same thing.
        if !matches!(mechanism, "TLS" | "TLS-C" | "SSL") {
            self.reply(504, "Unsupported security mechanism; use AUTH TLS")
                .await?;
            return Ok(Flow::Continue);
        }
        if self.tls.is_some() {
            self.reply(503, "Already using TLS").await?;
            return Ok(Flow::Continue);
        }
        if self.control.has_buffered_input() {
            // Plaintext sent after AUTH would be mistaken for TLS records.
            self.reply(503, "Send nothing after AUTH TLS until the handshake")
                .await?;
            return Ok(Flow::Continue);
        }
        let certificate = tls.borrow().clone();
        let config = match TlsConfigs::for_session(&certificate) {
            Ok(config) => Arc::new(config),
            Err(e) => {
                tracing::error!(error = %e, "cannot set up TLS for a session");
                self.reply(431, "TLS is unavailable right now").await?;
                return Ok(Flow::Continue);
            }
        };
        self.reply(234, "AUTH TLS successful").await?;
        let upgrade = self.control.stream_mut().upgrade(config.control.clone());
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, upgrade).await {
            Ok(Ok(())) => {
                self.tls = Some(config);
                Ok(Flow::Continue)
            }
            // The stream is unusable now; nothing can be replied.
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                Ok(Flow::Close)
            }
        }
    }

    pub(super) fn pbsz(&mut self, size: &str) -> Reply {
        if self.tls.is_none() {
            return Reply::new(503, "PBSZ needs AUTH TLS first");
        }
        if size.parse::<u32>().is_err() {
            return Reply::new(501, "PBSZ takes a decimal number (PBSZ 0)");
        }
        self.pbsz_done = true;
        // Stream-oriented TLS has no buffer size: 0 is the only answer.
        if size == "0" {
            Reply::new(200, "PBSZ=0")
        } else {
            Reply::new(200, "PBSZ=0 (no buffering with TLS)")
        }
    }

    pub(super) fn prot(&mut self, level: &str) -> Reply {
        // PBSZ must come before PROT P; clients drop to PROT C without it.
        if self.tls.is_none() || (!self.pbsz_done && level != "C") {
            return Reply::new(503, "PROT needs AUTH TLS and PBSZ first");
        }
        match level {
            "P" => {
                self.protect_data = true;
                Reply::new(200, "Protection level set to Private")
            }
            "C" => {
                self.protect_data = false;
                Reply::new(200, "Protection level set to Clear")
            }
            "S" | "E" => Reply::new(536, "Only PROT C and PROT P are supported"),
            _ => Reply::new(504, "Unknown protection level"),
        }
    }
}
