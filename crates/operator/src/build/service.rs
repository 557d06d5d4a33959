//! One Service per replica: the control port and every passive port, to
//! that replica's pod only.
//!
//! Why not one Service for all replicas: a client's data connection must
//! reach the pod that answered its PASV, but kube-proxy balances each port
//! on its own (session affinity is per port), so with several pods behind
//! one Service data connections would land on the wrong pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubeftp_api::limits::{CONTAINER_CONTROL_PORT, CONTAINER_IMPLICIT_TLS_PORT};
use kubeftp_api::{FtpServer, ServiceType, TrafficPolicy};

use super::child_meta;
use crate::labels;

pub fn replica_service(ftp: &FtpServer, ordinal: i32) -> Service {
    let spec = &ftp.spec.service;
    let node_ports = spec.type_ == ServiceType::NodePort;
    let port = |name: String, port: i32, target: i32| ServicePort {
        name: Some(name),
        port,
        target_port: Some(IntOrString::Int(target)),
        // Clients are told these very numbers, so on a node they must be
        // the node ports too.
        node_port: node_ports.then_some(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let control = port("ftp".into(), spec.control_port, CONTAINER_CONTROL_PORT);
    let implicit_tls = ftp
        .spec
        .tls
        .as_ref()
        .and_then(|tls| tls.implicit_port)
        .map(|implicit| port("ftps".into(), implicit, CONTAINER_IMPLICIT_TLS_PORT));
    let passive = ftp
        .spec
        .passive
        .port_range
        .ports()
        .map(|p| port(format!("pasv-{p}"), p, p));

    let mut selector = labels::selector(ftp);
    selector.insert(labels::POD_NAME.into(), labels::pod(ftp, ordinal));
    let mut metadata = child_meta(ftp, labels::service(ftp, ordinal));
    metadata
        .labels
        .get_or_insert_default()
        .insert(labels::REPLICA.into(), ordinal.to_string());
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }

    let load_balancer = spec.type_ == ServiceType::LoadBalancer;
    let external = load_balancer || node_ports;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(service_type(spec.type_).into()),
            selector: Some(selector),
            ports: Some(
                std::iter::once(control)
                    .chain(implicit_tls)
                    .chain(passive)
                    .collect(),
            ),
            external_traffic_policy: external.then(|| {
                match spec.external_traffic_policy {
                    TrafficPolicy::Local => "Local",
                    TrafficPolicy::Cluster => "Cluster",
                }
                .into()
            }),
            load_balancer_class: spec.load_balancer_class.clone().filter(|_| load_balancer),
            load_balancer_source_ranges: (load_balancer
                && !spec.load_balancer_source_ranges.is_empty())
            .then(|| spec.load_balancer_source_ranges.clone()),
            allocate_load_balancer_node_ports: spec
                .allocate_load_balancer_node_ports
                .filter(|_| load_balancer),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service_type(type_: ServiceType) -> &'static str {
    match type_ {
        ServiceType::LoadBalancer => "LoadBalancer",
        ServiceType::NodePort => "NodePort",
        ServiceType::ClusterIP => "ClusterIP",
    }
}

/// The replica ordinal a Service we made serves, from its label.
pub fn ordinal_of(service: &Service) -> Option<i32> {
    let labels: &BTreeMap<String, String> = service.metadata.labels.as_ref()?;
    labels.get(labels::REPLICA)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::ftp;

    fn ports(service: &Service) -> Vec<(String, i32, i32, Option<i32>)> {
        service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| {
                let Some(IntOrString::Int(target)) = p.target_port else {
                    panic!("numeric target port")
                };
                (p.name.clone().unwrap(), p.port, target, p.node_port)
            })
            .collect()
    }

    #[test]
    fn load_balancer_exposes_control_and_exactly_the_passive_range_of_one_pod() {
        let ftp = ftp("
replicas: 2
users: {secretName: u}
storage: {emptyDir: {}}
passive: {portRange: {min: 30000, max: 30002}}
service:
  annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
  loadBalancerClass: example.com/lb
  loadBalancerSourceRanges: [203.0.113.0/24]
  allocateLoadBalancerNodePorts: false
");
        let service = replica_service(&ftp, 1);
        assert_eq!(service.metadata.name.as_deref(), Some("files-1"));
        assert_eq!(ordinal_of(&service), Some(1));
        assert_eq!(
            service.metadata.annotations.as_ref().unwrap()["service.beta.kubernetes.io/aws-load-balancer-type"],
            "nlb"
        );
        assert_eq!(
            ports(&service),
            [
                ("ftp".to_owned(), 21, 2121, None),
                ("pasv-30000".to_owned(), 30000, 30000, None),
                ("pasv-30001".to_owned(), 30001, 30001, None),
                ("pasv-30002".to_owned(), 30002, 30002, None),
            ]
        );
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(spec.load_balancer_class.as_deref(), Some("example.com/lb"));
        assert_eq!(
            spec.load_balancer_source_ranges,
            Some(vec!["203.0.113.0/24".to_owned()])
        );
        assert_eq!(spec.allocate_load_balancer_node_ports, Some(false));
        let selector = spec.selector.unwrap();
        assert_eq!(selector["statefulset.kubernetes.io/pod-name"], "files-1");
        assert_eq!(selector["app.kubernetes.io/instance"], "files");
    }

    #[test]
    fn node_ports_equal_the_ports_clients_are_told() {
        let ftp = ftp("
users: {secretName: u}
storage: {emptyDir: {}}
passive: {portRange: {min: 31000, max: 31001}}
service: {type: NodePort, controlPort: 30021, externalTrafficPolicy: Cluster}
");
        let service = replica_service(&ftp, 0);
        assert_eq!(
            ports(&service),
            [
                ("ftp".to_owned(), 30021, 2121, Some(30021)),
                ("pasv-31000".to_owned(), 31000, 31000, Some(31000)),
                ("pasv-31001".to_owned(), 31001, 31001, Some(31001)),
            ]
        );
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    }

    #[test]
    fn cluster_ip_has_no_external_settings() {
        let ftp =
            ftp("users: {secretName: u}\nstorage: {emptyDir: {}}\nservice: {type: ClusterIP}");
        let spec = replica_service(&ftp, 0).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.load_balancer_class, None);
        assert_eq!(spec.allocate_load_balancer_node_ports, None);
        assert!(spec.ports.unwrap().iter().all(|p| p.node_port.is_none()));
    }

    #[test]
    fn implicit_ftps_port_follows_the_control_port() {
        let secure = ftp("
users: {secretName: u}
storage: {emptyDir: {}}
passive: {portRange: {min: 30000, max: 30001}}
tls: {secretName: cert, implicitPort: 990}
");
        assert_eq!(
            ports(&replica_service(&secure, 0)),
            [
                ("ftp".to_owned(), 21, 2121, None),
                ("ftps".to_owned(), 990, 9990, None),
                ("pasv-30000".to_owned(), 30000, 30000, None),
                ("pasv-30001".to_owned(), 30001, 30001, None),
            ]
        );
        let node_port = ftp("
users: {secretName: u}
storage: {emptyDir: {}}
passive: {portRange: {min: 31000, max: 31000}}
service: {type: NodePort, controlPort: 30021}
tls: {secretName: cert, implicitPort: 30990}
");
        assert_eq!(
            ports(&replica_service(&node_port, 0))[1],
            ("ftps".to_owned(), 30990, 9990, Some(30990))
        );
    }
}
