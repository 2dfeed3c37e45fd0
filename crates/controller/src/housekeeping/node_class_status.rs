//! Node-class status, on the cloud provider's side of the line: every node class object (of the
//! kind the provider names, watched generically) is handed to
//! [`CloudProvider::reconcile_node_class`](stowage_cloud::CloudProvider::reconcile_node_class),
//! and the status it returns is written to the object's status subresource with a generic
//! `Ready` condition. A class the provider could not resolve (its API failed) is written
//! not-ready with the error as the reason; the provider then keeps it unresolved and launches
//! naming it wait. Classes that no longer exist are forgotten by the provider.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use stowage_api::conditions::{READY, set_condition};
use stowage_api::{Condition, ConditionStatus};
use stowage_cloud::NodeClassStatus;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::watch::node_class_resource;

/// Whether a node class object is ready: its `Ready` condition is not `False` (a class without
/// a status yet counts as ready, as before it is first reconciled).
pub fn node_class_ready(class: &DynamicObject) -> bool {
    node_class_not_ready(class).is_none()
}

/// Why a node class object is not ready (`reason: message` of its `False` `Ready` condition).
pub fn node_class_not_ready(class: &DynamicObject) -> Option<String> {
    conditions_of(class)
        .into_iter()
        .find(|c| c.type_ == READY && c.is_false())
        .map(|c| match (c.reason.is_empty(), c.message.is_empty()) {
            (_, true) => c.reason,
            (true, false) => c.message,
            (false, false) => format!("{}: {}", c.reason, c.message),
        })
}

fn conditions_of(class: &DynamicObject) -> Vec<Condition> {
    class
        .data
        .pointer("/status/conditions")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The status to write: the object's current status, the provider's fields over it, and the
/// `Ready` condition merged (its transition time moves only when its status changes).
fn merged_status(class: &DynamicObject, resolved: &NodeClassStatus, now: jiff::Timestamp) -> Value {
    let mut status = match class.data.get("status") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in &resolved.fields {
        status.insert(k.clone(), v.clone());
    }
    let mut conditions = conditions_of(class);
    let reason = match (resolved.reason.as_str(), resolved.ready) {
        ("", true) => "Ready",
        ("", false) => "NotReady",
        (r, _) => r,
    };
    let ready = Condition::new(
        READY,
        if resolved.ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason,
        &resolved.message,
    )
    .with_observed_generation(class.metadata.generation);
    set_condition(&mut conditions, ready, now);
    status.insert(
        "conditions".to_string(),
        serde_json::to_value(&conditions).unwrap_or(Value::Null),
    );
    Value::Object(status)
}

/// Reconciles every node class with the provider and writes the statuses that changed.
pub async fn update_node_class_status(ctx: &Context) -> Result<()> {
    let Some(kind) = ctx.cloud.node_class_kind() else {
        return Ok(());
    };
    let now = ctx.clock.now();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &node_class_resource(&kind));
    let classes: Vec<Arc<DynamicObject>> = ctx.state().nodeclasses().cloned().collect();
    let names: BTreeSet<String> = classes.iter().map(|c| c.name_any()).collect();
    for class in classes {
        let name = class.name_any();
        let object = serde_json::to_value(&*class).unwrap_or(Value::Null);
        let resolved = match ctx.cloud.reconcile_node_class(&object).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(nodeclass = %name, %err, "failed to resolve node class");
                NodeClassStatus {
                    reason: "ResolutionFailed".to_string(),
                    ..NodeClassStatus::not_ready(&err.to_string())
                }
            }
        };
        let status = merged_status(&class, &resolved, now);
        if class.data.get("status") == Some(&status) {
            continue;
        }
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(c) => ctx.update_state(|s| s.apply_nodeclass(c)),
            Err(e) => return Err(Error::kube("update node class status", &name)(e)),
        }
    }
    ctx.cloud.retain_node_classes(&names);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "example.dev/v1", "kind": "Class",
            "metadata": {"name": "default", "generation": 3},
            "spec": {}, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_providers_fields_and_a_ready_condition_are_merged_into_the_status() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let mut resolved = NodeClassStatus::ready();
        resolved
            .fields
            .insert("subnets".into(), json!([{"id": "subnet-1"}]));
        let c = class(json!({"other": 1}));
        assert!(node_class_ready(&c), "no status yet counts as ready");
        let status = merged_status(&c, &resolved, t0);
        assert_eq!(status["other"], 1);
        assert_eq!(status["subnets"][0]["id"], "subnet-1");
        assert_eq!(status["conditions"][0]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["conditions"][0]["observedGeneration"], 3);

        // Not ready later: the condition flips (with the reason) and moves its time.
        let c = class(status.clone());
        let failed = NodeClassStatus {
            reason: "ResolutionFailed".into(),
            ..NodeClassStatus::not_ready("cloud API unreachable")
        };
        let later = merged_status(&c, &failed, t1);
        assert_eq!(later["conditions"][0]["status"], "False");
        assert_eq!(later["conditions"][0]["reason"], "ResolutionFailed");
        assert_eq!(
            later["subnets"], status["subnets"],
            "last known fields kept"
        );
        assert!(!node_class_ready(&class(later.clone())));
        // Unchanged readiness keeps the transition time, so nothing is written again.
        assert_eq!(merged_status(&class(later.clone()), &failed, t1), later);
    }
}
