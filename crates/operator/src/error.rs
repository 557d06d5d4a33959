//! Reconcile errors and how each is retried.

use std::time::Duration;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the apiserver failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The stored object does not parse as an FtpServer (e.g. written under
    /// an older CRD). Only a change to it can fix that; its status says so.
    #[error("the FtpServer does not parse: {0}")]
    Malformed(String),
    /// A child's name is taken by an object this FtpServer does not own.
    /// The operator leaves it alone: applying over it would take it over,
    /// and deleting the FtpServer would then delete it.
    #[error(
        "{kind} {name} exists and does not belong to this FtpServer; delete or rename it, or give the FtpServer another name"
    )]
    NameTaken { kind: String, name: String },
    /// The watches of the children have not listed them yet (they retry on
    /// their own; the operator's log says why, e.g. missing permissions).
    #[error(
        "the operator's caches of StatefulSets, Services, ConfigMaps, Pods and PersistentVolumeClaims are not filled after {0:?}; see the operator's log"
    )]
    CachesNotFilled(Duration),
}

/// If `error` is the OwnerReferencesPermissionEnforcement admission plugin
/// refusing an owner reference change on one of `plural` to one who may not
/// delete it: what to tell the user, the right it takes and the chart value
/// that grants it.
pub fn owner_references_hint(error: &kube::Error, plural: &str) -> Option<String> {
    let refused = matches!(error, kube::Error::Api(status)
        if status.code == 403
            && status.message.contains("cannot set an ownerRef on a resource you can't delete"));
    refused.then(|| {
        format!(
            "where OwnerReferencesPermissionEnforcement is enforced, this takes delete on \
             {plural} (the chart's ownerReferencesPermissionEnforcement: true)"
        )
    })
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// A short stable label for metrics and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "Conflict",
                kube::Error::Api(status) if status.code == 422 || status.code == 400 => "Rejected",
                kube::Error::Api(status) if status.code == 403 => "Forbidden",
                kube::Error::Api(status) if status.code == 404 => "NotFound",
                kube::Error::Api(_) => "ApiError",
                _ => "Unreachable",
            },
            Error::Malformed(_) => "Malformed",
            Error::NameTaken { .. } => "NameTaken",
            Error::CachesNotFilled(_) => "CachesNotFilled",
        }
    }

    /// Whether retrying without a change can succeed: conflicts, outages and
    /// races yes; a rejected object or missing permissions rarely, so those
    /// are retried slowly.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            "Conflict" | "NotFound" | "ApiError" | "Unreachable" | "CachesNotFilled"
        )
    }

    /// Whether this failure, preceded by `failures_before` consecutive
    /// ones, goes into the status (Degraded, with an Event).
    pub fn is_reported(&self, failures_before: u32) -> bool {
        !self.is_transient() || failures_before >= TRANSIENT_FAILURES_UNREPORTED
    }
}

/// Consecutive transient failures that pass unreported: they clear by
/// themselves (with the backoff below, the fourth comes about 7 s in), and
/// until then the status keeps saying what was last seen.
pub const TRANSIENT_FAILURES_UNREPORTED: u32 = 3;

/// Delay before retry number `failures` (1-based): exponential from 1 s
/// for transient errors, from 30 s for the others, at most 5 minutes.
pub fn backoff(error: &Error, failures: u32) -> Duration {
    let base = if error.is_transient() { 1 } else { 30 };
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs((base << exponent).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Error {
        let status = kube::core::Status::failure("test", "Test").with_code(code);
        Error::kube("testing")(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn classifies_api_errors() {
        assert_eq!(api_error(409).kind(), "Conflict");
        assert!(api_error(409).is_transient());
        assert_eq!(api_error(422).kind(), "Rejected");
        assert!(!api_error(422).is_transient());
        assert_eq!(api_error(403).kind(), "Forbidden");
        assert!(!api_error(403).is_transient());
        assert!(api_error(500).is_transient());
        assert!(!Error::Malformed("x".into()).is_transient());
        let unfilled = Error::CachesNotFilled(Duration::from_secs(30));
        assert_eq!(unfilled.kind(), "CachesNotFilled");
        assert!(unfilled.is_transient(), "the watches retry on their own");
        assert!(unfilled.to_string().contains("30s"), "{unfilled}");
    }

    #[test]
    fn transient_failures_are_reported_only_once_they_persist() {
        let outage = Error::kube("reading Service files-0")(kube::Error::Api(Box::new(
            kube::core::Status::failure("etcdserver: leader changed", "InternalError")
                .with_code(500),
        )));
        let reported: Vec<bool> = (0..5).map(|before| outage.is_reported(before)).collect();
        assert_eq!(reported, [false, false, false, true, true]);
        assert!(api_error(422).is_reported(0));
        assert!(api_error(403).is_reported(0));
        assert!(!api_error(409).is_reported(0));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let conflict = api_error(409);
        let delays: Vec<u64> = (1..=4).map(|n| backoff(&conflict, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(backoff(&conflict, 40).as_secs(), 300);
        assert_eq!(backoff(&api_error(422), 1).as_secs(), 30);
        assert_eq!(backoff(&api_error(422), 5).as_secs(), 300);
    }
}
