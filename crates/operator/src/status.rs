//! FtpServer status from what the cluster shows: pure, so every condition
//! is unit-tested.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kubeftp_api::condition::{ADDRESS_ASSIGNED, DEGRADED, PROGRESSING, READY};
use kubeftp_api::{Endpoint, FtpServer, FtpServerStatus};

use crate::labels;

/// What the reconcile observed, the inputs of the status.
pub struct Observed<'a> {
    /// The StatefulSet as stored; None when it was not read this time (the
    /// reconcile failed before): the replica counts and Progressing then
    /// stay as the last status has them rather than dropping to zero.
    pub stateful_set: Option<&'a StatefulSet>,
    /// Per replica, the address it advertises (None: unknown yet).
    pub addresses: &'a [Option<String>],
    /// Why the children cannot be brought to the desired state.
    pub degraded: Option<Degraded>,
}

/// A failure to bring the children to the desired state.
pub struct Degraded {
    pub reason: String,
    pub message: String,
    /// The apiserver is unavailable or raced us, and the replicas may well
    /// serve on: Ready stays as it was. Otherwise (spec refused, forbidden)
    /// the FtpServer is not Ready.
    pub transient: bool,
}

impl Degraded {
    pub fn new(reason: impl Into<String>, message: impl Into<String>, transient: bool) -> Self {
        Degraded {
            reason: reason.into(),
            message: message.into(),
            transient,
        }
    }
}

pub fn status(ftp: &FtpServer, observed: &Observed, now: Timestamp) -> FtpServerStatus {
    let spec = &ftp.spec;
    let generation = ftp.metadata.generation;
    let previous = ftp.status.as_ref();
    let set_status = observed.stateful_set.and_then(|s| s.status.as_ref());
    let (replicas, ready_replicas) = match (observed.stateful_set, previous) {
        (None, Some(previous)) => (previous.replicas, previous.ready_replicas),
        _ => (
            set_status.map_or(0, |s| s.replicas),
            set_status.and_then(|s| s.ready_replicas).unwrap_or(0),
        ),
    };
    let updated_replicas = set_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let set_generation = observed.stateful_set.and_then(|s| s.metadata.generation);
    let set_observed = set_status.and_then(|s| s.observed_generation);

    let control_port = spec.service.control_port;
    let passive_ports = spec.passive.port_range.to_string();
    let endpoints: Vec<Endpoint> = (0..spec.replicas)
        .map(|ordinal| {
            let address = observed.addresses.get(ordinal as usize).cloned().flatten();
            Endpoint {
                pod: labels::pod(ftp, ordinal),
                service: labels::service(ftp, ordinal),
                url: address
                    .as_ref()
                    .map(|a| format!("ftp://{a}:{control_port}/")),
                address,
                control_port,
                passive_ports: passive_ports.clone(),
            }
        })
        .collect();

    let pending: Vec<&str> = endpoints
        .iter()
        .filter(|e| e.address.is_none())
        .map(|e| e.service.as_str())
        .collect();
    let address_assigned = if pending.is_empty() {
        (
            true,
            "AddressesKnown",
            "every replica has an address".to_owned(),
        )
    } else {
        (
            false,
            "AddressPending",
            format!("waiting for an address on Service {}", pending.join(", ")),
        )
    };

    let rolled_out = set_generation.is_some()
        && set_generation == set_observed
        && replicas == spec.replicas
        && updated_replicas == spec.replicas;
    let progressing = if rolled_out {
        (
            false,
            "RolledOut",
            format!("{replicas} replica(s) up to date"),
        )
    } else {
        (
            true,
            "RollingOut",
            format!("{updated_replicas} of {} replica(s) updated", spec.replicas),
        )
    };

    let all_ready = ready_replicas >= spec.replicas;
    let serving_failure = observed.degraded.as_ref().filter(|d| !d.transient);
    let ready = match (serving_failure, all_ready, pending.is_empty()) {
        (Some(degraded), _, _) => (false, "Degraded", format!("degraded: {}", degraded.reason)),
        (None, false, _) => (
            false,
            "ReplicasNotReady",
            format!("{ready_replicas} of {} replica(s) ready", spec.replicas),
        ),
        (None, true, false) => (false, "AddressPending", address_assigned.2.clone()),
        (None, true, true) => (
            true,
            "Ready",
            format!("{ready_replicas} replica(s) serving"),
        ),
    };
    let degraded = match &observed.degraded {
        Some(degraded) => (true, degraded.reason.as_str(), degraded.message.clone()),
        None => (false, "AsExpected", "children match the spec".to_owned()),
    };

    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let condition =
        |type_: &str, state: (bool, &str, String)| condition_at(old, type_, state, generation, now);

    // Not having read the StatefulSet says nothing about its rollout.
    let progressing_condition = match (
        observed.stateful_set,
        old.iter().find(|c| c.type_ == PROGRESSING),
    ) {
        (None, Some(previous)) => previous.clone(),
        _ => condition(PROGRESSING, progressing),
    };

    let addresses = endpoints
        .iter()
        .map(|e| e.address.as_deref().unwrap_or("<pending>"))
        .collect::<Vec<_>>()
        .join(",");
    FtpServerStatus {
        observed_generation: generation,
        addresses: (!addresses.is_empty()).then_some(addresses),
        conditions: vec![
            condition(READY, ready),
            condition(ADDRESS_ASSIGNED, address_assigned),
            progressing_condition,
            condition(DEGRADED, degraded),
        ],
        replicas,
        ready_replicas,
        endpoints,
        ports: Some(format!("{control_port},{passive_ports}")),
    }
}

/// A condition of `type_`, (status, reason, message); its transition time
/// moves only when its status does, so an unchanged status is not news.
fn condition_at(
    old: &[Condition],
    type_: &str,
    (value, reason, message): (bool, &str, String),
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if value { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status of an FtpServer that does not parse (`failure` says why):
/// Degraded and not Ready; what was last seen of the replicas stays, as
/// the operator cannot look at them without a spec.
pub fn unparsed_status(
    previous: Option<&FtpServerStatus>,
    generation: Option<i64>,
    failure: &Degraded,
    now: Timestamp,
) -> FtpServerStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let old = std::mem::take(&mut status.conditions);
    let ready = (false, "Degraded", format!("degraded: {}", failure.reason));
    let degraded = (true, failure.reason.as_str(), failure.message.clone());
    let mut conditions: Vec<Condition> = old
        .iter()
        .filter(|c| c.type_ != READY && c.type_ != DEGRADED)
        .cloned()
        .collect();
    conditions.insert(0, condition_at(&old, READY, ready, generation, now));
    conditions.push(condition_at(&old, DEGRADED, degraded, generation, now));
    status.conditions = conditions;
    status.observed_generation = generation;
    status
}

/// The conditions whose status changed from `old` to `new`: each is
/// worth an Event.
pub fn transitions<'a>(
    old: Option<&'a FtpServerStatus>,
    new: &'a FtpServerStatus,
) -> Vec<&'a Condition> {
    new.conditions
        .iter()
        .filter(|condition| {
            let before =
                old.and_then(|old| old.conditions.iter().find(|c| c.type_ == condition.type_));
            before.map(|c| &c.status) != Some(&condition.status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::ftp;

    fn set(yaml: &str) -> StatefulSet {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn condition<'a>(status: &'a FtpServerStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    const SPEC: &str = "replicas: 2\nusers: {secretName: u}\nstorage: {emptyDir: {}}";
    const ROLLED_OUT: &str = "metadata: {generation: 3}\nstatus: {observedGeneration: 3, replicas: 2, readyReplicas: 2, updatedReplicas: 2}";

    /// The status of `ftp` with both replicas rolled out and addressed.
    fn rolled_out(ftp: &FtpServer) -> FtpServerStatus {
        let set = set(ROLLED_OUT);
        let addresses = [Some("a.example".to_owned()), Some("b.example".to_owned())];
        let observed = Observed {
            stateful_set: Some(&set),
            addresses: &addresses,
            degraded: None,
        };
        status(ftp, &observed, now())
    }

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn ready_when_every_replica_is_ready_and_has_an_address() {
        let mut ftp = ftp(SPEC);
        ftp.metadata.generation = Some(7);
        let set = set(ROLLED_OUT);
        let addresses = [
            Some("203.0.113.1".to_owned()),
            Some("lb.example.com".to_owned()),
        ];
        let observed = Observed {
            stateful_set: Some(&set),
            addresses: &addresses,
            degraded: None,
        };
        let status = status(&ftp, &observed, now());
        assert_eq!(status.observed_generation, Some(7));
        assert_eq!(condition(&status, READY).status, "True");
        assert_eq!(condition(&status, READY).observed_generation, Some(7));
        assert_eq!(condition(&status, ADDRESS_ASSIGNED).status, "True");
        assert_eq!(condition(&status, PROGRESSING).status, "False");
        assert_eq!(condition(&status, DEGRADED).status, "False");
        assert_eq!((status.replicas, status.ready_replicas), (2, 2));
        assert_eq!(status.ports.as_deref(), Some("21,30000-30009"));
        assert_eq!(
            status.addresses.as_deref(),
            Some("203.0.113.1,lb.example.com")
        );
        assert_eq!(
            status.endpoints[1],
            Endpoint {
                pod: "files-1".into(),
                service: "files-1".into(),
                address: Some("lb.example.com".into()),
                control_port: 21,
                passive_ports: "30000-30009".into(),
                url: Some("ftp://lb.example.com:21/".into()),
            }
        );
    }

    #[test]
    fn not_ready_while_an_address_is_pending() {
        let ftp = ftp(SPEC);
        let set = set(ROLLED_OUT);
        let addresses = [Some("203.0.113.1".to_owned()), None];
        let observed = Observed {
            stateful_set: Some(&set),
            addresses: &addresses,
            degraded: None,
        };
        let status = status(&ftp, &observed, now());
        let ready = condition(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "AddressPending")
        );
        let assigned = condition(&status, ADDRESS_ASSIGNED);
        assert_eq!(assigned.status, "False");
        assert!(assigned.message.contains("files-1"), "{}", assigned.message);
        assert_eq!(status.endpoints[1].url, None);
        assert_eq!(status.addresses.as_deref(), Some("203.0.113.1,<pending>"));
    }

    #[test]
    fn not_ready_while_rolling_out_or_degraded() {
        let ftp = ftp(SPEC);
        let rolling = set(
            "metadata: {generation: 4}\nstatus: {observedGeneration: 3, replicas: 2, readyReplicas: 1, updatedReplicas: 1}",
        );
        let addresses = [Some("a.example".to_owned()), Some("b.example".to_owned())];
        let observed = Observed {
            stateful_set: Some(&rolling),
            addresses: &addresses,
            degraded: None,
        };
        let rolling_status = status(&ftp, &observed, now());
        assert_eq!(condition(&rolling_status, READY).reason, "ReplicasNotReady");
        assert_eq!(condition(&rolling_status, PROGRESSING).status, "True");

        let set = set(ROLLED_OUT);
        let degraded = Some(Degraded::new(
            "Rejected",
            "applying Service files-0: nope",
            false,
        ));
        let observed = Observed {
            stateful_set: Some(&set),
            addresses: &addresses,
            degraded,
        };
        let degraded_status = status(&ftp, &observed, now());
        assert_eq!(condition(&degraded_status, READY).reason, "Degraded");
        let degraded = condition(&degraded_status, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "Rejected")
        );
        assert!(degraded.message.contains("nope"));
    }

    #[test]
    fn transition_times_move_only_on_change_so_status_is_stable() {
        let mut ftp = ftp(SPEC);
        let set = set(ROLLED_OUT);
        let addresses = [Some("a.example".to_owned()), None];
        let observed = Observed {
            stateful_set: Some(&set),
            addresses: &addresses,
            degraded: None,
        };
        let first = status(&ftp, &observed, now());
        ftp.status = Some(first.clone());
        let later: Timestamp = "2030-01-01T01:00:00Z".parse().unwrap();
        assert_eq!(
            status(&ftp, &observed, later),
            first,
            "no change, same status"
        );
        assert!(transitions(Some(&first), &first).is_empty());

        let addresses = [Some("a.example".to_owned()), Some("b.example".to_owned())];
        let observed = Observed {
            stateful_set: Some(&set),
            addresses: &addresses,
            degraded: None,
        };
        let second = status(&ftp, &observed, later);
        assert_eq!(condition(&second, READY).last_transition_time, Time(later));
        assert_eq!(
            condition(&second, DEGRADED).last_transition_time,
            Time(now())
        );
        let changed: Vec<&str> = transitions(Some(&first), &second)
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(changed, [READY, ADDRESS_ASSIGNED]);
    }

    /// A failed reconcile did not read the StatefulSet: that is no news
    /// about the replicas, so the status keeps what it last saw instead of
    /// claiming 0 ready. A transient failure leaves Ready alone too.
    #[test]
    fn a_failure_keeps_what_was_last_seen_of_the_replicas() {
        let mut ftp = ftp(SPEC);
        ftp.metadata.generation = Some(3);
        let addresses = [Some("a.example".to_owned()), Some("b.example".to_owned())];
        let healthy = rolled_out(&ftp);
        assert_eq!(condition(&healthy, READY).status, "True");
        ftp.status = Some(healthy.clone());

        let later: Timestamp = "2030-01-01T01:00:00Z".parse().unwrap();
        let unreachable = status(
            &ftp,
            &Observed {
                stateful_set: None,
                addresses: &addresses,
                degraded: Some(Degraded::new(
                    "Unreachable",
                    "reading Service files-0: connection refused",
                    true,
                )),
            },
            later,
        );
        assert_eq!((unreachable.replicas, unreachable.ready_replicas), (2, 2));
        assert_eq!(unreachable.endpoints, healthy.endpoints);
        assert_eq!(condition(&unreachable, READY), condition(&healthy, READY));
        assert_eq!(
            condition(&unreachable, PROGRESSING),
            condition(&healthy, PROGRESSING)
        );
        let degraded = condition(&unreachable, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "Unreachable")
        );
        assert_eq!(degraded.last_transition_time, Time(later));

        // Refused for good: not Ready, but still no made-up replica counts.
        let rejected = status(
            &ftp,
            &Observed {
                stateful_set: None,
                addresses: &addresses,
                degraded: Some(Degraded::new(
                    "Rejected",
                    "applying Service files-0: nope",
                    false,
                )),
            },
            later,
        );
        assert_eq!((rejected.replicas, rejected.ready_replicas), (2, 2));
        assert_eq!(condition(&rejected, READY).reason, "Degraded");
    }

    /// An FtpServer that no longer parses says so, keeps what was seen of
    /// its replicas, and its status settles: the same failure again
    /// changes nothing, so no write and no reconcile loop.
    #[test]
    fn an_unparsed_ftp_server_is_degraded_and_keeps_its_replicas() {
        let ftp = ftp(SPEC);
        let healthy = rolled_out(&ftp);
        let failure = Degraded::new(
            "Malformed",
            "the FtpServer does not parse: invalid value: integer `99999999999`, expected i32",
            false,
        );
        let later: Timestamp = "2030-01-01T01:00:00Z".parse().unwrap();
        let unparsed = unparsed_status(Some(&healthy), Some(9), &failure, later);
        assert_eq!(unparsed.observed_generation, Some(9));
        assert_eq!(unparsed.endpoints, healthy.endpoints);
        assert_eq!((unparsed.replicas, unparsed.ready_replicas), (2, 2));
        let types: Vec<&str> = unparsed
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, ADDRESS_ASSIGNED, PROGRESSING, DEGRADED]);
        let ready = condition(&unparsed, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Degraded")
        );
        assert_eq!(ready.last_transition_time, Time(later));
        let degraded = condition(&unparsed, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "Malformed")
        );
        assert!(
            degraded.message.contains("99999999999"),
            "{}",
            degraded.message
        );
        assert_eq!(
            condition(&unparsed, ADDRESS_ASSIGNED),
            condition(&healthy, ADDRESS_ASSIGNED)
        );

        let even_later: Timestamp = "2030-01-01T02:00:00Z".parse().unwrap();
        let again = unparsed_status(Some(&unparsed), Some(9), &failure, even_later);
        assert_eq!(again, unparsed);
        assert_eq!(
            unparsed_status(None, Some(1), &failure, now())
                .conditions
                .len(),
            2,
            "without a status to keep, only what is known"
        );
    }
}
