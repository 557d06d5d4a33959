//! Prometheus metrics of the operator, served on /metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub verb: String,
}

/// The operator's metrics; cheap to clone (shared counters).
#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    /// Every create, patch or delete the operator sends: in steady state it
    /// stays flat.
    pub writes: Family<WriteLabels, Counter>,
    /// FtpServers whose last reconcile failed (and that still exist).
    pub failing: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciliations: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            writes: Family::default(),
            failing: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers the metrics under the `kubeftp_operator` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("kubeftp_operator");
        registry.register(
            "reconciliations",
            "Reconciles started",
            self.reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error kind",
            self.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by a reconcile",
            self.duration.clone(),
        );
        registry.register(
            "writes",
            "Writes sent to the apiserver, by object kind and verb",
            self.writes.clone(),
        );
        registry.register(
            "failing_ftpservers",
            "FtpServers whose last reconcile failed",
            self.failing.clone(),
        );
    }

    pub fn wrote(&self, kind: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.into(),
                verb: verb.into(),
            })
            .inc();
    }

    pub fn failed(&self, kind: &str) {
        self.failures
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    pub fn reconciled(&self, took: Duration) {
        self.duration.observe(took.as_secs_f64());
    }

    /// Total writes so far, over every label.
    pub fn total_writes(&self) -> u64 {
        // A Family has no iterator; encode and sum, which is only for tests
        // and diagnostics.
        let mut registry = Registry::default();
        registry.register("w", "", self.writes.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text.lines()
            .filter(|line| line.starts_with("w_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_writes_and_encodes() {
        let metrics = Metrics::default();
        metrics.wrote("Service", "patch");
        metrics.wrote("Service", "patch");
        metrics.wrote("ConfigMap", "delete");
        assert_eq!(metrics.total_writes(), 3);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("kubeftp_operator_writes_total{kind=\"Service\",verb=\"patch\"} 2"),
            "{text}"
        );
    }
}
