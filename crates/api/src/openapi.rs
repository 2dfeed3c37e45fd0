//! What a Kubernetes API server does with a CRD's structural OpenAPI v3 schema, without CEL:
//! validating an object against it ([`validate`]), filling in defaults ([`apply_defaults`]) and
//! the checks it makes before it accepts the CRD itself ([`check_crd_schema`]: every `default`
//! validates against the schema at its place, list-type and map-key consistency).
//!
//! Key decision: one validator for the CRD tests here and for the simulated API server, so a
//! schema that a real API server would refuse, or an object it would reject, fails our tests the
//! same way. `x-kubernetes-validations` (CEL) rules are not evaluated; the Rust validation in
//! [`crate::validation`] mirrors them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value};

/// One reason an object (or a schema) is not acceptable, at a JSON path such as
/// `spec.subnetSelectorTerms` or `spec.requirements[4].values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Validates `value` against `schema` as the API server does for a custom resource (types,
/// nullable, int-or-string, enum, bounds, lengths, patterns, formats, required fields, item and
/// property counts, `anyOf`/`allOf`/`oneOf`/`not`). Fields the schema does not know are not
/// errors: the API server prunes them.
pub fn validate(schema: &Value, value: &Value) -> Vec<SchemaViolation> {
    let mut out = Vec::new();
    check(schema, value, &Path::Root, &mut out);
    out
}

/// Fills in `default`s where a field is absent, top-down, as the API server does on create,
/// update and read.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(prop, child);
                    }
                }
            }
            if let Some(extra @ Value::Object(_)) = schema.get("additionalProperties") {
                for child in map.values_mut() {
                    apply_defaults(extra, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Removes the fields the schema does not declare (unless it preserves unknown fields), as the API
/// server prunes custom resources on every write; returns the removed paths. At the root,
/// `apiVersion`, `kind` and `metadata` are the API server's own and are kept.
pub fn prune(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    if let Value::Object(map) = value {
        let props = schema.get("properties").and_then(Value::as_object);
        for (name, child) in map.iter_mut() {
            if let Some(s) = props.and_then(|p| p.get(name))
                && !matches!(name.as_str(), "apiVersion" | "kind" | "metadata")
            {
                prune_at(s, child, &Path::Field(&Path::Root, name), &mut removed);
            }
        }
        map.retain(|name, _| {
            let known = matches!(name.as_str(), "apiVersion" | "kind" | "metadata")
                || props.is_some_and(|p| p.contains_key(name));
            if !known {
                removed.push(name.clone());
            }
            known
        });
    }
    removed
}

/// Prunes below `path`, rendered only for the fields it removes (most writes remove none).
fn prune_at(schema: &Value, value: &mut Value, path: &Path<'_>, removed: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            map.retain(|name, _| {
                let known = props.is_some_and(|p| p.contains_key(name)) || extra.is_some();
                if !known {
                    removed.push(Path::Field(path, name).to_string());
                }
                known
            });
            for (name, child) in map.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(name)).or(extra) {
                    prune_at(s, child, &Path::Field(path, name), removed);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(s, item, &Path::Index(path, i), removed);
                }
            }
        }
        _ => {}
    }
}

/// The checks the API server makes of a CRD version's schema before it accepts the CRD, as far as
/// they can be made without CEL: every `default` (after its own defaulting) validates against the
/// schema at its place and has no field the schema would prune; `x-kubernetes-list-type: map`
/// names map keys that are scalar properties of its items and required or defaulted; `set` lists
/// hold scalars; no `default` under `anyOf`/`allOf`/`oneOf`/`not` nor under `metadata`.
pub fn check_crd_schema(schema: &Value) -> Vec<SchemaViolation> {
    let mut out = Vec::new();
    check_schema_node(schema, "", false, &mut out);
    out
}

fn violation(out: &mut Vec<SchemaViolation>, path: &str, message: impl Into<String>) {
    out.push(SchemaViolation {
        path: path.to_string(),
        message: message.into(),
    });
}

/// Where [`check`] is in the object, rendered (`spec.requirements[4].values`) only when a
/// violation is reported: most writes are valid, and a path per field was most of the work.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    /// `parent.field` (`field` alone at the root).
    Field(&'a Path<'a>, &'a str),
    /// `parent[i]`.
    Index(&'a Path<'a>, usize),
    /// `parent[key]` (an `additionalProperties` entry).
    Key(&'a Path<'a>, &'a str),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(parent, field) => f.write_str(&child_path(&parent.to_string(), field)),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
            Path::Key(parent, key) => write!(f, "{parent}[{key}]"),
        }
    }
}

fn at(out: &mut Vec<SchemaViolation>, path: &Path<'_>, message: impl Into<String>) {
    violation(out, &path.to_string(), message);
}

fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &Path<'_>, out: &mut Vec<SchemaViolation>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            at(out, path, "must not be null");
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            at(
                out,
                path,
                format!("must be an integer or a string, got {}", type_name(value)),
            );
            return;
        }
    } else if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let have = type_name(value);
        let ok = have == want || (want == "number" && have == "integer");
        if !ok {
            at(out, path, format!("must be of type {want}, got {have}"));
            return;
        }
    }
    check_enum(schema, value, path, out);
    check_combinators(schema, value, path, out);
    match value {
        Value::Number(n) => check_number(schema, n, path, out),
        Value::String(s) => check_string(schema, s, path, out),
        Value::Array(items) => check_array(schema, items, path, out),
        Value::Object(map) => check_object(schema, map, path, out),
        _ => {}
    }
}

fn check_enum(
    schema: &Map<String, Value>,
    value: &Value,
    path: &Path<'_>,
    out: &mut Vec<SchemaViolation>,
) {
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        at(
            out,
            path,
            format!(
                "unsupported value {value}: supported values: {}",
                list.join(", ")
            ),
        );
    }
}

fn check_combinators(
    schema: &Map<String, Value>,
    value: &Value,
    path: &Path<'_>,
    out: &mut Vec<SchemaViolation>,
) {
    let passes = |s: &Value| validate(s, value).is_empty();
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for s in all {
            check(s, value, path, out);
        }
    }
    if let Some(Value::Array(any)) = schema.get("anyOf")
        && !any.iter().any(passes)
    {
        at(out, path, "must match at least one schema in anyOf");
    }
    if let Some(Value::Array(one)) = schema.get("oneOf")
        && one.iter().filter(|s| passes(s)).count() != 1
    {
        at(out, path, "must match exactly one schema in oneOf");
    }
    if let Some(not) = schema.get("not")
        && passes(not)
    {
        at(out, path, "must not match the schema in not");
    }
}

fn check_number(
    schema: &Map<String, Value>,
    n: &serde_json::Number,
    path: &Path<'_>,
    out: &mut Vec<SchemaViolation>,
) {
    let Some(x) = n.as_f64() else { return };
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let exclusive = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    if let Some(min) = bound("minimum") {
        if exclusive("exclusiveMinimum") && x <= min {
            at(out, path, format!("should be greater than {min}"));
        } else if x < min {
            at(
                out,
                path,
                format!("should be greater than or equal to {min}"),
            );
        }
    }
    if let Some(max) = bound("maximum") {
        if exclusive("exclusiveMaximum") && x >= max {
            at(out, path, format!("should be less than {max}"));
        } else if x > max {
            at(out, path, format!("should be less than or equal to {max}"));
        }
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
        _ => None,
    };
    if let Some((lo, hi)) = range
        && (x < lo || x > hi)
    {
        at(out, path, format!("{x} does not fit in int32"));
    }
}

fn check_string(
    schema: &Map<String, Value>,
    s: &str,
    path: &Path<'_>,
    out: &mut Vec<SchemaViolation>,
) {
    let len = s.chars().count() as u64;
    let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
    if let Some(min) = bound("minLength")
        && len < min
    {
        at(out, path, format!("should be at least {min} chars long"));
    }
    if let Some(max) = bound("maxLength")
        && len > max
    {
        at(out, path, format!("may not be more than {max} bytes"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => at(out, path, format!("{s:?} should match '{pattern}'")),
            Err(e) => at(out, path, format!("invalid pattern '{pattern}': {e}")),
        }
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") if s.parse::<jiff::Timestamp>().is_err() => {
            at(out, path, format!("{s:?} is not a valid date-time"));
        }
        _ => {}
    }
}

/// `pattern` compiled once per process: a CRD has a few dozen patterns and the simulated API
/// server checks every write against them. Shared, not cloned: a cloned `Regex` starts with an
/// empty pool of search caches, and building one per match cost more than the match.
fn compiled(pattern: &str) -> Result<Arc<regex::Regex>, regex::Error> {
    type Compiled = Result<Arc<regex::Regex>, regex::Error>;
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(re) = cache.get(pattern) {
        return re.clone();
    }
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).map(Arc::new))
        .clone()
}

fn check_array(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &Path<'_>,
    out: &mut Vec<SchemaViolation>,
) {
    let n = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        at(out, path, format!("should have at least {min} items"));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        at(
            out,
            path,
            format!("Too many: {n}: must have at most {max} items"),
        );
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &Path::Index(path, i), out);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    at(
                        out,
                        &Path::Index(path, i),
                        format!("Duplicate value: {item}"),
                    );
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys
                    .iter()
                    .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                    .collect();
                if !seen.insert(key) {
                    at(
                        out,
                        &Path::Index(path, i),
                        "Duplicate value: map key repeated",
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_object(
    schema: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &Path<'_>,
    out: &mut Vec<SchemaViolation>,
) {
    let n = map.len() as u64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && n < min
    {
        at(out, path, format!("should have at least {min} properties"));
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        at(out, path, format!("should have at most {max} properties"));
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        for field in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(field) {
                at(out, &Path::Field(path, field), "Required value");
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (name, child) in map {
        let child_schema = props
            .and_then(|p| p.get(name))
            .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
        if let Some(child_schema) = child_schema {
            let p = if props.is_some_and(|p| p.contains_key(name)) {
                Path::Field(path, name)
            } else {
                Path::Key(path, name)
            };
            check(child_schema, child, &p, out);
        }
    }
}

/// Fields of `value` the schema would prune (not declared, and unknown fields not preserved).
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<SchemaViolation>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            for (name, child) in map {
                match (props.and_then(|p| p.get(name)), extra) {
                    (Some(s), _) => unknown_fields(s, child, &child_path(path, name), out),
                    (None, Some(s)) => unknown_fields(s, child, &format!("{path}[{name}]"), out),
                    (None, None) => violation(
                        out,
                        &child_path(path, name),
                        "unknown field (the API server would prune it)",
                    ),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(s, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn is_scalar_schema(schema: &Value) -> bool {
    schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || matches!(
            schema.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "number" | "boolean")
        )
}

fn check_schema_node(
    schema: &Value,
    path: &str,
    in_combinator: bool,
    out: &mut Vec<SchemaViolation>,
) {
    let Some(node) = schema.as_object() else {
        return;
    };
    if let Some(default) = node.get("default") {
        if in_combinator {
            violation(
                out,
                path,
                "default is not allowed inside anyOf/allOf/oneOf/not",
            );
        }
        if path == "metadata" || path.starts_with("metadata.") {
            violation(out, path, "default is not allowed under metadata");
        }
        let mut defaulted = default.clone();
        apply_defaults(schema, &mut defaulted);
        for v in validate(schema, &defaulted) {
            let at = if v.path.is_empty() {
                path.to_string()
            } else {
                child_path(path, &v.path)
            };
            violation(
                out,
                &format!("{at}.default"),
                format!("Invalid value: {default}: {}", v.message),
            );
        }
        unknown_fields(schema, &defaulted, &format!("{path}.default"), out);
    }
    check_list_type(node, path, out);
    if let Some(Value::Object(props)) = node.get("properties") {
        for (name, child) in props {
            check_schema_node(child, &child_path(path, name), in_combinator, out);
        }
    }
    if let Some(items) = node.get("items") {
        check_schema_node(items, &format!("{path}[]"), in_combinator, out);
    }
    if let Some(extra @ Value::Object(_)) = node.get("additionalProperties") {
        check_schema_node(extra, &format!("{path}{{}}"), in_combinator, out);
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(Value::Array(list)) = node.get(key) {
            for s in list {
                check_schema_node(s, path, true, out);
            }
        }
    }
    if let Some(not) = node.get("not") {
        check_schema_node(not, path, true, out);
    }
}

fn check_list_type(node: &Map<String, Value>, path: &str, out: &mut Vec<SchemaViolation>) {
    let items = node.get("items");
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        None | Some("atomic") => {
            if node.contains_key("x-kubernetes-list-map-keys") {
                violation(
                    out,
                    path,
                    "x-kubernetes-list-map-keys needs x-kubernetes-list-type: map",
                );
            }
        }
        Some("set") => {
            if !items.is_some_and(is_scalar_schema) {
                violation(out, path, "x-kubernetes-list-type: set needs scalar items");
            }
        }
        Some("map") => {
            let keys: Vec<&str> = node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if keys.is_empty() {
                violation(
                    out,
                    path,
                    "x-kubernetes-list-type: map needs x-kubernetes-list-map-keys",
                );
            }
            let item = items.and_then(Value::as_object);
            let required: Vec<&str> = item
                .and_then(|i| i.get("required"))
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for key in keys {
                let prop = item
                    .and_then(|i| i.get("properties"))
                    .and_then(|p| p.get(key));
                match prop {
                    None => violation(
                        out,
                        path,
                        format!("map key {key} is not a property of the items"),
                    ),
                    Some(p) if !is_scalar_schema(p) => {
                        violation(out, path, format!("map key {key} must be a scalar"));
                    }
                    Some(p) if !required.contains(&key) && p.get("default").is_none() => {
                        violation(
                            out,
                            path,
                            format!("map key {key} must be required or have a default"),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        Some(other) => violation(
            out,
            path,
            format!("unknown x-kubernetes-list-type {other:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_default_that_breaks_its_own_schema_is_reported() {
        let schema = json!({"type": "object", "properties": {
            "terms": {"type": "array", "minItems": 1, "default": [], "items": {"type": "string"}},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "c"},
            "ok": {"type": "integer", "minimum": 1, "default": 1},
        }});
        let mut found = check_crd_schema(&schema);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["mode.default", "terms.default"], "{found:?}");
        assert!(found[1].message.contains("at least 1 items"), "{found:?}");
    }

    #[test]
    fn defaults_with_unknown_fields_or_under_anyof_are_reported() {
        let schema = json!({"type": "object", "properties": {
            "o": {"type": "object", "default": {"x": 1, "y": 2}, "properties": {"x": {"type": "integer"}}},
            "q": {"anyOf": [{"type": "integer", "default": 1}, {"type": "string"}]},
        }});
        let mut found: Vec<String> = check_crd_schema(&schema)
            .iter()
            .map(ToString::to_string)
            .collect();
        found.sort();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("o.default.y: unknown field"),
            "{found:?}"
        );
        assert!(found[1].contains("inside anyOf"), "{found:?}");
    }

    #[test]
    fn list_map_keys_must_be_required_scalars() {
        let schema = json!({"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        let found = check_crd_schema(&schema);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("required or have a default"));
    }

    #[test]
    fn objects_are_checked_like_the_api_server_does() {
        let schema = json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
            "n": {"type": "integer", "minimum": 0, "maximum": 100},
            "values": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "q": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "tags": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
            "maybe": {"type": "string", "nullable": true},
        }});
        assert!(
            validate(
                &schema,
                &json!({"name": "abc", "n": 5, "q": "1Gi", "maybe": null})
            )
            .is_empty()
        );
        let bad =
            json!({"n": 101, "values": ["a", "b", "c"], "q": true, "tags": {"k": ""}, "extra": 1});
        let mut found: Vec<String> = validate(&schema, &bad)
            .iter()
            .map(ToString::to_string)
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "n: should be less than or equal to 100",
                "name: Required value",
                "q: must be an integer or a string, got boolean",
                "tags[k]: should be at least 1 chars long",
                "values: Too many: 3: must have at most 2 items",
            ],
        );
        let named = validate(&schema, &json!({"name": "Bad!"}));
        assert_eq!(named.len(), 2, "{named:?}");
    }

    #[test]
    fn pruning_drops_undeclared_fields_but_keeps_metadata_and_preserved_ones() {
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "a": {"type": "integer"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"k": {"type": "string"}}}},
            }},
        }});
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"l": "v"}},
            "spec": {"a": 1, "b": 2, "free": {"z": 1}, "m": {"x": {"k": "v", "q": 1}}}, "other": true});
        let mut removed = prune(&schema, &mut v);
        removed.sort();
        assert_eq!(removed, ["other", "spec.b", "spec.m.x.q"]);
        assert_eq!(
            v,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"l": "v"}},
            "spec": {"a": 1, "free": {"z": 1}, "m": {"x": {"k": "v"}}}})
        );
    }

    #[test]
    fn defaults_fill_absent_fields_in_nested_objects_and_list_items() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "object", "default": {}, "properties": {"b": {"type": "integer", "default": 7}}},
            "l": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "string", "default": "x"}}}},
        }});
        let mut v = json!({"l": [{}, {"c": "y"}]});
        apply_defaults(&schema, &mut v);
        assert_eq!(v, json!({"a": {"b": 7}, "l": [{"c": "x"}, {"c": "y"}]}));
    }
}
