//! Periodic leader-only housekeeping: garbage collection (instances of this cluster without a
//! NodeClaim for longer than `gc_grace` are terminated; launched NodeClaims whose instance is gone
//! are deleted; Nodes left with the termination finalizer and no claim are released), NodePool
//! status (resources in use, node count, `Ready` from validation and the node class),
//! EC2NodeClass status (from the cloud provider) and the fleet metrics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stowage_api::conditions::{LAUNCHED, NODE_CLASS_READY, READY, VALIDATION_SUCCEEDED};
use stowage_api::quantity::{format_resource, parse_resource};
use stowage_api::{EC2NodeClass, NodeClaim, NodePool, NodePoolStatus};
use stowage_solver::Resources;

use crate::context::Context;
use crate::error::{Chain, Error, Result};
use crate::metrics::FleetSample;
use crate::nodeclaim::{claim_capacity_type, claim_resources};

/// Garbage collection's memory between passes.
#[derive(Debug, Default)]
pub struct Gc {
    /// Provider id -> when the instance was first seen without a NodeClaim.
    orphan_since: HashMap<String, Timestamp>,
}

/// What one garbage-collection pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcResult {
    pub instances_terminated: Vec<String>,
    pub claims_deleted: Vec<String>,
}

impl Gc {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass; see the module docs.
    pub async fn collect(&mut self, ctx: &Context) -> Result<GcResult> {
        let mut result = GcResult::default();
        if !ctx.state().is_synced() {
            return Ok(result);
        }
        let now = ctx.clock.now();
        let instances = ctx
            .cloud
            .list()
            .await
            .map_err(Error::cloud("list instances"))?;
        let mut live: BTreeSet<String> = BTreeSet::new();
        let grace = jiff::SignedDuration::try_from(ctx.settings.gc_grace)
            .unwrap_or(jiff::SignedDuration::MAX);
        for inst in &instances {
            let Some(pid) = inst.provider_id().map(str::to_string) else {
                continue;
            };
            live.insert(pid.clone());
            let known = {
                let state = ctx.state();
                state.claim_by_provider_id(&pid).is_some()
                    || state.claim(&inst.name_any()).is_some()
            };
            if known {
                self.orphan_since.remove(&pid);
                continue;
            }
            let since = *self.orphan_since.entry(pid.clone()).or_insert(now);
            if now.duration_since(since) >= grace {
                match ctx.cloud.delete(inst).await {
                    Ok(()) | Err(stowage_cloud::Error::NotFound(_)) => {
                        tracing::info!(provider_id = %pid, "terminated instance without a nodeclaim");
                        ctx.metrics.nodeclaim_terminated(
                            inst.nodepool_name().unwrap_or(""),
                            "garbage_collected",
                        );
                        self.orphan_since.remove(&pid);
                        result.instances_terminated.push(pid);
                    }
                    Err(err) => {
                        tracing::warn!(provider_id = %pid, %err, "failed to terminate orphan instance")
                    }
                }
            }
        }
        self.orphan_since.retain(|pid, _| live.contains(pid));
        // Claims whose instance vanished (terminated outside Stowage, or reclaimed).
        let gone: Vec<Arc<NodeClaim>> = ctx
            .state()
            .claims()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter(|c| c.provider_id().is_some_and(|p| !live.contains(p)))
            .filter(|c| {
                c.condition(LAUNCHED)
                    .and_then(|l| l.last_transition())
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .cloned()
            .collect();
        for claim in gone {
            crate::lifecycle::delete_claim(ctx, &claim, "instance gone").await?;
            result.claims_deleted.push(claim.name_any());
        }
        crate::termination::release_orphan_nodes(ctx).await?;
        Ok(result)
    }
}

fn quantities(r: &Resources) -> BTreeMap<String, Quantity> {
    r.0.iter()
        .map(|(k, v)| (k.clone(), Quantity(format_resource(k, *v))))
        .collect()
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
        let class = ctx.state().nodeclass(class_name);
        let validation = pool
            .validate()
            .map_err(|errs| stowage_api::validation::summarize(&errs))
            .and_then(|()| {
                stowage_solver::convert::nodepool(&pool, Default::default())
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
        match class.as_ref() {
            Some(c) if c.condition(READY).is_none_or(|r| !r.is_false()) => {
                status.set_true(NODE_CLASS_READY, "NodeClassReady", now);
            }
            Some(_) => {
                status.set_false(
                    NODE_CLASS_READY,
                    "NodeClassNotReady",
                    "node class is not ready",
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

/// Updates every EC2NodeClass's status from the cloud provider when it changed.
pub async fn update_nodeclass_status(ctx: &Context) -> Result<()> {
    let now = ctx.clock.now();
    let classes: Vec<Arc<EC2NodeClass>> = ctx.state().nodeclasses().cloned().collect();
    let api: Api<EC2NodeClass> = Api::all(ctx.client.clone());
    for class in classes {
        let name = class.name_any();
        let resolved = match ctx.cloud.node_class_status(&class).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(nodeclass = %name, %err, "failed to resolve node class");
                continue;
            }
        };
        let mut status = class.status.clone().unwrap_or_default();
        let conditions = std::mem::take(&mut status.conditions);
        status = stowage_api::EC2NodeClassStatus {
            conditions,
            ..resolved.clone()
        };
        for c in resolved.conditions {
            stowage_api::conditions::set_condition(&mut status.conditions, c, now);
        }
        if class.status.as_ref() == Some(&status) {
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
            Ok(c) => ctx.update_state(|s| s.apply_nodeclass(c)),
            Err(e) => return Err(Error::kube("update ec2nodeclass status", &name)(e)),
        }
    }
    Ok(())
}

/// Recomputes the per-nodepool fleet gauges (nodes, allocatable, requested, cost per hour).
pub fn update_fleet_metrics(ctx: &Context) {
    let mut samples: BTreeMap<(String, String), FleetSample> = BTreeMap::new();
    let state = ctx.state();
    ctx.metrics
        .pending_pods
        .set(state.pending_pods(ctx.clock.now()).len() as i64);
    ctx.metrics
        .cluster_state_synced
        .set(i64::from(state.is_synced()));
    for claim in state
        .claims()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
    {
        let pool = claim.nodepool_name().unwrap_or("").to_string();
        let ct = claim_capacity_type(claim);
        let key = (pool, ct.map(|c| c.as_str().to_string()).unwrap_or_default());
        let sample = samples.entry(key).or_default();
        let Some(node) = state.claim_node(claim) else {
            continue;
        };
        sample.nodes += 1;
        for (k, q) in node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .into_iter()
            .flatten()
        {
            if let Ok(v) = parse_resource(k, &q.0) {
                *sample.allocatable.entry(k.clone()).or_default() += scaled(k, v);
            }
        }
        for key in state.pod_keys_on_node(&node.name_any()) {
            if state.pod(key).is_none_or(|p| crate::state::is_terminal(&p)) {
                continue;
            }
            let Some(pod) = state.domain_pod(key) else {
                continue;
            };
            for (k, v) in &pod.requests.0 {
                *sample.requested.entry(k.clone()).or_default() += scaled(k, *v);
            }
        }
        let it = claim.label(stowage_api::labels::INSTANCE_TYPE);
        let zone = claim.label(stowage_api::labels::ZONE);
        if let (Some(it), Some(zone), Some(ct)) = (it, zone, ct) {
            sample.cost_per_hour += ctx.price(it, zone, ct).unwrap_or(0.0);
        }
    }
    samples.retain(|_, s| s.nodes > 0);
    ctx.metrics.set_fleet(&samples);
}

/// CPU in cores, the rest as is.
fn scaled(name: &str, v: i64) -> f64 {
    if name == "cpu" {
        v as f64 / 1000.0
    } else {
        v as f64
    }
}

/// The housekeeping loop (leader-only): a first pass as soon as the state is synced (so node
/// classes resolve before the first launch needs them), then every `gc_interval`.
pub async fn run(ctx: Arc<Context>) {
    let mut gc = Gc::new();
    let mut synced = ctx.subscribe_synced();
    while !*synced.borrow_and_update() {
        if synced.changed().await.is_err() {
            return;
        }
    }
    loop {
        update_fleet_metrics(&ctx);
        if ctx.is_leader() && ctx.state().is_synced() {
            if let Err(err) = update_nodeclass_status(&ctx).await {
                tracing::warn!(err = %Chain(&err), "nodeclass status");
            }
            if let Err(err) = update_nodepool_status(&ctx).await {
                tracing::warn!(err = %Chain(&err), "nodepool status");
            }
            if let Err(err) = gc.collect(&ctx).await {
                tracing::warn!(err = %Chain(&err), "garbage collection");
            }
        }
        tokio::time::sleep(ctx.settings.gc_interval).await;
    }
}
