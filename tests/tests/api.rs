//! What only a real kube-apiserver does: namespaces, watches and
//! server-side apply with field ownership.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kubeftp_testenv::shared_namespace;
use serde_json::json;

fn config_map(name: &str, key: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(key.into(), value.into())])),
        ..Default::default()
    }
}

fn value<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.data.as_ref()?.get(key).map(String::as_str)
}

#[tokio::test]
async fn config_map_lives_in_its_own_namespace() -> Result<()> {
    let ours = shared_namespace("api-create").await?;
    let theirs = shared_namespace("api-create").await?;
    assert_ne!(ours.name, theirs.name);

    let api: Api<ConfigMap> = Api::namespaced(ours.client.clone(), &ours.name);
    api.create(
        &PostParams::default(),
        &config_map("greeting", "hello", "world"),
    )
    .await?;
    let read = api.get("greeting").await?;
    assert_eq!(value(&read, "hello"), Some("world"));
    assert!(read.metadata.uid.is_some(), "the apiserver assigns a uid");

    let other: Api<ConfigMap> = Api::namespaced(theirs.client.clone(), &theirs.name);
    assert!(other.get_opt("greeting").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn watch_sees_an_update() -> Result<()> {
    let ns = shared_namespace("api-watch").await?;
    let api: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
    api.create(&PostParams::default(), &config_map("watched", "step", "1"))
        .await?;

    let config = watcher::Config::default().fields("metadata.name=watched");
    let mut events = watcher(api.clone(), config).applied_objects().boxed();
    let first = events.next().await.context("watch ended")??;
    assert_eq!(value(&first, "step"), Some("1"));

    let patch = json!({ "data": { "step": "2" } });
    api.patch("watched", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(cm) = events.next().await {
            if value(&cm?, "step") == Some("2") {
                return Ok(());
            }
        }
        bail!("watch ended before the update arrived")
    });
    seen.await.context("no update within 20 s")?
}

#[tokio::test]
async fn server_side_apply_tracks_field_managers() -> Result<()> {
    let ns = shared_namespace("api-ssa").await?;
    let api: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
    let applied = |value: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "applied" },
            "data": { "owner": value },
        })
    };

    // Apply creates the object and records the manager.
    let ours = PatchParams::apply("kubeftp-test");
    let created = api
        .patch("applied", &ours, &Patch::Apply(applied("kubeftp")))
        .await?;
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| (entry.manager.as_deref(), entry.operation.as_deref()))
        .collect();
    assert_eq!(managers, [(Some("kubeftp-test"), Some("Apply"))]);

    // Another manager may not take the field without force...
    let theirs = PatchParams::apply("someone-else");
    let conflict = api
        .patch("applied", &theirs, &Patch::Apply(applied("them")))
        .await
        .expect_err("a conflicting apply must fail");
    match conflict {
        kube::Error::Api(status) => assert_eq!(status.code, 409, "{status:?}"),
        other => bail!("expected a 409 conflict, got {other}"),
    }

    // ...and with force it does.
    let forced = api
        .patch("applied", &theirs.force(), &Patch::Apply(applied("them")))
        .await?;
    assert_eq!(value(&forced, "owner"), Some("them"));
    Ok(())
}
