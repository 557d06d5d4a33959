//! `FtpServer.status`: what the operator observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types the operator sets.
pub mod condition {
    /// Every replica is ready and has an address to advertise.
    pub const READY: &str = "Ready";
    /// Every replica has an address (load balancer ingress, node, cluster
    /// IP or the spec's override).
    pub const ADDRESS_ASSIGNED: &str = "AddressAssigned";
    /// The StatefulSet is rolling out a change or scaling.
    pub const PROGRESSING: &str = "Progressing";
    /// The operator cannot bring the children to the desired state.
    pub const DEGRADED: &str = "Degraded";
}

/// Observed state of an FtpServer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FtpServerStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, AddressAssigned, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Pods that exist.
    #[serde(default)]
    pub replicas: i32,

    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// One endpoint per replica: where clients connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,

    /// The replicas' addresses in ordinal order, comma-separated, with
    /// `<pending>` for those not known yet: a summary for `kubectl get`;
    /// endpoints has the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,

    /// Control port and passive range, e.g. `21,30000-30009`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
}

/// Where one replica is reached.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The replica's pod.
    pub pod: String,
    /// The replica's Service.
    pub service: String,
    /// The address advertised in PASV replies and to connect to; unset
    /// until known (e.g. the load balancer is still being provisioned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Control port.
    pub control_port: i32,
    /// Passive ports, `min-max`.
    pub passive_ports: String,
    /// `ftp://address:port/`, once the address is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
