//! Which nodes the disruption controller may act on, read from the [`ClusterState`] (pure: no
//! I/O, time passed in): the candidates with their solver view ([`Candidate`]), the nodes that
//! are blocked and why, the per-pool budgets left, and when the next node becomes eligible by
//! the passing of time alone. The controller and `stowage plan --consolidate` both use it, so the
//! two cannot disagree.
//!
//! A NodeClaim is a candidate when it is `Initialized`, has a Node, belongs to a NodePool, is not
//! being deleted or already disrupting, and no pod is nominated to it. It is **blocked** (an
//! Event says why) when it or its Node is annotated `stowage.dev/do-not-disrupt: "true"`, or one
//! of its pods is annotated so, would be lost (no controller owner and neither a DaemonSet nor a
//! mirror pod), or is covered by a PodDisruptionBudget that allows no disruption now. Blocked
//! nodes are only disrupted by expiry (forceful: the drain still honours PDBs until the claim's
//! `terminationGracePeriod`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use stowage_api::conditions::{DISRUPTING, DRIFTED, INITIALIZED};
use stowage_api::{
    CapacityType, ConsolidationPolicy, DisruptionReason, NodeClaim, NodePool, labels,
};
use stowage_solver::InstanceType;
use stowage_solver::consolidate::{Budgets, Candidate, Reason, disruption_cost, eviction_cost};
use stowage_solver::hash::FastMap;

use crate::lean::LeanPod;
use crate::state::ClusterState;

/// The annotation a pod deletion cost is read from.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A node the controller may disrupt, with what the methods need to know about it.
#[derive(Clone, Debug)]
pub struct Eligible {
    pub claim: Arc<NodeClaim>,
    pub node: Arc<Node>,
    /// The solver's view (`node` is the Node's name).
    pub candidate: Candidate,
    /// `consolidateAfter` has passed since the last pod event (or initialization), and it is
    /// not `Never`: emptiness and consolidation may take it.
    pub consolidatable: bool,
    /// Condition `Drifted=True`.
    pub drifted: bool,
    /// Older than its `expireAfter`.
    pub expired: bool,
    /// On-demand capacity bought because spot was unavailable, past the pool's
    /// `capacityMix.restoreSpotAfter`: the capacity-mix restore may move it to spot.
    pub restore_spot: bool,
    /// Why it must not be disrupted voluntarily (`None`: nothing blocks it). Only expiry takes
    /// a blocked node.
    pub blocked: Option<String>,
}

/// What [`candidates`] found.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// Sorted cheapest to disrupt first (disruption cost, then on-demand above its pool's cap
    /// first, then name).
    pub eligible: Vec<Eligible>,
    /// Per pool: its initialized nodes (claims) and those already disrupting (being deleted, `Disrupting`,
    /// tainted `stowage.dev/disrupted`, or their Node not `Ready`).
    pub pool_nodes: BTreeMap<String, (usize, usize)>,
    /// The earliest time a node becomes eligible by time alone (`consolidateAfter`,
    /// `expireAfter`, `restoreSpotAfter`): the loop looks again then even if nothing changed.
    pub next_change: Option<Timestamp>,
}

impl Candidates {
    /// The solver candidates of the eligible nodes for which `keep` holds, in order.
    pub fn solver(&self, keep: impl Fn(&Eligible) -> bool) -> Vec<Candidate> {
        self.eligible
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.candidate.clone())
            .collect()
    }

    pub fn by_node(&self, node: &str) -> Option<&Eligible> {
        self.eligible.iter().find(|e| e.candidate.node == node)
    }
}

/// The annotation value that blocks disruption.
fn do_not_disrupt(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(labels::DO_NOT_DISRUPT)
        .is_some_and(|v| v == "true")
}

/// The label a claim carries when it was launched on-demand because spot could not be had
/// (the value is the launch time, RFC 3339); see [`crate::lifecycle`].
pub const SPOT_FALLBACK: &str = "stowage.dev/spot-fallback";

/// True when the claim is marked disrupting (condition, or its node's taint), or being deleted.
pub fn is_disrupting(claim: &NodeClaim, node: Option<&Node>) -> bool {
    claim.metadata.deletion_timestamp.is_some()
        || claim.is_true(DISRUPTING)
        || node.is_some_and(|n| {
            n.metadata.deletion_timestamp.is_some()
                || n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == labels::DISRUPTED_TAINT_KEY))
        })
}

/// True when the Node's `Ready` condition says `False` or `Unknown` (a Node without one is
/// not judged).
pub fn not_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True")
}

/// Finds the candidates at `now`; `types` are each pool's instance types (for prices: a node
/// whose offering is not listed costs 0, so it is only ever deleted, never replaced).
pub fn candidates(
    state: &ClusterState,
    types: &BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
) -> Candidates {
    let mut out = Candidates::default();
    let pdbs = PdbIndex::new(state);
    // Each pool's types by name (the first of a name, as a scan finds it): a claim's price is
    // a lookup, not a scan of the catalogue.
    let by_name: BTreeMap<&str, FastMap<&str, &InstanceType>> = types
        .iter()
        .map(|(pool, list)| {
            let mut m: FastMap<&str, &InstanceType> = FastMap::default();
            for t in list.iter() {
                m.entry(t.name.as_str()).or_insert(t);
            }
            (pool.as_str(), m)
        })
        .collect();
    let mut next: Option<Timestamp> = None;
    let mut soon = |t: Timestamp| {
        if t > now {
            next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        }
    };
    for claim in state.claims() {
        let Some(pool_name) = claim.nodepool_name() else {
            continue;
        };
        let node = state.claim_node(claim);
        let counts = out.pool_nodes.entry(pool_name.to_string()).or_default();
        // A budget's percentage is of the pool's initialized nodes (a node still launching is
        // not yet capacity the pool can spare), as Karpenter counts it; a claim whose Node is
        // gone (its instance ended, the claim not yet collected) is no capacity either, and
        // counting it let a pool disrupt more than its share of the nodes it has.
        if claim.is_true(INITIALIZED) && node.is_some() {
            counts.0 += 1;
        }
        if is_disrupting(claim, node.as_deref()) {
            counts.1 += 1;
            continue;
        }
        // A Node that stopped being Ready (its instance ended without notice, its kubelet
        // died) is capacity the pool has lost already: Karpenter counts it as disrupting, so
        // the budget is not spent a second time on voluntary disruption.
        if node.as_deref().is_some_and(not_ready) {
            counts.1 += 1;
        }
        let (Some(node), Some(pool)) = (node, state.nodepool(pool_name)) else {
            continue;
        };
        if !claim.is_true(INITIALIZED) {
            continue;
        }
        // A replacement is not taken away while the nodes it replaces are still draining.
        if claim
            .annotations()
            .get(crate::disruption::command::REPLACEMENT_FOR)
            .is_some_and(|r| r.split(',').any(|c| state.claim(c).is_some()))
        {
            continue;
        }
        // Capacity pods wait for is not taken away from them.
        if state
            .nominated_to_iter(claim.metadata.name.as_deref().unwrap_or_default())
            .any(|p| state.is_nominated(p, now))
        {
            continue;
        }
        let initialized = claim
            .condition(INITIALIZED)
            .and_then(|c| c.last_transition())
            .unwrap_or(now);
        let last_event = claim
            .status
            .as_ref()
            .and_then(|s| s.last_pod_event_time.as_ref())
            .map(|t| t.0)
            .unwrap_or(initialized)
            .max(initialized);
        let consolidatable = match pool.spec.disruption.consolidate_after.as_std() {
            None => false,
            Some(after) => {
                let at = last_event + signed(after);
                soon(at);
                now >= at
            }
        };
        let created = claim
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(initialized, |t| t.0);
        let expire_after = claim.spec.expire_after.as_std();
        let expired = expire_after.is_some_and(|d| {
            soon(created + signed(d));
            now >= created + signed(d)
        });
        let lifetime_left = expire_after.map_or(1.0, |d| {
            let age = now.duration_since(created).as_secs_f64().max(0.0);
            1.0 - age / d.as_secs_f64().max(1.0)
        });
        let restore_spot = restore_spot_due(claim, &pool, now, &mut soon);
        let node_name = node.name_any();
        let pods: Vec<&LeanPod> = state.pods_on_node_iter(&node_name).map(|p| &**p).collect();
        let blocked = blocked_by(claim, &node, &pods, &pdbs);
        let costs = pods.iter().filter(|p| p.is_reschedulable()).map(|p| {
            let priority = p.priority;
            let deletion_cost = p
                .annotations
                .get(POD_DELETION_COST)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            eviction_cost(priority, deletion_cost)
        });
        let capacity_type = claim
            .label(labels::CAPACITY_TYPE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(CapacityType::OnDemand);
        let price = claim_price_in(claim, by_name.get(pool_name));
        let min_instance_types = pool
            .spec
            .template
            .spec
            .requirements
            .iter()
            .find(|r| r.key == labels::INSTANCE_TYPE)
            .and_then(|r| r.min_values)
            .and_then(|v| usize::try_from(v).ok());
        out.eligible.push(Eligible {
            candidate: Candidate {
                node: node_name,
                nodepool: pool_name.to_string(),
                price_per_hour: price.unwrap_or(0.0),
                capacity_type,
                disruption_cost: disruption_cost(costs, lifetime_left),
                underutilized_allowed: pool.spec.disruption.consolidation_policy
                    == ConsolidationPolicy::WhenEmptyOrUnderutilized,
                min_instance_types,
            },
            claim: claim.clone(),
            node,
            consolidatable,
            drifted: claim.is_true(DRIFTED),
            expired,
            restore_spot,
            blocked,
        });
    }
    out.eligible.sort_by(|a, b| {
        a.candidate
            .disruption_cost
            .total_cmp(&b.candidate.disruption_cost)
            .then_with(|| a.candidate.node.cmp(&b.candidate.node))
    });
    out.next_change = next;
    out
}

/// The claim's offering price from the pool's instance types.
pub fn claim_price(claim: &NodeClaim, types: Option<&[InstanceType]>) -> Option<f64> {
    let it = claim.label(labels::INSTANCE_TYPE)?;
    let zone = claim.label(labels::ZONE);
    let ct: CapacityType = claim.label(labels::CAPACITY_TYPE)?.parse().ok()?;
    types?
        .iter()
        .find(|t| t.name == it)?
        .offerings
        .iter()
        .filter(|o| o.capacity_type == ct && zone.is_none_or(|z| z == o.zone))
        .map(|o| o.price_per_hour)
        .reduce(f64::min)
}

/// [`claim_price`] with the pool's types indexed by name.
fn claim_price_in(claim: &NodeClaim, types: Option<&FastMap<&str, &InstanceType>>) -> Option<f64> {
    let it = claim.label(labels::INSTANCE_TYPE)?;
    let zone = claim.label(labels::ZONE);
    let ct: CapacityType = claim.label(labels::CAPACITY_TYPE)?.parse().ok()?;
    types?
        .get(it)?
        .offerings
        .iter()
        .filter(|o| o.capacity_type == ct && zone.is_none_or(|z| z == o.zone))
        .map(|o| o.price_per_hour)
        .reduce(f64::min)
}

fn restore_spot_due(
    claim: &NodeClaim,
    pool: &NodePool,
    now: Timestamp,
    soon: &mut impl FnMut(Timestamp),
) -> bool {
    let Some(after) = pool
        .spec
        .capacity_mix
        .as_ref()
        .and_then(|m| m.restore_spot_after)
    else {
        return false;
    };
    let Some(since) = claim
        .annotations()
        .get(SPOT_FALLBACK)
        .and_then(|v| v.parse::<Timestamp>().ok())
    else {
        return false;
    };
    let at = since + signed(after.as_std());
    soon(at);
    now >= at
}

fn blocked_by(
    claim: &NodeClaim,
    node: &Node,
    pods: &[&LeanPod],
    pdbs: &PdbIndex,
) -> Option<String> {
    if do_not_disrupt(claim.annotations()) {
        return Some(format!(
            "nodeclaim {} is annotated {}",
            claim.name_any(),
            labels::DO_NOT_DISRUPT
        ));
    }
    if do_not_disrupt(node.annotations()) {
        return Some(format!(
            "node {} is annotated {}",
            node.name_any(),
            labels::DO_NOT_DISRUPT
        ));
    }
    for pod in pods.iter().filter(|p| p.is_reschedulable()) {
        let key = pod.key();
        if do_not_disrupt(&pod.annotations) {
            return Some(format!("pod {key} is annotated {}", labels::DO_NOT_DISRUPT));
        }
        if !pod.has_controller {
            return Some(format!(
                "pod {key} has no controller owner and would be lost"
            ));
        }
        if let Some(pdb) = pdbs.blocking(pod) {
            return Some(format!(
                "pod {key} has a PDB ({pdb}) allowing 0 disruptions"
            ));
        }
    }
    None
}

/// PodDisruptionBudgets by namespace, each with the disruptions it allows now.
struct PdbIndex {
    by_ns: HashMap<String, Vec<(String, LabelSelector, i64)>>,
}

impl PdbIndex {
    fn new(state: &ClusterState) -> Self {
        let mut by_ns: HashMap<String, Vec<(String, LabelSelector, i64)>> = HashMap::new();
        for pdb in state.pdbs() {
            let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.clone()) else {
                continue;
            };
            let ns = pdb.namespace().unwrap_or_default();
            let allowed = pdb_allowed(pdb, &selector, state);
            by_ns
                .entry(ns)
                .or_default()
                .push((pdb.name_any(), selector, allowed));
        }
        PdbIndex { by_ns }
    }

    /// The name of a PDB covering `pod` that allows no disruption now.
    fn blocking(&self, pod: &LeanPod) -> Option<&str> {
        self.by_ns
            .get(pod.namespace())?
            .iter()
            .find(|(_, sel, allowed)| *allowed <= 0 && selector_matches(sel, pod.labels()))
            .map(|(name, _, _)| name.as_str())
    }
}

/// Per PodDisruptionBudget (by `namespace/name`), the state's pods its selector selects that
/// are not finished (`expected`) and healthy, kept up to date per pod event by
/// [`ClusterState`]: a round reads them instead of matching every pod against every PDB.
#[derive(Clone, Debug, Default)]
pub struct PdbCounts {
    by_key: BTreeMap<String, PdbCount>,
}

#[derive(Clone, Debug)]
struct PdbCount {
    namespace: String,
    selector: LabelSelector,
    expected: i64,
    healthy: i64,
}

impl PdbCounts {
    /// Counts `pod` in (`sign` 1) or out (`sign` -1) of the PDBs of its namespace.
    pub(crate) fn pod(&mut self, pod: &LeanPod, sign: i64) {
        let ns = pod.namespace();
        let (expected, healthy) = (i64::from(!pod.is_terminal()), i64::from(is_healthy(pod)));
        if expected == 0 && healthy == 0 {
            return;
        }
        let prefix = format!("{ns}/");
        for (_, c) in self
            .by_key
            .range_mut(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            if c.namespace == ns && selector_matches(&c.selector, pod.labels()) {
                c.expected += sign * expected;
                c.healthy += sign * healthy;
            }
        }
    }

    /// Starts counting `pdb` (`key`: `namespace/name`) over `pods`, unless it is counted with
    /// the same namespace and selector already; a PDB without selector is not counted.
    pub(crate) fn pdb<'p>(
        &mut self,
        key: &str,
        pdb: &PodDisruptionBudget,
        pods: impl Iterator<Item = &'p Arc<LeanPod>>,
    ) {
        let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.clone()) else {
            self.by_key.remove(key);
            return;
        };
        let namespace = pdb.namespace().unwrap_or_default();
        if self
            .by_key
            .get(key)
            .is_some_and(|c| c.namespace == namespace && c.selector == selector)
        {
            return;
        }
        let (mut expected, mut healthy) = (0, 0);
        for pod in pods {
            if pod.namespace() != namespace || !selector_matches(&selector, pod.labels()) {
                continue;
            }
            expected += i64::from(!pod.is_terminal());
            healthy += i64::from(is_healthy(pod));
        }
        self.by_key.insert(
            key.to_string(),
            PdbCount {
                namespace,
                selector,
                expected,
                healthy,
            },
        );
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    pub(crate) fn clear(&mut self) {
        self.by_key.clear();
    }

    /// Every count to zero (the pods are counted in again).
    pub(crate) fn zero(&mut self) {
        for c in self.by_key.values_mut() {
            c.expected = 0;
            c.healthy = 0;
        }
    }

    /// (healthy, expected) of the PDB `key` when counted with `selector`.
    fn get(&self, key: &str, namespace: &str, selector: &LabelSelector) -> Option<(i64, i64)> {
        self.by_key
            .get(key)
            .filter(|c| c.namespace == namespace && c.selector == *selector)
            .map(|c| (c.healthy, c.expected))
    }
}

/// How many more pods the PDB lets go now: its healthy pods minus those it needs (from
/// `minAvailable` or `maxUnavailable`, the API server's rules), and no more than its status
/// says when the disruption controller has written one.
pub fn pdb_allowed(
    pdb: &PodDisruptionBudget,
    selector: &LabelSelector,
    state: &ClusterState,
) -> i64 {
    let ns = pdb.namespace().unwrap_or_default();
    let key = stowage_api::key_of(pdb);
    let (healthy, expected) = state
        .pdb_counts()
        .get(&key, &ns, selector)
        .unwrap_or_else(|| {
            let (mut healthy, mut expected) = (0i64, 0i64);
            for pod in state.pods() {
                if pod.namespace() != ns || !selector_matches(selector, pod.labels()) {
                    continue;
                }
                if !pod.is_terminal() {
                    expected += 1;
                }
                if is_healthy(pod) {
                    healthy += 1;
                }
            }
            (healthy, expected)
        });
    let spec = pdb.spec.as_ref();
    let desired = if let Some(min) = spec.and_then(|s| s.min_available.as_ref()) {
        int_or_percent(min, expected)
    } else if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        (expected - int_or_percent(max, expected)).max(0)
    } else {
        0
    };
    let computed = healthy - desired;
    match pdb.status.as_ref() {
        Some(s) if s.observed_generation.is_some() => {
            computed.min(i64::from(s.disruptions_allowed))
        }
        _ => computed,
    }
}

fn is_healthy(pod: &LeanPod) -> bool {
    pod.deletion_timestamp.is_none()
        && pod.phase.as_deref() == Some("Running")
        && pod.ready.is_none_or(|r| r)
}

fn int_or_percent(v: &IntOrString, total: i64) -> i64 {
    match v {
        IntOrString::Int(i) => i64::from(*i),
        IntOrString::String(s) => match s.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<i64>()
                .map_or(0, |p| (p * total + 99) / 100),
            None => s.parse().unwrap_or(0),
        },
    }
}

/// A (policy/v1) label selector: every `matchLabels` entry and `matchExpressions` term holds;
/// the empty selector matches every pod.
pub fn selector_matches(sel: &LabelSelector, pod_labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| pod_labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = pod_labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// How many more nodes each pool may disrupt now per reason: its budgets' allowance for its
/// node count, minus the nodes already disrupting. Expiry is not budgeted.
pub fn budgets(state: &ClusterState, found: &Candidates, now: Timestamp) -> Budgets {
    let mut b = Budgets::default();
    for pool in state.nodepools() {
        let name = pool.name_any();
        let (total, disrupting) = found.pool_nodes.get(&name).copied().unwrap_or((0, 0));
        for (reason, api) in [
            (Reason::Empty, DisruptionReason::Empty),
            (Reason::Underutilized, DisruptionReason::Underutilized),
            (Reason::Drifted, DisruptionReason::Drifted),
        ] {
            let total = u32::try_from(total).unwrap_or(u32::MAX);
            let allowed = pool.spec.disruption.allowed_disruptions(api, total, now) as usize;
            b.set(&name, reason, allowed.saturating_sub(disrupting));
        }
    }
    b
}

fn signed(d: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use stowage_api::{Budget, NillableDuration, NodePoolSpec};

    use super::*;
    use crate::fixtures::*;

    const T0: &str = "2026-01-01T00:00:00Z";

    fn pool(name: &str, edit: impl FnOnce(&mut NodePoolSpec)) -> NodePool {
        let mut spec = NodePoolSpec::default();
        edit(&mut spec);
        NodePool::new(name, spec)
    }

    /// A state with `n` initialized claims of pool `default` (created and initialized at T0),
    /// node `n<i>` each.
    fn state(n: usize, edit: impl FnOnce(&mut NodePoolSpec)) -> ClusterState {
        let mut s = ClusterState::new();
        s.apply_nodepool(pool("default", edit));
        for i in 0..n {
            let mut c = launched(
                claim(&format!("c{i}"), "default"),
                &format!("fake:///z/i-{i}"),
            );
            c.metadata.creation_timestamp = Some(Time(ts(T0)));
            c.status_mut().set_true(INITIALIZED, "Initialized", ts(T0));
            s.apply_claim(c);
            s.apply_node(node(&format!("n{i}"), &format!("fake:///z/i-{i}"), true));
        }
        s
    }

    fn running_pod(name: &str, node: &str) -> Pod {
        let mut p = bound(pending_pod("default", name, "100m"), node);
        p.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                kind: "ReplicaSet".into(),
                name: "web".into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p
    }

    fn found(s: &ClusterState, at: &str) -> Candidates {
        candidates(s, &BTreeMap::new(), ts(at))
    }

    #[test]
    fn consolidate_after_runs_from_the_last_pod_event_and_never_disables() {
        let mut s = state(1, |p| {
            p.disruption.consolidate_after = NillableDuration::from_secs(300);
        });
        let mut c = (*s.claim("c0").unwrap()).clone();
        c.status_mut().last_pod_event_time = Some(Time(ts("2026-01-01T00:10:00Z")));
        s.apply_claim(c);
        let f = found(&s, "2026-01-01T00:14:59Z");
        assert!(!f.eligible[0].consolidatable);
        assert_eq!(f.next_change, Some(ts("2026-01-01T00:15:00Z")));
        assert!(found(&s, "2026-01-01T00:15:00Z").eligible[0].consolidatable);
        // Without a pod event: from initialization.
        let s = state(1, |p| {
            p.disruption.consolidate_after = NillableDuration::from_secs(60);
        });
        assert!(found(&s, "2026-01-01T00:01:00Z").eligible[0].consolidatable);
        let s = state(1, |p| {
            p.disruption.consolidate_after = NillableDuration::NEVER
        });
        let f = found(&s, "2027-01-01T00:00:00Z");
        assert!(!f.eligible[0].consolidatable);
    }

    #[test]
    fn what_blocks_a_node_is_named() {
        let at = "2026-01-01T01:00:00Z";
        let mut s = state(4, |_| {});
        // n0: a do-not-disrupt pod; n1: a pod without controller; n2: a PDB allowing 0;
        // n3: only a DaemonSet pod (no controller flag needed) and a pod of a PDB that allows 1.
        let mut p = running_pod("dnd", "n0");
        p.metadata.annotations = Some([(labels::DO_NOT_DISRUPT.to_string(), "true".into())].into());
        s.apply_pod(p);
        s.apply_pod(bound(pending_pod("default", "naked", "100m"), "n1"));
        let mut guarded = running_pod("guarded", "n2");
        guarded.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        s.apply_pod(guarded);
        s.apply_pod(owned_by(
            bound(pending_pod("kube-system", "agent", "10m"), "n3"),
            "DaemonSet",
        ));
        s.apply_pod(running_pod("w1", "n3"));
        s.apply_pod(running_pod("w2", "n3"));
        let pdb = |name: &str, app: &str, min: i32| PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(min)),
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        };
        s.apply_pdb(pdb("db", "db", 1));
        s.apply_pdb(pdb("web", "web", 2));
        let f = found(&s, at);
        let why = |n: &str| f.by_node(n).unwrap().blocked.clone();
        assert!(
            why("n0")
                .unwrap()
                .contains("pod default/dnd is annotated stowage.dev/do-not-disrupt")
        );
        assert!(
            why("n1")
                .unwrap()
                .contains("pod default/naked has no controller owner")
        );
        assert_eq!(
            why("n2").unwrap(),
            "pod default/guarded has a PDB (db) allowing 0 disruptions"
        );
        assert_eq!(why("n3"), None, "web has 3 healthy pods and needs 2");
        // A do-not-disrupt claim blocks too.
        let mut c = (*s.claim("c3").unwrap()).clone();
        c.metadata.annotations = Some([(labels::DO_NOT_DISRUPT.to_string(), "true".into())].into());
        s.apply_claim(c);
        assert!(found(&s, at).by_node("n3").unwrap().blocked.is_some());
    }

    #[test]
    fn a_budget_percentage_is_of_the_initialized_nodes() {
        let at = ts("2026-01-01T01:00:00Z");
        // 10 initialized nodes and 2 still launching: 10 % of 10 is 1 (of 12 it would be 2).
        let mut s = state(10, |_| {});
        for i in 10..12 {
            s.apply_claim(launched(
                claim(&format!("c{i}"), "default"),
                &format!("fake:///z/i-{i}"),
            ));
        }
        let b = budgets(&s, &candidates(&s, &BTreeMap::new(), at), at);
        assert_eq!(b.get("default", Reason::Underutilized), 1);
    }

    #[test]
    fn budgets_count_nodes_already_disrupting() {
        let at = ts("2026-01-01T01:00:00Z");
        // 10 nodes, default 10 %: one at a time.
        let mut s = state(10, |_| {});
        let b = budgets(&s, &candidates(&s, &BTreeMap::new(), at), at);
        assert_eq!(b.get("default", Reason::Underutilized), 1);
        let mut c = (*s.claim("c0").unwrap()).clone();
        c.status_mut().set_true(DISRUPTING, "Underutilized", at);
        s.apply_claim(c);
        let f = candidates(&s, &BTreeMap::new(), at);
        assert_eq!(f.eligible.len(), 9, "a disrupting node is no candidate");
        assert_eq!(budgets(&s, &f, at).get("default", Reason::Underutilized), 0);
        // A count of 3 for Empty only; a budget whose window is closed does not limit.
        let mut s = state(10, |p| {
            p.disruption.budgets = vec![
                Budget {
                    reasons: vec![DisruptionReason::Empty],
                    ..Budget::nodes("3")
                },
                Budget {
                    schedule: Some("0 9 * * *".into()),
                    duration: Some(stowage_api::Duration::from_hours(1)),
                    ..Budget::nodes("0")
                },
            ];
        });
        let mut n = (*s.node("n1").unwrap()).clone();
        n.spec.as_mut().unwrap().taints =
            Some(vec![taint(labels::DISRUPTED_TAINT_KEY, "NoSchedule")]);
        s.apply_node(n);
        let f = candidates(&s, &BTreeMap::new(), at);
        let b = budgets(&s, &f, at);
        assert_eq!(b.get("default", Reason::Empty), 2);
        assert_eq!(b.get("default", Reason::Underutilized), 9);
        let nine = ts("2026-01-01T09:30:00Z");
        assert_eq!(budgets(&s, &f, nine).get("default", Reason::Empty), 0);
    }

    #[test]
    fn a_claim_whose_node_is_gone_does_not_raise_the_budget() {
        let at = ts("2026-01-01T01:00:00Z");
        // 20 nodes, default 10 %: two at a time.
        let mut s = state(20, |_| {});
        assert_eq!(
            budgets(&s, &candidates(&s, &BTreeMap::new(), at), at).get("default", Reason::Empty),
            2
        );
        // Ten instances end (interrupted) and their Nodes go; the claims are not collected yet.
        // Counted, they would make the 10 % of 20 nodes three.
        for i in 20..30 {
            let mut c = launched(
                claim(&format!("c{i}"), "default"),
                &format!("fake:///z/i-{i}"),
            );
            c.status_mut().set_true(INITIALIZED, "Initialized", ts(T0));
            s.apply_claim(c);
        }
        let f = candidates(&s, &BTreeMap::new(), at);
        assert_eq!(f.pool_nodes.get("default"), Some(&(20, 0)));
        assert_eq!(budgets(&s, &f, at).get("default", Reason::Empty), 2);
        // A node that goes takes its claim out of the count.
        s.delete_node("n0");
        let f = candidates(&s, &BTreeMap::new(), at);
        assert_eq!(f.pool_nodes.get("default"), Some(&(19, 0)));
    }

    #[test]
    fn a_node_no_longer_ready_counts_as_disrupting() {
        let at = ts("2026-01-01T01:00:00Z");
        // 20 nodes, default 10 %: two at a time.
        let mut s = state(20, |_| {});
        assert_eq!(
            budgets(&s, &candidates(&s, &BTreeMap::new(), at), at).get("default", Reason::Empty),
            2
        );
        // Two instances end without notice: their Nodes go NotReady (the kubelet stopped
        // posting status) before anything deletes them. The pool has lost them already.
        for i in 0..2 {
            let seq = s.disruption_seq();
            let mut n = (*s.node(&format!("n{i}")).unwrap()).clone();
            let ready = &mut n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
            ready.status = "Unknown".into();
            s.apply_node(n);
            assert!(s.disruption_seq() > seq, "a round looks again");
        }
        let f = candidates(&s, &BTreeMap::new(), at);
        assert_eq!(f.pool_nodes.get("default"), Some(&(20, 2)));
        assert_eq!(budgets(&s, &f, at).get("default", Reason::Empty), 0);
        assert_eq!(budgets(&s, &f, at).get("default", Reason::Underutilized), 0);
    }

    #[test]
    fn a_replacement_is_no_candidate_while_what_it_replaces_drains() {
        let mut s = state(2, |_| {});
        let mut c = (*s.claim("c1").unwrap()).clone();
        c.metadata.annotations = Some(
            [(
                crate::disruption::command::REPLACEMENT_FOR.to_string(),
                "c0,gone".to_string(),
            )]
            .into(),
        );
        s.apply_claim(c);
        let at = "2026-01-01T01:00:00Z";
        assert!(found(&s, at).by_node("n1").is_none());
        s.delete_claim("c0");
        assert!(found(&s, at).by_node("n1").is_some());
    }

    #[test]
    fn drifted_expired_and_cost_ordering() {
        let mut s = state(3, |_| {});
        let mut c = (*s.claim("c1").unwrap()).clone();
        c.status_mut().set_true(DRIFTED, "Drifted", ts(T0));
        c.spec.expire_after = NillableDuration::from_hours(1);
        s.apply_claim(c);
        s.apply_pod(running_pod("a", "n0"));
        s.apply_pod(running_pod("b", "n0"));
        s.apply_pod(running_pod("c", "n2"));
        let f = found(&s, "2026-01-01T00:59:00Z");
        let order: Vec<&str> = f
            .eligible
            .iter()
            .map(|e| e.candidate.node.as_str())
            .collect();
        // n1 has no pods; n2 one; n0 two.
        assert_eq!(order, ["n1", "n2", "n0"]);
        let n1 = f.by_node("n1").unwrap();
        assert!(n1.drifted && !n1.expired);
        assert_eq!(f.next_change, Some(ts("2026-01-01T01:00:00Z")));
        assert!(
            found(&s, "2026-01-01T01:00:00Z")
                .by_node("n1")
                .unwrap()
                .expired
        );
    }

    /// The counts kept per pod event are those of a recount over every pod.
    #[test]
    fn pdb_counts_follow_pod_events() {
        let mut s = state(2, |_| {});
        let pdb = |name: &str, app: &str| PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::String("10%".into())),
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        };
        let check = |s: &ClusterState| {
            for p in s.pdbs() {
                let sel = p.spec.as_ref().unwrap().selector.clone().unwrap();
                let key = stowage_api::key_of(&**p);
                let kept = s.pdb_counts().get(&key, "default", &sel).unwrap();
                let (mut healthy, mut expected) = (0, 0);
                for pod in s.pods() {
                    if pod.namespace() == "default" && selector_matches(&sel, pod.labels()) {
                        expected += i64::from(!pod.is_terminal());
                        healthy += i64::from(is_healthy(pod));
                    }
                }
                assert_eq!(kept, (healthy, expected), "{key}");
            }
        };
        s.apply_pod(running_pod("w0", "n0"));
        s.apply_pdb(pdb("web", "web"));
        s.apply_pdb(pdb("db", "db"));
        check(&s);
        let mut running = running_pod("w1", "n1");
        running.status.get_or_insert_default().phase = Some("Running".into());
        s.apply_pod(running.clone());
        check(&s);
        running.status.get_or_insert_default().phase = Some("Succeeded".into());
        s.apply_pod(running);
        check(&s);
        let mut db = running_pod("d0", "n1");
        db.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        db.status.get_or_insert_default().phase = Some("Running".into());
        s.apply_pod(db);
        check(&s);
        s.delete_pod("default/w0");
        check(&s);
        // A PDB's selector changed: counted again.
        s.apply_pdb(pdb("web", "db"));
        check(&s);
        s.replace_pods(vec![running_pod("w2", "n0")]);
        check(&s);
        s.replace_pdbs(vec![pdb("web", "web")]);
        check(&s);
        s.delete_pdb("default/web");
        assert!(s.pdb_counts().by_key.is_empty());
    }
}
