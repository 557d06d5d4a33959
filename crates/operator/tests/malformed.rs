//! Objects the operator cannot use do not stop it. On a private control
//! plane whose CRD schema lets anything through (as an older, looser CRD
//! might have): an FtpServer that does not parse is marked Degraded saying
//! what does not parse, one that parses but breaks the rules is marked
//! Degraded too, and valid ones around them are served.

mod support;

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kubeftp_api::FtpServer;
use kubeftp_testenv::{ControlPlane, Options};
use serde_json::json;
use support::{Operator, eventually};

/// The FtpServer CRD with a schema that accepts any spec.
fn loose_crd() -> CustomResourceDefinition {
    let mut crd = FtpServer::crd();
    let anything = JSONSchemaProps {
        type_: Some("object".into()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    crd.spec.versions[0].schema = Some(CustomResourceValidation {
        open_api_v3_schema: Some(JSONSchemaProps {
            type_: Some("object".into()),
            properties: Some(
                [
                    ("spec".into(), anything.clone()),
                    ("status".into(), anything),
                ]
                .into(),
            ),
            ..Default::default()
        }),
    });
    crd
}

#[tokio::test]
async fn unusable_objects_do_not_stop_the_operator() -> Result<()> {
    let plane = ControlPlane::start(Options::default()).await?;
    let client = plane.client().await?;
    let namespace = plane.create_namespace(&client, "malformed").await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "ftpservers.kubeftp.dev",
        &PatchParams::apply("kubeftp-tests"),
        &Patch::Apply(&loose_crd()),
    )
    .await?;
    let gvk = GroupVersionKind::gvk("kubeftp.dev", "v1alpha1", "FtpServer");
    let raw: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &ApiResource::from_gvk(&gvk));
    let create = |name: &str, spec: serde_json::Value| {
        let object = json!({
            "apiVersion": "kubeftp.dev/v1alpha1", "kind": "FtpServer",
            "metadata": {"name": name}, "spec": spec,
        });
        let raw = raw.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(object)?;
            raw.create(&PostParams::default(), &object).await?;
            anyhow::Ok(())
        }
    };
    eventually(
        "the loose CRD to be served",
        Duration::from_secs(30),
        || async { Ok(raw.list(&Default::default()).await.is_ok()) },
    )
    .await?;

    // Present when the operator lists, and arriving while it watches.
    create("broken", json!({"storage": "somewhere"})).await?;
    let operator = Operator::start(&client, &namespace);
    create(
        "backwards",
        json!({"users": {"secretName": "u"}, "storage": {"emptyDir": {}},
               "passive": {"portRange": {"min": 30010, "max": 30000}}}),
    )
    .await?;
    // Stored before the CRD checked quantities: applying the StatefulSet
    // would fail with a 500, after the load balancers exist.
    create(
        "greedy",
        json!({"users": {"secretName": "u"}, "storage": {"emptyDir": {}},
               "resources": {"limits": {"memory": "lots"}}}),
    )
    .await?;
    create(
        "good",
        json!({"users": {"secretName": "u"}, "storage": {"emptyDir": {}}}),
    )
    .await?;
    // What the current CRD refuses, but an older one stored.
    create(
        "heavy",
        json!({"users": {"secretName": "u"}, "storage": {"emptyDir": {}},
               "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                   {"weight": 99_999_999_999_i64, "preference": {}}]}}}),
    )
    .await?;

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    eventually(
        "the valid FtpServer served",
        Duration::from_secs(30),
        || async { Ok(services.get_opt("good-0").await?.is_some()) },
    )
    .await?;
    let ftps: Api<FtpServer> = Api::namespaced(client.clone(), &namespace);
    for (name, what) in [
        ("backwards", "must be an ascending range"),
        (
            "greedy",
            "resources.limits.memory \"lots\" must be a quantity",
        ),
    ] {
        eventually(
            &format!("the rule-breaking {name} Degraded"),
            Duration::from_secs(30),
            || async {
                let status = ftps.get_status(name).await?.status;
                Ok(status.is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Degraded"
                            && c.status == "True"
                            && c.reason == "InvalidSpec"
                            && c.message.contains(what)
                    })
                }))
            },
        )
        .await?;
        assert!(
            services.get_opt(&format!("{name}-0")).await?.is_none(),
            "nothing built for an invalid spec"
        );
    }
    for (name, what) in [
        ("broken", "invalid type: string \"somewhere\""),
        (
            "heavy",
            "invalid value: integer `99999999999`, expected i32",
        ),
    ] {
        eventually(
            &format!("{name}, which does not parse, Degraded saying why"),
            Duration::from_secs(30),
            || async {
                let object = raw.get_status(name).await?;
                let conditions = object.data["status"]["conditions"].clone();
                let conditions: Vec<Condition> =
                    serde_json::from_value(conditions).unwrap_or_default();
                let condition = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
                Ok(condition("Degraded").is_some_and(|c| {
                    c.status == "True"
                        && c.reason == "Malformed"
                        && c.message.contains("the FtpServer does not parse")
                        && c.message.contains(what)
                }) && condition("Ready").is_some_and(|c| c.status == "False"))
            },
        )
        .await?;
    }
    assert!(
        services.get_opt("heavy-0").await?.is_none(),
        "nothing built for an FtpServer that does not parse"
    );
    // The status settles: writing it again would trigger another
    // reconcile, and another write.
    let version = raw.get("heavy").await?.metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(raw.get("heavy").await?.metadata.resource_version, version);
    eventually(
        "the unparseable one reported",
        Duration::from_secs(30),
        || async {
            let failures = operator.metrics.failures.clone();
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register("f", "", failures);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)?;
            Ok(text.contains("kind=\"Malformed\""))
        },
    )
    .await?;
    operator.stop().await;
    Ok(())
}
