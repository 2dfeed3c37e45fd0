//! `stowage.dev/v1` NodePool: a template for nodes plus the limits, disruption rules and
//! capacity mix that govern them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::{Condition, impl_condition_helpers};
use crate::cron::{CronError, CronSchedule};
use crate::duration::{Duration, NillableDuration};
use crate::labels;
use crate::nodeclaim::{DEFAULT_EXPIRE_AFTER, NodeClassRef, default_expire_after};
use crate::requirements::{Requirement, RequirementError, Requirements, ValueSet};
use crate::stamp::{HashStamp, fnv1a_hex};

/// The version of [`NodePool::template_hash`]: bumped whenever the hashed fields or their
/// encoding change, so claims stamped by an older release are re-stamped instead of drifted.
pub const TEMPLATE_HASH_VERSION: &str = "v1";

/// Labels and annotations every node of the pool gets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The NodeClaim spec a pool stamps out (without resources: those come from the pods).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    /// Requirements every node satisfies (instance types, zones, capacity types, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<Requirement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present at boot that a daemon removes; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Nodes are replaced this long after creation (`Never` disables expiry). Default 720h.
    #[serde(default = "default_expire_after")]
    pub expire_after: NillableDuration,
    /// The longest a drain may take before pods are deleted regardless of PDBs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<Duration>,
    pub node_class_ref: NodeClassRef,
}

impl Default for NodeClaimTemplateSpec {
    fn default() -> Self {
        NodeClaimTemplateSpec {
            requirements: Vec::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            expire_after: DEFAULT_EXPIRE_AFTER,
            termination_grace_period: None,
            node_class_ref: NodeClassRef::default(),
        }
    }
}

/// `spec.template`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplate {
    #[serde(default)]
    pub metadata: TemplateMetadata,
    pub spec: NodeClaimTemplateSpec,
}

/// Which nodes consolidation may remove or replace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsolidationPolicy {
    /// Only nodes without (non-daemon) pods.
    WhenEmpty,
    /// Empty nodes and nodes whose pods fit elsewhere or on a cheaper replacement.
    #[default]
    WhenEmptyOrUnderutilized,
}

/// Why a node is voluntarily disrupted (what a budget may be limited to).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum DisruptionReason {
    Underutilized,
    Empty,
    Drifted,
}

impl DisruptionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisruptionReason::Underutilized => "Underutilized",
            DisruptionReason::Empty => "Empty",
            DisruptionReason::Drifted => "Drifted",
        }
    }
}

/// The pattern of `budgets[].nodes`: a percentage `0%..100%` or a node count.
pub const BUDGET_NODES_PATTERN: &str = "^((100|[0-9]{1,2})%|[0-9]+)$";
/// The pattern of `budgets[].schedule`: a macro or five cron fields.
pub const BUDGET_SCHEDULE_PATTERN: &str = "^(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((.+)\\s(.+)\\s(.+)\\s(.+)\\s(.+))$";

fn default_budget_nodes() -> String {
    "10%".to_string()
}

/// How many nodes may be disrupted at once (optionally only during a schedule, for some reasons).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// `"10%"` of the pool's nodes (rounded up) or a count such as `"5"`. Default `10%`.
    #[serde(default = "default_budget_nodes")]
    pub nodes: String,
    /// When the budget starts being active: cron (UTC, 5 fields) or `@hourly`, `@daily`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long the budget stays active after each `schedule` start (`1h`, `1h30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// The disruption reasons the budget applies to (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<DisruptionReason>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: default_budget_nodes(),
            schedule: None,
            duration: None,
            reasons: Vec::new(),
        }
    }
}

/// The error for a budget `nodes` value that is neither `N%` nor `N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid budget nodes {0:?}: expected a percentage like \"10%\" or a count like \"5\"")]
pub struct ParseBudgetNodesError(pub String);

impl Budget {
    /// A budget allowing `nodes` (e.g. `"10%"` or `"3"`) at all times for all reasons.
    pub fn nodes(nodes: &str) -> Self {
        Budget {
            nodes: nodes.to_string(),
            ..Budget::default()
        }
    }

    /// Whether the budget applies to disruptions for `reason`.
    pub fn applies_to(&self, reason: DisruptionReason) -> bool {
        self.reasons.is_empty() || self.reasons.contains(&reason)
    }

    /// How many of `total` nodes this budget allows to be disrupted at once (percentages round
    /// up, like Karpenter). Schedules are not considered here.
    pub fn allowed_disruptions(&self, total: u32) -> Result<u32, ParseBudgetNodesError> {
        let err = || ParseBudgetNodesError(self.nodes.clone());
        if let Some(percent) = self.nodes.strip_suffix('%') {
            if percent.is_empty()
                || percent.len() > 3
                || !percent.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(err());
            }
            let p: u64 = percent.parse().map_err(|_| err())?;
            if p > 100 {
                return Err(err());
            }
            let allowed = (u64::from(total) * p).div_ceil(100);
            Ok(u32::try_from(allowed).unwrap_or(u32::MAX))
        } else {
            if self.nodes.is_empty() || !self.nodes.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            self.nodes.parse().map_err(|_| err())
        }
    }
}

/// Why a budget cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error(transparent)]
    ParseNodes(#[from] ParseBudgetNodesError),
    #[error(transparent)]
    ParseSchedule(#[from] CronError),
    #[error("a budget with schedule {0:?} needs a duration")]
    MissingDuration(String),
}

impl Budget {
    /// Whether the budget is in force at `now`: always without a schedule, else when the
    /// schedule (UTC) fired within the last `duration`.
    pub fn is_active(&self, now: jiff::Timestamp) -> Result<bool, BudgetError> {
        let Some(schedule) = &self.schedule else {
            return Ok(true);
        };
        let duration = self
            .duration
            .ok_or_else(|| BudgetError::MissingDuration(schedule.clone()))?;
        Ok(CronSchedule::parse(schedule)?.fired_within(now, duration.as_std()))
    }
}

impl Disruption {
    /// How many of the pool's `total` nodes may be disrupted at once for `reason` at `now`: the
    /// smallest allowance among active budgets that apply to the reason (`total` when none
    /// does). A budget that cannot be evaluated allows nothing (fail closed).
    pub fn allowed_disruptions(
        &self,
        reason: DisruptionReason,
        total: u32,
        now: jiff::Timestamp,
    ) -> u32 {
        self.budgets
            .iter()
            .filter(|b| b.applies_to(reason))
            .map(|b| match b.is_active(now) {
                Ok(true) => b.allowed_disruptions(total).unwrap_or(0),
                Ok(false) => total,
                Err(_) => 0,
            })
            .min()
            .unwrap_or(total)
            .min(total)
    }
}

fn default_consolidate_after() -> NillableDuration {
    NillableDuration::ZERO
}

fn default_budgets() -> Vec<Budget> {
    vec![Budget::default()]
}

/// `spec.disruption`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Default `WhenEmptyOrUnderutilized`.
    #[serde(default)]
    pub consolidation_policy: ConsolidationPolicy,
    /// How long a node must go without pod changes before consolidation considers it (`Never`
    /// disables consolidation). Default `0s`.
    #[serde(default = "default_consolidate_after")]
    pub consolidate_after: NillableDuration,
    /// Limits on concurrent voluntary disruption. Default `[{nodes: 10%}]`.
    #[serde(default = "default_budgets")]
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    fn default() -> Self {
        Disruption {
            consolidation_policy: ConsolidationPolicy::default(),
            consolidate_after: default_consolidate_after(),
            budgets: default_budgets(),
        }
    }
}

fn default_on_demand_percent_above_base() -> i32 {
    100
}

/// The allowed values of `capacityMix.onDemandPercentAboveBase`: the CRD schema, validation and
/// [`CapacityMix::on_demand_percent`] all read this one range.
pub const ON_DEMAND_PERCENT_RANGE: std::ops::RangeInclusive<i32> = 0..=100;

/// Beyond Karpenter: how much on-demand capacity the pool (or a set of pools) may hold relative
/// to spot.
///
/// Without a `scope` the mix governs the pool alone: `onDemandBase` vCPUs may always be
/// on-demand; above it at most `onDemandPercentAboveBase` percent of the pool's vCPUs may be
/// on-demand (100 = no cap), AWS Auto Scaling's meaning of the two fields.
///
/// With a `scope` the mix governs the pools the scope selects (this pool always included), as
/// one fleet: their on-demand vCPUs together may not pass `onDemandBase` plus
/// `onDemandPercentAboveBase` percent of their spot and reserved vCPUs together. "On-demand at
/// most 5 % of the spot tier" is `{onDemandPercentAboveBase: 5, scope: {nodePoolSelector:
/// {matchLabels: {tier: general}}}}` on the on-demand pool, with both tiers labelled
/// `tier: general`. A pool in several scopes (or with its own mix and in another pool's scope)
/// must satisfy every one of them when it adds on-demand capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityMix {
    /// vCPUs always allowed on-demand (a CPU quantity, e.g. `"16"` or `"500m"`). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_base: Option<Quantity>,
    /// Percentage (0..100) of vCPUs above the base that may be on-demand (with a `scope`: a
    /// percentage of the scope's spot and reserved vCPUs). Default 100.
    #[serde(default = "default_on_demand_percent_above_base")]
    pub on_demand_percent_above_base: i32,
    /// How long on-demand capacity bought as a fallback stays before consolidation tries spot
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_spot_after: Option<Duration>,
    /// Count the mix against a set of pools (this one always included): their on-demand vCPUs
    /// together may not pass `onDemandBase` plus `onDemandPercentAboveBase` percent of their
    /// spot and reserved vCPUs together. Unset: the pool alone, a percentage of its own vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<CapacityMixScope>,
}

/// `capacityMix.scope`: the NodePools whose capacity one capacity mix counts together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityMixScope {
    /// The pools of the scope, selected by their own labels (`metadata.labels`); the pool that
    /// carries the mix is always in its scope. An empty selector selects every pool.
    pub node_pool_selector: NodePoolSelector,
}

/// Selects NodePools by their labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSelector {
    /// Every label listed must be on the NodePool with this value. Empty: every pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

impl NodePoolSelector {
    /// Whether a pool with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// `spec.spotBlastRadius`: how much of one workload a spot node of the pool may hold, so one
/// spot interruption takes down a bounded part of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpotBlastRadius {
    /// At most this many pods of one workload (pods with the same controller owner in one
    /// namespace: a ReplicaSet, StatefulSet, Job, or the driver pod of Spark executors) on one
    /// spot node of the pool. Pods without a controller are not limited; on-demand and reserved
    /// nodes are not limited.
    pub max_pods_per_workload: i32,
}

impl CapacityMix {
    /// `onDemandPercentAboveBase` when it is within [`ON_DEMAND_PERCENT_RANGE`] (always, for a
    /// validated NodePool).
    pub fn on_demand_percent(&self) -> Option<u32> {
        ON_DEMAND_PERCENT_RANGE
            .contains(&self.on_demand_percent_above_base)
            .then(|| self.on_demand_percent_above_base.unsigned_abs())
    }
}

impl Default for CapacityMix {
    fn default() -> Self {
        CapacityMix {
            on_demand_base: None,
            on_demand_percent_above_base: default_on_demand_percent_above_base(),
            restore_spot_after: None,
            scope: None,
        }
    }
}

/// A pool of nodes: the template they are made from and the rules they live by.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1",
    kind = "NodePool",
    plural = "nodepools",
    singular = "nodepool",
    status = "NodePoolStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "stowage",
    doc = "A template for nodes plus the limits, disruption rules and capacity mix that govern them.",
    printcolumn = r#"{"name": "NodeClass", "type": "string", "jsonPath": ".spec.template.spec.nodeClassRef.name"}"#,
    printcolumn = r#"{"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Weight", "type": "integer", "jsonPath": ".spec.weight"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name": "CPU", "type": "string", "jsonPath": ".status.resources.cpu", "priority": 1}"#,
    printcolumn = r#"{"name": "Memory", "type": "string", "jsonPath": ".status.resources.memory", "priority": 1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    pub template: NodeClaimTemplate,
    #[serde(default)]
    pub disruption: Disruption,
    /// Caps on the pool's total resources (`cpu`, `memory`, `nodes`, extended resources).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// Pools with a higher weight (1..100) are tried first; unset counts as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// How much on-demand capacity the pool (or, with a scope, a set of pools) may hold
    /// relative to spot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_mix: Option<CapacityMix>,
    /// How many pods of one workload a spot node of the pool may hold. Unset: no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_blast_radius: Option<SpotBlastRadius>,
}

/// What the pool currently holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Summed capacity of the pool's nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
    /// Number of nodes (NodeClaims) in the pool.
    #[serde(default)]
    pub nodes: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl_condition_helpers!(NodePoolStatus);

impl NodePool {
    /// The weight, 0 when unset.
    pub fn weight(&self) -> i32 {
        self.spec.weight.unwrap_or(0)
    }

    /// The condition of `type_`, if the pool has a status and the condition is set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref().and_then(|s| s.condition(type_))
    }

    /// Whether the condition of `type_` is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(Condition::is_true)
    }

    /// The status, created empty if absent.
    pub fn status_mut(&mut self) -> &mut NodePoolStatus {
        self.status.get_or_insert_with(NodePoolStatus::default)
    }

    /// The capacity mix, defaulted when unset (no on-demand cap).
    pub fn capacity_mix(&self) -> CapacityMix {
        self.spec.capacity_mix.clone().unwrap_or_default()
    }

    /// Everything a node of this pool satisfies: the template's requirements, its labels (each
    /// `In [value]`) and `stowage.dev/nodepool In [name]`.
    pub fn requirements(&self) -> Result<Requirements, RequirementError> {
        let mut out = Requirements::from_requirements(&self.spec.template.spec.requirements)?;
        for (k, v) in &self.spec.template.metadata.labels {
            out.insert(k, ValueSet::in_values([v.as_str()]));
        }
        out.insert(labels::NODEPOOL, ValueSet::in_values([self.name_any()]));
        Ok(out)
    }

    /// A stable hash of the parts of `spec.template` whose change makes existing nodes drift
    /// (labels, annotations, taints, startup taints, expiry, termination grace period, node
    /// class). Requirements are excluded: their drift is judged against each node's labels.
    /// Taint order does not matter. Stored in the `stowage.dev/nodepool-hash` annotation, with
    /// [`TEMPLATE_HASH_VERSION`] beside it.
    ///
    /// `expireAfter` and `terminationGracePeriod` count because a claim is launched with them (its
    /// spec keeps the values it was made with): a changed value reaches existing nodes by
    /// replacing them under the disruption budgets, never by expiring a fleet at once.
    pub fn template_hash(&self) -> String {
        let t = &self.spec.template;
        let mut taints: Vec<_> = t.spec.taints.iter().map(taint_key).collect();
        taints.sort();
        let mut startup: Vec<_> = t.spec.startup_taints.iter().map(taint_key).collect();
        startup.sort();
        let canonical = serde_json::json!({
            "labels": t.metadata.labels,
            "annotations": t.metadata.annotations,
            "taints": taints,
            "startupTaints": startup,
            "expireAfter": t.spec.expire_after.to_string(),
            "terminationGracePeriod": t.spec.termination_grace_period.map(|d| d.to_string()),
            "nodeClassRef": [&t.spec.node_class_ref.group, &t.spec.node_class_ref.kind, &t.spec.node_class_ref.name],
        });
        fnv1a_hex(canonical.to_string().as_bytes())
    }

    /// [`NodePool::template_hash`] as the stamp written on the pool's claims at launch.
    pub fn template_stamp(&self) -> HashStamp {
        HashStamp {
            key: labels::NODEPOOL_HASH,
            version_key: labels::NODEPOOL_HASH_VERSION,
            hash: self.template_hash(),
            version: TEMPLATE_HASH_VERSION,
        }
    }
}

fn taint_key(t: &Taint) -> (String, String, String) {
    (
        t.key.clone(),
        t.value.clone().unwrap_or_default(),
        t.effect.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requirements::Operator;

    #[test]
    fn minimal_manifest_gets_karpenter_defaults() {
        let pool: NodePool = serde_saphyr::from_str(
            r#"
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements:
        - {key: stowage.dev/capacity-type, operator: In, values: [spot], minValues: 1}
"#,
        )
        .unwrap();
        let spec = &pool.spec;
        assert_eq!(
            spec.template.spec.expire_after,
            NillableDuration::from_hours(720)
        );
        assert_eq!(
            spec.disruption.consolidation_policy,
            ConsolidationPolicy::WhenEmptyOrUnderutilized
        );
        assert_eq!(spec.disruption.consolidate_after, NillableDuration::ZERO);
        assert_eq!(spec.disruption.budgets, vec![Budget::nodes("10%")]);
        assert_eq!(spec.template.spec.requirements[0].operator, Operator::In);
        assert_eq!(spec.template.spec.requirements[0].min_values, Some(1));
        assert_eq!(pool.weight(), 0);
        assert_eq!(pool.capacity_mix().on_demand_percent_above_base, 100);
        // The defaults match what `Default` builds, so tests and manifests agree.
        assert_eq!(spec.disruption, Disruption::default());
    }

    #[test]
    fn capacity_mix_and_never_parse() {
        let spec: NodePoolSpec = serde_json::from_value(serde_json::json!({
            "template": {"spec": {"nodeClassRef": {"group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "x"},
                                   "expireAfter": "Never"}},
            "disruption": {"consolidateAfter": "30s", "budgets": [{"nodes": "0", "schedule": "@daily", "duration": "8h", "reasons": ["Drifted"]}]},
            "capacityMix": {"onDemandBase": "16", "onDemandPercentAboveBase": 5, "restoreSpotAfter": "1h"},
            "weight": 10,
        }))
        .unwrap();
        assert!(spec.template.spec.expire_after.is_never());
        let mix = spec.capacity_mix.unwrap();
        assert_eq!(mix.on_demand_percent_above_base, 5);
        assert_eq!(mix.restore_spot_after, Some(Duration::from_hours(1)));
        assert_eq!(
            spec.disruption.budgets[0].duration,
            Some(Duration::from_hours(8))
        );
        assert!(spec.disruption.budgets[0].applies_to(DisruptionReason::Drifted));
        assert!(!spec.disruption.budgets[0].applies_to(DisruptionReason::Empty));
    }

    fn pool_with(f: impl FnOnce(&mut NodePoolSpec)) -> NodePool {
        let mut spec = NodePoolSpec::default();
        f(&mut spec);
        NodePool::new("web", spec)
    }

    #[test]
    fn pool_requirements_include_labels_and_the_pool_name() {
        let pool = pool_with(|s| {
            s.template
                .metadata
                .labels
                .insert("team".into(), "web".into());
            s.template
                .spec
                .requirements
                .push(Requirement::in_(crate::labels::ZONE, ["a", "b"]));
        });
        let reqs = pool.requirements().unwrap();
        assert_eq!(reqs.single_value(crate::labels::NODEPOOL), Some("web"));
        assert_eq!(reqs.single_value("team"), Some("web"));
        assert_eq!(reqs.get(crate::labels::ZONE).unwrap().values(), ["a", "b"]);
    }

    #[test]
    fn template_hash_tracks_drift_relevant_fields_only() {
        let base = pool_with(|_| {});
        let h = base.template_hash();
        assert_eq!(h.len(), 16);
        assert_eq!(h, pool_with(|_| {}).template_hash(), "deterministic");
        let taint = |k: &str| Taint {
            key: k.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let changed = [
            pool_with(|s| {
                s.template
                    .metadata
                    .labels
                    .insert("team".into(), "web".into());
            }),
            pool_with(|s| s.template.spec.taints.push(taint("a"))),
            pool_with(|s| s.template.spec.expire_after = NillableDuration::NEVER),
            pool_with(|s| s.template.spec.node_class_ref.name = "other".into()),
        ];
        for p in &changed {
            assert_ne!(p.template_hash(), h);
        }
        // Requirements, weight and disruption settings do not make nodes drift.
        let same = [
            pool_with(|s| {
                s.template
                    .spec
                    .requirements
                    .push(Requirement::exists(crate::labels::ZONE))
            }),
            pool_with(|s| s.weight = Some(10)),
            pool_with(|s| s.disruption.budgets.clear()),
        ];
        for p in &same {
            assert_eq!(p.template_hash(), h);
        }
        // Taint order is irrelevant.
        let ab = pool_with(|s| s.template.spec.taints = vec![taint("a"), taint("b")]);
        let ba = pool_with(|s| s.template.spec.taints = vec![taint("b"), taint("a")]);
        assert_eq!(ab.template_hash(), ba.template_hash());
    }

    #[test]
    fn only_template_fields_a_node_keeps_change_the_stamp() {
        let h = pool_with(|_| {}).template_stamp();
        assert_eq!(h.key, crate::labels::NODEPOOL_HASH);
        assert_eq!(h.version_key, crate::labels::NODEPOOL_HASH_VERSION);
        assert_eq!(h.version, TEMPLATE_HASH_VERSION);
        let taint = Taint {
            key: "boot".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let drifting = [
            pool_with(|s| s.template.spec.startup_taints.push(taint.clone())),
            pool_with(|s| {
                s.template
                    .metadata
                    .annotations
                    .insert("a".into(), "b".into());
            }),
            pool_with(|s| s.template.spec.termination_grace_period = Some(Duration::from_mins(10))),
            pool_with(|s| s.template.spec.node_class_ref.group = "other.dev".into()),
        ];
        for p in &drifting {
            assert_ne!(p.template_stamp().hash, h.hash, "{:?}", p.spec.template);
        }
        // What governs the pool rather than its nodes never drifts them.
        let behavioural = [
            pool_with(|s| s.weight = Some(50)),
            pool_with(|s| {
                s.limits.insert("cpu".into(), Quantity("1000".into()));
            }),
            pool_with(|s| s.disruption.consolidate_after = NillableDuration::NEVER),
            pool_with(|s| s.disruption.budgets = vec![Budget::nodes("0")]),
            pool_with(|s| {
                s.capacity_mix = Some(CapacityMix {
                    on_demand_percent_above_base: 10,
                    ..CapacityMix::default()
                })
            }),
            pool_with(|s| {
                s.spot_blast_radius = Some(SpotBlastRadius {
                    max_pods_per_workload: 5,
                })
            }),
        ];
        for p in &behavioural {
            assert_eq!(p.template_stamp(), h, "{:?}", p.spec);
        }
    }

    #[test]
    fn scheduled_budgets_apply_only_while_active() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let disruption = Disruption {
            budgets: vec![
                Budget::nodes("10%"),
                // No drift replacements during business hours on weekdays.
                Budget {
                    nodes: "0".into(),
                    schedule: Some("0 9 * * mon-fri".into()),
                    duration: Some(Duration::from_hours(8)),
                    reasons: vec![DisruptionReason::Drifted],
                },
            ],
            ..Disruption::default()
        };
        let friday_noon = at("2026-11-27T12:00:00Z");
        let friday_night = at("2026-11-27T20:00:00Z");
        let saturday_noon = at("2026-11-28T12:00:00Z");
        assert_eq!(
            disruption.allowed_disruptions(DisruptionReason::Drifted, 30, friday_noon),
            0
        );
        assert_eq!(
            disruption.allowed_disruptions(DisruptionReason::Drifted, 30, friday_night),
            3
        );
        assert_eq!(
            disruption.allowed_disruptions(DisruptionReason::Drifted, 30, saturday_noon),
            3
        );
        assert_eq!(
            disruption.allowed_disruptions(DisruptionReason::Empty, 30, friday_noon),
            3
        );
        // No budgets: nothing limits; a broken budget allows nothing.
        let none = Disruption {
            budgets: vec![],
            ..Disruption::default()
        };
        assert_eq!(
            none.allowed_disruptions(DisruptionReason::Empty, 7, friday_noon),
            7
        );
        let broken = Disruption {
            budgets: vec![Budget {
                schedule: Some("@never".into()),
                duration: Some(Duration::from_hours(1)),
                ..Budget::default()
            }],
            ..Disruption::default()
        };
        assert_eq!(
            broken.allowed_disruptions(DisruptionReason::Empty, 7, friday_noon),
            0
        );
        assert!(matches!(
            Budget {
                schedule: Some("@daily".into()),
                ..Budget::default()
            }
            .is_active(friday_noon),
            Err(BudgetError::MissingDuration(_))
        ));
    }

    #[test]
    fn budget_allowed_disruptions_rounds_percentages_up() {
        let cases = [
            ("10%", 0, 0),
            ("10%", 1, 1),
            ("10%", 10, 1),
            ("10%", 11, 2),
            ("100%", 7, 7),
            ("0%", 50, 0),
            ("5", 3, 5),
            ("0", 9, 0),
        ];
        for (nodes, total, want) in cases {
            assert_eq!(
                Budget::nodes(nodes).allowed_disruptions(total),
                Ok(want),
                "{nodes} of {total}"
            );
        }
        for bad in ["", "%", "101%", "1000%", "-1", "10 %", "x"] {
            assert!(
                Budget::nodes(bad).allowed_disruptions(10).is_err(),
                "{bad:?}"
            );
        }
    }
}
