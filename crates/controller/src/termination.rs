//! Termination of a NodeClaim being deleted (finalizer `stowage.dev/termination` on the claim and
//! its Node):
//!
//! 1. taint the Node `stowage.dev/disrupted:NoSchedule` so nothing new lands on it;
//! 2. drain: evict pods through the eviction API in tiers — non-critical pods, then non-critical
//!    DaemonSet pods, then critical pods, then critical DaemonSet pods; a tier starts only when
//!    the earlier ones are gone. A `429` (a PodDisruptionBudget would be broken) is retried later
//!    and never forced, until the claim's `terminationGracePeriod` runs out: from then on a pod
//!    whose own grace period would not fit before the deadline is deleted directly. An
//!    interrupted claim (annotation `stowage.dev/interruption-deadline`, see
//!    [`crate::interruption`]) has the earlier of that and the instance's end as its deadline,
//!    says in an Event on each pod what was cut short, and does not wait for terminating pods
//!    past it;
//! 3. `CloudProvider::delete`, once: `Ok` means the cloud accepted the termination (the instance
//!    is shutting down; the AWS provider then answers `NotFound` for it), as does `NotFound`.
//!    Nothing polls the instance afterwards: a failed call is retried with the lifecycle
//!    controller's per-claim exponential backoff (1 s doubling to 5 minutes), and an instance
//!    that outlived its claim anyway is garbage collection's (`housekeeping::gc`);
//! 4. the Node's finalizer is removed (and the Node deleted), then the claim's.
//!
//! Pods that tolerate the disrupted taint, static pods and finished pods are not drained.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use stowage_api::NodeClaim;
use stowage_api::labels;
use stowage_cloud::Error as CloudError;
use stowage_solver::convert::PodView;

use crate::context::Context;
use crate::error::{Error, Result, is_not_found};
use crate::events::EventType;
use crate::lean::LeanPod;

/// Pods terminating for longer than this are not waited for.
const STUCK_TERMINATING: Duration = Duration::from_secs(60);
/// Evictions sent at once.
const EVICTION_CONCURRENCY: usize = 32;
/// How often a drain is looked at again.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Which eviction tier a pod belongs to (lower goes first).
pub fn tier(pod: &Pod) -> u8 {
    tier_of(&PodView::of(pod))
}

/// [`tier`] of what Stowage reads of a pod.
pub fn tier_of<C>(pod: &PodView<'_, C>) -> u8 {
    let critical = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name)
        .is_some_and(|p| p == "system-cluster-critical" || p == "system-node-critical");
    let daemon = crate::state::owned_by_daemonset(pod.owner_references);
    match (critical, daemon) {
        (false, false) => 0,
        (false, true) => 1,
        (true, false) => 2,
        (true, true) => 3,
    }
}

/// True when the pod tolerates the disrupted taint (it would land right back; not drained).
pub fn tolerates_disrupted(pod: &Pod) -> bool {
    tolerates_disrupted_of(&PodView::of(pod))
}

/// [`tolerates_disrupted`] of what Stowage reads of a pod.
pub fn tolerates_disrupted_of<C>(pod: &PodView<'_, C>) -> bool {
    let taint = disrupted_taint();
    pod.spec
        .as_ref()
        .map_or(&[][..], |s| s.tolerations)
        .iter()
        .any(|t| {
            let key_ok = match t.key.as_deref() {
                None | Some("") => t.operator.as_deref() == Some("Exists"),
                Some(k) => k == taint.key,
            };
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == taint.effect);
            let value_ok = t.operator.as_deref() == Some("Exists")
                || t.value.as_deref().unwrap_or("").is_empty();
            key_ok && effect_ok && value_ok
        })
}

fn disrupted_taint() -> Taint {
    Taint {
        key: labels::DISRUPTED_TAINT_KEY.to_string(),
        effect: "NoSchedule".to_string(),
        ..Default::default()
    }
}

/// Drains, releases the instance and removes the finalizers; see the module docs.
pub async fn finalize(claim: &NodeClaim, ctx: &Context) -> Result<Action> {
    let name = claim.name_any();
    if !claim
        .finalizers()
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        return Ok(Action::await_change());
    }
    ctx.update_state(|s| s.clear_nominations(&name));
    let node = {
        let state = ctx.state();
        state
            .claim_node(claim)
            .or_else(|| claim.node_name().and_then(|n| state.node(n)))
    };
    if let Some(node) = &node {
        taint_disrupted(ctx, node).await?;
        if let Some(wait) = drain(ctx, claim, node).await? {
            return Ok(Action::requeue(wait));
        }
    }
    // The instance: one call; accepted or already gone, it is done with (see the module docs).
    match ctx.cloud.delete(claim).await {
        Ok(()) | Err(CloudError::NotFound(_)) => {}
        Err(err) => return Err(Error::cloud(&name)(err)),
    }
    if let Some(node) = &node {
        remove_node_finalizer_and_delete(ctx, node).await?;
    }
    match remove_claim_finalizer(ctx, claim).await? {
        FinalizerRemoval::Removed => {
            ctx.metrics
                .nodeclaim_terminated(claim.nodepool_name().unwrap_or(""), "deleted");
            tracing::info!(claim = %name, "nodeclaim terminated");
            Ok(Action::await_change())
        }
        // Another pass (on a fresher copy) finished it: count and log the effect once.
        FinalizerRemoval::AlreadyGone => Ok(Action::await_change()),
        FinalizerRemoval::Stale => Ok(Action::requeue(Duration::from_secs(1))),
    }
}

/// What removing the claim's finalizer did.
enum FinalizerRemoval {
    /// This call removed it: the claim is terminated now.
    Removed,
    /// The claim was already gone: an earlier pass terminated it.
    AlreadyGone,
    /// The copy was stale (the claim changed since): look again.
    Stale,
}

async fn taint_disrupted(ctx: &Context, node: &Node) -> Result<()> {
    crate::disruption::command::set_disrupted_taint(ctx, node, true).await
}

/// Evicts the next tier; `Some(wait)` while pods remain.
async fn drain(ctx: &Context, claim: &NodeClaim, node: &Node) -> Result<Option<Duration>> {
    let now = ctx.clock.now();
    let node_name = node.name_any();
    let pods: Vec<Arc<LeanPod>> = ctx
        .state()
        .pods_on_node(&node_name)
        .into_iter()
        .filter(|p| !p.is_terminal() && !p.static_pod && !p.tolerates_disrupted)
        .collect();
    // Pods already terminating: wait for them unless stuck.
    let (terminating, live): (Vec<_>, Vec<_>) = pods
        .into_iter()
        .partition(|p| p.deletion_timestamp.is_some());
    let waiting_on_terminating = terminating.iter().any(|p| {
        p.deletion_timestamp.is_some_and(|t| {
            now.duration_since(t)
                < jiff::SignedDuration::try_from(STUCK_TERMINATING).unwrap_or_default()
        })
    });
    let interrupted_at = interruption_deadline(claim);
    let past_interruption = interrupted_at.is_some_and(|d| now >= d);
    if live.is_empty() {
        return Ok((waiting_on_terminating && !past_interruption).then_some(DRAIN_POLL));
    }
    let grace_deadline = claim.spec.termination_grace_period.and_then(|tgp| {
        let start = claim.metadata.deletion_timestamp.as_ref()?.0;
        Some(start + jiff::SignedDuration::try_from(tgp.0).ok()?)
    });
    let deadline = match (grace_deadline, interrupted_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let first_tier = live.iter().map(|p| p.tier).min().unwrap_or(0);
    let batch: Vec<Arc<LeanPod>> = live.into_iter().filter(|p| p.tier == first_tier).collect();
    let results: Vec<EvictOutcome> = futures::stream::iter(batch)
        .map(|pod| async move {
            let outcome = evict_or_delete(ctx, &pod, deadline, now).await;
            if let (EvictOutcome::Done, Some(at)) = (&outcome, interrupted_at)
                && deadline.is_some_and(|d| forced(&pod, d, now))
            {
                ctx.recorder
                    .publish(
                        &pod.object(),
                        EventType::Warning,
                        "InterruptionCutShort",
                        &format!(
                            "Deleted instead of evicted, with at most {}s of its {}s grace period: its node's instance is taken away at {at}, so PodDisruptionBudgets and the full grace period could not be honoured",
                            at.duration_since(now).as_secs().max(1),
                            pod.grace_seconds
                        ),
                    )
                    .await;
            }
            outcome
        })
        .buffer_unordered(EVICTION_CONCURRENCY)
        .collect()
        .await;
    let mut blocked = None;
    for r in results {
        match r {
            EvictOutcome::Done => {}
            EvictOutcome::Blocked(msg) => blocked = Some(msg),
            EvictOutcome::Failed(err) => return Err(err),
        }
    }
    if let Some(msg) = blocked {
        ctx.recorder
            .publish(
                node,
                EventType::Warning,
                "FailedDraining",
                &format!("eviction blocked: {msg}"),
            )
            .await;
        return Ok(Some(ctx.settings.eviction_retry));
    }
    Ok(Some(DRAIN_POLL))
}

/// The instance end of an interrupted claim (its `stowage.dev/interruption-deadline`).
pub fn interruption_deadline(claim: &NodeClaim) -> Option<jiff::Timestamp> {
    claim
        .annotations()
        .get(labels::INTERRUPTION_DEADLINE)
        .and_then(|t| t.parse().ok())
}

/// `spec.terminationGracePeriodSeconds`, 30 when unset, at least 0.
pub fn pod_grace(pod: &Pod) -> i64 {
    pod_grace_of(&PodView::of(pod))
}

/// [`pod_grace`] of what Stowage reads of a pod.
pub fn pod_grace_of<C>(pod: &PodView<'_, C>) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0)
}

/// Whether the drain deletes `pod` rather than evicting it at `now` (see [`evict_or_delete`]).
fn forced(pod: &LeanPod, deadline: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    now >= deadline - jiff::SignedDuration::from_secs(pod.grace_seconds)
}

enum EvictOutcome {
    Done,
    Blocked(String),
    Failed(Error),
}

async fn evict_or_delete(
    ctx: &Context,
    pod: &LeanPod,
    deadline: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> EvictOutcome {
    let name = pod.name();
    let key = pod.key();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), pod.namespace());
    let grace = pod.grace_seconds;
    if let Some(deadline) = deadline
        && forced(pod, deadline, now)
    {
        // The drain budget is spent: delete, with the grace clamped to what is left.
        let left = deadline.duration_since(now).as_secs().max(1);
        let dp = DeleteParams {
            grace_period_seconds: Some(left.min(grace.max(1)) as u32),
            ..Default::default()
        };
        ctx.metrics.eviction("deleted_after_grace_period");
        return match api.delete(name, &dp).await {
            Ok(_) => EvictOutcome::Done,
            Err(e) if is_not_found(&e) => EvictOutcome::Done,
            Err(e) => EvictOutcome::Failed(Error::kube("delete pod", key)(e)),
        };
    }
    match api.evict(name, &EvictParams::default()).await {
        Ok(_) => {
            ctx.metrics.eviction("evicted");
            EvictOutcome::Done
        }
        Err(kube::Error::Api(s)) if s.code == 429 => {
            ctx.metrics.eviction("blocked");
            EvictOutcome::Blocked(format!("{key}: {}", s.message))
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => EvictOutcome::Done,
        Err(e) => {
            ctx.metrics.eviction("error");
            EvictOutcome::Failed(Error::kube("evict pod", key)(e))
        }
    }
}

async fn remove_node_finalizer_and_delete(ctx: &Context, node: &Node) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node_name = node.name_any();
    let current = match nodes.get_opt(&node_name).await {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(()),
        Err(e) => return Err(Error::kube("get node", &node_name)(e)),
    };
    if current
        .finalizers()
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        let finalizers: Vec<&String> = current
            .finalizers()
            .iter()
            .filter(|f| *f != labels::TERMINATION_FINALIZER)
            .collect();
        match nodes
            .patch(
                &node_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(Error::kube("remove node finalizer", &node_name)(e)),
        }
    }
    if current.metadata.deletion_timestamp.is_none() {
        match nodes.delete(&node_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube("delete node", &node_name)(e)),
        }
    }
    Ok(())
}

/// Removes the termination finalizer from `claim`, on the condition that the claim is still the
/// version this pass read (`resourceVersion` precondition): a pass working from a stale copy gets
/// a conflict or a 404 instead of finishing the claim a second time.
async fn remove_claim_finalizer(ctx: &Context, claim: &NodeClaim) -> Result<FinalizerRemoval> {
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let name = claim.name_any();
    let finalizers: Vec<&String> = claim
        .finalizers()
        .iter()
        .filter(|f| *f != labels::TERMINATION_FINALIZER)
        .collect();
    let mut metadata = json!({ "finalizers": finalizers });
    if let Some(rv) = claim.resource_version() {
        metadata["resourceVersion"] = json!(rv);
    }
    match api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": metadata })),
        )
        .await
    {
        Ok(_) => Ok(FinalizerRemoval::Removed),
        Err(e) if is_not_found(&e) => Ok(FinalizerRemoval::AlreadyGone),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(FinalizerRemoval::Stale),
        Err(e) => Err(Error::kube("remove nodeclaim finalizer", &name)(e)),
    }
}

/// Removes the termination finalizer from Nodes whose NodeClaim is gone (nothing else will).
pub async fn release_orphan_nodes(ctx: &Context) -> Result<()> {
    let orphans: Vec<Arc<Node>> = {
        let state = ctx.state();
        state
            .nodes()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .filter(|n| {
                n.finalizers()
                    .iter()
                    .any(|f| f == labels::TERMINATION_FINALIZER)
            })
            .filter(|n| state.claim_for_node(n).is_none())
            .filter(|n| {
                n.labels()
                    .get(labels::NODECLAIM)
                    .is_none_or(|c| state.claim(c).is_none())
            })
            .cloned()
            .collect()
    };
    for node in orphans {
        remove_node_finalizer_and_delete(ctx, &node).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn eviction_tiers_put_critical_and_daemonset_pods_last() {
        let plain = bound(pending_pod("default", "a", "1"), "n");
        let ds = owned_by(plain.clone(), "DaemonSet");
        let mut critical = plain.clone();
        critical.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
        let critical_ds = owned_by(critical.clone(), "DaemonSet");
        assert_eq!(
            [tier(&plain), tier(&ds), tier(&critical), tier(&critical_ds)],
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn pods_tolerating_the_disrupted_taint_are_not_drained() {
        let mut p = bound(pending_pod("default", "a", "1"), "n");
        assert!(!tolerates_disrupted(&p));
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert!(tolerates_disrupted(&p));
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("other".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert!(!tolerates_disrupted(&p));
    }
}
