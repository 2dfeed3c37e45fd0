//! The four patch flavours: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge (for the
//! list fields controllers patch), and server-side apply.
//!
//! Strategic merge knows the merge keys of the lists Kubernetes declares with
//! `patchStrategy: merge` that controllers touch: `conditions` (by `type`), `finalizers` (a set),
//! `ownerReferences` (by `uid`), `containers`/`initContainers` (by `name`), `env`/`volumes`
//! (by `name`), `addresses` (by `type`). Every other list (`taints`, `tolerations`, ...) is atomic
//! and replaced whole, as upstream. `$patch: delete|replace` and `$deleteFromPrimitiveList/<f>`
//! are honoured; `$setElementOrder/<f>` and `$retainKeys` are ignored.
//!
//! Server-side apply (simplification, documented in docs/simulator.md): the applied configuration
//! is strategically merged into the live object (created when absent). Field managers are not
//! tracked, so there are no apply conflicts and fields dropped from a later apply are not removed.

use serde_json::Value;

use super::status::ApiError;

/// A patch as received.
#[derive(Clone, Debug, PartialEq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    /// From the request's `Content-Type`.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or_default().trim();
        match ct {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Merge key of a list field under strategic merge; `Some("")` = a set of primitives.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" | "addresses" => Some("type"),
        "finalizers" => Some(""),
        "ownerReferences" => Some("uid"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        _ => None,
    }
}

/// Applies `patch` to `target` with strategic-merge semantics.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pobj) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pobj.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        if let Some(o) = replacement.as_object_mut() {
            o.remove("$patch");
        }
        *target = replacement;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Some(tobj) = target.as_object_mut() else {
        return;
    };
    for (k, v) in pobj {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                tobj.get_mut(field).and_then(Value::as_array_mut),
                v.as_array(),
            ) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                tobj.remove(k);
            }
            Value::Array(items) => match merge_key(k) {
                Some(key) if tobj.get(k).is_some_and(Value::is_array) => {
                    if let Some(list) = tobj.get_mut(k).and_then(Value::as_array_mut) {
                        merge_list(list, items, key);
                    }
                }
                _ => {
                    let cleaned: Vec<Value> = items
                        .iter()
                        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                        .cloned()
                        .collect();
                    tobj.insert(k.clone(), Value::Array(cleaned));
                }
            },
            Value::Object(_) => {
                let slot = tobj.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(slot, v);
            }
            other => {
                tobj.insert(k.clone(), other.clone());
            }
        }
    }
}

fn merge_list(list: &mut Vec<Value>, items: &[Value], key: &str) {
    if key.is_empty() {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return;
    }
    for item in items {
        let id = item.get(key).cloned();
        let pos = id
            .as_ref()
            .and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut list[i], item),
            (None, false) => list.push(item.clone()),
        }
    }
}

/// Applies a patch body of the given kind to `target`.
pub fn apply_patch(kind: &PatchKind, target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            json_patch::patch(target, &ops.0).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })
        }
        PatchKind::Merge => {
            let p = object_patch(body)?;
            json_patch::merge(target, &p);
            drop_directives(target);
            Ok(())
        }
        PatchKind::Strategic | PatchKind::Apply => {
            let p = object_patch(body)?;
            check_directives(&p)?;
            strategic_merge(target, &p);
            Ok(())
        }
    }
}

/// A merge-style patch body, which must be a JSON object: the API server answers `422` for
/// `null`, `[1]` or `"x"`, which cannot be decoded into an object.
fn object_patch(body: &[u8]) -> Result<Value, ApiError> {
    let p = parse_body(body)?;
    if p.is_object() {
        return Ok(p);
    }
    let what = match &p {
        Value::Null => "null",
        Value::Array(_) => "an array",
        _ => "a scalar",
    };
    Err(ApiError::new(
        422,
        "Invalid",
        format!(
            "the server rejected our request due to an error in our request: the patch must be a JSON object, got {what}"
        ),
    ))
}

/// Rejects `$patch` directives strategic merge does not know (`422`, as upstream's "invalid patch
/// type"), so `{"$patch": "explode"}` is never stored.
fn check_directives(patch: &Value) -> Result<(), ApiError> {
    match patch {
        Value::Object(map) => {
            if let Some(d) = map.get("$patch")
                && !matches!(d.as_str(), Some("replace" | "delete" | "merge"))
            {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "the server rejected our request due to an error in our request: invalid patch type: {d}"
                    ),
                ));
            }
            map.values().try_for_each(check_directives)
        }
        Value::Array(items) => items.iter().try_for_each(check_directives),
        _ => Ok(()),
    }
}

/// Removes `$`-prefixed keys that a JSON merge patch copied in literally: no Kubernetes field
/// starts with `$`, and the API server's decoding drops them.
fn drop_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(drop_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_directives),
        _ => {}
    }
}

/// Parses a JSON body, or YAML for apply patches sent as YAML.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|_| {
                ApiError::bad_request(format!("error decoding request body: {json_err}"))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_merge_by_type_and_finalizers_as_a_set() {
        let mut obj = json!({
            "metadata": { "finalizers": ["a"] },
            "spec": { "taints": [{ "key": "x", "effect": "NoSchedule" }] },
            "status": { "conditions": [
                { "type": "Ready", "status": "False" },
                { "type": "Launched", "status": "True" }
            ] }
        });
        strategic_merge(
            &mut obj,
            &json!({
                "metadata": { "finalizers": ["b", "a"] },
                "spec": { "taints": [{ "key": "y", "effect": "NoExecute" }] },
                "status": { "conditions": [{ "type": "Ready", "status": "True" }, { "type": "New", "status": "True" }] }
            }),
        );
        assert_eq!(obj["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            obj["spec"]["taints"],
            json!([{ "key": "y", "effect": "NoExecute" }]),
            "taints are atomic"
        );
        let conds = obj["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 3);
        assert_eq!(conds[0], json!({ "type": "Ready", "status": "True" }));
    }

    #[test]
    fn directives_delete_entries() {
        let mut obj = json!({ "metadata": { "finalizers": ["a", "b"], "labels": { "x": "1" } },
            "status": { "conditions": [{ "type": "Ready" }, { "type": "Gone" }] } });
        strategic_merge(
            &mut obj,
            &json!({
                "metadata": { "$deleteFromPrimitiveList/finalizers": ["a"], "labels": { "x": null } },
                "status": { "conditions": [{ "type": "Gone", "$patch": "delete" }] }
            }),
        );
        assert_eq!(obj["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(obj["metadata"]["labels"], json!({}));
        assert_eq!(obj["status"]["conditions"], json!([{ "type": "Ready" }]));
    }

    #[test]
    fn json_patch_and_merge_patch() {
        let mut obj = json!({ "a": { "b": 1 }, "l": [1, 2] });
        apply_patch(&PatchKind::Merge, &mut obj, br#"{"a":{"c":2},"l":[3]}"#).unwrap();
        assert_eq!(obj, json!({ "a": { "b": 1, "c": 2 }, "l": [3] }));
        apply_patch(
            &PatchKind::Json,
            &mut obj,
            br#"[{"op":"remove","path":"/a/b"}]"#,
        )
        .unwrap();
        assert_eq!(obj, json!({ "a": { "c": 2 }, "l": [3] }));
        let err = apply_patch(
            &PatchKind::Json,
            &mut obj,
            br#"[{"op":"remove","path":"/zz"}]"#,
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
    }
}
