//! Bounds for the Kubernetes types the spec embeds (k8s-openapi's schemas
//! carry none): what the apiserver would refuse in the StatefulSet, refused
//! at admission instead, and the sizes CEL needs to keep its cost in budget.
//! Each is a schemars `transform` on the field that embeds the type.

use kube::core::Rule;
use schemars::Schema;
use serde_json::{Map, Value, json};

/// Most labels in `podLabels` and `nodeSelector`.
const MAX_LABELS: u64 = 64;
/// Most annotations in `podAnnotations` and `service.annotations`.
const MAX_ANNOTATIONS: u64 = 128;
/// Most resources in `resources.limits` or `resources.requests`. A 1.33
/// apiserver estimates the cost of a CEL rule on a quantity as if the value
/// were as long as a whole request (it ignores the maxLength of an
/// int-or-string), and times the most values there can be: with more than
/// 7, it refuses the CRD.
const MAX_RESOURCES: u64 = 7;
/// Longest quantity, e.g. `resources.limits.memory`.
const MAX_QUANTITY_LENGTH: u64 = 64;

/// Calls `edit` with every subschema of `schema` and the property names
/// leading to it.
fn walk(
    schema: &mut Value,
    path: &mut Vec<String>,
    edit: &mut impl FnMut(&[String], &mut Map<String, Value>),
) {
    let Value::Object(object) = schema else {
        return;
    };
    edit(path, object);
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            path.push(name.clone());
            walk(property, path, edit);
            path.pop();
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = object.get_mut(key) {
            walk(sub, path, edit);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(subs)) = object.get_mut(key) {
            for sub in subs {
                walk(sub, path, edit);
            }
        }
    }
}

fn edit(schema: &mut Schema, mut edit: impl FnMut(&[String], &mut Map<String, Value>)) {
    let mut value = std::mem::take(schema).to_value();
    walk(&mut value, &mut Vec::new(), &mut edit);
    *schema = Schema::try_from(value).expect("still a schema");
}

fn is_string(object: &Map<String, Value>) -> bool {
    match object.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    }
}

/// `Affinity`: operators are enums, and preferred terms weigh 1-100, as
/// Kubernetes requires (`format: int32` alone lets 99999999999 through).
pub fn affinity(schema: &mut Schema) {
    edit(schema, |path, object| {
        match path.last().map(String::as_str) {
            Some("weight") => {
                object.insert("minimum".into(), json!(1));
                object.insert("maximum".into(), json!(100));
            }
            // Node selector requirements compare numbers too, except on
            // fields; label selectors (pod (anti-)affinity) do not.
            Some("operator") if is_string(object) => {
                let within = |name: &str| path.iter().any(|p| p == name);
                let operators = if within("matchFields") {
                    json!(["In", "NotIn"])
                } else if within("nodeAffinity") {
                    json!(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"])
                } else {
                    json!(["In", "NotIn", "Exists", "DoesNotExist"])
                };
                object.insert("enum".into(), operators);
            }
            _ => {}
        }
    });
}

/// `Toleration`s: operator and effect are enums; empty means Equal or every
/// effect, as in a pod.
pub fn tolerations(schema: &mut Schema) {
    edit(schema, |path, object| {
        match path.last().map(String::as_str) {
            Some("operator") if is_string(object) => {
                object.insert("enum".into(), json!(["", "Equal", "Exists"]));
            }
            Some("effect") if is_string(object) => {
                object.insert(
                    "enum".into(),
                    json!(["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
                );
            }
            _ => {}
        }
    });
}

/// `ResourceRequirements`: bounded maps of bounded quantities, each
/// checked by `each_quantity`.
pub fn resources(schema: &mut Schema, each_quantity: Rule) {
    let each_quantity = json!([each_quantity]);
    edit(schema, |path, object| {
        if path.len() == 1
            && (path[0] == "limits" || path[0] == "requests")
            && let Some(Value::Object(quantity)) = object.get_mut("additionalProperties")
        {
            quantity.insert("maxLength".into(), json!(MAX_QUANTITY_LENGTH));
            quantity.insert("x-kubernetes-validations".into(), each_quantity.clone());
            object.insert("maxProperties".into(), json!(MAX_RESOURCES));
        }
    });
}

/// A map of labels: bounded, with values of at most 63 characters.
pub fn labels(schema: &mut Schema) {
    schema.insert("maxProperties".into(), json!(MAX_LABELS));
    if let Some(Value::Object(value)) = schema.get_mut("additionalProperties") {
        value.insert("maxLength".into(), json!(63));
    }
}

/// A map of annotations: bounded, so CEL can check every key.
pub fn annotations(schema: &mut Schema) {
    schema.insert("maxProperties".into(), json!(MAX_ANNOTATIONS));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_finds_nested_properties_with_their_path() {
        let mut schema = Schema::try_from(json!({
            "type": "object",
            "properties": {
                "nodeAffinity": {"type": "object", "properties": {
                    "terms": {"type": "array", "items": {"type": "object", "properties": {
                        "weight": {"type": "integer"},
                        "operator": {"type": ["string", "null"]},
                    }}},
                }},
                "podAffinity": {"anyOf": [{"type": "object", "properties": {
                    "operator": {"type": "string"},
                }}]},
            },
        }))
        .unwrap();
        affinity(&mut schema);
        let node = &schema.as_value()["properties"]["nodeAffinity"]["properties"]["terms"]["items"]
            ["properties"];
        assert_eq!(node["weight"]["maximum"], 100);
        assert_eq!(node["operator"]["enum"][5], "Lt");
        let pod = &schema.as_value()["properties"]["podAffinity"]["anyOf"][0]["properties"];
        assert_eq!(pod["operator"]["enum"].as_array().unwrap().len(), 4);
    }
}
