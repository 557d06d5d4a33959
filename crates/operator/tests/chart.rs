//! The Helm chart and the examples against the real apiserver: lint,
//! values schema, server-side dry runs, and the operator running with
//! exactly the chart's RBAC.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubeftp_api::FtpServer;
use kubeftp_testenv::{shared, shared_namespace};
use serde_json::json;
use support::{Operator, WAIT, eventually};

const KUBE_VERSION: &str = "1.34.4";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn tool(name: &str) -> PathBuf {
    kubeftp_testenv::tools::binary_in(&kubeftp_testenv::tools::tools_dir(), name)
        .expect("`make tools` builds helm and kubectl")
}

fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn succeed(command: &mut Command, stdin: Option<&[u8]>) -> String {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn helm_template(release: &str, namespace: &str, extra: &[&str]) -> Command {
    let mut helm = Command::new(tool("helm"));
    helm.args(["template", release])
        .arg(repo("charts/kubeftp"))
        .args(["--namespace", namespace, "--kube-version", KUBE_VERSION])
        .args(extra);
    helm
}

async fn kubectl() -> Result<Command> {
    let mut kubectl = Command::new(tool("kubectl"));
    kubectl
        .arg("--kubeconfig")
        .arg(shared().await?.kubeconfig_path());
    Ok(kubectl)
}

#[test]
fn helm_lint_passes() {
    for values in [&[][..], &["--set", "watchNamespace=ftp"]] {
        let mut helm = Command::new(tool("helm"));
        helm.args(["lint", "--strict", "--kube-version", KUBE_VERSION])
            .arg(repo("charts/kubeftp"))
            .args(values);
        let out = succeed(&mut helm, None);
        assert!(out.contains("0 chart(s) failed"), "{values:?}: {out}");
    }
}

/// The chart's kubeVersion admits every patch release of the oldest
/// Kubernetes `make test-oldest` tests, and not the release before it.
#[test]
fn the_chart_renders_from_the_oldest_kubernetes_tested() {
    let oldest = kubeftp_testenv::tools::version("KUBERNETES_OLDEST_VERSION")
        .expect("e2e/tools/VERSIONS names the oldest");
    let minor: u32 = oldest
        .trim_start_matches("v1.")
        .split('.')
        .next()
        .and_then(|minor| minor.parse().ok())
        .expect("a v1.N.P version");
    let render = |version: &str| {
        let mut helm = Command::new(tool("helm"));
        helm.args(["template", "t"])
            .arg(repo("charts/kubeftp"))
            .args(["--kube-version", version]);
        run(&mut helm, None)
    };
    for version in [oldest, &format!("1.{minor}.0")] {
        let admitted = render(version);
        assert!(
            admitted.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&admitted.stderr)
        );
    }
    let before = format!("1.{}.99", minor - 1);
    let refused = render(&before);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("kubeVersion"),
        "{before}: {stderr}"
    );
}

/// Each RBAC rule says why it is there.
#[test]
fn every_rbac_rule_has_its_own_comment() {
    for values in [&[][..], &["--set", "watchNamespace=ftp"]] {
        let mut args = vec!["--show-only", "templates/rbac.yaml"];
        args.extend_from_slice(values);
        let rendered = succeed(&mut helm_template("t", "kubeftp", &args), None);
        let lines: Vec<&str> = rendered.lines().collect();
        let mut rules = 0;
        for (index, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                rules += 1;
                assert!(
                    index > 0 && lines[index - 1].trim_start().starts_with('#'),
                    "{values:?}: rule without a comment of its own: {line}\n{rendered}"
                );
            }
        }
        assert!(rules >= 9, "{values:?}: {rules} rules\n{rendered}");
    }
}

/// The verbs line of the rule for `resource` in the chart's RBAC rendered
/// with `values`.
fn rbac_verbs(values: &[&str], resource: &str) -> String {
    let mut args = vec!["--show-only", "templates/rbac.yaml"];
    args.extend_from_slice(values);
    let rendered = succeed(&mut helm_template("t", "kubeftp", &args), None);
    let lines: Vec<&str> = rendered.lines().collect();
    let rule = lines
        .iter()
        .position(|line| line.trim() == format!("resources: [\"{resource}\"]"))
        .unwrap_or_else(|| panic!("{values:?}: no {resource} rule\n{rendered}"));
    lines[rule + 1].trim().to_owned()
}

/// The operator lists and watches FtpServers and reads them from the
/// watch's cache; kube-rs' Controller never gets one either. The
/// operator_works_with_* tests show that this is enough.
#[test]
fn rbac_grants_no_get_on_ftpservers() {
    for values in [&[][..], &["--set", "watchNamespace=ftp"]] {
        assert_eq!(
            rbac_verbs(values, "ftpservers"),
            "verbs: [\"list\", \"watch\"]",
            "{values:?}"
        );
    }
}

/// Delete on StatefulSets, ConfigMaps and claims, which the operator never
/// uses, only where the cluster enforces
/// OwnerReferencesPermissionEnforcement: said so, or (auto) on OpenShift,
/// which enforces it.
#[test]
fn rbac_grants_delete_only_where_owner_references_need_it() {
    let openshift = ["--api-versions", "security.openshift.io/v1"];
    let enforced = ["--set", "ownerReferencesPermissionEnforcement=true"];
    let not_enforced = ["--set", "ownerReferencesPermissionEnforcement=false"];
    for (values, may_delete) in [
        (vec![], false),
        (openshift.to_vec(), true),
        (enforced.to_vec(), true),
        ([&openshift[..], &not_enforced[..]].concat(), false),
        (["--set", "watchNamespace=ftp"].to_vec(), false),
        (
            [&enforced[..], &["--set", "watchNamespace=ftp"][..]].concat(),
            true,
        ),
    ] {
        for (resource, verbs) in [
            (
                "statefulsets",
                "\"get\", \"list\", \"watch\", \"create\", \"patch\"",
            ),
            (
                "configmaps",
                "\"get\", \"list\", \"watch\", \"create\", \"patch\"",
            ),
            ("persistentvolumeclaims", "\"list\", \"watch\", \"patch\""),
        ] {
            let delete = if may_delete { ", \"delete\"" } else { "" };
            assert_eq!(
                rbac_verbs(&values, resource),
                format!("verbs: [{verbs}{delete}]"),
                "{values:?}"
            );
        }
    }
}

#[test]
fn values_schema_refuses_bad_values() {
    for (set, expected) in [
        ("logFormat=xml", "value must be one of 'json', 'text'"),
        ("resyncSeconds=1", "minimum"),
        ("image.pullPolicy=Sometimes", "value must be one of"),
        (
            "ownerReferencesPermissionEnforcement=maybe",
            "value must be one of 'auto', true, false",
        ),
        (
            "replicaCount=2",
            "additional properties 'replicaCount' not allowed",
        ),
    ] {
        let output = run(&mut helm_template("t", "kubeftp", &["--set", set]), None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--set {set} was accepted");
        assert!(stderr.contains(expected), "--set {set}: {stderr}");
    }
}

/// Pod labels the Deployment's selector uses are the chart's: a pod
/// template without them is refused by the apiserver, and one matching
/// another release's selector would be worse. Setting one fails with a
/// message naming it (the values schema could only say "false schema").
#[test]
fn pod_labels_cannot_take_the_selectors_labels() {
    for key in ["name", "instance"] {
        let set = format!("podLabels.app\\.kubernetes\\.io/{key}=other");
        let output = run(&mut helm_template("t", "kubeftp", &["--set", &set]), None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(&format!(
                "podLabels: \"app.kubernetes.io/{key}\" is the chart's own label"
            )),
            "--set {set}: {stderr}"
        );
    }
    // Other labels join the selector's.
    let rendered = succeed(
        &mut helm_template(
            "t",
            "kubeftp",
            &[
                "--show-only",
                "templates/deployment.yaml",
                "--set",
                "podLabels.team=ftp",
            ],
        ),
        None,
    );
    let deployment: serde_json::Value = serde_yaml::from_str(&rendered).unwrap();
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(selector.as_object().unwrap().len(), 2, "{rendered}");
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&labels[key], value, "{rendered}");
    }
    assert_eq!(labels["team"], "ftp", "{rendered}");
}

/// Helm reads numbers in values files as floats, which render as 1e+06:
/// the operator would refuse its arguments and exit.
#[test]
fn numbers_from_a_values_file_render_as_integers() {
    let mut values = tempfile::NamedTempFile::new().unwrap();
    values.write_all(b"resyncSeconds: 1000000\n").unwrap();
    let mut helm = helm_template(
        "t",
        "kubeftp",
        &["--show-only", "templates/deployment.yaml", "-f"],
    );
    let rendered = succeed(helm.arg(values.path()), None);
    assert!(
        rendered.contains("- --resync-seconds=1000000\n"),
        "{rendered}"
    );
}

#[test]
fn chart_crd_is_installed_from_crds_dir_and_rbac_never_reads_secrets() {
    let rendered = succeed(
        &mut helm_template("t", "kubeftp", &["--include-crds"]),
        None,
    );
    assert!(rendered.contains("name: ftpservers.kubeftp.dev"));
    assert!(
        !rendered.contains("secrets"),
        "the operator must not need Secrets"
    );
    let args = succeed(
        &mut helm_template("t", "kubeftp", &["--set", "watchNamespace=ftp"]),
        None,
    );
    assert!(args.contains("--namespace=ftp"), "{args}");
    assert!(
        args.contains("--server-image=kubeftp/kubeftp-server:0.1.0"),
        "{args}"
    );
}

#[tokio::test]
async fn chart_passes_server_side_dry_run() -> Result<()> {
    let ns = shared_namespace("chart-dry-run").await?;
    let rendered = succeed(
        &mut helm_template("kubeftp", &ns.name, &["--include-crds"]),
        None,
    );
    let out = succeed(
        kubectl()
            .await?
            .args(["apply", "--dry-run=server", "-f", "-"]),
        Some(rendered.as_bytes()),
    );
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/ftpservers.kubeftp.dev",
        "serviceaccount/kubeftp",
        "clusterrole.rbac.authorization.k8s.io/kubeftp",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeftp",
        "deployment.apps/kubeftp",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    assert!(
        !out.lines()
            .any(|line| line.starts_with("role.rbac.authorization.k8s.io/")),
        "a Role without watchNamespace: {out}"
    );
    Ok(())
}

/// With watchNamespace the namespaced rights are a Role in that namespace;
/// the ClusterRole only reads Nodes.
#[tokio::test]
async fn chart_with_watch_namespace_passes_server_side_dry_run() -> Result<()> {
    let ns = shared_namespace("chart-dry-run-release").await?;
    let watched = shared_namespace("chart-dry-run-watched").await?;
    let watch = format!("watchNamespace={}", watched.name);
    let rendered = succeed(
        &mut helm_template("kubeftp", &ns.name, &["--set", &watch]),
        None,
    );
    assert!(
        rendered.contains(&format!("--namespace={}", watched.name)),
        "{rendered}"
    );
    let out = succeed(
        kubectl()
            .await?
            .args(["apply", "--dry-run=server", "-f", "-"]),
        Some(rendered.as_bytes()),
    );
    for object in [
        "serviceaccount/kubeftp",
        "role.rbac.authorization.k8s.io/kubeftp",
        "rolebinding.rbac.authorization.k8s.io/kubeftp",
        "clusterrole.rbac.authorization.k8s.io/kubeftp",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeftp",
        "deployment.apps/kubeftp",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    let docs = rendered.split("\n---").collect::<Vec<_>>();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|doc| doc.contains(&format!("\nkind: {kind}\n")))
            .copied()
            .unwrap_or_else(|| panic!("no {kind} in\n{rendered}"))
    };
    let role = of_kind("Role");
    assert!(
        role.contains(&format!("namespace: {}", watched.name)),
        "{role}"
    );
    assert!(
        role.contains("\"services\"") && !role.contains("\"nodes\""),
        "{role}"
    );
    let binding = of_kind("RoleBinding");
    assert!(
        binding.contains(&format!("namespace: {}", watched.name))
            && binding.contains(&format!("namespace: {}", ns.name)),
        "the binding is in the watched namespace, for the release's account: {binding}"
    );
    let cluster_role = of_kind("ClusterRole");
    let resources: Vec<&str> = cluster_role
        .lines()
        .filter(|line| line.trim_start().starts_with("resources:"))
        .collect();
    assert_eq!(resources, ["    resources: [\"nodes\"]"], "{cluster_role}");
    Ok(())
}

#[tokio::test]
async fn examples_pass_server_side_dry_run() -> Result<()> {
    let ns = shared_namespace("examples").await?;
    support::install_crd(&ns.client).await?;
    for example in ["minimal.yaml", "tls.yaml", "nodeport.yaml"] {
        let out = succeed(
            kubectl()
                .await?
                .args(["apply", "--dry-run=server", "-n", &ns.name, "-f"])
                .arg(repo(&format!("examples/{example}"))),
            None,
        );
        assert!(out.contains("ftpserver.kubeftp.dev/"), "{example}: {out}");
    }
    Ok(())
}

/// The operator, impersonating the chart's ServiceAccount, does its whole
/// job: the ClusterRole grants everything it uses.
#[tokio::test]
async fn operator_works_with_exactly_the_charts_rbac() -> Result<()> {
    let ns = shared_namespace("chart-rbac").await?;
    operator_works_with_the_charts_rbac(&ns.client, &ns.name, &ns.name, &ENFORCED).await
}

/// With watchNamespace the Role in that namespace (and the Nodes-only
/// ClusterRole) grant everything it uses, and nothing elsewhere.
#[tokio::test]
async fn operator_works_with_the_charts_rbac_for_one_namespace() -> Result<()> {
    let release = shared_namespace("chart-rbac-release").await?;
    let watched = shared_namespace("chart-rbac-watched").await?;
    let watch = format!("watchNamespace={}", watched.name);
    operator_works_with_the_charts_rbac(
        &release.client,
        &release.name,
        &watched.name,
        &["--set", &watch, ENFORCED[0], ENFORCED[1]],
    )
    .await?;

    // What the account may do now, as the authorizer sees it.
    let account = format!(
        "system:serviceaccount:{}:{}-kubeftp",
        release.name, release.name
    );
    let may = |verb: &str, resource: &str, namespace: Option<&str>| {
        let client = release.client.clone();
        let account = account.clone();
        let (verb, resource) = (verb.to_owned(), resource.to_owned());
        let namespace = namespace.map(str::to_owned);
        async move {
            let review: SubjectAccessReview = serde_json::from_value(json!({
                "spec": {
                    "user": account,
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace}
                }
            }))?;
            let reviews: Api<SubjectAccessReview> = Api::all(client);
            let review = reviews.create(&PostParams::default(), &review).await?;
            anyhow::Ok(review.status.is_some_and(|s| s.allowed))
        }
    };
    assert!(may("list", "services", Some(&watched.name)).await?);
    assert!(may("patch", "persistentvolumeclaims", Some(&watched.name)).await?);
    assert!(may("get", "nodes", None).await?);
    for (verb, resource) in [
        ("list", "services"),
        ("delete", "services"),
        ("list", "pods"),
        ("patch", "statefulsets"),
        ("delete", "statefulsets"),
        ("list", "configmaps"),
        ("delete", "configmaps"),
        ("patch", "persistentvolumeclaims"),
        ("delete", "persistentvolumeclaims"),
    ] {
        assert!(
            !may(verb, resource, Some(&release.name)).await?,
            "{verb} {resource} outside the watched namespace"
        );
        assert!(
            !may(verb, resource, None).await?,
            "{verb} {resource} in all namespaces"
        );
    }
    Ok(())
}

/// Installed as by default (no ownerReferencesPermissionEnforcement, which
/// auto leaves off outside OpenShift) on a cluster that enforces it, the
/// operator may not release a claim: the FtpServer is Degraded, Forbidden,
/// and its message says which chart value to set.
#[tokio::test]
async fn a_refused_claim_release_names_the_chart_value_to_set() -> Result<()> {
    let ns = shared_namespace("chart-rbac-unenforced").await?;
    let as_operator = as_the_charts_account(&ns.client, &ns.name, &ns.name, &[]).await?;
    let operator = Operator::start(&as_operator, &ns.name);
    let ftps: Api<FtpServer> = Api::namespaced(ns.client.clone(), &ns.name);
    let spec = serde_yaml::from_str(
        "replicas: 2\nusers: {secretName: u}\nstorage: {volumeClaimTemplate: {size: 1Gi}}",
    )?;
    ftps.create(&PostParams::default(), &FtpServer::new("files", spec))
        .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ns.client.clone(), &ns.name);
    // Owned by the StatefulSet first: a claim the StatefulSet controller
    // never owned (Retain came first) has nothing to release.
    second_claim_made(&claims).await?;
    // Scaled down first: while the pod still exists, the StatefulSet
    // controller releases its claim itself.
    let scale_down = json!({"spec": {"replicas": 1}});
    ftps.patch("files", &PatchParams::default(), &Patch::Merge(&scale_down))
        .await?;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    // Gone, and the StatefulSet controller knows it: one that still saw
    // the pod would release its claim itself, leaving nothing to refuse.
    let sets: Api<StatefulSet> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually("the second pod to go", WAIT, || async {
        let set = sets.get("files").await?;
        let status = set.status.unwrap_or_default();
        Ok(pods.get_opt("files-1").await?.is_none()
            && status.observed_generation == set.metadata.generation
            && status.replicas == 1)
    })
    .await?;
    let retain = json!({"spec": {"storage": {"volumeClaimTemplate": {"whenDeleted": "Retain"}}}});
    ftps.patch("files", &PatchParams::default(), &Patch::Merge(&retain))
        .await?;
    degraded_naming_the_value(&ftps, "changing the owner references").await?;
    operator.stop().await;
    Ok(())
}

/// An FtpServer deleted with `--cascade=orphan` leaves its children
/// without owner references; created again, it adopts them. Where
/// OwnerReferencesPermissionEnforcement is enforced, giving an object an
/// owner reference takes delete on it, which the chart grants with
/// ownerReferencesPermissionEnforcement.
#[tokio::test]
async fn a_recreated_ftpserver_adopts_the_children_an_orphaning_delete_left() -> Result<()> {
    let ns = shared_namespace("chart-rbac-adopt").await?;
    let as_operator = as_the_charts_account(&ns.client, &ns.name, &ns.name, &ENFORCED).await?;
    let operator = Operator::start(&as_operator, &ns.name);
    orphan_and_recreate(&ns.client, &ns.name).await?;
    // Its one replica's children, all its own; the second replica's
    // Service, orphaned too, goes with its pod.
    eventually(
        "every child owned by the new FtpServer, one Service",
        WAIT,
        || async {
            let uid = Api::<FtpServer>::namespaced(ns.client.clone(), &ns.name)
                .get("files")
                .await?
                .uid();
            let children = children_controllers(&ns.client, &ns.name).await?;
            let names: Vec<&str> = children.iter().map(|(name, _)| name.as_str()).collect();
            Ok(children.iter().all(|(_, controller)| *controller == uid)
                && names
                    == [
                        "StatefulSet files",
                        "ConfigMap files-addresses",
                        "ConfigMap files-config",
                        "Service files-0",
                    ])
        },
    )
    .await?;
    stop_without_forbidden_requests(operator).await
}

/// Without ownerReferencesPermissionEnforcement, on a cluster that
/// enforces it, the adoption is refused: Degraded, and the message names
/// the value to set.
#[tokio::test]
async fn a_refused_adoption_names_the_chart_value_to_set() -> Result<()> {
    let ns = shared_namespace("chart-rbac-adopt-unenforced").await?;
    let as_operator = as_the_charts_account(&ns.client, &ns.name, &ns.name, &[]).await?;
    let operator = Operator::start(&as_operator, &ns.name);
    orphan_and_recreate(&ns.client, &ns.name).await?;
    let ftps: Api<FtpServer> = Api::namespaced(ns.client.clone(), &ns.name);
    degraded_naming_the_value(&ftps, "adopting").await?;
    operator.stop().await;
    Ok(())
}

/// Whether the StatefulSet "files" owns `claim`.
fn owned_by_the_stateful_set(claim: &PersistentVolumeClaim) -> bool {
    claim
        .owner_references()
        .iter()
        .any(|owner| owner.kind == "StatefulSet" && owner.name == "files")
}

/// Waits until the StatefulSet controller has made the second replica's
/// claim, data-files-1, with its second pod, and owns it.
async fn second_claim_made(claims: &Api<PersistentVolumeClaim>) -> Result<()> {
    eventually("the second claim, owned", WAIT, || async {
        Ok(claims
            .get_opt("data-files-1")
            .await?
            .is_some_and(|claim| owned_by_the_stateful_set(&claim)))
    })
    .await
}

/// Stops the operator and fails if any of its requests was forbidden.
async fn stop_without_forbidden_requests(operator: Operator) -> Result<()> {
    let failures = operator.metrics.failures.clone();
    operator.stop().await;
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("f", "", failures);
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    assert!(!text.contains("Forbidden"), "forbidden requests: {text}");
    Ok(())
}

/// Waits for the FtpServer "files" to turn Degraded (Forbidden) with a
/// message about `what` that names the chart value to set.
async fn degraded_naming_the_value(ftps: &Api<FtpServer>, what: &str) -> Result<()> {
    eventually("Degraded, naming the value", WAIT, || async {
        let ftp = ftps.get("files").await?;
        let conditions = ftp.status.map(|s| s.conditions).unwrap_or_default();
        Ok(conditions.iter().any(|c| {
            c.type_ == "Degraded"
                && c.status == "True"
                && c.reason == "Forbidden"
                && c.message.contains(what)
                && c.message
                    .contains("ownerReferencesPermissionEnforcement: true")
        }))
    })
    .await
}

/// Creates the FtpServer "files" in `namespace` with two replicas (the
/// operator runs), waits for its children, deletes it with orphan
/// propagation, waits for the garbage collector to take its references off
/// them, and creates it again with one replica.
async fn orphan_and_recreate(client: &kube::Client, namespace: &str) -> Result<()> {
    let ftps: Api<FtpServer> = Api::namespaced(client.clone(), namespace);
    let spec =
        serde_yaml::from_str("users: {secretName: u}\nstorage: {emptyDir: {}}\nreplicas: 2")?;
    let ftp = ftps
        .create(&PostParams::default(), &FtpServer::new("files", spec))
        .await?;
    let first = ftp.uid();
    // The StatefulSet, its two ConfigMaps and the replicas' Services.
    eventually("the children", WAIT, || async {
        let children = children_controllers(client, namespace).await?;
        Ok(children.len() == 5 && children.iter().all(|(_, c)| *c == first))
    })
    .await?;
    ftps.delete(
        "files",
        &kube::api::DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await?;
    // The garbage collector handles a new kind's objects once it has
    // rediscovered the API, every 30 s: the CRD may be that new.
    eventually(
        "the FtpServer gone, its children orphaned",
        Duration::from_secs(90),
        || async {
            let orphaned = children_controllers(client, namespace)
                .await?
                .iter()
                .all(|(_, controller)| controller.is_none());
            Ok(ftps.get_opt("files").await?.is_none() && orphaned)
        },
    )
    .await?;
    let spec =
        serde_yaml::from_str("users: {secretName: u}\nstorage: {emptyDir: {}}\nreplicas: 1")?;
    ftps.create(&PostParams::default(), &FtpServer::new("files", spec))
        .await?;
    Ok(())
}

/// The FtpServer "files"' children in `namespace` (by its instance label)
/// and the uid of each one's controller.
async fn children_controllers(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<(String, Option<String>)>> {
    let by_label = ListParams::default().labels("app.kubernetes.io/instance=files");
    let controller = |kind: &str, meta: &kube::api::ObjectMeta| {
        let uid = meta
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true) && owner.kind == "FtpServer")
            .map(|owner| owner.uid.clone());
        (
            format!("{kind} {}", meta.name.clone().unwrap_or_default()),
            uid,
        )
    };
    let mut children = Vec::new();
    for set in Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&by_label)
        .await?
    {
        children.push(controller("StatefulSet", &set.metadata));
    }
    for map in Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&by_label)
        .await?
    {
        children.push(controller("ConfigMap", &map.metadata));
    }
    for service in Api::<Service>::namespaced(client.clone(), namespace)
        .list(&by_label)
        .await?
    {
        children.push(controller("Service", &service.metadata));
    }
    Ok(children)
}

/// The test control plane enforces OwnerReferencesPermissionEnforcement.
const ENFORCED: [&str; 2] = ["--set", "ownerReferencesPermissionEnforcement=true"];

/// Installs the chart's ServiceAccount and RBAC (with `values`) in
/// `release_namespace`, the release named after it; returns a client that
/// acts as that account, once its rights on `watched` apply.
async fn as_the_charts_account(
    client: &kube::Client,
    release_namespace: &str,
    watched: &str,
    values: &[&str],
) -> Result<kube::Client> {
    support::install_crd(client).await?;
    // Cluster-scoped names are per release: name the release after the namespace.
    let release = release_namespace.to_owned();
    let mut args = vec![
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ];
    args.extend_from_slice(values);
    let rendered = succeed(&mut helm_template(&release, release_namespace, &args), None);
    succeed(
        kubectl().await?.args(["apply", "-f", "-"]),
        Some(rendered.as_bytes()),
    );

    let plane = shared().await?;
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig_path())?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let account = format!("{release}-kubeftp");
    config.auth_info.impersonate = Some(format!(
        "system:serviceaccount:{release_namespace}:{account}"
    ));
    let as_operator = kube::Client::try_from(config)?;
    // RBAC bindings can take a moment to reach the authorizer's cache.
    let ftps: Api<FtpServer> = Api::namespaced(as_operator.clone(), watched);
    eventually("the role to apply", WAIT, || async {
        Ok(ftps.list(&ListParams::default()).await.is_ok())
    })
    .await?;
    Ok(as_operator)
}

/// Installs the chart's ServiceAccount and RBAC in `release_namespace`
/// (the release named after it), runs the operator as that account on
/// `watched`, and has it create, address and scale an FtpServer there.
async fn operator_works_with_the_charts_rbac(
    client: &kube::Client,
    release_namespace: &str,
    watched: &str,
    values: &[&str],
) -> Result<()> {
    let as_operator = as_the_charts_account(client, release_namespace, watched, values).await?;
    let operator = Operator::start(&as_operator, watched);

    let admin = |client: &kube::Client| Api::<FtpServer>::namespaced(client.clone(), watched);
    let spec = serde_yaml::from_str(
        "replicas: 2\nusers: {secretName: u}\nstorage: {volumeClaimTemplate: {size: 1Gi}}",
    )?;
    admin(client)
        .create(&PostParams::default(), &FtpServer::new("files", spec))
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), watched);
    eventually("both Services", WAIT, || async {
        Ok(services.get_opt("files-1").await?.is_some())
    })
    .await?;
    let ingress = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.30"}]}}});
    services
        .patch_status("files-0", &PatchParams::default(), &Patch::Merge(&ingress))
        .await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), watched);
    eventually("the address", WAIT, || async {
        let map = maps.get_opt("files-addresses").await?;
        Ok(map
            .and_then(|m| m.data)
            .is_some_and(|d| d.get("files-0").map(String::as_str) == Some("203.0.113.30")))
    })
    .await?;
    // A scale-down before the second claim exists leaves none for
    // whenDeleted below.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), watched);
    second_claim_made(&claims).await?;
    // Scaling down deletes a Service; the address makes an Event.
    admin(client)
        .patch(
            "files",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1}})),
        )
        .await?;
    eventually("the extra Service to go", WAIT, || async {
        Ok(services.get_opt("files-1").await?.is_none())
    })
    .await?;
    // The status (and its Event) follow the deletion in the same reconcile.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), watched);
    eventually("an AddressesKnown event", WAIT, || async {
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .into_iter()
            .any(|e| e.reason.as_deref() == Some("AddressesKnown")))
    })
    .await?;
    // whenDeleted moves the StatefulSet's owner reference on the claim the
    // scale-down left behind: off for Retain, back on for Delete. Where
    // OwnerReferencesPermissionEnforcement is on (as on the test control
    // plane), changing a claim's owner references takes delete on claims,
    // and a reference with blockOwnerDeletion update on the owner's
    // finalizers.
    for (when_deleted, want_owned) in [("Retain", false), ("Delete", true)] {
        let patch =
            json!({"spec": {"storage": {"volumeClaimTemplate": {"whenDeleted": when_deleted}}}});
        admin(client)
            .patch("files", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let wanted = format!("data-files-1 owned by the StatefulSet: {want_owned}");
        eventually(&wanted, WAIT, || async {
            Ok(owned_by_the_stateful_set(&claims.get("data-files-1").await?) == want_owned)
        })
        .await?;
    }
    stop_without_forbidden_requests(operator).await
}
