//! Step 4, pod classes and bundles. Identical pods (all but name, owner, and labels that no
//! topology group selects by) form a [`PodClass`], placed together. A class is compiled once: its requests as a quantity vector,
//! its node requirements (the api's [`Requirements`] algebra), zone and capacity-type masks,
//! topology constraints split into hostname ones (checked per node) and domain ones (see
//! [`super::topology`]), and per pool the [`Bitset`] of instance types that can hold one pod
//! (or the [`PoolRejection`] saying why none can). [`Engine::relax`] derives a class with one
//! preference less. A *bundle* is a set of classes with no per-node caps that a new node holds
//! alike (same pools, types, zones; or, with topology constraints, the same shape differing only
//! in requests), packed jointly onto new nodes ([`super::place`]).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use stowage_api::labels;
use stowage_api::requirements::Requirements;

use super::Engine;
use super::PODS;
use super::interning::{KeyKind, capacity_type_bit};
use super::pools::{asks_for_exotic, first_mismatch_on_new_node, names_previous_generation};
use super::reasons::PoolRejection;
use super::topology::{DomainConstraint, DomainRule};
use crate::bitset::Bitset;
use crate::bound::{BoundClass, BoundInput, BoundKind};
use crate::domain::{
    NodeAffinityTerm, PodAffinityTerm, PodRequest, SolveInput, SolveOptions, WhenUnsatisfiable,
    compile_requirements, untolerated,
};
use crate::hash::{FastHasher, FastMap};

/// A hostname topology spread constraint of a class.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostSpread {
    pub(super) group: usize,
    pub(super) max_skew: i32,
    pub(super) selects_self: bool,
    /// `ScheduleAnyway`: a preference.
    pub(super) preferred: bool,
}

/// A hostname pod affinity or anti-affinity term of a class.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostTerm {
    pub(super) group: usize,
    pub(super) selects_self: bool,
    /// A preferred term (only anti-affinity terms are told apart).
    pub(super) preferred: bool,
}

/// Identical pending pods, placed together.
#[derive(Debug)]
pub(super) struct PodClass {
    /// The first member (all are alike but for name and owner); relaxed classes carry the
    /// relaxed spec.
    pub(super) pod: PodRequest,
    /// PreferNoSchedule taints are tolerated (the last relaxation).
    pub(super) tolerate_prefer: bool,
    /// Indices into `SolveInput::pods`, by pod key.
    pub(super) members: Vec<usize>,
    /// Members before this are placed (or given up).
    pub(super) next: usize,
    /// Requests per pod as a quantity vector (with `pods` = 1).
    pub(super) requests: Vec<i64>,
    pub(super) node_requirements: Requirements,
    /// The node-name requirements (`matchFields`) of the class's required term and, until
    /// relaxed, of its preferred terms; its label requirements are in `node_requirements`.
    pub(super) node_names: NodeAffinityTerm,
    pub(super) zone_mask: u64,
    pub(super) capacity_types: u8,
    pub(super) host_spread: Vec<HostSpread>,
    pub(super) host_anti: Vec<HostTerm>,
    pub(super) host_affinity: Vec<HostTerm>,
    pub(super) domain_constraints: Vec<DomainConstraint>,
    /// Non-hostname keys this class needs domain values for (constraints and inverse anti).
    pub(super) domain_keys: Vec<usize>,
    /// Non-hostname keys a node must be pinned on before this class is counted there.
    pub(super) pin_keys: Vec<usize>,
    /// Topology groups the class's pods are counted in.
    pub(super) counted_in: Vec<usize>,
    /// Anti-affinity terms the class's pods own (required ones: they repel later pods).
    pub(super) owned_antis: Vec<usize>,
    /// Anti-affinity terms (of any pod) whose group selects the class's pods.
    pub(super) repelled_by: Vec<usize>,
    /// Per pool: the types that can hold a pod of the class, or None (see `pool_rejections`).
    /// Shared by the classes that depend on the same (see [`CompatKey`]).
    pub(super) compatible: Arc<[Option<Bitset>]>,
    pub(super) pool_rejections: Arc<[Option<PoolRejection>]>,
    /// Set when the class failed for a topology reason.
    pub(super) topology_reason: Option<String>,
    /// The workload of its pods, when a spot blast radius is in force ([`super::blast`]).
    pub(super) workload: Option<usize>,
    /// A zone's share of a class dealt to zones ([`Engine::split_zone_spreads`]).
    pub(super) dealt: bool,
    /// For a share of a ScheduleAnyway spread: the pod without the spread and the zone pin,
    /// which relaxing the share yields (one copy shared by every share of the class).
    pub(super) undealt: Option<Arc<PodRequest>>,
    /// Set when honouring a preferred per-node cap (hostname anti-affinity or ScheduleAnyway
    /// hostname spread on its own pods) would need new nodes at a higher price per pod than
    /// packing: [`Engine::relax`] drops those preferences first ([`super::open`]).
    pub(super) relax_host_preferences: bool,
    /// Whether the cost of those preferences was checked (once, at the first new claim).
    pub(super) host_preferences_checked: bool,
}

impl PodClass {
    pub(super) fn remaining(&self) -> usize {
        self.members.len() - self.next
    }

    /// Whether at most a few pods fit on one node (hostname spread or anti-affinity matching
    /// itself, host ports).
    pub(super) fn capped(&self) -> bool {
        !self.pod.host_ports.is_empty()
            || self.host_anti.iter().any(|h| h.selects_self)
            || self.host_spread.iter().any(|h| h.selects_self)
    }

    /// Whether its pods can share a node many at a time with pods of other sizes of the same
    /// shape (no per-node caps, no hostname affinity): it may join a bundle.
    fn bundleable(&self) -> bool {
        self.pod.host_ports.is_empty()
            && self.host_affinity.is_empty()
            && self.host_anti.iter().all(|h| !h.selects_self)
            && self.host_spread.iter().all(|h| !h.selects_self)
            && self.domain_constraints.iter().all(|d| !d.one_per_node())
    }

    /// Whether nothing about other pods constrains where its pods go or what may join them:
    /// no topology constraint, no anti-affinity it owns or is repelled by, no host ports.
    fn free_of_topology(&self) -> bool {
        self.pod.host_ports.is_empty()
            && self.host_spread.is_empty()
            && self.host_anti.is_empty()
            && self.host_affinity.is_empty()
            && self.domain_constraints.is_empty()
            && self.domain_keys.is_empty()
            && self.owned_antis.is_empty()
            && self.repelled_by.is_empty()
    }
}

/// Shapes are packed jointly only when the joint estimate is this much cheaper than apart.
const JOINT_MARGIN: f64 = 0.01;

/// What makes classes without topology constraints interchangeable on a new node, whatever
/// their size: the same priority, zones, capacity types and node requirements (so the same
/// types match), the same wish for accelerators, and the same pools accepting them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PackKey {
    priority: i32,
    zone_mask: u64,
    capacity_types: u8,
    tolerate_prefer: bool,
    accelerator: bool,
    node_selector: BTreeMap<String, String>,
    required_node_affinity: Vec<NodeAffinityTerm>,
    preferred_node_affinity: Vec<crate::domain::PreferredTerm>,
    pools: Vec<bool>,
}

impl PackKey {
    fn of(class: &PodClass) -> Self {
        let pod = &class.pod;
        PackKey {
            priority: pod.priority,
            zone_mask: class.zone_mask,
            capacity_types: class.capacity_types,
            tolerate_prefer: class.tolerate_prefer,
            accelerator: pod.wants_accelerator(),
            node_selector: pod.node_selector.clone(),
            required_node_affinity: pod.required_node_affinity.clone(),
            preferred_node_affinity: pod.preferred_node_affinity.clone(),
            pools: class.compatible.iter().map(Option::is_some).collect(),
        }
    }
}

/// Classes packed jointly: `of_class[c]` is the bundle of class `c`, `members[b]` its classes.
#[derive(Debug, Default)]
pub(super) struct Bundles {
    pub(super) of_class: Vec<Option<usize>>,
    pub(super) members: Vec<Vec<usize>>,
}

/// Hash of everything that makes two pods interchangeable for scheduling (all but name, owner
/// and labels: the labels count only through the topology groups selecting the pod, which
/// [`Engine::build_classes`] compares).
fn class_hash(p: &PodRequest) -> u64 {
    let mut h = FastHasher::default();
    p.requests.hash(&mut h);
    shape_hash_into(p, false, &mut h);
    h.finish()
}

/// From this many pending pods on, [`Engine::build_classes`] reads them on two threads.
const PARALLEL_PODS: usize = 4096;

/// What [`Engine::build_classes`] reads of a run of pods.
struct PodFacts {
    /// Their keys.
    keys: Vec<String>,
    /// Their class hash and the topology groups selecting them.
    facts: Vec<(u64, Vec<usize>)>,
    /// Their indices, sorted by key (stable).
    order: Vec<usize>,
}

/// The [`PodFacts`] of the pods of `range`.
fn pod_facts(
    input: &SolveInput,
    topology: &super::topology::Topology,
    range: std::ops::Range<usize>,
) -> PodFacts {
    let pods = &input.pods[range.clone()];
    let keys: Vec<String> = pods.iter().map(|p| p.key()).collect();
    let facts = pods
        .iter()
        .map(|p| (class_hash(p), topology.groups_selecting(p)))
        .collect();
    let mut order: Vec<usize> = range.clone().collect();
    order.sort_by(|a, b| keys[a - range.start].cmp(&keys[b - range.start]));
    PodFacts { keys, facts, order }
}

/// Pods that may be one class: their class hash, workload (under a spot blast radius) and the
/// topology groups selecting them.
type ClassBucket<'a> = (u64, Option<String>, &'a [usize]);

/// The pods of `order` (by key) grouped into classes, each class's members in that order and
/// the classes in the order of their first members: pods alike but for labels are one class
/// when the same topology groups select them (the labels matter only through those; workflow
/// steps labelled with their workflow's name, say, unless something selects them by it). With
/// `half`, only the pods whose class hash has that top bit (one thread's share; the hash's
/// multiply mixes into its high bits best).
fn group_pods(
    input: &SolveInput,
    facts: &[(u64, Vec<usize>)],
    order: &[usize],
    split: bool,
    half: Option<u64>,
) -> Vec<Vec<usize>> {
    let mut by_hash: FastMap<ClassBucket<'_>, Vec<usize>> = FastMap::default();
    let mut class_members: Vec<Vec<usize>> = Vec::new();
    for &i in order {
        let (hash, selected_by) = &facts[i];
        if half.is_some_and(|b| hash >> 63 != b) {
            continue;
        }
        let p = &input.pods[i];
        let workload = split.then(|| super::blast::workload_key(p)).flatten();
        let list = by_hash
            .entry((*hash, workload, selected_by.as_slice()))
            .or_default();
        match list
            .iter()
            .find(|c| same_class(&input.pods[class_members[**c][0]], p))
        {
            Some(c) => class_members[*c].push(i),
            None => {
                list.push(class_members.len());
                class_members.push(vec![i]);
            }
        }
    }
    class_members
}

/// Two index lists each sorted by key (stable), every index of `first` below those of
/// `second`, merged into the order a stable sort of both by key gives.
fn merge_by_key(first: &[usize], second: &[usize], keys: &[String]) -> Vec<usize> {
    let mut out = Vec::with_capacity(first.len() + second.len());
    let (mut i, mut j) = (0, 0);
    while i < first.len() && j < second.len() {
        if keys[second[j]] < keys[first[i]] {
            out.push(second[j]);
            j += 1;
        } else {
            out.push(first[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&first[i..]);
    out.extend_from_slice(&second[j..]);
    out
}

/// Hash of the constraints of a pod (everything but name, owner and requests).
fn shape_hash(p: &PodRequest) -> u64 {
    let mut h = FastHasher::default();
    shape_hash_into(p, true, &mut h);
    h.finish()
}

fn shape_hash_into(p: &PodRequest, labels: bool, h: &mut FastHasher) {
    let h = &mut *h;
    p.namespace.hash(h);
    if labels {
        p.labels.hash(h);
    }
    p.node_selector.hash(h);
    p.required_node_affinity.hash(h);
    p.preferred_node_affinity.hash(h);
    p.tolerations.hash(h);
    p.topology_spread.hash(h);
    p.pod_affinity.hash(h);
    p.pod_anti_affinity.hash(h);
    p.preferred_pod_affinity.hash(h);
    p.preferred_pod_anti_affinity.hash(h);
    p.host_ports.hash(h);
    p.priority.hash(h);
}

/// Alike but for name, owner and labels (see [`class_hash`]).
fn same_class(a: &PodRequest, b: &PodRequest) -> bool {
    a.requests == b.requests && same_shape_but_labels(a, b)
}

fn same_shape(a: &PodRequest, b: &PodRequest) -> bool {
    a.labels == b.labels && same_shape_but_labels(a, b)
}

fn same_shape_but_labels(a: &PodRequest, b: &PodRequest) -> bool {
    a.namespace == b.namespace
        && a.node_selector == b.node_selector
        && a.required_node_affinity == b.required_node_affinity
        && a.preferred_node_affinity == b.preferred_node_affinity
        && a.tolerations == b.tolerations
        && a.topology_spread == b.topology_spread
        && a.pod_affinity == b.pod_affinity
        && a.pod_anti_affinity == b.pod_anti_affinity
        && a.preferred_pod_affinity == b.preferred_pod_affinity
        && a.preferred_pod_anti_affinity == b.preferred_pod_anti_affinity
        && a.host_ports == b.host_ports
        && a.priority == b.priority
}

fn remove_lightest<T>(v: &mut Vec<T>, weight: impl Fn(&T) -> i32) -> bool {
    let Some((i, _)) = v.iter().enumerate().rev().min_by_key(|(_, t)| weight(t)) else {
        return false;
    };
    v.remove(i);
    true
}

/// The topology constraints of a class, before they are stored on it.
#[derive(Default)]
struct ClassTopology {
    host_spread: Vec<HostSpread>,
    host_anti: Vec<HostTerm>,
    host_affinity: Vec<HostTerm>,
    domain_constraints: Vec<DomainConstraint>,
    owned_antis: Vec<usize>,
}

/// What a class's [`Compatibility`] depends on: its node requirements as written (required
/// term, node selector, preferred terms still in force), tolerations, requests, zones and
/// capacity types. Looked up by reference ([`CompatKey::hash_of`] and
/// [`CompatKey::is`]): a class built from an earlier one's answer copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CompatKey {
    requirements: Vec<stowage_api::requirements::Requirement>,
    tolerations: Vec<crate::domain::Toleration>,
    requests: Vec<i64>,
    zone_mask: u64,
    capacity_types: u8,
    include_prefer: bool,
    wants_accelerator: bool,
}

impl CompatKey {
    /// The hash the compatibility memo is keyed on (of what [`CompatKey`] holds).
    fn hash_of(
        requirements: &[stowage_api::requirements::Requirement],
        tolerations: &[crate::domain::Toleration],
        requests: &[i64],
        masks: (u64, u8, bool, bool),
    ) -> u64 {
        let mut h = FastHasher::default();
        requirements.hash(&mut h);
        tolerations.hash(&mut h);
        requests.hash(&mut h);
        masks.hash(&mut h);
        h.finish()
    }

    fn is(
        &self,
        requirements: &[stowage_api::requirements::Requirement],
        tolerations: &[crate::domain::Toleration],
        requests: &[i64],
        masks: (u64, u8, bool, bool),
    ) -> bool {
        self.requirements == requirements
            && self.tolerations == tolerations
            && self.requests == requests
            && (
                self.zone_mask,
                self.capacity_types,
                self.include_prefer,
                self.wants_accelerator,
            ) == masks
    }
}

/// Per pool: compatible types (or why none).
#[derive(Debug, Clone)]
pub(super) struct Compatibility {
    compatible: Vec<Option<Bitset>>,
    pool_rejections: Vec<Option<PoolRejection>>,
}

/// Per pool, what a class's node requirements and tolerations alone decide (whatever its
/// requests and zones): the untolerated taint, or the types whose labels the requirements
/// admit (in the pool's order) and the first key a type failed on. Classes of many sizes
/// under the same requirements (zones' shares of workflows, say) compute it once.
#[derive(Debug)]
pub(super) struct PoolMatch {
    taint: Option<String>,
    types: Vec<usize>,
    mismatch: Option<String>,
}

/// What a [`PoolMatch`] list depends on: the requirements as written, the tolerations, and
/// whether PreferNoSchedule taints count.
#[derive(Debug)]
pub(super) struct MatchKey {
    requirements: Vec<stowage_api::requirements::Requirement>,
    tolerations: Vec<crate::domain::Toleration>,
    include_prefer: bool,
}

/// The compatibility memo: by [`CompatKey::hash_of`], the keys seen and their answers.
pub(super) type CompatMemo = FastMap<u64, Vec<(CompatKey, SharedCompatibility)>>;

/// The requirement-matching memo ([`Engine::pool_matches`]): by hash, the keys seen and
/// their answers.
pub(super) type MatchMemo = FastMap<u64, Vec<(MatchKey, Arc<[PoolMatch]>)>>;

/// A [`Compatibility`] as classes share it.
#[derive(Debug, Clone)]
pub(super) struct SharedCompatibility {
    compatible: Arc<[Option<Bitset>]>,
    pool_rejections: Arc<[Option<PoolRejection>]>,
}

impl Engine<'_> {
    /// Groups the pending pods into classes (in pod-key order).
    /// The pods' keys, class hashes and the groups selecting them are read first, on two threads
    /// for many pods (each half sorted by key on its own, then merged: the order a stable sort
    /// of the whole gives).
    pub(super) fn build_classes(&mut self) {
        let input = self.input;
        let n = input.pods.len();
        let PodFacts { keys, facts, order } = if n < PARALLEL_PODS {
            pod_facts(input, &self.topology, 0..n)
        } else {
            let topology = &self.topology;
            std::thread::scope(|s| {
                let later = s.spawn(move || pod_facts(input, topology, n / 2..n));
                let mut all = pod_facts(input, topology, 0..n / 2);
                let second = match later.join() {
                    Ok(half) => half,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                all.keys.extend(second.keys);
                all.facts.extend(second.facts);
                all.order = merge_by_key(&all.order, &second.order, &all.keys);
                all
            })
        };
        self.pod_keys = keys;
        // Under a spot blast radius, pods of different workloads are counted apart.
        let split = self.blast.active;
        let class_members = if n < PARALLEL_PODS {
            group_pods(input, &facts, &order, split, None)
        } else {
            // Two threads, each grouping the pods of half the class hashes (pods of one class
            // share their hash); the classes are then put in the order of their first pods.
            let grouped = std::thread::scope(|s| {
                let (facts, order) = (&facts, &order);
                let odd = s.spawn(move || group_pods(input, facts, order, split, Some(1)));
                let even = group_pods(input, facts, order, split, Some(0));
                match odd.join() {
                    Ok(odd) => [even, odd],
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            });
            let mut position = vec![0; n];
            for (at, &i) in order.iter().enumerate() {
                position[i] = at;
            }
            let mut all: Vec<Vec<usize>> = grouped.into_iter().flatten().collect();
            all.sort_unstable_by_key(|members| position[members[0]]);
            all
        };
        for members in class_members {
            let pod = PodRequest::clone(&input.pods[members[0]]);
            let c = self.make_class(pod, false, members);
            self.classes.push(c);
        }
    }

    /// Bundles: classes whose pods may share a node without per-node caps, packed jointly.
    /// Classes of one shape (differing only in requests) always form one. Shapes without
    /// topology constraints that may use the same pools, types, zones and capacity types
    /// ([`PackKey`]: they differ only in labels, namespace, or tolerations that change nothing)
    /// are merged into one bundle when that is cheaper by [`Engine::share_cost`]: a type that
    /// suits their summed demand costs less than the types that suit each shape alone (Spark
    /// executors with memory to spare and CPU-bound batch pods, say); otherwise each shape keeps
    /// its own nodes, which fit its balance better.
    pub(super) fn build_bundles(&mut self) {
        let mut by_key: FastMap<PackKey, Vec<Vec<usize>>> = FastMap::default();
        let mut by_shape: FastMap<u64, Vec<Vec<usize>>> = FastMap::default();
        self.bundles.of_class = vec![None; self.classes.len()];
        for c in 0..self.classes.len() {
            let class = &self.classes[c];
            if !class.bundleable() {
                continue;
            }
            let lists = by_shape.entry(shape_hash(&class.pod)).or_default();
            let shape = match lists
                .iter_mut()
                .position(|b| same_shape(&self.classes[b[0]].pod, &class.pod))
            {
                Some(i) => i,
                None => {
                    lists.push(Vec::new());
                    lists.len() - 1
                }
            };
            lists[shape].push(c);
        }
        let mut bundles: Vec<Vec<usize>> = Vec::new();
        for shape in by_shape.into_values().flatten() {
            let class = &self.classes[shape[0]];
            if !class.free_of_topology() {
                bundles.push(shape);
                continue;
            }
            by_key.entry(PackKey::of(class)).or_default().push(shape);
        }
        // Each key decides alone and the bundles are sorted: the map's order does not leak.
        for mut shapes in by_key.into_values() {
            shapes.sort();
            if shapes.len() > 1 {
                let joint: Vec<usize> = shapes.iter().flatten().copied().collect();
                let apart: f64 = shapes.iter().map(|s| self.share_cost(s)).sum();
                if self.share_cost(&joint) < apart * (1.0 - JOINT_MARGIN) {
                    bundles.push(joint);
                    continue;
                }
            }
            bundles.extend(shapes);
        }
        bundles.retain(|b| b.len() > 1);
        for b in &mut bundles {
            b.sort_unstable();
        }
        bundles.sort();
        for b in bundles {
            for &c in &b {
                self.bundles.of_class[c] = Some(self.bundles.members.len());
            }
            self.bundles.members.push(b);
        }
    }

    /// What the pods of `classes` cost on new nodes of the single best type for their summed
    /// demand, counted fractionally (price / share of the demand a node holds, the measure
    /// bundle nodes are bought by): in the first pool (weight order) that takes them all, at
    /// the cheapest offering of their capacity types. Infinite when no type holds a share.
    fn share_cost(&self, classes: &[usize]) -> f64 {
        let lead = &self.classes[classes[0]];
        let Some(pi) = (0..self.catalog.pools.len()).find(|pi| {
            classes
                .iter()
                .all(|c| self.classes[*c].compatible[*pi].is_some())
        }) else {
            return f64::INFINITY;
        };
        let mut bits = lead.compatible[pi].clone().unwrap_or_default();
        let mut demand = vec![0i64; self.ids.resource_count()];
        for &c in classes {
            let class = &self.classes[c];
            if let Some(b) = &class.compatible[pi] {
                bits.and_with(b);
            }
            for (d, r) in demand.iter_mut().zip(&class.requests) {
                *d += r * class.remaining() as i64;
            }
        }
        let cts = lead.capacity_types & self.catalog.pools[pi].capacity_types;
        let mut best = f64::INFINITY;
        for t in bits.iter() {
            let ty = &self.catalog.types[t];
            let price = ty.cheapest_any(cts, lead.zone_mask);
            let share = demand
                .iter()
                .zip(&ty.allocatable)
                .filter(|(d, _)| **d > 0)
                .map(|(d, a)| *a as f64 / *d as f64)
                .fold(f64::INFINITY, f64::min);
            if price.is_finite() && share > 0.0 {
                best = best.min(price / share);
            }
        }
        best
    }

    /// A zone spread only decides which zone each pod goes to: the pods of every class whose
    /// one domain constraint is a self-counting spread over zones are dealt to the zones up
    /// front, each to the zone with the fewest matching pods then (existing ones included, so
    /// the result respects maxSkew), and each zone's share becomes a class pinned to that zone
    /// without the spread. Those classes pack like unconstrained ones (bundles, shared nodes)
    /// instead of one pod per placement step. Only groups whose every pending member is such a
    /// class are dealt, so no other placement moves their counts. A ScheduleAnyway spread is
    /// dealt the same way; a share of it that cannot be placed in its zone is relaxed to the
    /// pod without spread or zone pin.
    pub(super) fn split_zone_spreads(&mut self) {
        let Some(zone_key) = self.ids.known_key(labels::ZONE) else {
            return;
        };
        let dealt: Vec<Option<usize>> = (0..self.classes.len())
            .map(|c| self.zone_spread_group(c, zone_key))
            .collect();
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (c, g) in dealt.iter().enumerate() {
            if let Some(g) = g {
                groups.entry(*g).or_default().push(c);
            }
        }
        for (g, members) in groups {
            // The classes there were before dealing (shares dealt for an earlier group are
            // copies of one of them, already looked at).
            let undealt = (0..dealt.len())
                .any(|c| dealt[c] != Some(g) && self.classes[c].counted_in.contains(&g));
            if undealt {
                continue;
            }
            // The zones each class can use, those its spread takes the minimum over (zones of
            // nodes it cannot use included, as kube-scheduler's), and the matching pods there now.
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            let mut domains: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
            for &c in &members {
                let d = self.class_domains(c, zone_key);
                let eligible = self.spread_domains(c, zone_key);
                for &v in d.iter().chain(&eligible) {
                    counts.insert(v, self.topology.domain_count(g, zone_key, v) as usize);
                }
                domains.push((d, eligible));
            }
            for (&c, (domains, eligible)) in members.iter().zip(&domains) {
                if domains.is_empty() {
                    continue;
                }
                let mut pod = self.classes[c].pod.clone();
                let preferred = pod.topology_spread.iter().any(|s| {
                    s.topology_key == labels::ZONE
                        && s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway
                });
                // A required spread deals a pod only where the scheduler will take it: at most
                // maxSkew above the least loaded eligible zone (one the class cannot reach may
                // be it, and stays so). The rest are left unschedulable, not bought for.
                let max_skew = pod
                    .topology_spread
                    .iter()
                    .find(|s| s.topology_key == labels::ZONE)
                    .map_or(usize::MAX, |s| {
                        usize::try_from(s.max_skew.max(1)).unwrap_or(1)
                    });
                let mut share: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                let mut refused: Vec<usize> = Vec::new();
                for &m in &self.classes[c].members {
                    let zones = self.ids.zones();
                    let Some(&v) = domains.iter().min_by(|a, b| {
                        counts[*a]
                            .cmp(&counts[*b])
                            .then_with(|| zones[**a as usize].cmp(&zones[**b as usize]))
                    }) else {
                        continue;
                    };
                    let floor = eligible.iter().map(|e| counts[e]).min().unwrap_or(0);
                    if !preferred && (counts[&v] + 1).saturating_sub(floor) > max_skew {
                        refused.push(m);
                        continue;
                    }
                    *counts.entry(v).or_insert(0) += 1;
                    share.entry(v).or_default().push(m);
                }
                let refused_reason = (!refused.is_empty()).then(|| {
                    let least = eligible.iter().min_by_key(|e| counts[*e]).copied();
                    let (zone, n) = least.map_or(("", 0), |e| {
                        (self.ids.zones()[e as usize].as_str(), counts[&e])
                    });
                    format!(
                        "topology spread on {} (maxSkew {max_skew}) cannot be satisfied in any domain the pods can be placed in ({zone} has {n} matching pod(s))",
                        labels::ZONE
                    )
                });
                let class = &mut self.classes[c];
                class.next = class.members.len();
                if let Some(reason) = refused_reason {
                    // Given up: the refused members last, from `next`.
                    let dealt: Vec<usize> = share.values().flatten().copied().collect();
                    class.next = dealt.len();
                    class.members = dealt.into_iter().chain(refused).collect();
                    class.topology_reason = Some(reason);
                    self.give_up(c);
                }
                pod.topology_spread
                    .retain(|s| s.topology_key != labels::ZONE);
                let undealt = preferred.then(|| Arc::new(pod.clone()));
                // Each share but the last is pinned on a copy; the last takes the pod itself.
                let last = share.len().saturating_sub(1);
                for (i, (v, members)) in share.into_iter().enumerate() {
                    let mut pinned = if i == last {
                        std::mem::take(&mut pod)
                    } else {
                        pod.clone()
                    };
                    let zone = self.ids.zones()[v as usize].clone();
                    pinned.node_selector.insert(labels::ZONE.to_string(), zone);
                    let mut split = self.make_class(pinned, false, members);
                    split.dealt = true;
                    split.undealt = undealt.clone();
                    self.classes.push(split);
                }
            }
        }
    }

    /// The topology group of the class's zone spread when it can be dealt to zones up front
    /// ([`Engine::split_zone_spreads`]): one spread over zones that counts the class itself, no
    /// other domain constraint, no preferred node affinity or alternative required terms.
    fn zone_spread_group(&self, c: usize, zone_key: usize) -> Option<usize> {
        let class = &self.classes[c];
        let spreads: Vec<&crate::domain::TopologySpread> = class
            .pod
            .topology_spread
            .iter()
            .filter(|s| s.topology_key == labels::ZONE)
            .collect();
        let [spread] = spreads.as_slice() else {
            return None;
        };
        let [d] = class.domain_constraints.as_slice() else {
            return None;
        };
        let plain = spread.min_domains.is_none()
            && d.key == zone_key
            && d.selects_self
            && matches!(d.rule, DomainRule::Spread { .. })
            && class.domain_keys == [zone_key]
            && class.pin_keys == [zone_key]
            && class.remaining() > 0
            && class.pod.preferred_node_affinity.is_empty()
            && class.pod.required_node_affinity.len() <= 1;
        plain.then_some(d.group)
    }

    fn make_class(
        &mut self,
        pod: PodRequest,
        tolerate_prefer: bool,
        members: Vec<usize>,
    ) -> PodClass {
        let respect = self.options.relax_preferences;
        let mut requests = self.ids.quantities(&pod.requests);
        requests[PODS] = 1;
        let term = (!pod.required_node_affinity.is_empty()).then_some(0);
        let mut reqs = pod.node_requirements(term);
        let mut node_names = NodeAffinityTerm::default();
        if let Some(t) = term.and_then(|i| pod.required_node_affinity.get(i)) {
            node_names.node_names.extend(t.node_names.iter().cloned());
        }
        if respect {
            for t in &pod.preferred_node_affinity {
                reqs.extend(t.requirements.iter().cloned());
                node_names.node_names.extend(t.node_names.iter().cloned());
            }
        }
        let node_requirements = compile_requirements(&reqs);
        let mut zone_mask = 0u64;
        for (zi, z) in self.ids.zones().iter().enumerate() {
            if node_requirements.get(labels::ZONE).is_none_or(|s| s.has(z)) {
                zone_mask |= 1 << zi;
            }
        }
        let mut capacity_types = 0u8;
        for ct in stowage_api::CapacityType::ALL {
            if node_requirements
                .get(labels::CAPACITY_TYPE)
                .is_none_or(|s| s.has(ct.as_str()))
            {
                capacity_types |= capacity_type_bit(ct);
            }
        }
        let topo = self.class_topology(&pod, respect);
        let counted_in = self.topology.groups_selecting(&pod);
        let repelled_by: Vec<usize> = (0..self.topology.antis.len())
            .filter(|a| counted_in.contains(&self.topology.antis[*a].group))
            .collect();
        let (domain_keys, pin_keys) = self.domain_and_pin_keys(&topo, &counted_in, &repelled_by);
        let include_prefer = respect && !tolerate_prefer;
        // Classes that differ only in labels, namespace or topology (workflow steps, say) share
        // their compatible types: computed once per what they depend on.
        let masks = (
            zone_mask,
            capacity_types,
            include_prefer,
            pod.wants_accelerator(),
        );
        let hash = CompatKey::hash_of(&reqs, &pod.tolerations, &requests, masks);
        let known = self.caches.compatibility.get(&hash).and_then(|list| {
            list.iter()
                .find(|(k, _)| k.is(&reqs, &pod.tolerations, &requests, masks))
                .map(|(_, c)| c.clone())
        });
        let mut compat = match known {
            Some(known) => known,
            None => {
                let matching =
                    self.pool_matches(&reqs, &node_requirements, &pod.tolerations, include_prefer);
                let mut compat =
                    self.compatibility(&matching, &requests, zone_mask, capacity_types);
                self.keep_asked_for_types(&pod, &node_requirements, &mut compat);
                let shared = SharedCompatibility {
                    compatible: compat.compatible.into(),
                    pool_rejections: compat.pool_rejections.into(),
                };
                let key = CompatKey {
                    requirements: reqs,
                    tolerations: pod.tolerations.clone(),
                    requests: requests.clone(),
                    zone_mask,
                    capacity_types,
                    include_prefer,
                    wants_accelerator: masks.3,
                };
                self.caches
                    .compatibility
                    .entry(hash)
                    .or_default()
                    .push((key, shared.clone()));
                shared
            }
        };
        if !node_names.admits_unnamed_node() {
            // Pinned to named nodes: a node to buy cannot be given a chosen name.
            let pools = self.catalog.pools.len();
            compat.compatible = vec![None; pools].into();
            compat.pool_rejections = vec![Some(PoolRejection::PinnedToNodes); pools].into();
        }
        let workload = self.workload_id(&pod);
        PodClass {
            pod,
            tolerate_prefer,
            members,
            next: 0,
            requests,
            node_requirements,
            node_names,
            zone_mask,
            capacity_types,
            host_spread: topo.host_spread,
            host_anti: topo.host_anti,
            host_affinity: topo.host_affinity,
            domain_constraints: topo.domain_constraints,
            domain_keys,
            pin_keys,
            counted_in,
            owned_antis: topo.owned_antis,
            repelled_by,
            compatible: compat.compatible,
            pool_rejections: compat.pool_rejections,
            topology_reason: None,
            workload,
            dealt: false,
            undealt: None,
            relax_host_preferences: false,
            host_preferences_checked: false,
        }
    }

    /// The class's spread, affinity and anti-affinity constraints (preferred ones too when
    /// `respect`), split into hostname and domain constraints.
    fn class_topology(&mut self, pod: &PodRequest, respect: bool) -> ClassTopology {
        let mut out = ClassTopology::default();
        for s in &pod.topology_spread {
            if s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway && !respect {
                continue;
            }
            let Some(sel) = &s.label_selector else {
                continue;
            };
            let key = self.ids.key_id(&s.topology_key);
            let group = self.group_id(Some(BTreeSet::from([pod.namespace.clone()])), sel, key);
            let selects_self = sel.matches(&pod.labels);
            let max_skew = s.max_skew.max(1);
            if self.ids.is_hostname(key) {
                out.host_spread.push(HostSpread {
                    group,
                    max_skew,
                    selects_self,
                    preferred: s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway,
                });
            } else {
                let min_domains = s.min_domains.unwrap_or(0);
                out.domain_constraints.push(DomainConstraint {
                    key,
                    group,
                    rule: DomainRule::Spread {
                        max_skew,
                        min_domains,
                    },
                    selects_self,
                });
            }
        }
        let mut affinity: Vec<PodAffinityTerm> = pod.pod_affinity.clone();
        if respect {
            affinity.extend(pod.preferred_pod_affinity.iter().map(|w| w.term.clone()));
        }
        for t in &affinity {
            let Some(sel) = &t.label_selector else {
                continue;
            };
            let key = self.ids.key_id(&t.topology_key);
            let group = self.group_id(t.namespaces.clone(), sel, key);
            let selects_self = t.selects(&pod.namespace, &pod.labels);
            if self.ids.is_hostname(key) {
                out.host_affinity.push(HostTerm {
                    group,
                    selects_self,
                    preferred: false,
                });
            } else {
                out.domain_constraints.push(DomainConstraint {
                    key,
                    group,
                    rule: DomainRule::Affinity,
                    selects_self,
                });
            }
        }
        self.class_anti_affinity(pod, respect, &mut out);
        out
    }

    fn class_anti_affinity(&mut self, pod: &PodRequest, respect: bool, out: &mut ClassTopology) {
        let mut anti: Vec<PodAffinityTerm> = pod.pod_anti_affinity.clone();
        if respect {
            anti.extend(
                pod.preferred_pod_anti_affinity
                    .iter()
                    .map(|w| w.term.clone()),
            );
        }
        for t in &anti {
            let Some(a) = self.anti_id(t) else { continue };
            let term = self.topology.antis[a];
            let selects_self = t.selects(&pod.namespace, &pod.labels);
            // Only required terms repel later pods symmetrically (Kubernetes semantics).
            if pod.pod_anti_affinity.contains(t) {
                out.owned_antis.push(a);
            }
            if self.ids.is_hostname(term.key) {
                out.host_anti.push(HostTerm {
                    group: term.group,
                    selects_self,
                    preferred: !pod.pod_anti_affinity.contains(t),
                });
            } else {
                out.domain_constraints.push(DomainConstraint {
                    key: term.key,
                    group: term.group,
                    rule: DomainRule::AntiAffinity,
                    selects_self,
                });
            }
        }
    }

    /// The non-hostname keys the class needs domain values for, and those a node must be
    /// pinned on before the class is counted there.
    fn domain_and_pin_keys(
        &self,
        topo: &ClassTopology,
        counted_in: &[usize],
        repelled_by: &[usize],
    ) -> (Vec<usize>, Vec<usize>) {
        let non_hostname = |key: &usize| !self.ids.is_hostname(*key);
        let mut domain_keys: Vec<usize> = topo.domain_constraints.iter().map(|d| d.key).collect();
        domain_keys.extend(
            repelled_by
                .iter()
                .map(|a| self.topology.antis[*a].key)
                .filter(non_hostname),
        );
        domain_keys.sort_unstable();
        domain_keys.dedup();
        let mut pin_keys = domain_keys.clone();
        for g in counted_in {
            pin_keys.extend(self.topology.group_domain_keys[*g].iter().copied());
        }
        pin_keys.extend(
            topo.owned_antis
                .iter()
                .map(|a| self.topology.antis[*a].key)
                .filter(non_hostname),
        );
        pin_keys.sort_unstable();
        pin_keys.dedup();
        (domain_keys, pin_keys)
    }

    /// Per pool, the [`PoolMatch`] of these requirements (as written and compiled) and
    /// tolerations, memoised.
    fn pool_matches(
        &mut self,
        written: &[stowage_api::requirements::Requirement],
        reqs: &Requirements,
        tolerations: &[crate::domain::Toleration],
        include_prefer: bool,
    ) -> Arc<[PoolMatch]> {
        let mut h = FastHasher::default();
        written.hash(&mut h);
        tolerations.hash(&mut h);
        include_prefer.hash(&mut h);
        let hash = h.finish();
        let known = self.caches.matches.get(&hash).and_then(|list| {
            list.iter()
                .find(|(k, _)| {
                    k.requirements == written
                        && k.tolerations == tolerations
                        && k.include_prefer == include_prefer
                })
                .map(|(_, m)| Arc::clone(m))
        });
        if let Some(known) = known {
            return known;
        }
        let mut out = Vec::with_capacity(self.catalog.pools.len());
        for pool in &self.catalog.pools {
            let mut m = PoolMatch {
                taint: None,
                types: Vec::new(),
                mismatch: None,
            };
            if let Some(t) = untolerated(&pool.pool.taints, tolerations, include_prefer) {
                m.taint = Some(t.to_string());
                out.push(m);
                continue;
            }
            for &t in &pool.types {
                match first_mismatch_on_new_node(reqs, &self.catalog.types[t].labels) {
                    Some(key) => {
                        m.mismatch.get_or_insert_with(|| key.to_string());
                    }
                    None => m.types.push(t),
                }
            }
            out.push(m);
        }
        let out: Arc<[PoolMatch]> = out.into();
        let key = MatchKey {
            requirements: written.to_vec(),
            tolerations: tolerations.to_vec(),
            include_prefer,
        };
        self.caches
            .matches
            .entry(hash)
            .or_default()
            .push((key, Arc::clone(&out)));
        out
    }

    /// Per pool: the types that can hold one pod of the class (or why none can), of those its
    /// requirements admit (`matching`).
    fn compatibility(
        &self,
        matching: &[PoolMatch],
        requests: &[i64],
        zone_mask: u64,
        capacity_types: u8,
    ) -> Compatibility {
        let mut out = Compatibility {
            compatible: Vec::new(),
            pool_rejections: Vec::new(),
        };
        let type_count = self.catalog.types.len();
        for (pool, m) in self.catalog.pools.iter().zip(matching) {
            if let Some(t) = &m.taint {
                out.compatible.push(None);
                out.pool_rejections
                    .push(Some(PoolRejection::Taint(t.clone())));
                continue;
            }
            let mut bits = Bitset::new(type_count);
            let any_matching = !m.types.is_empty();
            let mut any_fitting = false;
            let cts = capacity_types & pool.capacity_types;
            for &t in &m.types {
                let ty = &self.catalog.types[t];
                let offered = ty.zones_any(cts) & zone_mask != 0;
                if requests.iter().zip(&ty.allocatable).any(|(a, b)| a > b) {
                    continue;
                }
                any_fitting = true;
                if offered {
                    bits.insert(t);
                }
            }
            let rejection = if bits.is_empty() {
                Some(if any_fitting {
                    PoolRejection::NoOffering
                } else if any_matching {
                    PoolRejection::TooBig
                } else {
                    PoolRejection::Requirements(
                        m.mismatch
                            .clone()
                            .unwrap_or_else(|| "instance types".into()),
                    )
                })
            } else {
                self.min_values_short(pool.pool, &bits)
            };
            out.compatible.push(rejection.is_none().then_some(bits));
            out.pool_rejections.push(rejection);
        }
        out
    }

    /// minValues: the pool's flexibility floor must hold over the types that fit the pod.
    fn min_values_short(
        &self,
        pool: &crate::domain::PoolSpec,
        bits: &Bitset,
    ) -> Option<PoolRejection> {
        pool.requirements.iter().find_map(|r| {
            let min_values = r.min_values?;
            let distinct: BTreeSet<&str> = bits
                .iter()
                .filter_map(|t| self.catalog.types[t].labels.get(&r.key))
                .collect();
            ((distinct.len() as i32) < min_values)
                .then(|| PoolRejection::MinValues(r.key.clone(), min_values))
        })
    }

    /// The instance types a claim may list for pods of this class (docs/ARCHITECTURE.md, "How a
    /// claim's instance types are chosen"):
    /// 1. exotic types (accelerators, specialty hardware) only when asked for: named by the pool's
    ///    or the pod's requirements ([`asks_for_exotic`]), or, for whole accelerators, requested as
    ///    a resource (a GPU slice is not what a GPU request means);
    /// 2. a pod requesting no accelerator gets plain types when any fits: exotic types then only
    ///    when the pod itself names them (a GPU pool's own requirements are not the pod asking);
    /// 3. previous generations only when named ([`names_previous_generation`]), or when no
    ///    current-generation type is left.
    fn keep_asked_for_types(
        &self,
        pod: &PodRequest,
        pod_reqs: &Requirements,
        compat: &mut Compatibility,
    ) {
        let types = &self.catalog.types;
        let wants = pod.wants_accelerator();
        let pod_names_exotic = |t: usize| asks_for_exotic(pod_reqs, &types[t]);
        let asked = |t: usize| {
            let ty = &types[t];
            !ty.exotic || ty.exotic_named || (wants && !ty.fractional) || pod_names_exotic(t)
        };
        let before = compat.compatible.clone();
        let len = types.len();
        retain_types(compat, len, asked);
        let any_plain = compat
            .compatible
            .iter()
            .flatten()
            .any(|b| b.iter().any(|t| !types[t].exotic));
        if !wants && any_plain {
            retain_types(compat, len, |t| !types[t].exotic || pod_names_exotic(t));
        }
        let current = |t: usize| {
            let ty = &types[t];
            !ty.previous_generation
                || ty.previous_named
                || names_previous_generation(pod_reqs, &ty.labels)
        };
        let any_current = compat
            .compatible
            .iter()
            .flatten()
            .any(|b| b.iter().any(current));
        if any_current {
            retain_types(compat, len, current);
        }
        for (pi, slot) in compat.compatible.iter_mut().enumerate() {
            let Some(had) = before[pi].as_ref().filter(|b| !b.is_empty()) else {
                continue;
            };
            if slot.as_ref().is_some_and(|b| !b.is_empty()) {
                continue;
            }
            let exotic = had.iter().any(|t| types[t].exotic);
            let previous = had.iter().any(|t| types[t].previous_generation);
            *slot = None;
            compat.pool_rejections[pi] =
                Some(PoolRejection::NotAskedFor(match (exotic, previous) {
                    (true, true) => "accelerator, specialty and previous-generation types",
                    (true, false) => "accelerator and specialty types",
                    _ => "previous-generation types",
                }));
        }
    }

    /// A class for the remaining pods of `c` with one preference less (see the module docs of
    /// [`super`] for the order), or None when nothing is left to relax.
    pub(super) fn relax(&mut self, c: usize) -> Option<usize> {
        let class = &self.classes[c];
        let mut pod = class.pod.clone();
        let mut tolerate_prefer = class.tolerate_prefer;
        let respect = self.options.relax_preferences;
        let changed = if class.relax_host_preferences && drop_host_preferences(&mut pod) {
            true
        } else if let Some(undealt) = &class.undealt {
            // A zone's share of a ScheduleAnyway spread: the spread (and so the zone) goes.
            pod = PodRequest::clone(undealt);
            true
        } else if pod.required_node_affinity.len() > 1 {
            pod.required_node_affinity.remove(0);
            true
        } else if !respect {
            false
        } else if remove_lightest(&mut pod.preferred_pod_affinity, |w| w.weight)
            || remove_lightest(&mut pod.preferred_pod_anti_affinity, |w| w.weight)
            || remove_lightest(&mut pod.preferred_node_affinity, |w| w.weight)
        {
            true
        } else if let Some(i) = pod
            .topology_spread
            .iter()
            .rposition(|s| s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway)
        {
            pod.topology_spread.remove(i);
            true
        } else if !tolerate_prefer && self.any_prefer_taint {
            tolerate_prefer = true;
            true
        } else {
            false
        };
        if !changed {
            return None;
        }
        let class = &mut self.classes[c];
        let members = class.members[class.next..].to_vec();
        class.next = class.members.len();
        let relaxed = self.make_class(pod, tolerate_prefer, members);
        self.classes.push(relaxed);
        Some(self.classes.len() - 1)
    }
}

/// Drops the pod's preferences that cap its own pods per node (preferred hostname
/// anti-affinity and ScheduleAnyway hostname spreads that select the pod itself); true when
/// any was dropped.
fn drop_host_preferences(pod: &mut PodRequest) -> bool {
    let hostname = |key: &str| key == labels::HOSTNAME;
    let (namespace, own) = (pod.namespace.clone(), pod.labels.clone());
    let before = pod.preferred_pod_anti_affinity.len() + pod.topology_spread.len();
    pod.preferred_pod_anti_affinity
        .retain(|w| !(hostname(&w.term.topology_key) && w.term.selects(&namespace, &own)));
    pod.topology_spread.retain(|s| {
        !(s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway
            && hostname(&s.topology_key)
            && s.label_selector.as_ref().is_some_and(|l| l.matches(&own)))
    });
    before != pod.preferred_pod_anti_affinity.len() + pod.topology_spread.len()
}

/// Keeps, in every pool's compatible types, those `keep` accepts.
fn retain_types(compat: &mut Compatibility, len: usize, keep: impl Fn(usize) -> bool) {
    for bits in compat.compatible.iter_mut().flatten() {
        let mut kept = Bitset::new(len);
        for t in bits.iter().filter(|t| keep(*t)) {
            kept.insert(t);
        }
        *bits = kept;
    }
}

/// The pending pods as classes and every node kind they could use, with the solver's own
/// notion of compatibility: a class may use a (pool, type, capacity type, zone) offering when
/// its required scheduling constraints admit it (any of its alternative node-affinity terms;
/// preferences ignored, since the solver may relax them) and one pod fits in the allocatable left
/// after the DaemonSets. Pods that no kind can hold are left out. Existing nodes and in-flight
/// claims are ignored.
pub(crate) fn lower_bound_input(input: &SolveInput) -> BoundInput {
    let options = SolveOptions {
        relax_preferences: false,
        ..SolveOptions::default()
    };
    let mut e = Engine::new(input, &options);
    let class_count = e.classes.len();
    // Per (type, offering index): the classes that may use it.
    let mut users: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for c in 0..class_count {
        let mut compatible = e.classes[c].compatible.to_vec();
        // Required node-affinity terms are alternatives: the pod may use the types of any.
        let mut pod = e.classes[c].pod.clone();
        while pod.required_node_affinity.len() > 1 {
            pod.required_node_affinity.remove(0);
            let alt = e.make_class(pod.clone(), false, Vec::new());
            for (slot, bits) in compatible.iter_mut().zip(alt.compatible.iter().cloned()) {
                match (slot.as_mut(), bits) {
                    (Some(s), Some(b)) => s.or_with(&b),
                    (None, Some(b)) => *slot = Some(b),
                    _ => {}
                }
            }
        }
        let class = &e.classes[c];
        for (pi, bits) in compatible.iter().enumerate() {
            let Some(bits) = bits else { continue };
            let cts = class.capacity_types & e.catalog.pools[pi].capacity_types;
            for t in bits.iter() {
                for (oi, o) in e.catalog.types[t].offerings.iter().enumerate() {
                    if cts & capacity_type_bit(o.capacity_type) != 0
                        && class.zone_mask & (1 << o.zone) != 0
                    {
                        users.entry((t, oi)).or_default().push(c);
                    }
                }
            }
        }
    }
    // One kind per (type, set of classes): the cheapest of those offerings.
    let mut cheapest: BTreeMap<(usize, Vec<usize>), f64> = BTreeMap::new();
    for ((t, oi), classes) in users {
        let price = e.catalog.types[t].offerings[oi].price;
        let slot = cheapest.entry((t, classes)).or_insert(f64::INFINITY);
        *slot = slot.min(price);
    }
    // Renumber the classes that some kind can hold.
    let mut used = vec![false; class_count];
    for (_, classes) in cheapest.keys() {
        for c in classes {
            used[*c] = true;
        }
    }
    let mut index = vec![usize::MAX; class_count];
    let mut classes = Vec::new();
    for c in 0..class_count {
        // A class dealt to zones counts whole, in any zone: its zones' shares are left out.
        if used[c] && !e.classes[c].members.is_empty() && !e.classes[c].dealt {
            index[c] = classes.len();
            classes.push(BoundClass {
                count: e.classes[c].members.len(),
                requests: e.classes[c].requests.clone(),
            });
        }
    }
    let kinds = cheapest
        .into_iter()
        .filter(|(_, price)| price.is_finite() && *price >= 0.0)
        .map(|((t, cs), price)| BoundKind {
            allocatable: e.catalog.types[t].allocatable.clone(),
            price,
            classes: cs
                .iter()
                .map(|c| index[*c])
                .filter(|c| *c != usize::MAX)
                .collect(),
        })
        .filter(|k| !k.classes.is_empty())
        .collect();
    BoundInput { classes, kinds }
}

/// Whether the class's domain keys include the zone key.
pub(super) fn pins_zone(engine: &Engine<'_>, class: &PodClass) -> bool {
    class
        .pin_keys
        .iter()
        .any(|k| engine.ids.key_kind(*k) == KeyKind::Zone)
}
