//! The node's network namespace, its link to the host and the host's
//! route to the load-balancer pool (see [`crate::layout`]).

use anyhow::{Context, Result};

use crate::command::{run, sh};
use crate::layout::*;

/// Creates the namespace and wires it to the host. Fails if it exists:
/// [`crate::cleanup`] removes leftovers first.
pub fn create() -> Result<()> {
    sh(&format!("ip netns add {NODE_NAME}"))?;
    let steps = [
        format!("ip link add {HOST_LINK} type veth peer name {NODE_LINK} netns {NODE_NAME}"),
        format!("ip addr add {HOST_ADDRESS}/{LINK_PREFIX_LEN} dev {HOST_LINK}"),
        format!("ip link set {HOST_LINK} up"),
        format!("ip -n {NODE_NAME} addr add {NODE_ADDRESS}/{LINK_PREFIX_LEN} dev {NODE_LINK}"),
        format!("ip -n {NODE_NAME} link set {NODE_LINK} up"),
        format!("ip -n {NODE_NAME} link set lo up"),
        format!("ip -n {NODE_NAME} route add default via {HOST_ADDRESS}"),
        // What MetalLB's BGP mode or a cloud does: the pool leads to the node.
        format!("ip route replace {LOAD_BALANCER_POOL} via {NODE_ADDRESS}"),
    ];
    for step in &steps {
        sh(step).context("wiring the node's network")?;
    }
    // The node forwards between pods, Services and the host, and bridged
    // pod traffic must pass kube-proxy's iptables rules (hairpin, Services).
    run(
        "ip",
        [
            "netns",
            "exec",
            NODE_NAME,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.bridge.bridge-nf-call-iptables=1",
            "net.bridge.bridge-nf-call-ip6tables=1",
        ],
    )
    .context("setting the node's sysctls")?;
    Ok(())
}

/// Whether the namespace exists.
pub fn exists() -> bool {
    netns_path().exists()
}

/// Removes the namespace; its veth pair, bridge, iptables rules and the
/// host's routes through it go with it.
pub fn delete() -> Result<()> {
    if exists() {
        sh(&format!("ip netns del {NODE_NAME}"))?;
    }
    Ok(())
}
