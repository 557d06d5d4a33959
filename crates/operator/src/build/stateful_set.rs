//! The StatefulSet of kubeftp-server pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kubeftp_api::limits::{
    CONTAINER_CONTROL_PORT, CONTAINER_IMPLICIT_TLS_PORT, CONTAINER_OPS_PORT,
    TERMINATION_GRACE_MARGIN_SECONDS,
};
use kubeftp_api::{ClaimRetention, FtpServer, FtpServerSpec};
use sha2::{Digest, Sha256};

use super::server_config::paths;
use super::{Settings, child_meta};
use crate::labels;

/// Pod annotation with a digest of server.toml: a config change changes the
/// pod template, so the StatefulSet rolls the pods to read it.
pub const CONFIG_HASH: &str = "kubeftp.dev/config-hash";
/// The unprivileged user and group the server runs as.
const RUN_AS: i64 = 65532;

/// The StatefulSet deletes the claims with it (the StatefulSet goes with
/// the FtpServer) unless asked to keep them; scaling down keeps them.
fn claim_retention(
    spec: &FtpServerSpec,
) -> Option<StatefulSetPersistentVolumeClaimRetentionPolicy> {
    let template = spec.storage.volume_claim_template.as_ref()?;
    let when_deleted = match template.when_deleted {
        ClaimRetention::Delete => "Delete",
        ClaimRetention::Retain => "Retain",
    };
    Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(when_deleted.into()),
        when_scaled: Some("Retain".into()),
    })
}

pub fn stateful_set(ftp: &FtpServer, settings: &Settings, config: &ConfigMap) -> StatefulSet {
    let spec = &ftp.spec;
    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(labels::selector(ftp));
    let mut pod_annotations = spec.pod_annotations.clone();
    pod_annotations.insert(CONFIG_HASH.into(), digest(config));

    let volume_claim_templates = spec.storage.volume_claim_template.as_ref().map(|template| {
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.into()),
                labels: Some(labels::selector(ftp)),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: template.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), template.size.clone())])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });

    StatefulSet {
        metadata: child_meta(ftp, labels::stateful_set(ftp)),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            // Replicas are independent endpoints: no ordered start-up.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(labels::selector(ftp)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec(ftp, settings)),
            },
            volume_claim_templates,
            persistent_volume_claim_retention_policy: claim_retention(spec),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const DATA_VOLUME: &str = "data";

/// The replica ordinal of a claim the StatefulSet made from the
/// volumeClaimTemplate, from its name (`data-<ftpserver>-<ordinal>`).
pub fn claim_ordinal(ftp: &FtpServer, claim: &str) -> Option<i32> {
    let pod = claim.strip_prefix(DATA_VOLUME)?.strip_prefix('-')?;
    labels::ordinal_of_pod(ftp, pod)
}

fn pod_spec(ftp: &FtpServer, settings: &Settings) -> PodSpec {
    let spec = &ftp.spec;
    PodSpec {
        containers: vec![server_container(ftp, settings)],
        volumes: Some(volumes(ftp)),
        // The server never talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            // Makes volumes writable by that group.
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // The server drains transfers for shutdownGraceSeconds after SIGTERM
        // (server.toml says so too); leave it room before the kubelet kills it.
        termination_grace_period_seconds: Some(i64::from(
            spec.shutdown_grace_seconds + TERMINATION_GRACE_MARGIN_SECONDS,
        )),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        ..Default::default()
    }
}

fn server_container(ftp: &FtpServer, settings: &Settings) -> Container {
    let spec = &ftp.spec;
    let port = |name: String, port: i32| ContainerPort {
        name: Some(name),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let implicit_tls = spec
        .tls
        .as_ref()
        .and_then(|tls| tls.implicit_port)
        .map(|_| port("ftps".into(), CONTAINER_IMPLICIT_TLS_PORT));
    let ports = [
        port("ftp".into(), CONTAINER_CONTROL_PORT),
        port("ops".into(), CONTAINER_OPS_PORT),
    ]
    .into_iter()
    .chain(implicit_tls)
    .chain(
        spec.passive
            .port_range
            .ports()
            .map(|p| port(format!("pasv-{p}"), p)),
    )
    .collect();
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("ops".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut mounts = vec![
        mount("config", paths::CONFIG_DIR),
        mount("addresses", paths::ADDRESSES_DIR),
        VolumeMount {
            read_only: None,
            ..mount(DATA_VOLUME, paths::DATA_DIR)
        },
    ];
    if spec.users.is_some() {
        mounts.push(mount("users", paths::USERS_DIR));
    }
    if spec.tls.is_some() {
        mounts.push(mount("tls", paths::TLS_DIR));
    }

    Container {
        name: "server".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| settings.server_image.clone()),
        ),
        args: Some(vec![
            "--config".into(),
            paths::CONFIG_FILE.into(),
            // Kubernetes expands $(POD_NAME) from the env below.
            "--advertised-address-file".into(),
            format!("{}/$(POD_NAME)", paths::ADDRESSES_DIR),
            "--log-format".into(),
            "json".into(),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(ports),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn volumes(ftp: &FtpServer) -> Vec<Volume> {
    let spec = &ftp.spec;
    let config_map = |name: &str, config_map: String| Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut volumes = vec![
        config_map("config", labels::config_map(ftp)),
        config_map("addresses", labels::addresses_config_map(ftp)),
    ];
    if let Some(users) = &spec.users {
        volumes.push(Volume {
            name: "users".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(users.secret_name.clone()),
                items: Some(vec![KeyToPath {
                    key: users.key.clone(),
                    path: paths::USERS_KEY.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let Some(tls) = &spec.tls {
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let storage = &spec.storage;
    if let Some(claim) = &storage.existing_claim {
        volumes.push(Volume {
            name: DATA_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.claim_name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    } else if let Some(empty_dir) = &storage.empty_dir {
        volumes.push(Volume {
            name: DATA_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: empty_dir.size_limit.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    // A volumeClaimTemplate provides the "data" volume itself.
    volumes
}

fn digest(config: &ConfigMap) -> String {
    let mut hash = Sha256::new();
    for (key, value) in config.data.iter().flatten() {
        hash.update(key.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    let hex: String = hash
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    hex[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::server_config_map;
    use crate::build::test_support::{ftp, settings};

    fn build(spec: &str) -> StatefulSet {
        let ftp = ftp(spec);
        stateful_set(&ftp, &settings(), &server_config_map(&ftp))
    }

    fn pod(set: &StatefulSet) -> &PodSpec {
        set.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    const MINIMAL: &str = "users: {secretName: ftp-users}\nstorage: {emptyDir: {}}";

    #[test]
    fn hardened_server_container() {
        let set = build(MINIMAL);
        let pod = pod(&set);
        assert_eq!(pod.automount_service_account_token, Some(false));
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let container = &pod.containers[0];
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        let readiness = container.readiness_probe.as_ref().unwrap();
        assert_eq!(
            readiness.http_get.as_ref().unwrap().path.as_deref(),
            Some("/readyz")
        );
        let liveness = container.liveness_probe.as_ref().unwrap();
        assert_eq!(
            liveness.http_get.as_ref().unwrap().path.as_deref(),
            Some("/healthz")
        );
    }

    #[test]
    fn runs_the_server_with_its_config_and_own_address_file() {
        let set = build(MINIMAL);
        let container = &pod(&set).containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("kubeftp/kubeftp-server:test")
        );
        assert_eq!(
            container.args.as_ref().unwrap(),
            &[
                "--config",
                "/etc/kubeftp/config/server.toml",
                "--advertised-address-file",
                "/run/kubeftp/addresses/$(POD_NAME)",
                "--log-format",
                "json",
            ]
        );
        let env = &container.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "POD_NAME");
        let field = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, "metadata.name");
        let ports: Vec<i32> = container
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports[..3], [2121, 9090, 30000]);
        assert_eq!(ports.len(), 2 + 10);
    }

    #[test]
    fn mounts_config_addresses_users_and_data() {
        let set = build(MINIMAL);
        let pod = pod(&set);
        let mounts: Vec<(&str, &str)> = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("config", "/etc/kubeftp/config"),
                ("addresses", "/run/kubeftp/addresses"),
                ("data", "/srv/ftp"),
                ("users", "/etc/kubeftp/users"),
            ]
        );
        let volumes = pod.volumes.as_ref().unwrap();
        let by_name = |name: &str| volumes.iter().find(|v| v.name == name).unwrap();
        assert_eq!(
            by_name("config").config_map.as_ref().unwrap().name,
            "files-config"
        );
        assert_eq!(
            by_name("addresses").config_map.as_ref().unwrap().name,
            "files-addresses"
        );
        let users = by_name("users").secret.as_ref().unwrap();
        assert_eq!(users.secret_name.as_deref(), Some("ftp-users"));
        let item = &users.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("users.toml", "users.toml")
        );
        assert!(by_name("data").empty_dir.is_some());
        assert!(set.spec.as_ref().unwrap().volume_claim_templates.is_none());
        let spec = set.spec.as_ref().unwrap();
        assert!(spec.persistent_volume_claim_retention_policy.is_none());
    }

    #[test]
    fn claim_ordinals_come_from_the_names_the_stateful_set_gives() {
        let ftp = ftp("anonymous: {enabled: true}\nstorage: {volumeClaimTemplate: {size: 1Gi}}");
        assert_eq!(claim_ordinal(&ftp, "data-files-0"), Some(0));
        assert_eq!(claim_ordinal(&ftp, "data-files-11"), Some(11));
        for other in ["files-0", "data-files", "data-other-0", "logs-files-0"] {
            assert_eq!(claim_ordinal(&ftp, other), None, "{other}");
        }
    }

    #[test]
    fn storage_sources() {
        let set = build(
            "anonymous: {enabled: true}\nstorage: {volumeClaimTemplate: {size: 5Gi, storageClassName: fast}}",
        );
        let templates = set
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .clone()
            .unwrap();
        assert_eq!(templates.len(), 1);
        let claim = templates[0].spec.as_ref().unwrap();
        assert_eq!(templates[0].metadata.name.as_deref(), Some("data"));
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "5Gi"
        );
        // Claims go with the FtpServer by default, never on scale-down.
        let retention = |set: &StatefulSet| {
            let policy = set
                .spec
                .as_ref()
                .unwrap()
                .persistent_volume_claim_retention_policy
                .clone();
            let policy = policy.unwrap();
            (policy.when_deleted.unwrap(), policy.when_scaled.unwrap())
        };
        assert_eq!(retention(&set), ("Delete".into(), "Retain".into()));
        let kept = build(
            "anonymous: {enabled: true}\nstorage: {volumeClaimTemplate: {size: 5Gi, whenDeleted: Retain}}",
        );
        assert_eq!(retention(&kept), ("Retain".into(), "Retain".into()));
        // The template provides "data"; no pod volume of that name.
        assert!(
            pod(&set)
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.name != "data")
        );
        assert!(
            pod(&set)
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.name != "users")
        );

        let set =
            build("anonymous: {enabled: true}\nstorage: {existingClaim: {claimName: shared}}");
        let data = pod(&set)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .cloned();
        assert_eq!(
            data.unwrap().persistent_volume_claim.unwrap().claim_name,
            "shared"
        );
    }

    fn container_ports(set: &StatefulSet) -> Vec<(String, i32)> {
        pod(set).containers[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect()
    }

    #[test]
    fn implicit_ftps_gets_its_container_port() {
        let ports = container_ports(&build(&format!(
            "{MINIMAL}\npassive: {{portRange: {{min: 30000, max: 30001}}}}\ntls: {{secretName: c, implicitPort: 990}}"
        )));
        assert_eq!(
            ports,
            [
                ("ftp".to_owned(), 2121),
                ("ops".to_owned(), 9090),
                ("ftps".to_owned(), 9990),
                ("pasv-30000".to_owned(), 30000),
                ("pasv-30001".to_owned(), 30001),
            ]
        );
        let plain = container_ports(&build(&format!("{MINIMAL}\ntls: {{secretName: c}}")));
        assert!(plain.iter().all(|(name, _)| name != "ftps"), "{plain:?}");
    }

    /// The kubelet kills the server only after its drain has had its time.
    #[test]
    fn termination_grace_exceeds_the_servers_shutdown_grace() {
        for (spec, drain) in [
            (MINIMAL.to_owned(), 30),
            (format!("{MINIMAL}\nshutdownGraceSeconds: 600"), 600),
            (format!("{MINIMAL}\nshutdownGraceSeconds: 0"), 0),
        ] {
            let ftp = ftp(&spec);
            let toml: toml::Table = server_config_map(&ftp).data.unwrap()["server.toml"]
                .parse()
                .unwrap();
            assert_eq!(toml["shutdown"]["grace-seconds"].as_integer(), Some(drain));
            let set = stateful_set(&ftp, &settings(), &server_config_map(&ftp));
            let grace = pod(&set).termination_grace_period_seconds.unwrap();
            assert_eq!(grace, drain + 10, "{spec}");
        }
    }

    #[test]
    fn tls_secret_is_mounted() {
        let set = build(&format!("{MINIMAL}\ntls: {{secretName: ftp-cert}}"));
        let pod = pod(&set);
        let tls = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tls")
            .unwrap();
        assert_eq!(
            tls.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("ftp-cert")
        );
        assert!(
            pod.containers[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "tls" && m.mount_path == "/etc/kubeftp/tls")
        );
    }

    #[test]
    fn pod_customisation_and_operator_labels_win() {
        let set = build(&format!(
            "{MINIMAL}
image: registry.example.com/ftp:1
nodeSelector: {{disk: ssd}}
tolerations: [{{key: dedicated, operator: Exists}}]
resources: {{requests: {{cpu: 100m}}}}
podLabels: {{team: files, app.kubernetes.io/instance: other}}
podAnnotations: {{note: hi}}
"
        ));
        let template = &set.spec.as_ref().unwrap().template;
        let meta = template.metadata.as_ref().unwrap();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "files");
        assert_eq!(labels["app.kubernetes.io/instance"], "files");
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations["note"], "hi");
        assert_eq!(annotations[CONFIG_HASH].len(), 16);
        let pod = template.spec.as_ref().unwrap();
        assert_eq!(pod.node_selector.as_ref().unwrap()["disk"], "ssd");
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example.com/ftp:1")
        );
        assert_eq!(
            container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["cpu"]
                .0,
            "100m"
        );
    }

    #[test]
    fn config_changes_roll_the_pods() {
        let hash = |spec: &str| {
            let set = build(spec);
            let meta = set.spec.unwrap().template.metadata.unwrap();
            meta.annotations.unwrap()[CONFIG_HASH].clone()
        };
        assert_eq!(hash(MINIMAL), hash(MINIMAL));
        assert_ne!(hash(MINIMAL), hash(&format!("{MINIMAL}\nactiveMode: true")));
        // Replicas are not in server.toml: scaling does not restart pods.
        assert_eq!(hash(MINIMAL), hash(&format!("{MINIMAL}\nreplicas: 3")));
    }

    /// The override reaches the pods through the address file, live: the
    /// pod template (whose change rolls every pod) does not depend on it.
    #[test]
    fn advertised_address_changes_leave_the_pod_template_alone() {
        let template = |spec: &str| build(spec).spec.unwrap().template;
        let plain = template(MINIMAL);
        for address in ["ftp.example.com", "ftp2.example.com", "203.0.113.9"] {
            let spec = format!("{MINIMAL}\npassive: {{advertisedAddress: {address}}}");
            assert_eq!(template(&spec), plain, "{address}");
        }
    }
}
