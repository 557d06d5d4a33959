//! The product as a platform team uses it, on a real cluster: the Helm
//! chart installs the operator, FtpServers are applied, and curl and lftp
//! behind NAT move files through the load balancers' addresses.
//!
//! `make e2e` runs these against the local cluster; the kind workflow
//! (.github/workflows/e2e.yaml) against kind with MetalLB. They need
//! KUBECONFIG, root, helm, curl and lftp, and for the address-change test
//! KUBEFTP_E2E_SPARE_LB_IP: a load-balancer address no Service holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use kubeftp_e2e::cluster::{self, OPERATOR_NAMESPACE, RELEASE, TestNamespace, eventually};
use kubeftp_e2e::ftp::{Passive, Session, pasv_address, used_only_epsv};
use kubeftp_e2e::nat::NatClient;
use kubeftp_e2e::server::{self, PASSWORD, USER};
use kubeftp_e2e::{SETTLE_TIMEOUT, tls};
use serde_json::json;

/// A namespace with the users Secret, and a client behind NAT.
async fn setup(prefix: &str) -> Result<(TestNamespace, NatClient)> {
    let client = cluster::client().await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    server::create_users(&ns).await?;
    Ok((ns, NatClient::new()?))
}

fn session<'a>(nat: &'a NatClient, host: &str, port: u16, passive: Passive) -> Session<'a> {
    Session {
        nat,
        host: host.to_owned(),
        port,
        user: USER.into(),
        password: PASSWORD.into(),
        passive,
        tls_ca: None,
    }
}

/// A file of `size` pseudo-random bytes (different per call).
fn random_file(dir: &Path, name: &str, size: usize) -> Result<std::path::PathBuf> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            // xorshift: enough to make every file distinct.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}

fn same_bytes(a: &Path, b: &Path) -> Result<()> {
    let (left, right) = (std::fs::read(a)?, std::fs::read(b)?);
    ensure!(
        left == right,
        "{} ({} bytes) and {} ({} bytes) differ",
        a.display(),
        left.len(),
        b.display(),
        right.len()
    );
    Ok(())
}

/// Uploads and downloads with curl and with lftp through `host`, checking
/// the bytes and that data connections used the mode asked for (and, for
/// PASV, that the server advertised `advertised`).
async fn round_trips(session: &Session<'_>, advertised: &str, tag: &str) -> Result<()> {
    session.wait_until_reachable().await?;
    let dir = tempfile::tempdir()?;
    let sent = random_file(dir.path(), "sent", 256 * 1024)?;
    let mode = format!("{:?}", session.passive).to_lowercase();

    let remote = format!("{tag}-curl-{mode}.bin");
    let put = session.curl_put(&sent, &remote)?;
    let back = dir.path().join("curl-back");
    let get = session.curl_get(&remote, &back)?;
    same_bytes(&sent, &back).context("curl")?;
    check_passive(session.passive, &put, advertised).context("curl upload")?;
    check_passive(session.passive, &get, advertised).context("curl download")?;

    let remote = format!("{tag}-lftp-{mode}.bin");
    let back = dir.path().join("lftp-back");
    let log = session.lftp(&format!(
        "put {} -o {remote}\nget {remote} -o {}",
        sent.display(),
        back.display()
    ))?;
    same_bytes(&sent, &back).context("lftp")?;
    check_passive(session.passive, &log, advertised).context("lftp")?;
    Ok(())
}

fn check_passive(passive: Passive, log: &str, advertised: &str) -> Result<()> {
    match passive {
        Passive::Epsv => ensure!(used_only_epsv(log), "EPSV was not used:\n{log}"),
        Passive::Pasv => {
            let address = pasv_address(log).map(|a| a.to_string());
            ensure!(
                address.as_deref() == Some(advertised),
                "227 advertised {address:?}, not {advertised}:\n{log}"
            );
        }
    }
    Ok(())
}

fn only_endpoint(ftp: &kubeftp_api::FtpServer) -> Result<(String, u16)> {
    let endpoints = server::endpoints(ftp);
    ensure!(endpoints.len() == 1, "expected one endpoint: {endpoints:?}");
    Ok(endpoints[0].clone())
}

#[tokio::test]
async fn helm_installs_a_working_operator() -> Result<()> {
    let client = cluster::client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client, OPERATOR_NAMESPACE);
    let operator = deployments.get(RELEASE).await?;
    let available = operator.status.and_then(|s| s.available_replicas);
    ensure!(
        available == Some(1),
        "operator available replicas: {available:?}"
    );
    Ok(())
}

#[tokio::test]
async fn plain_ftp_through_nat_in_pasv_and_epsv() -> Result<()> {
    let (ns, nat) = setup("plain").await?;
    server::apply(&ns, "files", server::base_spec()).await?;
    let ftp = server::wait_ready(&ns, "files").await?;
    let (address, port) = only_endpoint(&ftp)?;
    for passive in [Passive::Pasv, Passive::Epsv] {
        round_trips(&session(&nat, &address, port, passive), &address, "plain").await?;
    }
    ns.delete().await
}

#[tokio::test]
async fn ftps_through_nat_in_pasv_and_epsv() -> Result<()> {
    const NAME: &str = "ftp.e2e.test";
    let (ns, nat) = setup("ftps").await?;
    let certs = tls::certificates_for(NAME)?;
    server::create_tls(&ns, &certs.cert, &certs.key).await?;
    let mut spec = server::base_spec();
    spec["tls"] = json!({ "secretName": server::TLS_SECRET, "mode": "Required" });
    server::apply(&ns, "secure", spec).await?;
    let ftp = server::wait_ready(&ns, "secure").await?;
    let (address, port) = only_endpoint(&ftp)?;

    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca)?;
    nat.add_host(NAME, &address)?;
    for passive in [Passive::Pasv, Passive::Epsv] {
        let mut secure = session(&nat, NAME, port, passive);
        secure.tls_ca = Some(&ca);
        round_trips(&secure, &address, "tls").await?;
    }

    // TLS is required: a plaintext login is refused.
    let plain = session(&nat, &address, port, Passive::Epsv);
    let refused = plain.curl_get("tls-curl-epsv.bin", &dir.path().join("nothing"));
    let log = format!("{refused:?}");
    ensure!(
        refused.is_err() && log.contains("530"),
        "a plaintext login was not refused with 530: {log}"
    );
    ns.delete().await
}

#[tokio::test]
async fn a_new_load_balancer_address_reaches_the_server_without_a_restart() -> Result<()> {
    let spare = std::env::var("KUBEFTP_E2E_SPARE_LB_IP").context(
        "KUBEFTP_E2E_SPARE_LB_IP must name a load-balancer address no Service holds \
         (make e2e sets it for the local cluster)",
    )?;
    let (ns, nat) = setup("moving").await?;
    server::apply(&ns, "moving", server::base_spec()).await?;
    let ftp = server::wait_ready(&ns, "moving").await?;
    let (first, port) = only_endpoint(&ftp)?;
    ensure!(
        first != spare,
        "the server already has the spare address {spare}"
    );
    round_trips(
        &session(&nat, &first, port, Passive::Pasv),
        &first,
        "before",
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let before = pods.get("moving-0").await?;

    // Ask the load balancer for another address, as a user would through
    // the FtpServer's Service annotations (MetalLB's annotation).
    let mut spec = server::base_spec();
    spec["service"] = json!({ "annotations": { "metallb.io/loadBalancerIPs": spare } });
    server::apply(&ns, "moving", spec).await?;
    let api = server::api(&ns);
    eventually(
        "the status to carry the new address",
        SETTLE_TIMEOUT,
        || async {
            let ftp = api.get("moving").await?;
            Ok(server::endpoints(&ftp)
                .first()
                .is_some_and(|(address, _)| *address == spare)
                .then_some(()))
        },
    )
    .await?;
    // The kubelet syncs the address file into the pod within its sync
    // period; PASV replies follow within the server's poll interval.
    let moved = session(&nat, &spare, port, Passive::Pasv);
    eventually(
        "a PASV reply with the new address",
        SETTLE_TIMEOUT,
        || async {
            let dir = tempfile::tempdir()?;
            let log = moved.curl_get("before-curl-pasv.bin", &dir.path().join("f"))?;
            Ok((pasv_address(&log).map(|a| a.to_string()) == Some(spare.clone())).then_some(()))
        },
    )
    .await?;
    round_trips(&moved, &spare, "after").await?;

    let after = pods.get("moving-0").await?;
    ensure!(after.uid() == before.uid(), "the pod was replaced");
    let restarts: i32 = after
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum();
    ensure!(restarts == 0, "the server restarted {restarts} times");
    ns.delete().await
}

#[tokio::test]
async fn three_replicas_are_three_working_endpoints() -> Result<()> {
    let (ns, nat) = setup("replicas").await?;
    let mut spec = server::base_spec();
    spec["replicas"] = json!(3);
    server::apply(&ns, "trio", spec).await?;
    let ftp = server::wait_ready(&ns, "trio").await?;
    let endpoints = server::endpoints(&ftp);
    let distinct: std::collections::BTreeSet<_> = endpoints.iter().map(|(a, _)| a).collect();
    ensure!(
        endpoints.len() == 3 && distinct.len() == 3,
        "expected 3 distinct endpoints: {endpoints:?}"
    );
    for (replica, (address, port)) in endpoints.iter().enumerate() {
        round_trips(
            &session(&nat, address, *port, Passive::Pasv),
            address,
            &format!("replica{replica}"),
        )
        .await
        .with_context(|| format!("replica {replica} at {address}"))?;
    }
    ns.delete().await
}

#[tokio::test]
async fn a_killed_server_pod_comes_back_with_its_files() -> Result<()> {
    let (ns, nat) = setup("killed").await?;
    server::apply(&ns, "durable", server::base_spec()).await?;
    let ftp = server::wait_ready(&ns, "durable").await?;
    let (address, port) = only_endpoint(&ftp)?;
    let ftp_session = session(&nat, &address, port, Passive::Epsv);
    ftp_session.wait_until_reachable().await?;
    let dir = tempfile::tempdir()?;
    let kept = random_file(dir.path(), "kept", 1024 * 1024)?;
    ftp_session.curl_put(&kept, "kept.bin")?;
    // Far more than the socket buffers on both sides hold (a few MiB
    // each): with 8 MiB the server had sometimes sent all of it, and its
    // 226, before the kill.
    let big = random_file(dir.path(), "big", 64 * 1024 * 1024)?;
    ftp_session.curl_put(&big, "big.bin")?;

    // A slow download is running when the pod is killed.
    let mut download = nat
        .command("curl")
        .args(["--silent", "--limit-rate", "100K", "--max-time", "120"])
        .args(["--user", &format!("{USER}:{PASSWORD}")])
        .arg(format!("ftp://{address}:{port}/big.bin"))
        .arg("-o")
        .arg(dir.path().join("partial"))
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(download.try_wait()?.is_none(), "the download ended early");
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let before = pods.get("durable-0").await?;
    pods.delete("durable-0", &DeleteParams::default().grace_period(0))
        .await?;
    let status = tokio::task::spawn_blocking(move || download.wait()).await??;
    ensure!(!status.success(), "the download survived its server");

    eventually("a new server pod", SETTLE_TIMEOUT, || async {
        let pod = pods.get_opt("durable-0").await?;
        Ok(pod.filter(|p| p.uid() != before.uid()).map(|_| ()))
    })
    .await?;
    server::wait_ready(&ns, "durable").await?;
    let back = dir.path().join("kept-back");
    eventually("the file from before", SETTLE_TIMEOUT, || async {
        Ok(ftp_session.curl_get("kept.bin", &back).ok())
    })
    .await?;
    same_bytes(&kept, &back)?;
    ns.delete().await
}

/// resourceVersions of an FtpServer and everything labelled as its child.
async fn versions(ns: &TestNamespace, name: &str) -> Result<BTreeMap<String, String>> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let mut versions = BTreeMap::new();
    let ftp = server::api(ns).get(name).await?;
    versions.insert(
        format!("FtpServer/{name}"),
        ftp.resource_version().unwrap_or_default(),
    );
    macro_rules! collect {
        ($kind:ty) => {
            let api: Api<$kind> = Api::namespaced(ns.client.clone(), &ns.name);
            for object in api.list(&selector).await? {
                let key = format!("{}/{}", <$kind>::kind(&()), object.name_any());
                versions.insert(key, object.resource_version().unwrap_or_default());
            }
        };
    }
    collect!(StatefulSet);
    collect!(Service);
    collect!(ConfigMap);
    Ok(versions)
}

#[tokio::test]
async fn restarting_the_operator_changes_no_child() -> Result<()> {
    let (ns, _nat) = setup("restart").await?;
    server::apply(&ns, "steady", server::base_spec()).await?;
    server::wait_ready(&ns, "steady").await?;
    // Let the last status writes of start-up land.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = versions(&ns, "steady").await?;
    ensure!(before.len() >= 5, "too few children found: {before:?}");

    let operator_pods: Api<Pod> = Api::namespaced(ns.client.clone(), OPERATOR_NAMESPACE);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let old: Vec<String> = operator_pods
        .list(&selector)
        .await?
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    ensure!(!old.is_empty(), "no operator pod found");
    operator_pods
        .delete_collection(&DeleteParams::default(), &selector)
        .await?;
    eventually("a new operator pod Ready", SETTLE_TIMEOUT, || async {
        let pods = operator_pods.list(&selector).await?;
        Ok(pods
            .iter()
            .any(|p| !old.contains(&p.uid().unwrap_or_default()) && pod_ready(p))
            .then_some(()))
    })
    .await?;
    // The new operator reconciles every FtpServer on start; give it time.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = versions(&ns, "steady").await?;
    ensure!(
        before == after,
        "children changed:\nbefore {before:?}\nafter  {after:?}"
    );
    ns.delete().await
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn deleting_an_ftpserver_removes_what_it_made() -> Result<()> {
    let (ns, _nat) = setup("deleted").await?;
    server::apply(&ns, "gone", server::base_spec()).await?;
    server::wait_ready(&ns, "gone").await?;
    ensure!(!versions(&ns, "gone").await?.is_empty());
    server::api(&ns)
        .delete("gone", &DeleteParams::foreground())
        .await?;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let selector = ListParams::default().labels("app.kubernetes.io/instance=gone");
    eventually("the FtpServer's children gone", SETTLE_TIMEOUT, || async {
        let left = match server::api(&ns).get_opt("gone").await? {
            Some(_) => 1,
            None => {
                let children = children_left(&ns).await?;
                children + pods.list(&selector).await?.items.len()
            }
        };
        Ok((left == 0).then_some(()))
    })
    .await?;
    ns.delete().await
}

/// How many objects labelled for FtpServer "gone" are left, its data
/// volumes included.
async fn children_left(ns: &TestNamespace) -> Result<usize> {
    let selector = ListParams::default().labels("app.kubernetes.io/instance=gone");
    let sets: Api<StatefulSet> = Api::namespaced(ns.client.clone(), &ns.name);
    let services: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    let maps: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ns.client.clone(), &ns.name);
    Ok(sets.list(&selector).await?.items.len()
        + services.list(&selector).await?.items.len()
        + maps.list(&selector).await?.items.len()
        + claims.list(&selector).await?.items.len())
}
