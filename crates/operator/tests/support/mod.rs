//! Helpers shared by the operator's control-plane tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kubeftp_api::FtpServer;
use tokio::sync::OnceCell;

/// Installs the FtpServer CRD on the process's shared control plane, once,
/// and waits until it is served.
pub async fn install_crd(client: &kube::Client) -> Result<()> {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED
        .get_or_try_init(|| async {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let crd = FtpServer::crd();
            let name = crd.metadata.name.clone().expect("named");
            crds.patch(
                &name,
                &PatchParams::apply("kubeftp-tests").force(),
                &Patch::Apply(&crd),
            )
            .await?;
            eventually(
                "the CRD to be established",
                Duration::from_secs(30),
                || async {
                    let crd = crds.get(&name).await?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    Ok(established)
                },
            )
            .await?;
            // Established can precede the first successful request by a moment.
            let ftp: Api<FtpServer> = Api::all(client.clone());
            eventually(
                "FtpServers to be served",
                Duration::from_secs(30),
                || async { Ok(ftp.list(&Default::default()).await.is_ok()) },
            )
            .await
        })
        .await?;
    Ok(())
}

/// How long a test waits for what the operator and the controllers do:
/// generous, as tests run four at a time on two cores (and waits end as
/// soon as the outcome is there).
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `operator` has written nothing for 3 s, for at most [`WAIT`]:
/// tests of what happens without changes start from there, not while the
/// controllers are still catching up.
pub async fn quiet(operator: &Operator) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = operator.metrics.total_writes();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = operator.metrics.total_writes();
        if now == last {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the operator still writes after {WAIT:?}");
        }
        last = now;
    }
}

/// An operator running in this test's process, watching one namespace.
pub struct Operator {
    pub metrics: kubeftp_operator::metrics::Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub fn start(client: &kube::Client, namespace: &str) -> Operator {
        Self::start_with_resync(client, namespace, Duration::from_secs(300))
    }

    pub fn start_with_resync(client: &kube::Client, namespace: &str, resync: Duration) -> Operator {
        use kubeftp_operator::build::Settings;
        use kubeftp_operator::context::{Config, Context};
        let metrics = kubeftp_operator::metrics::Metrics::default();
        let config = Config {
            settings: Settings {
                server_image: "kubeftp/kubeftp-server:test".into(),
            },
            namespace: Some(namespace.into()),
            resync,
        };
        let ctx = Context::new(client.clone(), config, metrics.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(kubeftp_operator::controller::run(ctx, ready, async {
            let _ = stopped.await;
        }));
        Operator {
            metrics,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the operator and waits for running reconciles to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
