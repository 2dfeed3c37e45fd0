//! Cheap consolidation probes: the same plan as [`crate::simulate_without`] on the same
//! candidates, on a smaller input prepared once per round.
//!
//! [`Prepared::new`] looks at the whole cluster once:
//! - the topology groups any probe can see (terms of the pending pods and of the candidates'
//!   pods, required anti-affinity of running pods) decide which running pods matter one by one;
//! - every other pod of a node is folded into one aggregate pod carrying their summed requests
//!   and host ports, the node's `pods` allocatable lowered by the pods folded away, so the node
//!   has exactly the room it had (40,000 running pods become ~3,200 aggregates);
//! - node labels are cut to the keys the movable pods can read (selectors, node affinity,
//!   topology keys, the well-known ones): a requirement reads only its own key;
//! - the pools share the catalogue through one `Arc` (no per-probe copy of it).
//!
//! A probe then places the pending pods plus the candidates' pods on the prepared nodes
//! (minus the candidates), borrowed, not copied (`solve::solve_on_base`). When every topology key
//! in play is the hostname (or none is), a node with no pod that matters and too little room
//! for the probe's smallest pod is left out: the solve could never use it. (Zone and label keys
//! are left alone: a node the class could statically use makes its zone a domain whatever its
//! room, see `topology::class_domains`.)
//!
//! Exactness: the solve reads running pods only through the node's summed requests, pod count
//! and host ports (fit), the topology groups that select them and their required
//! anti-affinity (counts), and, with a spot blast radius, their workload; pods are folded only
//! when none of these can tell. Tests compare with `simulate_without` on seeded random clusters.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use stowage_api::labels;

use crate::domain::{
    ExistingNode, LabelSelector, Plan, PodAffinityTerm, PodRequest, SolveInput, SolveOptions,
    TaintEffect,
};
use crate::hash::FastSet;
use crate::model::{Resources, resource};
use crate::predicates::GroupKey;
use crate::solve::{Base, SharedCatalog, solve_on_base};

/// The namespace of aggregate pods: not a valid Kubernetes namespace, so no real pod has it.
const AGGREGATE_NAMESPACE: &str = "stowage.dev/aggregate";
/// Kubelet's default when a node does not say (as the solve assumes).
const DEFAULT_MAX_PODS: i64 = 110;

/// A round's cluster, prepared for many probes.
pub(super) struct Prepared<'a> {
    input: &'a SolveInput,
    /// `input.nodes` then `input.in_flight`, running pods folded where it is exact.
    nodes: Vec<ExistingNode>,
    /// Per node: free (cpu, memory, pod slots) when it may be left out of a probe that cannot
    /// use it; `None`: always kept.
    free: Vec<Option<[i64; 3]>>,
    /// Pools with the shared catalogue.
    pools: Vec<crate::domain::PoolSpec>,
    /// Node name -> index in `nodes`.
    index: HashMap<&'a str, usize>,
    /// Ids, quantity vectors and running pods' counts of `nodes`, for every probe.
    base: Base,
    /// The pools' instance types as the solve reads them (daemonset overhead, offerings),
    /// built once over the base's ids; each probe takes it with fresh budgets.
    catalog: SharedCatalog<'a>,
}

impl<'a> Prepared<'a> {
    /// Prepares `input` for probes that remove some of `candidates` (node names).
    pub(super) fn new<'c>(
        input: &'a SolveInput,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> Self {
        let all: Vec<&ExistingNode> = input.nodes.iter().chain(&input.in_flight).collect();
        let index: HashMap<&str, usize> = all
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut movable: Vec<&PodRequest> = input.pods.iter().map(|p| &**p).collect();
        for name in candidates {
            if let Some(&i) = index.get(name) {
                movable.extend(all[i].pods.iter().map(|p| &**p));
            }
        }
        let terms = Terms::of(&movable, &all);
        let blast = input
            .nodepools
            .iter()
            .any(|p| p.spot_max_pods_per_workload.is_some());
        let aggregate_probe = PodRequest::new(AGGREGATE_NAMESPACE, "probe");
        let fold = !blast && !terms.groups.iter().any(|g| g.selects(&aggregate_probe));
        let keeps = |p: &PodRequest| {
            !p.pod_anti_affinity.is_empty() || terms.groups.iter().any(|g| g.selects(p))
        };
        let label_keys = label_keys(&movable, &terms);
        let mut nodes = Vec::with_capacity(all.len());
        let mut free = Vec::with_capacity(all.len());
        for (i, n) in all.iter().enumerate() {
            let (node, plain) = if fold {
                fold_node(n, &keeps, &label_keys)
            } else {
                (copy_node(n, n.pods.clone(), &label_keys), false)
            };
            let prunable = terms.hostname_only
                && plain
                && i < input.nodes.len()
                && !node
                    .taints
                    .iter()
                    .any(|t| t.effect == TaintEffect::PreferNoSchedule);
            free.push(prunable.then(|| room(&node)));
            nodes.push(node);
        }
        let shared = Arc::new(input.instance_types.clone());
        let pools: Vec<crate::domain::PoolSpec> = input
            .nodepools
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if p.instance_types.is_none() {
                    p.instance_types = Some(Arc::clone(&shared));
                }
                p
            })
            .collect();
        let base = Base::new(
            &probe_input(input, &pools, input.pods.clone()),
            &nodes,
            &movable,
        );
        // From the round's input: the same pools (but for the shared catalogue `Arc`), types
        // and daemonsets as each probe's input.
        let catalog = SharedCatalog::for_base(input, &base);
        Prepared {
            input,
            nodes,
            free,
            pools,
            index,
            base,
            catalog,
        }
    }

    /// The plan of removing `candidates`: equal to `simulate_without(input, candidates, ..)`.
    pub(super) fn simulate(&self, candidates: &[&str], options: &SolveOptions) -> Plan {
        let gone: HashSet<usize> = candidates
            .iter()
            .filter_map(|c| self.index.get(c).copied())
            .collect();
        let mut pods = self.input.pods.clone();
        // In node order, as `simulate_without` adds them.
        let mut order: Vec<usize> = gone.iter().copied().collect();
        order.sort_unstable();
        let nodes_len = self.input.nodes.len();
        for &i in &order {
            let n = if i < nodes_len {
                &self.input.nodes[i]
            } else {
                &self.input.in_flight[i - nodes_len]
            };
            pods.extend(
                n.pods
                    .iter()
                    .filter(|p| !super::leaves_with_node(p))
                    .cloned(),
            );
        }
        let smallest = smallest_request(&pods);
        let keep = |i: usize| {
            !gone.contains(&i)
                && self.free[i].is_none_or(|f| {
                    f[0] >= smallest[0] && f[1] >= smallest[1] && f[2] >= smallest[2]
                })
        };
        let at: Vec<usize> = (0..self.nodes.len()).filter(|i| keep(*i)).collect();
        let named = at.partition_point(|i| *i < nodes_len);
        let nodes: Vec<&ExistingNode> = at[..named].iter().map(|i| &self.nodes[*i]).collect();
        let in_flight: Vec<&ExistingNode> = at[named..].iter().map(|i| &self.nodes[*i]).collect();
        let sim = probe_input(self.input, &self.pools, pods);
        solve_on_base(
            &sim,
            nodes,
            &in_flight,
            &self.base,
            &self.catalog,
            &at,
            options,
        )
    }
}

/// A probe's input: `pods` with the round's pools (sharing one catalogue) and daemonsets; the
/// nodes are given apart.
fn probe_input(
    input: &SolveInput,
    pools: &[crate::domain::PoolSpec],
    pods: Vec<Arc<PodRequest>>,
) -> SolveInput {
    SolveInput {
        pods,
        nodes: Vec::new(),
        in_flight: Vec::new(),
        nodepools: pools.to_vec(),
        instance_types: Vec::new(),
        daemonsets: input.daemonsets.clone(),
    }
}

/// The node label keys a probe can read: those the movable pods' node selectors, node
/// affinity (required and preferred) and topology terms name, and the well-known ones. A
/// requirement on a key reads only that key, so the other labels cannot change a match.
fn label_keys<'p>(movable: &[&'p PodRequest], terms: &'p Terms) -> FastSet<&'p str> {
    let mut keys: FastSet<&str> = [
        labels::HOSTNAME,
        labels::ZONE,
        labels::CAPACITY_TYPE,
        labels::NODEPOOL,
        labels::INSTANCE_TYPE,
    ]
    .into_iter()
    .collect();
    keys.extend(terms.keys.iter().map(String::as_str));
    for p in movable {
        keys.extend(p.node_selector.keys().map(String::as_str));
        for t in &p.required_node_affinity {
            keys.extend(t.requirements.iter().map(|r| r.key.as_str()));
        }
        for t in &p.preferred_node_affinity {
            keys.extend(t.requirements.iter().map(|r| r.key.as_str()));
        }
    }
    keys
}

/// The topology terms a probe can register.
struct Terms {
    groups: Vec<GroupKey>,
    /// Their topology keys.
    keys: HashSet<String>,
    /// True when every term counts per node (or there is none).
    hostname_only: bool,
}

impl Terms {
    /// Terms of the pods that may be placed and required anti-affinity of running pods.
    fn of(movable: &[&PodRequest], nodes: &[&ExistingNode]) -> Terms {
        let mut groups: FastSet<GroupKey> = FastSet::default();
        let mut keys: HashSet<String> = HashSet::new();
        let mut add =
            |ns: Option<BTreeSet<String>>, selector: Option<&LabelSelector>, key: &str| {
                if !keys.contains(key) {
                    keys.insert(key.to_string());
                }
                if let Some(selector) = selector {
                    groups.insert(GroupKey {
                        namespaces: ns,
                        selector: selector.clone(),
                    });
                }
            };
        // A term met before adds nothing (replicas repeat their terms): not built again.
        type Seen<'p, N> = FastSet<(N, Option<&'p LabelSelector>, &'p str)>;
        let mut seen_spreads: Seen<'_, &str> = FastSet::default();
        let mut seen_terms: Seen<'_, Option<&BTreeSet<String>>> = FastSet::default();
        fn term_key(
            t: &PodAffinityTerm,
        ) -> (Option<&BTreeSet<String>>, Option<&LabelSelector>, &str) {
            (
                t.namespaces.as_ref(),
                t.label_selector.as_ref(),
                t.topology_key.as_str(),
            )
        }
        for p in movable {
            for s in &p.topology_spread {
                if seen_spreads.insert((
                    p.namespace.as_str(),
                    s.label_selector.as_ref(),
                    s.topology_key.as_str(),
                )) {
                    add(
                        Some([p.namespace.clone()].into()),
                        s.label_selector.as_ref(),
                        &s.topology_key,
                    );
                }
            }
            let terms = p
                .pod_affinity
                .iter()
                .chain(&p.pod_anti_affinity)
                .chain(p.preferred_pod_affinity.iter().map(|w| &w.term))
                .chain(p.preferred_pod_anti_affinity.iter().map(|w| &w.term));
            for t in terms {
                if seen_terms.insert(term_key(t)) {
                    add(
                        t.namespaces.clone(),
                        t.label_selector.as_ref(),
                        &t.topology_key,
                    );
                }
            }
        }
        for p in nodes.iter().flat_map(|n| &n.pods) {
            for t in &p.pod_anti_affinity {
                if seen_terms.insert(term_key(t)) {
                    add(
                        t.namespaces.clone(),
                        t.label_selector.as_ref(),
                        &t.topology_key,
                    );
                }
            }
        }
        Terms {
            groups: groups.into_iter().collect(),
            hostname_only: keys.iter().all(|k| k == labels::HOSTNAME),
            keys,
        }
    }
}

/// `n` with every pod `keeps` rejects folded into one aggregate pod. Unchanged but for its
/// labels when fewer than two pods fold or the node's pod slots would not survive it. Either
/// way it keeps only the labels under `label_keys`. Also whether no pod of the result is kept
/// (`keeps` is asked once per pod: it matches the pod against every topology group).
fn fold_node(
    n: &ExistingNode,
    keeps: &impl Fn(&PodRequest) -> bool,
    label_keys: &FastSet<&str>,
) -> (ExistingNode, bool) {
    let kept: Vec<bool> = n.pods.iter().map(|p| keeps(p)).collect();
    let folding = kept.iter().filter(|k| !**k).count();
    let slots = match n.allocatable.get(resource::PODS) {
        0 => DEFAULT_MAX_PODS,
        s => s,
    };
    let slots_after = slots - (folding as i64 - 1);
    if folding < 2 || slots_after <= 0 {
        return (
            copy_node(n, n.pods.clone(), label_keys),
            folding == n.pods.len(),
        );
    }
    let mut aggregate = PodRequest::new(AGGREGATE_NAMESPACE, &n.name);
    let mut requests = Resources::new();
    let mut pods = Vec::with_capacity(n.pods.len() - folding + 1);
    for (p, kept) in n.pods.iter().zip(&kept) {
        if *kept {
            pods.push(p.clone());
        } else {
            requests.add(&p.requests);
            aggregate.host_ports.extend(p.host_ports.iter().cloned());
        }
    }
    requests.set(resource::PODS, 0);
    aggregate.requests = requests;
    let plain = folding == n.pods.len() && !keeps(&aggregate);
    pods.push(Arc::new(aggregate));
    let mut out = copy_node(n, pods, label_keys);
    out.allocatable.set(resource::PODS, slots_after);
    (out, plain)
}

/// `n` with `pods`, its labels cut to `label_keys`.
fn copy_node(
    n: &ExistingNode,
    pods: Vec<Arc<PodRequest>>,
    label_keys: &FastSet<&str>,
) -> ExistingNode {
    ExistingNode {
        name: n.name.clone(),
        labels: n
            .labels
            .iter()
            .filter(|(k, _)| label_keys.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        taints: n.taints.clone(),
        allocatable: n.allocatable.clone(),
        capacity: n.capacity.clone(),
        pods,
        nodepool: n.nodepool.clone(),
        capacity_type: n.capacity_type,
        instance_type: n.instance_type.clone(),
        price_per_hour: n.price_per_hour,
        unschedulable: n.unschedulable,
    }
}

/// Free (cpu, memory, pod slots) of a node as the solve sees it.
fn room(n: &ExistingNode) -> [i64; 3] {
    let used = n.requested();
    let slots = match n.allocatable.get(resource::PODS) {
        0 => DEFAULT_MAX_PODS,
        s => s,
    };
    [
        n.allocatable.cpu_millis() - used.cpu_millis(),
        n.allocatable.memory_bytes() - used.memory_bytes(),
        slots - n.pods.len() as i64,
    ]
}

/// The smallest (cpu, memory, pod slots) any of `pods` needs.
fn smallest_request(pods: &[Arc<PodRequest>]) -> [i64; 3] {
    let mut m = [i64::MAX, i64::MAX, 1];
    for p in pods {
        m[0] = m[0].min(p.requests.cpu_millis());
        m[1] = m[1].min(p.requests.memory_bytes());
    }
    m
}

#[cfg(test)]
mod tests {
    //! The prepared probe against a from-scratch `simulate_without` on seeded random clusters.

    use super::*;
    use crate::catalog::{ZONES, aws_like};
    use crate::domain::{LabelSelector, NodeTaint, PodAffinityTerm, PoolSpec, WhenUnsatisfiable};
    use crate::simulate_without;
    use stowage_api::requirements::Requirement;

    /// SplitMix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random pod: sizes from a small menu (so classes form), sometimes a zone or hostname
    /// spread, self anti-affinity, a host port, a node selector, a capacity-type pin.
    fn pod(rng: &mut Rng, name: &str, exotic: bool) -> PodRequest {
        let app = ["web", "api", "batch", "cache"][rng.below(4) as usize];
        let ns = ["default", "team"][rng.below(2) as usize];
        let mut p = PodRequest::new(ns, name)
            .label("app", app)
            .cpu_millis([100, 250, 500, 1000, 2000][rng.below(5) as usize])
            .memory_mib([128, 512, 1024, 4096][rng.below(4) as usize]);
        p.owner = Some(format!("ReplicaSet/{app}"));
        if exotic {
            match rng.below(8) {
                0 => p = p.spread(labels::ZONE, 1, WhenUnsatisfiable::DoNotSchedule),
                1 => p = p.spread(labels::HOSTNAME, 1, WhenUnsatisfiable::ScheduleAnyway),
                2 => p = p.self_anti_affinity(labels::HOSTNAME),
                3 => p = p.host_port(8080),
                4 => p = p.node_selector(labels::CAPACITY_TYPE, "on-demand"),
                5 => p = p.node_selector("team", "a"),
                6 => {
                    p.pod_affinity.push(PodAffinityTerm {
                        label_selector: Some(LabelSelector::labels([("app", "cache")])),
                        topology_key: labels::ZONE.into(),
                        namespaces: None,
                    });
                }
                _ => {}
            }
        }
        p
    }

    fn cluster(seed: u64) -> SolveInput {
        let mut rng = Rng(seed);
        let types = aws_like();
        let exotic = rng.below(2) == 0;
        let mut nodes = Vec::new();
        for i in 0..(4 + rng.below(14)) {
            let ty = &types[rng.below(types.len() as u64) as usize];
            if ty.allocatable().cpu_millis() > 64_000 {
                continue;
            }
            let name = format!("n{i}");
            let spot = rng.below(2) == 0;
            let ct = if spot {
                stowage_api::CapacityType::Spot
            } else {
                stowage_api::CapacityType::OnDemand
            };
            let zone = ZONES[rng.below(3) as usize];
            let pool = if rng.below(3) == 0 { "b" } else { "a" };
            let mut n = ExistingNode::new(&name, ty.allocatable());
            n.labels.extend(ty.labels.clone());
            n.labels.insert(labels::ZONE.into(), zone.into());
            n.labels
                .insert(labels::CAPACITY_TYPE.into(), ct.as_str().into());
            n.labels.insert(labels::NODEPOOL.into(), pool.into());
            if rng.below(4) == 0 {
                n.labels.insert("team".into(), "a".into());
            }
            if rng.below(10) == 0 {
                n.taints
                    .push(NodeTaint::new("soft", "x", TaintEffect::PreferNoSchedule));
            }
            n.unschedulable = rng.below(15) == 0;
            n.nodepool = Some(pool.into());
            n.capacity_type = Some(ct);
            n.instance_type = Some(ty.name.clone());
            n.price_per_hour = ty.cheapest_available().map(|o| o.price_per_hour);
            let mut agent = PodRequest::new("kube-system", &format!("agent-{name}")).cpu_millis(50);
            agent.owner = Some("DaemonSet/agent".into());
            n.pods.push(Arc::new(agent));
            let cap = n.allocatable.cpu_millis();
            let mut used = 50;
            for k in 0..rng.below(12) {
                let p = pod(&mut rng, &format!("{name}-p{k}"), exotic);
                if used + p.requests.cpu_millis() > cap * 9 / 10 {
                    break;
                }
                used += p.requests.cpu_millis();
                n.pods.push(Arc::new(p));
            }
            nodes.push(n);
        }
        let pending = (0..rng.below(4))
            .map(|k| Arc::new(pod(&mut rng, &format!("pending-{k}"), exotic)))
            .collect();
        let mut pool_b = PoolSpec::new("b").weight(10);
        if rng.below(3) == 0 {
            pool_b = pool_b.requirement(Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]));
        }
        if rng.below(4) == 0 {
            pool_b = pool_b.spot_blast_radius(2);
        }
        SolveInput {
            pods: pending,
            nodes,
            nodepools: vec![PoolSpec::new("a"), pool_b],
            instance_types: types,
            ..SolveInput::default()
        }
    }

    /// Plans `rounds` random subsets of `candidates` (all of the first round's draw) with
    /// the prepared probe and with `simulate_without`, asserts the plans equal (the
    /// unschedulable reasons whole when `whole_reasons`, else which pods), and returns each
    /// subset with `simulate_without`'s plan.
    fn compare_probes<'c>(
        input: &SolveInput,
        prepared: &Prepared<'_>,
        candidates: &[&'c str],
        rng: &mut Rng,
        rounds: usize,
        whole_reasons: bool,
        seed: u64,
    ) -> Vec<(Vec<&'c str>, Plan)> {
        let options = SolveOptions::default();
        (0..rounds)
            .map(|round| {
                let take = 1 + rng.below(candidates.len().max(1) as u64) as usize;
                let chosen: Vec<&str> = candidates
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0 || round == 0)
                    .take(take)
                    .collect();
                let fast = prepared.simulate(&chosen, &options);
                let slow = simulate_without(input, &chosen, &options);
                assert_eq!(fast.new_claims, slow.new_claims, "seed {seed} {chosen:?}");
                assert_eq!(
                    fast.existing_placements, slow.existing_placements,
                    "seed {seed} {chosen:?}"
                );
                if whole_reasons {
                    assert_eq!(
                        fast.unschedulable, slow.unschedulable,
                        "seed {seed} {chosen:?}"
                    );
                } else {
                    assert_eq!(
                        fast.unschedulable.keys().collect::<Vec<_>>(),
                        slow.unschedulable.keys().collect::<Vec<_>>(),
                        "seed {seed} {chosen:?}"
                    );
                }
                (chosen, slow)
            })
            .collect()
    }

    #[test]
    fn prepared_probes_plan_exactly_as_simulate_without() {
        let mut folded = 0;
        for seed in 0..120u64 {
            let input = cluster(seed);
            let mut rng = Rng(seed ^ 0xabcdef);
            let names: Vec<&str> = input.nodes.iter().map(|n| n.name.as_str()).collect();
            let candidates: Vec<&str> = names
                .iter()
                .copied()
                .filter(|_| rng.below(3) != 0)
                .collect();
            let prepared = Prepared::new(&input, candidates.iter().copied());
            let pods = |nodes: &[ExistingNode]| nodes.iter().map(|n| n.pods.len()).sum::<usize>();
            folded += pods(&input.nodes) - pods(&prepared.nodes);
            compare_probes(&input, &prepared, &candidates, &mut rng, 4, false, seed);
        }
        // The folding was exercised, not skipped.
        assert!(folded > 100, "{folded}");
    }

    /// [`cluster`] widened: in-flight claims (some holding pods, some probed), pool limits that
    /// bind (the solve runs again, thrifty, on the same base), on-demand caps, a spot blast
    /// radius on either pool, pending zone spreads and anti-affinity, pods that select
    /// running ones.
    fn wide_cluster(seed: u64) -> SolveInput {
        let mut input = cluster(seed);
        let mut rng = Rng(seed ^ 0x5eed_0ff1);
        let types = aws_like();
        for i in 0..rng.below(4) {
            let ty = &types[rng.below(12) as usize];
            let zone = ZONES[rng.below(3) as usize];
            let ct = if rng.below(2) == 0 {
                stowage_api::CapacityType::Spot
            } else {
                stowage_api::CapacityType::OnDemand
            };
            let pool = if rng.below(2) == 0 { "a" } else { "b" };
            let name = format!("claim{i}");
            let mut n = ExistingNode::new(&name, ty.allocatable());
            n.labels.extend(ty.labels.clone());
            n.labels.insert(labels::ZONE.into(), zone.into());
            n.labels
                .insert(labels::CAPACITY_TYPE.into(), ct.as_str().into());
            n.labels.insert(labels::NODEPOOL.into(), pool.into());
            n.nodepool = Some(pool.into());
            n.capacity_type = Some(ct);
            n.instance_type = Some(ty.name.clone());
            n.price_per_hour = ty.cheapest_available().map(|o| o.price_per_hour);
            for k in 0..rng.below(3) {
                let p = pod(&mut rng, &format!("{name}-p{k}"), true);
                if p.requests.cpu_millis() * (k as i64 + 1) < n.allocatable.cpu_millis() {
                    n.pods.push(Arc::new(p));
                }
            }
            input.in_flight.push(n);
        }
        for k in 0..rng.below(3) {
            let mut p = pod(&mut rng, &format!("wide-{k}"), false);
            p = match rng.below(3) {
                0 => p.spread(labels::ZONE, 1, WhenUnsatisfiable::DoNotSchedule),
                1 => p.self_anti_affinity(labels::ZONE),
                _ => p.spread(labels::HOSTNAME, 1, WhenUnsatisfiable::DoNotSchedule),
            };
            input.pods.push(Arc::new(p));
        }
        let cpu_of = |pool: &str| -> i64 {
            input
                .nodes
                .iter()
                .chain(&input.in_flight)
                .filter(|n| n.nodepool.as_deref() == Some(pool))
                .map(|n| n.allocatable.cpu_millis())
                .sum()
        };
        let (cpu_a, cpu_b) = (cpu_of("a"), cpu_of("b"));
        let a = &mut input.nodepools[0];
        a.usage.resources.set(resource::CPU, cpu_a);
        a.usage.total_cpu_millis = cpu_a;
        a.usage.on_demand_cpu_millis = cpu_a / 2;
        match rng.below(4) {
            0 => {
                *a = a
                    .clone()
                    .limit(resource::CPU, cpu_a + 4_000 * rng.below(3) as i64)
            }
            1 => *a = a.clone().capacity_mix(2_000, 10 * rng.below(3) as u32),
            2 => *a = a.clone().spot_blast_radius(1 + rng.below(2) as u32),
            _ => {}
        }
        let b = &mut input.nodepools[1];
        b.usage.resources.set(resource::CPU, cpu_b);
        b.usage.total_cpu_millis = cpu_b;
        if rng.below(3) == 0 {
            *b = b
                .clone()
                .limit(resource::CPU, cpu_b + 2_000 * rng.below(3) as i64);
        }
        input
    }

    /// The prepared probe (one base per round, every probe on it) against a from-scratch
    /// `simulate_without` on [`wide_cluster`]s, in-flight claims among the candidates.
    #[test]
    fn prepared_probes_plan_exactly_on_wider_clusters() {
        let (mut with_claims, mut limited) = (0, 0);
        for seed in 0..240u64 {
            let input = wide_cluster(seed);
            let mut rng = Rng(seed ^ 0x1234_5678);
            let names: Vec<&str> = input
                .nodes
                .iter()
                .chain(&input.in_flight)
                .map(|n| n.name.as_str())
                .collect();
            let candidates: Vec<&str> = names
                .iter()
                .copied()
                .filter(|_| rng.below(3) != 0)
                .collect();
            let prepared = Prepared::new(&input, candidates.iter().copied());
            for (chosen, slow) in
                compare_probes(&input, &prepared, &candidates, &mut rng, 5, true, seed)
            {
                with_claims += usize::from(chosen.iter().any(|c| c.starts_with("claim")));
                limited += usize::from(
                    slow.unschedulable
                        .values()
                        .any(|r| r.contains("limit") || r.contains("on-demand")),
                );
            }
        }
        // In-flight candidates and binding limits were exercised, not skipped.
        assert!(with_claims > 50, "{with_claims}");
        assert!(limited > 5, "{limited}");
    }

    /// A round's decision on threads: the same command, simulation count and truncation as
    /// on one thread, with the cap left loose or binding, on [`cluster`]s and
    /// [`wide_cluster`]s.
    #[test]
    fn decisions_are_the_same_on_one_thread_and_several() {
        use crate::consolidate::{
            Budgets, Candidate, ConsolidationOptions, decide, multi_node, single_node,
        };
        let (mut commands, mut multi, mut truncated) = (0, 0, 0);
        for seed in 0..160u64 {
            let input = if seed % 2 == 0 {
                cluster(seed)
            } else {
                wide_cluster(seed)
            };
            let mut rng = Rng(seed ^ 0x7ead_5eed);
            let mut candidates = Vec::new();
            for n in input.nodes.iter().chain(&input.in_flight) {
                if rng.below(4) == 0 {
                    continue;
                }
                candidates.push(Candidate {
                    node: n.name.clone(),
                    nodepool: n.nodepool.clone().unwrap_or_default(),
                    price_per_hour: n.price_per_hour.unwrap_or(0.0),
                    capacity_type: n
                        .capacity_type
                        .unwrap_or(stowage_api::CapacityType::OnDemand),
                    disruption_cost: 0.0,
                    underutilized_allowed: rng.below(8) != 0,
                    min_instance_types: None,
                });
            }
            let budgets = Budgets::unlimited(&candidates);
            let max_simulations = [200, 3, 1 + rng.below(6) as usize][seed as usize % 3];
            let one = ConsolidationOptions {
                max_simulations,
                min_spot_to_spot_types: 1 + rng.below(15) as usize,
                probe_threads: 1,
                ..ConsolidationOptions::default()
            };
            for threads in [2, 3, 4] {
                let many = ConsolidationOptions {
                    probe_threads: threads,
                    ..one.clone()
                };
                let d = decide(&input, &candidates, &budgets, &one);
                assert_eq!(
                    d,
                    decide(&input, &candidates, &budgets, &many),
                    "seed {seed}"
                );
                let m = multi_node(&input, &candidates, &budgets, &one);
                assert_eq!(
                    m,
                    multi_node(&input, &candidates, &budgets, &many),
                    "seed {seed}"
                );
                let s = single_node(&input, &candidates, &budgets, &one);
                assert_eq!(
                    s,
                    single_node(&input, &candidates, &budgets, &many),
                    "seed {seed}"
                );
                if threads == 2 {
                    commands += usize::from(d.command.is_some());
                    multi += usize::from(m.command.is_some());
                    truncated += usize::from(d.truncated || s.truncated);
                }
            }
        }
        // Commands found, multi-node among them, and searches the cap cut short.
        assert!(commands > 20, "{commands}");
        assert!(multi > 5, "{multi}");
        assert!(truncated > 5, "{truncated}");
    }

    #[test]
    fn folding_keeps_each_nodes_room() {
        let input = cluster(3);
        let prepared = Prepared::new(&input, input.nodes.iter().map(|n| n.name.as_str()));
        for (a, b) in input.nodes.iter().zip(&prepared.nodes) {
            assert_eq!(room(a), room(b), "{}", a.name);
        }
    }
}
