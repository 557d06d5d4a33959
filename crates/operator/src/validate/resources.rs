//! `spec.resources`, as the apiserver checks a container's resources
//! (k8s.io/kubernetes pkg/apis/core/validation, ValidateResourceRequirements):
//! the CRD compares requests with limits for cpu, memory and
//! ephemeral-storage only (its CEL cost budget allows no more), so the rest
//! is refused here, before the Services and their load balancers exist,
//! instead of by the apiserver when the StatefulSet is applied.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;

use super::{InvalidSpec, formats};
use crate::quantity;

pub fn check(resources: &ResourceRequirements) -> Result<(), InvalidSpec> {
    let fail = |message: String| Err(InvalidSpec(message));
    let none = BTreeMap::new();
    let limits = resources.limits.as_ref().unwrap_or(&none);
    let requests = resources.requests.as_ref().unwrap_or(&none);
    let both = [(limits, "limits"), (requests, "requests")];

    for (map, field) in both {
        for (name, value) in map {
            if let Some(problem) = name_problem(name) {
                return fail(format!("resources.{field} key {name:?} {problem}"));
            }
            if !matches!(quantity::sign(&value.0), Some(0 | 1)) {
                return fail(format!(
                    "resources.{field}.{name} {:?} must be a quantity of at least zero, such as 500m or 256Mi",
                    value.0
                ));
            }
            if let Some(page) = name.strip_prefix("hugepages-")
                && quantity::is_multiple(&value.0, page) != Some(true)
            {
                return fail(format!(
                    "resources.{field}.{name} {:?} must be a whole number of {page} pages",
                    value.0
                ));
            }
            if is_extended(name) && quantity::is_integer(&value.0) != Some(true) {
                return fail(format!(
                    "resources.{field}.{name} {:?} must be a whole number: extended resources are counted in units",
                    value.0
                ));
            }
        }
    }

    for (name, request) in requests {
        match limits.get(name) {
            Some(limit) if quantity::compare(&request.0, &limit.0) == Some(Ordering::Greater) => {
                return fail(format!(
                    "resources.requests.{name} {:?} must not exceed resources.limits.{name} {:?}",
                    request.0, limit.0
                ));
            }
            Some(limit) if !overcommitted(name) && !quantity::same(&request.0, &limit.0) => {
                return fail(format!(
                    "resources.requests.{name} {:?} must equal resources.limits.{name} {:?}: Kubernetes does not overcommit {name}",
                    request.0, limit.0
                ));
            }
            None if !overcommitted(name) => {
                return fail(format!(
                    "resources.requests.{name} needs resources.limits.{name} of the same value: Kubernetes does not overcommit {name}"
                ));
            }
            _ => {}
        }
    }

    let has = |name: &str| limits.contains_key(name) || requests.contains_key(name);
    let hugepages = limits
        .keys()
        .chain(requests.keys())
        .any(|n| is_hugepages(n));
    if hugepages && !has("cpu") && !has("memory") {
        return fail(
            "resources with hugepages need a cpu or memory request or limit too".to_owned(),
        );
    }
    Ok(())
}

/// Why `name` cannot be a container's resource, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
    if !formats::qualified_name(name) {
        return Some("must be a resource name such as memory or example.com/gpu");
    }
    if let Some(page) = name.strip_prefix("hugepages-")
        && quantity::sign(page) != Some(1)
    {
        return Some("must name a page size, such as hugepages-2Mi");
    }
    if !name.contains('/')
        && !matches!(name, "cpu" | "memory" | "ephemeral-storage")
        && !is_hugepages(name)
    {
        return Some(
            "is not a container resource: cpu, memory, ephemeral-storage, hugepages-<size>, or an extended resource such as example.com/gpu",
        );
    }
    if is_extended(name) && name.starts_with("requests.") {
        return Some("must not start with \"requests.\"");
    }
    None
}

/// Kubernetes' own resources: no domain, or one in kubernetes.io (the
/// apiserver's IsNativeResource; `container_resources_the_operator_takes_are_the_apiservers`
/// in tests/crd_validation.rs holds the two in agreement).
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Resources a device plugin or operator adds, such as example.com/gpu.
fn is_extended(name: &str) -> bool {
    !is_native(name)
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Whether a request may stay below its limit (or have none).
fn overcommitted(name: &str) -> bool {
    is_native(name) && !is_hugepages(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_yaml(yaml: &str) -> Result<(), InvalidSpec> {
        check(&serde_yaml::from_str(yaml).expect("resources"))
    }

    #[test]
    fn what_kubernetes_takes_passes() {
        for yaml in [
            "{requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: '1', memory: 1Gi}}",
            "{requests: {memory: 1Gi}, limits: {memory: 1024Mi}}",
            "{requests: {cpu: '0', ephemeral-storage: 1Gi}}",
            "{limits: {example.com/gpu: 2}}",
            "{requests: {example.com/gpu: 2}, limits: {example.com/gpu: '2'}}",
            "{requests: {hugepages-2Mi: 4Mi, memory: 1Gi}, limits: {hugepages-2Mi: 4Mi, memory: 1Gi}}",
            "{limits: {hugepages-1Gi: 2Gi, cpu: '1'}}",
            "{requests: {cpu: '-0'}}",
            "{limits: {example.com/fpga: 1e3}}",
        ] {
            assert_eq!(check_yaml(yaml), Ok(()), "{yaml}");
        }
    }

    #[test]
    fn what_kubernetes_refuses_is_refused_saying_what_to_fix() {
        for (yaml, expected) in [
            (
                "{requests: {memory: 2Gi}, limits: {memory: 1Gi}}",
                "resources.requests.memory \"2Gi\" must not exceed resources.limits.memory \"1Gi\"",
            ),
            (
                "{requests: {example.com/gpu: 1}, limits: {example.com/gpu: 2}}",
                "resources.requests.example.com/gpu \"1\" must equal resources.limits.example.com/gpu \"2\": Kubernetes does not overcommit example.com/gpu",
            ),
            (
                "{requests: {example.com/gpu: 1}}",
                "resources.requests.example.com/gpu needs resources.limits.example.com/gpu of the same value",
            ),
            (
                "{requests: {hugepages-2Mi: 2Mi, memory: 1Gi}, limits: {hugepages-2Mi: 4Mi}}",
                "resources.requests.hugepages-2Mi \"2Mi\" must equal resources.limits.hugepages-2Mi \"4Mi\"",
            ),
            (
                "{limits: {example.com/gpu: 500m}}",
                "resources.limits.example.com/gpu \"500m\" must be a whole number",
            ),
            (
                "{limits: {example.com/gpu: '1.5'}}",
                "must be a whole number",
            ),
            (
                "{limits: {hugepages-2Mi: 4Mi}}",
                "resources with hugepages need a cpu or memory request or limit too",
            ),
            (
                "{limits: {hugepages-2Mi: 3Mi, memory: 1Gi}}",
                "resources.limits.hugepages-2Mi \"3Mi\" must be a whole number of 2Mi pages",
            ),
            (
                "{limits: {hugepages-big: 1Gi, memory: 1Gi}}",
                "resources.limits key \"hugepages-big\" must name a page size",
            ),
            (
                "{limits: {gpu: 1}}",
                "resources.limits key \"gpu\" is not a container resource",
            ),
            (
                "{requests: {'bad name!': 1}}",
                "resources.requests key \"bad name!\" must be a resource name",
            ),
            (
                "{limits: {memory: lots}}",
                "resources.limits.memory \"lots\" must be a quantity of at least zero",
            ),
            (
                "{requests: {cpu: '-1'}}",
                "resources.requests.cpu \"-1\" must be a quantity of at least zero",
            ),
        ] {
            let message = check_yaml(yaml).expect_err(yaml).0;
            assert!(message.contains(expected), "{yaml}: {message}");
        }
    }
}
