//! The load-balancer stand-in and the volume provisioner against a real
//! control plane (kubeftp-testenv; they need no node).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubeftp_cluster::load_balancer::{self, Pool};
use kubeftp_cluster::storage;
use serde_json::json;

/// Polls `check` every 100 ms until it returns `Some`, for up to 60 s:
/// generous, as tests run four at a time on two cores (the wait ends as
/// soon as the outcome is there).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    for _ in 0..600 {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what}: not within 60 s")
}

fn service(name: &str, type_: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "type": type_, "ports": [{ "port": 21 }] },
    }))
    .unwrap()
}

fn address(service: &Service) -> Option<Ipv4Addr> {
    let ingress = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?;
    ingress.first()?.ip.as_deref()?.parse().ok()
}

async fn address_of(api: &Api<Service>, name: &str, wanted: Option<Ipv4Addr>) -> Result<()> {
    eventually(&format!("{name} at {wanted:?}"), || async {
        let service = api.get(name).await?;
        Ok((address(&service) == wanted).then_some(()))
    })
    .await
}

#[tokio::test]
async fn load_balancer_assigns_moves_and_frees_addresses() -> Result<()> {
    let ns = kubeftp_testenv::shared_namespace("lb").await?;
    let pool = Pool {
        network: "10.203.0.0/24".parse()?,
        first: Ipv4Addr::new(10, 203, 0, 10),
        last: Ipv4Addr::new(10, 203, 0, 11),
    };
    tokio::spawn(load_balancer::run(ns.client.clone(), pool));
    let api: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    let post = PostParams::default();
    let (a, b) = (Ipv4Addr::new(10, 203, 0, 10), Ipv4Addr::new(10, 203, 0, 11));

    api.create(&post, &service("first", "LoadBalancer")).await?;
    address_of(&api, "first", Some(a)).await?;
    api.create(&post, &service("second", "LoadBalancer"))
        .await?;
    address_of(&api, "second", Some(b)).await?;
    api.create(&post, &service("plain", "ClusterIP")).await?;

    // The pool is used up: the third waits, with a warning saying why.
    api.create(&post, &service("third", "LoadBalancer")).await?;
    let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let warning = eventually("an AllocationFailed event", || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=third"))
            .await?;
        Ok(list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("AllocationFailed")))
    })
    .await?;
    assert!(
        warning
            .message
            .unwrap_or_default()
            .contains("no free address")
    );

    // Moving on request, with MetalLB's annotation, frees the old address,
    // which the waiting Service then gets.
    let spare = Ipv4Addr::new(10, 203, 0, 250);
    let annotate = json!({ "metadata": { "annotations": {
        load_balancer::REQUESTED_ADDRESSES: spare.to_string() } } });
    api.patch("first", &PatchParams::default(), &Patch::Merge(&annotate))
        .await?;
    address_of(&api, "first", Some(spare)).await?;
    address_of(&api, "third", Some(a)).await?;

    // An address another Service holds is refused, not shared.
    let clash = json!({ "metadata": { "annotations": {
        load_balancer::REQUESTED_ADDRESSES: b.to_string() } } });
    api.patch("third", &PatchParams::default(), &Patch::Merge(&clash))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(address(&api.get("third").await?), Some(a));

    // No longer a LoadBalancer: the address goes back to the pool.
    let retype = json!({ "spec": { "type": "ClusterIP" } });
    api.patch("second", &PatchParams::default(), &Patch::Merge(&retype))
        .await?;
    address_of(&api, "second", None).await?;
    address_of(&api, "third", Some(b)).await?;
    assert_eq!(address(&api.get("plain").await?), None);
    Ok(())
}

#[tokio::test]
async fn volumes_are_provisioned_for_claims_and_reclaimed_after_them() -> Result<()> {
    let ns = kubeftp_testenv::shared_namespace("volumes").await?;
    let root = tempfile::tempdir()?;
    let client = ns.client.clone();
    let volumes_root = root.path().to_owned();
    tokio::spawn(async move { storage::run(client, volumes_root).await });

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ns.client.clone(), &ns.name);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "data" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage::STORAGE_CLASS,
            "resources": { "requests": { "storage": "3Gi" } },
        },
    }))?;
    let claim = claims.create(&PostParams::default(), &claim).await?;
    let uid = claim.metadata.uid.clone().unwrap();
    let bound = eventually("the claim bound", || async {
        let claim = claims.get("data").await?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
        Ok((phase.as_deref() == Some("Bound")).then_some(claim))
    })
    .await?;

    let name = format!("pvc-{uid}");
    assert_eq!(
        bound.spec.unwrap().volume_name.as_deref(),
        Some(name.as_str())
    );
    let volumes: Api<PersistentVolume> = Api::all(ns.client.clone());
    let volume = volumes.get(&name).await?;
    let spec = volume.spec.unwrap();
    let capacity: BTreeMap<_, _> = spec.capacity.unwrap().into_iter().collect();
    assert_eq!(capacity["storage"].0, "3Gi");
    let directory = root.path().join(&name);
    assert_eq!(
        spec.host_path.unwrap().path,
        directory.display().to_string()
    );
    assert!(directory.is_dir());
    std::fs::write(directory.join("file"), b"data")?;

    claims.delete("data", &DeleteParams::default()).await?;
    eventually("the volume reclaimed", || async {
        Ok(volumes.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(!directory.exists(), "{} is left", directory.display());
    Ok(())
}
