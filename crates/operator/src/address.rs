//! Which address each replica advertises in PASV replies.

use k8s_openapi::api::core::v1::{Node, Service};

/// The address clients reach a Service at, as the cluster published it:
/// a load balancer's ingress IP or hostname, or a ClusterIP. None for a
/// NodePort Service (the node decides) and while a load balancer is
/// still being provisioned.
pub fn published(service: &Service) -> Option<String> {
    let spec = service.spec.as_ref()?;
    match spec.type_.as_deref() {
        Some("LoadBalancer") => {
            let ingress = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?;
            ingress.iter().find_map(|entry| {
                let ip = entry.ip.clone().filter(|ip| is_ipv4(ip));
                ip.or_else(|| entry.hostname.clone())
                    .filter(|address| !address.is_empty())
            })
        }
        Some("ClusterIP") | None => spec
            .cluster_ip
            .clone()
            .filter(|ip| is_ipv4(ip) && ip != "None"),
        _ => None,
    }
}

/// The address a NodePort is reached at on `node`: its external IP if it
/// has one, else its internal IP.
pub fn node_address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    let of_type = |wanted: &str| {
        addresses
            .iter()
            .find(|a| a.type_ == wanted && is_ipv4(&a.address))
            .map(|a| a.address.clone())
    };
    of_type("ExternalIP").or_else(|| of_type("InternalIP"))
}

/// PASV replies carry IPv4 only.
fn is_ipv4(address: &str) -> bool {
    address.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn load_balancer_ingress_ip_or_hostname() {
        let pending = service("spec: {type: LoadBalancer, clusterIP: 10.0.0.5}");
        assert_eq!(published(&pending), None);
        let ip = service(
            "spec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 203.0.113.7}]}}",
        );
        assert_eq!(published(&ip).as_deref(), Some("203.0.113.7"));
        let name = service(
            "spec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{hostname: lb.example.com}]}}",
        );
        assert_eq!(published(&name).as_deref(), Some("lb.example.com"));
        let v6_first = service(
            "spec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: '2001:db8::1'}, {ip: 203.0.113.8}]}}",
        );
        assert_eq!(published(&v6_first).as_deref(), Some("203.0.113.8"));
    }

    #[test]
    fn cluster_ip_and_node_port() {
        let cluster = service("spec: {type: ClusterIP, clusterIP: 10.0.0.9}");
        assert_eq!(published(&cluster).as_deref(), Some("10.0.0.9"));
        let node_port = service("spec: {type: NodePort, clusterIP: 10.0.0.9}");
        assert_eq!(published(&node_port), None);
    }

    #[test]
    fn node_prefers_external_ip() {
        let node: Node = serde_yaml::from_str(
            "status: {addresses: [{type: InternalIP, address: 192.168.1.4}, {type: ExternalIP, address: 198.51.100.4}]}",
        )
        .unwrap();
        assert_eq!(node_address(&node).as_deref(), Some("198.51.100.4"));
        let internal: Node = serde_yaml::from_str(
            "status: {addresses: [{type: Hostname, address: n1}, {type: InternalIP, address: 192.168.1.4}]}",
        )
        .unwrap();
        assert_eq!(node_address(&internal).as_deref(), Some("192.168.1.4"));
    }
}
