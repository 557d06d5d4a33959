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

/// Whether `labels` has every label of `selector`, with the same value.
pub fn matches(labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// The ordinal of one of the FtpServer's pods, from its name.
pub fn ordinal_of_pod(ftp: &FtpServer, pod: &str) -> Option<i32> {
    let ordinal = pod.strip_prefix(&ftp.name_any())?.strip_prefix('-')?;
    if !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::ftp;

    #[test]
    fn pod_ordinals_come_from_the_names_the_stateful_set_gives() {
        let ftp = ftp("users: {secretName: u}\nstorage: {emptyDir: {}}");
        assert_eq!(ordinal_of_pod(&ftp, "files-0"), Some(0));
        assert_eq!(ordinal_of_pod(&ftp, "files-12"), Some(12));
        assert_eq!(ordinal_of_pod(&ftp, &pod(&ftp, 3)), Some(3));
        for other in [
            "files",
            "files-",
            "files-x",
            "files-1-0",
            "filesx-1",
            "files-+1",
        ] {
            assert_eq!(ordinal_of_pod(&ftp, other), None, "{other}");
        }
    }

    #[test]
    fn a_selector_matches_labels_that_include_it() {
        let ftp = ftp("users: {secretName: u}\nstorage: {emptyDir: {}}");
        let selector = selector(&ftp);
        let mut labels = common(&ftp);
        assert!(matches(&labels, &selector), "extra labels do not matter");
        labels.insert(INSTANCE.into(), "other".into());
        assert!(!matches(&labels, &selector), "another instance");
        labels.remove(INSTANCE);
        assert!(!matches(&labels, &selector), "a missing label");
    }
}
