//! Checks a spec before anything is built. The CRD's schema refuses most
//! of the same specs at admission; this guards objects stored before a rule
//! existed, checks what the CRD's rules cannot afford to (see
//! [`resources`]), and gives the build step a spec it can trust.

use kubeftp_api::limits::{
    CONTAINER_CONTROL_PORT, CONTAINER_IMPLICIT_TLS_PORT, CONTAINER_OPS_PORT, MAX_PASSIVE_PORTS,
    MAX_PASSIVE_PORTS_WITH_IMPLICIT_TLS, NODE_PORT_MAX, NODE_PORT_MIN, PASSIVE_PORT_MIN, PORT_MAX,
};
use kubeftp_api::{FtpServerSpec, ServiceType};
use serde_json::Value;

mod formats;
mod resources;

/// Why a spec cannot be served; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

pub fn validate(spec: &FtpServerSpec) -> Result<(), InvalidSpec> {
    let range = spec.passive.port_range;
    let control = spec.service.control_port;
    let fail = |message: String| Err(InvalidSpec(message));
    if range.min < PASSIVE_PORT_MIN || range.max > PORT_MAX || range.min > range.max {
        return fail(format!(
            "passive.portRange {range} must be an ascending range within {PASSIVE_PORT_MIN}-{PORT_MAX}"
        ));
    }
    if range.max - range.min >= MAX_PASSIVE_PORTS {
        return fail(format!(
            "passive.portRange {range} holds more than {MAX_PASSIVE_PORTS} ports"
        ));
    }
    for (port, what) in [
        (control, "service.controlPort"),
        (CONTAINER_CONTROL_PORT, "the pod's control listener"),
        (CONTAINER_OPS_PORT, "the pod's health endpoints"),
    ] {
        if (range.min..=range.max).contains(&port) {
            return fail(format!(
                "passive.portRange {range} includes port {port}, used by {what}"
            ));
        }
    }
    if let Some(implicit) = spec.tls.as_ref().and_then(|tls| tls.implicit_port) {
        if implicit == control || range.ports().any(|port| port == implicit) {
            return fail(format!(
                "tls.implicitPort {implicit} must differ from service.controlPort and lie outside passive.portRange {range}"
            ));
        }
        if range
            .ports()
            .any(|port| port == CONTAINER_IMPLICIT_TLS_PORT)
        {
            return fail(format!(
                "passive.portRange {range} includes port {CONTAINER_IMPLICIT_TLS_PORT}, used by the pod's implicit FTPS listener"
            ));
        }
        if range.max - range.min >= MAX_PASSIVE_PORTS_WITH_IMPLICIT_TLS {
            return fail(format!(
                "with tls.implicitPort, passive.portRange {range} holds more than {MAX_PASSIVE_PORTS_WITH_IMPLICIT_TLS} ports"
            ));
        }
        if spec.service.type_ == ServiceType::NodePort
            && !(NODE_PORT_MIN..=NODE_PORT_MAX).contains(&implicit)
        {
            return fail(format!(
                "with service.type NodePort, tls.implicitPort must lie within {NODE_PORT_MIN}-{NODE_PORT_MAX}"
            ));
        }
    }
    if spec.service.type_ == ServiceType::NodePort {
        let node_ports = NODE_PORT_MIN..=NODE_PORT_MAX;
        if !node_ports.contains(&control)
            || !node_ports.contains(&range.min)
            || !node_ports.contains(&range.max)
        {
            return fail(format!(
                "with service.type NodePort, the control port and passive range must lie within {NODE_PORT_MIN}-{NODE_PORT_MAX}"
            ));
        }
        if spec.replicas > 1 {
            return fail("service.type NodePort supports at most 1 replica".into());
        }
    }
    let storage = &spec.storage;
    let sources = [
        storage.existing_claim.is_some(),
        storage.volume_claim_template.is_some(),
        storage.empty_dir.is_some(),
    ];
    if sources.into_iter().filter(|set| *set).count() != 1 {
        return fail(
            "storage needs exactly one of existingClaim, volumeClaimTemplate or emptyDir".into(),
        );
    }
    if spec.passive.advertised_address.is_some() && spec.replicas > 1 {
        return fail(
            "passive.advertisedAddress works with at most 1 replica: every replica would advertise it; unset it or make one FtpServer per address".into(),
        );
    }
    if spec.users.is_none() && !spec.anonymous.enabled {
        return fail("set users or anonymous.enabled, otherwise nobody can log in".into());
    }
    validate_formats(spec)
}

/// The formats of values the children take, which the CRD checks with CEL
/// rules and enums: the apiserver would refuse the StatefulSet or a
/// Service (or fail with a 500, for a quantity) once the Services exist.
fn validate_formats(spec: &FtpServerSpec) -> Result<(), InvalidSpec> {
    let fail = |message: String| Err(InvalidSpec(message));
    let storage = &spec.storage;
    let template = storage.volume_claim_template.as_ref();
    let names = [
        (
            spec.users.as_ref().map(|u| &u.secret_name),
            "users.secretName",
            "Secret",
        ),
        (
            spec.tls.as_ref().map(|t| &t.secret_name),
            "tls.secretName",
            "Secret",
        ),
        (
            storage.existing_claim.as_ref().map(|c| &c.claim_name),
            "storage.existingClaim.claimName",
            "PersistentVolumeClaim",
        ),
        (
            template.and_then(|t| t.storage_class_name.as_ref()),
            "storage.volumeClaimTemplate.storageClassName",
            "StorageClass",
        ),
    ];
    for (name, field, kind) in names {
        if let Some(name) = name.filter(|name| !formats::dns_subdomain(name)) {
            return fail(format!(
                "{field} {name:?} must be a {kind} name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ));
        }
    }
    if let Some(key) = spec
        .users
        .as_ref()
        .map(|u| &u.key)
        .filter(|k| !formats::secret_key(k))
    {
        return fail(format!(
            "users.key {key:?} must be a Secret key: letters, digits, '-', '_' and '.', not '.' and not starting with '..'"
        ));
    }
    if let Some(class) = spec
        .service
        .load_balancer_class
        .as_ref()
        .filter(|c| !formats::qualified_name(c))
    {
        return fail(format!(
            "service.loadBalancerClass {class:?} must be like example.com/lb: {QUALIFIED_NAME_IS}"
        ));
    }
    if let Some(address) = spec
        .passive
        .advertised_address
        .as_ref()
        .filter(|a| !formats::advertised_address(a))
    {
        return fail(format!(
            "passive.advertisedAddress {address:?} must be an IPv4 address or a lowercase DNS name whose labels have 1-63 characters and whose last label is not all digits"
        ));
    }

    let sizes = [
        (
            template.map(|t| &t.size),
            "storage.volumeClaimTemplate.size",
        ),
        (
            storage
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref()),
            "storage.emptyDir.sizeLimit",
        ),
    ];
    for (size, field) in sizes {
        if let Some(size) = size.filter(|size| crate::quantity::sign(&size.0) != Some(1)) {
            return fail(format!(
                "{field} {:?} must be a quantity above zero, such as 10Gi or 500M",
                size.0
            ));
        }
    }
    if let Some(resources) = &spec.resources {
        resources::check(resources)?;
    }

    let maps = [
        (&spec.pod_labels, "podLabels", true),
        (&spec.node_selector, "nodeSelector", true),
        (&spec.pod_annotations, "podAnnotations", false),
        (&spec.service.annotations, "service.annotations", false),
    ];
    for (map, field, labels) in maps {
        for (key, value) in map {
            // Kubernetes checks annotation keys lowercased.
            let checked = if labels {
                key.clone()
            } else {
                key.to_ascii_lowercase()
            };
            if !formats::qualified_name(&checked) {
                return fail(format!("{field} key {key:?} must be {QUALIFIED_NAME_IS}"));
            }
            if labels && !formats::label_value(value) {
                return fail(format!(
                    "{field} value {value:?} of {key} must be a label value: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, or empty"
                ));
            }
        }
    }

    for (index, toleration) in spec.tolerations.iter().enumerate() {
        let operator = toleration.operator.as_deref().unwrap_or_default();
        if !["", "Equal", "Exists"].contains(&operator) {
            return fail(format!(
                "tolerations[{index}].operator {operator:?} must be Equal or Exists"
            ));
        }
        let effect = toleration.effect.as_deref().unwrap_or_default();
        if !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            return fail(format!(
                "tolerations[{index}].effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let has = |field: &Option<String>| field.as_deref().is_some_and(|v| !v.is_empty());
        if operator == "Exists" && has(&toleration.value) {
            return fail(format!(
                "tolerations[{index}].value must be empty with operator Exists (it matches any value)"
            ));
        }
        if operator != "Exists" && !has(&toleration.key) {
            return fail(format!(
                "tolerations[{index}] has no key: set one, or use operator Exists to tolerate every taint"
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            return fail(format!(
                "tolerations[{index}].tolerationSeconds needs effect NoExecute"
            ));
        }
    }
    if let Some(affinity) = &spec.affinity {
        let affinity = serde_json::to_value(affinity).expect("an Affinity serializes");
        validate_affinity(&affinity, "affinity")?;
    }
    Ok(())
}

/// What the messages say of a qualified name.
const QUALIFIED_NAME_IS: &str = "an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// Preferred terms weigh 1-100, and selectors' operators are those
/// Kubernetes knows where they are (`path`, as in the spec).
fn validate_affinity(value: &Value, path: &str) -> Result<(), InvalidSpec> {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                let path = format!("{path}.{key}");
                match (key.as_str(), value) {
                    ("weight", Value::Number(weight)) => {
                        if !weight.as_i64().is_some_and(|w| (1..=100).contains(&w)) {
                            return Err(InvalidSpec(format!(
                                "{path} {weight} must lie within 1-100"
                            )));
                        }
                    }
                    ("operator", Value::String(operator)) => {
                        let known: &[&str] = if path.contains(".matchFields") {
                            &["In", "NotIn"]
                        } else if path.contains(".nodeAffinity") {
                            &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
                        } else {
                            &["In", "NotIn", "Exists", "DoesNotExist"]
                        };
                        if !known.contains(&operator.as_str()) {
                            return Err(InvalidSpec(format!(
                                "{path} {operator:?} must be one of {}",
                                known.join(", ")
                            )));
                        }
                    }
                    _ => validate_affinity(value, &path)?,
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                validate_affinity(item, &format!("{path}[{index}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FtpServerSpec {
        serde_yaml::from_str(yaml).expect("a spec")
    }

    const VALID: &str = "
users: {secretName: users}
storage: {emptyDir: {}}
";

    fn error(yaml: &str) -> String {
        validate(&spec(yaml)).expect_err("invalid").0
    }

    #[test]
    fn accepts_a_minimal_spec() {
        assert_eq!(validate(&spec(VALID)), Ok(()));
    }

    #[test]
    fn refuses_bad_ranges() {
        let storage = "storage: {emptyDir: {}}\nanonymous: {enabled: true}\n";
        for range in ["{min: 30010, max: 30000}", "{min: 80, max: 90}"] {
            let message = error(&format!("{storage}passive: {{portRange: {range}}}"));
            assert!(message.contains("ascending range"), "{message}");
        }
        let message = error(&format!(
            "{storage}passive: {{portRange: {{min: 30000, max: 30049}}}}"
        ));
        assert!(message.contains("more than 49 ports"), "{message}");
        let message = error(&format!(
            "{storage}service: {{controlPort: 30001}}\npassive: {{portRange: {{min: 30000, max: 30009}}}}"
        ));
        assert!(message.contains("used by service.controlPort"), "{message}");
        let message = error(&format!(
            "{storage}passive: {{portRange: {{min: 9080, max: 9099}}}}"
        ));
        assert!(message.contains("health endpoints"), "{message}");
    }

    #[test]
    fn node_ports_need_the_node_port_range_and_one_replica() {
        let message = error(&format!("{VALID}service: {{type: NodePort}}"));
        assert!(message.contains("30000-32767"), "{message}");
        let message = error(&format!(
            "{VALID}replicas: 2\nservice: {{type: NodePort, controlPort: 30021}}"
        ));
        assert!(message.contains("at most 1 replica"), "{message}");
        assert_eq!(
            validate(&spec(&format!(
                "{VALID}service: {{type: NodePort, controlPort: 30021}}"
            ))),
            Ok(())
        );
    }

    #[test]
    fn storage_is_exactly_one_source() {
        let message = error("users: {secretName: u}\nstorage: {}");
        assert!(message.contains("exactly one"), "{message}");
        let message = error(
            "users: {secretName: u}\nstorage: {emptyDir: {}, existingClaim: {claimName: data}}",
        );
        assert!(message.contains("exactly one"), "{message}");
    }

    #[test]
    fn one_advertised_address_is_for_one_replica() {
        let message = error(&format!(
            "{VALID}replicas: 2\npassive: {{advertisedAddress: ftp.example.com}}"
        ));
        assert!(message.contains("at most 1 replica"), "{message}");
        for replicas in [0, 1] {
            let yaml = format!(
                "{VALID}replicas: {replicas}\npassive: {{advertisedAddress: ftp.example.com}}"
            );
            assert_eq!(validate(&spec(&yaml)), Ok(()));
        }
    }

    #[test]
    fn implicit_tls_port_fits_beside_the_others() {
        let tls = |port: i32| format!("{VALID}tls: {{secretName: cert, implicitPort: {port}}}");
        assert_eq!(validate(&spec(&tls(990))), Ok(()));
        let message = error(&tls(21));
        assert!(
            message.contains("must differ from service.controlPort"),
            "{message}"
        );
        let message = error(&tls(30004));
        assert!(message.contains("outside passive.portRange"), "{message}");
        let message = error(&format!(
            "{}\npassive: {{portRange: {{min: 9980, max: 9999}}}}",
            tls(990)
        ));
        assert!(message.contains("implicit FTPS listener"), "{message}");
        let message = error(&format!(
            "{}\npassive: {{portRange: {{min: 40000, max: 40048}}}}",
            tls(990)
        ));
        assert!(message.contains("more than 48 ports"), "{message}");
        let message = error(&format!(
            "{}\nservice: {{type: NodePort, controlPort: 30021}}",
            tls(990)
        ));
        assert!(
            message.contains("tls.implicitPort must lie within 30000-32767"),
            "{message}"
        );
        assert_eq!(
            validate(&spec(&format!(
                "{}\nservice: {{type: NodePort, controlPort: 30021}}",
                tls(30990)
            ))),
            Ok(())
        );
    }

    /// Objects stored before the CRD checked these formats are refused
    /// before any child is applied, as the apiserver would refuse them.
    #[test]
    fn formats_the_crd_checks_are_checked_here_too() {
        for (change, expected) in [
            (
                "storage: {volumeClaimTemplate: {size: lots}}",
                "storage.volumeClaimTemplate.size \"lots\" must be a quantity above zero",
            ),
            (
                "storage: {volumeClaimTemplate: {size: '0'}}",
                "must be a quantity above zero",
            ),
            (
                "storage: {emptyDir: {sizeLimit: lots}}",
                "storage.emptyDir.sizeLimit \"lots\"",
            ),
            (
                "resources: {limits: {memory: lots}}",
                "resources.limits.memory \"lots\" must be a quantity of at least zero",
            ),
            (
                "resources: {requests: {cpu: '-1'}}",
                "resources.requests.cpu",
            ),
            (
                "storage: {volumeClaimTemplate: {size: 1Gi, storageClassName: Bad_Class}}",
                "storage.volumeClaimTemplate.storageClassName \"Bad_Class\" must be a StorageClass name",
            ),
            (
                "users: {secretName: Bad_Secret}",
                "users.secretName \"Bad_Secret\" must be a Secret name",
            ),
            (
                "users: {secretName: u, key: ../x}",
                "users.key \"../x\" must be a Secret key",
            ),
            (
                "tls: {secretName: 'Bad Secret'}",
                "tls.secretName \"Bad Secret\"",
            ),
            (
                "storage: {existingClaim: {claimName: Bad_Claim}}",
                "storage.existingClaim.claimName \"Bad_Claim\" must be a PersistentVolumeClaim name",
            ),
            (
                "service: {loadBalancerClass: 'not a class!'}",
                "service.loadBalancerClass \"not a class!\" must be like example.com/lb",
            ),
            (
                "passive: {advertisedAddress: 256.1.1.1}",
                "passive.advertisedAddress \"256.1.1.1\" must be an IPv4 address",
            ),
            (
                "podLabels: {'bad key!': x}",
                "podLabels key \"bad key!\" must be an optional DNS-subdomain prefix",
            ),
            (
                "nodeSelector: {disk: a/b}",
                "nodeSelector value \"a/b\" of disk must be a label value",
            ),
            ("podAnnotations: {'a b': x}", "podAnnotations key \"a b\""),
            (
                "service: {annotations: {'a b': x}}",
                "service.annotations key \"a b\"",
            ),
            (
                "resources: {requests: {memory: 1025Mi}, limits: {memory: 1Gi}}",
                "resources.requests.memory \"1025Mi\" must not exceed resources.limits.memory \"1Gi\"",
            ),
            (
                "tolerations: [{operator: Exists, value: x}]",
                "tolerations[0].value must be empty with operator Exists",
            ),
            (
                "tolerations: [{operator: Exists}, {operator: Equal, value: x}]",
                "tolerations[1] has no key",
            ),
            (
                "tolerations: [{key: k, tolerationSeconds: 5}]",
                "tolerations[0].tolerationSeconds needs effect NoExecute",
            ),
            (
                "tolerations: [{operator: Sometimes}]",
                "tolerations[0].operator \"Sometimes\" must be Equal or Exists",
            ),
            (
                "tolerations: [{operator: Exists, effect: Never}]",
                "tolerations[0].effect \"Never\"",
            ),
            (
                "affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 101, preference: {}}]}}",
                "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight 101 must lie within 1-100",
            ),
            (
                "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: a, operator: Bogus}]}]}}}",
                "nodeSelectorTerms[0].matchExpressions[0].operator \"Bogus\" must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt",
            ),
            (
                "affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: k, labelSelector: {matchExpressions: [{key: a, operator: Gt}]}}]}}",
                "operator \"Gt\" must be one of In, NotIn, Exists, DoesNotExist",
            ),
        ] {
            let yaml =
                format!("anonymous: {{enabled: true}}\nstorage: {{emptyDir: {{}}}}\n{change}");
            // The change's storage replaces the default one.
            let yaml = if change.starts_with("storage:") {
                format!("anonymous: {{enabled: true}}\n{change}")
            } else {
                yaml
            };
            let message = error(&yaml);
            assert!(message.contains(expected), "{change}: {message}");
        }
        let fine = "
users: {secretName: ftp.users-1, key: users_v2.toml}
tls: {secretName: ftp-tls}
storage: {volumeClaimTemplate: {size: 1.5e9, storageClassName: fast.ssd}}
service: {loadBalancerClass: service.k8s.aws/nlb, annotations: {service.beta.kubernetes.io/x: 'any thing'}}
passive: {advertisedAddress: 203.0.113.5}
resources: {requests: {cpu: '0', memory: 1024Mi}, limits: {memory: 1Gi, cpu: 500m}}
podLabels: {team: ftp, example.com/tier: ''}
nodeSelector: {kubernetes.io/os: linux}
podAnnotations: {note: 'anything at all!', Example.COM/Owner: x}
tolerations: [{key: dedicated, operator: Equal, value: ftp, effect: NoSchedule}, {operator: Exists}, {key: k, effect: NoExecute, tolerationSeconds: 60}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchFields: [{key: metadata.name, operator: NotIn, values: [x]}]}]
    preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, preference: {matchExpressions: [{key: cores, operator: Gt, values: ['4']}]}}]
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: k, labelSelector: {matchExpressions: [{key: app, operator: DoesNotExist}]}}}]
";
        assert_eq!(validate(&spec(fine)), Ok(()));
    }

    #[test]
    fn someone_must_be_able_to_log_in() {
        let message = error("storage: {emptyDir: {}}");
        assert!(message.contains("nobody can log in"), "{message}");
        assert_eq!(
            validate(&spec("storage: {emptyDir: {}}\nanonymous: {enabled: true}")),
            Ok(())
        );
    }
}
