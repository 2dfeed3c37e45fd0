//! Node-class status, on the cloud provider's side of the line: every node class object (of the
//! kind the provider names, watched generically) is handed to
//! [`CloudProvider::reconcile_node_class`](stowage_cloud::CloudProvider::reconcile_node_class),
//! and the status it returns is written to the object's status subresource with a generic
//! `Ready` condition. A class the provider could not resolve (its API failed) is written
//! not-ready with the error as the reason; the provider then keeps it unresolved and launches
//! naming it wait. Classes that no longer exist are forgotten by the provider.
//!
//! The housekeeping loop resolves a class through [`Refresh`]: when it is new or its spec changed
//! (`metadata.generation`), every [`NODE_CLASS_REFRESH`] while it stays ready (to pick up a new
//! image of an `@latest` alias, or subnets and security groups tagged since), and on every pass
//! (`gc_interval`) while it is not ready or failed to resolve, so a fixed class recovers fast.
//! Resolving a class costs the AWS provider DescribeSubnets, DescribeSecurityGroups,
//! DescribeImages and SSM calls: once every 30 s per class before, once per 5 minutes now.

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

/// How often a ready node class is resolved again when nothing of it changed.
pub const NODE_CLASS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// When each node class was last resolved, and whether it came out ready: which classes are due.
#[derive(Debug, Default)]
pub struct Refresh {
    /// Class name -> (uid, generation, when resolved ready).
    resolved: std::collections::HashMap<String, (String, i64, tokio::time::Instant)>,
}

impl Refresh {
    pub fn new() -> Self {
        Self::default()
    }

    fn due(&self, class: &DynamicObject, now: tokio::time::Instant) -> bool {
        let uid = class.metadata.uid.clone().unwrap_or_default();
        let generation = class.metadata.generation.unwrap_or_default();
        self.resolved
            .get(&class.name_any())
            .is_none_or(|(u, g, at)| {
                *u != uid || *g != generation || now >= *at + NODE_CLASS_REFRESH
            })
    }
}

/// Reconciles every node class with the provider and writes the statuses that changed.
pub async fn update_node_class_status(ctx: &Context) -> Result<()> {
    update_node_class_status_with(ctx, None).await
}

/// [`update_node_class_status`], resolving only the classes `refresh` says are due (all of them
/// without one); see the module docs.
pub async fn update_node_class_status_with(
    ctx: &Context,
    mut refresh: Option<&mut Refresh>,
) -> Result<()> {
    let Some(kind) = ctx.cloud.node_class_kind() else {
        return Ok(());
    };
    let now = ctx.clock.now();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &node_class_resource(&kind));
    let classes: Vec<Arc<DynamicObject>> = ctx.state().nodeclasses().cloned().collect();
    let names: BTreeSet<String> = classes.iter().map(|c| c.name_any()).collect();
    let started = tokio::time::Instant::now();
    if let Some(r) = refresh.as_deref_mut() {
        r.resolved.retain(|name, _| names.contains(name));
    }
    for class in classes {
        let name = class.name_any();
        if refresh.as_deref().is_some_and(|r| !r.due(&class, started)) {
            continue;
        }
        let object = serde_json::to_value(&*class).unwrap_or(Value::Null);
        let resolved = match ctx.cloud.reconcile_node_class(&object).await {
            Ok(s) => {
                if let Some(r) = refresh.as_deref_mut() {
                    if s.ready {
                        r.resolved.insert(
                            name.clone(),
                            (
                                class.metadata.uid.clone().unwrap_or_default(),
                                class.metadata.generation.unwrap_or_default(),
                                started,
                            ),
                        );
                    } else {
                        r.resolved.remove(&name);
                    }
                }
                s
            }
            Err(err) => {
                if let Some(r) = refresh.as_deref_mut() {
                    r.resolved.remove(&name);
                }
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
