//! Garbage collection: instances of this cluster without a NodeClaim for longer than
//! `gc_grace` are terminated; launched NodeClaims whose instance is gone are deleted; Nodes left
//! with the termination finalizer and no claim are released. While a NodeClaim exists that does
//! not decode (absent from the state, so its instance and Node would look orphaned) no pass runs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use stowage_api::NodeClaim;
use stowage_api::conditions::LAUNCHED;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::state::Kind;

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
        {
            let state = ctx.state();
            if !state.is_synced() {
                return Ok(result);
            }
            if let Some(claim) = state.undecodable(Kind::NodeClaim).next() {
                tracing::debug!(
                    claim,
                    "garbage collection waits: a nodeclaim does not decode"
                );
                return Ok(result);
            }
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
