//! What only a real kube-controller-manager does: garbage collection of
//! dependents, and the workload controllers creating ReplicaSets and Pods.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kubeftp_testenv::shared_namespace;
use serde_json::json;

/// Polls `check` until it returns true, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} did not happen within {limit:?}")
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_first() -> Result<()> {
    let ns = shared_namespace("gc").await?;
    let api: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
    let owner = api
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: named("owner"),
                ..Default::default()
            },
        )
        .await?;
    let mut dependent = ConfigMap {
        metadata: named("dependent"),
        ..Default::default()
    };
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().expect("uid"),
        block_owner_deletion: Some(true),
        controller: None,
    }]);
    api.create(&PostParams::default(), &dependent).await?;

    // Foreground deletion keeps the owner, marked, until its dependents go.
    let deleting = api.delete("owner", &DeleteParams::foreground()).await?;
    let marked = deleting.left().expect("the owner waits for its dependents");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );

    eventually("garbage collection", Duration::from_secs(60), || async {
        Ok(api.get_opt("dependent").await?.is_none() && api.get_opt("owner").await?.is_none())
    })
    .await
}

#[tokio::test]
async fn deployment_controller_creates_replica_set_and_pod() -> Result<()> {
    let ns = shared_namespace("deploy").await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.invalid/web" }] },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &deployment)
        .await?;

    let replica_sets: Api<ReplicaSet> = Api::namespaced(ns.client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let by_app = ListParams::default().labels("app=web");
    eventually(
        "a ReplicaSet owned by the Deployment",
        Duration::from_secs(60),
        || async {
            let list = replica_sets.list(&by_app).await?;
            Ok(list
                .items
                .iter()
                .any(|rs| owned_by(&rs.metadata, "Deployment", "web")))
        },
    )
    .await?;
    // Pods need the namespace's default ServiceAccount, which another
    // controller creates: this exercises that one too.
    eventually(
        "a Pod created by the ReplicaSet",
        Duration::from_secs(60),
        || async {
            let list = pods.list(&by_app).await?;
            Ok(list
                .items
                .iter()
                .any(|pod| owned_by(&pod.metadata, "ReplicaSet", "web-")))
        },
    )
    .await
}

#[tokio::test]
async fn statefulset_controller_creates_ordinal_pod() -> Result<()> {
    let ns = shared_namespace("sts").await?;
    let statefulset = StatefulSet {
        metadata: named("db"),
        spec: Some(serde_json::from_value(json!({
            "replicas": 1,
            "serviceName": "db",
            "selector": { "matchLabels": { "app": "db" } },
            "template": {
                "metadata": { "labels": BTreeMap::from([("app", "db")]) },
                "spec": { "containers": [{ "name": "db", "image": "example.invalid/db" }] },
            },
        }))?),
        ..Default::default()
    };
    Api::<StatefulSet>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &statefulset)
        .await?;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually("pod db-0", Duration::from_secs(60), || async {
        Ok(pods.get_opt("db-0").await?.is_some())
    })
    .await
}

/// Whether `meta` has an owner of `kind` whose name starts with `name`.
fn owned_by(meta: &ObjectMeta, kind: &str, name: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.kind == kind && owner.name.starts_with(name))
}
