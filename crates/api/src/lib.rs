//! The `FtpServer` custom resource, `kubeftp.dev/v1alpha1`.
//!
//! Every field's doc comment becomes its description in the CRD, so
//! `kubectl explain ftpserver.spec.passive` shows it. Validation that the
//! apiserver can do lives in the schema (OpenAPI bounds plus CEL rules), so a
//! bad spec is refused at `kubectl apply` rather than discovered by the
//! operator.

mod schema;
mod spec;
mod status;

pub use spec::*;
pub use status::*;

/// API group of every kubeftp resource.
pub const GROUP: &str = "kubeftp.dev";

/// Port ranges, as the CRD bounds them. Kept here so the operator and the
/// schema agree.
pub mod limits {
    /// Passive ports are unprivileged: the server runs as non-root.
    pub const PASSIVE_PORT_MIN: i32 = 1024;
    pub const PORT_MAX: i32 = 65535;
    /// At most this many passive ports per replica. Each passive port is one
    /// listener on the replica's load balancer, and the control port is one
    /// more: an AWS Network Load Balancer allows 50 listeners by default, so
    /// 49 passive ports plus control is the most that works there out of the
    /// box. (GCP forwarding rules take up to 5 ports or one contiguous span,
    /// which any range fits; Azure allows hundreds of rules.) The server
    /// shares each port between client IPs, so 49 ports serve many clients.
    pub const MAX_PASSIVE_PORTS: i32 = 49;
    /// The NodePort range of a default apiserver (`--service-node-port-range`).
    pub const NODE_PORT_MIN: i32 = 30000;
    pub const NODE_PORT_MAX: i32 = 32767;
    /// The unprivileged port the container's FTP control listener binds; the
    /// Service maps `spec.service.controlPort` to it.
    pub const CONTAINER_CONTROL_PORT: i32 = 2121;
    /// The container's HTTP port for /healthz, /readyz and /metrics.
    pub const CONTAINER_OPS_PORT: i32 = 9090;
    /// The container's implicit FTPS listener, when `spec.tls.implicitPort`
    /// asks for one; the Service maps that port to it.
    pub const CONTAINER_IMPLICIT_TLS_PORT: i32 = 9990;
    /// With an implicit FTPS port the Service has one listener more, so one
    /// passive port less fits the load balancer (see [`MAX_PASSIVE_PORTS`]).
    pub const MAX_PASSIVE_PORTS_WITH_IMPLICIT_TLS: i32 = MAX_PASSIVE_PORTS - 1;
    /// The server's default shutdown grace, `spec.shutdownGraceSeconds`.
    pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: i32 = 30;
    /// How much longer than the shutdown grace the kubelet waits before it
    /// kills the server: time to close the remaining sessions and exit.
    pub const TERMINATION_GRACE_MARGIN_SECONDS: i32 = 10;
    /// Longest `metadata.name`: replica Services are named `<name>-<ordinal>`
    /// and must be DNS labels (63 characters); the StatefulSet's
    /// `controller-revision-hash` label adds 11 more to its name.
    pub const MAX_NAME_LENGTH: usize = 45;
}
