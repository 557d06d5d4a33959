//! `FtpServer.spec`: what the user asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FtpServerStatus;
use crate::schema;

// CEL rules for values that end up in the StatefulSet and Services, so the
// apiserver refuses them at admission rather than when the operator applies
// its children (by then a load balancer may exist). The regular expressions
// are Kubernetes' own (k8s.io/apimachinery/pkg/util/validation); backslashes
// are doubled once for Rust and once for the CEL string.

/// A DNS subdomain (RFC 1123): names of Secrets, claims, StorageClasses.
/// The schema's maxLength 253 completes it.
const DNS_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A qualified name, `[prefix/]name`: label and annotation keys, load
/// balancer classes. The prefix's 253 characters are checked apart.
const QUALIFIED_NAME: &str = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value: at most 63 characters, possibly none.
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";
/// What the messages say of a qualified name.
const QUALIFIED_NAME_IS: &str = "an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// CEL: `name` is a qualified name.
fn qualified(name: &str) -> String {
    format!(
        "{name}.matches('{QUALIFIED_NAME}') && (!{name}.contains('/') || {name}.indexOf('/') <= 253)"
    )
}

/// `self` names an object of `kind`, as Kubernetes requires.
fn object_name(field: &str, kind: &str) -> Rule {
    Rule::new(format!("self.matches('{DNS_SUBDOMAIN}')")).message(
        format!("{field} must be a {kind} name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit").as_str(),
    )
}

/// Every key of the map `self` is a label key.
fn keys(field: &str, example: &str) -> Rule {
    Rule::new(format!("self.all(k, {})", qualified("k")))
        .message(format!("{field} keys must be like {example}: {QUALIFIED_NAME_IS}").as_str())
}

/// Every key of the map `self` is an annotation key: Kubernetes checks
/// them lowercased, so the prefix may have capitals.
fn annotation_keys(field: &str, example: &str) -> Rule {
    Rule::new(format!("self.all(k, {})", qualified("k.lowerAscii()")))
        .message(format!("{field} keys must be like {example}: {QUALIFIED_NAME_IS}").as_str())
}

/// Every value of the map `self` is a label value.
fn label_values(field: &str) -> Rule {
    Rule::new(format!("self.all(k, self[k].matches('{LABEL_VALUE}'))")).message(
        format!("{field} values must be label values: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, or empty").as_str(),
    )
}

/// `self`, one of a ResourceRequirements' limits or requests (int or
/// string), is a quantity and not negative (zero, "-0" too, is a valid
/// request). A rule of each value, not one over the maps: see
/// [`schema::resources`].
fn non_negative_quantity() -> Rule {
    Rule::new("isQuantity(string(self)) && !quantity(string(self)).isLessThan(quantity('0'))").message(
        "resources.limits and resources.requests must be quantities of at least zero, such as 500m or 256Mi",
    )
}

/// The request for `resource` in `self`, a ResourceRequirements, is not
/// above its limit: the apiserver would refuse the StatefulSet. One rule
/// per resource name, not one over every request: a 1.33 apiserver's cost
/// estimate allows no more. The operator's validate step checks every
/// resource.
fn request_within_limit(resource: &str) -> Rule {
    let request = format!("string(self.requests['{resource}'])");
    let limit = format!("string(self.limits['{resource}'])");
    Rule::new(format!(
        "!has(self.requests) || !has(self.limits) || !('{resource}' in self.requests) || !('{resource}' in self.limits) || !isQuantity({request}) || !isQuantity({limit}) || !quantity({request}).isGreaterThan(quantity({limit}))"
    ))
    .message(
        format!("resources.requests.{resource} must not exceed resources.limits.{resource}")
            .as_str(),
    )
}

/// The schema of `resources`: bounded maps whose every value is checked.
fn resources_schema(schema: &mut schemars::Schema) {
    schema::resources(schema, non_negative_quantity());
}

/// Each toleration of `self` is one a pod may have: a value only with
/// operator Equal, an empty key only with operator Exists, and
/// tolerationSeconds only with effect NoExecute.
fn tolerations_valid() -> Rule {
    Rule::new(
        "self.all(t, (!has(t.operator) || t.operator != 'Exists' || !has(t.value) || t.value == '') \
         && ((has(t.key) && t.key != '') || (has(t.operator) && t.operator == 'Exists')) \
         && (!has(t.tolerationSeconds) || (has(t.effect) && t.effect == 'NoExecute')))",
    )
    .message(
        "tolerations: operator Exists takes no value, an empty key needs operator Exists, and tolerationSeconds needs effect NoExecute",
    )
}

/// `self`, a quantity (int or string), parses and is above zero.
fn positive_quantity(field: &str) -> Rule {
    Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))")
        .message(format!("{field} must be a quantity above zero, such as 10Gi or 500M").as_str())
}

/// An FTP server reachable from outside the cluster, passive mode included.
/// Each replica is its own endpoint: a pod and a Service of its own that
/// exposes the control port and exactly the passive port range.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubeftp.dev",
    version = "v1alpha1",
    kind = "FtpServer",
    plural = "ftpservers",
    shortname = "ftp",
    namespaced,
    status = "FtpServerStatus",
    derive = "PartialEq",
    doc = "An FTP server with working passive mode behind a load balancer, NodePort or ClusterIP Service. Each replica is a separate endpoint with its own Service.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every replica is ready and has an address"
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".status.addresses",
        description = "The address each replica advertises"
    ),
    printcolumn(
        name = "Ports",
        type_ = "string",
        json_path = ".status.ports",
        description = "Control port and passive range"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired replicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 45")
        .message("metadata.name must be at most 45 characters of lowercase letters, digits and '-', starting with a letter: it names each replica's Service (a DNS label) and pods")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(self.service.controlPort >= self.passive.portRange.min && self.service.controlPort <= self.passive.portRange.max)")
        .message("service.controlPort must lie outside passive.portRange: both are exposed on the same Service"),
    validation = Rule::new("self.service.type != 'NodePort' || (self.service.controlPort >= 30000 && self.service.controlPort <= 32767 && self.passive.portRange.min >= 30000 && self.passive.portRange.max <= 32767)")
        .message("with service.type NodePort, service.controlPort and passive.portRange must lie within 30000-32767: clients connect to the node on these very port numbers"),
    validation = Rule::new("self.service.type != 'NodePort' || self.replicas <= 1")
        .message("service.type NodePort supports at most 1 replica: node ports are unique in the cluster and each replica needs the same port numbers; use LoadBalancer for more replicas"),
    validation = Rule::new("has(self.users) || self.anonymous.enabled")
        .message("set users (a Secret holding the users file) or anonymous.enabled, otherwise nobody can log in"),
    validation = Rule::new("!has(self.tls) || !has(self.tls.implicitPort) || (self.tls.implicitPort != self.service.controlPort && !(self.tls.implicitPort >= self.passive.portRange.min && self.tls.implicitPort <= self.passive.portRange.max))")
        .message("tls.implicitPort must differ from service.controlPort and lie outside passive.portRange: all are exposed on the same Service"),
    validation = Rule::new("self.service.type != 'NodePort' || !has(self.tls) || !has(self.tls.implicitPort) || (self.tls.implicitPort >= 30000 && self.tls.implicitPort <= 32767)")
        .message("with service.type NodePort, tls.implicitPort must lie within 30000-32767: clients connect to the node on this very port number"),
    validation = Rule::new("!has(self.tls) || !has(self.tls.implicitPort) || !(self.passive.portRange.min <= 9990 && 9990 <= self.passive.portRange.max)")
        .message("with tls.implicitPort set, passive.portRange must not include 9990: the pod's implicit FTPS listener uses it"),
    validation = Rule::new("!has(self.tls) || !has(self.tls.implicitPort) || self.passive.portRange.max - self.passive.portRange.min < 48")
        .message("with tls.implicitPort set, passive.portRange may hold at most 48 ports: each port is a load balancer listener, and AWS NLB allows 50 per load balancer including the control and implicit FTPS ports"),
    validation = Rule::new("!has(self.passive.advertisedAddress) || self.replicas <= 1")
        .message("passive.advertisedAddress works with at most 1 replica: every replica would advertise it, so data connections for the others would reach the wrong pod; unset it to advertise each replica's own Service address, or make one FtpServer per address")
)]
pub struct FtpServerSpec {
    /// Number of FTP server pods. Each replica is a separate endpoint with
    /// its own Service and address: FTP data connections must reach the pod
    /// that answered PASV, which one Service over several pods cannot ensure.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// How each replica is exposed.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Passive-mode data connections.
    #[serde(default)]
    pub passive: PassiveSpec,

    /// Allow active mode (PORT/EPRT), where the server connects back to the
    /// client. Off by default: it rarely works through NAT. When on, the
    /// server only connects to the client's own address, on ports >= 1024.
    #[serde(default)]
    pub active_mode: bool,

    /// The Secret holding the users file: TOML `[[user]]` tables with
    /// `name`, `password-hash` (argon2 or bcrypt; `kubeftp-server
    /// hash-password` makes one), `home` and `read-only`. Changes are
    /// picked up without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersSpec>,

    /// Anonymous (`anonymous` or `ftp`) logins, always read-only.
    #[serde(default)]
    pub anonymous: AnonymousSpec,

    /// Where the served files live. Exactly one source must be chosen;
    /// there is no implicit default, so data is never silently ephemeral.
    pub storage: StorageSpec,

    /// FTPS (explicit TLS, AUTH TLS; implicit on a port of its own if asked)
    /// with a certificate from a `kubernetes.io/tls` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Session limits; the server's defaults apply to unset fields.
    #[serde(default)]
    pub limits: LimitsSpec,

    /// When a pod is stopped (rollout, scale-down, node drain), how long
    /// running transfers may take to finish before the server closes them.
    /// The pod's terminationGracePeriodSeconds is this plus 10.
    #[serde(default = "default_shutdown_grace_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub shutdown_grace_seconds: i32,

    /// Container image of kubeftp-server; default: the operator's
    /// `--server-image`, which matches the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// CPU and memory requests and limits of the server container, at most
    /// 7 resources in each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = resources_schema)]
    #[x_kube(
        validation = request_within_limit("cpu"),
        validation = request_within_limit("memory"),
        validation = request_within_limit("ephemeral-storage")
    )]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the pods must match, at most 64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = schema::labels)]
    #[x_kube(
        validation = keys("nodeSelector", "disktype or example.com/zone"),
        validation = label_values("nodeSelector")
    )]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the pods, at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::tolerations, length(max = 64))]
    #[x_kube(validation = tolerations_valid())]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::affinity)]
    pub affinity: Option<Affinity>,

    /// Extra labels on the pods, at most 64. Labels the operator sets win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = schema::labels)]
    #[x_kube(
        validation = keys("podLabels", "team or example.com/tier"),
        validation = label_values("podLabels")
    )]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations on the pods, at most 128.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = schema::annotations)]
    #[x_kube(validation = annotation_keys("podAnnotations", "note or example.com/owner"))]
    pub pod_annotations: BTreeMap<String, String>,
}

fn default_replicas() -> i32 {
    1
}

fn default_shutdown_grace_seconds() -> i32 {
    crate::limits::DEFAULT_SHUTDOWN_GRACE_SECONDS
}

/// How each replica's Service exposes the server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'LoadBalancer' || (!has(self.loadBalancerClass) && (!has(self.loadBalancerSourceRanges) || size(self.loadBalancerSourceRanges) == 0) && !has(self.allocateLoadBalancerNodePorts))")
        .message("loadBalancerClass, loadBalancerSourceRanges and allocateLoadBalancerNodePorts apply only to service.type LoadBalancer"),
    validation = Rule::new("self.type != 'LoadBalancer' || oldSelf.type != 'LoadBalancer' || (has(self.loadBalancerClass) ? (has(oldSelf.loadBalancerClass) && self.loadBalancerClass == oldSelf.loadBalancerClass) : !has(oldSelf.loadBalancerClass))")
        .message("service.loadBalancerClass cannot be set, changed or removed on a LoadBalancer FtpServer: Kubernetes does not allow changing a Service's loadBalancerClass; create a new FtpServer with the class you want (its load balancers get new addresses)")
)]
pub struct ServiceSpec {
    /// Service type: LoadBalancer (default; the load balancer's address is
    /// advertised), NodePort (the node's address is advertised, or set
    /// passive.advertisedAddress) or ClusterIP (in-cluster clients only).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Port clients connect to for the control connection. With NodePort
    /// it is also the node port, so it must lie within 30000-32767.
    #[serde(default = "default_control_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub control_port: i32,

    /// Annotations on each replica's Service, e.g. for the cloud's load
    /// balancer controller; at most 128.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = schema::annotations)]
    #[x_kube(validation = annotation_keys("service.annotations", "service.beta.kubernetes.io/aws-load-balancer-type"))]
    pub annotations: BTreeMap<String, String>,

    /// Load balancer implementation (`spec.loadBalancerClass` of the
    /// Service). LoadBalancer only. Fixed once the FtpServer exists, as it
    /// is on a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(qualified("self")).message(format!("service.loadBalancerClass must be like example.com/lb: {QUALIFIED_NAME_IS}").as_str()))]
    pub load_balancer_class: Option<String>,

    /// Client CIDRs allowed through the load balancer. LoadBalancer only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("loadBalancerSourceRanges must be CIDRs such as 203.0.113.0/24"))]
    pub load_balancer_source_ranges: Vec<String>,

    /// Local (default) keeps client source addresses, which the server
    /// needs to match data connections to sessions, and routes only to the
    /// replica's node. Cluster may route through another node and replaces
    /// the client address with a node's; the operator then lets data
    /// connections come from any address.
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,

    /// Whether the load balancer also gets node ports
    /// (`spec.allocateLoadBalancerNodePorts`). Unset: the cluster default
    /// (true). Each replica's Service then takes one node port per
    /// ServicePort (control port and every passive port) from the
    /// cluster's node-port range, 2768 ports by default, besides the
    /// health-check port of externalTrafficPolicy Local; set false when the
    /// load balancer reaches pods directly (MetalLB, cloud load balancers
    /// in IP-target mode). LoadBalancer only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            type_: ServiceType::default(),
            control_port: default_control_port(),
            annotations: BTreeMap::new(),
            load_balancer_class: None,
            load_balancer_source_ranges: Vec::new(),
            external_traffic_policy: TrafficPolicy::default(),
            allocate_load_balancer_node_ports: None,
        }
    }
}

fn default_control_port() -> i32 {
    21
}

/// Kubernetes Service type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

/// Service `externalTrafficPolicy`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrafficPolicy {
    #[default]
    Local,
    Cluster,
}

/// Passive mode: the server listens on a port of this range for each data
/// connection and tells the client where to connect.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PassiveSpec {
    /// Ports for data connections, the same numbers inside the pod and on
    /// the Service. Each port is shared by many clients.
    #[serde(default)]
    pub port_range: PortRange,

    /// Address to advertise in PASV replies, an IPv4 address or DNS name.
    /// Overrides the address the operator finds on the Service (load
    /// balancer ingress, node or cluster IP). Use it when clients reach the
    /// server through a name or a NAT the cluster does not know about.
    /// At most 1 replica: each replica needs an address of its own. Changes
    /// reach the server without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(
        validation = Rule::new("isIP(self) ? ip(self).family() == 4 : self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')")
            .message("advertisedAddress must be an IPv4 address or a lowercase DNS name of labels of 1-63 letters, digits and '-', each starting and ending with a letter or digit"),
        // The server reads a name of digits and dots as a hostname.
        validation = Rule::new("isIP(self) || !self.matches('(^|\\\\.)[0-9]+$')")
            .message("advertisedAddress must be an IPv4 address (four numbers 0-255 without leading zeros) or a DNS name whose last label is not all digits")
    )]
    pub advertised_address: Option<String>,

    /// Client networks that reach the pods directly (without the load
    /// balancer), such as the pod network: they are told the pod's own
    /// address.
    #[serde(
        default,
        rename = "internalCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 32), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("internalCIDRs must be CIDRs such as 10.0.0.0/8"))]
    pub internal_cidrs: Vec<String>,
}

/// An inclusive port range.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.min <= self.max").message("passive.portRange.min must not exceed max"),
    validation = Rule::new("self.max - self.min < 49")
        .message("passive.portRange may hold at most 49 ports: each port is a load balancer listener, and AWS NLB allows 50 per load balancer including the control port"),
    validation = Rule::new("!(self.min <= 2121 && 2121 <= self.max) && !(self.min <= 9090 && 9090 <= self.max)")
        .message("passive.portRange must not include 2121 or 9090: the pod uses them for the control listener and health endpoints")
)]
pub struct PortRange {
    /// First port, 1024-65535.
    #[schemars(range(min = 1024, max = 65535))]
    pub min: i32,
    /// Last port, 1024-65535, at most min + 48.
    #[schemars(range(min = 1024, max = 65535))]
    pub max: i32,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            min: 30000,
            max: 30009,
        }
    }
}

impl PortRange {
    /// The ports, in order.
    pub fn ports(&self) -> impl Iterator<Item = i32> + use<> {
        self.min..=self.max
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// The Secret with the users file.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsersSpec {
    /// Name of a Secret in the FtpServer's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = object_name("users.secretName", "Secret"))]
    pub secret_name: String,
    /// Key of the users file in the Secret.
    #[serde(default = "default_users_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && !self.startsWith('..')")
        .message("users.key must be a Secret key: letters, digits, '-', '_' and '.', not '.' and not starting with '..'"))]
    pub key: String,
}

fn default_users_key() -> String {
    "users.toml".into()
}

/// Anonymous logins.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnonymousSpec {
    /// Allow read-only logins as `anonymous` or `ftp`. Off by default.
    #[serde(default)]
    pub enabled: bool,
    /// Directory anonymous users see as `/`, relative to the storage root.
    #[serde(default = "default_anonymous_home")]
    #[schemars(length(min = 1, max = 1024))]
    pub home: String,
}

impl Default for AnonymousSpec {
    fn default() -> Self {
        AnonymousSpec {
            enabled: false,
            home: default_anonymous_home(),
        }
    }
}

fn default_anonymous_home() -> String {
    "/".into()
}

/// Where the served files live: set exactly one of existingClaim,
/// volumeClaimTemplate and emptyDir.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.existingClaim) ? 1 : 0) + (has(self.volumeClaimTemplate) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) == 1")
        .message("storage needs exactly one of existingClaim, volumeClaimTemplate or emptyDir"),
    validation = Rule::new("has(self.volumeClaimTemplate) == has(oldSelf.volumeClaimTemplate)")
        .message("storage cannot switch to or from volumeClaimTemplate: a StatefulSet's volume claim templates are immutable; create a new FtpServer instead")
)]
pub struct StorageSpec {
    /// An existing PersistentVolumeClaim, shared by all replicas (it needs
    /// ReadWriteMany for more than one replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_claim: Option<ExistingClaim>,
    /// A PersistentVolumeClaim per replica, created by the StatefulSet.
    /// Each replica then has its own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<VolumeClaimTemplate>,
    /// Scratch space that is lost when a pod goes. Chosen explicitly, never
    /// as a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirStorage>,
}

/// An existing PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExistingClaim {
    /// Name of the PersistentVolumeClaim in the FtpServer's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = object_name("storage.existingClaim.claimName", "PersistentVolumeClaim"))]
    pub claim_name: String,
}

/// A claim created per replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.size == oldSelf.size && has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)")
        .message("storage.volumeClaimTemplate size and storageClassName are immutable: a StatefulSet's volume claim templates cannot change (whenDeleted can)")
)]
pub struct VolumeClaimTemplate {
    /// Requested size, e.g. 10Gi.
    #[schemars(extend("maxLength" = 64))]
    #[x_kube(validation = positive_quantity("storage.volumeClaimTemplate.size"))]
    pub size: Quantity,
    /// StorageClass of the claims; unset: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = object_name("storage.volumeClaimTemplate.storageClassName", "StorageClass"))]
    pub storage_class_name: Option<String>,
    /// What happens to the claims, and so the files, when the FtpServer is
    /// deleted: Delete (default; the FtpServer owns its data) or Retain
    /// (they stay, and an FtpServer of the same name finds them again).
    /// Scaling down always keeps the removed replicas' claims. Set Retain
    /// before deleting an FtpServer whose files must outlive it.
    #[serde(default)]
    pub when_deleted: ClaimRetention,
}

/// What becomes of a claim whose replica goes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClaimRetention {
    #[default]
    Delete,
    Retain,
}

/// An emptyDir volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirStorage {
    /// Upper bound on the space used; unset: no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 64))]
    #[x_kube(validation = positive_quantity("storage.emptyDir.sizeLimit"))]
    pub size_limit: Option<Quantity>,
}

/// FTPS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Name of a `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`) in
    /// the FtpServer's namespace. Renewed certificates are picked up.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = object_name("tls.secretName", "Secret"))]
    pub secret_name: String,
    /// Required (default): logins without TLS are refused. Optional: plain
    /// FTP still works for clients that do not ask for TLS.
    #[serde(default)]
    pub mode: TlsMode,
    /// Also serve implicit FTPS (TLS from the first byte, `ftps://` URLs,
    /// traditionally port 990) on this Service port, for clients that
    /// cannot use AUTH TLS. Outside the passive range and not the control
    /// port; with NodePort within 30000-32767. Unset: explicit FTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub implicit_port: Option<i32>,
    /// Refuse a protected data connection unless its TLS handshake resumes
    /// the control connection's TLS session (default true). This proves the
    /// data connection comes from the same client, which matters most
    /// behind load balancers that hide client addresses. curl, lftp,
    /// FileZilla and WinSCP resume; turn it off only for clients that can't.
    #[serde(default = "default_true")]
    pub require_session_reuse: bool,
}

fn default_true() -> bool {
    true
}

/// Whether clients must use TLS.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    #[default]
    Required,
    Optional,
}

/// Session limits.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Most sessions per replica at once; the server's default is 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_sessions: Option<i32>,
    /// Most sessions from one client IP per replica; default 100.
    #[serde(
        default,
        rename = "maxSessionsPerIP",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_sessions_per_ip: Option<i32>,
    /// Seconds without a command before a session is closed; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub idle_timeout_seconds: Option<i32>,
    /// Failed logins in one session before the server closes it; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_login_attempts: Option<i32>,
    /// Failed logins from one client IP, within lockoutSeconds, after which
    /// every login from that IP is refused (even with the right password)
    /// for lockoutSeconds; default 10. Per replica. Raise it when many
    /// users share one address (a corporate NAT).
    #[serde(
        default,
        rename = "maxFailedLoginsPerIP",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_failed_logins_per_ip: Option<i32>,
    /// The window in which failed logins count, and how long a client IP
    /// that reached maxFailedLoginsPerIP stays locked out; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub lockout_seconds: Option<i32>,
}
