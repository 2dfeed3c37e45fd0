//! A round's base: what every consolidation probe's engine would compute alike over the
//! same existing nodes, computed once ([`Base::new`]) and handed to each probe's engine
//! ([`super::solve_on_base`]) instead of being rebuilt from every node's pods:
//! - the resource and zone ids ([`Ids::for_input`] over the pending pods and every node, so
//!   over everything a probe can see);
//! - per node: allocatable and used quantity vectors, host ports, the pods matching each
//!   topology group any probe can register (the terms of the pending pods and of the
//!   candidates' pods, the required anti-affinity of running pods), the pods owning
//!   anti-affinity terms, and its pods per workload (spot blast radius).
//!
//! A probe's engine still registers its own topology groups, topology keys and workloads, in
//! the order a fresh solve would (nodes in order, pods in order), and maps the base's groups
//! and workloads onto its own ids; counts are sums, so adding a node's pods per group at once
//! counts what adding them one by one would. A probe group the base does not know (none
//! should exist) makes that probe count every pod again, as a fresh solve does.

use std::collections::BTreeSet;

use crate::domain::{
    ExistingNode, HostPort, LabelSelector, PodAffinityTerm, PodRequest, SolveInput,
};
use crate::hash::{FastMap, FastSet};
use crate::predicates::GroupKey;

use super::interning::Ids;
use super::pools::SharedCatalog;
use super::topology::Topology;
use super::{DEFAULT_MAX_PODS, PODS};
use crate::model::resource;

/// One node's share of the base.
#[derive(Debug)]
pub(super) struct NodeBase {
    /// Allocatable as a quantity vector (pod slots defaulted).
    pub(super) capacity: Vec<i64>,
    /// Its pods' summed requests (pod slots: its pod count).
    pub(super) used: Vec<i64>,
    pub(super) ports: Vec<HostPort>,
    /// (base group, matching pods here).
    pub(super) groups: Vec<(usize, u32)>,
    /// Indices of its pods that have required anti-affinity terms, in order.
    pub(super) anti_pods: Vec<usize>,
    /// (base workload, pods here), in the order the pods first name them; empty when no pool
    /// sets a spot blast radius.
    pub(super) workloads: Vec<(usize, u32)>,
}

/// The base of a round's probes (see the module docs).
pub(crate) struct Base {
    pub(super) ids: Ids,
    /// The groups any probe can register.
    pub(super) topology: Topology,
    /// Workload keys (see `blast::workload_key`), by base workload id.
    pub(super) workloads: Vec<String>,
    /// Per node of the slice given to [`Base::new`].
    pub(super) nodes: Vec<NodeBase>,
}

impl Base {
    /// The base over `nodes` for probes that solve `input.pods` plus some of `movable` (the
    /// candidates' pods) on some of `nodes`, with `input`'s pools, types and daemonsets.
    pub(crate) fn new(input: &SolveInput, nodes: &[ExistingNode], movable: &[&PodRequest]) -> Base {
        let refs: Vec<&ExistingNode> = nodes.iter().collect();
        let ids = Ids::for_input(input, &refs);
        let mut topology = Topology::default();
        // Groups met before are not built again (replicas repeat their terms; interning is
        // idempotent, so skipping a repeat keeps the ids and their first-use order).
        let mut seen_spreads: FastSet<(&str, &LabelSelector)> = FastSet::default();
        let mut seen_terms: FastSet<(Option<&BTreeSet<String>>, &LabelSelector)> =
            FastSet::default();
        for p in input
            .pods
            .iter()
            .map(|p| &**p)
            .chain(movable.iter().copied())
        {
            for s in &p.topology_spread {
                if let Some(sel) = &s.label_selector
                    && seen_spreads.insert((p.namespace.as_str(), sel))
                {
                    topology.intern(GroupKey {
                        namespaces: Some([p.namespace.clone()].into()),
                        selector: sel.clone(),
                    });
                }
            }
            let terms = p
                .pod_affinity
                .iter()
                .chain(p.preferred_pod_affinity.iter().map(|w| &w.term))
                .chain(&p.pod_anti_affinity)
                .chain(p.preferred_pod_anti_affinity.iter().map(|w| &w.term));
            for t in terms {
                if let Some(sel) = &t.label_selector
                    && seen_terms.insert((t.namespaces.as_ref(), sel))
                {
                    intern_term(&mut topology, t);
                }
            }
        }
        for p in nodes.iter().flat_map(|n| &n.pods) {
            for t in &p.pod_anti_affinity {
                if let Some(sel) = &t.label_selector
                    && seen_terms.insert((t.namespaces.as_ref(), sel))
                {
                    intern_term(&mut topology, t);
                }
            }
        }
        topology.index_groups();
        let blast = input
            .nodepools
            .iter()
            .any(|p| p.spot_max_pods_per_workload.is_some());
        let mut workload_ids: FastMap<String, usize> = FastMap::default();
        let mut workloads = Vec::new();
        let nodes = nodes
            .iter()
            .map(|n| {
                let mut capacity = ids.quantities(&n.allocatable);
                if n.allocatable.get(resource::PODS) == 0 {
                    capacity[PODS] = DEFAULT_MAX_PODS;
                }
                let mut groups: Vec<(usize, u32)> = Vec::new();
                let mut anti_pods = Vec::new();
                let mut node_workloads: Vec<(usize, u32)> = Vec::new();
                for (i, p) in n.pods.iter().enumerate() {
                    for g in topology.groups_selecting(p) {
                        bump(&mut groups, g, 1);
                    }
                    if !p.pod_anti_affinity.is_empty() {
                        anti_pods.push(i);
                    }
                    if blast && let Some(key) = super::blast::workload_key(p) {
                        let next = workloads.len();
                        let w = *workload_ids.entry(key.clone()).or_insert(next);
                        if w == next {
                            workloads.push(key);
                        }
                        bump(&mut node_workloads, w, 1);
                    }
                }
                NodeBase {
                    capacity,
                    used: ids.requested(n),
                    ports: n
                        .pods
                        .iter()
                        .flat_map(|p| p.host_ports.iter().cloned())
                        .collect(),
                    groups,
                    anti_pods,
                    workloads: node_workloads,
                }
            })
            .collect();
        Base {
            ids,
            topology,
            workloads,
            nodes,
        }
    }
}

fn intern_term(topology: &mut Topology, t: &PodAffinityTerm) {
    if let Some(sel) = &t.label_selector {
        topology.intern(GroupKey {
            namespaces: t.namespaces.clone(),
            selector: sel.clone(),
        });
    }
}

/// Adds `k` to `id`'s entry, appending it on first use (so entries keep first-use order).
fn bump(counts: &mut Vec<(usize, u32)>, id: usize, k: u32) {
    match counts.iter_mut().find(|(i, _)| *i == id) {
        Some((_, c)) => *c += k,
        None => counts.push((id, k)),
    }
}

/// A probe's engine's view of the base: which base node each of its existing nodes is.
#[derive(Clone, Copy)]
pub(super) struct OnBase<'a> {
    pub(super) base: &'a Base,
    /// Per node of the engine's `existing`: its index in [`Base::nodes`].
    pub(super) at: &'a [usize],
    /// The round's catalogue, built over the base's ids from the same pools, types and
    /// daemonsets as the probe's input.
    pub(super) catalog: &'a SharedCatalog<'a>,
}

impl<'a> OnBase<'a> {
    pub(super) fn node(&self, index: usize) -> &'a NodeBase {
        &self.base.nodes[self.at[index]]
    }
}
