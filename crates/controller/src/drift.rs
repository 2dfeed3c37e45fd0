//! Drift detection, a leader-only loop: it sets the NodeClaim condition `Drifted` to `True`
//! with a reason when a node no longer matches what its NodePool and node class would launch
//! today, and removes the condition when that is no longer so. Replacing drifted nodes (under
//! the disruption budgets) is the disruption controller's; this module only judges.
//!
//! A claim is judged once it is `Initialized` and not being deleted, in this order (the first
//! finding wins):
//!
//! 1. `NodePoolDrifted`: the hash of the NodePool's template ([`NodePool::template_stamp`]:
//!    labels, annotations, taints, startup taints, `expireAfter`, `terminationGracePeriod`,
//!    `nodeClassRef`) differs from the one stamped on the claim at launch
//!    ([`crate::provisioning::claim_for`]).
//! 2. `RequirementsDrifted`: a label of the claim no longer satisfies the pool's requirement on
//!    that key (requirements are compared semantically, never hashed: widening a requirement
//!    drifts nothing, narrowing it drifts only the nodes outside it).
//! 3. What the cloud provider says ([`CloudProvider::is_drifted`]): for AWS `NodeClassDrift`
//!    (the class's static hash differs from the stamp written at launch), `AMIDrift`,
//!    `SubnetDrift`, `SecurityGroupDrift`, `InstanceTypeNotFound`.
//!
//! Fields that govern the pool rather than its nodes (`disruption`, `limits`, `weight`,
//! `capacityMix`, `spotBlastRadius`) are in no hash and drift nothing.
//!
//! A claim without a stamp, or with one of an older hash version (launched before stamps
//! existed, or by a release that hashed other fields), is not judged by it: the current stamp is
//! written on it instead (a backfill), so an upgrade never drifts a whole fleet at once.
//!
//! Every write carries the claim's `resourceVersion`: a claim that changed meanwhile is left for
//! the next pass rather than overwritten from a stale copy. Passes run every `drift_interval`,
//! and sooner (within [`WATCH_PERIOD`]) when a NodePool's spec or a node class changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stowage_api::conditions::{DRIFTED, INITIALIZED};
use stowage_api::{Condition, ConditionStatus, NodeClaim, NodePool, StampCheck};
use stowage_cloud::Error as CloudError;

use crate::context::Context;
use crate::error::{Chain, Error, Result};
use crate::events::EventType;

/// The reason of a claim whose NodePool template changed since launch.
pub const NODEPOOL_DRIFTED: &str = "NodePoolDrifted";
/// The reason of a claim whose labels no longer satisfy its NodePool's requirements.
pub const REQUIREMENTS_DRIFTED: &str = "RequirementsDrifted";

/// How often the loop looks for changed NodePools and node classes between full passes.
pub const WATCH_PERIOD: Duration = Duration::from_secs(10);

/// Claims judged at once in a pass (their cloud lookups batch into one provider call).
pub const CHECK_CONCURRENCY: usize = 256;

/// Why a claim drifted: the condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub reason: String,
    pub message: String,
}

impl Drift {
    fn new(reason: &str, message: String) -> Self {
        Self {
            reason: reason.to_string(),
            message,
        }
    }
}

/// What the claim's NodePool says, without the cloud: a changed template (by the stamp) or a
/// label outside the pool's requirements. A pool whose requirements do not compile (refused by
/// validation) drifts nothing.
pub fn pool_drift(claim: &NodeClaim, pool: &NodePool) -> Option<Drift> {
    let annotations = claim.annotations();
    let stamp = pool.template_stamp();
    if stamp.check(annotations) == StampCheck::Differs {
        return Some(Drift::new(
            NODEPOOL_DRIFTED,
            format!(
                "the template of NodePool {} changed since the node was launched",
                pool.name_any()
            ),
        ));
    }
    let requirements = pool.requirements().ok()?;
    requirements.iter().find_map(|(key, allowed)| {
        let value = claim.label(key)?;
        (!allowed.matches(Some(value))).then(|| {
            Drift::new(
                REQUIREMENTS_DRIFTED,
                format!(
                    "label {key}={value} no longer satisfies NodePool {}'s requirement {key} {allowed}",
                    pool.name_any()
                ),
            )
        })
    })
}

/// The stamps to write on a claim that lacks them (or has them in another hash version): the
/// NodePool template's and, if the provider has one, the node class's.
pub fn backfill(
    claim: &NodeClaim,
    pool: &NodePool,
    class_stamp: Option<&stowage_api::HashStamp>,
) -> BTreeMap<String, String> {
    let annotations = claim.annotations();
    let mut out = BTreeMap::new();
    for stamp in std::iter::once(pool.template_stamp()).chain(class_stamp.cloned()) {
        if stamp.check(annotations) == StampCheck::Backfill {
            out.extend(stamp.annotations());
        }
    }
    out
}

/// What one pass did, for logs, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassResult {
    /// Claims judged.
    pub checked: usize,
    /// Claims whose stamps were written.
    pub backfilled: usize,
    /// Claims that became drifted in this pass.
    pub drifted: usize,
    /// Claims whose `Drifted` condition was removed.
    pub cleared: usize,
    /// Drifted claims after the pass, by (nodepool, reason).
    pub by_reason: BTreeMap<(String, String), i64>,
}

/// One drift pass over every initialized claim (see the module docs). Errors of one claim are
/// logged and leave it as it was; the pass goes on. Claims are judged [`CHECK_CONCURRENCY`] at a
/// time, so the provider's per-instance lookups of a pass arrive together and batch (the AWS
/// provider's DescribeInstances takes up to 500 ids per call) instead of one call per claim.
pub async fn detect(ctx: &Context) -> PassResult {
    let claims: Vec<Arc<NodeClaim>> = ctx
        .state()
        .claims()
        .filter(|c| c.metadata.deletion_timestamp.is_none() && c.is_true(INITIALIZED))
        .cloned()
        .collect();
    let mut result = PassResult::default();
    let outcomes: Vec<(Arc<NodeClaim>, Result<Outcome>)> = futures::stream::iter(claims)
        .map(|claim| async move {
            let outcome = check(ctx, &claim).await;
            (claim, outcome)
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect()
        .await;
    for (claim, outcome) in outcomes {
        let pool_name = claim.nodepool_name().unwrap_or_default().to_string();
        let outcome = match outcome {
            Ok(o) => o,
            Err(err) => {
                tracing::warn!(claim = %claim.name_any(), err = %Chain(&err), "drift check failed");
                Outcome::unchanged(&claim)
            }
        };
        result.checked += 1;
        result.backfilled += usize::from(outcome.backfilled);
        match outcome.transition {
            Transition::Drifted => result.drifted += 1,
            Transition::Cleared => result.cleared += 1,
            Transition::None => {}
        }
        if let Some(reason) = outcome.reason {
            *result.by_reason.entry((pool_name, reason)).or_default() += 1;
        }
    }
    ctx.metrics.set_drifted(&result.by_reason);
    result
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transition {
    None,
    Drifted,
    Cleared,
}

/// What became of one claim: whether it was stamped, its drift reason afterwards and whether
/// its condition changed.
struct Outcome {
    backfilled: bool,
    reason: Option<String>,
    transition: Transition,
}

impl Outcome {
    /// The claim as it stands (its current `Drifted` condition).
    fn unchanged(claim: &NodeClaim) -> Self {
        Self {
            backfilled: false,
            reason: claim
                .condition(DRIFTED)
                .filter(|c| c.is_true())
                .map(|c| c.reason.clone()),
            transition: Transition::None,
        }
    }
}

async fn check(ctx: &Context, claim: &NodeClaim) -> Result<Outcome> {
    let name = claim.name_any();
    let pool = claim
        .nodepool_name()
        .and_then(|p| ctx.state().nodepool(p))
        .filter(|p| p.metadata.deletion_timestamp.is_none());
    // A claim whose pool is gone or going is the pool's deletion to handle.
    let Some(pool) = pool else {
        return Ok(Outcome::unchanged(claim));
    };
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let class_stamp = ctx.cloud.node_class_stamp(&claim.spec.node_class_ref.name);
    let stamps = backfill(claim, &pool, class_stamp.as_ref());
    let mut resource_version = claim.resource_version();
    let backfilled = !stamps.is_empty();
    if backfilled {
        let patched = match api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {
                    "resourceVersion": resource_version,
                    "annotations": stamps,
                }})),
            )
            .await
        {
            Ok(p) => p,
            Err(e) if is_conflict(&e) => return Ok(Outcome::unchanged(claim)),
            Err(e) => return Err(Error::kube("stamp nodeclaim", &name)(e)),
        };
        tracing::info!(claim = %name, stamps = ?stamps.keys().collect::<Vec<_>>(), "stamped nodeclaim launched before drift hashes");
        resource_version = patched.resource_version();
    }
    // A just-written stamp is current by construction: judge the rest against it.
    let mut judged = claim.clone();
    judged
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(stamps);
    let drift = match pool_drift(&judged, &pool) {
        Some(d) => Some(d),
        None => match ctx.cloud.is_drifted(&judged).await {
            Ok(reason) => reason.map(|r| {
                let message = cloud_message(&r, &judged);
                Drift::new(r.as_str(), message)
            }),
            // The instance is gone (garbage collection's) or the class not resolved yet (after
            // a restart): judge again next pass.
            Err(CloudError::NotFound(_) | CloudError::NodeClassNotResolved { .. }) => {
                let mut o = Outcome::unchanged(claim);
                o.backfilled = backfilled;
                return Ok(o);
            }
            Err(e) => return Err(Error::cloud(&name)(e)),
        },
    };
    let was = claim.condition(DRIFTED).filter(|c| c.is_true()).cloned();
    let mut status = claim.status.clone().unwrap_or_default();
    let changed = match &drift {
        Some(d) => status.set_condition(
            Condition::new(DRIFTED, ConditionStatus::True, &d.reason, &d.message),
            ctx.clock.now(),
        ),
        None => status.clear_condition(DRIFTED),
    };
    let reason = drift.as_ref().map(|d| d.reason.clone());
    if !changed {
        return Ok(Outcome {
            backfilled,
            reason,
            transition: Transition::None,
        });
    }
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"resourceVersion": resource_version},
                "status": {"conditions": status.conditions},
            })),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {
            let mut o = Outcome::unchanged(claim);
            o.backfilled = backfilled;
            return Ok(o);
        }
        Err(e) => return Err(Error::kube("update nodeclaim drift condition", &name)(e)),
    }
    let transition = match (&was, &drift) {
        (None, Some(d)) => {
            tracing::info!(claim = %name, reason = %d.reason, message = %d.message, "nodeclaim drifted");
            ctx.recorder
                .publish(claim, EventType::Normal, "Drifted", &d.message)
                .await;
            Transition::Drifted
        }
        (Some(_), None) => {
            tracing::info!(claim = %name, "nodeclaim no longer drifted");
            Transition::Cleared
        }
        _ => Transition::None,
    };
    Ok(Outcome {
        backfilled,
        reason,
        transition,
    })
}

fn cloud_message(reason: &stowage_cloud::DriftReason, claim: &NodeClaim) -> String {
    use stowage_cloud::DriftReason as R;
    let class = &claim.spec.node_class_ref.name;
    match reason {
        R::AmiDrift => format!("node class {class} no longer selects the node's image"),
        R::SubnetDrift => format!("node class {class} no longer selects the node's subnet"),
        R::SecurityGroupDrift => {
            format!("node class {class} selects other security groups than the node has")
        }
        R::NodeClassDrift => {
            format!("node class {class} changed since the node was launched")
        }
        R::InstanceTypeNotFound => format!(
            "instance type {} is no longer offered",
            claim
                .label(stowage_api::labels::INSTANCE_TYPE)
                .unwrap_or("unknown")
        ),
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

/// A cheap fingerprint of what drift depends on besides the claims: each NodePool's spec
/// generation, each node class's resourceVersion (its status changes when its selectors
/// resolve differently) and the provider's stamp of it.
fn inputs_fingerprint(ctx: &Context) -> Vec<(String, String)> {
    let state = ctx.state();
    let pools = state.nodepools().map(|p| {
        (
            format!("nodepool/{}", p.name_any()),
            p.metadata.generation.unwrap_or_default().to_string(),
        )
    });
    // The provider's stamp too: it changes when the class is resolved again, which may be after
    // the object changed and without a status write.
    let classes = state.nodeclasses().map(|c| {
        let stamp = ctx
            .cloud
            .node_class_stamp(&c.name_any())
            .map(|s| s.hash)
            .unwrap_or_default();
        (
            format!("nodeclass/{}", c.name_any()),
            format!("{}/{stamp}", c.resource_version().unwrap_or_default()),
        )
    });
    pools.chain(classes).collect()
}

/// The drift loop (leader-only): a pass every `drift_interval`, and one within
/// [`WATCH_PERIOD`] of a NodePool or node class change.
pub async fn run(ctx: Arc<Context>) {
    let mut synced = ctx.subscribe_synced();
    while !*synced.borrow_and_update() {
        if synced.changed().await.is_err() {
            return;
        }
    }
    let mut last_inputs: Option<Vec<(String, String)>> = None;
    let mut last_pass: Option<tokio::time::Instant> = None;
    loop {
        if ctx.is_leader() && ctx.state().is_synced() {
            let inputs = inputs_fingerprint(&ctx);
            let due = last_pass.is_none_or(|t| t.elapsed() >= ctx.settings.drift_interval);
            if due || last_inputs.as_ref() != Some(&inputs) {
                let result = detect(&ctx).await;
                if result.drifted + result.cleared + result.backfilled > 0 {
                    tracing::info!(
                        checked = result.checked,
                        drifted = result.drifted,
                        cleared = result.cleared,
                        backfilled = result.backfilled,
                        "drift pass"
                    );
                }
                last_inputs = Some(inputs);
                last_pass = Some(tokio::time::Instant::now());
            }
        } else {
            // A new leader judges at once.
            last_pass = None;
        }
        tokio::time::sleep(WATCH_PERIOD.min(ctx.settings.drift_interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use stowage_api::requirements::Requirement;
    use stowage_api::{NodePoolSpec, labels};

    use super::*;
    use crate::fixtures::claim;

    fn pool(edit: impl FnOnce(&mut NodePoolSpec)) -> NodePool {
        let mut spec = NodePoolSpec::default();
        spec.template
            .metadata
            .labels
            .insert("team".into(), "web".into());
        spec.template.spec.requirements = vec![Requirement::in_(
            labels::CAPACITY_TYPE,
            ["spot", "on-demand"],
        )];
        edit(&mut spec);
        NodePool::new("general", spec)
    }

    /// A claim of `pool` as provisioning makes it, launched on-demand.
    fn launched_from(pool: &NodePool) -> NodeClaim {
        let mut c = claim("general-a", "general");
        let labels = c.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(pool.spec.template.metadata.labels.clone());
        labels.insert(labels::CAPACITY_TYPE.into(), "on-demand".into());
        labels.insert(labels::ZONE.into(), "zone-a".into());
        pool.template_stamp()
            .apply(c.metadata.annotations.get_or_insert_with(BTreeMap::new));
        c
    }

    #[test]
    fn an_unchanged_pool_drifts_nothing() {
        let p = pool(|_| {});
        assert_eq!(pool_drift(&launched_from(&p), &p), None);
    }

    #[test]
    fn a_changed_template_drifts_by_the_stamp() {
        let p = pool(|_| {});
        let c = launched_from(&p);
        for changed in [
            pool(|s| {
                s.template
                    .metadata
                    .labels
                    .insert("tier".into(), "gold".into());
            }),
            pool(|s| {
                s.template
                    .spec
                    .taints
                    .push(crate::fixtures::taint("gpu", "NoSchedule"))
            }),
            pool(|s| {
                s.template
                    .spec
                    .startup_taints
                    .push(crate::fixtures::taint("cni", "NoExecute"))
            }),
            pool(|s| s.template.spec.node_class_ref.name = "other".into()),
        ] {
            let d = pool_drift(&c, &changed).unwrap();
            assert_eq!(d.reason, NODEPOOL_DRIFTED, "{:?}", changed.spec.template);
            assert!(d.message.contains("NodePool general"), "{}", d.message);
        }
    }

    #[test]
    fn behavioural_fields_never_drift_nodes() {
        let p = pool(|_| {});
        let c = launched_from(&p);
        for same in [
            pool(|s| s.weight = Some(90)),
            pool(|s| {
                s.limits.insert(
                    "cpu".into(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("10".into()),
                );
            }),
            pool(|s| s.disruption.budgets = vec![stowage_api::Budget::nodes("0")]),
            pool(|s| s.disruption.consolidate_after = stowage_api::NillableDuration::NEVER),
            pool(|s| {
                s.capacity_mix = Some(stowage_api::CapacityMix {
                    on_demand_percent_above_base: 0,
                    ..Default::default()
                })
            }),
            pool(|s| {
                s.spot_blast_radius = Some(stowage_api::SpotBlastRadius {
                    max_pods_per_workload: 2,
                })
            }),
        ] {
            assert_eq!(pool_drift(&c, &same), None, "{:?}", same.spec);
        }
    }

    #[test]
    fn requirements_are_compared_with_the_labels_not_hashed() {
        let p = pool(|_| {});
        let c = launched_from(&p);
        // Narrowed to spot: the on-demand node is outside it.
        let spot_only = pool(|s| {
            s.template.spec.requirements = vec![Requirement::in_(labels::CAPACITY_TYPE, ["spot"])];
        });
        let d = pool_drift(&c, &spot_only).unwrap();
        assert_eq!(d.reason, REQUIREMENTS_DRIFTED);
        assert!(
            d.message.contains("stowage.dev/capacity-type=on-demand"),
            "{}",
            d.message
        );
        // Widened, reordered, or on a key the node has no label for: nothing drifts.
        for same in [
            pool(|s| {
                s.template.spec.requirements = vec![Requirement::in_(
                    labels::CAPACITY_TYPE,
                    ["on-demand", "spot", "reserved"],
                )];
            }),
            pool(|s| {
                s.template
                    .spec
                    .requirements
                    .push(Requirement::exists("example.com/rack"));
            }),
            pool(|s| {
                s.template
                    .spec
                    .requirements
                    .push(Requirement::not_in(labels::ZONE, ["zone-b"]));
            }),
        ] {
            assert_eq!(pool_drift(&c, &same), None, "{:?}", same.spec.template);
        }
        let moved = pool(|s| {
            s.template
                .spec
                .requirements
                .push(Requirement::not_in(labels::ZONE, ["zone-a"]));
        });
        assert_eq!(
            pool_drift(&c, &moved).map(|d| d.reason),
            Some(REQUIREMENTS_DRIFTED.to_string())
        );
    }

    #[test]
    fn claims_without_stamps_are_backfilled_not_drifted() {
        let p = pool(|_| {});
        let mut old = launched_from(&p);
        old.metadata.annotations = None;
        let changed = pool(|s| {
            s.template
                .metadata
                .annotations
                .insert("a".into(), "b".into());
        });
        assert_eq!(pool_drift(&old, &changed), None, "no stamp: no drift");
        let class = stowage_api::HashStamp {
            key: labels::EC2NODECLASS_HASH,
            version_key: labels::EC2NODECLASS_HASH_VERSION,
            hash: "c1".into(),
            version: "v1",
        };
        let stamps = backfill(&old, &changed, Some(&class));
        assert_eq!(
            stamps.get(labels::NODEPOOL_HASH),
            Some(&changed.template_hash())
        );
        assert_eq!(
            stamps.get(labels::EC2NODECLASS_HASH).map(String::as_str),
            Some("c1")
        );
        assert_eq!(stamps.len(), 4, "{stamps:?}");
        // Stamped claims get nothing; an older hash version is re-stamped.
        let current = launched_from(&p);
        assert!(backfill(&current, &p, None).is_empty());
        let mut older = current.clone();
        older
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(labels::NODEPOOL_HASH_VERSION.into(), "v0".into());
        assert_eq!(backfill(&older, &p, None).len(), 2);
    }
}
