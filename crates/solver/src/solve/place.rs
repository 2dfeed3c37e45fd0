//! Step 5, placing: puts pods of a class onto nodes that are already there (existing nodes,
//! in-flight claims, then claims this solve opened), as many per node as fit
//! ([`Engine::fit`]: resources, host ports, hostname topology, taints and requirements, domain
//! pins). Scans resume from a per-(class, domains) cursor. When no node has room, the class
//! asks [`super::open`] for a new claim. Bundles are placed here too: slack of open claims
//! first, then new nodes each taking a proportional slice of every class.

use stowage_api::CapacityType;

use super::classes::pins_zone;
use super::interning::{KeyKind, capacity_type_bit};
use super::pools::PoolType;
use super::{DEFAULT_MAX_PODS, Engine, PODS};
use crate::bitset::Bitset;
use crate::domain::{HostPort, untolerated};
use crate::model::resource;

/// A node of the solve's own making: what it is and what it holds.
#[derive(Debug)]
pub(super) enum NodeOrigin {
    /// An existing node or in-flight claim (index into `Engine::existing`).
    Existing { index: usize },
    /// A claim opened by this solve.
    New(OpenedClaim),
}

/// A claim opened by this solve.
#[derive(Debug)]
pub(super) struct OpenedClaim {
    pub(super) pool: usize,
    /// The type it was charged for (index into the catalog's types).
    pub(super) target_type: usize,
    pub(super) capacity_type: CapacityType,
    /// Zones it may still launch in.
    pub(super) zone_mask: u64,
    /// Types compatible with every class it holds.
    pub(super) compatible: Bitset,
}

/// A node as the solve tracks it.
#[derive(Debug)]
pub(super) struct SimNode {
    /// A new claim's name; empty for an existing node or in-flight claim (its name is
    /// `Engine::existing`'s: not copied for every node of every consolidation probe).
    pub(super) name: String,
    pub(super) origin: NodeOrigin,
    /// Allocatable as a quantity vector.
    pub(super) capacity: Vec<i64>,
    pub(super) used: Vec<i64>,
    pub(super) ports: Vec<HostPort>,
    /// Pending pods placed here (indices into `SolveInput::pods`).
    pub(super) pods: Vec<usize>,
    /// (topology group, matching pods here).
    group_counts: Vec<(usize, u32)>,
    /// (anti-affinity term, pods here owning it).
    anti_counts: Vec<(usize, u32)>,
    /// Domain value per topology key (None: not in any domain, or zone still flexible).
    pub(super) domain_values: Vec<Option<u32>>,
    /// Bumped whenever pods are placed here (usage, zones, compatible types and pinned
    /// domains change only then): what [`ShrinkMemo`] is keyed on.
    pub(super) version: u64,
}

fn count_of(counts: &[(usize, u32)], id: usize) -> u32 {
    counts.iter().find(|(i, _)| *i == id).map_or(0, |(_, c)| *c)
}

fn bump(counts: &mut Vec<(usize, u32)>, id: usize, k: u32) {
    match counts.iter_mut().find(|(i, _)| *i == id) {
        Some((_, c)) => *c += k,
        None => counts.push((id, k)),
    }
}

impl SimNode {
    pub(super) fn new(
        name: String,
        origin: NodeOrigin,
        capacity: Vec<i64>,
        domain_values: Vec<Option<u32>>,
    ) -> Self {
        SimNode {
            name,
            origin,
            used: vec![0; capacity.len()],
            capacity,
            ports: Vec::new(),
            pods: Vec::new(),
            group_counts: Vec::new(),
            anti_counts: Vec::new(),
            domain_values,
            version: 0,
        }
    }

    fn group_count(&self, group: usize) -> u32 {
        count_of(&self.group_counts, group)
    }

    fn anti_count(&self, anti: usize) -> u32 {
        count_of(&self.anti_counts, anti)
    }

    pub(super) fn opened(&self) -> Option<&OpenedClaim> {
        match &self.origin {
            NodeOrigin::New(claim) => Some(claim),
            NodeOrigin::Existing { .. } => None,
        }
    }
}

/// What [`Engine::cheapest_holding`] answered for a new claim (without the charge ceiling), at
/// the claim's [`SimNode::version`]: its usage, zones, compatible types and pinned domain
/// values change only when pods are placed, which bumps the version.
#[derive(Debug, Clone)]
pub(super) struct ShrinkMemo {
    version: u64,
    choice: Option<usize>,
}

/// Where and how many pods of a class a node takes now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fit {
    pub(super) pods: usize,
    /// The node's zone mask afterwards (new claims).
    pub(super) zone_mask: u64,
}

/// Nodes per block of the [`RoomIndex`].
const ROOM_BLOCK: usize = 32;

/// The room of every node (capacity less usage, per resource, in one flat vector) and, per block
/// of [`ROOM_BLOCK`] consecutive nodes, the most room any of them has per resource and the
/// NodePools of its claims: what a scan checks before it looks at a node, and what lets it
/// skip a whole block.
#[derive(Debug, Default)]
struct RoomSummary {
    /// Per node, per resource (`resources` apart); valid in fresh blocks.
    node_room: Vec<i64>,
    /// Per block, per resource.
    block_room: Vec<i64>,
    /// Per block: bit `p` (at most [`POOL_BITS`] - 1) for a claim of pool `p`, the top bit
    /// for an existing node or in-flight claim.
    pools: Vec<u64>,
    stale: Vec<bool>,
}

impl RoomSummary {
    fn mark(&mut self, b: usize) {
        if b >= self.stale.len() {
            self.stale.resize(b + 1, true);
        }
        self.stale[b] = true;
    }

    fn is_stale(&self, b: usize) -> bool {
        self.stale.get(b).is_none_or(|s| *s)
    }

    /// Sets block `b` from its nodes' room (`rooms`: one resource vector per node).
    fn set(&mut self, b: usize, resources: usize, rooms: &[i64], pools: u64) {
        let (first, blocks) = (b * ROOM_BLOCK * resources, b + 1);
        if self.node_room.len() < first + rooms.len() {
            self.node_room.resize(first + rooms.len(), 0);
        }
        self.node_room[first..first + rooms.len()].copy_from_slice(rooms);
        if self.block_room.len() < blocks * resources {
            self.block_room.resize(blocks * resources, 0);
        }
        if self.pools.len() < blocks {
            self.pools.resize(blocks, 0);
        }
        self.mark(b);
        let block = &mut self.block_room[b * resources..(b + 1) * resources];
        block.iter_mut().for_each(|x| *x = i64::MIN);
        for room in rooms.chunks(resources.max(1)) {
            for (x, r) in block.iter_mut().zip(room) {
                *x = (*x).max(*r);
            }
        }
        self.pools[b] = pools;
        self.stale[b] = false;
    }

    /// Whether no node of fresh block `b` can take a pod requesting `want` from `pools`.
    fn rules_out(&self, b: usize, want: &[i64], pools: u64) -> bool {
        let r = want.len();
        self.pools[b] & pools == 0 || !holds(&self.block_room[b * r..(b + 1) * r], want)
    }

    /// Whether node `n` (in a fresh block) has room for a pod requesting `want`.
    fn has_room(&self, n: usize, want: &[i64]) -> bool {
        let r = want.len();
        holds(&self.node_room[n * r..(n + 1) * r], want)
    }
}

/// Whether `room` holds `want` (every requested resource; as [`Engine::fit`] counts it).
fn holds(room: &[i64], want: &[i64]) -> bool {
    want.iter().zip(room).all(|(w, r)| *w <= 0 || r >= w)
}

/// Lets a scan skip a whole block of [`ROOM_BLOCK`] nodes none of which can take a pod: one
/// [`RoomSummary`] of the nodes as they are, one of their room in a bundle's slack round (each
/// claim shrunk to the cheapest type holding what it has, see [`Engine::take_slack`]). Every
/// change to a node's usage, capacity or type, and every node added or removed, marks its block
/// stale in both ([`RoomIndex::touch`]); shrinking a claim for a slack round and restoring it
/// only in the first. A stale block is summed again when a scan reaches it. A fresh summary is
/// exact, so skipping changes no scan's result.
#[derive(Debug, Default)]
pub(super) struct RoomIndex {
    now: RoomSummary,
    slack: RoomSummary,
}

/// Pools past this many share the last bit of [`RoomIndex`]'s pool mask.
const POOL_BITS: usize = 63;

fn pool_bit(pool: usize) -> u64 {
    1 << pool.min(POOL_BITS - 1)
}

impl RoomIndex {
    /// Node `n` changed (usage, capacity, type) or was added or removed.
    pub(super) fn touch(&mut self, n: usize) {
        self.now.mark(n / ROOM_BLOCK);
        self.slack.mark(n / ROOM_BLOCK);
    }

    /// Node indices moved: every block is stale.
    pub(super) fn reset(&mut self) {
        self.now.stale.iter_mut().for_each(|s| *s = true);
        self.slack.stale.iter_mut().for_each(|s| *s = true);
    }
}

/// A bundle's slack round ([`Engine::place_bundle`]): per node, whether it is a claim still to
/// be shrunk; the capacities of the claims shrunk, to give back.
#[derive(Debug, Default)]
pub(super) struct Slack {
    pending: Vec<bool>,
    saved: Vec<(usize, Vec<i64>)>,
}

impl Engine<'_> {
    /// Existing and in-flight nodes with their pods counted in the topology groups.
    pub(super) fn add_existing_nodes(&mut self) {
        let existing = self.existing.clone();
        // With a base: each base group's id here (None: no probe pod registered it). A group
        // registered here that the base lacks means counting every pod, as without a base.
        let base = self.base.and_then(|b| {
            let groups = self.topology.groups();
            if groups.iter().any(|g| b.base.topology.find(g).is_none()) {
                return None;
            }
            let mut map = vec![None; b.base.topology.groups().len()];
            for (id, g) in groups.iter().enumerate() {
                if let Some(i) = b.base.topology.find(g) {
                    map[i] = Some(id);
                }
            }
            Some((b, map))
        });
        self.nodes.reserve(existing.len());
        for (index, n) in existing.iter().enumerate() {
            let capacity = match &base {
                Some((b, _)) => b.node(index).capacity.clone(),
                None => {
                    let mut capacity = self.ids.quantities(&n.allocatable);
                    if n.allocatable.get(resource::PODS) == 0 {
                        capacity[PODS] = DEFAULT_MAX_PODS;
                    }
                    capacity
                }
            };
            let mut domain_values = Vec::new();
            for key in 0..self.ids.key_count() {
                let v = match self.ids.key_kind(key) {
                    KeyKind::Hostname => None,
                    _ => match n.labels.get(self.ids.key_name(key)) {
                        Some(v) => self.ids.value_id(key, v),
                        None => None,
                    },
                };
                domain_values.push(v);
            }
            let mut node = SimNode::new(
                String::new(),
                NodeOrigin::Existing { index },
                capacity,
                domain_values,
            );
            let Some((b, groups)) = base.as_ref().map(|(b, g)| (b.node(index), g)) else {
                node.used = self.ids.requested(n);
                node.ports = n
                    .pods
                    .iter()
                    .flat_map(|p| p.host_ports.iter().cloned())
                    .collect();
                for p in &n.pods {
                    let groups = self.topology.groups_selecting(p);
                    for &g in &groups {
                        bump(&mut node.group_counts, g, 1);
                    }
                    self.topology.count_groups(&groups, &node.domain_values, 1);
                    self.count_existing_antis(&mut node, p);
                }
                self.nodes.push(node);
                self.caches.room.touch(self.nodes.len() - 1);
                continue;
            };
            // The base's sums: the same counts as adding the pods one by one.
            node.used.clone_from(&b.used);
            node.ports.clone_from(&b.ports);
            for &(g, k) in &b.groups {
                if let Some(g) = groups[g] {
                    bump(&mut node.group_counts, g, k);
                    self.topology.count_groups(&[g], &node.domain_values, k);
                }
            }
            for &p in &b.anti_pods {
                self.count_existing_antis(&mut node, &n.pods[p]);
            }
            self.nodes.push(node);
            self.caches.room.touch(self.nodes.len() - 1);
        }
    }

    /// Counts the required anti-affinity terms of `p`, running on existing `node`.
    fn count_existing_antis(&mut self, node: &mut SimNode, p: &crate::domain::PodRequest) {
        if p.pod_anti_affinity.is_empty() {
            return;
        }
        let antis: Vec<usize> = p
            .pod_anti_affinity
            .iter()
            .filter_map(|t| self.anti_id(t))
            .collect();
        for &a in &antis {
            bump(&mut node.anti_counts, a, 1);
        }
        self.topology.count_antis(&antis, &node.domain_values, 1);
    }

    pub(super) fn place_class(&mut self, c: usize) {
        self.place_class_with(c, true);
    }

    /// Places pods of class `c` until none remain or nothing takes one: the first node with
    /// room for the first domain combination that has one, else (if `allow_open`) a new claim.
    fn place_class_with(&mut self, c: usize, allow_open: bool) {
        while self.classes[c].remaining() > 0 {
            let combos = match self.combos(c) {
                Ok(v) => v,
                Err(reason) => {
                    self.classes[c].topology_reason = Some(reason);
                    return;
                }
            };
            if !combos
                .iter()
                .any(|combo| self.place_once(c, combo, allow_open))
            {
                return;
            }
        }
    }

    /// One placement step for a domain combination; false when nothing took a pod.
    fn place_once(&mut self, c: usize, combo: &[u32], allow_open: bool) -> bool {
        if let Some((n, fit)) = self.scan(c, combo) {
            self.place(c, n, fit);
            return true;
        }
        if !allow_open || !self.can_open(c) || self.classes[c].relax_host_preferences {
            return false;
        }
        if !self.classes[c].host_preferences_checked {
            self.classes[c].host_preferences_checked = true;
            if self.preference_costs_nodes(c, combo) {
                self.classes[c].relax_host_preferences = true;
                return false;
            }
        }
        if let Some(n) = self.open(c, combo) {
            if let Some(fit) = self.fit(c, n, combo) {
                self.place(c, n, fit);
                return true;
            }
            self.discard(n);
        }
        false
    }

    /// Whether a new node could take a pod of the class at all (hostname pod affinity needs a
    /// node that already runs a matching pod, unless none exists anywhere and the pod matches).
    fn can_open(&mut self, c: usize) -> bool {
        let class = &self.classes[c];
        if class
            .host_affinity
            .iter()
            .all(|h| self.topology.group_total[h.group] == 0 && h.selects_self)
        {
            return true;
        }
        if class.topology_reason.is_none() {
            self.classes[c].topology_reason = Some(format!(
                "pod affinity on {}: no node with room runs a matching pod",
                stowage_api::labels::HOSTNAME
            ));
        }
        false
    }

    /// Places a bundle: first into room already there, class by class, then onto new nodes
    /// each filled with a proportional slice of every class (so a node's resources are used in
    /// the bundle's own balance), topped up largest first.
    pub(super) fn place_bundle(&mut self, bundle: &[usize]) {
        // Fill the slack of claims first: up to the cheapest type that already holds what each
        // claim has, so rounding gaps are used before anything grows.
        // Each claim is shrunk when a scan first reaches it ([`Engine::take_slack`]): nothing is
        // placed on a claim before a scan reaches it, so the result is that of shrinking every
        // claim first, without the work for claims no scan reaches (room summaries taken at the
        // full capacity only overstate the room).
        self.caches.slack.pending = self.nodes.iter().map(|n| n.opened().is_some()).collect();
        for &c in bundle {
            self.place_class_with(c, false);
        }
        self.caches.slack.pending.clear();
        for (n, capacity) in std::mem::take(&mut self.caches.slack.saved) {
            self.nodes[n].capacity = capacity;
            self.caches.room.now.mark(n / ROOM_BLOCK);
        }
        for c in bundle {
            self.caches.cursors.remove(c);
        }
        for &c in bundle {
            self.place_class_with(c, false);
        }
        while self.place_bundle_node(bundle) {}
    }

    /// Opens one node for the bundle's remaining pods and fills it; false when done or stuck.
    fn place_bundle_node(&mut self, bundle: &[usize]) -> bool {
        let live: Vec<usize> = bundle
            .iter()
            .copied()
            .filter(|c| self.classes[*c].remaining() > 0)
            .collect();
        let Some(&lead) = live.first() else {
            return false;
        };
        let Ok(combos) = self.combos(lead) else {
            return false;
        };
        let Some((opened, combo)) = combos.iter().find_map(|combo| {
            self.open_for_bundle(&live, combo)
                .map(|opened| (opened, combo.clone()))
        }) else {
            return false;
        };
        let n = opened.node;
        let mut placed = 0;
        for &c in &live {
            let quota = (self.classes[c].remaining() as f64 * opened.share).floor() as usize;
            if quota > 0
                && let Some(fit) = self.fit(c, n, &combo)
            {
                let pods = fit.pods.min(quota);
                self.place(c, n, Fit { pods, ..fit });
                placed += pods;
            }
        }
        for &c in &live {
            if let Some(fit) = self.fit(c, n, &combo) {
                self.place(c, n, fit);
                placed += fit.pods;
            }
        }
        if placed == 0 {
            self.discard(n);
            return false;
        }
        true
    }

    /// Whether node `n` could ever take the class, whatever its load: taints, requirements and
    /// node names (existing nodes), compatible types (new claims).
    pub(super) fn static_ok(&self, c: usize, n: usize) -> bool {
        let class = &self.classes[c];
        match &self.nodes[n].origin {
            NodeOrigin::Existing { index } => {
                let node = self.existing[*index];
                let include_prefer = self.options.relax_preferences && !class.tolerate_prefer;
                // An in-flight claim's node has no name yet.
                let named = if *index < self.named {
                    class.node_names.node_names_match(&node.name)
                } else {
                    class.node_names.admits_unnamed_node()
                };
                !node.unschedulable
                    && named
                    && untolerated(&node.taints, &class.pod.tolerations, include_prefer).is_none()
                    && class.node_requirements.matches(&node.labels)
            }
            NodeOrigin::New(claim) => class.compatible[claim.pool]
                .as_ref()
                .is_some_and(|b| b.contains(claim.target_type)),
        }
    }

    /// The first node from the class's cursor that takes pods of class `c` in `combo`.
    fn scan(&mut self, c: usize, combo: &[u32]) -> Option<(usize, Fit)> {
        // With hostname affinity a node can become eligible later (a matching pod arrives).
        let use_cursor = self.classes[c].host_affinity.is_empty();
        let start = if use_cursor {
            self.caches
                .cursors
                .get(&c)
                .and_then(|m| m.get(combo))
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        // The pools whose claims may take the class; existing nodes always may.
        let pools = self.classes[c]
            .compatible
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_some())
            .fold(1 << POOL_BITS, |m, (p, _)| m | pool_bit(p));
        let mut found = None;
        let mut i = start;
        let slack_round = !self.caches.slack.pending.is_empty();
        // The block whose summary is known fresh (nothing changes nodes during a scan but the
        // slack round's shrinking, which leaves the slack summary as it is).
        let mut fresh = usize::MAX;
        while i < self.nodes.len() {
            let b = i / ROOM_BLOCK;
            if b != fresh {
                fresh = b;
                if self.block_rules_out(c, b, pools, slack_round) {
                    i = (b + 1) * ROOM_BLOCK;
                    continue;
                }
            }
            let summary = if slack_round {
                &self.caches.room.slack
            } else {
                &self.caches.room.now
            };
            if !summary.has_room(i, &self.classes[c].requests) {
                i += 1;
                continue;
            }
            if slack_round && self.caches.slack.pending[i] {
                self.take_slack(i);
            }
            if let Some(fit) = self.fit(c, i, combo) {
                found = Some((i, fit));
                break;
            }
            i += 1;
        }
        let i = i.min(self.nodes.len());
        if use_cursor {
            let cursors = self.caches.cursors.entry(c).or_default();
            match cursors.get_mut(combo) {
                Some(cursor) => *cursor = i,
                None => {
                    cursors.insert(combo.to_vec(), i);
                }
            }
        }
        found
    }

    /// How many pods of class `c` node `n` takes now in the domains of `combo`.
    pub(super) fn fit(&self, c: usize, n: usize, combo: &[u32]) -> Option<Fit> {
        let pods = self.fit_count(c, n)?;
        if !self.static_ok(c, n) {
            return None;
        }
        let zone_mask = self.fit_domains(c, n, combo)?;
        Some(Fit { pods, zone_mask })
    }

    /// Pods of the class the node takes by resources, host ports and hostname topology.
    fn fit_count(&self, c: usize, n: usize) -> Option<usize> {
        let class = &self.classes[c];
        let node = &self.nodes[n];
        let mut k = class.remaining();
        for (r, want) in class.requests.iter().enumerate() {
            if *want > 0 {
                let room = node.capacity[r] - node.used[r];
                if room < *want {
                    return None;
                }
                k = k.min((room / want) as usize);
            }
        }
        if !class.pod.host_ports.is_empty() {
            if class
                .pod
                .host_ports
                .iter()
                .any(|hp| node.ports.iter().any(|o| o.conflicts(hp)))
            {
                return None;
            }
            k = k.min(1);
        }
        for s in &class.host_spread {
            let count = node.group_count(s.group) as i32;
            if s.selects_self {
                if count >= s.max_skew {
                    return None;
                }
                k = k.min((s.max_skew - count) as usize);
            } else if count > s.max_skew {
                return None;
            }
        }
        for h in &class.host_anti {
            if node.group_count(h.group) > 0 {
                return None;
            }
            if h.selects_self {
                k = k.min(1);
            }
        }
        for h in &class.host_affinity {
            let free = self.topology.group_total[h.group] == 0 && h.selects_self;
            if !free && node.group_count(h.group) == 0 {
                return None;
            }
        }
        for &a in &class.repelled_by {
            if self.ids.is_hostname(self.topology.antis[a].key) && node.anti_count(a) > 0 {
                return None;
            }
        }
        if class.domain_constraints.iter().any(|d| d.one_per_node()) {
            k = k.min(1);
        }
        if let Some(room) = self.workload_room(c, n) {
            if room == 0 {
                return None;
            }
            k = k.min(room);
        }
        Some(k)
    }

    /// Whether the node is in the domains of `combo` (a new claim may still narrow its zones):
    /// the node's zone mask afterwards.
    fn fit_domains(&self, c: usize, n: usize, combo: &[u32]) -> Option<u64> {
        let class = &self.classes[c];
        let node = &self.nodes[n];
        let mut zone_mask = 0u64;
        if let NodeOrigin::New(claim) = &node.origin {
            if class.capacity_types & capacity_type_bit(claim.capacity_type) == 0 {
                return None;
            }
            zone_mask = claim.zone_mask
                & class.zone_mask
                & self.catalog.types[claim.target_type].zones(claim.capacity_type);
            if zone_mask == 0 {
                return None;
            }
        }
        for (i, &key) in class.domain_keys.iter().enumerate() {
            let v = combo.get(i).copied()?;
            match (&node.origin, self.ids.key_kind(key)) {
                (NodeOrigin::New(_), KeyKind::Zone) => {
                    if zone_mask & (1 << v) == 0 {
                        return None;
                    }
                    zone_mask = 1 << v;
                }
                _ => {
                    if node.domain_values[key] != Some(v) {
                        return None;
                    }
                }
            }
        }
        if let NodeOrigin::New(_) = node.origin
            && zone_mask.count_ones() > 1
            && pins_zone(self, class)
        {
            // Pin to the lowest zone: the class is counted per zone.
            zone_mask &= zone_mask.wrapping_neg();
        }
        Some(zone_mask)
    }

    /// Puts `fit.pods` pods of class `c` on node `n` and updates every count.
    pub(super) fn place(&mut self, c: usize, n: usize, fit: Fit) {
        let zone_key = self.ids.known_key(stowage_api::labels::ZONE);
        let k = fit.pods;
        let class = &mut self.classes[c];
        let members = &class.members[class.next..class.next + k];
        class.next += k;
        let node = &mut self.nodes[n];
        node.version += 1;
        self.caches.room.touch(n);
        for (u, r) in node.used.iter_mut().zip(&class.requests) {
            *u += r * k as i64;
        }
        node.pods.extend_from_slice(members);
        for _ in 0..k {
            node.ports.extend(class.pod.host_ports.iter().cloned());
        }
        if let NodeOrigin::New(claim) = &mut node.origin {
            claim.zone_mask = fit.zone_mask;
            if let Some(b) = &class.compatible[claim.pool] {
                claim.compatible.and_with(b);
            }
            if fit.zone_mask.count_ones() == 1
                && let Some(zk) = zone_key
            {
                node.domain_values[zk] = Some(fit.zone_mask.trailing_zeros());
            }
        }
        let k = k as u32;
        for &g in &class.counted_in {
            bump(&mut node.group_counts, g, k);
        }
        for &a in &class.owned_antis {
            bump(&mut node.anti_counts, a, k);
        }
        self.topology
            .count_groups(&class.counted_in, &node.domain_values, k);
        self.topology
            .count_antis(&class.owned_antis, &node.domain_values, k);
        self.count_workload(c, n, fit.pods);
        self.count_scope_use(c, n, fit.pods);
    }

    /// While a bundle fills slack: shrinks claim `n` to the cheapest compatible type that holds
    /// what it has (its capacity is given back after the bundle's slack round).
    fn take_slack(&mut self, n: usize) {
        self.caches.slack.pending[n] = false;
        let Some(t) = self.shrunk_type_memo(n) else {
            return;
        };
        let allocatable = &self.catalog.types[t].allocatable;
        let node = &mut self.nodes[n];
        if allocatable.iter().zip(&node.capacity).all(|(a, c)| a >= c) {
            return;
        }
        self.caches.slack.saved.push((n, node.capacity.clone()));
        for (c, a) in node.capacity.iter_mut().zip(allocatable) {
            *c = (*c).min(*a);
        }
        // Its room in a slack round is what it was: only the summary of now changes.
        self.caches.room.now.mark(n / ROOM_BLOCK);
    }

    /// Whether no node of block `b` can take a pod of class `c` from a pool of `pools`: by the
    /// slack summary in a bundle's slack round, else by the summary of now (refreshed first
    /// when stale, so the block's node rooms are fresh afterwards).
    fn block_rules_out(&mut self, c: usize, b: usize, pools: u64, slack_round: bool) -> bool {
        let stale = if slack_round {
            self.caches.room.slack.is_stale(b)
        } else {
            self.caches.room.now.is_stale(b)
        };
        if stale {
            self.refresh_room(b, slack_round);
        }
        let summary = if slack_round {
            &self.caches.room.slack
        } else {
            &self.caches.room.now
        };
        summary.rules_out(b, &self.classes[c].requests, pools)
    }

    /// Sums block `b` again: each node's room now, or (`slack`) within the cheapest type that
    /// holds what a claim has.
    fn refresh_room(&mut self, b: usize, slack: bool) {
        let resources = self.ids.resource_count();
        let end = ((b + 1) * ROOM_BLOCK).min(self.nodes.len());
        let mut rooms = Vec::with_capacity(ROOM_BLOCK * resources);
        let mut pools = 0;
        for n in b * ROOM_BLOCK..end {
            let shrunk = if slack {
                self.shrunk_type_memo(n)
            } else {
                None
            };
            let node = &self.nodes[n];
            for (r, (c, u)) in node.capacity.iter().zip(&node.used).enumerate() {
                let c = match shrunk {
                    Some(t) => (*c).min(self.catalog.types[t].allocatable[r]),
                    None => *c,
                };
                rooms.push(c - u);
            }
            pools |= match &node.origin {
                NodeOrigin::New(claim) => pool_bit(claim.pool),
                NodeOrigin::Existing { .. } => 1 << POOL_BITS,
            };
        }
        let summary = if slack {
            &mut self.caches.room.slack
        } else {
            &mut self.caches.room.now
        };
        summary.set(b, resources, &rooms, pools);
    }

    /// For a new claim: the cheapest compatible type that holds what it has (memoised per claim
    /// version).
    fn shrunk_type_memo(&mut self, n: usize) -> Option<usize> {
        let node = &self.nodes[n];
        node.opened()?;
        if self.caches.shrink.len() < self.nodes.len() {
            self.caches.shrink.resize_with(self.nodes.len(), || None);
        }
        let version = node.version;
        let hit = self.caches.shrink[n]
            .as_ref()
            .filter(|m| m.version == version)
            .map(|m| m.choice);
        match hit {
            Some(choice) => choice,
            None => {
                let choice = self.cheapest_holding(n, false);
                self.caches.shrink[n] = Some(ShrinkMemo { version, choice });
                choice
            }
        }
    }

    /// The label values a node is counted under (its topology domains that are labels), as
    /// (key, value) ids: a type it shrinks to must carry them.
    fn pinned_labels(&self, node: &SimNode) -> Vec<(usize, u32)> {
        (0..self.ids.key_count())
            .filter(|k| self.ids.key_kind(*k) == KeyKind::Label)
            .filter_map(|k| node.domain_values[k].map(|v| (k, v)))
            .collect()
    }

    /// Whether `ty` can take `node`'s claim as it is: sold in one of its zones, holding what
    /// it has, no larger than the `charged` capacity on a `ceiling` resource, carrying the
    /// `pinned` label values ([`Engine::cheapest_holding`], [`Engine::leanest_holding`]).
    fn type_holds(
        &self,
        ty: &PoolType<'_>,
        node: &SimNode,
        claim: &OpenedClaim,
        charged: &[i64],
        ceiling: &[usize],
        pinned: &[(usize, u32)],
    ) -> bool {
        ty.zones(claim.capacity_type) & claim.zone_mask != 0
            && node.used.iter().zip(&ty.allocatable).all(|(u, a)| u <= a)
            && ceiling.iter().all(|r| ty.capacity[*r] <= charged[*r])
            && pinned.iter().all(|(k, v)| {
                ty.labels.get(self.ids.key_name(*k)) == Some(self.ids.value_name(*k, *v))
            })
    }

    /// For a new claim: the cheapest compatible type in its zones that holds what it has and
    /// carries the label values it is counted under; with `within_charge`, never larger than
    /// the type it was charged for on a budgeted resource.
    pub(super) fn cheapest_holding(&self, n: usize, within_charge: bool) -> Option<usize> {
        let node = &self.nodes[n];
        let claim = node.opened()?;
        let ct = claim.capacity_type;
        let charged = &self.catalog.types[claim.target_type].capacity;
        let ceiling = if within_charge {
            self.catalog.pools[claim.pool].budget.ceiling(ct)
        } else {
            Vec::new()
        };
        let pinned = self.pinned_labels(node);
        // The cheapest, then the lowest index: types come by their lowest price in any zone
        // (then index), so none past a bound above the best price found can be it.
        let mut best: Option<(f64, usize)> = None;
        for (t, bound) in self.catalog.by_price(ct) {
            if best.is_some_and(|(p, _)| bound > p) {
                break;
            }
            if !claim.compatible.contains(t) {
                continue;
            }
            let ty = &self.catalog.types[t];
            if !self.type_holds(ty, node, claim, charged, &ceiling, &pinned) {
                continue;
            }
            let price = ty.cheapest(ct, claim.zone_mask);
            if best.is_none_or(|(p, b)| price < p || (price == p && t < b)) {
                best = Some((price, t));
            }
        }
        best.map(|(_, t)| t)
    }

    /// [`Engine::cheapest_holding`] within the charge, for a pool whose limit binds: the type
    /// taking the least share of the pool's limits, then the cheapest, then the lowest index.
    pub(super) fn leanest_holding(&self, n: usize) -> Option<usize> {
        let node = &self.nodes[n];
        let claim = node.opened()?;
        let ct = claim.capacity_type;
        let charged = &self.catalog.types[claim.target_type].capacity;
        let budget = &self.catalog.pools[claim.pool].budget;
        let ceiling = budget.ceiling(ct);
        let pinned = self.pinned_labels(node);
        let mut best: Option<((f64, f64), usize)> = None;
        for t in claim.compatible.iter() {
            let ty = &self.catalog.types[t];
            if !self.type_holds(ty, node, claim, charged, &ceiling, &pinned) {
                continue;
            }
            let key = (
                budget.limit_share(&ty.capacity),
                ty.cheapest(ct, claim.zone_mask),
            );
            if best.is_none_or(|(k, b)| key < k || (key == k && t < b)) {
                best = Some((key, t));
            }
        }
        best.map(|(_, t)| t)
    }
}
