//! An FtpServer as the watch delivers it: parsed, or, when it does not
//! parse (stored under an older, looser CRD), what the operator needs to
//! say so in its status. Like kube's `DeserializeGuard`, which keeps only
//! the metadata, one such object does not stop the watch.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kubeftp_api::{FtpServer, FtpServerStatus};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone)]
pub struct Watched(pub Result<FtpServer, Unparsed>);

/// An FtpServer that does not parse.
#[derive(Debug, Clone)]
pub struct Unparsed {
    /// What does not parse, as serde says it.
    pub error: String,
    pub metadata: ObjectMeta,
    /// The status as last written, if it parses.
    pub status: Option<FtpServerStatus>,
}

impl<'de> Deserialize<'de> for Watched {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let error = match FtpServer::deserialize(&value) {
            Ok(ftp) => return Ok(Watched(Ok(ftp))),
            Err(error) => error.to_string(),
        };
        #[derive(Deserialize)]
        struct Parts {
            metadata: ObjectMeta,
            #[serde(default)]
            status: Option<serde_json::Value>,
        }
        let parts = Parts::deserialize(&value).map_err(D::Error::custom)?;
        Ok(Watched(Err(Unparsed {
            error,
            metadata: parts.metadata,
            status: parts.status.and_then(|s| serde_json::from_value(s).ok()),
        })))
    }
}

impl Resource for Watched {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        FtpServer::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        FtpServer::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        FtpServer::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        FtpServer::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(ftp) => ftp.meta(),
            Err(unparsed) => &unparsed.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(ftp) => ftp.meta_mut(),
            Err(unparsed) => &mut unparsed.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unparseable_spec_keeps_its_metadata_and_status() {
        let watched: Watched = serde_json::from_value(json!({
            "apiVersion": "kubeftp.dev/v1alpha1", "kind": "FtpServer",
            "metadata": {"name": "files", "namespace": "ftp", "generation": 4},
            "spec": {"storage": {"emptyDir": {}}, "anonymous": {"enabled": true},
                     "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                         {"weight": 99_999_999_999_i64, "preference": {}}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "addresses": "203.0.113.1"},
        }))
        .unwrap();
        let unparsed = watched.0.unwrap_err();
        assert!(unparsed.error.contains("99999999999"), "{}", unparsed.error);
        assert_eq!(unparsed.metadata.generation, Some(4));
        let status = unparsed.status.unwrap();
        assert_eq!(status.addresses.as_deref(), Some("203.0.113.1"));
    }

    #[test]
    fn a_valid_object_parses() {
        let watched: Watched = serde_json::from_value(json!({
            "apiVersion": "kubeftp.dev/v1alpha1", "kind": "FtpServer",
            "metadata": {"name": "files", "namespace": "ftp"},
            "spec": {"storage": {"emptyDir": {}}, "anonymous": {"enabled": true}},
        }))
        .unwrap();
        assert_eq!(watched.meta().name.as_deref(), Some("files"));
        assert!(watched.0.is_ok());
    }
}
