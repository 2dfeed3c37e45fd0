//! Field reference of each CRD (docs/reference/*.md), generated from the CRD's own schema, so the
//! documentation says exactly what the API server accepts: every field with its type, whether it
//! is required, its default, its bounds and its CEL rules. `stowage reference` writes the files;
//! a test fails when the committed ones differ.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// `nodepool.md`, `nodeclaim.md`, `ec2nodeclass.md`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.md", crd.spec.names.kind.to_ascii_lowercase())
}

/// The markdown reference of one CRD (its first served version).
pub fn markdown(crd: &CustomResourceDefinition) -> String {
    let names = &crd.spec.names;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", names.kind);
    out.push_str(
        "<!-- Generated from the CRD schema by `make reference` (`stowage reference --out-dir docs/reference`); do not edit. -->\n\n",
    );
    let Some(version) = crd.spec.versions.iter().find(|v| v.served) else {
        return out;
    };
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| apiVersion | `{}/{}` |",
        crd.spec.group, version.name
    );
    let _ = writeln!(out, "| kind | `{}` |", names.kind);
    let _ = writeln!(out, "| scope | {} |", crd.spec.scope);
    let mut short = vec![names.plural.clone()];
    short.extend(names.short_names.clone().unwrap_or_default());
    let _ = writeln!(
        out,
        "| kubectl names | {} |",
        short
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(sub) = &version.subresources
        && sub.status.is_some()
    {
        let _ = writeln!(
            out,
            "| status | a subresource: written by the controllers, not by users |"
        );
    }
    out.push('\n');
    if let Some(cols) = &version.additional_printer_columns {
        let _ = writeln!(out, "## `kubectl get` columns\n");
        let _ = writeln!(out, "| Column | From | Shown |\n|---|---|---|");
        for c in cols {
            let shown = if c.priority.unwrap_or(0) > 0 {
                "with `-o wide`"
            } else {
                "always"
            };
            let _ = writeln!(out, "| {} | `{}` | {shown} |", c.name, c.json_path);
        }
        out.push('\n');
    }
    for (section, title) in [("spec", "Spec"), ("status", "Status")] {
        let Some(node) = schema.pointer(&format!("/properties/{section}")) else {
            continue;
        };
        let _ = writeln!(out, "## {title}\n");
        if let Some(d) = node.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(d));
        }
        let rules = rules(node);
        if !rules.is_empty() {
            let _ = writeln!(out, "Rules on `{section}`: {}\n", rules.join("; "));
        }
        let _ = writeln!(
            out,
            "| Field | Type | Required | Default | Description |\n|---|---|---|---|---|"
        );
        let mut rows = Vec::new();
        fields(node, section, &mut rows);
        for row in rows {
            out.push_str(&row);
        }
        out.push('\n');
    }
    out
}

/// One table row per field under `node` (whose path is `path`), depth first in schema order.
fn fields(node: &Value, path: &str, rows: &mut Vec<String>) {
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let child_path = format!("{path}.{name}");
            rows.push(row(&child_path, child, required.contains(&name.as_str())));
            descend(child, &child_path, rows);
        }
    }
}

/// Into arrays (`field[]`) and maps (`field.<key>`) of objects.
fn descend(node: &Value, path: &str, rows: &mut Vec<String>) {
    if node.get("properties").is_some() {
        fields(node, path, rows);
    }
    if let Some(items) = node.get("items") {
        descend(items, &format!("{path}[]"), rows);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        descend(values, &format!("{path}.<key>"), rows);
    }
}

fn row(path: &str, node: &Value, required: bool) -> String {
    let default = node
        .get("default")
        .map(|d| format!("`{}`", escape(&d.to_string())))
        .unwrap_or_default();
    let mut desc = node
        .get("description")
        .and_then(Value::as_str)
        .map(one_line)
        .unwrap_or_default();
    let mut extra = constraints(node);
    extra.extend(rules(node).into_iter().map(|r| format!("Rule: {r}")));
    for e in extra {
        if !desc.is_empty() && !desc.ends_with('.') {
            desc.push('.');
        }
        if !desc.is_empty() {
            desc.push(' ');
        }
        desc.push_str(&e);
        if !desc.ends_with('.') {
            desc.push('.');
        }
    }
    format!(
        "| `{path}` | {} | {} | {default} | {} |\n",
        type_of(node),
        if required { "yes" } else { "" },
        escape(&desc)
    )
}

/// `string`, `integer`, `[]object`, `map[string]string`, `quantity` (int or string), ...
fn type_of(node: &Value) -> String {
    if node
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return "int or string".into();
    }
    let t = node.get("type").and_then(Value::as_str).unwrap_or("any");
    match t {
        "array" => format!("[]{}", node.get("items").map_or("any".into(), type_of)),
        "object" => match node.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map[string]{}", type_of(v)),
            _ => "object".into(),
        },
        "string" => match node.get("format").and_then(Value::as_str) {
            Some(f) => format!("string ({f})"),
            None => "string".into(),
        },
        other => other.into(),
    }
}

/// Bounds the schema puts on a field, in words.
fn constraints(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = node.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = e.iter().map(|v| format!("`{}`", value_text(v))).collect();
        out.push(format!("One of {}", values.join(", ")));
    }
    let num = |k: &str| node.get(k).map(number_text);
    for (lo, hi, unit) in [
        ("minimum", "maximum", ""),
        ("minLength", "maxLength", " characters"),
        ("minItems", "maxItems", " items"),
        ("minProperties", "maxProperties", " entries"),
    ] {
        match (num(lo), num(hi)) {
            (Some(lo), Some(hi)) => out.push(format!("From {lo} to {hi}{unit}")),
            (Some(lo), None) => out.push(format!("At least {lo}{unit}")),
            (None, Some(hi)) => out.push(format!("At most {hi}{unit}")),
            (None, None) => {}
        }
    }
    if node.get("pattern").is_some() {
        out.push("Checked against a pattern (see the CRD)".into());
    }
    if let Some(items) = node.get("items") {
        for c in constraints(items) {
            out.push(format!("Each item: {}", lower_first(&c)));
        }
    }
    out
}

/// The CEL rules of a node, as their messages (or the rule itself when it has none).
fn rules(node: &Value) -> Vec<String> {
    node.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    r.get("message")
                        .or_else(|| r.get("rule"))
                        .and_then(Value::as_str)
                })
                .map(|m| escape(&one_line(m)))
                .collect()
        })
        .unwrap_or_default()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `100` rather than `100.0` (the schema's bounds are floats).
fn number_text(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => value_text(v),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Safe inside a markdown table cell.
fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_gets_a_reference_with_every_spec_field() {
        let crds = crate::crds::all().unwrap();
        let names: Vec<String> = crds.iter().map(file_name).collect();
        assert_eq!(names, ["nodepool.md", "nodeclaim.md", "ec2nodeclass.md"]);
        let pool = markdown(&crds[0]);
        assert!(pool.starts_with("# NodePool\n"), "{pool}");
        assert!(pool.contains("| apiVersion | `stowage.dev/v1` |"), "{pool}");
        assert!(
            pool.contains("| `spec.template.spec.nodeClassRef` | object | yes |"),
            "{pool}"
        );
        assert!(
            pool.contains("| `spec.template.spec.requirements[].operator` | string | yes |"),
            "{pool}"
        );
        assert!(pool.contains("| `spec.weight` | integer |"), "{pool}");
        assert!(pool.contains("From 1 to 100"), "{pool}");
        assert!(pool.contains("## Status"), "{pool}");
        let class = markdown(&crds[2]);
        assert!(
            class.contains("| `spec.amiSelectorTerms[].alias` |"),
            "{class}"
        );
    }
}
