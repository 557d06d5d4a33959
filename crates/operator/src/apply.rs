//! Server-side apply of children, with one field manager, skipped when the
//! live object already matches: a steady state sends no writes at all.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cache::{Cached, Caches, cached};
use crate::error::{Error, owner_references_hint};
use crate::metrics::Metrics;
use crate::quantity;

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "kubeftp-operator";
/// Digest of the last applied object. Comparing it catches fields the
/// operator stopped setting (which a live-contains-desired check cannot
/// see); the content check catches edits by others.
pub const APPLIED_HASH: &str = "kubeftp.dev/applied-hash";

/// Applies and deletes children in one namespace, counting each write.
/// What is live is read from the caches.
pub struct Applier<'a> {
    pub client: &'a kube::Client,
    pub namespace: &'a str,
    pub metrics: &'a Metrics,
    pub caches: &'a Caches,
}

impl Applier<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Makes the live object match `desired` and returns it as stored.
    pub async fn apply<K>(&self, mut desired: K) -> Result<K, Error>
    where
        K: Cached<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    {
        let kind = K::kind(&());
        let name = desired.name_any();
        let hash = digest(&desired);
        desired
            .annotations_mut()
            .insert(APPLIED_HASH.into(), hash.clone());

        // `adopting`: ours, but without this FtpServer's reference, as an
        // FtpServer deleted with `--cascade=orphan` leaves its children.
        let (ours, adopting) = match cached(K::store(self.caches), self.namespace, &name) {
            Some(live) if up_to_date(&desired, &live) => return Ok(live),
            Some(live) => (true, controller_uid(&live) != controller_uid(&desired)),
            // Not among the operator's children (the caches hold only
            // those): an object of that name may still exist, made by
            // someone else. Applying would take it over.
            None => {
                self.check_not_taken(&desired, &kind, &name).await?;
                (false, false)
            }
        };
        tracing::info!(%kind, %name, "applying");
        self.metrics.wrote(&kind, "apply");
        let api = self.api::<K>();
        let apply = PatchParams::apply(MANAGER).force();
        // Adopting sets the FtpServer's owner reference, which clusters
        // enforcing OwnerReferencesPermissionEnforcement allow only to those
        // who may delete the object: a refusal says so.
        let failed = |action: &str| {
            let action = format!("{action} {kind} {name}");
            let adopting_what = format!("adopting {kind} {name}");
            move |error: kube::Error| {
                let hint = owner_references_hint(&error, &K::plural(&()));
                match hint.filter(|_| adopting) {
                    Some(hint) => Error::kube(format!("{adopting_what}; {hint}"))(error),
                    None => Error::kube(action)(error),
                }
            }
        };
        match api.patch(&name, &apply, &Patch::Apply(&desired)).await {
            // Server-side apply merges lists by key: an item someone edited
            // (a Service port given another number) stays beside the one
            // put back, and the two clash (a duplicate port name). A merge
            // patch replaces the lists outright; the apply then takes its
            // fields back.
            Err(kube::Error::Api(status)) if status.code == 422 && ours => {
                tracing::info!(%kind, %name, "apply refused; replacing its lists");
                self.metrics.wrote(&kind, "replace-lists");
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&desired))
                    .await
                    .map_err(failed("replacing the lists of"))?;
                api.patch(&name, &apply, &Patch::Apply(&desired)).await
            }
            applied => applied,
        }
        .map_err(failed("applying"))
    }

    /// Fails with [`Error::NameTaken`] if an object named `name` exists
    /// that `desired`'s controlling owner does not control.
    async fn check_not_taken<K>(&self, desired: &K, kind: &str, name: &str) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let live = self
            .api::<K>()
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        match live {
            Some(live) if controller_uid(&live) != controller_uid(desired) => {
                Err(Error::NameTaken {
                    kind: kind.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Deletes a child; gone already counts as done.
    pub async fn delete<K>(&self, name: &str) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let kind = K::kind(&());
        tracing::info!(%kind, %name, "deleting");
        self.metrics.wrote(&kind, "delete");
        match self.api::<K>().delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(Error::kube(format!("deleting {kind} {name}"))(error)),
        }
    }
}

/// The uid of the object's controlling owner, if it has one.
fn controller_uid<K: Resource>(object: &K) -> Option<&str> {
    let owners = object.meta().owner_references.as_deref()?;
    owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.as_str())
}

/// A digest of the object as the operator would apply it.
fn digest<K: Serialize>(object: &K) -> String {
    let json = serde_json::to_vec(object).expect("objects serialize");
    let hash = Sha256::digest(&json);
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn up_to_date<K: Serialize + Resource>(desired: &K, live: &K) -> bool {
    let hash = desired
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH));
    let live_hash = live
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH));
    hash == live_hash
        && contains(
            &serde_json::to_value(live).expect("objects serialize"),
            &serde_json::to_value(desired).expect("objects serialize"),
        )
}

/// Whether `live` holds every field of `desired` with the same value.
/// Fields only in `live` (defaults, status, others' fields) do not matter,
/// nor do list items only in `live`: every item of a desired list must be
/// in the live list, in order, but others may add theirs. An apply could
/// not remove those (server-side apply removes only what this manager
/// set), so counting them would send the same apply on every reconcile;
/// items this operator set and no longer wants change the digest
/// ([`APPLIED_HASH`]), which sends the apply that removes them.
/// Quantities (resource requests and limits, size limits) match by value:
/// the apiserver stores `1000m` as `1` and `1024Mi` as `1Gi`.
pub fn contains(live: &Value, desired: &Value) -> bool {
    contains_in(live, desired, Place::Other)
}

/// Where a value sits, as far as quantities go.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// The value of a `limits`, `requests` or `capacity` map: every entry
    /// is a quantity (cpu, memory, storage, hugepages-2Mi ...).
    QuantityMap,
    /// A quantity itself.
    Quantity,
    Other,
}

fn place_of(key: &str) -> Place {
    match key {
        "limits" | "requests" | "capacity" => Place::QuantityMap,
        "sizeLimit" => Place::Quantity,
        _ => Place::Other,
    }
}

fn contains_in(live: &Value, desired: &Value, place: Place) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired.iter().all(|(key, value)| {
            let inner = if place == Place::QuantityMap {
                Place::Quantity
            } else {
                place_of(key)
            };
            match live.get(key) {
                Some(live) => contains_in(live, value, inner),
                None => is_empty(value),
            }
        }),
        (Value::Array(live), Value::Array(desired)) => {
            let mut live = live.iter();
            desired
                .iter()
                .all(|d| live.any(|l| contains_in(l, d, Place::Other)))
        }
        (Value::String(live), Value::String(desired)) if place == Place::Quantity => {
            quantity::same(live, desired)
        }
        (live, desired) => live == desired || (live.is_null() && is_empty(desired)),
    }
}

/// Values the apiserver stores as absent.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_extra_fields_do_not_count_as_drift() {
        let live = json!({
            "spec": {"ports": [{"port": 21, "nodePort": 31234, "protocol": "TCP"}],
                     "clusterIP": "10.0.0.4"},
            "status": {"loadBalancer": {}}
        });
        let desired = json!({"spec": {"ports": [{"port": 21, "protocol": "TCP"}], "selector": {}}});
        assert!(contains(&live, &desired));
    }

    #[test]
    fn changed_missing_or_reordered_list_items_are_drift() {
        let desired = json!({"spec": {"ports": [{"port": 21}, {"port": 30000}]}});
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 21}, {"port": 30001}]}}),
            &desired
        ));
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 21}]}}),
            &desired
        ));
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 30000}, {"port": 21}]}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {}}), &desired));
        assert!(!contains(
            &json!({"data": {"a": "1"}}),
            &json!({"data": {"a": "2"}})
        ));
    }

    /// Items another manager added stay whatever the operator applies, so
    /// they are no drift: otherwise every reconcile would apply again.
    #[test]
    fn list_items_others_added_are_no_drift() {
        let desired = json!({"spec": {"ports": [{"port": 21}, {"port": 30000}]}});
        assert!(contains(
            &json!({"spec": {"ports": [{"port": 21}, {"port": 30000}, {"port": 30099}]}}),
            &desired
        ));
        assert!(contains(
            &json!({"spec": {"ports": [{"port": 21}, {"port": 9}, {"port": 30000}]}}),
            &desired
        ));
    }

    #[test]
    fn stored_quantities_in_canonical_form_are_no_drift() {
        let desired = json!({"spec": {"template": {"spec": {
            "containers": [{"resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"},
                                          "requests": {"cpu": "0.5", "memory": "0.5Gi"}}}],
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "2048Mi"}}]
        }}}});
        let live = json!({"spec": {"template": {"spec": {
            "containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                          "requests": {"cpu": "500m", "memory": "512Mi"}}}],
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "2Gi"}}]
        }}}});
        assert!(contains(&live, &desired));
        let edited = json!({"spec": {"template": {"spec": {
            "containers": [{"resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                                          "requests": {"cpu": "500m", "memory": "512Mi"}}}],
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "2Gi"}}]
        }}}});
        assert!(!contains(&edited, &desired));
        // Elsewhere the same text means the same value only.
        assert!(!contains(
            &json!({"metadata": {"labels": {"size": "1"}}}),
            &json!({"metadata": {"labels": {"size": "1000m"}}})
        ));
    }

    #[test]
    fn digest_changes_with_content() {
        let a = k8s_openapi::api::core::v1::ConfigMap::default();
        let mut b = a.clone();
        b.data = Some([("k".to_owned(), "v".to_owned())].into());
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&b));
    }
}
