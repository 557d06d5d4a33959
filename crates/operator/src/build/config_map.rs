//! The two ConfigMaps: server.toml, and the advertised addresses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kubeftp_api::FtpServer;

use super::child_meta;
use super::server_config::{paths, server_toml};
use crate::labels;

/// `<name>-config`, holding server.toml. Pods restart when it changes (the
/// StatefulSet's template carries its hash): the server reads it at start.
pub fn server_config_map(ftp: &FtpServer) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(ftp, labels::config_map(ftp)),
        data: Some(BTreeMap::from([(
            paths::CONFIG_KEY.to_owned(),
            server_toml(&ftp.spec),
        )])),
        ..Default::default()
    }
}

/// `<name>-addresses`: one key per pod, by ordinal, its advertised address
/// (empty while unknown). Mounted as a directory, so the kubelet updates
/// each pod's file in place and the server picks the change up without a
/// restart.
pub fn addresses_config_map(
    ftp: &FtpServer,
    addresses: &BTreeMap<i32, Option<String>>,
) -> ConfigMap {
    let data = addresses
        .iter()
        .map(|(&ordinal, address)| {
            let pod = labels::pod(ftp, ordinal);
            (pod, address.clone().unwrap_or_default())
        })
        .collect();
    ConfigMap {
        metadata: child_meta(ftp, labels::addresses_config_map(ftp)),
        data: Some(data),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::ftp;

    #[test]
    fn server_config_holds_server_toml() {
        let ftp = ftp("users: {secretName: u}\nstorage: {emptyDir: {}}");
        let map = server_config_map(&ftp);
        assert_eq!(map.metadata.name.as_deref(), Some("files-config"));
        let data = map.data.unwrap();
        assert_eq!(data.len(), 1);
        assert!(data["server.toml"].contains("ports = \"30000-30009\""));
    }

    #[test]
    fn addresses_have_a_key_per_pod_empty_while_unknown() {
        let ftp = ftp("replicas: 2\nusers: {secretName: u}\nstorage: {emptyDir: {}}");
        let map = addresses_config_map(
            &ftp,
            &BTreeMap::from([(0, Some("203.0.113.7".into())), (1, None)]),
        );
        assert_eq!(map.metadata.name.as_deref(), Some("files-addresses"));
        let data = map.data.unwrap();
        assert_eq!(
            data,
            BTreeMap::from([
                ("files-0".to_owned(), "203.0.113.7".to_owned()),
                ("files-1".to_owned(), String::new()),
            ])
        );
    }
}
