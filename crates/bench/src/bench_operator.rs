//! `make bench-operator`: the kubeftp-operator binary against a real
//! control plane (etcd, kube-apiserver, kube-controller-manager from
//! kubeftp-testenv) with many FtpServers.
//!
//! There is no kubelet or scheduler: the StatefulSet controller makes pods
//! that never run, so no replica gets ready and no load balancer assigns an
//! address. An FtpServer is done when its children exist (StatefulSet, one
//! Service per replica, the config and addresses ConfigMaps) and the
//! operator has written its status for the current generation
//! (`observedGeneration == generation`, conditions present).
//!
//! API requests come from the apiserver's `apiserver_request_total`, which
//! has no label for the client. The operator's are told apart by what they
//! touch: FtpServers, StatefulSets (not their status, which the StatefulSet
//! controller writes), Services, ConfigMaps, reads of Pods and Nodes, and
//! events.k8s.io Events (the controller manager's Events are core/v1). The
//! benchmark's own requests (creating the FtpServers, polling for them) are
//! counted as sent and subtracted.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use kubeftp_api::FtpServer;
use kubeftp_testenv::{ControlPlane, Options};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::{MIB, Verdict, loadavg, machine, number};

#[derive(clap::Args)]
pub struct Args {
    /// The kubeftp-operator binary (a release build).
    #[arg(long, default_value = "target/release/kubeftp-operator")]
    operator_bin: PathBuf,
    /// FtpServers to create.
    #[arg(long, default_value_t = 500)]
    ftpservers: usize,
    /// Creates in flight at once (as `kubectl apply` of many files would).
    #[arg(long, default_value_t = 8)]
    create_parallel: usize,
    /// Seconds of steady state in which writes are counted.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// Give up waiting for the FtpServers after this many seconds.
    #[arg(long, default_value_t = 1200)]
    timeout_seconds: u64,
    /// Scratch directory for the operator's log.
    #[arg(long, default_value = "target/bench-operator")]
    work: PathBuf,
}

/// Where the operator serves /readyz and /metrics.
const OPERATOR_HTTP: &str = "127.0.0.1:18089";
/// The operator is settled when it has started no reconcile for this long.
const QUIET: Duration = Duration::from_secs(10);
const NAMESPACE: &str = "bench";

pub async fn run(args: Args) -> Result<()> {
    let work = std::path::absolute(&args.work)?;
    std::fs::create_dir_all(&work)?;
    let operator_bin = std::path::absolute(&args.operator_bin)?;
    let n = args.ftpservers;
    let load = loadavg();

    let plane = ControlPlane::start(Options::default().with_controller_manager())
        .await
        .context("starting the control plane (make tools builds its binaries)")?;
    let client = plane.client().await?;
    install_crd(&client).await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "ftp-users"},
                "stringData": {"users.toml": "# no accounts\n"}
            }))?,
        )
        .await?;

    let mut operator = Operator::start(&operator_bin, &plane, &work.join("operator.log")).await?;
    let mine = Mine::default();
    // The operator's initial lists and watches are done once it is ready;
    // give the controller manager's start a moment too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = apiserver_requests(&client).await?;

    // Create, and wait until every FtpServer is done.
    let started = Instant::now();
    create_ftpservers(&client, n, args.create_parallel, &mine).await?;
    let created = started.elapsed();
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let mut done_count = 0;
    let done = loop {
        operator.check_running()?;
        let count = count_done(&client, &mine).await?;
        if count != done_count {
            eprintln!(
                "{:>6.1} s: {count}/{n} FtpServers done",
                started.elapsed().as_secs_f64()
            );
            done_count = count;
        }
        if count == n {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!(
                "only {count} of {n} FtpServers done after {} s",
                args.timeout_seconds
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let settled = operator.settle().await? - started;
    let converged = apiserver_requests(&client).await?;
    let reconciles = operator
        .metric("kubeftp_operator_reconciliations_total")
        .await?;
    let until_settled = operators_requests(&diff(&converged, &before), &mine.take());

    // Steady state: nothing changes, so nothing should be written.
    operator.check_running()?;
    let writes_before = operator.metric("kubeftp_operator_writes_total").await?;
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let steady_after = apiserver_requests(&client).await?;
    let steady_all = diff(&steady_after, &converged);
    let steady = operators_requests(&steady_all, &HashMap::new());
    let steady_writes_own = operator.metric("kubeftp_operator_writes_total").await? - writes_before;
    let peak = operator.peak_rss()?;

    // A restart with every FtpServer in place: each is reconciled again,
    // which should find nothing to write.
    operator.stop()?;
    let restarted = Instant::now();
    let mut operator = Operator::start(&operator_bin, &plane, &work.join("operator.log")).await?;
    let restart_settled = operator.settle().await? - restarted;
    let after_restart = apiserver_requests(&client).await?;
    let restart = operators_requests(&diff(&after_restart, &steady_after), &HashMap::new());
    let restart_reconciles = operator
        .metric("kubeftp_operator_reconciliations_total")
        .await?;
    let restart_peak = operator.peak_rss()?;
    operator.stop()?;

    let report = Report {
        n,
        parallel: args.create_parallel,
        steady_seconds: args.steady_seconds,
        created,
        done,
        settled,
        reconciles,
        until_settled,
        steady,
        steady_all_writes: writes(&steady_all),
        steady_writes_own,
        peak,
        restart_settled,
        restart,
        restart_reconciles,
        restart_peak,
    };
    println!("# kubeftp-operator with {n} FtpServers on a real control plane\n");
    println!("{}", machine()?);
    println!("Load average before the control plane started: {load:.2}.\n");
    println!("{}", report.render());
    plane.stop();
    Ok(())
}

/// Everything the report shows.
struct Report {
    n: usize,
    parallel: usize,
    steady_seconds: u64,
    created: Duration,
    done: Duration,
    settled: Duration,
    reconciles: f64,
    until_settled: Requests,
    steady: Requests,
    /// Every client's writes during the steady state.
    steady_all_writes: f64,
    /// Writes the operator counted itself (its kubeftp_operator_writes_total).
    steady_writes_own: f64,
    peak: u64,
    restart_settled: Duration,
    restart: Requests,
    restart_reconciles: f64,
    restart_peak: u64,
}

impl Report {
    fn render(&self) -> String {
        let n = self.n as f64;
        let mut s = String::from("| measurement | total | per FtpServer |\n|---|---:|---:|\n");
        let mut row = |what: &str, total: String, per: String| {
            let _ = writeln!(s, "| {what} | {total} | {per} |");
        };
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let ms_each = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0 / n);
        row(
            &format!("create {} FtpServers ({} at a time)", self.n, self.parallel),
            secs(self.created),
            ms_each(self.created),
        );
        row(
            "until every FtpServer has its children and status",
            secs(self.done),
            ms_each(self.done),
        );
        row(
            &format!(
                "until the operator is settled (no reconcile for {} s)",
                QUIET.as_secs()
            ),
            secs(self.settled),
            "".into(),
        );
        row(
            "reconciles until settled",
            number(self.reconciles),
            number(self.reconciles / n),
        );
        for (verb, count) in by_verb(&self.until_settled) {
            row(
                &format!("operator's API requests until settled: {verb}"),
                number(count),
                number(count / n),
            );
        }
        let total: f64 = self.until_settled.values().sum();
        row(
            "operator's API requests until settled: all",
            number(total),
            number(total / n),
        );
        row(
            &format!(
                "operator's writes in {} s of steady state (target 0)",
                self.steady_seconds
            ),
            number(writes(&self.steady)),
            number(writes(&self.steady) / n),
        );
        row(
            &format!(
                "operator's reads in {} s of steady state",
                self.steady_seconds
            ),
            number(self.steady.values().sum::<f64>() - writes(&self.steady)),
            "".into(),
        );
        row(
            "operator peak RSS (VmHWM)",
            format!("{:.1} MiB", self.peak as f64 / MIB as f64),
            format!("{:.0} KiB", self.peak as f64 / 1024.0 / n),
        );
        row(
            &format!("restart with {} FtpServers: until settled", self.n),
            secs(self.restart_settled),
            ms_each(self.restart_settled),
        );
        row(
            "restart: reconciles",
            number(self.restart_reconciles),
            number(self.restart_reconciles / n),
        );
        let restart_total: f64 = self.restart.values().sum();
        row(
            "restart: operator's API requests",
            number(restart_total),
            number(restart_total / n),
        );
        row(
            "restart: operator's writes (target 0)",
            number(writes(&self.restart)),
            number(writes(&self.restart) / n),
        );
        row(
            "restart: operator peak RSS (VmHWM)",
            format!("{:.1} MiB", self.restart_peak as f64 / MIB as f64),
            format!("{:.0} KiB", self.restart_peak as f64 / 1024.0 / n),
        );

        let _ = writeln!(
            s,
            "\nOperator's API requests until settled, by verb and resource:\n"
        );
        let _ = writeln!(
            s,
            "| verb | resource | requests | per FtpServer |\n|---|---|---:|---:|"
        );
        for (key, count) in &self.until_settled {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                key.verb,
                key.resource_name(),
                number(*count),
                number(count / n)
            );
        }
        let _ = writeln!(
            s,
            "\nDuring the steady state, all clients (the controller manager too) wrote {} times; \
             the operator counted {} writes of its own (kubeftp_operator_writes_total).",
            number(self.steady_all_writes),
            number(self.steady_writes_own)
        );
        let _ = writeln!(s, "\nTargets (issue 8):");
        let _ = writeln!(
            s,
            "- {}",
            Verdict::at_most(writes(&self.steady), 0.0)
                .line("no writes in steady state", " writes")
        );
        let _ = writeln!(
            s,
            "- {}",
            Verdict::at_most(writes(&self.restart), 0.0)
                .line("no writes after a restart", " writes")
        );
        s
    }
}

/// apiserver_request_total, summed over codes, versions and scopes.
type Requests = BTreeMap<RequestKey, f64>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RequestKey {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
}

impl RequestKey {
    fn new(verb: &str, group: &str, resource: &str, subresource: &str) -> RequestKey {
        RequestKey {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
        }
    }

    fn resource_name(&self) -> String {
        let mut name = self.resource.clone();
        if !self.group.is_empty() {
            name = format!("{name}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            name = format!("{name}/{}", self.subresource);
        }
        name
    }

    fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "GET" | "LIST" | "WATCH" | "CONNECT")
    }

    /// Whether the operator, rather than the controller manager, sends
    /// requests like this one (see the module's comment).
    fn is_operators(&self) -> bool {
        let (g, r, sub) = (
            self.group.as_str(),
            self.resource.as_str(),
            self.subresource.as_str(),
        );
        match (g, r) {
            ("kubeftp.dev", _) => true,
            ("apps", "statefulsets") => sub.is_empty(),
            ("", "services" | "configmaps") => true,
            ("", "pods" | "nodes") => !self.is_write(),
            ("events.k8s.io", "events") => true,
            _ => false,
        }
    }
}

/// Parses the apiserver's `apiserver_request_total` samples.
fn parse_requests(metrics: &str) -> Requests {
    let mut out = Requests::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels = parse_labels(labels);
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        let key = RequestKey::new(
            get("verb"),
            get("group"),
            get("resource"),
            get("subresource"),
        );
        *out.entry(key).or_default() += value;
    }
    out
}

/// `a="x",b="y"` as a map (values hold no quotes in these metrics).
fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        labels.insert(key.trim_start_matches(',').to_string(), value.to_string());
        rest = after;
    }
    labels
}

fn diff(after: &Requests, before: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// The operator's share of `all`, less the benchmark's own requests.
fn operators_requests(all: &Requests, mine: &HashMap<RequestKey, f64>) -> Requests {
    all.iter()
        .filter(|(k, _)| k.is_operators())
        .map(|(k, v)| (k.clone(), v - mine.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn writes(requests: &Requests) -> f64 {
    requests
        .iter()
        .filter(|(k, _)| k.is_write())
        .map(|(_, v)| v)
        .sum()
}

fn by_verb(requests: &Requests) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in requests {
        *out.entry(k.verb.clone()).or_default() += v;
    }
    out
}

async fn apiserver_requests(client: &kube::Client) -> Result<Requests> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(parse_requests(&text))
}

/// The benchmark's own API requests, by the key the apiserver counts them
/// under.
#[derive(Default, Clone)]
struct Mine(Arc<Mutex<HashMap<RequestKey, f64>>>);

impl Mine {
    fn add(&self, verb: &str, group: &str, resource: &str) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(RequestKey::new(verb, group, resource, ""))
            .or_default() += 1.0;
    }

    fn take(&self) -> HashMap<RequestKey, f64> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

async fn install_crd(client: &kube::Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = FtpServer::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("kubeftp-bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let ftp: Api<FtpServer> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let established = crds
            .get(&name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established && ftp.list(&ListParams::default()).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the FtpServer CRD was not served within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The minimal FtpServer of examples/minimal.yaml, named `name`, with a
/// load balancer that reaches pods directly: with node ports, each
/// Service takes 12 of the cluster's 2768 (control, 10 passive, health
/// check) and the range is full after about 230 FtpServers.
fn ftpserver(name: &str) -> Result<FtpServer> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "kubeftp.dev/v1alpha1",
        "kind": "FtpServer",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "users": {"secretName": "ftp-users"},
            "storage": {"volumeClaimTemplate": {"size": "10Gi"}},
            "service": {"allocateLoadBalancerNodePorts": false}
        }
    }))?)
}

fn name(i: usize) -> String {
    format!("ftp-{i:04}")
}

async fn create_ftpservers(
    client: &kube::Client,
    n: usize,
    parallel: usize,
    mine: &Mine,
) -> Result<()> {
    let api: Api<FtpServer> = Api::namespaced(client.clone(), NAMESPACE);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (api, next, mine) = (api.clone(), next.clone(), mine.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                mine.add("POST", "kubeftp.dev", "ftpservers");
                api.create(&PostParams::default(), &ftpserver(&name(i))?)
                    .await
                    .with_context(|| format!("creating FtpServer {}", name(i)))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// How many FtpServers have all their children and their status.
async fn count_done(client: &kube::Client, mine: &Mine) -> Result<usize> {
    let ftp: Api<FtpServer> = Api::namespaced(client.clone(), NAMESPACE);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let svc: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let owned = ListParams::default().labels("app.kubernetes.io/managed-by=kubeftp-operator");
    mine.add("LIST", "kubeftp.dev", "ftpservers");
    let servers = ftp.list(&ListParams::default()).await?;
    mine.add("LIST", "apps", "statefulsets");
    let stateful_sets = names(sts.list_metadata(&owned).await?);
    mine.add("LIST", "", "services");
    let services = names(svc.list_metadata(&owned).await?);
    mine.add("LIST", "", "configmaps");
    let config_maps = names(cms.list_metadata(&owned).await?);
    Ok(servers
        .iter()
        .filter(|f| {
            let name = f.name_any();
            let status_done = f.status.as_ref().is_some_and(|s| {
                s.observed_generation.is_some()
                    && s.observed_generation == f.metadata.generation
                    && !s.conditions.is_empty()
            });
            status_done
                && stateful_sets.contains(&name)
                && (0..f.spec.replicas).all(|i| services.contains(&format!("{name}-{i}")))
                && config_maps.contains(&format!("{name}-config"))
                && config_maps.contains(&format!("{name}-addresses"))
        })
        .count())
}

fn names<K: kube::Resource + Clone>(
    list: kube::core::ObjectList<K>,
) -> std::collections::HashSet<String> {
    list.items.iter().map(|o| o.name_any()).collect()
}

/// Makes `command`'s process get SIGTERM when the thread that started it
/// ends, so a benchmark killed by a signal (which skips every Drop) leaves
/// no operator behind. The runtime's worker threads live as long as the
/// benchmark.
fn dies_with_parent(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only makes the prctl
    // system call, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// The operator binary, running against the control plane.
struct Operator {
    child: Child,
}

impl Operator {
    async fn start(
        bin: &std::path::Path,
        plane: &ControlPlane,
        log: &std::path::Path,
    ) -> Result<Operator> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(bin);
        let child = dies_with_parent(&mut command)
            .args(["run", "--http-address", OPERATOR_HTTP])
            .env("KUBECONFIG", plane.kubeconfig_path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut operator = Operator { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            operator.check_running()?;
            if let Ok((200, _)) = http_get("/readyz").await {
                return Ok(operator);
            }
            if Instant::now() > deadline {
                bail!("the operator was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the operator exited: {status} (see its log)");
        }
        Ok(())
    }

    /// A counter or sum of counters from the operator's /metrics.
    async fn metric(&self, name: &str) -> Result<f64> {
        let (_, body) = http_get("/metrics").await?;
        Ok(sum_metric(&body, name))
    }

    /// Waits until no reconcile has started for [`QUIET`]; returns when the
    /// last one started (to within a second).
    async fn settle(&mut self) -> Result<Instant> {
        let mut last = (
            self.metric("kubeftp_operator_reconciliations_total")
                .await?,
            Instant::now(),
        );
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.check_running()?;
            let count = self
                .metric("kubeftp_operator_reconciliations_total")
                .await?;
            if count != last.0 {
                last = (count, Instant::now());
            } else if last.1.elapsed() >= QUIET {
                return Ok(last.1);
            }
        }
    }

    /// Peak resident set size, bytes.
    fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        parse_vm_hwm(&status).context("no VmHWM in /proc/PID/status")
    }

    /// SIGTERM, and waits for the exit.
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the operator exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmHWM:  12345 kB` in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let kb = l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
        Some(kb.trim().parse::<u64>().ok()? * 1024)
    })
}

/// The sum of every sample of `name` (any labels) in Prometheus text.
fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP/1.0 GET to the operator: (status code, body).
async fn http_get(path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(OPERATOR_HTTP).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child of a thread that ends gets SIGTERM.
    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        use std::os::unix::process::ExitStatusExt;
        let starter = std::thread::spawn(|| {
            dies_with_parent(Command::new("sleep").arg("30"))
                .spawn()
                .unwrap()
        });
        let mut child = starter.join().unwrap();
        let started = Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "it ran its course"
        );
    }

    const METRICS: &str = r#"# HELP apiserver_request_total x
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="apps",resource="statefulsets",scope="resource",subresource="status",verb="PUT",version="v1"} 4
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="kubeftp.dev",resource="ftpservers",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 5
apiserver_request_total{code="201",component="apiserver",dry_run="",group="kubeftp.dev",resource="ftpservers",scope="resource",subresource="",verb="POST",version="v1alpha1"} 9
apiserver_request_duration_seconds_bucket{le="1"} 3
"#;

    #[test]
    fn requests_are_summed_and_attributed() {
        let all = parse_requests(METRICS);
        assert_eq!(all[&RequestKey::new("GET", "", "configmaps", "")], 10.0);
        let mut mine = HashMap::new();
        mine.insert(
            RequestKey::new("POST", "kubeftp.dev", "ftpservers", ""),
            9.0,
        );
        let ours = operators_requests(&all, &mine);
        let keys: Vec<String> = ours
            .keys()
            .map(|k| format!("{} {}", k.verb, k.resource_name()))
            .collect();
        assert_eq!(
            keys,
            ["APPLY ftpservers.kubeftp.dev/status", "GET configmaps"]
        );
        assert_eq!(writes(&ours), 5.0);
        assert_eq!(by_verb(&ours)["GET"], 10.0);
        let later = parse_requests(&METRICS.replace("} 7", "} 8"));
        assert_eq!(diff(&later, &all).values().sum::<f64>(), 1.0);
    }

    #[test]
    fn operator_metrics_and_status() {
        let text = "# TYPE kubeftp_operator_writes counter\n\
                    kubeftp_operator_writes_total{kind=\"Service\",verb=\"apply\"} 2\n\
                    kubeftp_operator_writes_total{kind=\"FtpServer\",verb=\"status\"} 3\n\
                    kubeftp_operator_reconciliations_total 12\n";
        assert_eq!(sum_metric(text, "kubeftp_operator_writes_total"), 5.0);
        assert_eq!(
            sum_metric(text, "kubeftp_operator_reconciliations_total"),
            12.0
        );
        assert_eq!(sum_metric(text, "kubeftp_operator_reconciliations"), 0.0);
        assert_eq!(
            parse_vm_hwm("VmPeak: 1 kB\nVmHWM:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
    }

    #[test]
    fn the_bench_ftpserver_is_valid() {
        let f = ftpserver("ftp-0001").unwrap();
        assert_eq!(f.spec.replicas, 1);
        assert_eq!(f.namespace().as_deref(), Some(NAMESPACE));
    }
}
