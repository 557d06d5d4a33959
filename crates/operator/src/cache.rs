//! Watch-backed caches of what a reconcile reads: the children (StatefulSets,
//! Services, ConfigMaps), the server pods and their claims. A reconcile reads memory, not
//! the apiserver, so its only requests are the writes it needs.
//!
//! Each cache is filled by the very watch that triggers reconciles (the
//! controller consumes the cache's stream), so a reconcile caused by a
//! change always finds that change in the cache. Reconciles wait until every
//! cache has had its first full list: before that, a missing child would
//! look like one to create.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// The caches every reconcile reads.
pub struct Caches {
    pub stateful_sets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub pods: Store<Pod>,
    /// The claims the StatefulSet made from a volumeClaimTemplate.
    pub claims: Store<PersistentVolumeClaim>,
    /// The writing halves, until the controller takes them to fill the
    /// caches from its watches.
    writers: Mutex<Option<Writers>>,
    ready: watch::Sender<bool>,
}

/// The writing halves of [`Caches`].
pub struct Writers {
    pub stateful_sets: Writer<StatefulSet>,
    pub services: Writer<Service>,
    pub config_maps: Writer<ConfigMap>,
    pub pods: Writer<Pod>,
    pub claims: Writer<PersistentVolumeClaim>,
}

impl Default for Caches {
    fn default() -> Caches {
        let (stateful_sets, stateful_sets_writer) = reflector::store();
        let (services, services_writer) = reflector::store();
        let (config_maps, config_maps_writer) = reflector::store();
        let (pods, pods_writer) = reflector::store();
        let (claims, claims_writer) = reflector::store();
        Caches {
            stateful_sets,
            services,
            config_maps,
            pods,
            claims,
            writers: Mutex::new(Some(Writers {
                stateful_sets: stateful_sets_writer,
                services: services_writer,
                config_maps: config_maps_writer,
                pods: pods_writer,
                claims: claims_writer,
            })),
            ready: watch::Sender::new(false),
        }
    }
}

impl Caches {
    /// The writing halves; `None` after the first call.
    pub fn take_writers(&self) -> Option<Writers> {
        self.writers.lock().unwrap().take()
    }

    /// Waits until every cache has had its first full list (at once
    /// afterwards).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Marks the caches ready once every store is filled. Runs
    /// alongside the controller, which fills them.
    pub async fn mark_ready_when_filled(&self) {
        let filled = wait_filled(&self.stateful_sets).await
            && wait_filled(&self.services).await
            && wait_filled(&self.config_maps).await
            && wait_filled(&self.pods).await
            && wait_filled(&self.claims).await;
        if filled {
            tracing::info!("child caches filled");
            self.ready.send_replace(true);
        }
    }
}

/// A child kind with a cache.
pub trait Cached: Resource<DynamicType = ()> + Clone + Sized + 'static {
    fn store(caches: &Caches) -> &Store<Self>;
}

impl Cached for StatefulSet {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.stateful_sets
    }
}

impl Cached for Service {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.services
    }
}

impl Cached for ConfigMap {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.config_maps
    }
}

/// The cached object of `namespace` by name, if any.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|object| (*object).clone())
}

/// Waits for a store's first full list; false if its watch ended first.
/// A store wakes only one of its waiters when it fills (the controller's
/// runner may be another), so wait in short rounds rather than once.
pub async fn wait_filled<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_elapsed) => continue,
        }
    }
}

/// The watch of `api` that fills `writer`'s store, as a stream of changed
/// (and deleted) objects for the controller's triggers. Managed fields are
/// dropped before caching: the operator never reads them, and they are a
/// large part of each object.
pub fn filling<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects()
        .boxed()
}
