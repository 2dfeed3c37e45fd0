//! Provisioning, a leader-only singleton: pending pods are gathered by the [`Batcher`] (a batch
//! closes after `batch_idle` without a new pod, or `batch_max` after it opened), then one solve
//! over a snapshot of the cluster — pending pods, existing nodes with their pods, in-flight
//! NodeClaims with the pods nominated to them, NodePools with their usage and instance types,
//! DaemonSets — turns into NodeClaims. Pods placed on a new or in-flight claim are nominated to
//! it, so the next batch does not buy for them again; pods the solve cannot place get an Event
//! carrying the solver's reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use stowage_api::quantity::format_resource;
use stowage_api::requirements::{Operator, Requirement};
use stowage_api::{NodeClaim, NodeClaimSpec, NodePool, ResourceRequirements};
use stowage_api::{conditions, labels};
use stowage_solver::{Plan, SolveOptions};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::{Chain, Error, Result};
use crate::events::EventType;
use crate::lean::LeanPod;
use crate::snapshot;

/// How often still-pending pods are solved again when nothing changed.
pub const RECHECK: Duration = Duration::from_secs(30);

/// How many provisioning passes [`Context::passes`] keeps.
pub const PASS_LOG_LEN: usize = 10_000;

/// How many NodeClaim creations of one batch are in flight at once.
pub const CREATE_CONCURRENCY: usize = 16;

/// What one provisioning pass cost, in wall time (not the injected clock: this measures the
/// controller, it decides nothing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassRecord {
    /// Pending pods solved for.
    pub pods: usize,
    /// NodeClaims created.
    pub claims: usize,
    /// Building the snapshot (instance types included).
    pub snapshot_seconds: f64,
    /// The solve alone.
    pub solve_seconds: f64,
    /// From the start of the pass to the last NodeClaim created (the batch's critical path:
    /// snapshot, solve and creations).
    pub claims_seconds: f64,
    /// From the start of the pass to its end (nominations and Events queued too).
    pub total_seconds: f64,
}

/// What one batch looked like.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub opened: Instant,
    pub duration: Duration,
}

/// Gathers pending-pod arrivals into batches.
pub struct Batcher {
    idle: Duration,
    max: Duration,
    rx: watch::Receiver<u64>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("idle", &self.idle)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    pub fn new(idle: Duration, max: Duration, rx: watch::Receiver<u64>) -> Self {
        Self { idle, max, rx }
    }

    /// Waits for the first trigger (or `recheck` to pass), then until no new trigger arrived for
    /// `idle` or `max` has passed since the first.
    pub async fn wait(&mut self, recheck: Duration) -> Batch {
        tokio::select! {
            r = self.rx.changed() => { let _ = r; }
            () = tokio::time::sleep(recheck) => {}
        }
        let opened = Instant::now();
        let max_deadline = opened + self.max;
        loop {
            let idle_deadline = (Instant::now() + self.idle).min(max_deadline);
            tokio::select! {
                r = self.rx.changed() => {
                    if r.is_err() || Instant::now() >= max_deadline {
                        break;
                    }
                }
                () = tokio::time::sleep_until(idle_deadline) => break,
            }
        }
        self.rx.borrow_and_update();
        Batch {
            opened,
            duration: opened.elapsed(),
        }
    }
}

/// Runs the provisioning loop while this replica is leader.
pub async fn run(ctx: Arc<Context>) {
    let mut batcher = Batcher::new(
        ctx.settings.batch_idle,
        ctx.settings.batch_max,
        ctx.subscribe_pending(),
    );
    let mut leader = ctx.subscribe_leader();
    let mut synced = ctx.subscribe_synced();
    // The first batch may start at once if pods are already pending.
    let mut recheck = Duration::ZERO;
    loop {
        while !*leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                return;
            }
        }
        while !*synced.borrow_and_update() {
            if synced.changed().await.is_err() {
                return;
            }
        }
        let batch = batcher.wait(recheck).await;
        recheck = RECHECK;
        if !ctx.is_leader() {
            continue;
        }
        requeue_failed_nominations(&ctx).await;
        let pending = ctx.state().pending_pods(ctx.clock.now()).len();
        ctx.metrics.pending_pods.set(pending as i64);
        if pending == 0 {
            continue;
        }
        ctx.metrics.batch_size.observe(pending as f64);
        ctx.metrics
            .batch_duration_seconds
            .observe(batch.duration.as_secs_f64());
        match provision(&ctx).await {
            Ok(result) => tracing::info!(
                pods = pending,
                claims = result.created.len(),
                unschedulable = result.unschedulable,
                batch_secs = batch.duration.as_secs_f64(),
                "provisioned"
            ),
            Err(err) => tracing::warn!(err = %Chain(&err), "provisioning failed"),
        }
    }
}

/// Puts pods back into the batch whose nomination did not work out (see
/// [`crate::state::ClusterState::failed_nominations`]), each with an Event saying why.
pub async fn requeue_failed_nominations(ctx: &Context) -> usize {
    let grace = jiff::SignedDuration::try_from(ctx.settings.initialized_grace)
        .unwrap_or(jiff::SignedDuration::MAX);
    let failed = ctx.state().failed_nominations(ctx.clock.now(), grace);
    let grace = humantime_secs(ctx.settings.initialized_grace);
    if failed.is_empty() {
        return 0;
    }
    ctx.update_state(|s| {
        for (pod, _, node) in &failed {
            s.nomination_failed(pod, node);
        }
    });
    for (key, claim, node) in &failed {
        tracing::info!(pod = %key, claim = %claim, node = %node, "pod did not schedule on its initialized nodeclaim; provisioning again");
        let pod = ctx.state().pod(key);
        if let Some(pod) = pod {
            ctx.recorder.queue(
                &pod.object(),
                EventType::Warning,
                "NominationFailed",
                &format!(
                    "Pod was not scheduled on node {node} of nodeclaim/{claim} within {grace} of it being initialized and the pod nominated to it (the node has less room than planned, or the scheduler sees a constraint the plan missed); provisioning for it again, elsewhere"
                ),
            );
        }
    }
    failed.len()
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// What one provisioning pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvisionResult {
    /// Names of the NodeClaims created.
    pub created: Vec<String>,
    /// Pods nominated to claims that already existed.
    pub nominated_in_flight: usize,
    pub unschedulable: usize,
    /// From the start of the pass to the last NodeClaim created (wall time).
    pub claims_created_after: Duration,
}

/// One solve over the current state, and the NodeClaims it calls for. The registered Nodes
/// come from the context's shared cache ([`Context::solver_nodes`]), held until the solve ends.
pub async fn provision(ctx: &Context) -> Result<ProvisionResult> {
    let pass_started = std::time::Instant::now();
    let pools = snapshot::pools(&ctx.state());
    // Why NodePools that exist are not used in this pass: the real cause behind "no NodePool
    // exists" (e.g. its node class is not ready because AWS cannot be reached).
    let mut not_used = pools_not_ready(&ctx.state(), &pools);
    let types = pool_types(ctx, &pools, &mut not_used).await;
    let (plan, pod_objects, pods, snapshot_seconds, solve_seconds) = {
        let mut cache = ctx.solver_nodes().await;
        let now = ctx.clock.now();
        let snap = snapshot::build_cached(&ctx.state(), &pools, types, now, &mut cache);
        for err in &snap.skipped {
            let err = crate::error::Chain(err);
            tracing::warn!(%err, "object skipped by the provisioner (unreadable)");
        }
        let (input, pod_objects, lease) = (snap.input, snap.pending, snap.lease);
        if input.pods.is_empty() {
            cache.recycle(input, lease);
            return Ok(ProvisionResult::default());
        }
        let snapshot_seconds = pass_started.elapsed().as_secs_f64();
        let options = SolveOptions {
            max_instance_types: ctx.settings.max_instance_types,
            ..SolveOptions::default()
        };
        let started = std::time::Instant::now();
        let plan = stowage_solver::solve(&input, &options);
        let solve_seconds = started.elapsed().as_secs_f64();
        let pods = input.pods.len();
        // The nodes go back before the claims are written: the next solve may start meanwhile.
        cache.recycle(input, lease);
        (plan, pod_objects, pods, snapshot_seconds, solve_seconds)
    };
    ctx.metrics.solve_duration_seconds.observe(solve_seconds);
    let result = apply_plan(ctx, &plan, &pools, &pod_objects, &not_used, pass_started).await;
    ctx.record_pass(PassRecord {
        pods,
        claims: result.as_ref().map_or(0, |r| r.created.len()),
        snapshot_seconds,
        solve_seconds,
        claims_seconds: result
            .as_ref()
            .map_or(0.0, |r| r.claims_created_after.as_secs_f64()),
        total_seconds: pass_started.elapsed().as_secs_f64(),
    });
    result
}

/// Instance types per pool, from the provider (which caches them), with the expected
/// interruption cost of spot offerings filled in from the learnt rates; a pool whose types
/// cannot be had goes into `not_used` with why.
pub async fn pool_types(
    ctx: &Context,
    pools: &[Arc<NodePool>],
    not_used: &mut Vec<String>,
) -> BTreeMap<String, Arc<Vec<stowage_solver::InstanceType>>> {
    let now = ctx.clock.now();
    let weight = ctx.settings.spot_interruption_cost_weight;
    let mut types = BTreeMap::new();
    let mut costs = BTreeMap::new();
    for pool in pools {
        match ctx.cloud.instance_types(pool).await {
            Ok(mut list) => {
                ctx.record_prices(list.iter().flat_map(|it| {
                    it.offerings.iter().map(|o| {
                        (
                            (it.name.clone(), o.zone.clone(), o.capacity_type),
                            o.price_per_hour,
                        )
                    })
                }));
                let applied = ctx.with_rates(|book| {
                    crate::interruption::rates::apply_costs(&mut list, book, weight, now)
                });
                costs.extend(applied);
                types.insert(pool.name_any(), Arc::new(list));
            }
            Err(err) => {
                tracing::warn!(pool = %pool.name_any(), %err, "no instance types for nodepool");
                not_used.push(format!("{}: no instance types ({err})", pool.name_any()));
            }
        }
    }
    ctx.cloud
        .set_interruption_costs(costs.into_iter().collect());
    types
}

/// `name: why` for every NodePool that is not being deleted and not used because it is not
/// Ready, from its own conditions (the node class's readiness first).
fn pools_not_ready(state: &crate::ClusterState, used: &[Arc<NodePool>]) -> Vec<String> {
    state
        .nodepools()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !used.iter().any(|u| u.name_any() == p.name_any()))
        .map(|p| {
            let why = [conditions::NODE_CLASS_READY, conditions::READY]
                .iter()
                .filter_map(|t| p.condition(t))
                .find(|c| c.is_false())
                .map(|c| {
                    let detail = if c.message.is_empty() {
                        c.reason.clone()
                    } else {
                        format!("{}: {}", c.reason, c.message)
                    };
                    format!("{} False ({detail})", c.type_)
                })
                .unwrap_or_else(|| "not ready".into());
            format!("{}: {why}", p.name_any())
        })
        .collect()
}

async fn apply_plan(
    ctx: &Context,
    plan: &Plan,
    pools: &[Arc<NodePool>],
    pods: &BTreeMap<String, Arc<LeanPod>>,
    not_used: &[String],
    pass_started: std::time::Instant,
) -> Result<ProvisionResult> {
    let now = ctx.clock.now();
    let window = jiff::SignedDuration::try_from(ctx.settings.nomination_window)
        .unwrap_or(jiff::SignedDuration::MAX);
    // Creations go ahead of the other requests in the client's rate limit (when `stowage run`
    // gave them their own client): they are what the batch's pods wait for.
    let api: Api<NodeClaim> = Api::all(ctx.create_client().clone());
    let mut result = ProvisionResult::default();
    // Creations run CREATE_CONCURRENCY at a time (a batch of thousands of pods is hundreds of
    // claims; one at a time, the round trips add up to seconds). Each claim is recorded and its
    // pods nominated as soon as it exists; the first failure ends the pass after the creations
    // already in flight, as before.
    let jobs: Vec<(usize, NodeClaim)> = plan
        .new_claims
        .iter()
        .enumerate()
        .filter_map(|(i, new)| {
            let pool = pools.iter().find(|p| p.name_any() == new.nodepool)?;
            Some((i, claim_for(pool, new)))
        })
        .collect();
    let mut creations = futures::stream::iter(jobs.into_iter().map(|(i, claim)| {
        let api = api.clone();
        async move { (i, api.create(&PostParams::default(), &claim).await) }
    }))
    .buffered(CREATE_CONCURRENCY);
    let mut failed = None;
    let mut created_claims = Vec::new();
    while let Some((i, created)) = creations.next().await {
        let new = &plan.new_claims[i];
        let created = match created {
            Ok(c) => c,
            Err(err) => {
                failed.get_or_insert_with(|| Error::kube("create nodeclaim", &new.name)(err));
                continue;
            }
        };
        let name = created.name_any();
        ctx.metrics.nodeclaim_created(&new.nodepool, "provisioning");
        ctx.update_state(|s| {
            s.apply_claim(created);
            s.nominate(new.pods.iter().cloned(), &name, now, now + window);
        });
        created_claims.push((new, name));
    }
    drop(creations);
    result.claims_created_after = pass_started.elapsed();
    // One Nominated event per pod, as Karpenter has it, but queued: the background writer paces
    // them, so thousands of them never stand between a batch and its NodeClaims.
    for (new, name) in created_claims {
        let message = format!("Pod should schedule on: nodeclaim/{name}");
        for key in &new.pods {
            if let Some(pod) = pods.get(key) {
                ctx.recorder
                    .queue(&pod.object(), EventType::Normal, "Nominated", &message);
            }
        }
        result.created.push(name);
    }
    if let Some(err) = failed {
        return Err(err);
    }
    // Pods placed on existing claims wait for them: claims not registered yet are placed on by
    // claim name, registered ones by their Node's name. A nomination to an initialized claim's
    // Node that the scheduler does not honour is noticed (`requeue_failed_nominations`).
    let claim_of: BTreeMap<String, String> = {
        let state = ctx.state();
        let mut m = BTreeMap::new();
        for c in state
            .claims()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
        {
            if let Some(node) = state.claim_node(c) {
                m.insert(node.name_any(), c.name_any());
            }
            m.insert(c.name_any(), c.name_any());
        }
        m
    };
    let mut by_claim: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (pod, target) in &plan.existing_placements {
        if let Some(claim) = claim_of.get(target) {
            by_claim
                .entry(claim.as_str())
                .or_default()
                .push(pod.clone());
        }
    }
    ctx.update_state(|s| {
        for (claim, pods) in by_claim {
            result.nominated_in_flight += pods.len();
            s.nominate(pods, claim, now, now + window);
        }
    });
    result.unschedulable = plan.unschedulable.len();
    ctx.metrics
        .unschedulable_pods
        .set(plan.unschedulable.len() as i64);
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in plan.unschedulable.values() {
        *by_reason.entry(reason.as_str()).or_default() += 1;
    }
    for (reason, pods) in &by_reason {
        tracing::debug!(pods, reason, "pods the solve could not place");
    }
    let not_used = if not_used.is_empty() {
        String::new()
    } else {
        format!("; NodePools not used: {}", not_used.join("; "))
    };
    for (key, reason) in &plan.unschedulable {
        if let Some(pod) = pods.get(key) {
            ctx.recorder.queue(
                &pod.object(),
                EventType::Warning,
                "FailedScheduling",
                &format!("Failed to schedule pod, {reason}{not_used}"),
            );
        }
    }
    Ok(result)
}

/// The NodeClaim object for a claim of the plan, stamped with its NodePool's template hash
/// (`stowage.dev/nodepool-hash` and its version) for drift detection.
pub fn claim_for(pool: &NodePool, new: &stowage_solver::NewClaim) -> NodeClaim {
    let template = &pool.spec.template;
    let mut claim_labels: BTreeMap<String, String> = template.metadata.labels.clone();
    claim_labels.insert(labels::NODEPOOL.to_string(), pool.name_any());
    // The template's hash, for drift: the claim keeps what it was launched from.
    let mut annotations = template.metadata.annotations.clone();
    pool.template_stamp().apply(&mut annotations);
    let mut requirements: Vec<Requirement> = Vec::new();
    let mut min_values = None;
    for r in &new.requirements {
        if r.key == labels::INSTANCE_TYPE && r.operator == Operator::In {
            min_values = r.min_values;
            continue;
        }
        requirements.push(r.clone());
    }
    if !new.instance_type_options.is_empty() {
        let mut it = Requirement::in_(
            labels::INSTANCE_TYPE,
            new.instance_type_options.iter().map(String::as_str),
        );
        it.min_values = min_values;
        requirements.push(it);
    }
    let requests: BTreeMap<String, Quantity> = new
        .requests
        .0
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(format_resource(k, *v))))
        .collect();
    NodeClaim {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", pool.name_any())),
            labels: Some(claim_labels),
            annotations: Some(annotations),
            finalizers: Some(vec![labels::TERMINATION_FINALIZER.to_string()]),
            owner_references: Some(vec![OwnerReference {
                api_version: NodePool::api_version(&()).into_owned(),
                kind: NodePool::kind(&()).into_owned(),
                name: pool.name_any(),
                uid: pool.uid().unwrap_or_default(),
                block_owner_deletion: Some(true),
                controller: None,
            }]),
            ..Default::default()
        },
        spec: NodeClaimSpec {
            requirements,
            resources: ResourceRequirements { requests },
            taints: template.spec.taints.clone(),
            startup_taints: template.spec.startup_taints.clone(),
            node_class_ref: template.spec.node_class_ref.clone(),
            expire_after: template.spec.expire_after,
            termination_grace_period: template.spec.termination_grace_period,
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use stowage_solver::Resources;

    use super::*;
    use crate::nodeclaim::claim_resources;

    async fn trigger_every(tx: watch::Sender<u64>, every: Duration, total: Duration) {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < total {
            n += 1;
            tx.send_replace(n);
            tokio::time::sleep(every).await;
        }
        // Keep the channel open.
        std::future::pending::<()>().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_over_five_seconds_is_one_batch_closed_by_the_idle_window() {
        let (tx, rx) = watch::channel(0);
        let mut b = Batcher::new(Duration::from_secs(1), Duration::from_secs(10), rx);
        tokio::spawn(trigger_every(
            tx,
            Duration::from_micros(2500),
            Duration::from_secs(5),
        ));
        let batch = b.wait(Duration::from_secs(3600)).await;
        let secs = batch.duration.as_secs_f64();
        assert!((5.9..6.1).contains(&secs), "batch lasted {secs}s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_is_cut_at_the_max_window() {
        let (tx, rx) = watch::channel(0);
        let mut b = Batcher::new(Duration::from_secs(1), Duration::from_secs(10), rx);
        tokio::spawn(trigger_every(
            tx,
            Duration::from_millis(500),
            Duration::from_secs(3600),
        ));
        let batch = b.wait(Duration::from_secs(3600)).await;
        assert_eq!(batch.duration.as_secs(), 10);
    }

    #[test]
    fn claims_carry_pool_template_instance_type_options_and_finalizer() {
        use stowage_api::{NodeClaimTemplate, NodePoolSpec};
        let mut pool = NodePool::new(
            "general",
            NodePoolSpec {
                template: NodeClaimTemplate::default(),
                ..Default::default()
            },
        );
        pool.metadata.uid = Some("pool-uid".into());
        pool.spec
            .template
            .metadata
            .labels
            .insert("team".into(), "a".into());
        let new = stowage_solver::NewClaim {
            name: "general-0".into(),
            nodepool: "general".into(),
            requirements: vec![
                Requirement::in_(labels::INSTANCE_TYPE, ["m5.large", "c5.large", "r5.large"]),
                Requirement::in_(labels::CAPACITY_TYPE, ["spot"]),
            ],
            instance_type_options: vec!["c5.large".into(), "m5.large".into()],
            pods: vec!["default/a".into()],
            requests: Resources::new().with("cpu", 1500).with("pods", 1),
            cheapest_price: 0.03,
        };
        let c = claim_for(&pool, &new);
        assert_eq!(c.metadata.generate_name.as_deref(), Some("general-"));
        assert_eq!(c.label(labels::NODEPOOL), Some("general"));
        assert_eq!(c.label("team"), Some("a"));
        assert_eq!(c.finalizers(), [labels::TERMINATION_FINALIZER.to_string()]);
        assert_eq!(c.owner_references()[0].uid, "pool-uid");
        let it: Vec<_> = c
            .spec
            .requirements
            .iter()
            .filter(|r| r.key == labels::INSTANCE_TYPE)
            .collect();
        assert_eq!(it.len(), 1);
        assert_eq!(
            it[0].values,
            vec!["c5.large".to_string(), "m5.large".to_string()]
        );
        assert_eq!(
            c.spec.resources.requests["cpu"].0,
            format_resource("cpu", 1500)
        );
        assert_eq!(claim_resources(&c).get("cpu"), 1500);
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            pool.template_stamp().check(&annotations),
            stowage_api::StampCheck::Current,
            "{annotations:?}"
        );
        assert_eq!(
            annotations
                .get(labels::NODEPOOL_HASH_VERSION)
                .map(String::as_str),
            Some(stowage_api::nodepool::TEMPLATE_HASH_VERSION)
        );
    }
}
