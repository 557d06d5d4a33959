//! Persistent volumes for the one node: the default StorageClass
//! `standard` (the name kind's default class has too), provisioned as
//! directories under the cluster's state directory, as kind's
//! local-path-provisioner does.
//!
//! A claim of the class gets a hostPath PersistentVolume bound to it; when
//! the claim is deleted, the volume's directory and the volume go.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};

pub const STORAGE_CLASS: &str = "standard";
pub const PROVISIONER: &str = "kubeftp.dev/local-path";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("volume directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Context {
    client: kube::Client,
    /// Volume directories live here, one per claim.
    root: PathBuf,
}

/// Creates the StorageClass, then provisions and cleans up volumes until
/// the watches end.
pub async fn run(client: kube::Client, root: PathBuf) -> anyhow::Result<()> {
    create_storage_class(&client).await?;
    let ctx = Arc::new(Context { client, root });
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .run(provision, retry, ctx.clone())
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::warn!("storage: {error}");
        }
    });
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .run(reclaim, retry, ctx.clone())
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::warn!("storage: {error}");
        }
    });
    futures::join!(claims, volumes);
    Ok(())
}

async fn create_storage_class(client: &kube::Client) -> kube::Result<()> {
    let class: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }))
    .expect("a valid StorageClass");
    Api::<StorageClass>::all(client.clone())
        .patch(
            STORAGE_CLASS,
            &PatchParams::apply("kubeftp-cluster").force(),
            &Patch::Apply(&class),
        )
        .await?;
    Ok(())
}

/// Gives an unbound claim of our class a volume.
async fn provision(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
    let spec = claim.spec.clone().unwrap_or_default();
    let bound = spec.volume_name.is_some();
    if bound || spec.storage_class_name.as_deref() != Some(STORAGE_CLASS) {
        return Ok(Action::await_change());
    }
    let (Some(uid), Some(namespace)) = (claim.uid(), claim.namespace()) else {
        return Ok(Action::await_change());
    };
    let name = format!("pvc-{uid}");
    let path = ctx.root.join(&name);
    std::fs::create_dir_all(&path).map_err(|source| Error::Directory {
        path: path.clone(),
        source,
    })?;
    // Any pod user may write, as with local-path-provisioner: hostPath
    // volumes ignore fsGroup.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).map_err(|source| {
        Error::Directory {
            path: path.clone(),
            source,
        }
    })?;
    let capacity = spec.resources.and_then(|r| r.requests).unwrap_or_default();
    let volume = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([(PROVISIONED_BY.to_owned(), PROVISIONER.to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(capacity),
            access_modes: spec.access_modes,
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some(STORAGE_CLASS.into()),
            volume_mode: spec.volume_mode,
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(claim.name_any()),
                uid: Some(uid),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let volumes = Api::<PersistentVolume>::all(ctx.client.clone());
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => tracing::info!(volume = %name, claim = %claim.name_any(), "provisioned"),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Action::await_change())
}

/// Deletes a volume of ours, and its directory, once its claim is gone.
async fn reclaim(volume: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ours = volume.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if !ours || !released || volume.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let path = ctx.root.join(volume.name_any());
    match std::fs::remove_dir_all(&path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Directory { path, source });
        }
        _ => {}
    }
    Api::<PersistentVolume>::all(ctx.client.clone())
        .delete(&volume.name_any(), &DeleteParams::default())
        .await?;
    tracing::info!(volume = %volume.name_any(), "reclaimed");
    Ok(Action::await_change())
}

fn retry<K>(_object: Arc<K>, _error: &Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(5))
}
