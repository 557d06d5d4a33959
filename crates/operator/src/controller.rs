//! Wires the watches to the reconcile.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, controller, watcher};
use kube::{Resource, ResourceExt};

use crate::cache::{filling, wait_filled};
use crate::context::Context;
use crate::labels;
use crate::reconcile::{claim_change, error_policy, reconcile};
use crate::watched::Watched;

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` resolves, then finishes running reconciles.
/// `ready` turns true once the FtpServers have been listed.
pub async fn run(
    ctx: Context,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let namespace = ctx.config.namespace.clone();
    let namespace = namespace.as_deref();
    // Only the children this operator made, to keep the caches small.
    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::OPERATOR));
    // The server pods, and their claims, which have the same labels.
    let servers = watcher::Config::default().labels(&format!(
        "{}={},{}=server",
        labels::NAME,
        labels::APP,
        labels::COMPONENT
    ));

    // The watches of children fill the caches the reconciles read.
    let writers = ctx
        .caches
        .take_writers()
        .expect("the controller runs once per context");
    let controller = Controller::new(
        api::<Watched>(&client, namespace),
        watcher::Config::default().any_semantic(),
    );
    let ftp_servers = controller.store();
    let controller = controller
        .owns_stream(filling(
            api::<StatefulSet>(&client, namespace),
            owned.clone(),
            writers.stateful_sets,
        ))
        .owns_stream(filling(
            api::<ConfigMap>(&client, namespace),
            owned.clone(),
            writers.config_maps,
        ))
        .owns_stream(filling(
            api::<Service>(&client, namespace),
            owned,
            writers.services,
        ))
        // Pods are the StatefulSet's, not ours: map them to their FtpServer so
        // a NodePort replica's address follows its pod to another node.
        .watches_stream(
            filling(
                api::<Pod>(&client, namespace),
                servers.clone(),
                writers.pods,
            ),
            |pod| of_instance(&pod),
        )
        // The claims carry the pods' labels (the volumeClaimTemplate's): the
        // claims a scale-down left behind follow whenDeleted.
        .watches_stream(
            filling(
                api::<PersistentVolumeClaim>(&client, namespace),
                servers,
                writers.claims,
            ),
            move |claim| of_instance_to_align(&ftp_servers, claim),
        )
        .graceful_shutdown_on(shutdown);

    let store = controller.store();
    tokio::spawn(async move {
        if wait_filled(&store).await {
            ready.store(true, Ordering::Relaxed);
        }
    });

    let ctx = Arc::new(ctx);
    let filled = {
        let ctx = ctx.clone();
        tokio::spawn(async move { ctx.caches.mark_ready_when_filled().await })
    };
    // Forget the failures of deleted FtpServers, which no reconcile will
    // clear; a pending retry or their children going may not come soon.
    let forgetting = {
        let (ctx, store) = (ctx.clone(), controller.store());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FORGET_DELETED_EVERY).await;
                ctx.forget_failures_unless(|(namespace, name)| {
                    store.get(&ObjectRef::new(name).within(namespace)).is_some()
                });
            }
        })
    };
    controller
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
                    // A deleted FtpServer: a pending retry, or its children
                    // going, asked for it. Its failures no longer count.
                    Err(controller::Error::ObjectNotFound(object)) => {
                        let key = (
                            object.namespace.clone().unwrap_or_default(),
                            object.name.clone(),
                        );
                        ctx.forget_failures(&key);
                    }
                    Err(error) => tracing::debug!("controller: {error}"),
                }
            }
        })
        .await;
    forgetting.abort();
    filled.abort();
}

/// The FtpServer a pod or claim belongs to, by its instance label.
fn of_instance<K: Resource>(object: &K) -> Option<ObjectRef<Watched>> {
    let instance = object.labels().get(labels::INSTANCE)?;
    Some(ObjectRef::new(instance).within(&object.namespace()?))
}

/// The FtpServer a claim belongs to, if the claim is one a scale-down left
/// behind whose owner references disagree with whenDeleted
/// ([`crate::reconcile::claim_change`]): only then does a claim's change
/// call for a reconcile. The StatefulSet controller creates each claim and
/// then updates its owner references; mapped for every FtpServer, those two
/// events cost 2 reconciles per FtpServer that did nothing (1000 of 4273
/// with 500 FtpServers, `make bench-operator`). This also catches a change
/// the FtpServer's reconcile missed because the claims' cache was behind
/// (a release seen only after a switch back to Delete). An FtpServer the
/// store does not show yet is reconciled for its own creation anyway.
fn of_instance_to_align(
    ftp_servers: &Store<Watched>,
    claim: PersistentVolumeClaim,
) -> Option<ObjectRef<Watched>> {
    let owner = of_instance(&claim)?;
    let watched = ftp_servers.get(&owner)?;
    let ftp = watched.0.as_ref().ok()?;
    claim_change(ftp, &claim).map(|_| owner)
}

/// How often the failures of deleted FtpServers are dropped.
const FORGET_DELETED_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::build::test_support::ftp;

    /// The claim of replica `ordinal` of `instance`, owned by its
    /// StatefulSet or not.
    fn claim(instance: &str, ordinal: i32, owned: bool) -> PersistentVolumeClaim {
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.name = Some(format!("data-{instance}-{ordinal}"));
        claim.metadata.namespace = Some("team".into());
        claim.metadata.labels = Some([(labels::INSTANCE.to_string(), instance.to_string())].into());
        claim.metadata.owner_references = owned.then(|| {
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: instance.into(),
                uid: "set-uid".into(),
                ..Default::default()
            }]
        });
        claim
    }

    /// A claim's change reconciles its FtpServer only if the claim is one a
    /// scale-down left behind and disagrees with whenDeleted: still owned
    /// under Retain, released under Delete.
    #[test]
    fn claims_reconcile_only_ftp_servers_they_disagree_with() {
        let (store, mut writer) = reflector::store::<Watched>();
        for (name, when_deleted) in [("keeps", "Retain"), ("deletes", "Delete")] {
            let mut server = ftp(&format!(
                "anonymous: {{enabled: true}}\nreplicas: 1\nstorage: {{volumeClaimTemplate: {{size: 1Gi, whenDeleted: {when_deleted}}}}}"
            ));
            server.metadata.name = Some(name.into());
            writer.apply_watcher_event(&watcher::Event::Apply(Watched(Ok(server))));
        }
        let mapped = |instance, ordinal, owned| {
            of_instance_to_align(&store, claim(instance, ordinal, owned))
        };
        let keeps = Some(ObjectRef::new("keeps").within("team"));
        let deletes = Some(ObjectRef::new("deletes").within("team"));
        assert_eq!(mapped("keeps", 1, true), keeps);
        assert_eq!(mapped("keeps", 1, false), None);
        assert_eq!(mapped("keeps", 0, true), None, "a running replica's");
        assert_eq!(mapped("deletes", 1, false), deletes);
        assert_eq!(mapped("deletes", 1, true), None);
        assert_eq!(mapped("deletes", 0, false), None, "a running replica's");
        assert_eq!(mapped("unknown", 1, true), None, "not in the store yet");
    }
}
