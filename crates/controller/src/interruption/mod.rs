//! Interruption handling, a leader-only loop over the provider's [`InterruptionSource`]: the
//! cloud says it takes an instance away, and the node heals before it goes.
//!
//! Per received batch (at most 10 messages, events handled 16 at a time):
//! 1. every event is matched to the NodeClaim whose provider id names its instance; an instance
//!    this cluster does not own is ignored (`not_owned`), its message still deleted;
//! 2. a spot interruption warning or a scheduled change (a rebalance recommendation too when
//!    `act_on_rebalance_recommendation`): the claim is annotated `stowage.dev/interrupted` (and,
//!    for spot, `stowage.dev/interruption-deadline`: event time + 2 minutes) and gets the
//!    `Disrupting` condition, its Node is cordoned and tainted `stowage.dev/disrupted:NoSchedule`;
//!    a spot interruption also feeds the offering's interruption rate ([`rates`]) and keeps the
//!    (type, zone, spot) offering out of the catalogue for `interrupted_offering_ttl`;
//! 3. one solve places the displaced pods of every node of the batch (the cluster without those
//!    nodes, [`stowage_solver::displace`], with the interrupted offerings unavailable), and the
//!    NodeClaims it calls for are created at once, with the displaced pods nominated to them. It
//!    takes the provisioner's converted Nodes and never runs beside a provisioning solve
//!    ([`Context::solver_nodes`]): at full scale a fresh snapshot and copy per batch were
//!    the controller's peak during an interruption wave;
//! 4. the claims are deleted: the termination path drains them, deleting whatever is still there
//!    in time for the deadline (PodDisruptionBudgets honoured until then; Events name the pods
//!    cut short), and releases the instance;
//! 5. a state change to stopping, stopped, shutting-down or terminated deletes the claim; a
//!    rebalance recommendation is otherwise counted and reported in an Event.
//!
//! A message is acknowledged only when every event in it was handled; one that failed comes back
//! (SQS redelivers it), and the `stowage.dev/interrupted` annotation, written before the
//! replacement is bought, makes the retry skip the purchase. Disruption budgets do not apply:
//! the cloud does not wait for them.

pub mod rates;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use stowage_api::conditions::{Condition, ConditionStatus, DISRUPTING};
use stowage_api::{NodeClaim, labels};
use stowage_cloud::{
    CapacityType, InterruptionEvent, InterruptionKind, InterruptionMessage, InterruptionSource,
    MessageContent, OfferingKey,
};
use stowage_solver::SolveOptions;
use tokio::sync::watch;

use crate::context::Context;
use crate::error::{Chain, Error, Result, is_not_found};
use crate::events::EventType;
use crate::{provisioning, snapshot};

/// Events handled at once.
const CONCURRENCY: usize = 16;
/// A spot instance goes this long after its interruption warning.
pub const SPOT_NOTICE: Duration = Duration::from_secs(120);
/// Wait after a failed receive.
const RECEIVE_RETRY: Duration = Duration::from_secs(5);
/// How often live spot nodes add their node-hours to the rates.
const EXPOSURE_EVERY: Duration = Duration::from_secs(60);
/// The longest gap counted as exposure at once (time without a leader is not counted).
const MAX_EXPOSURE_STEP: Duration = Duration::from_secs(600);
/// How often the rates are written to their ConfigMap (and after every interruption).
const SAVE_EVERY: Duration = Duration::from_secs(300);

/// Runs the interruption loop while this replica is leader (nothing without a source).
pub async fn run(ctx: Arc<Context>) {
    let Some(source) = ctx.interruption_source() else {
        return;
    };
    let mut leader = ctx.subscribe_leader();
    let mut synced = ctx.subscribe_synced();
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
        if let Err(err) = rates::load(&ctx).await {
            tracing::warn!(err = %Chain(&err), "failed to read the stored spot interruption rates");
        }
        tracing::info!(source = source.name(), "reading interruption events");
        tokio::select! {
            () = serve(&ctx, source.as_ref()) => {}
            () = lost(&mut leader) => tracing::info!("lost leadership; interruption controller stopped"),
        }
    }
}

async fn lost(leader: &mut watch::Receiver<bool>) {
    loop {
        if leader.changed().await.is_err() || !*leader.borrow() {
            return;
        }
    }
}

async fn serve(ctx: &Context, source: &dyn InterruptionSource) {
    let mut exposure = Exposure::new(ctx.clock.now());
    loop {
        exposure.tick(ctx).await;
        match source.receive().await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                let interrupted = handle_batch(ctx, source, batch).await;
                if interrupted > 0 {
                    exposure.save(ctx).await;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "failed to receive interruption messages");
                tokio::time::sleep(RECEIVE_RETRY).await;
            }
        }
    }
}

/// Node-hours of live spot nodes, fed to the rates once a minute; the rates' gauge and
/// ConfigMap kept current.
struct Exposure {
    last: jiff::Timestamp,
    last_save: jiff::Timestamp,
}

impl Exposure {
    fn new(now: jiff::Timestamp) -> Self {
        Self {
            last: now,
            last_save: now,
        }
    }

    async fn tick(&mut self, ctx: &Context) {
        let now = ctx.clock.now();
        let elapsed = Duration::try_from(now.duration_since(self.last)).unwrap_or_default();
        if elapsed < EXPOSURE_EVERY {
            return;
        }
        self.last = now;
        let hours = elapsed.min(MAX_EXPOSURE_STEP).as_secs_f64() / 3600.0;
        let spot: Vec<(String, String)> = {
            let state = ctx.state();
            state
                .claims()
                .filter(|c| c.provider_id().is_some())
                .filter(|c| c.label(labels::CAPACITY_TYPE) == Some(CapacityType::Spot.as_str()))
                .filter_map(|c| {
                    Some((
                        c.label(labels::INSTANCE_TYPE)?.to_string(),
                        c.label(labels::ZONE)?.to_string(),
                    ))
                })
                .collect()
        };
        let rates = ctx.with_rates(|book| {
            for (t, z) in &spot {
                book.add_node_hours(t, z, hours, now);
            }
            book.rates(now)
        });
        ctx.metrics.set_spot_interruption_rates(
            rates.iter().map(|(t, z, r)| (t.as_str(), z.as_str(), *r)),
        );
        if Duration::try_from(now.duration_since(self.last_save)).unwrap_or_default() >= SAVE_EVERY
        {
            self.save(ctx).await;
        }
    }

    async fn save(&mut self, ctx: &Context) {
        self.last_save = ctx.clock.now();
        if let Err(err) = rates::save(ctx).await {
            tracing::warn!(err = %Chain(&err), "failed to store the spot interruption rates");
        }
    }
}

/// What one event calls for.
enum Step {
    /// Not an instance of this cluster.
    NotOwned,
    /// Counted and reported only.
    Recorded,
    /// Delete the claim (the instance is stopping or gone).
    Delete(Arc<NodeClaim>, String),
    /// Replace the node: `fresh` when this event marked it (a redelivered one finds it marked
    /// and does not buy again).
    Replace {
        claim: Arc<NodeClaim>,
        fresh: bool,
        offering: Option<OfferingKey>,
    },
}

/// Handles one batch (see the module docs); returns how many nodes were newly interrupted.
pub async fn handle_batch(
    ctx: &Context,
    source: &dyn InterruptionSource,
    batch: Vec<InterruptionMessage>,
) -> usize {
    let mut events: Vec<(usize, InterruptionEvent)> = Vec::new();
    for (i, m) in batch.iter().enumerate() {
        match &m.content {
            MessageContent::Ignored(why) => {
                ctx.metrics.interruption_message("unknown");
                tracing::debug!(message = %m.id, why, "interruption message not acted on; deleting it");
            }
            MessageContent::Malformed(why) => {
                ctx.metrics.interruption_message("malformed");
                tracing::warn!(message = %m.id, why, "malformed interruption message; deleting it");
            }
            MessageContent::Events(es) => {
                for e in es {
                    ctx.metrics.interruption_message(e.kind.as_str());
                    events.push((i, e.clone()));
                }
            }
        }
    }
    let prepared: Vec<(usize, InterruptionEvent, Result<Step>)> = futures::stream::iter(events)
        .map(|(i, e)| async move {
            let step = prepare(ctx, &e).await;
            (i, e, step)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let replace: Vec<(Arc<NodeClaim>, Option<OfferingKey>)> = prepared
        .iter()
        .filter_map(|(_, _, s)| match s {
            Ok(Step::Replace {
                claim,
                fresh: true,
                offering,
            }) => Some((claim.clone(), offering.clone())),
            _ => None,
        })
        .collect();
    if !replace.is_empty()
        && let Err(err) = launch_replacements(ctx, &replace).await
    {
        // The drain goes ahead: the displaced pods are then provisioned for as pending pods.
        tracing::warn!(err = %Chain(&err), "failed to launch replacements for interrupted nodes");
    }
    let outcomes: Vec<(usize, InterruptionEvent, Result<&'static str>)> =
        futures::stream::iter(prepared)
            .map(|(i, e, step)| async move {
                let outcome = match step {
                    Ok(step) => finish(ctx, step).await,
                    Err(err) => Err(err),
                };
                (i, e, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    let mut failed = vec![false; batch.len()];
    let now = ctx.clock.now();
    for (i, e, outcome) in outcomes {
        match outcome {
            Ok(action) => {
                ctx.metrics.interruption_action(action);
                if let Some(t) = e.time {
                    let secs = now.duration_since(t).as_secs_f64().max(0.0);
                    ctx.metrics.interruption_latency_seconds.observe(secs);
                }
                tracing::info!(instance = %e.instance_id, kind = e.kind.as_str(), action, "interruption event handled");
            }
            Err(err) => {
                ctx.metrics.interruption_action("failed");
                tracing::warn!(instance = %e.instance_id, kind = e.kind.as_str(), err = %Chain(&err), "interruption event not handled; it will be delivered again");
                if let Some(f) = failed.get_mut(i) {
                    *f = true;
                }
            }
        }
    }
    for (m, failed) in batch.iter().zip(failed) {
        if failed {
            continue;
        }
        if let Err(err) = source.acknowledge(&m.ack).await {
            tracing::warn!(message = %m.id, %err, "failed to delete a handled interruption message");
        }
    }
    replace.len()
}

/// The claim whose instance the event names.
fn claim_of(ctx: &Context, e: &InterruptionEvent) -> Option<Arc<NodeClaim>> {
    ctx.state()
        .claims()
        .find(|c| c.provider_id().is_some_and(|p| e.is_for(p)))
        .cloned()
}

/// Step 2 of the module docs: decide, and mark what is to be replaced.
async fn prepare(ctx: &Context, e: &InterruptionEvent) -> Result<Step> {
    let Some(claim) = claim_of(ctx, e) else {
        return Ok(Step::NotOwned);
    };
    let name = claim.name_any();
    let deadline = match e.kind {
        InterruptionKind::StateChange(state) => {
            let reason = format!("instance_{}", state.as_str().replace('-', "_"));
            ctx.recorder
                .publish(
                    claim.as_ref(),
                    EventType::Warning,
                    "InstanceStopped",
                    &format!(
                        "Instance {} is {}; deleting the NodeClaim",
                        e.instance_id,
                        state.as_str()
                    ),
                )
                .await;
            return Ok(Step::Delete(claim, reason));
        }
        InterruptionKind::RebalanceRecommendation
            if !ctx.settings.act_on_rebalance_recommendation =>
        {
            ctx.recorder
                .publish(
                    claim.as_ref(),
                    EventType::Normal,
                    "RebalanceRecommendation",
                    &format!(
                        "The cloud recommends moving off instance {} (elevated risk of interruption); not acted on (--act-on-rebalance-recommendation is off)",
                        e.instance_id
                    ),
                )
                .await;
            return Ok(Step::Recorded);
        }
        InterruptionKind::SpotInterruption => {
            let at = e.time.unwrap_or_else(|| ctx.clock.now());
            Some(at + jiff::SignedDuration::try_from(SPOT_NOTICE).unwrap_or_default())
        }
        InterruptionKind::RebalanceRecommendation | InterruptionKind::ScheduledChange => None,
    };
    let fresh = !claim.annotations().contains_key(labels::INTERRUPTED);
    let offering = offering_of(&claim, e);
    if fresh
        && e.kind == InterruptionKind::SpotInterruption
        && let Some(o) = &offering
    {
        let now = ctx.clock.now();
        ctx.with_rates(|book| book.record_interruption(&o.instance_type, &o.zone, now));
        ctx.cloud
            .mark_unavailable(o, ctx.settings.interrupted_offering_ttl);
    }
    if fresh {
        mark(ctx, &claim, e.kind, deadline).await?;
    }
    let node = ctx.state().claim_node(&claim);
    if let Some(node) = &node {
        cordon(ctx, node).await?;
    }
    if fresh {
        let when = deadline.map_or_else(
            || "no deadline: PodDisruptionBudgets are honoured".to_string(),
            |d| format!("the instance goes at {d}"),
        );
        let message = format!(
            "{} for instance {}: {when}; cordoned, launching a replacement, draining",
            kind_words(e.kind),
            e.instance_id
        );
        ctx.recorder
            .publish(claim.as_ref(), EventType::Warning, "Interrupted", &message)
            .await;
        if let Some(node) = &node {
            ctx.recorder
                .publish(node.as_ref(), EventType::Warning, "Interrupted", &message)
                .await;
        }
    }
    tracing::info!(claim = %name, instance = %e.instance_id, kind = e.kind.as_str(), fresh, "node interrupted");
    Ok(Step::Replace {
        claim,
        fresh,
        offering,
    })
}

fn kind_words(kind: InterruptionKind) -> &'static str {
    match kind {
        InterruptionKind::SpotInterruption => "Spot interruption warning",
        InterruptionKind::ScheduledChange => "Scheduled change",
        InterruptionKind::RebalanceRecommendation => "Rebalance recommendation",
        InterruptionKind::StateChange(_) => "State change",
    }
}

/// The spot offering the claim's instance runs on (from the claim's labels, else the event).
fn offering_of(claim: &NodeClaim, e: &InterruptionEvent) -> Option<OfferingKey> {
    let from_claim = match (
        claim.label(labels::INSTANCE_TYPE),
        claim.label(labels::ZONE),
        crate::nodeclaim::claim_capacity_type(claim),
    ) {
        (Some(t), Some(z), Some(ct)) => Some(OfferingKey {
            instance_type: t.to_string(),
            zone: z.to_string(),
            capacity_type: ct,
        }),
        _ => None,
    };
    from_claim
        .or_else(|| e.offering.clone())
        .filter(|o| o.capacity_type == CapacityType::Spot)
}

/// Annotates the claim interrupted (with its deadline) and sets `Disrupting`.
async fn mark(
    ctx: &Context,
    claim: &NodeClaim,
    kind: InterruptionKind,
    deadline: Option<jiff::Timestamp>,
) -> Result<()> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let name = claim.name_any();
    let mut annotations = serde_json::Map::new();
    annotations.insert(labels::INTERRUPTED.into(), json!(kind.as_str()));
    if let Some(d) = deadline {
        annotations.insert(labels::INTERRUPTION_DEADLINE.into(), json!(d.to_string()));
    }
    let patched = match api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return Err(Error::kube("annotate interrupted nodeclaim", &name)(e)),
    };
    let mut status = patched.status.clone().unwrap_or_default();
    let reason = match kind {
        InterruptionKind::SpotInterruption => "SpotInterruption",
        InterruptionKind::ScheduledChange => "ScheduledChange",
        _ => "RebalanceRecommendation",
    };
    status.set_condition(
        Condition::new(
            DISRUPTING,
            ConditionStatus::True,
            reason,
            &deadline.map_or_else(
                || "the cloud announced it takes the instance away".to_string(),
                |d| format!("the cloud takes the instance away at {d}"),
            ),
        ),
        ctx.clock.now(),
    );
    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": status.conditions}})),
        )
        .await
        .map_err(Error::kube(
            "set the disrupting condition of nodeclaim",
            &name,
        ))?;
    ctx.update_state(|s| s.apply_claim(patched));
    Ok(())
}

/// Cordons the node and taints it `stowage.dev/disrupted:NoSchedule`.
async fn cordon(ctx: &Context, node: &Node) -> Result<()> {
    let taint = Taint {
        key: labels::DISRUPTED_TAINT_KEY.to_string(),
        effect: "NoSchedule".to_string(),
        ..Default::default()
    };
    let spec = node.spec.clone().unwrap_or_default();
    let mut taints = spec.taints.unwrap_or_default();
    let tainted = taints
        .iter()
        .any(|t| t.key == taint.key && t.effect == taint.effect);
    if tainted && spec.unschedulable == Some(true) {
        return Ok(());
    }
    if !tainted {
        taints.push(taint);
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let name = node.name_any();
    match nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true, "taints": taints}})),
        )
        .await
    {
        Ok(n) => {
            ctx.update_state(|s| s.apply_node(n));
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube("cordon node", &name)(e)),
    }
}

/// Step 3 of the module docs: one solve for the displaced pods of `claims`, and its claims.
async fn launch_replacements(
    ctx: &Context,
    claims: &[(Arc<NodeClaim>, Option<OfferingKey>)],
) -> Result<()> {
    let pools = snapshot::pools(&ctx.state());
    let mut not_used = Vec::new();
    let mut types = provisioning::pool_types(ctx, &pools, &mut not_used).await;
    // Whatever the provider's cache says, the interrupted offerings are not bought back here.
    let gone: BTreeSet<&OfferingKey> = claims.iter().filter_map(|(_, o)| o.as_ref()).collect();
    if !gone.is_empty() {
        for list in types.values_mut() {
            for it in Arc::make_mut(list).iter_mut() {
                for o in &mut it.offerings {
                    if gone.iter().any(|g| {
                        g.instance_type == it.name
                            && g.zone == o.zone
                            && g.capacity_type == o.capacity_type
                    }) {
                        o.available = false;
                    }
                }
            }
        }
    }
    let options = SolveOptions {
        max_instance_types: ctx.settings.max_instance_types,
        ..SolveOptions::default()
    };
    // The provisioner's converted Nodes, and no provisioning solve at the same time (see
    // `Context::solver_nodes`); the input is solved as built, the interrupted nodes taken out
    // of it (no copy of the cluster's nodes per batch, as `simulate_without` would make).
    let (plan, now) = {
        let mut cache = ctx.solver_nodes().await;
        let now = ctx.clock.now();
        let (input, lease) = {
            let state = ctx.state();
            let candidates: Vec<String> = claims
                .iter()
                .map(|(c, _)| {
                    state
                        .claim_node(c)
                        .map_or_else(|| c.name_any(), |n| n.name_any())
                })
                .collect();
            // Without the pending pods: they are the provisioner's.
            let snap = snapshot::build_bound(&state, &pools, types, now, &mut cache);
            let mut input = snap.input;
            let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
            drop(stowage_solver::displace(&mut input, &refs));
            (input, snap.lease)
        };
        let plan = stowage_solver::solve(&input, &options);
        cache.recycle(input, lease);
        (plan, now)
    };
    let window = jiff::SignedDuration::try_from(ctx.settings.nomination_window)
        .unwrap_or(jiff::SignedDuration::MAX);
    // Replacements are urgent (the warning gives two minutes): they go ahead of the queue.
    let api: Api<NodeClaim> = Api::all(ctx.create_client().clone());
    let mut created = Vec::new();
    for new in &plan.new_claims {
        let Some(pool) = pools.iter().find(|p| p.name_any() == new.nodepool) else {
            continue;
        };
        let claim = provisioning::claim_for(pool, new);
        let c = api
            .create(&PostParams::default(), &claim)
            .await
            .map_err(Error::kube("create replacement nodeclaim", &new.name))?;
        let name = c.name_any();
        ctx.metrics.nodeclaim_created(&new.nodepool, "interruption");
        ctx.update_state(|s| {
            s.apply_claim(c.clone());
            s.nominate(new.pods.iter().cloned(), &name, now, now + window);
        });
        created.push(format!("nodeclaim/{name} ({} pods)", new.pods.len()));
    }
    let on_existing = plan.existing_placements.len();
    let unplaced: BTreeMap<&str, usize> =
        plan.unschedulable
            .values()
            .fold(BTreeMap::new(), |mut m, reason| {
                *m.entry(reason.as_str()).or_default() += 1;
                m
            });
    let mut message = if created.is_empty() {
        format!("No replacement needed: the displaced pods fit on existing nodes ({on_existing})")
    } else {
        format!(
            "Replacement launched: {}; {on_existing} pods fit on existing nodes",
            created.join(", ")
        )
    };
    if !unplaced.is_empty() {
        let reasons: Vec<String> = unplaced
            .iter()
            .map(|(r, n)| format!("{n} pods: {r}"))
            .collect();
        message.push_str(&format!("; not placeable: {}", reasons.join("; ")));
    }
    tracing::info!(
        nodes = claims.len(),
        claims = created.len(),
        on_existing,
        unplaced = plan.unschedulable.len(),
        "replacements for interrupted nodes"
    );
    for (claim, _) in claims {
        ctx.recorder
            .publish(
                claim.as_ref(),
                EventType::Normal,
                "ReplacementLaunched",
                &message,
            )
            .await;
    }
    Ok(())
}

/// Step 4-5 of the module docs: delete what is to be deleted; the action taken.
async fn finish(ctx: &Context, step: Step) -> Result<&'static str> {
    match step {
        Step::NotOwned => Ok("not_owned"),
        Step::Recorded => Ok("recorded"),
        Step::Delete(claim, reason) => {
            crate::lifecycle::delete_claim(ctx, &claim, &reason).await?;
            Ok("deleted")
        }
        Step::Replace { claim, .. } => {
            crate::lifecycle::delete_claim(ctx, &claim, "interrupted").await?;
            Ok("replaced")
        }
    }
}
