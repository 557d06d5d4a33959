//! The load-balancer stand-in: what MetalLB or a cloud controller does for
//! LoadBalancer Services, for this one-node cluster.
//!
//! Each LoadBalancer Service without a `loadBalancerClass` gets an address
//! from the pool in `status.loadBalancer.ingress`. The host routes the
//! pool to the node, where kube-proxy delivers the traffic (see
//! [`crate::layout`]). A Service asks for a particular address, or moves
//! to one, with MetalLB's annotation, so tests written for a kind cluster
//! with MetalLB run here unchanged:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     metallb.io/loadBalancerIPs: 10.203.0.250
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};

/// The annotation a Service names its wanted address(es) with.
pub const REQUESTED_ADDRESSES: &str = "metallb.io/loadBalancerIPs";
const MANAGER: &str = "kubeftp-cluster-load-balancer";

/// The addresses handed out: any address of `network` may be requested,
/// and `first..=last` are given to Services that request none.
#[derive(Debug, Clone)]
pub struct Pool {
    pub network: Ipv4Net,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not an IPv4 address in the pool {1}")]
    NotInPool(String, Ipv4Net),
    #[error("{0} is in use by Service {1}")]
    InUse(Ipv4Addr, String),
    #[error("the pool has no free address left")]
    Exhausted,
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Context {
    client: kube::Client,
    pool: Pool,
    store: Store<Service>,
    recorder: Recorder,
    /// Addresses given out, by Service: the store learns of a new status
    /// only after a moment, and two Services must not get one address.
    assigned: Mutex<HashMap<ObjectRef<Service>, Ipv4Addr>>,
}

/// Runs until the watch ends (the process is stopped).
pub async fn run(client: kube::Client, pool: Pool) {
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    // One at a time: choosing a free address must not race.
    .with_config(controller::Config::default().concurrency(1));
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: None,
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        pool,
        store: controller.store(),
        assigned: Mutex::default(),
    });
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::warn!("load balancer: {error}");
            }
        })
        .await;
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*service);
    let current = current_address(&service);
    if !is_ours(&service) {
        ctx.assigned().remove(&key);
        // A Service that stopped being a LoadBalancer gives its address back.
        if current.is_some_and(|ip| ctx.pool.network.contains(&ip)) {
            publish(&ctx, &service, None).await?;
        }
        return Ok(Action::await_change());
    }
    let taken = ctx.taken_by_others(&key);
    let chosen = match choose(&service, current, &taken, &ctx.pool) {
        Ok(chosen) => chosen,
        Err(error) => {
            let event = Event {
                type_: EventType::Warning,
                reason: "AllocationFailed".into(),
                note: Some(error.to_string()),
                action: "Allocate".into(),
                secondary: None,
            };
            let _ = ctx.recorder.publish(&event, &service.object_ref(&())).await;
            return Err(error);
        }
    };
    ctx.assigned().insert(key, chosen);
    if current != Some(chosen) {
        publish(&ctx, &service, Some(chosen)).await?;
        tracing::info!(service = %service.name_any(), address = %chosen, "assigned");
        let event = Event {
            type_: EventType::Normal,
            reason: "IPAllocated".into(),
            note: Some(format!("Assigned IP {chosen}")),
            action: "Allocate".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&event, &service.object_ref(&())).await;
    }
    Ok(Action::await_change())
}

fn error_policy(_service: Arc<Service>, _error: &Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(5))
}

impl Context {
    fn assigned(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Service>, Ipv4Addr>> {
        self.assigned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Addresses held by other Services that still exist, by holder.
    fn taken_by_others(&self, key: &ObjectRef<Service>) -> BTreeMap<Ipv4Addr, String> {
        let services = self.store.state();
        let existing: HashSet<ObjectRef<Service>> =
            services.iter().map(|s| ObjectRef::from_obj(&**s)).collect();
        let mut assigned = self.assigned();
        assigned.retain(|holder, _| existing.contains(holder));
        let mut taken: BTreeMap<Ipv4Addr, String> = assigned
            .iter()
            .filter(|(holder, _)| *holder != key)
            .map(|(holder, ip)| (*ip, holder.to_string()))
            .collect();
        for service in services.iter().filter(|s| is_ours(s)) {
            let holder = ObjectRef::from_obj(&**service);
            if &holder != key
                && let Some(ip) = current_address(service)
            {
                taken.entry(ip).or_insert_with(|| holder.to_string());
            }
        }
        taken
    }
}

/// Services this stand-in serves: LoadBalancers of no particular class.
fn is_ours(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.is_none()
    })
}

/// The IPv4 address in the Service's status, if any.
fn current_address(service: &Service) -> Option<Ipv4Addr> {
    let ingress = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?;
    ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok())
}

/// The address a Service should have: the one it asks for, else the one it
/// has, else the lowest free one.
fn choose(
    service: &Service,
    current: Option<Ipv4Addr>,
    taken: &BTreeMap<Ipv4Addr, String>,
    pool: &Pool,
) -> Result<Ipv4Addr, Error> {
    let check_free = |ip: Ipv4Addr| match taken.get(&ip) {
        Some(holder) => Err(Error::InUse(ip, holder.clone())),
        None => Ok(ip),
    };
    if let Some(requested) = requested(service) {
        let ip = requested
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|ip| pool.network.contains(ip))
            .ok_or_else(|| Error::NotInPool(requested.clone(), pool.network))?;
        return check_free(ip);
    }
    if let Some(ip) = current.filter(|ip| pool.network.contains(ip) && !taken.contains_key(ip)) {
        return Ok(ip);
    }
    let (first, last) = (u32::from(pool.first), u32::from(pool.last));
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !taken.contains_key(ip))
        .ok_or(Error::Exhausted)
}

/// The first IPv4 address the Service asks for, by annotation (MetalLB's
/// comma-separated list) or by the older `spec.loadBalancerIP`.
fn requested(service: &Service) -> Option<String> {
    let annotated = service.annotations().get(REQUESTED_ADDRESSES).map(|list| {
        let all: Vec<&str> = list.split(',').map(str::trim).collect();
        // A dual-stack list names an address per family; the pool is IPv4.
        let ipv4 = all.iter().find(|a| !a.contains(':')).or(all.first());
        ipv4.copied().unwrap_or_default().to_owned()
    });
    let from_spec = service
        .spec
        .as_ref()
        .and_then(|spec| spec.load_balancer_ip.clone());
    annotated.or(from_spec).filter(|a| !a.is_empty())
}

async fn publish(ctx: &Context, service: &Service, ip: Option<Ipv4Addr>) -> Result<(), Error> {
    let ingress = match ip {
        Some(ip) => serde_json::json!([{ "ip": ip.to_string(), "ipMode": "VIP" }]),
        None => serde_json::json!([]),
    };
    let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } });
    let namespace = service.namespace().unwrap_or_default();
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &service.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool {
            network: "10.203.0.0/24".parse().unwrap(),
            first: Ipv4Addr::new(10, 203, 0, 10),
            last: Ipv4Addr::new(10, 203, 0, 12),
        }
    }

    fn service(extra: &str) -> Service {
        let mut value: serde_json::Value =
            serde_yaml::from_str("metadata: {name: s, namespace: n}\nspec: {type: LoadBalancer}")
                .unwrap();
        if !extra.is_empty() {
            merge(&mut value, serde_yaml::from_str(extra).unwrap());
        }
        serde_json::from_value(value).unwrap()
    }

    fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
            for (key, value) in extra {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() => merge(existing, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
    }

    fn taken(ips: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, String> {
        ips.iter().map(|ip| (*ip, "other/svc".to_owned())).collect()
    }

    const A: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 11);
    const C: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 12);

    #[test]
    fn gives_the_lowest_free_address() {
        let s = service("");
        assert_eq!(choose(&s, None, &taken(&[]), &pool()).unwrap(), A);
        assert_eq!(choose(&s, None, &taken(&[A]), &pool()).unwrap(), B);
        assert!(matches!(
            choose(&s, None, &taken(&[A, B, C]), &pool()),
            Err(Error::Exhausted)
        ));
    }

    #[test]
    fn keeps_the_address_it_has() {
        let s = service("");
        assert_eq!(choose(&s, Some(C), &taken(&[]), &pool()).unwrap(), C);
        // Unless another Service holds it (it was handed out twice).
        assert_eq!(choose(&s, Some(C), &taken(&[C]), &pool()).unwrap(), A);
    }

    #[test]
    fn honours_the_metallb_annotation_anywhere_in_the_network() {
        let s = service("metadata: {annotations: {metallb.io/loadBalancerIPs: 10.203.0.250}}");
        let wanted = Ipv4Addr::new(10, 203, 0, 250);
        assert_eq!(choose(&s, Some(A), &taken(&[]), &pool()).unwrap(), wanted);
        assert!(matches!(
            choose(&s, None, &taken(&[wanted]), &pool()),
            Err(Error::InUse(..))
        ));
        let outside = service("metadata: {annotations: {metallb.io/loadBalancerIPs: 192.0.2.1}}");
        let message = choose(&outside, None, &taken(&[]), &pool())
            .unwrap_err()
            .to_string();
        assert!(message.contains("192.0.2.1") && message.contains("10.203.0.0/24"));
    }

    #[test]
    fn honours_spec_load_balancer_ip() {
        let s = service("spec: {loadBalancerIP: 10.203.0.99}");
        let ip = choose(&s, None, &taken(&[]), &pool()).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 203, 0, 99));
    }

    #[test]
    fn serves_only_classless_load_balancers() {
        assert!(is_ours(&service("")));
        assert!(!is_ours(&service("spec: {type: ClusterIP}")));
        assert!(!is_ours(&service(
            "spec: {loadBalancerClass: example.com/lb}"
        )));
    }

    #[test]
    fn reads_the_current_address() {
        let s = service("status: {loadBalancer: {ingress: [{ip: 10.203.0.11}]}}");
        assert_eq!(current_address(&s), Some(B));
    }
}
