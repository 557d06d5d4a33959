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

use crate::error::Error;
use crate::metrics::Metrics;

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "kubeftp-operator";
/// Digest of the last applied object. Comparing it catches fields the
/// operator stopped setting (which a live-contains-desired check cannot
/// see); the content check catches edits by others.
pub const APPLIED_HASH: &str = "kubeftp.dev/applied-hash";

/// Applies and deletes children in one namespace, counting each write.
pub struct Applier<'a> {
    pub client: &'a kube::Client,
    pub namespace: &'a str,
    pub metrics: &'a Metrics,
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
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let kind = K::kind(&());
        let name = desired.name_any();
        let hash = digest(&desired);
        desired
            .annotations_mut()
            .insert(APPLIED_HASH.into(), hash.clone());

        let api = self.api::<K>();
        let live = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        if let Some(live) = live
            && up_to_date(&desired, &live)
        {
            return Ok(live);
        }
        tracing::info!(%kind, %name, "applying");
        self.metrics.wrote(&kind, "apply");
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(Error::kube(format!("applying {kind} {name}")))
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
/// Fields only in `live` (defaults, status, others' fields) do not matter;
/// lists must match element by element.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().all(|(key, value)| match live.get(key) {
                Some(live) => contains(live, value),
                None => is_empty(value),
            })
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| contains(l, d))
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
    fn changed_missing_or_extra_list_items_are_drift() {
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
            &json!({"spec": {"ports": [{"port": 21}, {"port": 30000}, {"port": 30002}]}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {}}), &desired));
        assert!(!contains(
            &json!({"data": {"a": "1"}}),
            &json!({"data": {"a": "2"}})
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
