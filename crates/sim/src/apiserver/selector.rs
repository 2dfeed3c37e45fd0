//! Label selectors (equality- and set-based, as in `?labelSelector=`) and field selectors
//! (`?fieldSelector=`), parsed once per request and matched against stored JSON objects.

use crate::json::JsonPointer as _;
use std::collections::BTreeSet;

use serde_json::Value;

use super::status::ApiError;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    Exists(String),
    NotExists(String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(key: &str, rest: &str, raw: &str) -> Result<BTreeSet<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {raw:?}: expected (values) after {key}"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            if let Some(key) = term.strip_prefix('!') {
                reqs.push(LabelRequirement::NotExists(key.trim().to_string()));
            } else if let Some((k, v)) = term.split_once("!=") {
                reqs.push(LabelRequirement::NotIn(
                    k.trim().to_string(),
                    BTreeSet::from([v.trim().to_string()]),
                ));
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                reqs.push(LabelRequirement::In(
                    k.trim().to_string(),
                    BTreeSet::from([v.trim().to_string()]),
                ));
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                reqs.push(LabelRequirement::NotIn(
                    k.trim().to_string(),
                    parse_set(k, rest, term)?,
                ));
            } else if let Some((k, rest)) = term.split_once(" in ") {
                reqs.push(LabelRequirement::In(
                    k.trim().to_string(),
                    parse_set(k, rest, term)?,
                ));
            } else if term.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: {term:?}"
                )));
            } else {
                reqs.push(LabelRequirement::Exists(term.to_string()));
            }
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches a label map (`metadata.labels` of an object; missing = no labels).
    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::NotExists(k) => get(k).is_none(),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            LabelRequirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.is_empty()
            || self.matches_labels(obj.ptr("/metadata/labels").and_then(Value::as_object))
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`),
    /// as PodDisruptionBudgets and DaemonSets carry it. `None` = matches nothing (a null selector).
    pub fn from_object(sel: &Value) -> Option<Self> {
        let obj = sel.as_object()?;
        let mut reqs = Vec::new();
        if let Some(ml) = obj.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(LabelRequirement::In(
                    k.clone(),
                    BTreeSet::from([v.as_str().unwrap_or_default().to_string()]),
                ));
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: BTreeSet<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => reqs.push(LabelRequirement::In(key, values)),
                    "NotIn" => reqs.push(LabelRequirement::NotIn(key, values)),
                    "Exists" => reqs.push(LabelRequirement::Exists(key)),
                    "DoesNotExist" => reqs.push(LabelRequirement::NotExists(key)),
                    _ => return None,
                }
            }
        }
        Some(Self(reqs))
    }
}

/// One field requirement: `path=value` or `path!=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub path: Vec<String>,
    pub value: String,
    pub equal: bool,
}

/// A parsed field selector. Any dotted path is accepted (the real server accepts a per-kind set,
/// which always includes `metadata.name` and `metadata.namespace`; pods add `spec.nodeName`,
/// `status.phase`, ...). A missing field compares as the empty string, as upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, equal) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            reqs.push(FieldRequirement {
                path: path.trim().split('.').map(str::to_string).collect(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let mut cur = Some(obj);
            for seg in &r.path {
                cur = cur.and_then(|c| c.get(seg));
            }
            let actual = match cur {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) == r.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({ "metadata": { "name": "a", "namespace": "ns", "labels": labels }, "spec": {}, "status": { "phase": "Pending" } })
    }

    #[test]
    fn equality_and_set_based_label_selectors() {
        let p = pod(json!({ "app": "web", "tier": "front" }));
        assert!(LabelSelector::parse("app=web").unwrap().matches(&p));
        assert!(LabelSelector::parse("app==web,tier").unwrap().matches(&p));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&p));
        assert!(
            LabelSelector::parse("app in (db, web),!missing")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !LabelSelector::parse("tier notin (front,back)")
                .unwrap()
                .matches(&p)
        );
        assert!(
            LabelSelector::parse("missing notin (x)")
                .unwrap()
                .matches(&p)
        );
        assert!(!LabelSelector::parse("missing").unwrap().matches(&p));
        assert!(LabelSelector::parse("app in (web").is_err());
    }

    #[test]
    fn field_selectors_treat_missing_as_empty() {
        let p = pod(json!({}));
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&p));
        assert!(
            FieldSelector::parse("status.phase!=Running,metadata.namespace=ns")
                .unwrap()
                .matches(&p)
        );
        assert!(!FieldSelector::parse("metadata.name=b").unwrap().matches(&p));
        assert!(FieldSelector::parse("nonsense").is_err());
    }

    #[test]
    fn selector_objects_like_pdbs_carry() {
        let sel = LabelSelector::from_object(&json!({
            "matchLabels": { "app": "web" },
            "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["front"] }]
        }))
        .unwrap();
        assert!(sel.matches(&pod(json!({ "app": "web", "tier": "front" }))));
        assert!(!sel.matches(&pod(json!({ "app": "web" }))));
    }
}
