//! One reconcile of one FtpServer: validate → build → apply → status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use kubeftp_api::condition::{ADDRESS_ASSIGNED, DEGRADED, READY};
use kubeftp_api::{ClaimRetention, FtpServer, FtpServerStatus, ServiceType};
use serde_json::json;
use tracing::Instrument;

use crate::apply::{Applier, MANAGER};
use crate::build::{self, ordinal_of};
use crate::cache::cached;
use crate::context::{Context, FtpServerKey};
use crate::error::{Error, backoff, owner_references_hint};
use crate::status::{Degraded, Observed, status, transitions, unparsed_status};
use crate::validate::validate;
use crate::watched::{Unparsed, Watched};
use crate::{address, labels};

pub async fn reconcile(object: Arc<Watched>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = object.namespace().unwrap_or_default(),
        ftpserver = object.name_any()
    );
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let result = match &object.0 {
        Ok(ftp) => reconcile_ftp(ftp, &ctx).instrument(span).await,
        Err(unparsed) => {
            let error = Error::Malformed(unparsed.error.clone());
            report_unparsed(&object, unparsed, &error, &ctx)
                .instrument(span)
                .await;
            Err(error)
        }
    };
    ctx.metrics.reconciled(started.elapsed());
    if result.is_ok() {
        ctx.forget_failures(&failure_key(&object));
    }
    result
}

/// Retries with a backoff that grows with consecutive failures.
pub fn error_policy(object: Arc<Watched>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.kind());
    let failures = ctx.failed(failure_key(&object));
    let delay = backoff(error, failures);
    tracing::warn!(
        namespace = object.namespace().unwrap_or_default(),
        ftpserver = object.name_any(),
        kind = error.kind(),
        failures,
        retry_in = ?delay,
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}

fn failure_key(object: &Watched) -> FtpServerKey {
    (object.namespace().unwrap_or_default(), object.name_any())
}

async fn reconcile_ftp(ftp: &FtpServer, ctx: &Context) -> Result<Action, Error> {
    if ftp.metadata.deletion_timestamp.is_some() {
        // Owner references hand the children to the garbage collector.
        return Ok(Action::await_change());
    }
    let namespace = ftp.namespace().unwrap_or_default();
    let applier = Applier {
        client: &ctx.client,
        namespace: &namespace,
        metrics: &ctx.metrics,
        caches: &ctx.caches,
    };

    if let Err(invalid) = validate(&ftp.spec) {
        let observed = Observed {
            stateful_set: None,
            addresses: &previous_addresses(ftp),
            degraded: Some(Degraded::new("InvalidSpec", invalid.to_string(), false)),
        };
        update_status(ftp, ctx, &observed).await?;
        return Ok(Action::await_change());
    }

    let children = build::children(ftp, &ctx.config.settings);

    match apply(ftp, children, &applier, ctx).await {
        Ok(applied) => {
            let observed = Observed {
                stateful_set: Some(&applied.stateful_set),
                addresses: &applied.addresses,
                degraded: None,
            };
            update_status(ftp, ctx, &observed).await?;
            if applied.draining > 0 {
                return Ok(Action::requeue(DRAIN_RECHECK.min(ctx.config.resync)));
            }
            Ok(Action::requeue(ctx.config.resync))
        }
        Err(error) => {
            // A blip (an apiserver restart, a conflict) is retried quietly;
            // the status only hears of it if it persists, and never loses
            // what it last saw of the replicas.
            let failures_before = ctx.failures(&(namespace.clone(), ftp.name_any()));
            if error.is_reported(failures_before) {
                let observed = Observed {
                    stateful_set: None,
                    addresses: &previous_addresses(ftp),
                    degraded: Some(Degraded::new(
                        error.kind(),
                        error.to_string(),
                        error.is_transient(),
                    )),
                };
                if let Err(status_error) = update_status(ftp, ctx, &observed).await {
                    tracing::warn!("could not record the failure in status: {status_error}");
                }
            }
            Err(error)
        }
    }
}

/// An FtpServer that does not parse is marked Degraded, saying what does
/// not parse; only a change to it can help. Its children are left as they
/// are: the operator cannot know what they should be.
async fn report_unparsed(object: &Watched, unparsed: &Unparsed, error: &Error, ctx: &Context) {
    if unparsed.metadata.deletion_timestamp.is_some() {
        return;
    }
    let failure = Degraded::new(error.kind(), error.to_string(), false);
    let new = unparsed_status(
        unparsed.status.as_ref(),
        unparsed.metadata.generation,
        &failure,
        Timestamp::now(),
    );
    let reference = object.object_ref(&());
    if let Err(status_error) = write_status(&reference, unparsed.status.as_ref(), new, ctx).await {
        tracing::warn!("could not record the failure in status: {status_error}");
    }
}

/// While a removed replica's pod drains, how often to look again (its
/// deletion also triggers a reconcile through the Pod watch).
const DRAIN_RECHECK: Duration = Duration::from_secs(5);

/// How long a reconcile waits for the caches' first lists (right after the
/// operator starts) before it fails and retries.
const CACHES_WAIT: Duration = Duration::from_secs(30);

/// What applying the children found.
struct Applied {
    stateful_set: StatefulSet,
    /// Per desired replica, its advertised address.
    addresses: Vec<Option<String>>,
    /// Replicas removed by a scale-down whose pods still exist.
    draining: usize,
}

/// Applies the children in an order that lets pods start at once: config
/// and Services first, then the addresses found on the Services, then the
/// StatefulSet; then Services of replicas that no longer exist go; last,
/// the claims a scale-down left behind follow whenDeleted (so a claim the
/// operator may not change holds up nothing else).
///
/// A replica removed by a scale-down keeps its Service and address until
/// its pod is gone: the server lets running transfers finish after SIGTERM,
/// and they need the load balancer and the address to the end.
async fn apply(
    ftp: &FtpServer,
    children: build::Children,
    applier: &Applier<'_>,
    ctx: &Context,
) -> Result<Applied, Error> {
    // Until the caches are filled, every child would look missing.
    tokio::time::timeout(CACHES_WAIT, ctx.caches.wait_until_ready())
        .await
        .map_err(|_| Error::CachesNotFilled(CACHES_WAIT))?;
    applier.apply(children.config).await?;
    let mut services = Vec::with_capacity(children.services.len());
    for service in children.services {
        let service = applier.apply(service).await?;
        services.push(release_node_ports(ftp, service, ctx).await?);
    }
    let mut addresses = Vec::with_capacity(services.len());
    for (ordinal, service) in services.iter().enumerate() {
        addresses.push(replica_address(ftp, ordinal as i32, service, ctx).await?);
    }

    let pods = pod_ordinals(ftp, ctx);
    let (draining, gone): (Vec<_>, Vec<_>) = extra_services(ftp, ctx)
        .into_iter()
        .partition(|(ordinal, _)| pods.contains(ordinal));
    let mut address_file: BTreeMap<i32, Option<String>> =
        (0..).zip(addresses.iter().cloned()).collect();
    for (ordinal, service) in &draining {
        let address = replica_address(ftp, *ordinal, service, ctx).await?;
        address_file.insert(*ordinal, address);
    }
    applier
        .apply(build::addresses_config_map(ftp, &address_file))
        .await?;
    let stateful_set = applier.apply(children.stateful_set).await?;
    for (_, service) in gone {
        applier.delete::<Service>(&service.name_any()).await?;
    }
    align_scaled_down_claims(ftp, &stateful_set, ctx).await?;
    Ok(Applied {
        stateful_set,
        addresses,
        draining: draining.len(),
    })
}

/// With `allocateLoadBalancerNodePorts: false`, clears the node ports a
/// LoadBalancer Service still holds from before: the apiserver keeps them
/// when the field turns false, and the apply cannot drop them (they are
/// allocated, so no field manager owns them). Returns the Service as
/// stored. Only once the stored field is false, or the apiserver would put
/// them back.
async fn release_node_ports(
    ftp: &FtpServer,
    service: Service,
    ctx: &Context,
) -> Result<Service, Error> {
    let wanted = &ftp.spec.service;
    let Some(spec) = &service.spec else {
        return Ok(service);
    };
    let held: Vec<i32> = spec
        .ports
        .iter()
        .flatten()
        .filter(|port| port.node_port.is_some())
        .map(|port| port.port)
        .collect();
    if wanted.type_ != ServiceType::LoadBalancer
        || wanted.allocate_load_balancer_node_ports != Some(false)
        || spec.type_.as_deref() != Some("LoadBalancer")
        || spec.allocate_load_balancer_node_ports != Some(false)
        || held.is_empty()
    {
        return Ok(service);
    }
    let name = service.name_any();
    // A strategic merge patch: ports merge by port, and null removes the
    // field; the rest of each port stays.
    let ports: Vec<_> = held
        .iter()
        .map(|port| json!({"port": port, "nodePort": null}))
        .collect();
    let patch = json!({"spec": {"ports": ports}});
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    tracing::info!(service = %name, ports = held.len(), "releasing node ports");
    ctx.metrics.wrote("Service", "patch");
    let namespace = ftp.namespace().unwrap_or_default();
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Strategic(&patch))
        .await
        .map_err(Error::kube(format!(
            "releasing the node ports of Service {name}"
        )))
}

/// What a scaled-down replica's claim needs for it to follow whenDeleted.
#[derive(Debug, PartialEq)]
pub(crate) enum ClaimOwnership {
    /// Retain: take off the StatefulSet's owner reference (its uid).
    Release(String),
    /// Delete: put the StatefulSet's owner reference back.
    Own,
}

/// What `claim` needs, if it is the claim of a replica that a scale-down
/// removed from `ftp` (claims are kept on scale-down) and its owner
/// references disagree with whenDeleted. The StatefulSet controller moves
/// the references only on the claims of the replicas it runs: without this,
/// a claim left behind by a scale-down while whenDeleted was Delete would go
/// with the StatefulSet after a switch to Retain, and one released under
/// Retain would outlive it after a switch back to Delete. Claims being
/// deleted are left alone, and so, under Delete, are claims that refer to
/// an earlier StatefulSet of the same name (the garbage collector's) or
/// that another controller owns (an object has one controller at most).
pub(crate) fn claim_change(
    ftp: &FtpServer,
    claim: &PersistentVolumeClaim,
) -> Option<ClaimOwnership> {
    let template = ftp.spec.storage.volume_claim_template.as_ref()?;
    let scaled_down = claim.namespace() == ftp.namespace()
        && claim.labels().get(labels::INSTANCE) == Some(&ftp.name_any())
        && claim.metadata.deletion_timestamp.is_none()
        && build::claim_ordinal(ftp, &claim.name_any())
            .is_some_and(|ordinal| ordinal >= ftp.spec.replicas);
    if !scaled_down {
        return None;
    }
    // The StatefulSet has the FtpServer's name.
    let references = claim.owner_references();
    let set_reference = references
        .iter()
        .find(|owner| owner.kind == "StatefulSet" && owner.name == ftp.name_any());
    let controlled = references
        .iter()
        .any(|owner| owner.controller == Some(true));
    match (template.when_deleted, set_reference) {
        (ClaimRetention::Retain, Some(set)) => Some(ClaimOwnership::Release(set.uid.clone())),
        (ClaimRetention::Delete, None) if !controlled => Some(ClaimOwnership::Own),
        _ => None,
    }
}

/// The claims among `claims` that need a change ([`claim_change`]).
fn scaled_down_claims<'a>(
    ftp: &FtpServer,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> Vec<(String, ClaimOwnership)> {
    claims
        .into_iter()
        .filter_map(|claim| Some((claim.name_any(), claim_change(ftp, claim)?)))
        .collect()
}

/// Makes the owner references of scaled-down replicas' claims follow
/// whenDeleted ([`scaled_down_claims`]). Read from the claims' cache: once
/// a claim agrees, it costs no further writes.
async fn align_scaled_down_claims(
    ftp: &FtpServer,
    stateful_set: &StatefulSet,
    ctx: &Context,
) -> Result<(), Error> {
    // Most FtpServers have no claims: skip the pass over the cache.
    if ftp.spec.storage.volume_claim_template.is_none() {
        return Ok(());
    }
    let changes = scaled_down_claims(ftp, ctx.caches.claims.state().iter().map(|c| &**c));
    if changes.is_empty() {
        return Ok(());
    }
    // An applied StatefulSet always has one.
    let Some(set_uid) = stateful_set.uid() else {
        return Ok(());
    };
    let namespace = ftp.namespace().unwrap_or_default();
    let set_name = stateful_set.name_any();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for (name, change) in changes {
        // A strategic merge patch merges owner references by uid: it adds or
        // deletes the one reference and keeps the others.
        let reference = match &change {
            ClaimOwnership::Release(uid) => {
                tracing::info!(claim = %name, "releasing a scaled-down replica's claim from the StatefulSet (whenDeleted: Retain)");
                json!({"$patch": "delete", "uid": uid})
            }
            ClaimOwnership::Own => {
                tracing::info!(claim = %name, "giving a scaled-down replica's claim back to the StatefulSet (whenDeleted: Delete)");
                // As the StatefulSet controller writes it on the claims of
                // the replicas it runs.
                json!({
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": set_name,
                    "uid": set_uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                })
            }
        };
        let patch = json!({"metadata": {"ownerReferences": [reference]}});
        ctx.metrics.wrote("PersistentVolumeClaim", "patch");
        match api.patch(&name, &params, &Patch::Strategic(&patch)).await {
            Ok(_) => {}
            // Deleted meanwhile: nothing left to keep or give back.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            // Refused as it stands now (another controller took the claim
            // meanwhile): the claim's next event or the resync looks again.
            Err(kube::Error::Api(status)) if status.code == 422 => {
                tracing::warn!(claim = %name, "the claim's owner references were not changed: {}", status.message);
            }
            Err(error) => {
                let hint = owner_references_hint(&error, "persistentvolumeclaims")
                    .map(|hint| format!("; {hint}"))
                    .unwrap_or_default();
                return Err(Error::kube(format!(
                    "changing the owner references of PersistentVolumeClaim {name} (StatefulSet {set_name}){hint}"
                ))(error));
            }
        }
    }
    Ok(())
}

/// A replica's advertised address: the spec's override, else what the
/// cluster published on its Service, else (NodePort) its node's address.
async fn replica_address(
    ftp: &FtpServer,
    ordinal: i32,
    service: &Service,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    if let Some(address) = &ftp.spec.passive.advertised_address {
        return Ok(Some(address.clone()));
    }
    match ftp.spec.service.type_ {
        ServiceType::NodePort => node_address(ftp, ordinal, ctx).await,
        _ => Ok(address::published(service)),
    }
}

/// The address of the node running replica `ordinal`, once scheduled.
async fn node_address(
    ftp: &FtpServer,
    ordinal: i32,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let namespace = ftp.namespace().unwrap_or_default();
    let pod = cached(&ctx.caches.pods, &namespace, &labels::pod(ftp, ordinal));
    let Some(node_name) = pod.and_then(|p| p.spec?.node_name) else {
        return Ok(None);
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node = nodes
        .get_opt(&node_name)
        .await
        .map_err(Error::kube(format!("reading Node {node_name}")))?;
    Ok(node.as_ref().and_then(address::node_address))
}

/// Ordinals of the server pods that exist, terminating ones included.
fn pod_ordinals(ftp: &FtpServer, ctx: &Context) -> BTreeSet<i32> {
    let namespace = ftp.namespace();
    let selector = labels::selector(ftp);
    ctx.caches
        .pods
        .state()
        .iter()
        .filter(|pod| pod.namespace() == namespace && labels::matches(pod.labels(), &selector))
        .filter_map(|pod| labels::ordinal_of_pod(ftp, &pod.name_any()))
        .collect()
}

/// Our Services of ordinals at or above `spec.replicas`, by ordinal: those
/// this FtpServer owns, and those with its labels and no owner, which an
/// FtpServer of its name deleted with `--cascade=orphan` left (it adopts
/// the others by applying them).
fn extra_services(ftp: &FtpServer, ctx: &Context) -> Vec<(i32, Service)> {
    let namespace = ftp.namespace();
    let uid = ftp.uid();
    let ours_by_label = labels::common(ftp);
    ctx.caches
        .services
        .state()
        .iter()
        .filter(|service| {
            let owners = service.owner_references();
            let ours = owners.iter().any(|owner| Some(&owner.uid) == uid.as_ref());
            let orphaned = owners.iter().all(|owner| owner.controller != Some(true))
                && labels::matches(service.labels(), &ours_by_label);
            service.namespace() == namespace && (ours || orphaned)
        })
        .filter_map(|service| Some((ordinal_of(service)?, service)))
        .filter(|(ordinal, _)| *ordinal >= ftp.spec.replicas)
        .map(|(ordinal, service)| (ordinal, (**service).clone()))
        .collect()
}

/// The addresses the last status recorded, for a status written when the
/// Services could not be read.
fn previous_addresses(ftp: &FtpServer) -> Vec<Option<String>> {
    let endpoints = ftp.status.as_ref().map(|s| s.endpoints.clone());
    endpoints
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.address)
        .collect()
}

/// Writes the status if it changed, and an Event per meaningful change.
async fn update_status(
    ftp: &FtpServer,
    ctx: &Context,
    observed: &Observed<'_>,
) -> Result<(), Error> {
    let new = status(ftp, observed, Timestamp::now());
    write_status(&ftp.object_ref(&()), ftp.status.as_ref(), new, ctx).await
}

/// Writes `new` over `old` if they differ, with an Event per meaningful
/// change.
async fn write_status(
    reference: &ObjectReference,
    old: Option<&FtpServerStatus>,
    new: FtpServerStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if old == Some(&new) {
        return Ok(());
    }
    let namespace = reference.namespace.clone().unwrap_or_default();
    let name = reference.name.clone().unwrap_or_default();
    let api: Api<FtpServer> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": FtpServer::api_version(&()),
        "kind": FtpServer::kind(&()),
        "status": new,
    });
    ctx.metrics.wrote("FtpServer", "status");
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("writing status"))?;
    publish_events(reference, ctx, old, &new).await;
    Ok(())
}

/// Events for Ready, AddressAssigned and Degraded changes. A failed Event
/// is logged, not retried: it must not hold up the reconcile.
async fn publish_events(
    reference: &ObjectReference,
    ctx: &Context,
    old: Option<&FtpServerStatus>,
    new: &FtpServerStatus,
) {
    for condition in transitions(old, new) {
        let good = match condition.type_.as_str() {
            READY | ADDRESS_ASSIGNED => condition.status == "True",
            DEGRADED => condition.status == "False",
            _ => continue,
        };
        // A new object's first status is news only when something
        // happened: Ready or an address, or a failure; not the not-yet.
        let first = old.is_none_or(|old| old.conditions.is_empty());
        let news = if condition.type_ == DEGRADED {
            !good
        } else {
            good
        };
        if first && !news {
            continue;
        }
        let event = Event {
            type_: if good {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: condition.reason.clone(),
            note: Some(condition.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.metrics.wrote("Event", "create");
        if let Err(error) = ctx.recorder.publish(&event, reference).await {
            tracing::warn!("could not publish an event: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    use super::*;
    use crate::build::test_support::ftp;

    /// The claim of replica `ordinal` of the FtpServer "files", owned by its
    /// StatefulSet of `owner_uid` if given.
    fn claim(ordinal: i32, owner_uid: Option<&str>) -> PersistentVolumeClaim {
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.name = Some(format!("data-files-{ordinal}"));
        claim.metadata.namespace = Some("team".into());
        claim.metadata.labels = Some([(labels::INSTANCE.into(), "files".into())].into());
        claim.metadata.owner_references = owner_uid.map(|uid| {
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: "files".into(),
                uid: uid.into(),
                ..Default::default()
            }]
        });
        claim
    }

    fn storage(when_deleted: &str) -> String {
        format!(
            "users: {{secretName: u}}\nreplicas: 1\nstorage: {{volumeClaimTemplate: {{size: 1Gi, whenDeleted: {when_deleted}}}}}"
        )
    }

    /// Only claims of replicas a scale-down removed change, and only where
    /// their references disagree with whenDeleted.
    #[test]
    fn scaled_down_claims_follow_when_deleted() {
        let claims = [
            claim(0, Some("set-uid")),
            claim(0, None),
            claim(1, Some("set-uid")),
            claim(2, None),
        ];
        let retain = scaled_down_claims(&ftp(&storage("Retain")), &claims);
        assert_eq!(
            retain,
            [(
                "data-files-1".into(),
                ClaimOwnership::Release("set-uid".into())
            )]
        );
        let delete = scaled_down_claims(&ftp(&storage("Delete")), &claims);
        assert_eq!(delete, [("data-files-2".into(), ClaimOwnership::Own)]);
    }

    /// Claims of other FtpServers or namespaces, claims being deleted,
    /// claims another controller owns (under Delete), and FtpServers
    /// without a claim template are left alone; a reference to an earlier
    /// StatefulSet of the same name is released under Retain (the
    /// StatefulSet's name is what matters) and not doubled under Delete.
    #[test]
    fn scaled_down_claims_leave_others_alone() {
        let mut other_instance = claim(1, None);
        other_instance.metadata.labels = Some([(labels::INSTANCE.into(), "other".into())].into());
        let mut other_namespace = claim(1, None);
        other_namespace.metadata.namespace = Some("elsewhere".into());
        let deleting = |owner_uid| {
            let mut claim = claim(1, owner_uid);
            claim.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
            claim
        };
        let earlier = claim(2, Some("earlier-uid"));
        let mut taken_over = claim(3, None);
        taken_over.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Backup".into(),
            name: "nightly".into(),
            uid: "backup-uid".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        let claims = [
            other_instance,
            other_namespace,
            deleting(None),
            deleting(Some("set-uid")),
            earlier,
            taken_over,
        ];

        assert_eq!(scaled_down_claims(&ftp(&storage("Delete")), &claims), []);
        assert_eq!(
            scaled_down_claims(&ftp(&storage("Retain")), &claims),
            [(
                "data-files-2".into(),
                ClaimOwnership::Release("earlier-uid".into())
            )]
        );
        let no_template = ftp("users: {secretName: u}\nreplicas: 1\nstorage: {emptyDir: {}}");
        assert_eq!(scaled_down_claims(&no_template, &claims), []);
    }
}
