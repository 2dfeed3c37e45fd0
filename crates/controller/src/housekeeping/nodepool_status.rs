//! NodePool status: resources in use and node count from the pool's live NodeClaims, and the
//! conditions `ValidationSucceeded` (the API's validation and the solver's conversion),
//! `NodeClassReady` (the node class exists and its generic `Ready` condition is not `False`) and
//! `Ready` (both).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stowage_api::conditions::{NODE_CLASS_READY, READY, VALIDATION_SUCCEEDED};
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
    let api: Api<NodePool> = Api::all(ctx.client.clone());
    for pool in pools {
        let name = pool.name_any();
        let mut resources = Resources::new();
        let mut nodes = 0i64;
        for c in claims
            .iter()
            .filter(|c| c.nodepool_name() == Some(name.as_str()))
        {
            resources.add(&claim_resources(c));
            nodes += 1;
        }
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
        set_conditions(&mut status, &pool, class_ready, now);
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
