//! The children of an FtpServer, built from its spec alone: pure functions,
//! unit-tested without a cluster.

mod config_map;
pub mod server_config;
mod service;
mod stateful_set;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::ObjectMeta;
use kubeftp_api::FtpServer;

pub use config_map::{addresses_config_map, server_config_map};
pub use service::{ordinal_of, replica_service};
pub use stateful_set::{claim_ordinal, stateful_set};

/// What the operator needs to know beyond the FtpServer itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// kubeftp-server image used when the spec names none.
    pub server_image: String,
}

/// Every child but the addresses ConfigMap, which depends on what the
/// cluster assigned to the Services.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub config: ConfigMap,
    pub stateful_set: StatefulSet,
    /// One per replica, in ordinal order.
    pub services: Vec<Service>,
}

pub fn children(ftp: &FtpServer, settings: &Settings) -> Children {
    let config = server_config_map(ftp);
    let stateful_set = stateful_set(ftp, settings, &config);
    let services = (0..ftp.spec.replicas)
        .map(|ordinal| replica_service(ftp, ordinal))
        .collect();
    Children {
        config,
        stateful_set,
        services,
    }
}

/// Metadata of a child: its name, the common labels, and the FtpServer as
/// controlling owner, so deleting the FtpServer deletes it (and, deleted in
/// the foreground, waits for it).
fn child_meta(ftp: &FtpServer, name: String) -> ObjectMeta {
    let owner = ftp.controller_owner_ref(&()).map(|owner| OwnerReference {
        block_owner_deletion: Some(true),
        ..owner
    });
    ObjectMeta {
        name: Some(name),
        namespace: ftp.meta().namespace.clone(),
        labels: Some(crate::labels::common(ftp)),
        owner_references: owner.map(|owner| vec![owner]),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use kubeftp_api::FtpServer;

    /// An FtpServer as the apiserver would hold it: `spec` in YAML, with a
    /// name, namespace and uid.
    pub fn ftp(spec: &str) -> FtpServer {
        let spec = serde_yaml::from_str(spec).expect("a spec");
        let mut ftp = FtpServer::new("files", spec);
        ftp.metadata.namespace = Some("team".into());
        ftp.metadata.uid = Some("0000-1111".into());
        ftp
    }

    pub fn settings() -> super::Settings {
        super::Settings {
            server_image: "kubeftp/kubeftp-server:test".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{ftp, settings};
    use super::*;

    #[test]
    fn one_service_per_replica_and_owned_children() {
        let ftp = ftp("replicas: 3\nusers: {secretName: u}\nstorage: {emptyDir: {}}");
        let children = children(&ftp, &settings());
        let names: Vec<_> = children
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["files-0", "files-1", "files-2"]);
        let metas = [&children.config.metadata, &children.stateful_set.metadata]
            .into_iter()
            .chain(children.services.iter().map(|s| &s.metadata));
        for meta in metas {
            assert_eq!(meta.namespace.as_deref(), Some("team"));
            let owners = meta.owner_references.as_ref().expect("owned");
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "FtpServer");
            assert_eq!(owners[0].uid, "0000-1111");
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(owners[0].block_owner_deletion, Some(true));
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels["app.kubernetes.io/instance"], "files");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "kubeftp-operator");
        }
    }

    #[test]
    fn zero_replicas_have_no_services() {
        let ftp = ftp("replicas: 0\nusers: {secretName: u}\nstorage: {emptyDir: {}}");
        assert!(children(&ftp, &settings()).services.is_empty());
    }
}
