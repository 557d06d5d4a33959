//! The operator against a real apiserver and kube-controller-manager: the
//! children it creates, address injection, scaling, repair, garbage
//! collection and a write-free steady state.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use kubeftp_api::FtpServer;
use kubeftp_operator::build::{self, Settings};
use kubeftp_testenv::{TestNamespace, shared_namespace};
use serde_json::json;
use support::{Operator, WAIT, eventually};

struct Fixture {
    ns: TestNamespace,
    operator: Operator,
}

impl Fixture {
    async fn new(prefix: &str) -> Result<Fixture> {
        let ns = shared_namespace(prefix).await?;
        support::install_crd(&ns.client).await?;
        let operator = Operator::start(&ns.client, &ns.name);
        Ok(Fixture { ns, operator })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.ns.client.clone(), &self.ns.name)
    }

    async fn create(&self, name: &str, spec: &str) -> Result<FtpServer> {
        let spec = serde_yaml::from_str(spec).context("spec")?;
        let ftp = FtpServer::new(name, spec);
        Ok(self.api().create(&PostParams::default(), &ftp).await?)
    }

    async fn ftp(&self, name: &str) -> Result<FtpServer> {
        Ok(self.api::<FtpServer>().get(name).await?)
    }

    async fn addresses(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let map = self
            .api::<ConfigMap>()
            .get_opt(&format!("{name}-addresses"))
            .await?;
        Ok(map.and_then(|m| m.data).unwrap_or_default())
    }

    async fn service_names(&self, name: &str) -> Result<Vec<String>> {
        let selector = format!("app.kubernetes.io/instance={name}");
        let list = self
            .api::<Service>()
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mut names: Vec<String> = list.into_iter().map(|s| s.name_any()).collect();
        names.sort();
        Ok(names)
    }

    /// Publishes a load balancer address on a Service, as a cloud
    /// controller does.
    async fn publish_ingress(&self, service: &str, ingress: serde_json::Value) -> Result<()> {
        let status = json!({"status": {"loadBalancer": {"ingress": [ingress]}}});
        self.api::<Service>()
            .patch_status(service, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    async fn endpoint_address(&self, name: &str, ordinal: usize) -> Result<Option<String>> {
        let ftp = self.ftp(name).await?;
        Ok(ftp
            .status
            .and_then(|s| s.endpoints.get(ordinal).cloned())
            .and_then(|e| e.address))
    }

    /// Waits until the StatefulSet controller has made `replicas` pods and
    /// written the StatefulSet's status, the FtpServer's status shows it,
    /// and the operator has stopped writing: every later write is then the
    /// test's doing.
    async fn settled(&self, name: &str, replicas: i32) -> Result<()> {
        eventually("the StatefulSet's status, reflected", WAIT, || async {
            let Some(set) = self.api::<StatefulSet>().get_opt(name).await? else {
                return Ok(false);
            };
            let status = set.status.unwrap_or_default();
            let ftp = self.ftp(name).await?.status.unwrap_or_default();
            Ok(status.observed_generation == set.metadata.generation
                && status.replicas == replicas
                && status.updated_replicas == Some(replicas)
                && ftp.replicas == replicas)
        })
        .await?;
        support::quiet(&self.operator).await
    }

    async fn condition(&self, name: &str, type_: &str) -> Result<Option<(String, String)>> {
        let ftp = self.ftp(name).await?;
        Ok(ftp
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason)))
    }
}

const MINIMAL: &str = "users: {secretName: ftp-users}\nstorage: {emptyDir: {}}";

#[tokio::test]
async fn creates_the_children_field_by_field() -> Result<()> {
    let fx = Fixture::new("op-create").await?;
    let ftp = fx
        .create(
            "files",
            "
users: {secretName: ftp-users}
storage: {emptyDir: {}}
passive: {portRange: {min: 30000, max: 30002}}
tls: {secretName: ftp-tls, implicitPort: 990}
",
        )
        .await?;

    let sets = fx.api::<StatefulSet>();
    eventually("the StatefulSet", WAIT, || async {
        Ok(sets.get_opt("files").await?.is_some())
    })
    .await?;
    eventually("the Service", WAIT, || async {
        Ok(fx.service_names("files").await? == ["files-0"])
    })
    .await?;

    // Each child holds every field the pure build step gives it, as stored.
    let expected = build::children(
        &ftp,
        &Settings {
            server_image: "kubeftp/kubeftp-server:test".into(),
        },
    );
    let stored_as_built = |live: &dyn erased::Json, built: &dyn erased::Json| {
        let (live, built) = (live.json(), built.json());
        assert!(
            kubeftp_operator::apply::contains(&live, &built),
            "stored:\n{live:#}\nbuilt:\n{built:#}"
        );
    };

    // Owned by the FtpServer, so they go with it; labelled as ours.
    let uid = ftp.uid().unwrap();
    let owned_and_labelled = |meta: &kube::api::ObjectMeta| {
        let owners = meta.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{owners:?}");
        let owner = &owners[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str()
            ),
            ("kubeftp.dev/v1alpha1", "FtpServer", "files")
        );
        assert_eq!(owner.uid, uid);
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let labels = meta.labels.clone().unwrap_or_default();
        for (key, value) in [
            ("app.kubernetes.io/name", "kubeftp"),
            ("app.kubernetes.io/instance", "files"),
            ("app.kubernetes.io/component", "server"),
            ("app.kubernetes.io/managed-by", "kubeftp-operator"),
        ] {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
    };
    let selector = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "kubeftp".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), "files".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "server".to_owned(),
        ),
    ]);

    let config = fx.api::<ConfigMap>().get("files-config").await?;
    owned_and_labelled(&config.metadata);
    assert_eq!(config.data, expected.config.data);
    let toml = &config.data.as_ref().unwrap()["server.toml"];
    assert!(toml.contains("ports = \"30000-30002\""), "{toml}");
    assert!(toml.contains("when-address-unknown = \"refuse\""), "{toml}");
    assert!(
        toml.contains("implicit-listen = \"0.0.0.0:9990\""),
        "{toml}"
    );

    let addresses = fx.api::<ConfigMap>().get("files-addresses").await?;
    owned_and_labelled(&addresses.metadata);
    assert_eq!(
        addresses.data,
        Some(BTreeMap::from([("files-0".into(), String::new())]))
    );

    // The StatefulSet.
    let set = sets.get("files").await?;
    owned_and_labelled(&set.metadata);
    stored_as_built(&set, &expected.stateful_set);
    let spec = set.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&selector));
    let template_meta = spec.template.metadata.unwrap();
    let template_labels = template_meta.labels.unwrap();
    assert!(
        selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v)),
        "{template_labels:?}"
    );
    assert_eq!(
        template_meta.annotations.unwrap()["kubeftp.dev/config-hash"].len(),
        16
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(40));
    let pod_security = pod.security_context.clone().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.fs_group, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("kubeftp/kubeftp-server:test")
    );
    assert_eq!(
        container.args.as_deref().unwrap()[..4],
        [
            "--config",
            "/etc/kubeftp/config/server.toml",
            "--advertised-address-file",
            "/run/kubeftp/addresses/$(POD_NAME)"
        ]
    );
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let capabilities = security.capabilities.unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(capabilities.add, None);

    let ports: Vec<(String, i32, String)> = container
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.container_port, p.protocol.unwrap()))
        .collect();
    let tcp = |name: &str, port: i32| (name.to_owned(), port, "TCP".to_owned());
    assert_eq!(
        ports,
        [
            tcp("ftp", 2121),
            tcp("ops", 9090),
            tcp("ftps", 9990),
            tcp("pasv-30000", 30000),
            tcp("pasv-30001", 30001),
            tcp("pasv-30002", 30002),
        ]
    );
    let probe = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        let get = probe
            .and_then(|p| p.http_get.clone())
            .expect("an HTTP probe");
        (get.path.unwrap_or_default(), format!("{:?}", get.port))
    };
    assert_eq!(
        probe(container.readiness_probe.as_ref()),
        ("/readyz".to_owned(), "String(\"ops\")".to_owned())
    );
    assert_eq!(
        probe(container.liveness_probe.as_ref()),
        ("/healthz".to_owned(), "String(\"ops\")".to_owned())
    );

    let mounts: Vec<(String, String, bool)> = container
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
        .collect();
    let mount = |name: &str, path: &str, read_only| (name.to_owned(), path.to_owned(), read_only);
    assert_eq!(
        mounts,
        [
            mount("config", "/etc/kubeftp/config", true),
            mount("addresses", "/run/kubeftp/addresses", true),
            mount("data", "/srv/ftp", false),
            mount("users", "/etc/kubeftp/users", true),
            mount("tls", "/etc/kubeftp/tls", true),
        ]
    );
    let volumes: Vec<(String, String)> = pod
        .volumes
        .clone()
        .unwrap()
        .into_iter()
        .map(|v| {
            let source = if let Some(map) = v.config_map {
                format!("configMap {}", map.name)
            } else if let Some(secret) = v.secret {
                let items: Vec<String> = secret
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| format!("{}->{}", i.key, i.path))
                    .collect();
                format!("secret {} {items:?}", secret.secret_name.unwrap())
            } else if v.empty_dir.is_some() {
                "emptyDir".to_owned()
            } else {
                format!("{v:?}")
            };
            (v.name, source)
        })
        .collect();
    let volume = |name: &str, source: &str| (name.to_owned(), source.to_owned());
    assert_eq!(
        volumes,
        [
            volume("config", "configMap files-config"),
            volume("addresses", "configMap files-addresses"),
            volume("users", "secret ftp-users [\"users.toml->users.toml\"]"),
            volume("tls", "secret ftp-tls []"),
            volume("data", "emptyDir"),
        ]
    );

    // The replica's Service: control, implicit FTPS and one port per
    // passive port, to that replica's pod only.
    let service = fx.api::<Service>().get("files-0").await?;
    owned_and_labelled(&service.metadata);
    stored_as_built(&service, &expected.services[0]);
    assert_eq!(
        service.metadata.labels.as_ref().unwrap()["kubeftp.dev/replica"],
        "0"
    );
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    let mut replica_selector = selector.clone();
    replica_selector.insert(
        "statefulset.kubernetes.io/pod-name".into(),
        "files-0".into(),
    );
    assert_eq!(spec.selector, Some(replica_selector));
    let ports: Vec<(String, i32, String, String)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.name.unwrap(),
                p.port,
                format!("{:?}", p.target_port.unwrap()),
                p.protocol.unwrap(),
            )
        })
        .collect();
    let port = |name: &str, port: i32, target: i32| {
        (
            name.to_owned(),
            port,
            format!("Int({target})"),
            "TCP".to_owned(),
        )
    };
    assert_eq!(
        ports,
        [
            port("ftp", 21, 2121),
            port("ftps", 990, 9990),
            port("pasv-30000", 30000, 30000),
            port("pasv-30001", 30001, 30001),
            port("pasv-30002", 30002, 30002),
        ]
    );

    // The status says where clients go once known; not yet.
    eventually("the status", WAIT, || async {
        let ftp = fx.ftp("files").await?;
        Ok(ftp.status.is_some_and(|s| {
            s.observed_generation == Some(1)
                && s.endpoints.len() == 1
                && s.endpoints[0].service == "files-0"
                && s.endpoints[0].address.is_none()
                && s.ports.as_deref() == Some("21,30000-30002")
        }))
    })
    .await?;
    assert_eq!(
        fx.condition("files", "AddressAssigned").await?,
        Some(("False".into(), "AddressPending".into()))
    );
    fx.operator.stop().await;
    Ok(())
}

/// Objects as JSON, for comparing whole objects.
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("objects serialize")
        }
    }
}

#[tokio::test]
async fn load_balancer_address_flows_to_the_address_file_and_status() -> Result<()> {
    let fx = Fixture::new("op-address").await?;
    fx.create("files", MINIMAL).await?;
    eventually("the Service", WAIT, || async {
        Ok(fx.service_names("files").await? == ["files-0"])
    })
    .await?;

    fx.publish_ingress("files-0", json!({"ip": "203.0.113.10"}))
        .await?;
    eventually("the IP in the address file", WAIT, || async {
        Ok(fx
            .addresses("files")
            .await?
            .get("files-0")
            .map(String::as_str)
            == Some("203.0.113.10"))
    })
    .await?;
    eventually("the IP in the status", WAIT, || async {
        Ok(fx.endpoint_address("files", 0).await?.as_deref() == Some("203.0.113.10"))
    })
    .await?;
    let endpoint = fx.ftp("files").await?.status.unwrap().endpoints[0].clone();
    assert_eq!(endpoint.url.as_deref(), Some("ftp://203.0.113.10:21/"));
    assert_eq!(
        fx.condition("files", "AddressAssigned").await?,
        Some(("True".into(), "AddressesKnown".into()))
    );

    // The load balancer moves to a hostname: both follow.
    fx.publish_ingress("files-0", json!({"hostname": "lb-1.example.com"}))
        .await?;
    eventually("the hostname in the address file", WAIT, || async {
        Ok(fx
            .addresses("files")
            .await?
            .get("files-0")
            .map(String::as_str)
            == Some("lb-1.example.com"))
    })
    .await?;
    eventually("the hostname in the status", WAIT, || async {
        Ok(fx.endpoint_address("files", 0).await?.as_deref() == Some("lb-1.example.com"))
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}

#[tokio::test]
async fn ready_when_the_pod_is_ready_and_has_an_address() -> Result<()> {
    let fx = Fixture::new("op-ready").await?;
    fx.create("files", MINIMAL).await?;
    // kube-controller-manager's StatefulSet controller makes the pod; no
    // kubelet runs it, so mark it ready as a kubelet would.
    let pods = fx.api::<Pod>();
    eventually("the pod", WAIT, || async {
        Ok(pods.get_opt("files-0").await?.is_some())
    })
    .await?;
    let ready = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2030-01-01T00:00:00Z"}
    ]}});
    pods.patch_status("files-0", &PatchParams::default(), &Patch::Merge(&ready))
        .await?;
    eventually("a ready replica without address", WAIT, || async {
        Ok(
            fx.condition("files", "Ready").await?
                == Some(("False".into(), "AddressPending".into())),
        )
    })
    .await?;
    assert_eq!(fx.ftp("files").await?.status.unwrap().ready_replicas, 1);

    fx.publish_ingress("files-0", json!({"ip": "203.0.113.11"}))
        .await?;
    eventually("Ready", WAIT, || async {
        Ok(fx.condition("files", "Ready").await? == Some(("True".into(), "Ready".into())))
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}

#[tokio::test]
async fn one_service_per_replica_follows_scaling() -> Result<()> {
    let fx = Fixture::new("op-scale").await?;
    fx.create("files", &format!("{MINIMAL}\nreplicas: 3"))
        .await?;
    eventually("three Services", WAIT, || async {
        Ok(fx.service_names("files").await? == ["files-0", "files-1", "files-2"])
    })
    .await?;
    for ordinal in 0..3 {
        let service = fx.api::<Service>().get(&format!("files-{ordinal}")).await?;
        let selector = service.spec.unwrap().selector.unwrap();
        assert_eq!(
            selector["statefulset.kubernetes.io/pod-name"],
            format!("files-{ordinal}")
        );
    }
    fx.publish_ingress("files-2", json!({"ip": "203.0.113.12"}))
        .await?;
    eventually("replica 2's address", WAIT, || async {
        let addresses = fx.addresses("files").await?;
        Ok(addresses.len() == 3
            && addresses["files-2"] == "203.0.113.12"
            && addresses["files-0"].is_empty())
    })
    .await?;

    eventually("the addresses summary", WAIT, || async {
        let status = fx.ftp("files").await?.status.unwrap_or_default();
        Ok(status.addresses.as_deref() == Some("<pending>,<pending>,203.0.113.12"))
    })
    .await?;
    // `kubectl get ftpservers` shows it: the apiserver's table view.
    let table = http::Request::get(format!(
        "/apis/kubeftp.dev/v1alpha1/namespaces/{}/ftpservers/files",
        fx.ns.name
    ))
    .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())?;
    let table: serde_json::Value = serde_json::from_str(&fx.ns.client.request_text(table).await?)?;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Name", "Ready", "Address", "Ports", "Replicas", "Age"]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[1], "False");
    assert_eq!(cells[2], "<pending>,<pending>,203.0.113.12");
    assert_eq!(cells[3], "21,30000-30009");
    assert_eq!(cells[4], 3);

    let scale = json!({"spec": {"replicas": 1}});
    fx.api::<FtpServer>()
        .patch("files", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    eventually("the extra Services to go", WAIT, || async {
        Ok(fx.service_names("files").await? == ["files-0"])
    })
    .await?;
    eventually("the extra addresses to go", WAIT, || async {
        Ok(fx.addresses("files").await?.keys().collect::<Vec<_>>() == ["files-0"])
    })
    .await?;
    let set = fx.api::<StatefulSet>().get("files").await?;
    assert_eq!(set.spec.unwrap().replicas, Some(1));
    fx.operator.stop().await;
    Ok(())
}

/// A scale-down leaves the removed replica's Service and address in place
/// while its pod drains (the server finishes running transfers after
/// SIGTERM; they need the load balancer): both go once the pod is gone.
/// No kubelet runs here, so a finalizer keeps the deleted pod around, as a
/// kubelet would while the server drains.
#[tokio::test]
async fn scale_down_waits_for_the_pod_before_removing_its_service() -> Result<()> {
    let fx = Fixture::new("op-drain").await?;
    fx.create("files", &format!("{MINIMAL}\nreplicas: 2"))
        .await?;
    let pods = fx.api::<Pod>();
    eventually("two Services and the second pod", WAIT, || async {
        Ok(fx.service_names("files").await? == ["files-0", "files-1"]
            && pods.get_opt("files-1").await?.is_some())
    })
    .await?;
    fx.publish_ingress("files-1", json!({"ip": "203.0.113.40"}))
        .await?;
    let address_of_1 = || async {
        let addresses = fx.addresses("files").await?;
        anyhow::Ok(addresses.get("files-1").cloned())
    };
    eventually("replica 1's address", WAIT, || async {
        Ok(address_of_1().await?.as_deref() == Some("203.0.113.40"))
    })
    .await?;
    let hold = json!({"metadata": {"finalizers": ["kubeftp.dev/test-draining"]}});
    pods.patch("files-1", &PatchParams::default(), &Patch::Merge(&hold))
        .await?;

    let scale = json!({"spec": {"replicas": 1}});
    let scaled = fx
        .api::<FtpServer>()
        .patch("files", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    let generation = scaled.metadata.generation;
    // The reconcile that scaled the StatefulSet down has written its status.
    eventually("the scale-down reconciled", WAIT, || async {
        let status = fx.ftp("files").await?.status.unwrap_or_default();
        Ok(status.observed_generation == generation && status.endpoints.len() == 1)
    })
    .await?;
    let set = fx.api::<StatefulSet>().get("files").await?;
    assert_eq!(set.spec.unwrap().replicas, Some(1));
    let draining = || async {
        anyhow::ensure!(
            fx.service_names("files").await? == ["files-0", "files-1"],
            "the draining replica's Service went"
        );
        anyhow::ensure!(
            address_of_1().await?.as_deref() == Some("203.0.113.40"),
            "the draining replica's address went"
        );
        anyhow::Ok(())
    };
    draining().await?;

    // The StatefulSet controller deletes the pod; it drains. The operator
    // hears of that (a reconcile) and still keeps both.
    eventually("the pod terminating", WAIT, || async {
        Ok(pods
            .get_opt("files-1")
            .await?
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some()))
    })
    .await?;
    let reconciles = fx.operator.metrics.reconciliations.get();
    eventually("a reconcile after that", WAIT, || async {
        Ok(fx.operator.metrics.reconciliations.get() > reconciles)
    })
    .await?;
    // Counted as it starts: let it finish.
    support::quiet(&fx.operator).await?;
    draining().await?;

    // The pod is gone: so are its Service and address.
    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("files-1", &PatchParams::default(), &Patch::Merge(&release))
        .await?;
    eventually("the Service to go", WAIT, || async {
        Ok(fx.service_names("files").await? == ["files-0"])
    })
    .await?;
    eventually("the address to go", WAIT, || async {
        Ok(address_of_1().await?.is_none())
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}

#[tokio::test]
async fn edited_or_deleted_children_are_put_back() -> Result<()> {
    let fx = Fixture::new("op-repair").await?;
    fx.create("files", MINIMAL).await?;
    let configs = fx.api::<ConfigMap>();
    eventually("the children", WAIT, || async {
        Ok(configs.get_opt("files-config").await?.is_some()
            && fx.service_names("files").await? == ["files-0"]
            && fx.api::<StatefulSet>().get_opt("files").await?.is_some())
    })
    .await?;
    let original = configs.get("files-config").await?.data;

    // Someone edits the config by hand...
    let edit = json!({"data": {"server.toml": "listen = \"0.0.0.0:1\"\n"}});
    configs
        .patch(
            "files-config",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await?;
    eventually("the config restored", WAIT, || async {
        Ok(configs.get("files-config").await?.data == original)
    })
    .await?;

    // ...drops the passive ports from the Service...
    let services = fx.api::<Service>();
    let edit = json!({"spec": {"ports": [{"name": "ftp", "port": 21, "targetPort": 2121, "protocol": "TCP"}]}});
    services
        .patch("files-0", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    eventually("the passive ports restored", WAIT, || async {
        let service = services.get("files-0").await?;
        Ok(service.spec.unwrap().ports.unwrap().len() == 11)
    })
    .await?;

    // ...gives a passive port another number (server-side apply alone would
    // add the right one beside it, under the same name, and be refused)...
    let ports = |service: Service| -> Vec<i32> {
        service
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect()
    };
    let node_ports = |service: Service| -> Vec<Option<i32>> {
        let ports = service.spec.unwrap().ports.unwrap();
        ports.iter().map(|p| p.node_port).collect()
    };
    let before = ports(services.get("files-0").await?);
    let node_ports_before = node_ports(services.get("files-0").await?);
    assert!(
        node_ports_before.iter().all(Option::is_some),
        "a LoadBalancer Service with node ports: {node_ports_before:?}"
    );
    let edit = json!([{"op": "replace", "path": "/spec/ports/1/port", "value": 30100}]);
    services
        .patch(
            "files-0",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(edit)?),
        )
        .await?;
    eventually("the port number restored", WAIT, || async {
        Ok(ports(services.get("files-0").await?) == before)
    })
    .await?;
    // Replacing the lists kept the node ports of the ports left as they
    // were (a load balancer sending to them would lose its backends).
    let node_ports_after = node_ports(services.get("files-0").await?);
    for (index, (before, after)) in node_ports_before.iter().zip(&node_ports_after).enumerate() {
        assert!(after.is_some(), "port {index} has no node port");
        if index != 1 {
            assert_eq!(before, after, "port {index}'s node port changed");
        }
    }
    assert_eq!(
        fx.condition("files", "Degraded").await?,
        Some(("False".into(), "AsExpected".into()))
    );

    // ...or deletes the StatefulSet.
    let sets = fx.api::<StatefulSet>();
    let uid = sets.get("files").await?.uid();
    sets.delete("files", &DeleteParams::default()).await?;
    eventually("the StatefulSet recreated", WAIT, || async {
        Ok(sets.get_opt("files").await?.is_some_and(|s| s.uid() != uid))
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}

#[tokio::test]
async fn deleting_the_ftpserver_collects_its_children() -> Result<()> {
    let fx = Fixture::new("op-gc").await?;
    fx.create("files", &format!("{MINIMAL}\nreplicas: 2"))
        .await?;
    eventually("the children", WAIT, || async {
        Ok(fx.service_names("files").await?.len() == 2
            && fx.api::<StatefulSet>().get_opt("files").await?.is_some()
            && fx
                .api::<ConfigMap>()
                .get_opt("files-addresses")
                .await?
                .is_some())
    })
    .await?;
    fx.api::<FtpServer>()
        .delete("files", &DeleteParams::foreground())
        .await?;
    // The garbage collector handles a new kind's objects once it has
    // rediscovered the API, every 30 s: the CRD may be that new.
    eventually("garbage collection", Duration::from_secs(90), || async {
        Ok(fx.service_names("files").await?.is_empty()
            && fx.api::<StatefulSet>().get_opt("files").await?.is_none()
            && fx
                .api::<ConfigMap>()
                .get_opt("files-config")
                .await?
                .is_none()
            && fx
                .api::<ConfigMap>()
                .get_opt("files-addresses")
                .await?
                .is_none()
            && fx.api::<FtpServer>().get_opt("files").await?.is_none())
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}

/// An object that already has a child's name, made by someone else, is
/// not taken over: the FtpServer is Degraded and says so, and deleting the
/// FtpServer leaves the object as it was.
#[tokio::test]
async fn objects_with_a_childs_name_made_by_others_are_left_alone() -> Result<()> {
    let fx = Fixture::new("op-taken").await?;
    let theirs: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-config"},
        "data": {"app.conf": "important"}
    }))?;
    fx.api::<ConfigMap>()
        .create(&Default::default(), &theirs)
        .await?;
    fx.create("web", MINIMAL).await?;
    eventually("Degraded, NameTaken", WAIT, || async {
        Ok(fx.condition("web", "Degraded").await? == Some(("True".into(), "NameTaken".into())))
    })
    .await?;
    let untouched = |cm: &ConfigMap| {
        cm.metadata.owner_references.is_none()
            && cm.data.as_ref().map(|d| d.len()) == Some(1)
            && cm.data.as_ref().unwrap()["app.conf"] == "important"
    };
    let live = fx.api::<ConfigMap>().get("web-config").await?;
    assert!(untouched(&live), "{live:?}");
    fx.api::<FtpServer>()
        .delete("web", &DeleteParams::foreground())
        .await?;
    eventually("the FtpServer gone", Duration::from_secs(60), || async {
        Ok(fx.api::<FtpServer>().get_opt("web").await?.is_none())
    })
    .await?;
    let live = fx.api::<ConfigMap>().get("web-config").await?;
    assert!(untouched(&live), "{live:?}");
    fx.operator.stop().await;
    Ok(())
}

/// Turning allocateLoadBalancerNodePorts off on an existing FtpServer frees
/// its node ports (the apiserver keeps them by itself); only the health
/// check's remains. Once freed, reconciles write nothing more.
#[tokio::test]
async fn turning_node_port_allocation_off_frees_the_node_ports() -> Result<()> {
    let fx = Fixture::new("op-lb-nodeports").await?;
    fx.create("lb", MINIMAL).await?;
    let services = fx.api::<Service>();
    let node_ports = || async {
        let service = services.get_opt("lb-0").await?;
        let spec = service.and_then(|s| s.spec).unwrap_or_default();
        let ports: Vec<Option<i32>> = spec.ports.iter().flatten().map(|p| p.node_port).collect();
        anyhow::Ok((ports, spec.health_check_node_port))
    };
    eventually("node ports on every port", WAIT, || async {
        let (ports, _) = node_ports().await?;
        Ok(!ports.is_empty() && ports.iter().all(Option::is_some))
    })
    .await?;

    let off = json!({"spec": {"service": {"allocateLoadBalancerNodePorts": false}}});
    fx.api::<FtpServer>()
        .patch("lb", &PatchParams::default(), &Patch::Merge(&off))
        .await?;
    eventually("the node ports freed", WAIT, || async {
        let (ports, _) = node_ports().await?;
        Ok(ports.len() == 11 && ports.iter().all(Option::is_none))
    })
    .await?;
    let (_, health_check) = node_ports().await?;
    assert!(
        health_check.is_some(),
        "the health check's node port went too"
    );

    // A later reconcile finds nothing to release.
    fx.settled("lb", 1).await?;
    let writes = fx.operator.metrics.total_writes();
    let reconciles = fx.operator.metrics.reconciliations.get();
    let poke = json!({"metadata": {"annotations": {"example.com/poke": "1"}}});
    fx.api::<FtpServer>()
        .patch("lb", &PatchParams::default(), &Patch::Merge(&poke))
        .await?;
    eventually("a reconcile", WAIT, || async {
        Ok(fx.operator.metrics.reconciliations.get() > reconciles)
    })
    .await?;
    // Counted as it starts: let it finish.
    support::quiet(&fx.operator).await?;
    assert_eq!(fx.operator.metrics.total_writes(), writes, "wrote again");
    assert_eq!(node_ports().await?.0.iter().flatten().count(), 0);
    fx.operator.stop().await;
    Ok(())
}

/// Whether `claim` names the StatefulSet "keep" among its owners.
fn owned_by_keep(claim: &PersistentVolumeClaim) -> Option<&OwnerReference> {
    claim
        .owner_references()
        .iter()
        .find(|owner| owner.kind == "StatefulSet" && owner.name == "keep")
}

/// Sets fields of the FtpServer "keep"'s spec.
async fn patch_keep(fx: &Fixture, spec: serde_json::Value) -> Result<()> {
    let patch = json!({"spec": spec});
    fx.api::<FtpServer>()
        .patch("keep", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The FtpServer "keep" with two replicas and claims, scaled down to one
/// (the second claim stays, as claims do on scale-down), then switched to
/// whenDeleted: Retain. The StatefulSet controller takes its owner
/// reference off the claims of the replicas it runs, not off those a
/// scale-down left behind: the operator does. Returns once both claims
/// are released.
async fn keep_with_a_scaled_down_claim_retained(fx: &Fixture) -> Result<()> {
    fx.create(
        "keep",
        "users: {secretName: ftp-users}\nstorage: {volumeClaimTemplate: {size: 1Gi}}\nreplicas: 2",
    )
    .await?;
    let claims = fx.api::<PersistentVolumeClaim>();
    eventually("both claims, owned by the StatefulSet", WAIT, || async {
        let mut owned = 0;
        for name in ["data-keep-0", "data-keep-1"] {
            owned += claims
                .get_opt(name)
                .await?
                .is_some_and(|c| owned_by_keep(&c).is_some()) as usize;
        }
        Ok(owned == 2)
    })
    .await?;
    patch_keep(fx, json!({"replicas": 1})).await?;
    let pods = fx.api::<Pod>();
    eventually("the second pod to go", WAIT, || async {
        Ok(pods.get_opt("keep-1").await?.is_none())
    })
    .await?;
    patch_keep(
        fx,
        json!({"storage": {"volumeClaimTemplate": {"whenDeleted": "Retain"}}}),
    )
    .await?;
    for name in ["data-keep-0", "data-keep-1"] {
        eventually(&format!("{name} released"), WAIT, || async {
            Ok(owned_by_keep(&claims.get(name).await?).is_none())
        })
        .await?;
    }
    Ok(())
}

/// Deletes the FtpServer "keep" and waits for it and its StatefulSet to go,
/// then for the garbage collector to have had time for the claims.
async fn delete_keep(fx: &Fixture) -> Result<()> {
    fx.api::<FtpServer>()
        .delete("keep", &DeleteParams::foreground())
        .await?;
    eventually(
        "the FtpServer and StatefulSet gone",
        Duration::from_secs(90),
        || async {
            Ok(fx.api::<FtpServer>().get_opt("keep").await?.is_none()
                && fx.api::<StatefulSet>().get_opt("keep").await?.is_none())
        },
    )
    .await
}

/// With whenDeleted: Retain, deleting the FtpServer keeps every claim,
/// also the one a scale-down left behind while whenDeleted was Delete.
#[tokio::test]
async fn retained_claims_of_scaled_down_replicas_outlive_the_ftpserver() -> Result<()> {
    let fx = Fixture::new("op-retain").await?;
    keep_with_a_scaled_down_claim_retained(&fx).await?;
    delete_keep(&fx).await?;
    // Give the garbage collector time to act on the claims, were they owned.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claims = fx.api::<PersistentVolumeClaim>();
    for name in ["data-keep-0", "data-keep-1"] {
        let claim = claims.get_opt(name).await?;
        assert!(
            claim.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
            "{name} was deleted"
        );
    }
    fx.operator.stop().await;
    Ok(())
}

/// Back to whenDeleted: Delete, the claim a scale-down left behind is the
/// StatefulSet's again, with the reference the StatefulSet controller puts
/// on the claims of the replicas it runs, and goes with the FtpServer.
#[tokio::test]
async fn released_claims_go_with_the_ftpserver_again_under_delete() -> Result<()> {
    let fx = Fixture::new("op-reown").await?;
    keep_with_a_scaled_down_claim_retained(&fx).await?;
    patch_keep(
        &fx,
        json!({"storage": {"volumeClaimTemplate": {"whenDeleted": "Delete"}}}),
    )
    .await?;
    let claims = fx.api::<PersistentVolumeClaim>();
    eventually("both claims owned again, alike", WAIT, || async {
        let running = claims.get("data-keep-0").await?;
        let scaled_down = claims.get("data-keep-1").await?;
        Ok(owned_by_keep(&running).is_some()
            && owned_by_keep(&running) == owned_by_keep(&scaled_down))
    })
    .await?;
    delete_keep(&fx).await?;
    // Deleted, or (held by the pvc-protection finalizer) being deleted.
    eventually("both claims deleted", WAIT, || async {
        let mut deleted = 0;
        for name in ["data-keep-0", "data-keep-1"] {
            deleted += claims
                .get_opt(name)
                .await?
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                as usize;
        }
        Ok(deleted == 2)
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}

#[tokio::test]
async fn cluster_ip_and_override_addresses() -> Result<()> {
    let fx = Fixture::new("op-clusterip").await?;
    fx.create(
        "internal",
        &format!("{MINIMAL}\nservice: {{type: ClusterIP}}"),
    )
    .await?;
    fx.create(
        "named",
        &format!("{MINIMAL}\npassive: {{advertisedAddress: ftp.example.com}}"),
    )
    .await?;
    eventually("the cluster IP as address", WAIT, || async {
        let service = fx.api::<Service>().get_opt("internal-0").await?;
        let Some(ip) = service.and_then(|s| s.spec?.cluster_ip) else {
            return Ok(false);
        };
        Ok(
            fx.addresses("internal").await?.get("internal-0") == Some(&ip)
                && fx.endpoint_address("internal", 0).await? == Some(ip),
        )
    })
    .await?;
    eventually("the override as address", WAIT, || async {
        Ok(fx
            .addresses("named")
            .await?
            .get("named-0")
            .map(String::as_str)
            == Some("ftp.example.com")
            && fx.endpoint_address("named", 0).await?.as_deref() == Some("ftp.example.com"))
    })
    .await?;
    // The override wins over the load balancer's address, and changes to
    // it are live: the pod template stays as it is. Once the status has
    // the changed spec's generation, a reconcile has run that saw the load
    // balancer's address.
    fx.publish_ingress("named-0", json!({"ip": "203.0.113.13"}))
        .await?;
    let sets = fx.api::<StatefulSet>();
    let before = sets.get("named").await?;
    let change = json!({"spec": {"passive": {"advertisedAddress": "ftp2.example.com"}}});
    let changed = fx
        .api::<FtpServer>()
        .patch("named", &PatchParams::default(), &Patch::Merge(&change))
        .await?;
    eventually("the changed spec reconciled", WAIT, || async {
        let status = fx.ftp("named").await?.status.unwrap_or_default();
        Ok(status.observed_generation == changed.metadata.generation)
    })
    .await?;
    assert_eq!(
        fx.addresses("named")
            .await?
            .get("named-0")
            .map(String::as_str),
        Some("ftp2.example.com")
    );
    assert_eq!(
        fx.endpoint_address("named", 0).await?.as_deref(),
        Some("ftp2.example.com")
    );
    let after = sets.get("named").await?;
    assert_eq!(after.spec.unwrap().template, before.spec.unwrap().template);
    assert_eq!(after.metadata.generation, before.metadata.generation);
    fx.operator.stop().await;
    Ok(())
}

#[tokio::test]
async fn node_port_advertises_the_node_running_the_replica() -> Result<()> {
    let fx = Fixture::new("op-nodeport").await?;
    fx.create(
        "edge",
        &format!("{MINIMAL}\nservice: {{type: NodePort, controlPort: 30021}}\npassive: {{portRange: {{min: 30030, max: 30034}}}}"),
    )
    .await?;
    let service = {
        let services = fx.api::<Service>();
        eventually("the Service", WAIT, || async {
            Ok(services.get_opt("edge-0").await?.is_some())
        })
        .await?;
        services.get("edge-0").await?
    };
    let node_ports: Vec<Option<i32>> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port)
        .collect();
    assert_eq!(
        node_ports,
        [
            Some(30021),
            Some(30030),
            Some(30031),
            Some(30032),
            Some(30033),
            Some(30034)
        ]
    );

    // A node, and the pod bound to it as the scheduler would.
    let node_name = format!("node-{}", fx.ns.name);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "192.168.7.4"},
            {"type": "ExternalIP", "address": "198.51.100.4"}
        ]}
    }))?;
    let nodes: Api<Node> = Api::all(fx.ns.client.clone());
    nodes.create(&PostParams::default(), &node).await?;
    let status = json!({"status": node.status});
    nodes
        .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let pods = fx.api::<Pod>();
    eventually("the pod", WAIT, || async {
        Ok(pods.get_opt("edge-0").await?.is_some())
    })
    .await?;
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "edge-0"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}
    });
    let request = http_post(
        &format!("/api/v1/namespaces/{}/pods/edge-0/binding", fx.ns.name),
        &binding,
    );
    fx.ns.client.request_text(request).await?;

    eventually("the node's external IP as address", WAIT, || async {
        Ok(fx
            .addresses("edge")
            .await?
            .get("edge-0")
            .map(String::as_str)
            == Some("198.51.100.4")
            && fx.endpoint_address("edge", 0).await?.as_deref() == Some("198.51.100.4"))
    })
    .await?;
    let ftp = fx.ftp("edge").await?;
    assert_eq!(
        ftp.status.unwrap().endpoints[0].url.as_deref(),
        Some("ftp://198.51.100.4:30021/")
    );
    nodes.delete(&node_name, &DeleteParams::default()).await?;
    fx.operator.stop().await;
    Ok(())
}

fn http_post(path: &str, body: &serde_json::Value) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .unwrap()
}

/// In steady state the operator reconciles (every 5 s here) and writes
/// nothing: no request from it, no changed resourceVersion in the namespace.
/// The quantities are written as people do, not as the apiserver stores
/// them (`1`, `1Gi`, `500m`, `512Mi`, `2Gi`): that is no drift.
#[tokio::test]
async fn steady_state_makes_no_writes() -> Result<()> {
    let ns = shared_namespace("op-steady").await?;
    support::install_crd(&ns.client).await?;
    let operator = Operator::start_with_resync(&ns.client, &ns.name, Duration::from_secs(5));
    let fx = Fixture { ns, operator };
    fx.create(
        "files",
        "
replicas: 2
users: {secretName: ftp-users}
storage: {emptyDir: {sizeLimit: 2048Mi}}
resources:
  limits: {cpu: 1000m, memory: 1024Mi}
  requests: {cpu: '0.5', memory: 0.5Gi}
",
    )
    .await?;
    eventually("the Services", WAIT, || async {
        Ok(fx.service_names("files").await?.len() == 2)
    })
    .await?;
    fx.publish_ingress("files-0", json!({"ip": "203.0.113.20"}))
        .await?;
    fx.publish_ingress("files-1", json!({"hostname": "lb-2.example.com"}))
        .await?;
    eventually("both addresses in the status", WAIT, || async {
        Ok(fx.condition("files", "AddressAssigned").await?
            == Some(("True".into(), "AddressesKnown".into())))
    })
    .await?;
    fx.settled("files", 2).await?;
    // The apiserver did rewrite the quantities, so the test means something.
    let set = fx.api::<StatefulSet>().get("files").await?;
    let pod = set.spec.unwrap().template.spec.unwrap();
    let limits = pod.containers[0].resources.clone().unwrap().limits.unwrap();
    assert_eq!(
        (limits["cpu"].0.as_str(), limits["memory"].0.as_str()),
        ("1", "1Gi")
    );

    let versions = || async {
        let mut versions = BTreeMap::new();
        let params = ListParams::default();
        for ftp in fx.api::<FtpServer>().list(&params).await? {
            versions.insert(
                format!("FtpServer/{}", ftp.name_any()),
                ftp.resource_version(),
            );
        }
        for map in fx.api::<ConfigMap>().list(&params).await? {
            versions.insert(
                format!("ConfigMap/{}", map.name_any()),
                map.resource_version(),
            );
        }
        for service in fx.api::<Service>().list(&params).await? {
            versions.insert(
                format!("Service/{}", service.name_any()),
                service.resource_version(),
            );
        }
        for set in fx.api::<StatefulSet>().list(&params).await? {
            versions.insert(
                format!("StatefulSet/{}", set.name_any()),
                set.resource_version(),
            );
        }
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(fx.ns.client.clone(), &fx.ns.name);
        for event in events.list(&params).await? {
            versions.insert(
                format!("Event/{}", event.name_any()),
                event.resource_version(),
            );
        }
        anyhow::Ok(versions)
    };
    let before = versions().await?;
    let writes_before = fx.operator.metrics.total_writes();
    let reconciles_before = fx.operator.metrics.reconciliations.get();

    tokio::time::sleep(Duration::from_secs(30)).await;

    let reconciles = fx.operator.metrics.reconciliations.get() - reconciles_before;
    let writes = fx.operator.metrics.total_writes() - writes_before;
    eprintln!("steady state, 30 s: {reconciles} reconciles, {writes} writes");
    assert!(
        reconciles >= 4,
        "only {reconciles} reconciles: the test proves nothing"
    );
    assert_eq!(writes, 0, "the operator wrote in steady state");
    assert_eq!(versions().await?, before, "objects changed in steady state");
    fx.operator.stop().await;
    Ok(())
}

/// A restarted operator reads its children from its caches, which it waits
/// to fill first: its first reconciles find everything in place and write
/// nothing (an empty cache would make every child look missing).
#[tokio::test]
async fn a_restarted_operator_writes_nothing() -> Result<()> {
    let ns = shared_namespace("op-restart").await?;
    support::install_crd(&ns.client).await?;
    let fx = Fixture {
        operator: Operator::start(&ns.client, &ns.name),
        ns,
    };
    fx.create("files", &format!("{MINIMAL}\nreplicas: 2"))
        .await?;
    eventually("the children and the status", WAIT, || async {
        Ok(fx.service_names("files").await?.len() == 2
            && fx.condition("files", "Ready").await?.is_some())
    })
    .await?;
    fx.settled("files", 2).await?;
    let Fixture { ns, operator } = fx;
    operator.stop().await;
    let restarted = Operator::start(&ns.client, &ns.name);
    eventually("a reconcile after the restart", WAIT, || async {
        Ok(restarted.metrics.reconciliations.get() >= 1)
    })
    .await?;
    // Counted as it starts: let it finish.
    support::quiet(&restarted).await?;
    assert_eq!(
        restarted.metrics.total_writes(),
        0,
        "the restarted operator wrote"
    );
    restarted.stop().await;
    Ok(())
}

/// A request below its limit for a resource Kubernetes does not
/// overcommit (extended resources, hugepages): the CRD's rules do not check
/// it (they compare cpu, memory and ephemeral-storage), so the apiserver
/// admits the FtpServer, and the operator's own check marks it Degraded,
/// saying what to fix, instead of applying Services and a StatefulSet the
/// apiserver would refuse.
#[tokio::test]
async fn resources_the_crd_admits_and_kubernetes_refuses_are_degraded() -> Result<()> {
    let fx = Fixture::new("op-request").await?;
    let spec = format!(
        "{MINIMAL}\nresources: {{requests: {{example.com/gpu: 1}}, limits: {{example.com/gpu: 2}}}}"
    );
    fx.create("gpu", &spec).await?;
    eventually("Degraded, InvalidSpec", WAIT, || async {
        Ok(fx.condition("gpu", "Degraded").await? == Some(("True".into(), "InvalidSpec".into())))
    })
    .await?;
    let status = fx.ftp("gpu").await?.status.unwrap();
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded");
    let message = degraded.map(|c| c.message.as_str()).unwrap_or_default();
    assert!(
        message.contains(
            "resources.requests.example.com/gpu \"1\" must equal resources.limits.example.com/gpu \"2\""
        ),
        "{message}"
    );
    assert!(fx.api::<StatefulSet>().get_opt("gpu").await?.is_none());
    assert!(fx.service_names("gpu").await?.is_empty());
    fx.operator.stop().await;
    Ok(())
}

/// A child the apiserver refuses (here: node ports another FtpServer holds)
/// shows as Degraded, with the apiserver's reason, and a Warning event.
#[tokio::test]
async fn refused_children_show_as_degraded() -> Result<()> {
    let fx = Fixture::new("op-degraded").await?;
    let spec = format!(
        "{MINIMAL}\nservice: {{type: NodePort, controlPort: 30050}}\npassive: {{portRange: {{min: 30060, max: 30064}}}}"
    );
    fx.create("first", &spec).await?;
    eventually("the first Service", WAIT, || async {
        Ok(fx.service_names("first").await? == ["first-0"])
    })
    .await?;
    fx.create("second", &spec).await?;
    eventually("the second Degraded", WAIT, || async {
        Ok(fx.condition("second", "Degraded").await? == Some(("True".into(), "Rejected".into())))
    })
    .await?;
    let status = fx.ftp("second").await?.status.unwrap();
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert!(
        degraded.message.contains("applying Service second-0")
            && degraded.message.contains("already allocated"),
        "{}",
        degraded.message
    );
    assert_eq!(
        fx.condition("second", "Ready").await?,
        Some(("False".into(), "Degraded".into()))
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(fx.ns.client.clone(), &fx.ns.name);
    // The Event follows the status.
    eventually("a Warning event for the refused Service", WAIT, || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("Rejected")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("second")
            }))
    })
    .await?;
    // The first FtpServer's status is written after its Service; wait for it.
    eventually("the first not Degraded", WAIT, || async {
        Ok(fx.condition("first", "Degraded").await? == Some(("False".into(), "AsExpected".into())))
    })
    .await?;

    // The failing FtpServer is counted until it is deleted; then the
    // operator forgets it.
    eventually("the failing FtpServer counted", WAIT, || async {
        Ok(fx.operator.metrics.failing.get() == 1)
    })
    .await?;
    fx.api::<FtpServer>()
        .delete("second", &DeleteParams::default())
        .await?;
    eventually("the deleted FtpServer forgotten", WAIT, || async {
        Ok(fx.operator.metrics.failing.get() == 0)
    })
    .await?;
    fx.operator.stop().await;
    Ok(())
}
