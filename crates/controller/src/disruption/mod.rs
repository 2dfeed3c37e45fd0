//! Disruption, a leader-only singleton: the loop that shrinks and refreshes the fleet safely.
//!
//! Every `disruption_interval` (10 s) it stamps `status.lastPodEventTime` on the claims whose
//! Node had a pod bound or removed, finishes or undoes commands in progress
//! ([`command::advance`]), and — when the cluster changed since the last "nothing to do", a node
//! became eligible by time alone, or 5 minutes passed — runs one **round**: the methods in order,
//! the first that yields a command wins, one command per round:
//!
//! 1. **Emptiness**: every empty, consolidatable candidate within the `Empty` budgets, deleted
//!    together;
//! 2. **Expiry**: the cheapest-to-move claim older than its `expireAfter`, replaced then drained.
//!    Budgets and blocking pods do not stop it (the drain still honours PDBs until the claim's
//!    `terminationGracePeriod`);
//! 3. **Drift**: the cheapest-to-move claim with `Drifted=True`, not blocked, within the
//!    `Drifted` budget, replaced then drained;
//! 4. **Capacity-mix restore**: an on-demand claim bought because spot was unavailable, past its
//!    pool's `capacityMix.restoreSpotAfter`, replaced by spot when spot can be had;
//! 5. **Multi-node** then **single-node** consolidation (the pure solver's
//!    [`stowage_solver::consolidate::decide`]), within the `Underutilized` budgets.
//!
//! Emptiness, restore and consolidation commands are validated after `disruption_validation_delay`
//! (15 s): the round is prepared again on fresh state and the command must still hold (same
//! candidates eligible, budgets, [`stowage_solver::consolidate::validate`]); otherwise it is
//! dropped (`result="churn"`). A command then goes through [`command::start`], which spot
//! interruption handling can call too.
//!
//! Key decision: everything a command has done is written on the objects (an annotation, the
//! `Disrupting` condition, the taint), so a new leader finishes or undoes half-done commands
//! without memory of them; a round is not started while a command waits for its replacement.

pub mod candidates;
pub mod command;
pub mod metrics;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stowage_api::requirements::{Requirement, Requirements};
use stowage_api::{CapacityType, NodeClaim, labels};
use stowage_solver::consolidate::{self, Budgets, ConsolidationOptions, Reason};
use stowage_solver::{InstanceType, SolveInput, SolveOptions, simulate_without};

use crate::context::Context;
use crate::error::{Chain, Error, Result, is_not_found};
use crate::events::EventType;
use crate::snapshot;
use crate::state::ClusterState;

pub use candidates::{Candidates, Eligible};
pub use command::{Method, Plan, Target};

/// A round runs at least this often even when nothing changed (budget windows open, prices).
pub const MAX_QUIET: Duration = Duration::from_secs(5 * 60);

/// Everything a round decides on, prepared from the state.
#[derive(Debug)]
pub struct Round {
    /// The cluster as the solver reads it, without pending pods (provisioning's business), each
    /// candidate node carrying its price.
    pub input: SolveInput,
    pub candidates: Candidates,
    pub budgets: Budgets,
    /// The lending of the node cache `input`'s nodes came from (see [`prepare_with`]).
    pub lease: snapshot::Lease,
}

/// Prepares a round at `now` with each pool's instance types.
pub fn prepare(
    state: &ClusterState,
    types: &BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
) -> Round {
    prepare_with(state, types, now, &mut snapshot::NodeCache::default())
}

/// [`prepare`] reusing the nodes of earlier snapshots given back to `cache`
/// ([`snapshot::NodeCache::recycle`], with the round's `lease`): the same round, built without
/// converting again the nodes (and copying the pods) that did not change.
pub fn prepare_with(
    state: &ClusterState,
    types: &BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
    cache: &mut snapshot::NodeCache,
) -> Round {
    let mut candidates = candidates::candidates(state, types, now);
    let budgets = candidates::budgets(state, &candidates, now);
    // No method can take any node: the cluster need not be snapshotted (at 3,200 nodes and
    // 40,000 pods the snapshot is most of a round's cost).
    if !candidates.eligible.iter().any(|e| actionable(e, &budgets)) {
        return Round {
            input: SolveInput::default(),
            candidates,
            budgets,
            lease: snapshot::Lease::default(),
        };
    }
    let pools = snapshot::pools(state);
    // Without pending pods: they are provisioning's business.
    let snap = snapshot::build_bound(state, &pools, types.clone(), now, cache);
    let lease = snap.lease;
    let mut input = snap.input;
    // A pool above its on-demand cap gives up on-demand nodes first.
    let over = over_on_demand_cap(&input);
    if !over.is_empty() {
        candidates.eligible.sort_by_key(|e| {
            !(e.candidate.capacity_type == CapacityType::OnDemand
                && over.contains(&e.candidate.nodepool))
        });
    }
    let prices: HashMap<&str, f64> = candidates
        .eligible
        .iter()
        .map(|e| (e.candidate.node.as_str(), e.candidate.price_per_hour))
        .collect();
    for n in &mut input.nodes {
        if let Some(p) = prices.get(n.name.as_str()) {
            n.price_per_hour = Some(*p);
        }
    }
    Round {
        input,
        candidates,
        budgets,
        lease,
    }
}

/// Whether some method of [`choose`] could take `e` now: expiry always; drift, the
/// capacity-mix restore and consolidation when nothing blocks it and its pool's budget for the
/// method's reason allows one more node.
fn actionable(e: &Eligible, budgets: &Budgets) -> bool {
    if e.expired {
        return true;
    }
    if e.blocked.is_some() {
        return false;
    }
    let within = |reason| budgets.get(&e.candidate.nodepool, reason) > 0;
    (e.drifted && within(Reason::Drifted))
        || (e.restore_spot
            && e.candidate.capacity_type == CapacityType::OnDemand
            && within(Reason::Underutilized))
        || (e.consolidatable && (within(Reason::Empty) || within(Reason::Underutilized)))
}

/// The outcome of [`choose`].
#[derive(Debug, Default)]
pub struct Choice {
    pub plan: Option<Plan>,
    /// Scheduling simulations run.
    pub simulations: usize,
}

fn target(e: &Eligible) -> Target {
    Target {
        claim: e.claim.name_any(),
        node: e.candidate.node.clone(),
        nodepool: e.candidate.nodepool.clone(),
        price_per_hour: e.candidate.price_per_hour,
    }
}

/// Runs the methods in order (see the module docs); the first command found wins.
pub fn choose(round: &Round, options: &ConsolidationOptions) -> Choice {
    let mut choice = Choice::default();
    let eligible = &round.candidates.eligible;
    let consolidatable = round
        .candidates
        .solver(|e| e.consolidatable && e.blocked.is_none());
    if let Some(cmd) = consolidate::emptiness(&round.input, &consolidatable, &round.budgets) {
        choice.plan = Some(from_solver(round, cmd));
        return choice;
    }
    // Expiry: forceful, not budgeted.
    for e in eligible.iter().filter(|e| e.expired) {
        choice.simulations += 1;
        if let Some(plan) = replace(round, e, Method::Expiry, None, options, true) {
            choice.plan = Some(plan);
            return choice;
        }
    }
    // Drift: within the Drifted budget, one node per command.
    let drifted: Vec<&consolidate::Candidate> = eligible
        .iter()
        .filter(|e| e.drifted && e.blocked.is_none())
        .map(|e| &e.candidate)
        .collect();
    for c in round.budgets.filter(&drifted, Reason::Drifted) {
        let Some(e) = round.candidates.by_node(&c.node) else {
            continue;
        };
        choice.simulations += 1;
        if let Some(plan) = replace(
            round,
            e,
            Method::Drift,
            Some(Reason::Drifted),
            options,
            false,
        ) {
            choice.plan = Some(plan);
            return choice;
        }
    }
    // Capacity-mix restore: within the Underutilized budget, one node per command.
    let restore: Vec<&consolidate::Candidate> = eligible
        .iter()
        .filter(|e| e.restore_spot && e.blocked.is_none())
        .filter(|e| e.candidate.capacity_type == CapacityType::OnDemand)
        .map(|e| &e.candidate)
        .collect();
    for c in round.budgets.filter(&restore, Reason::Underutilized) {
        let Some(e) = round.candidates.by_node(&c.node) else {
            continue;
        };
        choice.simulations += 1;
        if let Some(plan) = restore_spot(round, e, options) {
            choice.plan = Some(plan);
            return choice;
        }
    }
    let decision = consolidate::decide(&round.input, &consolidatable, &round.budgets, options);
    choice.simulations += decision.simulations;
    choice.plan = decision.command.map(|cmd| from_solver(round, cmd));
    choice
}

/// A plan from the solver's consolidation command.
fn from_solver(round: &Round, cmd: consolidate::Command) -> Plan {
    Plan {
        method: Method::from_solver(cmd.method),
        reason: Some(cmd.reason),
        targets: cmd
            .candidates
            .iter()
            .filter_map(|n| round.candidates.by_node(n))
            .map(target)
            .collect(),
        replacements: cmd.replacement.iter().cloned().collect(),
        savings_per_hour: cmd.savings_per_hour,
        solver: Some(cmd),
    }
}

/// Replaces one node by whatever its pods need (no price condition): drift, expiry.
/// `forceful`: go even when some pods cannot be placed anywhere (expiry).
fn replace(
    round: &Round,
    e: &Eligible,
    method: Method,
    reason: Option<Reason>,
    options: &ConsolidationOptions,
    forceful: bool,
) -> Option<Plan> {
    let plan = simulate_without(&round.input, &[e.candidate.node.as_str()], &options.solve);
    if !plan.unschedulable.is_empty() && !forceful {
        return None;
    }
    let cost: f64 = plan.new_claims.iter().map(|c| c.cheapest_price).sum();
    Some(Plan {
        method,
        reason,
        targets: vec![target(e)],
        savings_per_hour: e.candidate.price_per_hour - cost,
        replacements: plan.new_claims,
        solver: None,
    })
}

/// Moves an on-demand fallback node to spot: its pods go elsewhere or onto one spot node,
/// launched only as spot (no on-demand fallback again) from the types with an available spot
/// offering; `None` while spot cannot be had.
fn restore_spot(round: &Round, e: &Eligible, options: &ConsolidationOptions) -> Option<Plan> {
    let plan = simulate_without(&round.input, &[e.candidate.node.as_str()], &options.solve);
    if !plan.unschedulable.is_empty() || plan.new_claims.len() > 1 {
        return None;
    }
    let mut replacements = plan.new_claims;
    if let Some(claim) = replacements.first_mut() {
        let reqs = Requirements::from_requirements(claim.requirements.iter()).ok()?;
        // Pods that need on-demand keep it.
        if reqs
            .get(labels::CAPACITY_TYPE)
            .is_some_and(|s| !s.has(CapacityType::Spot.as_str()))
        {
            return None;
        }
        let zones = reqs.get(labels::ZONE).cloned();
        let types = round
            .input
            .nodepools
            .iter()
            .find(|p| p.name == claim.nodepool)
            .and_then(|p| p.instance_types.clone());
        let spot_price = |name: &String| -> Option<f64> {
            types
                .as_deref()?
                .iter()
                .find(|t| &t.name == name)?
                .offerings
                .iter()
                .filter(|o| o.available && o.capacity_type == CapacityType::Spot)
                .filter(|o| zones.as_ref().is_none_or(|z| z.has(&o.zone)))
                .map(|o| o.price_per_hour)
                .reduce(f64::min)
        };
        let mut options: Vec<(f64, String)> = claim
            .instance_type_options
            .iter()
            .filter_map(|n| spot_price(n).map(|p| (p, n.clone())))
            .collect();
        if options.is_empty() {
            return None;
        }
        options.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        claim.cheapest_price = options[0].0;
        claim.instance_type_options = options.into_iter().map(|(_, n)| n).collect();
        claim
            .requirements
            .retain(|r| r.key != labels::CAPACITY_TYPE);
        claim.requirements.push(Requirement::in_(
            labels::CAPACITY_TYPE,
            [CapacityType::Spot.as_str()],
        ));
    }
    let cost: f64 = replacements.iter().map(|c| c.cheapest_price).sum();
    Some(Plan {
        method: Method::CapacityMixRestore,
        reason: Some(Reason::Underutilized),
        targets: vec![target(e)],
        savings_per_hour: e.candidate.price_per_hour - cost,
        replacements,
        solver: None,
    })
}

/// Pools whose on-demand share is above their capacity mix's cap now (unscoped: the pool;
/// scoped: every pool of the scope), e.g. after spot nodes went away.
pub fn over_on_demand_cap(input: &SolveInput) -> BTreeSet<String> {
    let mut over = BTreeSet::new();
    for p in &input.nodepools {
        let Some(cap) = &p.capacity_mix else {
            continue;
        };
        match &cap.scope {
            None => {
                let od = p.usage.on_demand_cpu_millis;
                if cap.excess(od, p.usage.total_cpu_millis - od) > 0 {
                    over.insert(p.name.clone());
                }
            }
            Some(s) => {
                if cap.excess(s.on_demand_cpu_millis, s.other_cpu_millis) > 0 {
                    over.extend(s.pools.iter().cloned());
                }
            }
        }
    }
    over
}

/// True when `plan` still holds on a freshly prepared round: every target still an unblocked
/// candidate (consolidatable for consolidation), within the budgets, and the solver agrees.
pub fn still_valid(round: &Round, plan: &Plan, options: &ConsolidationOptions) -> bool {
    let mut refs = Vec::new();
    for t in &plan.targets {
        let Some(e) = round.candidates.by_node(&t.node) else {
            return false;
        };
        if e.blocked.is_some() || e.claim.name_any() != t.claim {
            return false;
        }
        match plan.method {
            Method::Emptiness | Method::MultiNode | Method::SingleNode if !e.consolidatable => {
                return false;
            }
            Method::Drift if !e.drifted => return false,
            Method::CapacityMixRestore if !e.restore_spot => return false,
            _ => {}
        }
        refs.push(&e.candidate);
    }
    if let Some(reason) = plan.reason
        && round.budgets.filter(&refs, reason).len() != refs.len()
    {
        return false;
    }
    plan.solver
        .as_ref()
        .is_none_or(|cmd| consolidate::validate(&round.input, cmd, options))
}

/// What the loop remembers between ticks.
#[derive(Debug, Default)]
struct Memo {
    /// The state's disruption sequence at the last round that found nothing to do, and when.
    quiet: Option<(u64, tokio::time::Instant)>,
    /// When a node becomes eligible by time alone.
    next_change: Option<Timestamp>,
}

/// Runs the disruption loop while this replica is leader.
pub async fn run(ctx: Arc<Context>) {
    let mut memo = Memo::default();
    loop {
        tokio::time::sleep(ctx.settings.disruption_interval).await;
        if !ctx.is_leader() || !ctx.state().is_synced() {
            memo = Memo::default();
            continue;
        }
        if let Err(err) = tick(&ctx, &mut memo).await {
            tracing::warn!(err = %Chain(&err), "disruption round failed");
        }
    }
}

fn options(ctx: &Context) -> ConsolidationOptions {
    ConsolidationOptions {
        solve: SolveOptions {
            max_instance_types: ctx.settings.max_instance_types,
            ..SolveOptions::default()
        },
        probe_threads: ctx.settings.probe_threads(),
        ..ConsolidationOptions::default()
    }
}

/// One tick of the loop (see the module docs).
async fn tick(ctx: &Context, memo: &mut Memo) -> Result<()> {
    stamp_pod_events(ctx).await?;
    let progress = command::advance(ctx).await?;
    for _ in &progress.undone {
        ctx.metrics.disruption.decision("any", "undone");
    }
    if progress.waiting > 0 {
        return Ok(());
    }
    let now = ctx.clock.now();
    let seq = ctx.state().disruption_seq();
    if let Some((quiet_seq, at)) = memo.quiet
        && quiet_seq == seq
        && at.elapsed() < MAX_QUIET
        && memo.next_change.is_none_or(|t| now < t)
    {
        return Ok(());
    }
    let types = instance_types(ctx).await;
    let options = options(ctx);
    // The registered nodes come from the provisioner's cache (`Context::solver_nodes`), held
    // from the round's snapshot to the end of its decision, as a provisioning pass holds it to
    // the end of its solve: at 3,700 nodes a cache of the loop's own was ~20 MB beside the
    // provisioner's, of the same nodes, and a pass and a round never hold their working sets
    // at once (a pass waits at most one round's decision, ~0.5 s at `seed-full` scale).
    let (round, choice) = {
        let mut cache = ctx.solver_nodes().await;
        let started = std::time::Instant::now();
        let mut round = prepare_with(&ctx.state(), &types, now, &mut cache);
        let choice = choose(&round, &options);
        ctx.metrics
            .disruption
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        cache.recycle(std::mem::take(&mut round.input), round.lease);
        (round, choice)
    };
    record_round(ctx, &round, now).await;
    memo.next_change = round.candidates.next_change;
    let Some(plan) = choice.plan else {
        memo.quiet = Some((seq, tokio::time::Instant::now()));
        return Ok(());
    };
    memo.quiet = None;
    let method = plan.method.as_str();
    let validated = matches!(
        plan.method,
        Method::Emptiness | Method::MultiNode | Method::SingleNode | Method::CapacityMixRestore
    );
    if validated {
        tokio::time::sleep(ctx.settings.disruption_validation_delay).await;
        if !ctx.is_leader() {
            return Ok(());
        }
        let valid = {
            let mut cache = ctx.solver_nodes().await;
            let fresh = prepare_with(&ctx.state(), &types, ctx.clock.now(), &mut cache);
            let valid = still_valid(&fresh, &plan, &options);
            cache.recycle(fresh.input, fresh.lease);
            valid
        };
        if !valid {
            tracing::debug!(method, "disruption command no longer valid; dropped");
            ctx.metrics.disruption.decision(method, "churn");
            return Ok(());
        }
    }
    match command::start(ctx, &plan).await {
        Ok(_) => {
            ctx.metrics.disruption.decision(method, "executed");
            if plan.savings_per_hour > 0.0 {
                ctx.metrics.disruption.saved(plan.savings_per_hour);
            }
            Ok(())
        }
        Err(err) => {
            ctx.metrics.disruption.decision(method, "failed");
            Err(err)
        }
    }
}

/// Each buyable pool's instance types (the provider caches them); prices recorded.
async fn instance_types(ctx: &Context) -> BTreeMap<String, Arc<Vec<InstanceType>>> {
    let pools = snapshot::pools(&ctx.state());
    let mut types = BTreeMap::new();
    for pool in &pools {
        match ctx.cloud.instance_types(pool).await {
            Ok(list) => {
                types.insert(pool.name_any(), Arc::new(list));
            }
            Err(err) => {
                tracing::debug!(pool = %pool.name_any(), %err, "no instance types for nodepool");
            }
        }
    }
    types
}

/// Metrics of a round, and an Event on each blocked node (the recorder rate-limits them).
async fn record_round(ctx: &Context, round: &Round, now: Timestamp) {
    let mut eligible: BTreeMap<String, i64> = BTreeMap::new();
    for pool in ctx.state().nodepools() {
        eligible.insert(pool.name_any(), 0);
    }
    for e in &round.candidates.eligible {
        if e.blocked.is_none() {
            *eligible.entry(e.candidate.nodepool.clone()).or_default() += 1;
        }
    }
    ctx.metrics.disruption.set_eligible(&eligible);
    ctx.metrics.disruption.set_budgets(&round.budgets);
    let _ = now;
    for e in &round.candidates.eligible {
        if let Some(why) = &e.blocked
            && (e.consolidatable || e.drifted)
        {
            ctx.recorder
                .publish(
                    e.node.as_ref(),
                    EventType::Normal,
                    "DisruptionBlocked",
                    &format!("DisruptionBlocked: {why}"),
                )
                .await;
        }
    }
}

/// Stamps `status.lastPodEventTime` on the claims of nodes that had a pod bound or removed.
async fn stamp_pod_events(ctx: &Context) -> Result<()> {
    let nodes = ctx.update_state(|s| s.take_pod_event_nodes());
    if nodes.is_empty() {
        return Ok(());
    }
    let now = ctx.clock.now();
    let claims: Vec<Arc<NodeClaim>> = {
        let state = ctx.state();
        nodes
            .iter()
            .filter_map(|n| state.node(n))
            .filter_map(|n| state.claim_for_node(&n))
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .collect()
    };
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    for claim in claims {
        let name = claim.name_any();
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"lastPodEventTime": Time(now)}})),
            )
            .await
        {
            Ok(c) => ctx.update_state(|s| s.apply_claim(c)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube("update nodeclaim status", &name)(e)),
        }
    }
    Ok(())
}
