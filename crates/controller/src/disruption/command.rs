//! Carrying out a disruption command: the one action path every method (and spot interruption)
//! uses. Restart-safe by construction: what a command has done is written on the objects, and
//! [`advance`] finishes or undoes whatever it finds, whoever started it.
//!
//! 1. [`start`]: the replacement NodeClaims are created (annotated with the claims they
//!    replace; the candidates' pods nominated to them); then each candidate claim gets the
//!    [`COMMAND`] annotation (method, replacement names, start time) and `Disrupting=True`, and
//!    its Node the `stowage.dev/disrupted:NoSchedule` taint, so nothing new lands there.
//! 2. [`advance`] (every loop tick): a marked claim whose replacements are all `Initialized` is
//!    deleted, and the termination path drains it with the eviction API (PDB-aware; pods are
//!    only deleted once the claim's `terminationGracePeriod` has run out). A marked claim whose
//!    replacement is gone (it failed to launch) or not initialized within the replacement
//!    timeout is **undone**: annotation removed, `Disrupting=False`, Node untainted, replacements
//!    that never initialized deleted.
//!
//! A Node tainted disrupted, or a claim `Disrupting`, without the annotation and not being
//! deleted (a crash between two writes) is undone the same way.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use stowage_api::conditions::{DISRUPTING, INITIALIZED};
use stowage_api::{NodeClaim, labels};
use stowage_solver::NewClaim;
use stowage_solver::consolidate::Reason;

use crate::context::Context;
use crate::error::{Error, Result, is_not_found};
use crate::events::EventType;

/// The annotation on a candidate claim of a command in progress (JSON, see [`Marker`]).
pub const COMMAND: &str = "stowage.dev/disruption-command";
/// The annotation on a replacement claim: the claims it replaces, comma-separated.
pub const REPLACEMENT_FOR: &str = "stowage.dev/replacement-for";

/// How a command was found (metrics, events, the [`COMMAND`] annotation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Emptiness,
    Expiry,
    Drift,
    CapacityMixRestore,
    MultiNode,
    SingleNode,
    /// Spot interruption (the interruption controller's commands).
    Interruption,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Emptiness,
        Method::Expiry,
        Method::Drift,
        Method::CapacityMixRestore,
        Method::MultiNode,
        Method::SingleNode,
        Method::Interruption,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Emptiness => "emptiness",
            Method::Expiry => "expiry",
            Method::Drift => "drift",
            Method::CapacityMixRestore => "capacity-mix-restore",
            Method::MultiNode => "multi-node",
            Method::SingleNode => "single-node",
            Method::Interruption => "interruption",
        }
    }

    /// The solver's method, for the consolidation methods.
    pub fn from_solver(m: stowage_solver::consolidate::Method) -> Self {
        match m {
            stowage_solver::consolidate::Method::Emptiness => Method::Emptiness,
            stowage_solver::consolidate::Method::MultiNode => Method::MultiNode,
            stowage_solver::consolidate::Method::SingleNode => Method::SingleNode,
        }
    }

    /// The Event reason on the disrupted objects.
    pub fn event_reason(self) -> &'static str {
        match self {
            Method::Emptiness | Method::MultiNode | Method::SingleNode => "Consolidating",
            Method::Expiry => "Expiring",
            Method::Drift => "DriftReplacing",
            Method::CapacityMixRestore => "RestoringSpot",
            Method::Interruption => "Interrupted",
        }
    }
}

/// One node a command removes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub claim: String,
    pub node: String,
    pub nodepool: String,
    pub price_per_hour: f64,
}

/// A command: delete the targets, launching the replacements first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub method: Method,
    /// The budget it counts against (`None`: not budgeted, e.g. expiry).
    pub reason: Option<Reason>,
    pub targets: Vec<Target>,
    pub replacements: Vec<NewClaim>,
    /// The targets' summed price minus the replacements' cheapest price, per hour.
    pub savings_per_hour: f64,
    /// The solver's command, for the validation after the delay (consolidation methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver: Option<stowage_solver::consolidate::Command>,
}

impl Plan {
    /// "deleting 3 nodes, replacing with 1 m6i.4xlarge spot, saves $0.42/h".
    pub fn describe(&self) -> String {
        let n = self.targets.len();
        let mut s = format!("deleting {n} node{}", if n == 1 { "" } else { "s" });
        if !self.replacements.is_empty() {
            let what: Vec<String> = self.replacements.iter().map(replacement_label).collect();
            s.push_str(&format!(
                ", replacing with {} {}",
                self.replacements.len(),
                what.join(", ")
            ));
        }
        if self.savings_per_hour.abs() >= 0.005 {
            let verb = if self.savings_per_hour >= 0.0 {
                "saves"
            } else {
                "costs"
            };
            s.push_str(&format!(", {verb} ${:.2}/h", self.savings_per_hour.abs()));
        }
        s
    }
}

/// `m6i.4xlarge spot` (the cheapest option, and the capacity type when it is pinned).
fn replacement_label(c: &NewClaim) -> String {
    let it = c
        .instance_type_options
        .first()
        .cloned()
        .unwrap_or_else(|| "node".into());
    let ct = c
        .requirements
        .iter()
        .find(|r| r.key == labels::CAPACITY_TYPE && r.values.len() == 1)
        .map(|r| format!(" {}", r.values[0]))
        .unwrap_or_default();
    format!("{it}{ct}")
}

/// What a marked claim carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub method: Method,
    #[serde(default)]
    pub replacements: Vec<String>,
    pub since: Timestamp,
}

/// The marker of a claim, if it has a readable one.
pub fn marker(claim: &NodeClaim) -> Option<Marker> {
    claim
        .annotations()
        .get(COMMAND)
        .and_then(|v| serde_json::from_str(v).ok())
}

/// Starts a command; see the module docs. Returns the replacement claims' names.
pub async fn start(ctx: &Context, plan: &Plan) -> Result<Vec<String>> {
    let now = ctx.clock.now();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let replaced: Vec<&str> = plan.targets.iter().map(|t| t.claim.as_str()).collect();
    let mut names = Vec::new();
    let window = jiff::SignedDuration::try_from(ctx.settings.disruption_replacement_timeout)
        .unwrap_or(jiff::SignedDuration::MAX);
    for new in &plan.replacements {
        let Some(pool) = ctx.state().nodepool(&new.nodepool) else {
            return Ok(Vec::new());
        };
        let mut claim = crate::provisioning::claim_for(&pool, new);
        claim
            .annotations_mut()
            .insert(REPLACEMENT_FOR.to_string(), replaced.join(","));
        let created = api
            .create(&PostParams::default(), &claim)
            .await
            .map_err(Error::kube("create nodeclaim", &new.name))?;
        let name = created.name_any();
        ctx.metrics.nodeclaim_created(&new.nodepool, "disruption");
        ctx.update_state(|s| {
            s.apply_claim(created);
            s.nominate(new.pods.iter().cloned(), &name, now, now + window);
        });
        names.push(name);
    }
    let marker = Marker {
        method: plan.method,
        replacements: names.clone(),
        since: now,
    };
    let marker = serde_json::to_string(&marker).unwrap_or_default();
    let message = plan.describe();
    for t in &plan.targets {
        mark(ctx, &t.claim, &marker, plan.method).await?;
        let node = ctx.state().node(&t.node);
        if let Some(node) = node {
            set_disrupted_taint(ctx, &node, true).await?;
            ctx.recorder
                .publish(
                    node.as_ref(),
                    EventType::Normal,
                    plan.method.event_reason(),
                    &format!("{}: {message}", plan.method.event_reason()),
                )
                .await;
        }
        let claim = ctx.state().claim(&t.claim);
        if let Some(claim) = claim {
            ctx.recorder
                .publish(
                    claim.as_ref(),
                    EventType::Normal,
                    plan.method.event_reason(),
                    &format!("{}: {message}", plan.method.event_reason()),
                )
                .await;
        }
    }
    tracing::info!(method = plan.method.as_str(), targets = ?replaced, replacements = ?names, "{message}");
    if names.is_empty() {
        advance(ctx).await?;
    }
    Ok(names)
}

/// Annotates the claim and sets `Disrupting=True`.
async fn mark(ctx: &Context, name: &str, marker: &str, method: Method) -> Result<()> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let patched = match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {COMMAND: marker}}})),
        )
        .await
    {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::kube("annotate nodeclaim", name)(e)),
    };
    let mut claim = patched;
    let now = ctx.clock.now();
    let status = claim.status_mut();
    status.set_condition(
        stowage_api::Condition::new(
            DISRUPTING,
            stowage_api::ConditionStatus::True,
            method_reason(method),
            "",
        ),
        now,
    );
    patch_conditions(ctx, &mut claim).await
}

fn method_reason(m: Method) -> &'static str {
    match m {
        Method::Emptiness => "Empty",
        Method::Expiry => "Expired",
        Method::Drift => "Drifted",
        Method::CapacityMixRestore => "CapacityMixRestore",
        Method::MultiNode | Method::SingleNode => "Underutilized",
        Method::Interruption => "Interrupted",
    }
}

async fn patch_conditions(ctx: &Context, claim: &mut NodeClaim) -> Result<()> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let name = claim.name_any();
    let conditions = claim
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
    {
        Ok(c) => {
            ctx.update_state(|s| s.apply_claim(c));
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube("update nodeclaim status", &name)(e)),
    }
}

/// Adds or removes the disrupted taint (`stowage.dev/disrupted:NoSchedule`): the one writer of
/// it (termination taints through it too).
pub(crate) async fn set_disrupted_taint(ctx: &Context, node: &Node, on: bool) -> Result<()> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let has = taints.iter().any(|t| t.key == labels::DISRUPTED_TAINT_KEY);
    if has == on {
        return Ok(());
    }
    if on {
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: labels::DISRUPTED_TAINT_KEY.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        });
    } else {
        taints.retain(|t| t.key != labels::DISRUPTED_TAINT_KEY);
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let name = node.name_any();
    match nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": taints}})),
        )
        .await
    {
        Ok(n) => {
            ctx.update_state(|s| s.apply_node(n));
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube("taint node", &name)(e)),
    }
}

/// A live claim that is marked or half-marked: the claim, its Node, its marker.
type Work = (Arc<NodeClaim>, Option<Arc<Node>>, Option<Marker>);

/// What [`advance`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Claims deleted (their replacements are up).
    pub deleted: Vec<String>,
    /// Claims undone (a replacement failed or timed out, or a half-written mark).
    pub undone: Vec<String>,
    /// Claims still waiting for their replacements.
    pub waiting: usize,
}

/// Finishes or undoes the commands in progress; see the module docs.
pub async fn advance(ctx: &Context) -> Result<Progress> {
    let now = ctx.clock.now();
    let timeout = jiff::SignedDuration::try_from(ctx.settings.disruption_replacement_timeout)
        .unwrap_or(jiff::SignedDuration::MAX);
    let mut progress = Progress::default();
    // (claim, node, marker) of every live claim marked or half-marked.
    let work: Vec<Work> = {
        let state = ctx.state();
        let mut out = Vec::new();
        for claim in state.claims() {
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let node = state.claim_node(claim);
            let tainted = node.as_ref().is_some_and(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == labels::DISRUPTED_TAINT_KEY))
            });
            let annotated = claim.annotations().contains_key(COMMAND);
            if annotated || tainted || claim.is_true(DISRUPTING) {
                out.push((claim.clone(), node, marker(claim)));
            }
        }
        out
    };
    for (claim, node, marker) in work {
        let name = claim.name_any();
        let Some(marker) = marker else {
            undo(
                ctx,
                &claim,
                node.as_deref(),
                &[],
                "the disruption was not fully recorded",
            )
            .await?;
            progress.undone.push(name);
            continue;
        };
        let reps: Vec<Option<Arc<NodeClaim>>> = {
            let state = ctx.state();
            marker.replacements.iter().map(|r| state.claim(r)).collect()
        };
        let failed = reps.iter().any(|r| {
            r.as_ref()
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
        });
        let ready = reps.iter().flatten().all(|c| c.is_true(INITIALIZED));
        if failed {
            undo(
                ctx,
                &claim,
                node.as_deref(),
                &marker.replacements,
                "a replacement failed to launch",
            )
            .await?;
            progress.undone.push(name);
        } else if ready {
            crate::lifecycle::delete_claim(ctx, &claim, marker.method.as_str()).await?;
            progress.deleted.push(name);
        } else if now.duration_since(marker.since) > timeout {
            undo(
                ctx,
                &claim,
                node.as_deref(),
                &marker.replacements,
                "the replacement did not initialize in time",
            )
            .await?;
            progress.undone.push(name);
        } else {
            progress.waiting += 1;
        }
    }
    Ok(progress)
}

/// Takes a command back on one claim; replacements that never initialized are deleted.
async fn undo(
    ctx: &Context,
    claim: &NodeClaim,
    node: Option<&Node>,
    replacements: &[String],
    why: &str,
) -> Result<()> {
    let name = claim.name_any();
    tracing::info!(claim = %name, why, "disruption undone");
    for r in replacements {
        let rep = ctx.state().claim(r);
        if let Some(rep) = rep
            && rep.metadata.deletion_timestamp.is_none()
            && !rep.is_true(INITIALIZED)
        {
            crate::lifecycle::delete_claim(ctx, &rep, "disruption undone").await?;
        }
    }
    if let Some(node) = node {
        set_disrupted_taint(ctx, node, false).await?;
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    if claim.annotations().contains_key(COMMAND) {
        match api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {COMMAND: null}}})),
            )
            .await
        {
            Ok(c) => ctx.update_state(|s| s.apply_claim(c)),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(Error::kube("annotate nodeclaim", &name)(e)),
        }
    }
    if claim.is_true(DISRUPTING) {
        let mut claim = ctx
            .state()
            .claim(&name)
            .map(|c| (*c).clone())
            .unwrap_or_else(|| claim.clone());
        claim
            .status_mut()
            .set_false(DISRUPTING, "Undone", why, ctx.clock.now());
        patch_conditions(ctx, &mut claim).await?;
    }
    ctx.recorder
        .publish(
            claim,
            EventType::Warning,
            "DisruptionUndone",
            &format!("Disruption undone: {why}"),
        )
        .await;
    Ok(())
}
