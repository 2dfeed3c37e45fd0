//! NodePool status: resources in use and node count from the pool's live NodeClaims, and the
//! conditions `ValidationSucceeded` (the API's validation and the solver's conversion),
//! `NodeClassReady` (the node class exists and its generic `Ready` condition is not `False`) and
//! `Ready` (both), and for a pool with a `capacityMix.scope` the warning-only
//! `CapacityMixScope` (which pools the scope counts; `False` when it selects no other pool).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stowage_api::conditions::{CAPACITY_MIX_SCOPE, NODE_CLASS_READY, READY, VALIDATION_SUCCEEDED};
use stowage_api::quantity::format_resource;
use stowage_api::{NodeClaim, NodePool, NodePoolStatus};
use stowage_solver::Resources;

use super::node_class_status::node_class_not_ready;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::nodeclaim::claim_resources;

fn quantities(r: &Resources) -> BTreeMap<String, Quantity> {
    r.0.iter()
        .map(|(k, v)| (k.clone(), Quantity(format_resource(k, *v))))
        .collect()
}

/// Sets `ValidationSucceeded`, `NodeClassReady` (`class_ready`: `None` when the class does not
/// exist, else `Err` with why it is not ready) and `Ready` on a pool's status.
fn set_conditions(
    status: &mut NodePoolStatus,
    pool: &NodePool,
    class_ready: Option<Result<(), String>>,
    now: jiff::Timestamp,
) {
    let class_name = &pool.spec.template.spec.node_class_ref.name;
    let validation = pool
        .validate()
        .map_err(|errs| stowage_api::validation::summarize(&errs))
        .and_then(|()| {
            stowage_solver::convert::nodepool(pool, Default::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    match validation {
        Ok(()) => {
            status.set_true(VALIDATION_SUCCEEDED, "ValidationSucceeded", now);
        }
        Err(err) => {
            status.set_false(VALIDATION_SUCCEEDED, "ValidationFailed", &err, now);
        }
    }
    match class_ready {
        Some(Ok(())) => {
            status.set_true(NODE_CLASS_READY, "NodeClassReady", now);
        }
        Some(Err(why)) => {
            // The class's own reason (e.g. the cloud API error), so the pool says the real cause.
            status.set_false(
                NODE_CLASS_READY,
                "NodeClassNotReady",
                &format!("node class {class_name} is not ready: {why}"),
                now,
            );
        }
        None => {
            status.set_false(
                NODE_CLASS_READY,
                "NodeClassNotFound",
                &format!("node class {class_name} not found"),
                now,
            );
        }
    }
    let valid = status.is_true(VALIDATION_SUCCEEDED);
    let class_ready = status.is_true(NODE_CLASS_READY);
    if valid && class_ready {
        status.set_true(READY, "Ready", now);
    } else {
        let why = if valid {
            "NodeClassNotReady"
        } else {
            "ValidationFailed"
        };
        status.set_false(READY, why, "nodepool cannot launch nodes", now);
    }
}

/// Sets `CapacityMixScope` from the pools the pool's scope selects among `all` (clears it when
/// the pool has no scope). A selector that picks no other pool is a warning, not an error: the
/// cap then counts the pool's own spot and reserved vCPUs only.
fn set_scope_condition(
    status: &mut NodePoolStatus,
    pool: &NodePool,
    all: &[Arc<NodePool>],
    now: jiff::Timestamp,
) {
    let Some(members) = stowage_solver::convert::scope_members(pool, all.iter().map(|p| &**p))
    else {
        status.clear_condition(CAPACITY_MIX_SCOPE);
        return;
    };
    let name = pool.name_any();
    if members.iter().all(|m| *m == name) {
        status.set_false(
            CAPACITY_MIX_SCOPE,
            "ScopeSelectsNoOtherPool",
            "capacityMix.scope.nodePoolSelector selects no NodePool but this one: the on-demand cap counts this pool's own spot and reserved vCPUs only",
            now,
        );
    } else {
        status.set_condition(
            stowage_api::Condition::new(
                CAPACITY_MIX_SCOPE,
                stowage_api::ConditionStatus::True,
                "ScopeSelectsPools",
                &format!("the on-demand cap counts NodePools {}", members.join(", ")),
            ),
            now,
        );
    }
}

/// Updates every NodePool's status (resources, nodes, conditions) when it changed.
pub async fn update_nodepool_status(ctx: &Context) -> Result<()> {
    let now = ctx.clock.now();
    let (pools, claims): (Vec<Arc<NodePool>>, Vec<Arc<NodeClaim>>) = {
        let s = ctx.state();
        (
            s.nodepools().cloned().collect(),
            s.claims()
                .filter(|c| c.metadata.deletion_timestamp.is_none())
                .cloned()
                .collect(),
        )
    };
    // Each pool's claims' resources and count, in one pass over the claims (not one per pool).
    let mut per_pool: BTreeMap<&str, (Resources, i64)> = BTreeMap::new();
    for c in &claims {
        if let Some(pool) = c.nodepool_name() {
            let (resources, nodes) = per_pool.entry(pool).or_default();
            resources.add(&claim_resources(c));
            *nodes += 1;
        }
    }
    let api: Api<NodePool> = Api::all(ctx.client.clone());
    for pool in &pools {
        let name = pool.name_any();
        let (resources, nodes) = per_pool.remove(name.as_str()).unwrap_or_default();
        let mut status: NodePoolStatus = pool.status.clone().unwrap_or_default();
        status.resources = quantities(&resources);
        status.nodes = nodes;
        let class_name = &pool.spec.template.spec.node_class_ref.name;
        // A provider without node classes takes every reference as ready.
        let class_ready = match ctx.cloud.node_class_kind() {
            None => Some(Ok(())),
            Some(_) => ctx
                .state()
                .nodeclass(class_name)
                .map(|c| node_class_not_ready(&c).map_or(Ok(()), Err)),
        };
        set_conditions(&mut status, pool, class_ready, now);
        set_scope_condition(&mut status, pool, &pools, now);
        if pool.status.as_ref() == Some(&status) {
            continue;
        }
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(p) => ctx.update_state(|s| {
                s.apply_nodepool(p);
                s.retrigger();
            }),
            Err(e) => return Err(Error::kube("update nodepool status", &name)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_api::{CapacityMix, CapacityMixScope, NodePoolSelector, NodePoolSpec};

    fn pool(name: &str, tier: &str, scope_tier: Option<&str>) -> Arc<NodePool> {
        let mut p = NodePool::new(name, NodePoolSpec::default());
        p.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        p.spec.capacity_mix = scope_tier.map(|t| CapacityMix {
            on_demand_percent_above_base: 5,
            scope: Some(CapacityMixScope {
                node_pool_selector: NodePoolSelector {
                    match_labels: [("tier".to_string(), t.to_string())].into(),
                },
            }),
            ..CapacityMix::default()
        });
        Arc::new(p)
    }

    #[test]
    fn a_scope_that_selects_no_other_pool_is_a_warning_not_an_error() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let all = vec![
            pool("spot", "general", None),
            pool("od", "general", Some("general")),
            pool("typo", "general", Some("genral")),
        ];
        let mut status = NodePoolStatus::default();
        set_scope_condition(&mut status, &all[1], &all, now);
        let c = status.condition(CAPACITY_MIX_SCOPE).unwrap();
        assert!(c.is_true());
        assert_eq!(
            c.message,
            "the on-demand cap counts NodePools od, spot, typo"
        );

        let mut status = NodePoolStatus::default();
        set_conditions(&mut status, &all[2], Some(Ok(())), now);
        set_scope_condition(&mut status, &all[2], &all, now);
        let c = status.condition(CAPACITY_MIX_SCOPE).unwrap();
        assert!(c.is_false());
        assert_eq!(c.reason, "ScopeSelectsNoOtherPool");
        assert!(status.is_true(READY), "a warning only");

        // Without a scope the condition is absent.
        set_scope_condition(&mut status, &all[0], &all, now);
        assert!(status.condition(CAPACITY_MIX_SCOPE).is_none());
    }
}
