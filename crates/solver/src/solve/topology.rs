//! Step 3, topology: the *topology groups* (the pods one spread or pod-affinity term counts:
//! namespaces + selector, [`GroupKey`]) and the anti-affinity terms of pods, with their counts
//! per domain (zone, capacity type, label value) kept up to date as pods are placed; and the
//! domain combinations a class may use next ([`Engine::combos`]), in preference order.

use std::collections::BTreeSet;

use stowage_api::CapacityType;

use super::interning::{KeyKind, capacity_type_bit, capacity_type_index};
use super::place::NodeOrigin;
use super::{Engine, MAX_COMBOS};
use crate::domain::{LabelSelector, PodAffinityTerm, PodRequest};
use crate::hash::FastMap;
use crate::predicates::GroupKey;

/// An anti-affinity term: the topology group it repels, over which topology key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct AntiTerm {
    pub(super) group: usize,
    pub(super) key: usize,
}

/// Topology groups, anti-affinity terms and their domain counts.
#[derive(Debug, Default)]
pub(super) struct Topology {
    groups: Vec<GroupKey>,
    group_ids: FastMap<GroupKey, usize>,
    /// Per group: the non-hostname keys it is counted over.
    pub(super) group_domain_keys: Vec<Vec<usize>>,
    /// Per group: matching pods anywhere.
    pub(super) group_total: Vec<u32>,
    pub(super) antis: Vec<AntiTerm>,
    anti_ids: FastMap<AntiTerm, usize>,
    /// (group, key, value) -> matching pods in that domain.
    pub(super) domain_counts: FastMap<(usize, usize, u32), u32>,
    /// (anti term, value) -> pods owning the term in that domain.
    pub(super) anti_domain_counts: FastMap<(usize, u32), u32>,
    /// Groups `..indexed` by their first matchLabels pair, or in `unindexed` when they have
    /// none ([`Topology::index_groups`]).
    by_label: FastMap<String, FastMap<String, Vec<usize>>>,
    unindexed: Vec<usize>,
    indexed: usize,
}

impl Topology {
    /// Groups that select `pod`.
    pub(super) fn groups_selecting(&self, pod: &PodRequest) -> Vec<usize> {
        // Indexed groups can select the pod only if it carries their first matchLabels pair.
        let mut out: Vec<usize> = pod
            .labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(k)?.get(v))
            .flatten()
            .chain(&self.unindexed)
            .copied()
            .chain(self.indexed..self.groups.len())
            .filter(|g| self.groups[*g].selects(pod))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Indexes the groups registered so far by their first matchLabels pair (see
    /// [`Topology::groups_selecting`]); groups added later are checked one by one.
    pub(super) fn index_groups(&mut self) {
        self.by_label.clear();
        self.unindexed.clear();
        for (g, key) in self.groups.iter().enumerate() {
            match key.selector.match_labels.iter().next() {
                Some((k, v)) => self
                    .by_label
                    .entry(k.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default()
                    .push(g),
                None => self.unindexed.push(g),
            }
        }
        self.indexed = self.groups.len();
    }

    /// Counts `k` more pods of the groups `groups` in the domains `domain_values` (per key).
    pub(super) fn count_groups(&mut self, groups: &[usize], domain_values: &[Option<u32>], k: u32) {
        for &g in groups {
            self.group_total[g] += k;
            for &key in &self.group_domain_keys[g] {
                if let Some(v) = domain_values[key] {
                    *self.domain_counts.entry((g, key, v)).or_insert(0) += k;
                }
            }
        }
    }

    /// Counts `k` more owners of the anti terms `antis` in the domains `domain_values`.
    pub(super) fn count_antis(&mut self, antis: &[usize], domain_values: &[Option<u32>], k: u32) {
        for &a in antis {
            if let Some(v) = domain_values.get(self.antis[a].key).copied().flatten() {
                *self.anti_domain_counts.entry((a, v)).or_insert(0) += k;
            }
        }
    }

    /// The id of group `g`, registered on first use.
    pub(super) fn intern(&mut self, g: GroupKey) -> usize {
        if let Some(i) = self.group_ids.get(&g) {
            return *i;
        }
        self.groups.push(g.clone());
        self.group_domain_keys.push(Vec::new());
        self.group_total.push(0);
        self.group_ids.insert(g, self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// The id of group `g` if registered.
    pub(super) fn find(&self, g: &GroupKey) -> Option<usize> {
        self.group_ids.get(g).copied()
    }

    /// The registered groups, by id.
    pub(super) fn groups(&self) -> &[GroupKey] {
        &self.groups
    }

    pub(super) fn domain_count(&self, group: usize, key: usize, value: u32) -> u32 {
        self.domain_counts
            .get(&(group, key, value))
            .copied()
            .unwrap_or(0)
    }
}

impl Engine<'_> {
    /// The id of the topology group of `selector` in `namespaces`, counted over `key`.
    pub(super) fn group_id(
        &mut self,
        namespaces: Option<BTreeSet<String>>,
        selector: &LabelSelector,
        key: usize,
    ) -> usize {
        let t = &mut self.topology;
        let id = t.intern(GroupKey {
            namespaces,
            selector: selector.clone(),
        });
        if !self.ids.is_hostname(key) && !t.group_domain_keys[id].contains(&key) {
            t.group_domain_keys[id].push(key);
        }
        id
    }

    /// The id of an anti-affinity term (None without a selector).
    pub(super) fn anti_id(&mut self, term: &PodAffinityTerm) -> Option<usize> {
        let selector = term.label_selector.as_ref()?;
        let key = self.ids.key_id(&term.topology_key);
        let group = self.group_id(term.namespaces.clone(), selector, key);
        let anti = AntiTerm { group, key };
        let t = &mut self.topology;
        Some(match t.anti_ids.get(&anti) {
            Some(a) => *a,
            None => {
                t.antis.push(anti);
                t.anti_ids.insert(anti, t.antis.len() - 1);
                t.antis.len() - 1
            }
        })
    }

    fn register_pod(&mut self, p: &PodRequest) {
        for s in &p.topology_spread {
            if let Some(sel) = &s.label_selector {
                let key = self.ids.key_id(&s.topology_key);
                self.group_id(Some(BTreeSet::from([p.namespace.clone()])), sel, key);
            }
        }
        let terms = p
            .pod_affinity
            .iter()
            .chain(p.preferred_pod_affinity.iter().map(|w| &w.term));
        for t in terms {
            if let Some(sel) = &t.label_selector {
                let key = self.ids.key_id(&t.topology_key);
                self.group_id(t.namespaces.clone(), sel, key);
            }
        }
        let anti = p
            .pod_anti_affinity
            .iter()
            .chain(p.preferred_pod_anti_affinity.iter().map(|w| &w.term));
        for t in anti {
            self.anti_id(t);
        }
    }

    /// Topology groups from pending pods and from existing pods' anti-affinity.
    pub(super) fn register_topology_groups(&mut self) {
        let input = self.input;
        for p in &input.pods {
            self.register_pod(p);
        }
        let existing = self.existing.clone();
        for (i, n) in existing.iter().enumerate() {
            match self.base {
                // The base lists the pods with anti-affinity (the same, in the same order).
                Some(b) => {
                    for &k in &b.node(i).anti_pods {
                        for t in &n.pods[k].pod_anti_affinity {
                            self.anti_id(t);
                        }
                    }
                }
                None => {
                    for p in &n.pods {
                        for t in &p.pod_anti_affinity {
                            self.anti_id(t);
                        }
                    }
                }
            }
        }
        self.topology.index_groups();
    }

    /// Domain values each of the class's domain keys may take now, in preference order, as
    /// combinations (capped). Err: the topology rules out every domain (the reason).
    pub(super) fn combos(&mut self, c: usize) -> Result<Vec<Vec<u32>>, String> {
        let keys = self.classes[c].domain_keys.clone();
        if keys.is_empty() {
            return Ok(vec![Vec::new()]);
        }
        let mut per_key: Vec<Vec<u32>> = Vec::new();
        for key in keys {
            let domains = self.class_domains(c, key);
            if domains.is_empty() {
                // Nowhere to go at all: the pool reasons say why.
                return Ok(Vec::new());
            }
            let eligible = self.spread_domains(c, key);
            per_key.push(self.allowed_domains(c, key, &domains, &eligible)?);
        }
        let mut combos: Vec<Vec<u32>> = vec![Vec::new()];
        for values in per_key {
            let mut next = Vec::new();
            for combo in &combos {
                for v in &values {
                    if next.len() >= MAX_COMBOS {
                        break;
                    }
                    let mut x = combo.clone();
                    x.push(*v);
                    next.push(x);
                }
            }
            combos = next;
        }
        Ok(combos)
    }

    /// Of the domains of `key` the class can reach, those its constraints (and the
    /// anti-affinity of running pods) allow, least loaded first, then by name. A spread's
    /// global minimum is taken over `eligible` ([`Engine::spread_domains`]).
    fn allowed_domains(
        &self,
        c: usize,
        key: usize,
        domains: &[u32],
        eligible: &[u32],
    ) -> Result<Vec<u32>, String> {
        let class = &self.classes[c];
        let topo = &self.topology;
        let key_name = self.ids.key_name(key);
        // (load, value)
        let mut allowed: Vec<(u32, u32)> = domains.iter().map(|v| (0, *v)).collect();
        for con in class.domain_constraints.iter().filter(|d| d.key == key) {
            let count = |v: u32| topo.domain_count(con.group, key, v);
            match con.rule {
                DomainRule::Spread {
                    max_skew,
                    min_domains,
                } => {
                    let min = if (eligible.len() as i32) < min_domains {
                        0
                    } else {
                        eligible.iter().map(|v| count(*v)).min().unwrap_or(0)
                    };
                    let me = u32::from(con.selects_self);
                    allowed.retain(|(_, v)| {
                        i64::from(count(*v) + me) - i64::from(min) <= i64::from(max_skew)
                    });
                    for a in &mut allowed {
                        a.0 = a.0.max(count(a.1));
                    }
                    if allowed.is_empty() {
                        return Err(format!(
                            "topology spread on {key_name} (maxSkew {max_skew}) cannot be satisfied in any domain"
                        ));
                    }
                }
                DomainRule::Affinity => {
                    if !(topo.group_total[con.group] == 0 && con.selects_self) {
                        allowed.retain(|(_, v)| count(*v) > 0);
                    }
                    if allowed.is_empty() {
                        return Err(format!(
                            "pod affinity on {key_name}: no domain has a matching pod"
                        ));
                    }
                }
                DomainRule::AntiAffinity => {
                    allowed.retain(|(_, v)| count(*v) == 0);
                    if allowed.is_empty() {
                        return Err(format!(
                            "pod anti-affinity on {key_name}: every domain already has a matching pod"
                        ));
                    }
                }
            }
        }
        for &a in class
            .repelled_by
            .iter()
            .filter(|a| topo.antis[**a].key == key)
        {
            allowed
                .retain(|(_, v)| topo.anti_domain_counts.get(&(a, *v)).copied().unwrap_or(0) == 0);
        }
        if allowed.is_empty() {
            return Err(format!(
                "anti-affinity of running pods excludes every {key_name} domain"
            ));
        }
        allowed.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                self.ids
                    .value_name(key, a.1)
                    .cmp(self.ids.value_name(key, b.1))
            })
        });
        Ok(allowed.into_iter().map(|(_, v)| v).collect())
    }

    /// The domains of `key` a spread of class `c` takes its global minimum over, as
    /// kube-scheduler does: those of every existing node (or in-flight claim) the pod's node
    /// selector and required node affinity admit (nodeAffinityPolicy Honor), whatever its taints
    /// (nodeTaintsPolicy Ignore) and cordoned or not; and those the class can reach
    /// ([`Engine::class_domains`]: a zone the class can buy in gets a node if a pod goes
    /// there). A zone holding only nodes the pods cannot use still counts: while it has fewer
    /// matching pods than maxSkew below the others, the scheduler refuses them everywhere else
    /// (sorted by name; cached).
    pub(super) fn spread_domains(&mut self, c: usize, key: usize) -> Vec<u32> {
        if let Some(d) = self.caches.spread_domains.get(&(c, key)) {
            return d.clone();
        }
        let mut set: BTreeSet<u32> = self.class_domains(c, key).into_iter().collect();
        let pod = &self.classes[c].pod;
        for n in &self.nodes {
            if let NodeOrigin::Existing { index } = n.origin
                && let Some(v) = n.domain_values[key]
                && !set.contains(&v)
            {
                let node = self.existing[index];
                if pod.node_affinity_matches(&node.name, &node.labels) {
                    set.insert(v);
                }
            }
        }
        let mut out: Vec<u32> = set.into_iter().collect();
        out.sort_by(|a, b| {
            self.ids
                .value_name(key, *a)
                .cmp(self.ids.value_name(key, *b))
        });
        self.caches.spread_domains.insert((c, key), out.clone());
        out
    }

    /// The domains of `key` the class could use at all: those of existing nodes it may go to
    /// and those its compatible types offer (sorted by name; cached).
    pub(super) fn class_domains(&mut self, c: usize, key: usize) -> Vec<u32> {
        if let Some(d) = self.caches.domains.get(&(c, key)) {
            return d.clone();
        }
        let mut set: BTreeSet<u32> = BTreeSet::new();
        for n in 0..self.nodes.len() {
            if matches!(self.nodes[n].origin, NodeOrigin::Existing { .. })
                && self.static_ok(c, n)
                && let Some(v) = self.nodes[n].domain_values[key]
            {
                set.insert(v);
            }
        }
        // Zones and capacity types as masks, label values as a set: one pass over the types.
        let (mut zones, mut capacity_types) = (0u64, 0u8);
        // In the order first seen (value ids are interned in that order).
        let (mut label_values, mut seen): (Vec<&str>, BTreeSet<&str>) = Default::default();
        let class = &self.classes[c];
        let kind = self.ids.key_kind(key);
        let key_name = self.ids.key_name(key);
        for (pi, pool) in self.catalog.pools.iter().enumerate() {
            let Some(bits) = &class.compatible[pi] else {
                continue;
            };
            let cts = class.capacity_types & pool.capacity_types;
            for t in bits.iter() {
                let ty = &self.catalog.types[t];
                match kind {
                    KeyKind::Zone => zones |= ty.zones_any(cts) & class.zone_mask,
                    KeyKind::CapacityType => {
                        for ct in CapacityType::ALL {
                            if cts & capacity_type_bit(ct) != 0
                                && ty.zones(ct) & class.zone_mask != 0
                            {
                                capacity_types |= 1 << capacity_type_index(ct);
                            }
                        }
                    }
                    KeyKind::Label => {
                        if let Some(v) = ty.labels.get(key_name)
                            && seen.insert(v)
                        {
                            label_values.push(v);
                        }
                    }
                    KeyKind::Hostname => {}
                }
            }
        }
        for z in 0..self.ids.zones().len() {
            if zones & (1 << z) != 0 {
                set.insert(z as u32);
            }
        }
        for i in 0..8 {
            if capacity_types & (1 << i) != 0 {
                set.insert(i);
            }
        }
        let label_values: Vec<String> = label_values.into_iter().map(str::to_string).collect();
        for v in label_values {
            if let Some(id) = self.ids.value_id(key, &v) {
                set.insert(id);
            }
        }
        let mut out: Vec<u32> = set.into_iter().collect();
        out.sort_by(|a, b| {
            self.ids
                .value_name(key, *a)
                .cmp(self.ids.value_name(key, *b))
        });
        self.caches.domains.insert((c, key), out.clone());
        out
    }
}

/// What a non-hostname topology constraint of a class demands of a domain.
#[derive(Clone, Copy, Debug)]
pub(super) enum DomainRule {
    Spread { max_skew: i32, min_domains: i32 },
    Affinity,
    AntiAffinity,
}

/// A spread, affinity or anti-affinity constraint over a non-hostname topology key.
#[derive(Clone, Debug)]
pub(super) struct DomainConstraint {
    pub(super) key: usize,
    pub(super) group: usize,
    pub(super) rule: DomainRule,
    /// Whether the class's own pods are in the group (they count against the constraint).
    pub(super) selects_self: bool,
}

impl DomainConstraint {
    /// Whether it allows at most one pod of the class per node (self-matching spread or
    /// anti-affinity: each pod changes the domain counts).
    pub(super) fn one_per_node(&self) -> bool {
        self.selects_self
            && matches!(
                self.rule,
                DomainRule::Spread { .. } | DomainRule::AntiAffinity
            )
    }
}
