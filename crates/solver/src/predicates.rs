//! Kube-scheduler's filter predicates over existing nodes, for the simulator's fake scheduler (and
//! anyone who needs to ask "would this pod fit on that node, and if not, why").
//!
//! Key decision: a [`ClusterIndex`] is built once from the nodes and their pods and updated as pods
//! are bound or removed; per-selector pod counts are cached per node and maintained incrementally,
//! so deciding where a pod goes costs one pass over the nodes, not over every pod in the cluster.
//! Semantics follow kube-scheduler's filters: resources, pod count, node selector and required node
//! affinity, taints (NoSchedule/NoExecute), host ports, topology spread (DoNotSchedule), required pod
//! affinity and anti-affinity, and anti-affinity of pods already running.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::domain::{
    ExistingNode, LabelSelector, NodeTaint, PodAffinityTerm, PodKey, PodRequest, WhenUnsatisfiable,
    untolerated,
};
use crate::model::{Resources, resource};

/// Why a pod does not fit one node (kube-scheduler's wording).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    Unschedulable,
    Insufficient(String),
    TooManyPods,
    NodeAffinity,
    UntoleratedTaint(NodeTaint),
    HostPorts,
    TopologySpread,
    PodAffinity,
    PodAntiAffinity,
    ExistingPodAntiAffinity,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Unschedulable => f.write_str("node(s) were unschedulable"),
            Misfit::Insufficient(r) => write!(f, "Insufficient {r}"),
            Misfit::TooManyPods => f.write_str("Too many pods"),
            Misfit::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Misfit::UntoleratedTaint(t) => {
                write!(
                    f,
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key, t.value
                )
            }
            Misfit::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Misfit::TopologySpread => {
                f.write_str("node(s) didn't match pod topology spread constraints")
            }
            Misfit::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Misfit::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Misfit::ExistingPodAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// Why a pod fits no node: `0/5 nodes are available: 3 Insufficient cpu, 2 node(s) had ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    /// Reason -> number of nodes that failed for it (a node counts once, for its first reason).
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available", self.nodes)?;
        let mut first = true;
        for (reason, n) in &self.reasons {
            f.write_str(if first { ": " } else { ", " })?;
            first = false;
            write!(f, "{n} {reason}")?;
        }
        f.write_str(".")
    }
}

impl std::error::Error for FitError {}

/// Errors of index updates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("node {0:?} is not in the cluster index")]
    FindNode(String),
    #[error("pod {0:?} is already bound")]
    BindPod(PodKey),
}

/// A topology or affinity term's pod group: the namespaces it looks in (None = all) and its
/// label selector. Shared by the solver and the predicates so both count pods the same way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub(crate) namespaces: Option<BTreeSet<String>>,
    pub(crate) selector: LabelSelector,
}

impl GroupKey {
    pub(crate) fn selects(&self, pod: &PodRequest) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.contains(&pod.namespace))
            && self.selector.matches(&pod.labels)
    }
}

#[derive(Debug)]
struct IndexedNode {
    node: ExistingNode,
    requested: Resources,
    alive: bool,
}

/// The cluster's nodes and pods, indexed for fast fit checks.
#[derive(Debug, Default)]
pub struct ClusterIndex {
    nodes: Vec<IndexedNode>,
    by_name: HashMap<String, usize>,
    pod_node: HashMap<PodKey, usize>,
    /// Per selector group: matching pods per node index.
    counts: HashMap<GroupKey, Vec<u32>>,
    /// Pods with required anti-affinity: (node index, pod key, term).
    anti: Vec<(usize, PodKey, PodAffinityTerm)>,
}

fn domain_of<'a>(node: &'a ExistingNode, key: &str) -> Option<&'a str> {
    match node.labels.get(key) {
        Some(v) => Some(v.as_str()),
        None if key == stowage_api::labels::HOSTNAME => Some(node.name.as_str()),
        None => None,
    }
}

/// What one pod needs from the whole cluster, computed once per pod per query.
/// (key, maxSkew, count per domain, global minimum, pod matches itself).
type SpreadView = (String, i32, HashMap<String, u32>, u32, bool);

/// A pod's view of the whole cluster ([`ClusterIndex::view_of`]): what checking it against one
/// node needs beyond the node, computed once for many nodes. Valid until the index changes.
pub struct PodView {
    spreads: Vec<SpreadView>,
    /// Per entry of `spreads`: the pods it counts and its `minDomains`.
    spread_groups: Vec<(GroupKey, Option<i32>)>,
    affinity: Vec<(String, BTreeSet<String>)>,
    affinity_free: bool,
    /// Whether the pod matches every one of its own pod affinity terms.
    self_matches_all: bool,
    anti: Vec<(String, BTreeSet<String>)>,
    existing_anti: Vec<(String, String)>,
}

impl ClusterIndex {
    /// Builds the index from nodes carrying their pods.
    pub fn new(nodes: Vec<ExistingNode>) -> Self {
        let mut idx = ClusterIndex::default();
        for n in nodes {
            idx.add_node(n);
        }
        idx
    }

    /// Adds (or replaces) a node with the pods on it.
    pub fn add_node(&mut self, mut node: ExistingNode) {
        if self.by_name.contains_key(&node.name) {
            self.remove_node(&node.name);
        }
        let pods = std::mem::take(&mut node.pods);
        let i = self.nodes.len();
        self.by_name.insert(node.name.clone(), i);
        let mut requested = Resources::new();
        requested.set(resource::PODS, 0);
        self.nodes.push(IndexedNode {
            node,
            requested,
            alive: true,
        });
        for c in self.counts.values_mut() {
            c.push(0);
        }
        for p in pods {
            self.insert_pod(p, i);
        }
    }

    /// Removes a node and returns it with its pods.
    pub fn remove_node(&mut self, name: &str) -> Option<ExistingNode> {
        let i = self.by_name.remove(name)?;
        let keys: Vec<PodKey> = self.nodes[i].node.pods.iter().map(|p| p.key()).collect();
        let mut pods = Vec::new();
        for k in keys {
            if let Some(p) = self.unbind(&k) {
                pods.push(p);
            }
        }
        let n = &mut self.nodes[i];
        n.alive = false;
        let mut node = std::mem::take(&mut n.node);
        node.pods = pods;
        Some(node)
    }

    /// Names of the nodes in the index, in insertion order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.node.name.as_str())
    }

    /// The node a pod is bound to.
    pub fn node_of(&self, pod: &str) -> Option<&str> {
        self.pod_node
            .get(pod)
            .map(|i| self.nodes[*i].node.name.as_str())
    }

    /// The node by name (pods included).
    pub fn node(&self, name: &str) -> Option<&ExistingNode> {
        self.by_name.get(name).map(|i| &self.nodes[*i].node)
    }

    /// Requests (with the `pods` count) of everything on the node.
    pub fn requested(&self, name: &str) -> Option<&Resources> {
        self.by_name.get(name).map(|i| &self.nodes[*i].requested)
    }

    /// Binds a pod to a node (no fit check: call [`ClusterIndex::check`] first).
    pub fn bind(&mut self, pod: impl Into<Arc<PodRequest>>, node: &str) -> Result<(), IndexError> {
        let pod = pod.into();
        let i = *self
            .by_name
            .get(node)
            .ok_or_else(|| IndexError::FindNode(node.to_string()))?;
        if self.pod_node.contains_key(&pod.key()) {
            return Err(IndexError::BindPod(pod.key()));
        }
        self.insert_pod(pod, i);
        Ok(())
    }

    fn insert_pod(&mut self, pod: Arc<PodRequest>, i: usize) {
        let key = pod.key();
        for (g, c) in &mut self.counts {
            if g.selects(&pod) {
                c[i] += 1;
            }
        }
        for t in &pod.pod_anti_affinity {
            self.anti.push((i, key.clone(), t.clone()));
        }
        let n = &mut self.nodes[i];
        n.requested.add(&pod.requests);
        let pods = n.requested.pods() + 1;
        n.requested.set(resource::PODS, pods);
        n.node.pods.push(pod);
        self.pod_node.insert(key, i);
    }

    /// Removes a pod from wherever it is bound.
    pub fn unbind(&mut self, pod_key: &str) -> Option<Arc<PodRequest>> {
        let i = self.pod_node.remove(pod_key)?;
        let n = &mut self.nodes[i];
        let pos = n.node.pods.iter().position(|p| p.key() == pod_key)?;
        let pod = n.node.pods.remove(pos);
        n.requested.sub(&pod.requests);
        let pods = n.requested.pods() - 1;
        n.requested.set(resource::PODS, pods);
        for (g, c) in &mut self.counts {
            if g.selects(&pod) {
                c[i] -= 1;
            }
        }
        self.anti.retain(|(_, k, _)| k != pod_key);
        Some(pod)
    }

    fn group_counts(
        &mut self,
        namespaces: Option<BTreeSet<String>>,
        selector: &LabelSelector,
    ) -> &Vec<u32> {
        let key = GroupKey {
            namespaces,
            selector: selector.clone(),
        };
        let nodes = &self.nodes;
        self.counts.entry(key).or_insert_with_key(|g| {
            nodes
                .iter()
                .map(|n| n.node.pods.iter().filter(|p| g.selects(p)).count() as u32)
                .collect()
        })
    }

    fn node_affinity_ok(pod: &PodRequest, node: &ExistingNode) -> bool {
        pod.node_affinity_matches(&node.name, &node.labels)
    }

    fn view(&mut self, pod: &PodRequest) -> PodView {
        let mut spreads = Vec::new();
        let mut spread_groups = Vec::new();
        for s in &pod.topology_spread {
            if s.when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule {
                continue;
            }
            let Some(sel) = &s.label_selector else {
                continue;
            };
            let ns = Some(BTreeSet::from([pod.namespace.clone()]));
            let self_match = sel.matches(&pod.labels);
            spread_groups.push((
                GroupKey {
                    namespaces: ns.clone(),
                    selector: sel.clone(),
                },
                s.min_domains,
            ));
            let counts = self.group_counts(ns, sel).clone();
            let mut domains: HashMap<String, u32> = HashMap::new();
            for (i, n) in self.nodes.iter().enumerate() {
                if !n.alive || !Self::node_affinity_ok(pod, &n.node) {
                    continue;
                }
                if let Some(d) = domain_of(&n.node, &s.topology_key) {
                    // A domain's name is allocated once, not once per node in it.
                    match domains.get_mut(d) {
                        Some(c) => *c += counts[i],
                        None => {
                            domains.insert(d.to_string(), counts[i]);
                        }
                    }
                }
            }
            let mut min = domains.values().copied().min().unwrap_or(0);
            if s.min_domains.is_some_and(|m| (domains.len() as i32) < m) {
                min = 0;
            }
            spreads.push((s.topology_key.clone(), s.max_skew, domains, min, self_match));
        }
        let mut affinity = Vec::new();
        let mut any_match = false;
        let mut self_matches_all = true;
        for t in &pod.pod_affinity {
            let doms = self.term_domains(t);
            any_match |= !doms.is_empty();
            self_matches_all &= t.selects(&pod.namespace, &pod.labels);
            affinity.push((t.topology_key.clone(), doms));
        }
        let affinity_free = !pod.pod_affinity.is_empty() && !any_match && self_matches_all;
        let mut anti = Vec::new();
        for t in &pod.pod_anti_affinity {
            let doms = self.term_domains(t);
            anti.push((t.topology_key.clone(), doms));
        }
        let mut existing_anti = Vec::new();
        for (i, _, t) in &self.anti {
            if t.selects(&pod.namespace, &pod.labels)
                && let Some(d) = domain_of(&self.nodes[*i].node, &t.topology_key)
            {
                existing_anti.push((t.topology_key.clone(), d.to_string()));
            }
        }
        PodView {
            spreads,
            spread_groups,
            affinity,
            affinity_free,
            self_matches_all,
            anti,
            existing_anti,
        }
    }

    /// Domain values (of the term's key) holding a pod the term selects.
    fn term_domains(&mut self, t: &PodAffinityTerm) -> BTreeSet<String> {
        let Some(sel) = &t.label_selector else {
            return BTreeSet::new();
        };
        let counts = self.group_counts(t.namespaces.clone(), sel).clone();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.alive && counts[*i] > 0)
            .filter_map(|(_, n)| domain_of(&n.node, &t.topology_key).map(str::to_string))
            .collect()
    }

    fn check_view(&self, pod: &PodRequest, view: &PodView, i: usize) -> Result<(), Misfit> {
        let n = &self.nodes[i];
        let node = &n.node;
        if node.unschedulable {
            return Err(Misfit::Unschedulable);
        }
        if !Self::node_affinity_ok(pod, node) {
            return Err(Misfit::NodeAffinity);
        }
        if let Some(t) = untolerated(&node.taints, &pod.tolerations, false) {
            return Err(Misfit::UntoleratedTaint(t.clone()));
        }
        if n.requested.pods() + 1 > node.allocatable.pods() {
            return Err(Misfit::TooManyPods);
        }
        for (name, v) in &pod.requests.0 {
            if n.requested.get(name) + v > node.allocatable.get(name) {
                return Err(Misfit::Insufficient(name.clone()));
            }
        }
        if pod.host_ports.iter().any(|hp| {
            node.pods
                .iter()
                .any(|p| p.host_ports.iter().any(|o| o.conflicts(hp)))
        }) {
            return Err(Misfit::HostPorts);
        }
        for (key, skew, domains, min, self_match) in &view.spreads {
            let Some(d) = domain_of(node, key) else {
                return Err(Misfit::TopologySpread);
            };
            let c = domains.get(d).copied().unwrap_or(0) + u32::from(*self_match);
            if i64::from(c) - i64::from(*min) > i64::from(*skew) {
                return Err(Misfit::TopologySpread);
            }
        }
        if !view.affinity_free {
            for (key, doms) in &view.affinity {
                if !domain_of(node, key).is_some_and(|d| doms.contains(d)) {
                    return Err(Misfit::PodAffinity);
                }
            }
        }
        for (key, doms) in &view.anti {
            if domain_of(node, key).is_some_and(|d| doms.contains(d)) {
                return Err(Misfit::PodAntiAffinity);
            }
        }
        for (key, d) in &view.existing_anti {
            if domain_of(node, key) == Some(d.as_str()) {
                return Err(Misfit::ExistingPodAntiAffinity);
            }
        }
        Ok(())
    }

    /// `pod`'s view of the cluster as it is now, for [`ClusterIndex::check_view_of`] on many
    /// nodes (a bind or any other change of the index makes it stale).
    pub fn view_of(&mut self, pod: &PodRequest) -> PodView {
        self.view(pod)
    }

    /// Brings `view` (`pod`'s, from [`ClusterIndex::view_of`]) up to date after `bound` was
    /// bound to node `name` ([`ClusterIndex::bind`]): to what `view_of` would compute afresh,
    /// without its pass over every node (a bind changes only that node's domains' counts and
    /// pod sets). Binds are the only change it follows: after a node or an unbind, take a new
    /// view.
    pub fn view_after_bind(
        &self,
        pod: &PodRequest,
        view: &mut PodView,
        bound: &PodRequest,
        name: &str,
    ) {
        let Some(n) = self.by_name.get(name).map(|&i| &self.nodes[i]) else {
            return;
        };
        if !n.alive {
            return;
        }
        let node = &n.node;
        for ((key, _, domains, min, _), (group, min_domains)) in
            view.spreads.iter_mut().zip(&view.spread_groups)
        {
            if !group.selects(bound) || !Self::node_affinity_ok(pod, node) {
                continue;
            }
            let Some(c) = domain_of(node, key).and_then(|d| domains.get_mut(d)) else {
                continue;
            };
            *c += 1;
            *min = domains.values().copied().min().unwrap_or(0);
            if min_domains.is_some_and(|m| (domains.len() as i32) < m) {
                *min = 0;
            }
        }
        let terms = pod
            .pod_affinity
            .iter()
            .zip(&mut view.affinity)
            .chain(pod.pod_anti_affinity.iter().zip(&mut view.anti));
        for (t, (key, doms)) in terms {
            if t.selects(&bound.namespace, &bound.labels)
                && let Some(d) = domain_of(node, key)
                && !doms.contains(d)
            {
                doms.insert(d.to_string());
            }
        }
        view.affinity_free = !pod.pod_affinity.is_empty()
            && view.affinity.iter().all(|(_, doms)| doms.is_empty())
            && view.self_matches_all;
        for t in &bound.pod_anti_affinity {
            if t.selects(&pod.namespace, &pod.labels)
                && let Some(d) = domain_of(node, &t.topology_key)
            {
                view.existing_anti
                    .push((t.topology_key.clone(), d.to_string()));
            }
        }
    }

    /// What [`ClusterIndex::check`] answers for node `name`, with `view` from
    /// [`ClusterIndex::view_of`] for the same pod and the index unchanged since.
    pub fn check_view_of(
        &self,
        pod: &PodRequest,
        view: &PodView,
        name: &str,
    ) -> Result<(), Misfit> {
        match self.by_name.get(name) {
            Some(&i) => self.check_view(pod, view, i),
            None => Err(Misfit::Unschedulable),
        }
    }

    /// Whether `pod` fits on node `name` right now.
    pub fn check(&mut self, pod: &PodRequest, name: &str) -> Result<(), Misfit> {
        let Some(&i) = self.by_name.get(name) else {
            return Err(Misfit::Unschedulable);
        };
        let view = self.view(pod);
        self.check_view(pod, &view, i)
    }

    /// The indices (ascending) of the nodes the pod's required node affinity pins it to by
    /// name, when every term pins (`matchFields` `metadata.name In [...]`): no other node
    /// matches its node affinity.
    fn pinned(&self, pod: &PodRequest) -> Option<Vec<usize>> {
        if pod.required_node_affinity.is_empty() {
            return None;
        }
        let mut found = Vec::new();
        for t in &pod.required_node_affinity {
            let names = t.pinned_names()?;
            found.extend(names.iter().filter_map(|n| self.by_name.get(n).copied()));
        }
        found.sort_unstable();
        found.dedup();
        Some(found)
    }

    /// Every node the pod fits on (insertion order), or why none.
    pub fn feasible(&mut self, pod: &PodRequest) -> Result<Vec<String>, FitError> {
        let view = self.view(pod);
        // A pod pinned to nodes by name (a DaemonSet's) fits no other node: check only those,
        // and pass over every node only to say why it fits none.
        if let Some(pinned) = self.pinned(pod) {
            let ok: Vec<String> = pinned
                .into_iter()
                .filter(|&i| self.nodes[i].alive && self.check_view(pod, &view, i).is_ok())
                .map(|i| self.nodes[i].node.name.clone())
                .collect();
            if !ok.is_empty() {
                return Ok(ok);
            }
        }
        let mut ok = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut total = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            total += 1;
            match self.check_view(pod, &view, i) {
                Ok(()) => ok.push(n.node.name.clone()),
                Err(m) => *reasons.entry(m.to_string()).or_insert(0) += 1,
            }
        }
        if ok.is_empty() {
            Err(FitError {
                nodes: total,
                reasons,
            })
        } else {
            Ok(ok)
        }
    }

    /// The node kube-scheduler would likely pick: highest preferred-node-affinity weight, then
    /// the most requested cpu (pack onto nodes that were bought for pending pods), then name.
    pub fn find_node(&mut self, pod: &PodRequest) -> Result<String, FitError> {
        let feasible = self.feasible(pod)?;
        let score = |name: &String| {
            let Some(&i) = self.by_name.get(name) else {
                return (0, 0);
            };
            let n = &self.nodes[i];
            let pref: i32 = pod
                .preferred_node_affinity
                .iter()
                .filter(|t| t.matches(&n.node.name, &n.node.labels))
                .map(|t| t.weight)
                .sum();
            (pref, n.requested.cpu_millis())
        };
        let mut best: Option<(String, (i32, i64))> = None;
        for name in feasible {
            let s = score(&name);
            if best
                .as_ref()
                .is_none_or(|(bn, bs)| s > *bs || (s == *bs && name < *bn))
            {
                best = Some((name, s));
            }
        }
        best.map(|(n, _)| n).ok_or(FitError {
            nodes: 0,
            reasons: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TaintEffect, Toleration};

    fn node(name: &str, cpu: i64, zone: &str) -> ExistingNode {
        ExistingNode::new(
            name,
            Resources::new()
                .with("cpu", cpu)
                .with("memory", 8 << 30)
                .with("pods", 10),
        )
        .label(stowage_api::labels::ZONE, zone)
    }

    #[test]
    fn explains_like_kube_scheduler() {
        let mut idx = ClusterIndex::new(vec![
            node("a", 500, "z1"),
            node("b", 500, "z1"),
            node("c", 4000, "z2").taint(NodeTaint::new(
                "dedicated",
                "gpu",
                TaintEffect::NoSchedule,
            )),
        ]);
        let pod = PodRequest::new("default", "web").cpu_millis(1000);
        let err = idx.find_node(&pod).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
        );
        let tolerant = pod
            .clone()
            .toleration(Toleration::equal("dedicated", "gpu", None));
        assert_eq!(idx.find_node(&tolerant).unwrap(), "c");
    }

    #[test]
    fn a_pod_pinned_by_node_name_fits_only_its_node() {
        let mut idx = ClusterIndex::new(vec![node("a", 4000, "z1"), node("b", 500, "z1")]);
        let agent = PodRequest::new("kube-system", "agent")
            .cpu_millis(100)
            .pin_to_node("b");
        assert_eq!(idx.feasible(&agent).unwrap(), vec!["b".to_string()]);
        let elsewhere = PodRequest::new("kube-system", "agent-c")
            .cpu_millis(100)
            .pin_to_node("c");
        assert_eq!(
            idx.find_node(&elsewhere).unwrap_err().to_string(),
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        );
        let big = PodRequest::new("kube-system", "big")
            .cpu_millis(1000)
            .pin_to_node("b");
        assert_eq!(
            idx.find_node(&big).unwrap_err().to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn binds_and_counts_incrementally() {
        let mut idx = ClusterIndex::new(vec![node("a", 4000, "z1"), node("b", 4000, "z2")]);
        let anti = |n: &str| {
            PodRequest::new("default", n)
                .cpu_millis(100)
                .label("app", "db")
                .self_anti_affinity("kubernetes.io/hostname")
        };
        let first = idx.find_node(&anti("db-0")).unwrap();
        idx.bind(anti("db-0"), &first).unwrap();
        let second = idx.find_node(&anti("db-1")).unwrap();
        assert_ne!(first, second);
        idx.bind(anti("db-1"), &second).unwrap();
        let err = idx.find_node(&anti("db-2")).unwrap_err();
        assert!(err.to_string().contains("anti-affinity"), "{err}");
        assert!(idx.unbind("default/db-0").is_some());
        assert_eq!(idx.find_node(&anti("db-2")).unwrap(), first);
        assert_eq!(
            idx.bind(anti("db-1"), "a"),
            Err(IndexError::BindPod("default/db-1".into()))
        );
    }

    #[test]
    fn zone_spread_blocks_skew() {
        let mut idx = ClusterIndex::new(vec![node("a", 4000, "z1"), node("b", 4000, "z2")]);
        let p = |n: &str| {
            PodRequest::new("default", n)
                .cpu_millis(100)
                .label("app", "web")
                .spread(
                    stowage_api::labels::ZONE,
                    1,
                    WhenUnsatisfiable::DoNotSchedule,
                )
        };
        idx.bind(p("w0"), "a").unwrap();
        assert_eq!(idx.check(&p("w1"), "a"), Err(Misfit::TopologySpread));
        assert_eq!(idx.check(&p("w1"), "b"), Ok(()));
        // Host ports conflict.
        let hp = PodRequest::new("default", "hp").host_port(80);
        idx.bind(hp.clone(), "b").unwrap();
        let mut hp2 = hp;
        hp2.name = "hp2".into();
        assert_eq!(idx.check(&hp2, "b"), Err(Misfit::HostPorts));
        assert_eq!(idx.requested("b").unwrap().pods(), 1);
    }

    #[test]
    fn a_view_computed_once_checks_every_node_as_check_does() {
        let mut idx = ClusterIndex::new(
            (0..12)
                .map(|i| node(&format!("n{i}"), 300 + 100 * i, &format!("z{}", i % 3)))
                .collect(),
        );
        let p = |n: &str| {
            PodRequest::new("default", n)
                .cpu_millis(200)
                .label("app", "web")
                .spread(
                    stowage_api::labels::ZONE,
                    1,
                    WhenUnsatisfiable::DoNotSchedule,
                )
        };
        let names: Vec<String> = idx.node_names().map(str::to_string).collect();
        let mut spread_refusals = 0;
        for i in 0..30 {
            let pod = p(&format!("w{i}"));
            let view = idx.view_of(&pod);
            let once: Vec<_> = names
                .iter()
                .map(|n| idx.check_view_of(&pod, &view, n))
                .collect();
            let each: Vec<_> = names.iter().map(|n| idx.check(&pod, n)).collect();
            assert_eq!(once, each, "pod {i}");
            spread_refusals += once
                .iter()
                .filter(|r| **r == Err(Misfit::TopologySpread))
                .count();
            let Ok(node) = idx.find_node(&pod) else { break };
            idx.bind(pod, &node).unwrap();
        }
        assert!(
            spread_refusals > 0,
            "the spread refused some node on the way"
        );
        let view = idx.view_of(&p("x"));
        assert_eq!(
            idx.check_view_of(&p("x"), &view, "missing"),
            Err(Misfit::Unschedulable)
        );
    }

    #[test]
    fn a_view_kept_up_to_date_by_binds_checks_as_a_fresh_one() {
        let mut idx = ClusterIndex::new(
            (0..12)
                .map(|i| {
                    node(&format!("n{i}"), 4000, &format!("z{}", i % 3))
                        .label("tier", if i % 4 == 0 { "a" } else { "b" })
                })
                .collect(),
        );
        let zone = stowage_api::labels::ZONE;
        let hostname = stowage_api::labels::HOSTNAME;
        // Zone spread; zone spread of the `tier: a` nodes only, needing 3 domains; zone
        // affinity; hostname anti-affinity.
        type Kind = Box<dyn Fn(&str) -> PodRequest>;
        let kinds: Vec<Kind> = vec![
            Box::new(|n| {
                PodRequest::new("default", n)
                    .cpu_millis(100)
                    .label("app", "web")
                    .spread(zone, 1, WhenUnsatisfiable::DoNotSchedule)
            }),
            Box::new(|n| {
                let mut p = PodRequest::new("default", n)
                    .cpu_millis(100)
                    .label("app", "edge")
                    .node_selector("tier", "a")
                    .spread(zone, 1, WhenUnsatisfiable::DoNotSchedule);
                p.topology_spread[0].min_domains = Some(3);
                p
            }),
            Box::new(|n| {
                PodRequest::new("default", n)
                    .cpu_millis(100)
                    .label("app", "cache")
                    .self_affinity(zone)
            }),
            Box::new(|n| {
                PodRequest::new("default", n)
                    .cpu_millis(100)
                    .label("app", "db")
                    .self_anti_affinity(hostname)
            }),
        ];
        let names: Vec<String> = idx.node_names().map(str::to_string).collect();
        let probes: Vec<PodRequest> = kinds.iter().map(|k| k("probe")).collect();
        let mut views: Vec<PodView> = probes.iter().map(|p| idx.view_of(p)).collect();
        let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..48 {
            let pod = kinds[i % kinds.len()](&format!("p{i}"));
            let Ok(node) = idx.find_node(&pod) else {
                continue;
            };
            idx.bind(pod.clone(), &node).unwrap();
            for (probe, view) in probes.iter().zip(&mut views) {
                idx.view_after_bind(probe, view, &pod, &node);
                let kept: Vec<_> = names
                    .iter()
                    .map(|n| idx.check_view_of(probe, view, n))
                    .collect();
                let fresh: Vec<_> = names.iter().map(|n| idx.check(probe, n)).collect();
                assert_eq!(
                    kept, fresh,
                    "{} after {} on {node}",
                    probe.labels["app"], pod.name
                );
                for r in kept.into_iter().filter_map(Result::err) {
                    *refusals.entry(r.to_string()).or_insert(0) += 1;
                }
            }
        }
        for m in [
            Misfit::TopologySpread,
            Misfit::PodAffinity,
            Misfit::PodAntiAffinity,
            Misfit::NodeAffinity,
        ] {
            assert!(
                refusals.contains_key(&m.to_string()),
                "no {m:?} on the way: {refusals:?}"
            );
        }
    }

    #[test]
    fn pod_affinity_allows_first_self_matching_pod() {
        let mut idx = ClusterIndex::new(vec![node("a", 4000, "z1"), node("b", 4000, "z2")]);
        let p = |n: &str| {
            PodRequest::new("default", n)
                .cpu_millis(100)
                .label("app", "cache")
                .self_affinity(stowage_api::labels::ZONE)
        };
        let first = idx.find_node(&p("c0")).unwrap();
        idx.bind(p("c0"), &first).unwrap();
        assert_eq!(idx.feasible(&p("c1")).unwrap(), vec![first]);
        let removed = idx.remove_node("a").unwrap();
        assert_eq!(removed.pods.len(), 1);
        assert_eq!(idx.node_names().collect::<Vec<_>>(), vec!["b"]);
    }
}
