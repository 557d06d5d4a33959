//! Checks a spec before anything is built. The CRD's schema refuses the
//! same specs at admission; this guards objects stored before a rule
//! existed, and gives the build step a spec it can trust.

use kubeftp_api::limits::{
    CONTAINER_CONTROL_PORT, CONTAINER_IMPLICIT_TLS_PORT, CONTAINER_OPS_PORT, MAX_PASSIVE_PORTS,
    MAX_PASSIVE_PORTS_WITH_IMPLICIT_TLS, NODE_PORT_MAX, NODE_PORT_MIN, PASSIVE_PORT_MIN, PORT_MAX,
};
use kubeftp_api::{FtpServerSpec, ServiceType};

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
