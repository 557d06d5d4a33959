//! Names and labels of the children of an FtpServer.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kubeftp_api::FtpServer;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Set by the StatefulSet controller on each pod: selects one replica.
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// Which replica a Service serves.
pub const REPLICA: &str = "kubeftp.dev/replica";

pub const APP: &str = "kubeftp";
pub const OPERATOR: &str = "kubeftp-operator";

/// Labels that select every pod of one FtpServer.
pub fn selector(ftp: &FtpServer) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.into(), APP.into()),
        (INSTANCE.into(), ftp.name_any()),
        (COMPONENT.into(), "server".into()),
    ])
}

/// Labels on every child: the selector plus who manages it.
pub fn common(ftp: &FtpServer) -> BTreeMap<String, String> {
    let mut labels = selector(ftp);
    labels.insert(MANAGED_BY.into(), OPERATOR.into());
    labels
}

/// The StatefulSet (and so pod-name prefix).
pub fn stateful_set(ftp: &FtpServer) -> String {
    ftp.name_any()
}

/// Pod of replica `ordinal`, as the StatefulSet names it.
pub fn pod(ftp: &FtpServer, ordinal: i32) -> String {
    format!("{}-{ordinal}", ftp.name_any())
}

/// Service of replica `ordinal`: the same name as its pod.
pub fn service(ftp: &FtpServer, ordinal: i32) -> String {
    pod(ftp, ordinal)
}

/// ConfigMap with server.toml.
pub fn config_map(ftp: &FtpServer) -> String {
    format!("{}-config", ftp.name_any())
}

/// ConfigMap with one key per pod: the address that pod advertises.
pub fn addresses_config_map(ftp: &FtpServer) -> String {
    format!("{}-addresses", ftp.name_any())
}
