//! The solver's input, built from [`ClusterState`]: pending pods that are not nominated,
//! existing nodes with their pods (and the pods nominated to them), in-flight NodeClaims modelled
//! as nodes (with the pods nominated to them), NodePools with their usage and instance types, and
//! DaemonSets. Objects the solver cannot read are skipped, each with an error naming the field.
//!
//! This is the one way Kubernetes objects become solver input: the provisioner builds it from the
//! watched state, and `stowage plan` loads its files into a [`ClusterState`] and builds it here
//! too, so the two cannot disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use stowage_api::conditions::{INITIALIZED, READY};
use stowage_api::labels;
use stowage_api::quantity::parse_resource;
use stowage_api::requirements::{Operator, Requirement};
use stowage_api::{NodeClaim, NodePool};
use stowage_solver::convert;
use stowage_solver::{ExistingNode, InstanceType, PodRequest, Resources, SolveInput};

use crate::lean::LeanPod;
use crate::lifecycle::EPHEMERAL_TAINTS;
use crate::nodeclaim::{claim_capacity_type, claim_resources};
use crate::state::ClusterState;

/// The solver's input and what went into it.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub input: SolveInput,
    /// The pending pods by key (for Events).
    pub pending: BTreeMap<String, Arc<LeanPod>>,
    /// Objects left out because the solver cannot read them, each naming the object and field.
    /// The controllers log them; `stowage plan` refuses its input.
    pub skipped: Vec<convert::Error>,
    /// Which lending of a [`NodeCache`] the input's registered nodes came from (give it back
    /// with them to [`NodeCache::recycle`]); the default when no cache was used.
    pub lease: Lease,
}

/// One lending of a [`NodeCache`]'s nodes to an input: the cache takes back only the nodes it
/// lent under the lease they come back with, so a node built from older objects is never
/// filed under what a later snapshot built it from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease(u64);

/// The NodePools a solve may buy from: not being deleted and not `Ready=False`.
pub fn pools(state: &ClusterState) -> Vec<Arc<NodePool>> {
    state
        .nodepools()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.condition(READY).is_none_or(|c| !c.is_false()))
        .cloned()
        .collect()
}

/// Builds the solver's input from the state: `pools` (see [`pools`]) with the instance types
/// each may launch (a pool without an entry in `types` is left out), at `now` (nominations).
/// The input shares the state's pod conversions (the same `Arc`s): a pod is copied only when
/// the snapshot adds to its requirements (a pending pod kept off the nodes it was refused on).
pub fn build(
    state: &ClusterState,
    pools: &[Arc<NodePool>],
    types: BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
) -> Snapshot {
    let (snap, pods) = build_shared(state, pools, types, now, true, None);
    pods.fill(snap)
}

/// [`build`] without the pending pods (`input.pods` and `pending` stay empty: the disruption
/// loop's view), each registered Node taken from `cache` when nothing it is built from changed
/// since the snapshot it was built for (see [`NodeCache`]). Give the input back with
/// [`NodeCache::recycle`] when done with it.
pub fn build_bound(
    state: &ClusterState,
    pools: &[Arc<NodePool>],
    types: BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
    cache: &mut NodeCache,
) -> Snapshot {
    let (snap, pods) = build_shared(state, pools, types, now, false, Some(cache));
    pods.fill(snap)
}

/// [`build`] with each registered Node taken from `cache` when nothing it is built from
/// changed (see [`NodeCache`]): the provisioner's passes. Give the input back with
/// [`NodeCache::recycle`] when done with it.
pub fn build_cached(
    state: &ClusterState,
    pools: &[Arc<NodePool>],
    types: BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
    cache: &mut NodeCache,
) -> Snapshot {
    let (snap, pods) = build_shared(state, pools, types, now, true, Some(cache));
    pods.fill(snap)
}

/// The registered Nodes of the last snapshots as the solver reads them, for loops that
/// snapshot the same cluster every few seconds (provisioning, disruption): a Node whose object,
/// bound and nominated pods (the state's conversions, compared by identity, else by value) and
/// schedulability are what they were is moved back into the next input instead of being
/// converted again and its pods copied (at 3,200 nodes and 40,000 pods the copies were most of
/// a round). Nodes whose claim is not `Initialized` yet are always built afresh (their taints
/// depend on the claim and its pool).
///
/// Several inputs may hold nodes of one cache at once (a disruption round's beside a
/// provisioning pass's): a node lent to one input is built afresh for the next and lent again
/// under the new [`Lease`]; when the first input comes back, its copy is dropped (it may have
/// been built from older objects than the entry now describes).
#[derive(Debug, Default)]
pub struct NodeCache {
    nodes: std::collections::HashMap<String, CachedNode>,
    /// The last lease handed out.
    leases: u64,
}

#[derive(Debug)]
struct CachedNode {
    /// What it was built from.
    node: Arc<Node>,
    pods: Vec<Arc<PodRequest>>,
    unschedulable: bool,
    /// The node as built, `None` while lent to an input (or never given back).
    built: Option<ExistingNode>,
    /// The lending it was last lent under.
    lease: Lease,
}

impl NodeCache {
    /// Takes back the registered nodes of an input made by [`build_bound`] or [`build_cached`]
    /// with this cache, under the snapshot's `lease`: a node lent again since (to a later
    /// snapshot) is dropped.
    pub fn recycle(&mut self, input: SolveInput, lease: Lease) {
        for mut n in input.nodes {
            if let Some(c) = self.nodes.get_mut(&n.name)
                && c.built.is_none()
                && c.lease == lease
            {
                // The disruption round prices its candidates; the build leaves prices unset.
                n.price_per_hour = None;
                c.built = Some(n);
            }
        }
    }

    /// The cached node for these inputs, if it is what they build.
    fn take(
        &mut self,
        node: &Arc<Node>,
        pods: &[Arc<PodRequest>],
        unschedulable: bool,
        lease: Lease,
    ) -> Option<ExistingNode> {
        let name = node.metadata.name.as_deref()?;
        let c = self.nodes.get_mut(name)?;
        let same = c.unschedulable == unschedulable
            && (Arc::ptr_eq(&c.node, node) || *c.node == **node)
            && c.pods.len() == pods.len()
            && c.pods
                .iter()
                .zip(pods)
                .all(|(a, b)| Arc::ptr_eq(a, b) || **a == **b);
        if !same {
            return None;
        }
        let built = c.built.take()?;
        // Later comparisons by identity.
        if !Arc::ptr_eq(&c.node, node) {
            c.node = node.clone();
        }
        if !c.pods.iter().zip(pods).all(|(a, b)| Arc::ptr_eq(a, b)) {
            c.pods = pods.to_vec();
        }
        c.lease = lease;
        Some(built)
    }

    /// Records what a node lent to an input was built from.
    fn lend(
        &mut self,
        node: &Arc<Node>,
        pods: &[Arc<PodRequest>],
        unschedulable: bool,
        lease: Lease,
    ) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        self.nodes.insert(
            name,
            CachedNode {
                node: node.clone(),
                pods: pods.to_vec(),
                unschedulable,
                built: None,
                lease,
            },
        );
    }

    /// A new lending, for one snapshot.
    fn lease(&mut self) -> Lease {
        self.leases += 1;
        Lease(self.leases)
    }

    /// Forgets nodes that are gone.
    fn retain(&mut self, state: &ClusterState) {
        self.nodes.retain(|name, _| state.node(name).is_some());
    }
}

/// [`build`] from a state that is not needed afterwards (`stowage plan`): the state is dropped
/// once the input is built, so the input is left the only holder of each pod's conversion. The
/// snapshot's `pending` is left empty (it would keep the state's pods alive).
pub fn build_owned(
    state: ClusterState,
    pools: &[Arc<NodePool>],
    types: BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
) -> Snapshot {
    let (mut snap, pods) = build_shared(&state, pools, types, now, true, None);
    snap.pending.clear();
    drop(state);
    pods.fill(snap)
}

/// The pods of a snapshot as the state's shared conversions, by where they go in the input;
/// [`SharedPods::fill`] puts them there.
struct SharedPods {
    /// Pending pods, each with the nodes (and spread domains) it must keep off (see
    /// [`rejected_requirements`]).
    pending: Vec<(Arc<PodRequest>, Vec<Requirement>)>,
    /// `None`: the node came from a [`NodeCache`] with its pods.
    nodes: Vec<Option<Vec<Arc<PodRequest>>>>,
    in_flight: Vec<Vec<Arc<PodRequest>>>,
}

impl SharedPods {
    fn fill(self, mut snap: Snapshot) -> Snapshot {
        let input = &mut snap.input;
        input.pods = self
            .pending
            .into_iter()
            .map(|(p, off)| {
                if off.is_empty() {
                    return p;
                }
                // The state's conversion stays as the pod is; the input's copy keeps off.
                let mut p = PodRequest::clone(&p);
                keep_off(&mut p, &off);
                Arc::new(p)
            })
            .collect();
        for (n, pods) in input.nodes.iter_mut().zip(self.nodes) {
            if let Some(pods) = pods {
                n.pods = pods;
            }
        }
        for (n, pods) in input.in_flight.iter_mut().zip(self.in_flight) {
            n.pods = pods;
        }
        snap
    }
}

/// Everything of the snapshot but the pods, which come back as the state's shared conversions.
fn build_shared(
    state: &ClusterState,
    pools: &[Arc<NodePool>],
    mut types: BTreeMap<String, Arc<Vec<InstanceType>>>,
    now: Timestamp,
    with_pending: bool,
    mut cache: Option<&mut NodeCache>,
) -> (Snapshot, SharedPods) {
    let lease = cache
        .as_deref_mut()
        .map(NodeCache::lease)
        .unwrap_or_default();
    let mut snap = Snapshot {
        lease,
        ..Snapshot::default()
    };
    let mut shared = SharedPods {
        pending: Vec::new(),
        nodes: Vec::new(),
        in_flight: Vec::new(),
    };
    let input = &mut snap.input;
    let skipped = std::cell::RefCell::new(Vec::new());
    // A pod as the solver reads it; an unreadable one is skipped with its conversion error.
    let domain_pod = |pod: &LeanPod| -> Option<Arc<PodRequest>> {
        if let Some(p) = pod.request() {
            return Some(p.clone());
        }
        if let Some(Err(err)) = pod.unreadable().map(convert::pod) {
            skipped.borrow_mut().push(err);
        }
        None
    };
    let pending = if with_pending {
        state.pending_pods(now)
    } else {
        Vec::new()
    };
    for pod in pending {
        if let Some(p) = domain_pod(&pod) {
            let off = rejected_requirements(state, pod.key(), &p);
            shared.pending.push((p, off));
            snap.pending.insert(pod.key().to_string(), pod);
        }
    }
    // Pods nominated to each claim that are not bound yet.
    let nominated = |claim: &str| -> Vec<Arc<PodRequest>> {
        state
            .nominated_to_iter(claim)
            .filter(|k| state.is_nominated(k, now))
            .filter_map(|k| state.pod(k))
            .filter(|p| p.node_name().is_none())
            .filter_map(|p| domain_pod(&p))
            .collect()
    };
    if let Some(cache) = cache.as_deref_mut() {
        cache.retain(state);
    }
    for arc_node in state.nodes() {
        let name = arc_node.metadata.name.as_deref().unwrap_or_default();
        let mut pods: Vec<Arc<PodRequest>> = state
            .pods_on_node_iter(name)
            .filter(|p| !p.is_terminal())
            .filter_map(|p| domain_pod(p))
            .collect();
        let claim = state.claim_for_node(arc_node);
        if let Some(c) = &claim {
            pods.extend(nominated(c.metadata.name.as_deref().unwrap_or_default()));
        }
        let unschedulable = |node: &Node| {
            let disrupted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == labels::DISRUPTED_TAINT_KEY));
            node.metadata.deletion_timestamp.is_some()
                || disrupted
                || claim
                    .as_ref()
                    .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        };
        let initialized = claim.as_ref().is_none_or(|c| c.is_true(INITIALIZED));
        let cache = cache.as_deref_mut().filter(|_| initialized);
        if let Some(cache) = cache {
            let unschedulable = unschedulable(arc_node);
            if let Some(n) = cache.take(arc_node, &pods, unschedulable, lease) {
                input.nodes.push(n);
                shared.nodes.push(None);
                continue;
            }
            cache.lend(arc_node, &pods, unschedulable, lease);
        }
        let uninitialized;
        let node = match &claim {
            Some(c) if !c.is_true(INITIALIZED) => {
                uninitialized = without_startup_taints(arc_node, c, state);
                &uninitialized
            }
            _ => &**arc_node,
        };
        match convert::node(node, Vec::new()) {
            Ok(mut n) => {
                if unschedulable(node) {
                    n.unschedulable = true;
                }
                input.nodes.push(n);
                shared.nodes.push(Some(pods));
            }
            Err(err) => skipped.borrow_mut().push(err),
        }
    }
    for claim in state.claims() {
        if claim.metadata.deletion_timestamp.is_some() || state.claim_node(claim).is_some() {
            continue;
        }
        input.in_flight.push(in_flight_node(claim, Vec::new()));
        shared.in_flight.push(nominated(&claim.name_any()));
    }
    // Nodes and in-flight claims side by side while usage is counted (moved, not cloned: a
    // clone copied every bound pod of the cluster once more per solve).
    let registered = input.nodes.len();
    input.nodes.append(&mut input.in_flight);
    let all = std::mem::take(&mut input.nodes);
    for pool in pools {
        let name = pool.name_any();
        let Some(list) = types.remove(&name) else {
            continue;
        };
        let usage = convert::pool_usage(&name, &all);
        match convert::nodepool(pool, usage) {
            Ok(mut p) => {
                p.instance_types = Some(list);
                input.nodepools.push(p);
            }
            Err(err) => skipped.borrow_mut().push(err),
        }
    }
    // Scopes count every pool of the cluster, also those that cannot buy now.
    let every_pool: Vec<&NodePool> = state.nodepools().map(|p| &**p).collect();
    convert::resolve_capacity_scopes(&mut input.nodepools, &every_pool, &all);
    input.nodes = all;
    input.in_flight = input.nodes.split_off(registered);
    for ds in state.daemonsets() {
        match convert::daemonset(ds) {
            Ok(d) => input.daemonsets.push(d),
            Err(err) => skipped.borrow_mut().push(err),
        }
    }
    snap.skipped = skipped.into_inner();
    (snap, shared)
}

/// A registered Node whose claim is not `Initialized` yet, as it will be once it is: without
/// the startup taints of its claim and NodePool and without the taints every node carries while
/// it comes up ([`EPHEMERAL_TAINTS`]). Read as real, they would make its capacity look useless
/// to the pending pods, and a restarted controller would buy it again.
fn without_startup_taints(node: &Node, claim: &NodeClaim, state: &ClusterState) -> Node {
    let pool = claim.nodepool_name().and_then(|p| state.nodepool(p));
    let startup: Vec<&Taint> = claim
        .spec
        .startup_taints
        .iter()
        .chain(
            pool.iter()
                .flat_map(|p| p.spec.template.spec.startup_taints.iter()),
        )
        .collect();
    let mut node = node.clone();
    if let Some(taints) = node.spec.as_mut().and_then(|s| s.taints.as_mut()) {
        taints.retain(|t| {
            !EPHEMERAL_TAINTS.contains(&t.key.as_str())
                && !startup
                    .iter()
                    .any(|s| s.key == t.key && s.effect == t.effect)
        });
    }
    node
}

/// The Nodes a pod was nominated to and did not schedule on (see
/// [`ClusterState::failed_nominations`]), as requirements: off their hostnames (the solver's
/// model of them was wrong once already), and, for each required topology spread of the pod over
/// another key (zone), off their values of that key. kube-scheduler refuses a spread pod for a
/// whole domain at once (its count against the global minimum), so another node bought in the
/// same zone would be refused the same way: without this, every failed nomination bought one
/// more node there (seed-full: ~860 nodes for api pods the scheduler refused for spread).
fn rejected_requirements(state: &ClusterState, key: &str, pod: &PodRequest) -> Vec<Requirement> {
    let Some(rejected) = state.rejected_nodes(key).filter(|r| !r.is_empty()) else {
        return Vec::new();
    };
    let hostnames: Vec<String> = rejected
        .iter()
        .map(|n| {
            state
                .node(n)
                .and_then(|node| node.labels().get(labels::HOSTNAME).cloned())
                .unwrap_or_else(|| n.clone())
        })
        .collect();
    let mut out = vec![Requirement::not_in(labels::HOSTNAME, hostnames)];
    for spread in &pod.topology_spread {
        if spread.when_unsatisfiable != stowage_solver::WhenUnsatisfiable::DoNotSchedule
            || spread.topology_key == labels::HOSTNAME
            || out.iter().any(|r| r.key == spread.topology_key)
        {
            continue;
        }
        let values: std::collections::BTreeSet<String> = rejected
            .iter()
            .filter_map(|n| state.node(n)?.labels().get(&spread.topology_key).cloned())
            .collect();
        if !values.is_empty() {
            out.push(Requirement::not_in(&spread.topology_key, values));
        }
    }
    out
}

/// Adds `off` ([`rejected_requirements`]) to every required node-affinity term of `pod`.
fn keep_off(pod: &mut PodRequest, off: &[Requirement]) {
    if pod.required_node_affinity.is_empty() {
        pod.required_node_affinity
            .push(stowage_solver::NodeAffinityTerm::labels(off.to_vec()));
    } else {
        for term in &mut pod.required_node_affinity {
            term.requirements.extend(off.iter().cloned());
        }
    }
}

/// An in-flight claim as a node: the labels it will have (its own plus single-valued `In`
/// requirements), its taints, the allocatable it will have (the instance's once launched, its
/// requests before) and the pods nominated to it.
pub fn in_flight_node(claim: &NodeClaim, pods: Vec<Arc<PodRequest>>) -> ExistingNode {
    let name = claim.name_any();
    let mut node_labels: BTreeMap<String, String> = claim.labels().clone();
    for r in &claim.spec.requirements {
        if r.operator == Operator::In && r.values.len() == 1 {
            node_labels
                .entry(r.key.clone())
                .or_insert_with(|| r.values[0].clone());
        }
    }
    node_labels.insert(labels::HOSTNAME.to_string(), name.clone());
    let taints = claim
        .spec
        .taints
        .iter()
        .filter_map(|t| convert::taint(&format!("NodeClaim {name}"), "spec.taints", t).ok())
        .collect();
    let mut allocatable = Resources::new();
    let alloc = claim
        .status
        .as_ref()
        .map(|s| &s.allocatable)
        .filter(|a| !a.is_empty());
    match alloc {
        Some(a) => {
            for (k, q) in a {
                if let Ok(v) = parse_resource(k, &q.0) {
                    allocatable.set(k.clone(), v);
                }
            }
        }
        None => allocatable = claim_resources(claim),
    }
    ExistingNode {
        name,
        labels: node_labels,
        taints,
        capacity: claim_resources(claim),
        allocatable,
        pods,
        nodepool: claim.nodepool_name().map(str::to_string),
        capacity_type: claim_capacity_type(claim),
        instance_type: claim.label(labels::INSTANCE_TYPE).map(str::to_string),
        price_per_hour: None,
        unschedulable: false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    };

    use super::*;
    use crate::fixtures::*;

    /// A pod as the DaemonSet controller creates it: owned by the DaemonSet, pinned to `node`
    /// with `matchFields` on `metadata.name`.
    fn daemon_pod(name: &str, node: &str) -> Pod {
        let mut p = owned_by(pending_pod("kube-system", name, "250m"), "DaemonSet");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn daemonset_pods_pinned_by_name_count_on_their_node_and_are_not_bought_for() {
        let mut state = ClusterState::new();
        state.apply_node(node("n1", "fake:///n1", true));
        state.apply_pod(bound(daemon_pod("agent-a", "n1"), "n1"));
        // Not placed yet (the node is full, or gone): the DaemonSet controller's business.
        state.apply_pod(daemon_pod("agent-b", "n2"));
        state.apply_pod(pending_pod("default", "web", "1"));
        let snap = build(&state, &[], BTreeMap::new(), ts("2026-01-01T00:00:00Z"));
        assert!(snap.skipped.is_empty(), "{:?}", snap.skipped);
        let keys: Vec<String> = snap.input.pods.iter().map(|p| p.key()).collect();
        assert_eq!(keys, ["default/web"]);
        let n1 = &snap.input.nodes[0];
        assert_eq!(n1.pods.len(), 1);
        assert_eq!(n1.pods[0].key(), "kube-system/agent-a");
        assert_eq!(n1.requested().cpu_millis(), 250);
    }

    fn state_with_registered_node(initialized: bool) -> ClusterState {
        let mut s = ClusterState::new();
        let mut c = launched(claim("c1", "pool"), "fake:///z/i-1");
        c.spec.startup_taints = vec![taint("example.com/agent", "NoSchedule")];
        c.spec.taints = vec![taint("dedicated", "NoSchedule")];
        if initialized {
            c.status_mut()
                .set_true(INITIALIZED, "Initialized", ts("2026-01-01T00:01:00Z"));
        }
        s.apply_claim(c);
        let mut n = node("n1", "fake:///z/i-1", true);
        n.spec.as_mut().unwrap().taints = Some(vec![
            taint("example.com/agent", "NoSchedule"),
            taint("example.com/pool-agent", "NoSchedule"),
            taint("node.kubernetes.io/not-ready", "NoSchedule"),
            taint("dedicated", "NoSchedule"),
        ]);
        s.apply_node(n);
        let mut pool = NodePool::new("pool", Default::default());
        pool.spec.template.spec.startup_taints =
            vec![taint("example.com/pool-agent", "NoSchedule")];
        s.apply_nodepool(pool);
        s
    }

    fn taint_keys(snap: &Snapshot) -> Vec<String> {
        snap.input.nodes[0]
            .taints
            .iter()
            .map(|t| t.key.clone())
            .collect()
    }

    #[test]
    fn a_registered_node_not_initialized_is_modelled_without_its_startup_taints() {
        let now = ts("2026-01-01T00:02:00Z");
        let s = state_with_registered_node(false);
        let snap = build(&s, &[], BTreeMap::new(), now);
        assert_eq!(taint_keys(&snap), vec!["dedicated"]);
        // Once initialized, whatever taint is left is real.
        let s = state_with_registered_node(true);
        let snap = build(&s, &[], BTreeMap::new(), now);
        assert_eq!(taint_keys(&snap).len(), 4);
    }

    #[test]
    fn a_state_given_up_gives_the_input_a_borrowed_one_gives() {
        let now = ts("2026-01-01T00:02:00Z");
        let make = || {
            let mut s = state_with_registered_node(true);
            s.apply_pod(pending_pod("default", "a", "1"));
            s.apply_pod(pending_pod("default", "b", "1"));
            s.apply_pod(bound(pending_pod("default", "c", "1"), "n1"));
            s.nomination_failed("default/a", "n1");
            s.apply_claim(claim("c2", "pool"));
            s.nominate(
                ["default/b".to_string()],
                "c2",
                now,
                ts("2026-01-01T00:03:00Z"),
            );
            s
        };
        let shared = build(&make(), &[], BTreeMap::new(), now);
        let owned = build_owned(make(), &[], BTreeMap::new(), now);
        assert_eq!(owned.input, shared.input);
        let keys = |pods: &[Arc<PodRequest>]| pods.iter().map(|p| p.key()).collect::<Vec<_>>();
        assert_eq!(keys(&shared.input.pods), ["default/a"]);
        assert!(!shared.input.pods[0].required_node_affinity.is_empty());
        assert_eq!(keys(&shared.input.nodes[0].pods), ["default/c"]);
        assert_eq!(keys(&shared.input.in_flight[0].pods), ["default/b"]);
    }

    /// The input holds the state's conversions, not copies: only a pod the snapshot keeps off
    /// a node (its requirements changed) is a copy, and the state's stays as it was.
    #[test]
    fn the_input_shares_the_state_conversions() {
        let now = ts("2026-01-01T00:02:00Z");
        let mut s = state_with_registered_node(true);
        s.apply_pod(pending_pod("default", "a", "1"));
        s.apply_pod(pending_pod("default", "b", "1"));
        s.apply_pod(bound(pending_pod("default", "c", "1"), "n1"));
        s.nomination_failed("default/b", "n1");
        let snap = build(&s, &[], BTreeMap::new(), now);
        let state_pod = |k: &str| s.pod(k).unwrap().request().unwrap().clone();
        let input_pod = |k: &str| {
            snap.input
                .pods
                .iter()
                .chain(&snap.input.nodes[0].pods)
                .find(|p| p.key() == k)
                .unwrap()
                .clone()
        };
        assert!(Arc::ptr_eq(
            &input_pod("default/a"),
            &state_pod("default/a")
        ));
        assert!(Arc::ptr_eq(
            &input_pod("default/c"),
            &state_pod("default/c")
        ));
        assert!(!Arc::ptr_eq(
            &input_pod("default/b"),
            &state_pod("default/b")
        ));
        assert!(!input_pod("default/b").required_node_affinity.is_empty());
        assert!(state_pod("default/b").required_node_affinity.is_empty());
    }

    #[test]
    fn a_pod_is_kept_off_the_node_it_did_not_schedule_on() {
        let now = ts("2026-01-01T00:02:00Z");
        let mut s = state_with_registered_node(true);
        s.apply_pod(pending_pod("default", "a", "1"));
        s.nomination_failed("default/a", "n1");
        let snap = build(&s, &[], BTreeMap::new(), now);
        let pod = &snap.input.pods[0];
        assert_eq!(
            pod.required_node_affinity,
            vec![stowage_solver::NodeAffinityTerm::labels(vec![
                Requirement::not_in(labels::HOSTNAME, ["n1"])
            ])]
        );
    }

    /// A pod refused by the scheduler on its nominated Node keeps off that Node's zone too when
    /// it spreads over zones: the scheduler refuses a whole zone at once (its count against the
    /// global minimum), so another node there would be bought in vain.
    #[test]
    fn a_spread_pod_is_kept_off_the_zone_of_the_node_it_did_not_schedule_on() {
        let now = ts("2026-01-01T00:02:00Z");
        let mut s = state_with_registered_node(true);
        let mut n1 = Node::clone(&s.node("n1").unwrap());
        n1.metadata
            .labels
            .get_or_insert_default()
            .insert(labels::ZONE.into(), "zone-a".into());
        s.apply_node(n1);
        let mut p = pending_pod("default", "a", "1");
        p.metadata.labels = Some(BTreeMap::from([("app".into(), "api".into())]));
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![k8s_openapi::api::core::v1::TopologySpreadConstraint {
                max_skew: 2,
                topology_key: labels::ZONE.into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                        match_labels: Some(BTreeMap::from([("app".into(), "api".into())])),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            }]);
        s.apply_pod(p);
        s.nomination_failed("default/a", "n1");
        let snap = build(&s, &[], BTreeMap::new(), now);
        assert_eq!(
            snap.input.pods[0].required_node_affinity,
            vec![stowage_solver::NodeAffinityTerm::labels(vec![
                Requirement::not_in(labels::HOSTNAME, ["n1"]),
                Requirement::not_in(labels::ZONE, ["zone-a"]),
            ])]
        );
    }

    /// `build_bound` through a cache whose nodes were recycled: the input `build` gives, without
    /// its pending pods, after every kind of change a cached node can see.
    #[test]
    fn recycled_nodes_build_what_a_fresh_snapshot_builds() {
        let now = ts("2026-01-01T00:02:00Z");
        let mut s = state_with_registered_node(true);
        s.apply_node(node("n2", "fake:///z/i-2", true));
        s.apply_pod(pending_pod("default", "p", "1"));
        s.apply_pod(bound(pending_pod("default", "a", "1"), "n1"));
        let mut cache = NodeCache::default();
        let check = |s: &ClusterState, cache: &mut NodeCache| {
            let mut want = build(s, &[], BTreeMap::new(), now).input;
            want.pods.clear();
            let got = build_bound(s, &[], BTreeMap::new(), now, cache);
            assert!(got.pending.is_empty());
            assert_eq!(got.input, want);
            let mut input = got.input;
            // What a disruption round does to the nodes it was lent.
            for n in &mut input.nodes {
                n.price_per_hour = Some(1.0);
            }
            cache.recycle(input, got.lease);
        };
        check(&s, &mut cache);
        check(&s, &mut cache);
        // A pod bound, one updated in place, one gone.
        s.apply_pod(bound(pending_pod("default", "b", "500m"), "n2"));
        check(&s, &mut cache);
        s.apply_pod(bound(pending_pod("default", "a", "2"), "n1"));
        check(&s, &mut cache);
        s.delete_pod("default/b");
        check(&s, &mut cache);
        // The node changed (tainted disrupted), its claim deleted, a node gone.
        let mut n = (*s.node("n1").unwrap()).clone();
        n.spec
            .as_mut()
            .unwrap()
            .taints
            .get_or_insert_default()
            .push(taint(labels::DISRUPTED_TAINT_KEY, "NoSchedule"));
        s.apply_node(n);
        check(&s, &mut cache);
        let mut c = (*s.claim("c1").unwrap()).clone();
        c.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        s.apply_claim(c);
        check(&s, &mut cache);
        s.delete_node("n2");
        check(&s, &mut cache);
        assert_eq!(cache.nodes.len(), 1);
    }

    /// Two inputs holding one cache's nodes at once (a disruption round's and a provisioning
    /// pass's): the node changes between the two snapshots and the older input comes back
    /// while the later is still out; the cache keeps what the later snapshot built, not the
    /// older copy.
    #[test]
    fn an_input_given_back_after_a_later_lending_does_not_replace_its_nodes() {
        let now = ts("2026-01-01T00:02:00Z");
        let mut s = state_with_registered_node(true);
        s.apply_pod(bound(pending_pod("default", "a", "1"), "n1"));
        let mut cache = NodeCache::default();
        let first = build_bound(&s, &[], BTreeMap::new(), now, &mut cache);
        // Meanwhile a pod is bound to n1 and a second snapshot is taken.
        s.apply_pod(bound(pending_pod("default", "b", "500m"), "n1"));
        let second = build_cached(&s, &[], BTreeMap::new(), now, &mut cache);
        assert_ne!(first.lease, second.lease);
        assert_ne!(first.input.nodes, second.input.nodes);
        cache.recycle(first.input, first.lease);
        cache.recycle(second.input, second.lease);
        let mut want = build(&s, &[], BTreeMap::new(), now).input;
        want.pods.clear();
        let again = build_bound(&s, &[], BTreeMap::new(), now, &mut cache);
        assert_eq!(again.input, want);
    }
}
