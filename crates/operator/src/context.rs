//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::build::Settings;
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
    /// Consecutive failures per FtpServer (namespace, name), for backoff.
    pub failures: Mutex<HashMap<(String, String), u32>>,
}

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
            failures: Mutex::default(),
        }
    }
}
