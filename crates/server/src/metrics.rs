//! Prometheus metrics, served on the operations listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The verb, or "unknown" (bounded cardinality).
    pub verb: String,
    /// 1xx .. 5xx of the command's last reply.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub sessions_open: Gauge,
    pub logins: Family<ResultLabels, Counter>,
    pub commands: Family<CommandLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub transfer_seconds: Family<OpLabels, Histogram>,
    pub passive_waiting: Gauge,
    pub passive_ports: Gauge,
    pub upload_buffer_bytes: Gauge,
    pub data_refusals: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubeftp");
        let m = Metrics {
            sessions_open: Gauge::default(),
            logins: Family::default(),
            commands: Family::default(),
            bytes: Family::default(),
            transfer_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 4.0, 10))
            }),
            passive_waiting: Gauge::default(),
            passive_ports: Gauge::default(),
            upload_buffer_bytes: Gauge::default(),
            data_refusals: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sessions_open",
            "Control connections open now",
            m.sessions_open.clone(),
        );
        registry.register("logins", "Login attempts by result", m.logins.clone());
        registry.register(
            "commands",
            "Commands by verb and reply class",
            m.commands.clone(),
        );
        registry.register(
            "bytes",
            "Data bytes moved, in (uploads) and out",
            m.bytes.clone(),
        );
        registry.register(
            "transfer_duration_seconds",
            "Transfer durations by operation",
            m.transfer_seconds.clone(),
        );
        registry.register(
            "passive_waiting",
            "Sessions waiting for a passive data connection",
            m.passive_waiting.clone(),
        );
        registry.register(
            "passive_ports",
            "Ports in the passive range",
            m.passive_ports.clone(),
        );
        registry.register(
            "upload_buffer_bytes",
            "Memory held by upload buffers, in use or kept for a moment after uploads stop",
            m.upload_buffer_bytes.clone(),
        );
        registry.register(
            "data_connection_refusals",
            "425 replies by reason (pool_exhausted, address_unknown, not_opened, tls_failed, tls_not_resumed)",
            m.data_refusals.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn command(&self, verb: &str, code: u16) {
        let labels = CommandLabels {
            verb: verb.to_string(),
            class: format!("{}xx", code / 100),
        };
        self.commands.get_or_create(&labels).inc();
    }

    pub fn login(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.logins
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn refusal(&self, reason: &str) {
        self.data_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn transfer(&self, op: &str, direction: &str, bytes: u64, seconds: f64) {
        self.bytes
            .get_or_create(&DirectionLabels {
                direction: direction.into(),
            })
            .inc_by(bytes);
        self.transfer_seconds
            .get_or_create(&OpLabels { op: op.into() })
            .observe(seconds);
    }
}
