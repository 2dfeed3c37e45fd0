//! Discovery documents (`/version`, `/api`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`) generated from
//! the kind table, and server-side `Table` rendering so `kubectl get` prints useful columns.

use crate::json::JsonPointer as _;
use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::kinds::KindInfo;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-stowage-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443" }]
    })
}

fn group_doc(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
        .collect();
    json!({ "name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null) })
}

fn groups(kinds: &[KindInfo]) -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut g: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        let vs = g.entry(k.group).or_default();
        if !vs.contains(&k.version) {
            vs.push(k.version);
        }
    }
    g
}

pub fn group_list(kinds: &[KindInfo]) -> Value {
    let groups: Vec<Value> = groups(kinds)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn group(kinds: &[KindInfo], name: &str) -> Option<Value> {
    let g = groups(kinds);
    let (n, vs) = g.get_key_value(name)?;
    let mut doc = group_doc(n, vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub fn resource_list(kinds: &[KindInfo], group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for k in kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        resources.push(json!({
            "name": k.plural,
            "singularName": k.singular(),
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": k.short_names,
        }));
        for sub in k.subresources {
            let (kind, verbs, grp) = match *sub {
                "binding" => ("Binding", json!(["create"]), None),
                "eviction" => ("Eviction", json!(["create"]), Some(("policy", "v1"))),
                _ => (k.kind, json!(["get", "patch", "update"]), None),
            };
            let mut r = json!({ "name": format!("{}/{}", k.plural, sub), "singularName": "", "namespaced": k.namespaced, "kind": kind, "verbs": verbs });
            if let Some((g, v)) = grp {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources })
}

fn age(obj: &Value, now: Timestamp) -> String {
    let Some(created) = obj
        .ptr("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    let secs = now.duration_since(created).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn condition_status(obj: &Value, ty: &str) -> Option<String> {
    obj.ptr("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        .and_then(|c| c.get("status").and_then(Value::as_str).map(str::to_string))
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.ptr(ptr).and_then(Value::as_str).unwrap_or_default()
}

type CellFn = Box<dyn Fn(&Value) -> Vec<Value>>;

/// A `meta.k8s.io/v1` Table of `items` (what `kubectl get` asks for).
pub fn table(info: &KindInfo, items: &[Arc<Value>], now: Timestamp) -> Value {
    let col = |name: &str, ty: &str| json!({ "name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": 0 });
    let (columns, cells): (Vec<Value>, CellFn) = match (info.group, info.kind) {
        ("", "Pod") => (
            vec![
                col("Name", "string"),
                col("Status", "string"),
                col("Node", "string"),
                col("Age", "string"),
            ],
            Box::new(move |o: &Value| {
                let status = if o.ptr("/metadata/deletionTimestamp").is_some() {
                    "Terminating"
                } else {
                    s(o, "/status/phase")
                };
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(status),
                    json!(s(o, "/spec/nodeName")),
                    json!(age(o, now)),
                ]
            }),
        ),
        ("", "Node") => (
            vec![
                col("Name", "string"),
                col("Status", "string"),
                col("Instance-Type", "string"),
                col("Capacity-Type", "string"),
                col("Age", "string"),
            ],
            Box::new(move |o: &Value| {
                let ready = match condition_status(o, "Ready").as_deref() {
                    Some("True") => "Ready",
                    _ => "NotReady",
                };
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(ready),
                    json!(s(o, "/metadata/labels/node.kubernetes.io~1instance-type")),
                    json!(s(o, "/metadata/labels/stowage.dev~1capacity-type")),
                    json!(age(o, now)),
                ]
            }),
        ),
        ("stowage.dev", "NodeClaim") => (
            vec![
                col("Name", "string"),
                col("Type", "string"),
                col("Zone", "string"),
                col("Node", "string"),
                col("Ready", "string"),
                col("Age", "string"),
            ],
            Box::new(move |o: &Value| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/metadata/labels/node.kubernetes.io~1instance-type")),
                    json!(s(o, "/metadata/labels/topology.kubernetes.io~1zone")),
                    json!(s(o, "/status/nodeName")),
                    json!(condition_status(o, "Ready").unwrap_or_else(|| "Unknown".into())),
                    json!(age(o, now)),
                ]
            }),
        ),
        _ => (
            vec![col("Name", "string"), col("Age", "string")],
            Box::new(move |o: &Value| vec![json!(s(o, "/metadata/name")), json!(age(o, now))]),
        ),
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({ "cells": cells(o), "object": **o }))
        .collect();
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows })
}
