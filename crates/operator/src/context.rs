//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::build::Settings;
use crate::cache::Caches;
use crate::metrics::Metrics;

/// How the operator runs, beyond what the build step needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// Watch one namespace only; None: all namespaces.
    pub namespace: Option<String>,
    /// Reconcile every FtpServer at least this often, to catch changes no
    /// watch reports (e.g. a node's address).
    pub resync: Duration,
}

pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// The children and server pods, as the watches last reported them.
    pub caches: Caches,
    /// Consecutive failures per FtpServer (namespace, name), for backoff.
    /// An entry goes when the FtpServer reconciles or is deleted.
    failures: Mutex<HashMap<FtpServerKey, u32>>,
}

/// An FtpServer's namespace and name.
pub type FtpServerKey = (String, String);

impl Context {
    pub fn new(client: kube::Client, config: Config, metrics: Metrics) -> Context {
        let reporter = Reporter {
            controller: crate::apply::MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            caches: Caches::default(),
            failures: Mutex::default(),
        }
    }

    /// Consecutive failed reconciles of `key` so far.
    pub fn failures(&self, key: &FtpServerKey) -> u32 {
        let failures = self.failures.lock().unwrap();
        failures.get(key).copied().unwrap_or(0)
    }

    /// Counts a failed reconcile of `key`; returns the consecutive failures.
    pub fn failed(&self, key: FtpServerKey) -> u32 {
        let mut failures = self.failures.lock().unwrap();
        let count = failures.entry(key).or_default();
        *count += 1;
        let count = *count;
        self.metrics.failing.set(failures.len() as i64);
        count
    }

    /// Forgets the failures of FtpServers that `exists` says are gone.
    pub fn forget_failures_unless(&self, exists: impl Fn(&FtpServerKey) -> bool) {
        let mut failures = self.failures.lock().unwrap();
        failures.retain(|key, _| exists(key));
        self.metrics.failing.set(failures.len() as i64);
    }

    /// Forgets the failures of `key`: it reconciled, or is gone.
    pub fn forget_failures(&self, key: &FtpServerKey) {
        let mut failures = self.failures.lock().unwrap();
        if failures.remove(key).is_some() {
            self.metrics.failing.set(failures.len() as i64);
        }
    }
}
