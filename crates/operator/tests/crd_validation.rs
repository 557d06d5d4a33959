//! The apiserver refuses bad FtpServer specs at `kubectl apply`, with a
//! message that says what to fix. Each case starts from a valid spec and
//! changes one thing.

mod support;

use anyhow::{Result, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kubeftp_testenv::shared_namespace;
use serde_json::{Value, json};

fn ftp_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubeftp.dev", "v1alpha1", "FtpServer");
    Api::namespaced_with(client, namespace, &ApiResource::from_gvk(&gvk))
}

fn valid(name: &str) -> Value {
    json!({
        "apiVersion": "kubeftp.dev/v1alpha1",
        "kind": "FtpServer",
        "metadata": {"name": name},
        "spec": {
            "users": {"secretName": "ftp-users"},
            "storage": {"emptyDir": {}},
        }
    })
}

/// RFC 7386 merge: `patch` over `base`, `null` deletes.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(key);
                } else {
                    merge(base.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

async fn create(api: &Api<DynamicObject>, object: &Value) -> kube::Result<DynamicObject> {
    let object: DynamicObject = serde_json::from_value(object.clone()).expect("an object");
    api.create(&PostParams::default(), &object).await
}

/// As many resources as `resources.limits` or `requests` may hold.
fn seven_resources() -> Value {
    json!({"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi", "hugepages-2Mi": "4Mi",
           "hugepages-1Gi": 0, "example.com/gpu": 1, "example.com/fpga": "1"})
}

/// One resource too many.
fn eight_resources() -> Value {
    let mut resources = seven_resources();
    resources["example.com/tpu"] = json!(1);
    resources
}

/// (what, change to the valid spec, text the refusal must contain; `…`
/// stands for any text, as apiservers differ in how they print a value)
fn invalid_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "min above max",
            json!({"spec": {"passive": {"portRange": {"min": 30010, "max": 30000}}}}),
            "passive.portRange.min must not exceed max",
        ),
        (
            "range of 50 ports",
            json!({"spec": {"passive": {"portRange": {"min": 30000, "max": 30049}}}}),
            "passive.portRange may hold at most 49 ports",
        ),
        (
            "privileged passive port",
            json!({"spec": {"passive": {"portRange": {"min": 1000, "max": 1005}}}}),
            "spec.passive.portRange.min: Invalid value: 1000: spec.passive.portRange.min in body should be greater than or equal to 1024",
        ),
        (
            "port above 65535",
            json!({"spec": {"passive": {"portRange": {"min": 65530, "max": 65536}}}}),
            "spec.passive.portRange.max in body should be less than or equal to 65535",
        ),
        (
            "control port inside the passive range",
            json!({"spec": {"service": {"controlPort": 30005}}}),
            "service.controlPort must lie outside passive.portRange",
        ),
        (
            "passive range on the pod's control listener",
            json!({"spec": {"passive": {"portRange": {"min": 2100, "max": 2130}}}}),
            "passive.portRange must not include 2121 or 9090",
        ),
        (
            "NodePort outside the node port range",
            json!({"spec": {"service": {"type": "NodePort", "controlPort": 30021},
                            "passive": {"portRange": {"min": 20000, "max": 20009}}}}),
            "with service.type NodePort, service.controlPort and passive.portRange must lie within 30000-32767",
        ),
        (
            "NodePort with a privileged control port",
            json!({"spec": {"service": {"type": "NodePort"}}}),
            "with service.type NodePort, service.controlPort and passive.portRange must lie within 30000-32767",
        ),
        (
            "NodePort with two replicas",
            json!({"spec": {"replicas": 2, "service": {"type": "NodePort", "controlPort": 30021}}}),
            "service.type NodePort supports at most 1 replica",
        ),
        (
            "unknown service type",
            json!({"spec": {"service": {"type": "External"}}}),
            "spec.service.type: Unsupported value: \"External\": supported values: \"LoadBalancer\", \"NodePort\", \"ClusterIP\"",
        ),
        (
            "load balancer options on a ClusterIP service",
            json!({"spec": {"service": {"type": "ClusterIP", "loadBalancerClass": "example.com/lb"}}}),
            "loadBalancerClass, loadBalancerSourceRanges and allocateLoadBalancerNodePorts apply only to service.type LoadBalancer",
        ),
        (
            "source ranges on a NodePort service",
            json!({"spec": {"service": {"type": "NodePort", "controlPort": 30021,
                                        "loadBalancerSourceRanges": ["203.0.113.0/24"]}}}),
            "loadBalancerClass, loadBalancerSourceRanges and allocateLoadBalancerNodePorts apply only to service.type LoadBalancer",
        ),
        (
            "source range that is not a CIDR",
            json!({"spec": {"service": {"loadBalancerSourceRanges": ["office"]}}}),
            "loadBalancerSourceRanges must be CIDRs such as 203.0.113.0/24",
        ),
        (
            "no storage",
            json!({"spec": {"storage": null}}),
            "spec.storage: Required value",
        ),
        (
            "empty storage",
            json!({"spec": {"storage": {"emptyDir": null}}}),
            "storage needs exactly one of existingClaim, volumeClaimTemplate or emptyDir",
        ),
        (
            "two storage sources",
            json!({"spec": {"storage": {"existingClaim": {"claimName": "data"}}}}),
            "storage needs exactly one of existingClaim, volumeClaimTemplate or emptyDir",
        ),
        (
            "nobody can log in",
            json!({"spec": {"users": null}}),
            "set users (a Secret holding the users file) or anonymous.enabled",
        ),
        (
            "advertised address that is neither IPv4 nor a DNS name",
            json!({"spec": {"passive": {"advertisedAddress": "ftp example com"}}}),
            "advertisedAddress must be an IPv4 address or a lowercase DNS name",
        ),
        (
            "advertised address with a label over 63 characters (the server refuses it)",
            json!({"spec": {"passive": {"advertisedAddress": format!("{}.example.com", "a".repeat(64))}}}),
            "advertisedAddress must be an IPv4 address or a lowercase DNS name",
        ),
        (
            "advertised address with a number above 255",
            json!({"spec": {"passive": {"advertisedAddress": "256.1.1.1"}}}),
            "advertisedAddress must be an IPv4 address (four numbers 0-255 without leading zeros) or a DNS name whose last label is not all digits",
        ),
        (
            "advertised address of three numbers",
            json!({"spec": {"passive": {"advertisedAddress": "1.2.3"}}}),
            "advertisedAddress must be an IPv4 address (four numbers 0-255",
        ),
        (
            "advertised address with leading zeros",
            json!({"spec": {"passive": {"advertisedAddress": "01.02.03.04"}}}),
            "advertisedAddress must be an IPv4 address (four numbers 0-255",
        ),
        (
            "IPv6 advertised address (PASV carries IPv4 only)",
            json!({"spec": {"passive": {"advertisedAddress": "2001:db8::1"}}}),
            "advertisedAddress must be an IPv4 address or a lowercase DNS name",
        ),
        (
            "one advertised address for two replicas",
            json!({"spec": {"replicas": 2, "passive": {"advertisedAddress": "ftp.example.com"}}}),
            "passive.advertisedAddress works with at most 1 replica: every replica would advertise it, so data connections for the others would reach the wrong pod; unset it to advertise each replica's own Service address, or make one FtpServer per address",
        ),
        (
            "implicit FTPS on the control port",
            json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 21}}}),
            "tls.implicitPort must differ from service.controlPort and lie outside passive.portRange: all are exposed on the same Service",
        ),
        (
            "implicit FTPS inside the passive range",
            json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 30003}}}),
            "tls.implicitPort must differ from service.controlPort and lie outside passive.portRange",
        ),
        (
            "implicit FTPS beside a passive range over its container port",
            json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 990},
                            "passive": {"portRange": {"min": 9980, "max": 9999}}}}),
            "with tls.implicitPort set, passive.portRange must not include 9990: the pod's implicit FTPS listener uses it",
        ),
        (
            "implicit FTPS and 49 passive ports",
            json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 990},
                            "passive": {"portRange": {"min": 40000, "max": 40048}}}}),
            "with tls.implicitPort set, passive.portRange may hold at most 48 ports",
        ),
        (
            "implicit FTPS on a NodePort outside the node port range",
            json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 990},
                            "service": {"type": "NodePort", "controlPort": 30021}}}),
            "with service.type NodePort, tls.implicitPort must lie within 30000-32767",
        ),
        (
            "lockout of no failed logins",
            json!({"spec": {"limits": {"maxFailedLoginsPerIP": 0}}}),
            "spec.limits.maxFailedLoginsPerIP in body should be greater than or equal to 1",
        ),
        (
            "an hour-long drain",
            json!({"spec": {"shutdownGraceSeconds": 3601}}),
            "spec.shutdownGraceSeconds in body should be less than or equal to 3600",
        ),
        (
            "internal CIDR that is not one",
            json!({"spec": {"passive": {"internalCIDRs": ["10.0.0.0/8", "pods"]}}}),
            "internalCIDRs must be CIDRs such as 10.0.0.0/8",
        ),
        (
            "negative replicas",
            json!({"spec": {"replicas": -1}}),
            "spec.replicas in body should be greater than or equal to 0",
        ),
        (
            "zero idle timeout",
            json!({"spec": {"limits": {"idleTimeoutSeconds": 0}}}),
            "spec.limits.idleTimeoutSeconds in body should be greater than or equal to 1",
        ),
        (
            "claim size that is not a quantity",
            json!({"spec": {"storage": {"emptyDir": null, "volumeClaimTemplate": {"size": "lots"}}}}),
            "storage.volumeClaimTemplate.size must be a quantity above zero",
        ),
        (
            "claim size of nothing",
            json!({"spec": {"storage": {"emptyDir": null, "volumeClaimTemplate": {"size": "0"}}}}),
            "storage.volumeClaimTemplate.size must be a quantity above zero",
        ),
        (
            "emptyDir size limit that is not a quantity",
            json!({"spec": {"storage": {"emptyDir": {"sizeLimit": "lots"}}}}),
            "storage.emptyDir.sizeLimit must be a quantity above zero",
        ),
        (
            "memory limit that is not a quantity",
            json!({"spec": {"resources": {"limits": {"memory": "lots"}}}}),
            "spec.resources.limits[memory]: Invalid value: …: resources.limits and resources.requests must be quantities of at least zero",
        ),
        (
            "negative CPU request",
            json!({"spec": {"resources": {"requests": {"cpu": "-1"}}}}),
            "spec.resources.requests[cpu]: Invalid value: …: resources.limits and resources.requests must be quantities of at least zero",
        ),
        (
            "negative CPU request as a number",
            json!({"spec": {"resources": {"requests": {"cpu": -1}}}}),
            "resources.limits and resources.requests must be quantities of at least zero",
        ),
        (
            "eight resources in limits",
            json!({"spec": {"resources": {"limits": eight_resources()}}}),
            "spec.resources.limits: Too many: 8: must have at most 7 items",
        ),
        (
            "storage class that cannot name one",
            json!({"spec": {"storage": {"emptyDir": null,
                                        "volumeClaimTemplate": {"size": "1Gi", "storageClassName": "Bad_Class"}}}}),
            "storage.volumeClaimTemplate.storageClassName must be a StorageClass name",
        ),
        (
            "users Secret that cannot name one",
            json!({"spec": {"users": {"secretName": "Bad_Secret"}}}),
            "users.secretName must be a Secret name",
        ),
        (
            "users key that climbs out of the volume",
            json!({"spec": {"users": {"key": "../x"}}}),
            "users.key must be a Secret key",
        ),
        (
            "users key of a dot",
            json!({"spec": {"users": {"key": "."}}}),
            "users.key must be a Secret key",
        ),
        (
            "TLS Secret that cannot name one",
            json!({"spec": {"tls": {"secretName": "Bad Secret"}}}),
            "tls.secretName must be a Secret name",
        ),
        (
            "claim that cannot name one",
            json!({"spec": {"storage": {"emptyDir": null, "existingClaim": {"claimName": "Bad_Claim"}}}}),
            "storage.existingClaim.claimName must be a PersistentVolumeClaim name",
        ),
        (
            "load balancer class that is not a qualified name",
            json!({"spec": {"service": {"loadBalancerClass": "not a class!"}}}),
            "service.loadBalancerClass must be like example.com/lb",
        ),
        (
            "pod label key with a space",
            json!({"spec": {"podLabels": {"bad key!": "x"}}}),
            "podLabels keys must be like team or example.com/tier",
        ),
        (
            "pod label value with a slash",
            json!({"spec": {"podLabels": {"team": "a/b"}}}),
            "podLabels values must be label values",
        ),
        (
            "node selector value over 63 characters",
            json!({"spec": {"nodeSelector": {"disk": "s".repeat(64)}}}),
            "spec.nodeSelector.disk: Too long: may not be more than 63 bytes",
        ),
        (
            "node selector key with an empty prefix",
            json!({"spec": {"nodeSelector": {"/disk": "ssd"}}}),
            "nodeSelector keys must be like",
        ),
        (
            "pod annotation key with a prefix too long",
            json!({"spec": {"podAnnotations": {format!("{}.example.com/note", "a".repeat(250)): "x"}}}),
            "podAnnotations keys must be like",
        ),
        (
            "Service annotation key that is not a qualified name",
            json!({"spec": {"service": {"annotations": {"bad key": "x"}}}}),
            "service.annotations keys must be like",
        ),
        (
            "toleration operator and effect that do not exist",
            json!({"spec": {"tolerations": [{"operator": "Sometimes", "effect": "Never"}]}}),
            "spec.tolerations[0].operator: Unsupported value: \"Sometimes\": supported values: \"\", \"Equal\", \"Exists\"",
        ),
        (
            "toleration effect that does not exist",
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "Never"}]}}),
            "spec.tolerations[0].effect: Unsupported value: \"Never\"",
        ),
        (
            "memory request above its limit",
            json!({"spec": {"resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "256Mi"}}}}),
            "resources.requests.memory must not exceed resources.limits.memory",
        ),
        (
            "CPU request above its limit, one of them a number",
            json!({"spec": {"resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}}}),
            "resources.requests.cpu must not exceed resources.limits.cpu",
        ),
        (
            "ephemeral storage request above its limit",
            json!({"spec": {"resources": {"requests": {"ephemeral-storage": "2Gi"},
                                          "limits": {"ephemeral-storage": "1Gi"}}}}),
            "resources.requests.ephemeral-storage must not exceed resources.limits.ephemeral-storage",
        ),
        (
            "toleration with operator Exists and a value",
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists", "value": "ftp"}]}}),
            "tolerations: operator Exists takes no value",
        ),
        (
            "toleration seconds without effect NoExecute",
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]}}),
            "tolerationSeconds needs effect NoExecute",
        ),
        (
            "toleration without a key and without operator Exists",
            json!({"spec": {"tolerations": [{"operator": "Equal", "value": "x"}]}}),
            "an empty key needs operator Exists",
        ),
        (
            "node affinity weight beyond 100 (and int32)",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 99_999_999_999_i64, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}}),
            "preferredDuringSchedulingIgnoredDuringExecution[0].weight in body should be less than or equal to 100",
        ),
        (
            "pod anti-affinity weight of zero",
            json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 0, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}}}),
            "preferredDuringSchedulingIgnoredDuringExecution[0].weight in body should be greater than or equal to 1",
        ),
        (
            "node affinity operator that does not exist",
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "Bogus"}]}]}}}}}),
            "operator: Unsupported value: \"Bogus\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\"",
        ),
        (
            "pod affinity operator only nodes know",
            json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}}]}}}}),
            "operator: Unsupported value: \"Gt\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
        ),
        (
            "name that cannot name a Service",
            json!({"metadata": {"name": "1-ftp"}}),
            "metadata.name must be at most 45 characters",
        ),
        (
            "name too long for the replica Services",
            json!({"metadata": {"name": "a".repeat(46)}}),
            "metadata.name must be at most 45 characters",
        ),
    ]
}

/// Whether `message` contains `expected`, each `…` in it matching one value
/// as printed (text without whitespace), so the parts cannot come from
/// different errors of one refusal.
fn mentions(message: &str, expected: &str) -> bool {
    let mut parts = expected.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(at) = message.find(first) else {
        return false;
    };
    let mut rest = &message[at + first.len()..];
    for part in parts {
        match rest.find(part) {
            Some(at) if !rest[..at].contains(char::is_whitespace) => {
                rest = &rest[at + part.len()..];
            }
            _ => return false,
        }
    }
    true
}

#[test]
fn an_ellipsis_matches_one_printed_value() {
    let refusal =
        r#"spec.a: Invalid value: "lots": must be a quantity, spec.b: Invalid value: "x": other"#;
    assert!(mentions(
        refusal,
        "spec.a: Invalid value: …: must be a quantity"
    ));
    assert!(mentions(refusal, "spec.b: Invalid value: …: other"));
    assert!(!mentions(refusal, "spec.a: Invalid value: …: other"));
    assert!(!mentions(refusal, "spec.c: Invalid value: …: other"));
}

#[tokio::test]
async fn the_apiserver_refuses_invalid_specs_with_a_useful_message() -> Result<()> {
    let ns = shared_namespace("crd-invalid").await?;
    support::install_crd(&ns.client).await?;
    let api = ftp_api(ns.client.clone(), &ns.name);

    // The base is valid, so each refusal below is due to its one change.
    create(&api, &valid("baseline")).await?;

    let mut failures = Vec::new();
    for (index, (what, change, expected)) in invalid_cases().into_iter().enumerate() {
        let mut object = valid(&format!("case-{index}"));
        merge(&mut object, &change);
        match create(&api, &object).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !mentions(&status.message, expected) {
                    failures.push(format!(
                        "{what}: message {:?} lacks {expected:?}",
                        status.message
                    ));
                }
            }
            Err(error) => failures.push(format!("{what}: unexpected error {error}")),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// Specs a person would write, each accepted: the rules refuse only what
/// they should.
#[tokio::test]
async fn the_apiserver_accepts_valid_variants() -> Result<()> {
    let ns = shared_namespace("crd-valid").await?;
    support::install_crd(&ns.client).await?;
    let api = ftp_api(ns.client.clone(), &ns.name);
    let variants = [
        json!({"spec": {"service": {"type": "ClusterIP"}}}),
        json!({"spec": {"service": {"type": "NodePort", "controlPort": 30021}}}),
        json!({"spec": {"replicas": 3, "service": {
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
            "loadBalancerClass": "example.com/lb",
            "loadBalancerSourceRanges": ["203.0.113.0/24", "2001:db8::/32"],
            "allocateLoadBalancerNodePorts": false,
            "externalTrafficPolicy": "Cluster"}}}),
        json!({"spec": {"passive": {"portRange": {"min": 40000, "max": 40048},
                                    "advertisedAddress": "ftp.example.com",
                                    "internalCIDRs": ["10.0.0.0/8"]}}}),
        json!({"spec": {"passive": {"advertisedAddress": "203.0.113.5"}}}),
        json!({"spec": {"tls": {"secretName": "ftp-tls", "mode": "Optional"}, "activeMode": true}}),
        json!({"spec": {"users": null, "anonymous": {"enabled": true, "home": "/pub"}}}),
        json!({"spec": {"storage": {"emptyDir": null, "existingClaim": {"claimName": "ftp-data"}}}}),
        json!({"spec": {"storage": {"emptyDir": null,
                                    "volumeClaimTemplate": {"size": "10Gi", "storageClassName": "fast"}}}}),
        json!({"spec": {"limits": {"maxSessions": 50, "maxSessionsPerIP": 5, "idleTimeoutSeconds": 60,
                                   "maxLoginAttempts": 2, "maxFailedLoginsPerIP": 100, "lockoutSeconds": 60}}}),
        json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 990},
                        "passive": {"portRange": {"min": 40000, "max": 40047}}}}),
        json!({"spec": {"tls": {"secretName": "ftp-tls", "implicitPort": 30990},
                        "service": {"type": "NodePort", "controlPort": 30021}}}),
        json!({"spec": {"shutdownGraceSeconds": 600}}),
        json!({"spec": {"passive": {"advertisedAddress": format!("{}.example.com", "a".repeat(63))}}}),
        json!({"spec": {"passive": {"advertisedAddress": "ftp1.example.com"}}}),
        json!({"spec": {"passive": {"advertisedAddress": "1.2.3.example"}}}),
        json!({"spec": {"passive": {"advertisedAddress": "255.255.255.255"}}}),
        json!({"spec": {"storage": {"emptyDir": {"sizeLimit": "500Mi"}}}}),
        json!({"spec": {"storage": {"emptyDir": {"sizeLimit": 1_000_000}}}}),
        json!({"spec": {"storage": {"emptyDir": null, "volumeClaimTemplate": {"size": "1.5e9"}}}}),
        json!({"spec": {"resources": {"requests": {"cpu": 0, "memory": "64Mi"},
                                      "limits": {"cpu": "1500m", "memory": "1Gi", "example.com/gpu": 1}}}}),
        json!({"spec": {"resources": {"requests": {"memory": "1Gi", "cpu": "2"},
                                      "limits": {"memory": "1024Mi"}}}}),
        json!({"spec": {"resources": {"requests": seven_resources(), "limits": seven_resources()}}}),
        // Zero may be written "-0", as Kubernetes allows.
        json!({"spec": {"resources": {"requests": {"cpu": "-0"}}}}),
        // The rules compare cpu, memory and ephemeral-storage only; the
        // operator's validate step refuses this one (operator tests).
        json!({"spec": {"resources": {"requests": {"example.com/gpu": 2},
                                      "limits": {"example.com/gpu": 1}}}}),
        json!({"spec": {"users": {"secretName": "ftp.users-1", "key": "users_v2.toml"},
                        "tls": {"secretName": "ftp-tls.example"},
                        "storage": {"emptyDir": null, "volumeClaimTemplate": {"size": "1Gi", "storageClassName": "fast.ssd"}}}}),
        json!({"spec": {"storage": {"emptyDir": null, "existingClaim": {"claimName": "data.v1"}}}}),
        json!({"spec": {"service": {"loadBalancerClass": "service.k8s.aws/nlb"}}}),
        json!({"spec": {"podLabels": {"team": "ftp", "example.com/tier": "", "a_b.c-d": "A.b_c-1"},
                        "nodeSelector": {"kubernetes.io/os": "linux", "disk": "s".repeat(63)},
                        "podAnnotations": {"note": "anything / at all!", "prometheus.io/scrape": "true",
                                           "Example.COM/Owner": "as Kubernetes, which lowercases annotation keys"}}}),
        json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ftp", "effect": "NoSchedule"},
                                        {"operator": "Exists"},
                                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                         "effect": "NoExecute", "tolerationSeconds": 30}]}}),
        json!({"spec": {"affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}],
                     "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["bad-node"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                  "labelSelector": {"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}}}]}}}}),
    ];
    for (index, change) in variants.iter().enumerate() {
        let mut object = valid(&format!("variant-{index}"));
        merge(&mut object, change);
        if let Err(error) = create(&api, &object).await {
            bail!("variant {change} refused: {error}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn volume_claim_template_cannot_change_after_creation() -> Result<()> {
    let ns = shared_namespace("crd-immutable").await?;
    support::install_crd(&ns.client).await?;
    let api = ftp_api(ns.client.clone(), &ns.name);
    let mut object = valid("claims");
    merge(
        &mut object,
        &json!({"spec": {"storage": {"emptyDir": null, "volumeClaimTemplate": {"size": "1Gi"}}}}),
    );
    create(&api, &object).await?;

    let grow = json!({"spec": {"storage": {"volumeClaimTemplate": {"size": "2Gi"}}}});
    let error = api
        .patch("claims", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .expect_err("the claim template is immutable");
    assert!(
        error
            .to_string()
            .contains("storage.volumeClaimTemplate size and storageClassName are immutable"),
        "{error}"
    );
    let class = json!({"spec": {"storage": {"volumeClaimTemplate": {"storageClassName": "fast"}}}});
    let error = api
        .patch("claims", &PatchParams::default(), &Patch::Merge(&class))
        .await
        .expect_err("setting a storage class later is refused");
    assert!(error.to_string().contains("are immutable"), "{error}");

    let switch = json!({"spec": {"storage": {"volumeClaimTemplate": null, "emptyDir": {}}}});
    let error = api
        .patch("claims", &PatchParams::default(), &Patch::Merge(&switch))
        .await
        .expect_err("switching away from claim templates is refused");
    assert!(
        error
            .to_string()
            .contains("storage cannot switch to or from volumeClaimTemplate"),
        "{error}"
    );

    // Other fields still change, and what becomes of the claims on delete.
    let keep = json!({"spec": {"storage": {"volumeClaimTemplate": {"whenDeleted": "Retain"}}}});
    api.patch("claims", &PatchParams::default(), &Patch::Merge(&keep))
        .await?;
    let scale = json!({"spec": {"replicas": 2}});
    api.patch("claims", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    Ok(())
}

/// A Service's loadBalancerClass cannot change, so neither can the
/// FtpServer's while it is a LoadBalancer: otherwise the operator's apply
/// would fail forever.
#[tokio::test]
async fn load_balancer_class_cannot_change_after_creation() -> Result<()> {
    let ns = shared_namespace("crd-lb-class").await?;
    support::install_crd(&ns.client).await?;
    let api = ftp_api(ns.client.clone(), &ns.name);
    const MESSAGE: &str = "service.loadBalancerClass cannot be set, changed or removed on a LoadBalancer FtpServer: Kubernetes does not allow changing a Service's loadBalancerClass; create a new FtpServer with the class you want";
    let refused = |error: kube::Error| {
        assert!(error.to_string().contains(MESSAGE), "{error}");
    };

    let mut object = valid("classed");
    merge(
        &mut object,
        &json!({"spec": {"service": {"loadBalancerClass": "example.com/a"}}}),
    );
    create(&api, &object).await?;
    let class = |class: Value| json!({"spec": {"service": {"loadBalancerClass": class}}});
    for change in [json!("example.com/b"), Value::Null] {
        let error = api
            .patch(
                "classed",
                &PatchParams::default(),
                &Patch::Merge(&class(change.clone())),
            )
            .await
            .expect_err("the class is fixed");
        refused(error);
    }
    // The same class and other changes are fine.
    api.patch(
        "classed",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"spec": {"replicas": 2, "service": {"loadBalancerClass": "example.com/a"}}}),
        ),
    )
    .await?;

    // Setting one later is a change too.
    create(&api, &valid("unclassed")).await?;
    let error = api
        .patch(
            "unclassed",
            &PatchParams::default(),
            &Patch::Merge(&class(json!("example.com/a"))),
        )
        .await
        .expect_err("a class cannot be added");
    refused(error);
    Ok(())
}

/// Every advertisedAddress the apiserver accepts, kubeftp-server takes for
/// what it looks like (an address it cannot parse makes it exit), and the
/// names and addresses a person would write are accepted.
#[tokio::test]
async fn advertised_addresses_the_apiserver_accepts_are_the_servers() -> Result<()> {
    use kubeftp_server::address::Advertised;
    let ns = shared_namespace("crd-advertised").await?;
    support::install_crd(&ns.client).await?;
    let api = ftp_api(ns.client.clone(), &ns.name);
    let label = |n: usize| "a".repeat(n);
    let longest = [label(63), label(63), label(63), label(61)].join(".");
    let cases: Vec<(String, bool)> = vec![
        ("203.0.113.5".into(), true),
        ("0.0.0.0".into(), true),
        ("ftp.example.com".into(), true),
        ("localhost".into(), true),
        ("xn--bcher-kva.example".into(), true),
        ("1-2-3-4.nip.io".into(), true),
        ("123.example".into(), true),
        (format!("{}.example.com", label(63)), true),
        (longest.clone(), true),
        (format!("{}.example.com", label(64)), false),
        (format!("{longest}a"), false),
        ("256.1.1.1".into(), false),
        ("1.2.3".into(), false),
        ("1.2.3.4.5".into(), false),
        ("01.02.03.04".into(), false),
        ("example.123".into(), false),
        ("-ftp.example.com".into(), false),
        ("ftp-.example.com".into(), false),
        ("ftp..example.com".into(), false),
        ("ftp_1.example.com".into(), false),
        ("2001:db8::1".into(), false),
        ("::ffff:203.0.113.5".into(), false),
    ];
    let mut failures = Vec::new();
    for (index, (address, expected)) in cases.iter().enumerate() {
        let mut object = valid(&format!("address-{index}"));
        merge(
            &mut object,
            &json!({"spec": {"passive": {"advertisedAddress": address}}}),
        );
        let accepted = match create(&api, &object).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 422 => false,
            Err(error) => bail!("{address}: {error}"),
        };
        if accepted != *expected {
            failures.push(format!(
                "{address}: accepted {accepted}, expected {expected}"
            ));
        }
        if accepted {
            let all_digits = address
                .rsplit('.')
                .next()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_digit());
            match address.parse::<Advertised>() {
                Ok(Advertised::Ip(_)) if all_digits => {}
                Ok(Advertised::Host(_)) if !all_digits => {}
                parsed => {
                    failures.push(format!("{address}: accepted, the server reads {parsed:?}"))
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}

/// The operator's check of `spec.resources` (which the CRD's rules cannot
/// afford in full) takes exactly what the apiserver takes in a pod's
/// container, so an FtpServer it lets through never has its StatefulSet
/// refused, and one it refuses would have been. The apiserver judges each
/// case as a pod created with dryRun.
#[tokio::test]
async fn container_resources_the_operator_takes_are_the_apiservers() -> Result<()> {
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    use kubeftp_api::FtpServerSpec;
    use kubeftp_operator::validate::validate;
    let ns = shared_namespace("resources-agree").await?;
    // The pods' account, which the controller manager may not have made yet.
    let accounts: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &ns.name);
    let account = serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => bail!("creating the default service account: {error}"),
    }
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let cases = [
        json!({"requests": {"cpu": "500m", "memory": "64Mi"}}),
        json!({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
        json!({"limits": {"storage": "1Gi"}}),
        json!({"limits": {"pods": "1"}}),
        // Extended resources: whole units, requests equal to limits.
        json!({"limits": {"example.com/gpu": 1}}),
        json!({"requests": {"example.com/gpu": 1}, "limits": {"example.com/gpu": 1}}),
        json!({"requests": {"example.com/gpu": 1}}),
        json!({"requests": {"example.com/gpu": 1}, "limits": {"example.com/gpu": 2}}),
        json!({"limits": {"example.com/gpu": "500m"}}),
        json!({"limits": {"requests.example.com/gpu": 1}}),
        // Names in the kubernetes.io domain count as Kubernetes' own.
        json!({"requests": {"example.kubernetes.io/widget": "500m"}}),
        json!({"requests": {"kubernetes.io/widget": 1}, "limits": {"kubernetes.io/widget": 2}}),
        json!({"limits": {"requests.kubernetes.io/widget": "1"}}),
        json!({"limits": {"example.kubernetes.io.example.com/widget": "500m"}}),
        // Huge pages: whole pages, never overcommitted, with cpu or memory.
        json!({"limits": {"hugepages-2Mi": "4Mi", "memory": "1Gi"}}),
        json!({"limits": {"hugepages-2Mi": "3Mi", "memory": "1Gi"}}),
        json!({"limits": {"hugepages-2Mi": "4Mi"}}),
        json!({"requests": {"hugepages-2Mi": "2Mi", "memory": "1Gi"},
               "limits": {"hugepages-2Mi": "4Mi", "memory": "1Gi"}}),
        json!({"limits": {"hugepages-x": "4Mi", "memory": "1Gi"}}),
    ];
    let mut failures = Vec::new();
    for (index, resources) in cases.iter().enumerate() {
        let mut spec = valid("unused")["spec"].clone();
        spec["resources"] = resources.clone();
        let spec: FtpServerSpec = serde_json::from_value(spec)?;
        let ours = validate(&spec).map_err(|refusal| refusal.0);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("resources-{index}")},
            "spec": {"containers": [{"name": "ftp", "image": "kubeftp-server", "resources": resources}]},
        }))?;
        let apiservers = match pods.create(&dry_run, &pod).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 422 => Err(status.message),
            Err(error) => bail!("{resources}: {error}"),
        };
        if ours.is_ok() != apiservers.is_ok() {
            failures.push(format!(
                "{resources}: the operator: {ours:?}; the apiserver: {apiservers:?}"
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}
