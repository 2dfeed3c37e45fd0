//! The solve: place pending pods on existing nodes, then in-flight claims, then new claims bought
//! cheapest first, respecting every scheduling constraint, NodePool limits and capacity mix.
//!
//! Key decisions (see `docs/performance.md` for the figures):
//! - Identical pods (everything but the name) form an equivalence class and are placed as a group:
//!   each step puts as many pods of the class on one node as fit, so work scales with nodes and
//!   classes, not pods x nodes.
//! - Instance types are interned per (NodePool, type); a class's compatible types per pool are a
//!   [`Bitset`] computed once; offerings are pre-indexed as zone masks per capacity type.
//! - Every node scan for a class resumes from a cursor: a node that cannot take a pod of a class now
//!   (resources, taints, hostname spread/anti-affinity, pinned zone) never can later in this solve.
//! - Topology counts (per node and per domain) are updated incrementally as pods are placed.
//! - A new claim picks its instance type by price per packed pod of the class being placed: the
//!   largest type within 5 % of the best ratio (so later classes fill it), the cheapest with room
//!   for three pods for classes capped per node (hostname spread/anti-affinity, host ports), and
//!   the strict best ratio when a NodePool limit or on-demand cap charges the claim. Classes that
//!   differ only in size are packed jointly, each new node taking a proportional slice of each.
//!   At the end each claim lists every compatible type that fits what it holds, cheapest first,
//!   so a claim that ended up half full is bought at the smaller size.
//! - Capacity types are tried reserved > spot > on-demand; a claim is pinned to the one it uses.
//!   NodePool limits and the on-demand cap are charged with the claim's target type, and the
//!   claim's instance type options never exceed it on a limited dimension, so a claim can never
//!   grow past what was charged.
//!
//! Preferences (preferred node/pod affinity, ScheduleAnyway spread, PreferNoSchedule taints) are
//! treated as required, then relaxed one at a time only for pods that do not fit, in this order:
//! next required node-affinity term (terms are alternatives), lightest preferred pod affinity,
//! lightest preferred pod anti-affinity, lightest preferred node affinity, the last ScheduleAnyway
//! spread, then PreferNoSchedule taints are tolerated.
//!
//! Simplification: hostname topology spread allows at most `maxSkew` matching pods per node
//! (new nodes can always be bought, so the global minimum is 0), as Karpenter does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use stowage_api::CapacityType;
use stowage_api::labels;
use stowage_api::quantity::format_resource;
use stowage_api::requirements::{Operator, Requirement};

use crate::bitset::Bitset;
use crate::domain::{
    HostPort, LabelSelector, NewClaim, Node, Plan, Pod, PodAffinityTerm, SolveInput, SolveOptions,
    TaintEffect, WhenUnsatisfiable, requirement_matches, untolerated,
};
use crate::model::{InstanceType, Resources, resource};
use crate::predicates::GroupKey;

const CPU: usize = 0;
const PODS: usize = 2;
/// Kubelet's default when a node or type does not say.
const DEFAULT_MAX_PODS: i64 = 110;
const MAX_ZONES: usize = 64;
const MAX_COMBOS: usize = 32;

/// Solves: decides where every pending pod goes. Pure and deterministic.
pub fn solve(input: &SolveInput, options: &SolveOptions) -> Plan {
    let mut e = Engine::new(input, options);
    e.run();
    e.finish()
}

/// Consolidation simulation: where the pods of the `candidates` (existing or in-flight node
/// names) would go if those nodes were removed, together with `input.pods`. DaemonSet pods
/// (owner `DaemonSet/...`) leave with their node. A candidate set can be removed without buying
/// when the plan has no new claims and nothing unschedulable.
pub fn simulate_without(input: &SolveInput, candidates: &[&str], options: &SolveOptions) -> Plan {
    let mut sim = input.clone();
    let is_candidate = |n: &Node| candidates.contains(&n.name.as_str());
    for n in input
        .nodes
        .iter()
        .chain(&input.in_flight)
        .filter(|n| is_candidate(n))
    {
        sim.pods.extend(
            n.pods
                .iter()
                .filter(|p| {
                    !p.owner
                        .as_deref()
                        .is_some_and(|o| o.starts_with("DaemonSet/"))
                })
                .cloned(),
        );
    }
    sim.nodes.retain(|n| !is_candidate(n));
    sim.in_flight.retain(|n| !is_candidate(n));
    solve(&sim, options)
}

fn ct_bit(ct: CapacityType) -> u8 {
    match ct {
        CapacityType::Reserved => 1,
        CapacityType::Spot => 2,
        CapacityType::OnDemand => 4,
    }
}

fn ct_index(ct: CapacityType) -> usize {
    match ct {
        CapacityType::Reserved => 0,
        CapacityType::Spot => 1,
        CapacityType::OnDemand => 2,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyKind {
    Hostname,
    Zone,
    CapType,
    Label,
}

#[derive(Debug)]
struct Off {
    zone: usize,
    ct: CapacityType,
    price: f64,
    /// Index into `Engine::reservations` for reserved offerings.
    reservation: Option<usize>,
}

#[derive(Debug)]
struct PType<'a> {
    it: &'a InstanceType,
    labels: BTreeMap<String, String>,
    /// Allocatable minus the daemonset overhead of this pool on this type.
    alloc: Vec<i64>,
    daemon: Vec<i64>,
    capacity: Vec<i64>,
    /// Available offerings (pool zone/ct requirements applied).
    offs: Vec<Off>,
    /// Zone masks of available offerings per capacity type (reserved, spot, on-demand).
    zm: [u64; 3],
    exotic: bool,
}

#[derive(Debug)]
struct PoolS<'a> {
    p: &'a crate::domain::NodePool,
    types: Vec<usize>,
    zmask: u64,
    ctmask: u8,
    /// (resource index, remaining); `nodes` is tracked separately.
    limits: Vec<(usize, i64)>,
    nodes_left: Option<i64>,
    od: i64,
    total: i64,
    claims: usize,
}

#[derive(Clone, Copy, Debug)]
enum DomKind {
    Spread { skew: i32, min_domains: i32 },
    Affinity,
    Anti,
}

#[derive(Clone, Debug)]
struct DomCon {
    key: usize,
    gid: usize,
    kind: DomKind,
    self_match: bool,
}

#[derive(Debug)]
enum Kind {
    Existing {
        node: usize,
    },
    New {
        pool: usize,
        target: usize,
        ct: CapacityType,
        zmask: u64,
        compat: Bitset,
    },
}

#[derive(Debug)]
struct SNode {
    name: String,
    kind: Kind,
    cap: Vec<i64>,
    used: Vec<i64>,
    ports: Vec<HostPort>,
    pods: Vec<usize>,
    /// (group, matching pods).
    gcount: Vec<(usize, u32)>,
    /// (anti term, owning pods).
    acount: Vec<(usize, u32)>,
    /// Domain value per topology key (None: not in any domain, or zone still flexible).
    kv: Vec<Option<u32>>,
}

impl SNode {
    fn gc(&self, gid: usize) -> u32 {
        self.gcount
            .iter()
            .find(|(g, _)| *g == gid)
            .map_or(0, |(_, c)| *c)
    }
    fn ac(&self, aid: usize) -> u32 {
        self.acount
            .iter()
            .find(|(a, _)| *a == aid)
            .map_or(0, |(_, c)| *c)
    }
    fn bump(v: &mut Vec<(usize, u32)>, id: usize, k: u32) {
        match v.iter_mut().find(|(g, _)| *g == id) {
            Some((_, c)) => *c += k,
            None => v.push((id, k)),
        }
    }
}

/// (class, pool, capacity-type bit, zone mask, domain combination) of a new-claim choice.
type OpenKey = (usize, usize, u8, u64, Vec<u32>);
/// Compatible (type, price bits) -> (summed demand, (type, price)).
type BoundGroups = BTreeMap<Vec<(usize, u64)>, (Vec<i64>, Vec<(usize, f64)>)>;

#[derive(Debug, Clone)]
enum PoolReason {
    Taint(String),
    Requirements(String),
    TooBig,
    NoOffering,
    Limit(String),
    Cap(u32),
    MinValues(String, i32),
}

#[derive(Debug)]
struct Class {
    pod: Pod,
    tolerate_prefer: bool,
    members: Vec<usize>,
    next: usize,
    req: Vec<i64>,
    reqs: Vec<Requirement>,
    zmask: u64,
    ctmask: u8,
    host_spread: Vec<(usize, i32, bool)>,
    host_anti: Vec<(usize, bool)>,
    host_aff: Vec<(usize, bool)>,
    dom: Vec<DomCon>,
    /// Non-hostname keys this class needs domain values for (constraints and inverse anti).
    dom_keys: Vec<usize>,
    /// Non-hostname keys a node must be pinned on before this class is counted there.
    pin_keys: Vec<usize>,
    matches: Vec<usize>,
    owns: Vec<usize>,
    inverse: Vec<usize>,
    compat: Vec<Option<Bitset>>,
    /// Per pool: types matching the class's requirements with an offering, whatever their size
    /// (the lower bound's notion of compatibility: pods of any size may share those types).
    loose: Vec<Bitset>,
    reasons: Vec<Option<PoolReason>>,
    /// Set when the class failed for a topology reason.
    topo_reason: Option<String>,
}

impl Class {
    fn remaining(&self) -> usize {
        self.members.len() - self.next
    }
}

struct Engine<'a> {
    input: &'a SolveInput,
    /// Existing nodes then in-flight claims.
    enodes: Vec<&'a Node>,
    opts: &'a SolveOptions,
    res: Vec<String>,
    res_idx: HashMap<String, usize>,
    zones: Vec<String>,
    zone_idx: HashMap<String, usize>,
    keys: Vec<(String, KeyKind)>,
    key_idx: HashMap<String, usize>,
    vals: Vec<HashMap<String, u32>>,
    val_names: Vec<Vec<String>>,
    groups: Vec<GroupKey>,
    group_idx: HashMap<GroupKey, usize>,
    group_keys: Vec<Vec<usize>>,
    gtotal: Vec<u32>,
    antis: Vec<(usize, usize)>,
    anti_idx: HashMap<(usize, usize), usize>,
    dom: HashMap<(usize, usize, u32), u32>,
    anti_dom: HashMap<(usize, u32), u32>,
    ptypes: Vec<PType<'a>>,
    pools: Vec<PoolS<'a>>,
    reservations: Vec<(u32, u32)>,
    nodes: Vec<SNode>,
    classes: Vec<Class>,
    /// Classes that differ only in requests and pack jointly (index into `groups_of`).
    joint: Vec<Option<usize>>,
    groups_of: Vec<Vec<usize>>,
    cursors: HashMap<(usize, Vec<u32>), usize>,
    domains_cache: HashMap<(usize, usize), Vec<u32>>,
    open_cache: HashMap<OpenKey, (usize, usize)>,
    dyn_reasons: Vec<Option<PoolReason>>,
    unschedulable: BTreeMap<String, String>,
    any_prefer_taint: bool,
}

impl<'a> Engine<'a> {
    fn new(input: &'a SolveInput, opts: &'a SolveOptions) -> Self {
        let enodes: Vec<&Node> = input.nodes.iter().chain(input.in_flight.iter()).collect();
        let mut e = Engine {
            input,
            enodes,
            opts,
            res: Vec::new(),
            res_idx: HashMap::new(),
            zones: Vec::new(),
            zone_idx: HashMap::new(),
            keys: Vec::new(),
            key_idx: HashMap::new(),
            vals: Vec::new(),
            val_names: Vec::new(),
            groups: Vec::new(),
            group_idx: HashMap::new(),
            group_keys: Vec::new(),
            gtotal: Vec::new(),
            antis: Vec::new(),
            anti_idx: HashMap::new(),
            dom: HashMap::new(),
            anti_dom: HashMap::new(),
            ptypes: Vec::new(),
            pools: Vec::new(),
            reservations: Vec::new(),
            nodes: Vec::new(),
            classes: Vec::new(),
            joint: Vec::new(),
            groups_of: Vec::new(),
            cursors: HashMap::new(),
            domains_cache: HashMap::new(),
            open_cache: HashMap::new(),
            dyn_reasons: Vec::new(),
            unschedulable: BTreeMap::new(),
            any_prefer_taint: false,
        };
        e.prepare();
        e
    }
}

fn fmt_requests(r: &Resources) -> String {
    r.0.iter()
        .map(|(k, v)| format!("{k}={}", format_resource(k, *v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hash of everything that makes two pods interchangeable for scheduling (all but name, owner).
fn class_hash(p: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    p.requests.hash(&mut h);
    shape_hash_into(p, &mut h);
    h.finish()
}

/// Hash of the constraints of a pod (everything but name, owner and requests).
fn shape_hash(p: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    shape_hash_into(p, &mut h);
    h.finish()
}

fn shape_hash_into(p: &Pod, h: &mut DefaultHasher) {
    let h = &mut *h;
    p.namespace.hash(h);
    p.labels.hash(h);
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

fn same_class(a: &Pod, b: &Pod) -> bool {
    a.requests == b.requests && same_shape(a, b)
}

fn same_shape(a: &Pod, b: &Pod) -> bool {
    a.namespace == b.namespace
        && a.labels == b.labels
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

/// Whether a requirement on a node label holds for a new node whose labels are `labels`
/// (hostname: unknown placeholder; zone and capacity type are checked through offerings).
fn new_node_req_ok(r: &Requirement, labels_map: &BTreeMap<String, String>) -> bool {
    if r.key == labels::HOSTNAME {
        return matches!(r.operator, Operator::NotIn | Operator::Exists);
    }
    if r.key == labels::ZONE || r.key == labels::CAPACITY_TYPE {
        return true;
    }
    requirement_matches(r, labels_map.get(&r.key).map(String::as_str))
}

fn remove_lightest<T>(v: &mut Vec<T>, weight: impl Fn(&T) -> i32) -> bool {
    let Some((i, _)) = v.iter().enumerate().rev().min_by_key(|(_, t)| weight(t)) else {
        return false;
    };
    v.remove(i);
    true
}

impl<'a> Engine<'a> {
    fn rid(&mut self, name: &str) -> usize {
        if let Some(i) = self.res_idx.get(name) {
            return *i;
        }
        self.res.push(name.to_string());
        self.res_idx.insert(name.to_string(), self.res.len() - 1);
        self.res.len() - 1
    }

    fn rv(&self, r: &Resources) -> Vec<i64> {
        let mut v = vec![0; self.res.len()];
        for (k, x) in &r.0 {
            if let Some(i) = self.res_idx.get(k) {
                v[*i] = *x;
            }
        }
        v
    }

    fn to_resources(&self, v: &[i64]) -> Resources {
        let mut r = Resources::new();
        for (i, x) in v.iter().enumerate() {
            r.set(self.res[i].clone(), *x);
        }
        r
    }

    fn key_id(&mut self, key: &str) -> usize {
        if let Some(i) = self.key_idx.get(key) {
            return *i;
        }
        let kind = match key {
            labels::HOSTNAME => KeyKind::Hostname,
            labels::ZONE => KeyKind::Zone,
            labels::CAPACITY_TYPE => KeyKind::CapType,
            _ => KeyKind::Label,
        };
        self.keys.push((key.to_string(), kind));
        self.vals.push(HashMap::new());
        self.val_names.push(Vec::new());
        self.key_idx.insert(key.to_string(), self.keys.len() - 1);
        self.keys.len() - 1
    }

    /// Value id of `value` under `key` (zone: zone id; capacity type: preference index).
    fn val_id(&mut self, key: usize, value: &str) -> Option<u32> {
        match self.keys[key].1 {
            KeyKind::Zone => self.zone_idx.get(value).map(|z| *z as u32),
            KeyKind::CapType => value
                .parse::<CapacityType>()
                .ok()
                .map(|c| ct_index(c) as u32),
            KeyKind::Hostname | KeyKind::Label => {
                if let Some(v) = self.vals[key].get(value) {
                    return Some(*v);
                }
                let id = self.val_names[key].len() as u32;
                self.val_names[key].push(value.to_string());
                self.vals[key].insert(value.to_string(), id);
                Some(id)
            }
        }
    }

    fn val_name(&self, key: usize, v: u32) -> &str {
        match self.keys[key].1 {
            KeyKind::Zone => self.zones.get(v as usize).map_or("", String::as_str),
            KeyKind::CapType => CapacityType::ALL.get(v as usize).map_or("", |c| c.as_str()),
            _ => self.val_names[key]
                .get(v as usize)
                .map_or("", String::as_str),
        }
    }

    fn group_id(
        &mut self,
        namespaces: Option<BTreeSet<String>>,
        selector: &LabelSelector,
        key: usize,
    ) -> usize {
        let g = GroupKey {
            namespaces,
            selector: selector.clone(),
        };
        let gid = match self.group_idx.get(&g) {
            Some(i) => *i,
            None => {
                self.groups.push(g.clone());
                self.group_keys.push(Vec::new());
                self.gtotal.push(0);
                self.group_idx.insert(g, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        if self.keys[key].1 != KeyKind::Hostname && !self.group_keys[gid].contains(&key) {
            self.group_keys[gid].push(key);
        }
        gid
    }

    fn anti_id(&mut self, t: &PodAffinityTerm) -> Option<usize> {
        let sel = t.label_selector.as_ref()?;
        let key = self.key_id(&t.topology_key);
        let gid = self.group_id(t.namespaces.clone(), sel, key);
        Some(match self.anti_idx.get(&(gid, key)) {
            Some(a) => *a,
            None => {
                self.antis.push((gid, key));
                self.anti_idx.insert((gid, key), self.antis.len() - 1);
                self.antis.len() - 1
            }
        })
    }

    fn register_pod(&mut self, p: &Pod) {
        for s in &p.topology_spread {
            if let Some(sel) = &s.label_selector {
                let key = self.key_id(&s.topology_key);
                self.group_id(Some(BTreeSet::from([p.namespace.clone()])), sel, key);
            }
        }
        let terms = p
            .pod_affinity
            .iter()
            .chain(p.preferred_pod_affinity.iter().map(|w| &w.term));
        for t in terms {
            if let Some(sel) = &t.label_selector {
                let key = self.key_id(&t.topology_key);
                self.group_id(t.namespaces.clone(), sel, key);
            }
        }
        let anti: Vec<&PodAffinityTerm> = p
            .pod_anti_affinity
            .iter()
            .chain(p.preferred_pod_anti_affinity.iter().map(|w| &w.term))
            .collect();
        for t in anti {
            self.anti_id(t);
        }
    }

    fn prepare(&mut self) {
        let input = self.input;
        for r in [resource::CPU, resource::MEMORY, resource::PODS] {
            self.rid(r);
        }
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for p in &input.pods {
            names.extend(p.requests.0.keys().map(String::as_str));
        }
        for d in &input.daemonsets {
            names.extend(d.pod.requests.0.keys().map(String::as_str));
        }
        let pool_types = input
            .nodepools
            .iter()
            .filter_map(|p| p.instance_types.as_ref());
        for it in input.instance_types.iter().chain(pool_types.flatten()) {
            names.extend(it.capacity.0.keys().map(String::as_str));
        }
        for n in &self.enodes {
            names.extend(n.allocatable.0.keys().map(String::as_str));
            for p in &n.pods {
                names.extend(p.requests.0.keys().map(String::as_str));
            }
        }
        for p in &input.nodepools {
            names.extend(
                p.limits
                    .0
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != "nodes"),
            );
        }
        for n in names {
            self.rid(n);
        }

        // Zones, sorted by name so ids follow name order.
        let mut zones: BTreeSet<&str> = BTreeSet::new();
        let pool_types = input
            .nodepools
            .iter()
            .filter_map(|p| p.instance_types.as_ref());
        for it in input.instance_types.iter().chain(pool_types.flatten()) {
            zones.extend(it.offerings.iter().map(|o| o.zone.as_str()));
        }
        for n in &self.enodes {
            if let Some(z) = n.labels.get(labels::ZONE) {
                zones.insert(z);
            }
        }
        for z in zones.into_iter().take(MAX_ZONES) {
            self.zone_idx.insert(z.to_string(), self.zones.len());
            self.zones.push(z.to_string());
        }
        let all_zones: u64 = if self.zones.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.zones.len()) - 1
        };

        // Pools in weight order, then name.
        let mut pools: Vec<&crate::domain::NodePool> = input.nodepools.iter().collect();
        pools.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
        for p in pools {
            let zreqs: Vec<&Requirement> = p
                .requirements
                .iter()
                .filter(|r| r.key == labels::ZONE)
                .collect();
            let mut zmask = 0u64;
            for (zi, z) in self.zones.iter().enumerate() {
                if zreqs.iter().all(|r| requirement_matches(r, Some(z))) {
                    zmask |= 1 << zi;
                }
            }
            zmask &= all_zones;
            let creqs: Vec<&Requirement> = p
                .requirements
                .iter()
                .filter(|r| r.key == labels::CAPACITY_TYPE)
                .collect();
            let mut ctmask = 0u8;
            for ct in CapacityType::ALL {
                if creqs
                    .iter()
                    .all(|r| requirement_matches(r, Some(ct.as_str())))
                {
                    ctmask |= ct_bit(ct);
                }
            }
            let mut base_labels = p.labels.clone();
            for r in &p.requirements {
                if r.operator == Operator::In
                    && r.values.len() == 1
                    && !labels::WELL_KNOWN.contains(&r.key.as_str())
                {
                    base_labels.insert(r.key.clone(), r.values[0].clone());
                }
            }
            base_labels.insert(labels::NODEPOOL.to_string(), p.name.clone());
            let mut limits = Vec::new();
            let mut nodes_left = None;
            for (k, v) in &p.limits.0 {
                if k == "nodes" {
                    nodes_left = Some(v - p.usage.resources.get("nodes"));
                } else if let Some(i) = self.res_idx.get(k) {
                    limits.push((*i, v - p.usage.resources.get(k)));
                }
            }
            let catalogue: &[InstanceType] =
                p.instance_types.as_deref().unwrap_or(&input.instance_types);
            let mut types = Vec::new();
            for it in catalogue {
                let mut lm = it.labels.clone();
                lm.insert(labels::INSTANCE_TYPE.to_string(), it.name.clone());
                for (k, v) in &base_labels {
                    lm.insert(k.clone(), v.clone());
                }
                if !p.requirements.iter().all(|r| new_node_req_ok(r, &lm)) {
                    continue;
                }
                let mut offs = Vec::new();
                let mut zm = [0u64; 3];
                for o in &it.offerings {
                    let Some(&z) = self.zone_idx.get(&o.zone) else {
                        continue;
                    };
                    if !o.available
                        || zmask & (1 << z) == 0
                        || ctmask & ct_bit(o.capacity_type) == 0
                    {
                        continue;
                    }
                    let reservation = if o.capacity_type == CapacityType::Reserved {
                        self.reservations
                            .push((o.reservation_capacity.unwrap_or(0), 0));
                        Some(self.reservations.len() - 1)
                    } else {
                        None
                    };
                    zm[ct_index(o.capacity_type)] |= 1 << z;
                    offs.push(Off {
                        zone: z,
                        ct: o.capacity_type,
                        price: o.price_per_hour,
                        reservation,
                    });
                }
                let mut capacity = self.rv(&it.capacity);
                let mut alloc = self.rv(&it.allocatable());
                if it.capacity.get(resource::PODS) == 0 {
                    capacity[PODS] = DEFAULT_MAX_PODS;
                    alloc[PODS] = DEFAULT_MAX_PODS;
                }
                // Daemonsets that would land on this pool's nodes of this type.
                let mut daemon = vec![0; self.res.len()];
                for d in &input.daemonsets {
                    let dp = &d.pod;
                    if untolerated(&p.taints, &dp.tolerations, false).is_some() {
                        continue;
                    }
                    let sel_ok = dp
                        .node_selector
                        .iter()
                        .all(|(k, v)| new_node_req_ok(&Requirement::in_(k, [v.as_str()]), &lm));
                    let aff_ok = dp.required_node_affinity.is_empty()
                        || dp
                            .required_node_affinity
                            .iter()
                            .any(|t| t.iter().all(|r| new_node_req_ok(r, &lm)));
                    if sel_ok && aff_ok {
                        let v = self.rv(&dp.requests);
                        for (a, b) in daemon.iter_mut().zip(v) {
                            *a += b;
                        }
                        daemon[PODS] += 1;
                    }
                }
                for (a, d) in alloc.iter_mut().zip(&daemon) {
                    *a -= d;
                }
                self.ptypes.push(PType {
                    it,
                    labels: lm,
                    alloc,
                    daemon,
                    capacity,
                    offs,
                    zm,
                    exotic: it.is_exotic(),
                });
                types.push(self.ptypes.len() - 1);
            }
            self.pools.push(PoolS {
                p,
                types,
                zmask,
                ctmask,
                limits,
                nodes_left,
                od: p.usage.on_demand_cpu_millis,
                total: p.usage.total_cpu_millis,
                claims: 0,
            });
            self.any_prefer_taint |= p
                .taints
                .iter()
                .any(|t| t.effect == TaintEffect::PreferNoSchedule);
        }

        // Topology groups from pending pods and from existing pods' anti-affinity.
        let input = self.input;
        for p in &input.pods {
            self.register_pod(p);
        }
        let enodes = self.enodes.clone();
        for n in &enodes {
            for p in &n.pods {
                for t in &p.pod_anti_affinity {
                    self.anti_id(t);
                }
            }
            self.any_prefer_taint |= n
                .taints
                .iter()
                .any(|t| t.effect == TaintEffect::PreferNoSchedule);
        }
        // Existing and in-flight nodes.
        for (ni, n) in enodes.iter().enumerate() {
            let mut cap = self.rv(&n.allocatable);
            if n.allocatable.get(resource::PODS) == 0 {
                cap[PODS] = DEFAULT_MAX_PODS;
            }
            let used = self.rv(&n.requested());
            let mut kv = Vec::new();
            for key in 0..self.keys.len() {
                let v = match self.keys[key].1 {
                    KeyKind::Hostname => None,
                    _ => match n.labels.get(&self.keys[key].0) {
                        Some(v) => self.val_id(key, v),
                        None => None,
                    },
                };
                kv.push(v);
            }
            let mut sn = SNode {
                name: n.name.clone(),
                kind: Kind::Existing { node: ni },
                cap,
                used,
                ports: n
                    .pods
                    .iter()
                    .flat_map(|p| p.host_ports.iter().cloned())
                    .collect(),
                pods: Vec::new(),
                gcount: Vec::new(),
                acount: Vec::new(),
                kv,
            };
            for p in &n.pods {
                for gid in 0..self.groups.len() {
                    if self.groups[gid].selects(p) {
                        SNode::bump(&mut sn.gcount, gid, 1);
                        self.gtotal[gid] += 1;
                        for &key in &self.group_keys[gid] {
                            if let Some(v) = sn.kv[key] {
                                *self.dom.entry((gid, key, v)).or_insert(0) += 1;
                            }
                        }
                    }
                }
                for t in &p.pod_anti_affinity {
                    if let Some(aid) = self.anti_id(t) {
                        SNode::bump(&mut sn.acount, aid, 1);
                        let key = self.antis[aid].1;
                        if let Some(v) = sn.kv.get(key).copied().flatten() {
                            *self.anti_dom.entry((aid, v)).or_insert(0) += 1;
                        }
                    }
                }
            }
            self.nodes.push(sn);
        }

        // Equivalence classes.
        let mut order: Vec<usize> = (0..input.pods.len()).collect();
        order.sort_by(|a, b| input.pods[*a].key().cmp(&input.pods[*b].key()));
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut class_members: Vec<Vec<usize>> = Vec::new();
        for i in order {
            let p = &input.pods[i];
            let h = class_hash(p);
            let list = by_hash.entry(h).or_default();
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
        for members in class_members {
            let pod = input.pods[members[0]].clone();
            let c = self.make_class(pod, false, members);
            self.classes.push(c);
        }
        self.dyn_reasons = vec![None; self.pools.len()];
        // Joint groups: classes of one shape whose pods may share a node without per-node caps.
        let mut by_shape: HashMap<u64, Vec<Vec<usize>>> = HashMap::new();
        self.joint = vec![None; self.classes.len()];
        for c in 0..self.classes.len() {
            if !self.jointly_packable(c) {
                continue;
            }
            let h = shape_hash(&self.classes[c].pod);
            let lists = by_shape.entry(h).or_default();
            match lists
                .iter_mut()
                .find(|g| same_shape(&self.classes[g[0]].pod, &self.classes[c].pod))
            {
                Some(g) => g.push(c),
                None => lists.push(vec![c]),
            }
        }
        let mut groups: Vec<Vec<usize>> = by_shape
            .into_values()
            .flatten()
            .filter(|g| g.len() > 1)
            .collect();
        groups.sort();
        for g in groups {
            for &c in &g {
                self.joint[c] = Some(self.groups_of.len());
            }
            self.groups_of.push(g);
        }
    }

    fn make_class(&mut self, pod: Pod, tolerate_prefer: bool, members: Vec<usize>) -> Class {
        let respect = self.opts.relax_preferences;
        let mut req = self.rv(&pod.requests);
        req[PODS] = 1;
        let mut reqs = pod.node_requirements(if pod.required_node_affinity.is_empty() {
            None
        } else {
            Some(0)
        });
        if respect {
            for t in &pod.preferred_node_affinity {
                reqs.extend(t.requirements.iter().cloned());
            }
        }
        let mut zmask = 0u64;
        for (zi, z) in self.zones.iter().enumerate() {
            if reqs
                .iter()
                .filter(|r| r.key == labels::ZONE)
                .all(|r| requirement_matches(r, Some(z)))
            {
                zmask |= 1 << zi;
            }
        }
        let mut ctmask = 0u8;
        for ct in CapacityType::ALL {
            if reqs
                .iter()
                .filter(|r| r.key == labels::CAPACITY_TYPE)
                .all(|r| requirement_matches(r, Some(ct.as_str())))
            {
                ctmask |= ct_bit(ct);
            }
        }
        let mut host_spread = Vec::new();
        let mut dom = Vec::new();
        for s in &pod.topology_spread {
            if s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway && !respect {
                continue;
            }
            let Some(sel) = &s.label_selector else {
                continue;
            };
            let key = self.key_id(&s.topology_key);
            let gid = self.group_id(Some(BTreeSet::from([pod.namespace.clone()])), sel, key);
            let self_match = sel.matches(&pod.labels);
            if self.keys[key].1 == KeyKind::Hostname {
                host_spread.push((gid, s.max_skew.max(1), self_match));
            } else {
                dom.push(DomCon {
                    key,
                    gid,
                    kind: DomKind::Spread {
                        skew: s.max_skew.max(1),
                        min_domains: s.min_domains.unwrap_or(0),
                    },
                    self_match,
                });
            }
        }
        let mut host_aff = Vec::new();
        let mut aff_terms: Vec<PodAffinityTerm> = pod.pod_affinity.clone();
        if respect {
            aff_terms.extend(pod.preferred_pod_affinity.iter().map(|w| w.term.clone()));
        }
        for t in &aff_terms {
            let Some(sel) = &t.label_selector else {
                continue;
            };
            let key = self.key_id(&t.topology_key);
            let gid = self.group_id(t.namespaces.clone(), sel, key);
            let self_match = t.selects(&pod.namespace, &pod.labels);
            if self.keys[key].1 == KeyKind::Hostname {
                host_aff.push((gid, self_match));
            } else {
                dom.push(DomCon {
                    key,
                    gid,
                    kind: DomKind::Affinity,
                    self_match,
                });
            }
        }
        let mut host_anti = Vec::new();
        let mut owns = Vec::new();
        let mut anti_terms: Vec<PodAffinityTerm> = pod.pod_anti_affinity.clone();
        if respect {
            anti_terms.extend(
                pod.preferred_pod_anti_affinity
                    .iter()
                    .map(|w| w.term.clone()),
            );
        }
        for t in &anti_terms {
            let Some(aid) = self.anti_id(t) else { continue };
            let (gid, key) = self.antis[aid];
            let self_match = t.selects(&pod.namespace, &pod.labels);
            // Only required terms repel later pods symmetrically (Kubernetes semantics).
            if pod.pod_anti_affinity.contains(t) {
                owns.push(aid);
            }
            if self.keys[key].1 == KeyKind::Hostname {
                host_anti.push((gid, self_match));
            } else {
                dom.push(DomCon {
                    key,
                    gid,
                    kind: DomKind::Anti,
                    self_match,
                });
            }
        }
        let matches: Vec<usize> = (0..self.groups.len())
            .filter(|g| self.groups[*g].selects(&pod))
            .collect();
        let inverse: Vec<usize> = (0..self.antis.len())
            .filter(|a| self.groups[self.antis[*a].0].selects(&pod))
            .collect();
        let mut dom_keys: Vec<usize> = dom.iter().map(|d| d.key).collect();
        for a in &inverse {
            let key = self.antis[*a].1;
            if self.keys[key].1 != KeyKind::Hostname {
                dom_keys.push(key);
            }
        }
        dom_keys.sort_unstable();
        dom_keys.dedup();
        let mut pin_keys = dom_keys.clone();
        for g in &matches {
            pin_keys.extend(self.group_keys[*g].iter().copied());
        }
        for a in &owns {
            let key = self.antis[*a].1;
            if self.keys[key].1 != KeyKind::Hostname {
                pin_keys.push(key);
            }
        }
        pin_keys.sort_unstable();
        pin_keys.dedup();

        // Compatible types per pool.
        let include_prefer = respect && !tolerate_prefer;
        let mut compat = Vec::new();
        let mut loose_all = Vec::new();
        let mut reasons = Vec::new();
        for pool in &self.pools {
            let mut loose = Bitset::new(self.ptypes.len());
            if let Some(t) = untolerated(&pool.p.taints, &pod.tolerations, include_prefer) {
                loose_all.push(loose);
                compat.push(None);
                reasons.push(Some(PoolReason::Taint(t.to_string())));
                continue;
            }
            let mut bits = Bitset::new(self.ptypes.len());
            let mut reason = None;
            let mut any_req = false;
            let mut any_fit = false;
            for &t in &pool.types {
                let pt = &self.ptypes[t];
                if let Some(r) = reqs.iter().find(|r| !new_node_req_ok(r, &pt.labels)) {
                    if reason.is_none() {
                        reason = Some(r.key.clone());
                    }
                    continue;
                }
                any_req = true;
                let cts = ctmask & pool.ctmask;
                let zm = CapacityType::ALL
                    .iter()
                    .filter(|ct| cts & ct_bit(**ct) != 0)
                    .fold(0u64, |m, ct| m | pt.zm[ct_index(*ct)]);
                let offered = zm & zmask != 0;
                if offered {
                    loose.insert(t);
                }
                if req.iter().zip(&pt.alloc).any(|(a, b)| a > b) {
                    continue;
                }
                any_fit = true;
                if !offered {
                    continue;
                }
                bits.insert(t);
            }
            loose_all.push(loose);
            // minValues: the pool's flexibility floor must hold over what fits this pod.
            let short = pool.p.requirements.iter().find_map(|r| {
                let mv = r.min_values?;
                let distinct: BTreeSet<&str> = bits
                    .iter()
                    .filter_map(|t| self.ptypes[t].labels.get(&r.key).map(String::as_str))
                    .collect();
                ((distinct.len() as i32) < mv).then(|| (r.key.clone(), mv))
            });
            if !bits.is_empty()
                && let Some((key, mv)) = short
            {
                compat.push(None);
                reasons.push(Some(PoolReason::MinValues(key, mv)));
                continue;
            }
            if bits.is_empty() {
                compat.push(None);
                reasons.push(Some(if any_fit {
                    PoolReason::NoOffering
                } else if any_req {
                    PoolReason::TooBig
                } else {
                    PoolReason::Requirements(reason.unwrap_or_else(|| "instance types".into()))
                }));
            } else {
                compat.push(Some(bits));
                reasons.push(None);
            }
        }
        // Accelerator types only for pods that want them, unless nothing else fits.
        if !pod.wants_accelerator() {
            let has_plain = compat
                .iter()
                .flatten()
                .any(|b| b.iter().any(|t| !self.ptypes[t].exotic));
            if has_plain {
                for (pi, slot) in compat.iter_mut().enumerate() {
                    if let Some(b) = slot {
                        let mut plain = Bitset::new(self.ptypes.len());
                        for t in b.iter().filter(|t| !self.ptypes[*t].exotic) {
                            plain.insert(t);
                        }
                        if plain.is_empty() {
                            *slot = None;
                            reasons[pi] = Some(PoolReason::Requirements(
                                "accelerator types (kept for pods that request accelerators)"
                                    .into(),
                            ));
                        } else {
                            *b = plain;
                        }
                    }
                }
            }
        }
        Class {
            pod,
            tolerate_prefer,
            members,
            next: 0,
            req,
            reqs,
            zmask,
            ctmask,
            host_spread,
            host_anti,
            host_aff,
            dom,
            dom_keys,
            pin_keys,
            matches,
            owns,
            inverse,
            compat,
            loose: loose_all,
            reasons,
            topo_reason: None,
        }
    }
}

fn order_pos(keys: &[(i32, bool, f64, String)], c: usize) -> (i32, std::cmp::Reverse<u64>, String) {
    let k = &keys[c];
    (-k.0, std::cmp::Reverse(k.2.to_bits()), k.3.clone())
}

impl<'a> Engine<'a> {
    fn run(&mut self) {
        let mut sizes: Vec<f64> = vec![1.0; self.res.len()];
        for pt in &self.ptypes {
            for (s, a) in sizes.iter_mut().zip(&pt.alloc) {
                *s = s.max(*a as f64);
            }
        }
        let size = |c: &Class| {
            c.req
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != PODS)
                .map(|(i, r)| *r as f64 / sizes[i])
                .fold(0.0, f64::max)
        };
        let mut order: Vec<usize> = (0..self.classes.len()).collect();
        let keys: Vec<(i32, bool, f64, String)> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.pod.priority,
                    self.joint[i].is_some(),
                    size(c),
                    self.input.pods[c.members[0]].key(),
                )
            })
            .collect();
        // Priority first; pods with per-node caps (spread, anti-affinity, ports) before pods that
        // pack jointly, so the latter fill the room the former leave; then largest first.
        order.sort_by(|a, b| {
            let (ka, kb) = (&keys[*a], &keys[*b]);
            kb.0.cmp(&ka.0)
                .then(ka.1.cmp(&kb.1))
                .then(kb.2.total_cmp(&ka.2))
                .then_with(|| ka.3.cmp(&kb.3))
        });
        let mut done_groups = vec![false; self.groups_of.len()];
        for c0 in order {
            if let Some(g) = self.joint[c0]
                && !done_groups[g]
            {
                done_groups[g] = true;
                let mut members = self.groups_of[g].clone();
                members.sort_by_key(|c| order_pos(&keys, *c));
                self.place_group(&members);
            }
            let mut c = c0;
            loop {
                self.place_class(c);
                if self.classes[c].remaining() == 0 {
                    break;
                }
                match self.relaxed(c) {
                    Some(c2) => c = c2,
                    None => {
                        let reason = self.reason(c);
                        let cls = &mut self.classes[c];
                        for &m in &cls.members[cls.next..] {
                            self.unschedulable
                                .insert(self.input.pods[m].key(), reason.clone());
                        }
                        cls.next = cls.members.len();
                        break;
                    }
                }
            }
        }
    }

    fn relaxed(&mut self, c: usize) -> Option<usize> {
        let cls = &self.classes[c];
        let mut pod = cls.pod.clone();
        let mut tol = cls.tolerate_prefer;
        let respect = self.opts.relax_preferences;
        let changed = if pod.required_node_affinity.len() > 1 {
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
        } else if !tol && self.any_prefer_taint {
            tol = true;
            true
        } else {
            false
        };
        if !changed {
            return None;
        }
        let cls = &mut self.classes[c];
        let members = cls.members[cls.next..].to_vec();
        cls.next = cls.members.len();
        let nc = self.make_class(pod, tol, members);
        self.classes.push(nc);
        Some(self.classes.len() - 1)
    }

    fn reason(&self, c: usize) -> String {
        let cls = &self.classes[c];
        if let Some(t) = &cls.topo_reason {
            return t.clone();
        }
        if self.pools.is_empty() {
            return "no NodePool exists and no existing node fits".into();
        }
        let per_pool: Vec<(&str, PoolReason)> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = cls.reasons[i]
                    .clone()
                    .or_else(|| self.dyn_reasons[i].clone())
                    .unwrap_or(PoolReason::NoOffering);
                (p.p.name.as_str(), r)
            })
            .collect();
        if let Some((_, PoolReason::Taint(t))) = per_pool.first()
            && per_pool
                .iter()
                .all(|(_, r)| matches!(r, PoolReason::Taint(_)))
        {
            return format!("no NodePool tolerates taint {t}");
        }
        per_pool
            .iter()
            .map(|(name, r)| {
                let text = match r {
                    PoolReason::Taint(t) => format!("taint {t} not tolerated"),
                    PoolReason::Requirements(k) => {
                        format!("no instance type matches the pod's node selector/affinity on {k}")
                    }
                    PoolReason::TooBig => {
                        format!(
                            "no instance type has room for requests {}",
                            fmt_requests(&cls.pod.requests)
                        )
                    }
                    PoolReason::NoOffering => {
                        "no available offering in the allowed zones and capacity types".to_string()
                    }
                    PoolReason::Limit(l) => format!("limit {l} reached"),
                    PoolReason::MinValues(key, mv) => format!(
                        "fewer than {mv} distinct {key} values can hold the pod (minValues)"
                    ),
                    PoolReason::Cap(pct) => {
                        format!("spot unavailable and on-demand cap {pct}% of pool reached")
                    }
                };
                format!("NodePool {name}: {text}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether pods of class `c` can be put on one node many at a time with pods of other sizes
    /// of the same shape (no per-node caps, no hostname affinity).
    fn jointly_packable(&self, c: usize) -> bool {
        let cls = &self.classes[c];
        cls.pod.host_ports.is_empty()
            && cls.host_aff.is_empty()
            && cls.host_anti.iter().all(|(_, s)| !s)
            && cls.host_spread.iter().all(|(_, _, s)| !s)
            && cls.dom.iter().all(|d| {
                !(d.self_match && matches!(d.kind, DomKind::Spread { .. } | DomKind::Anti))
            })
    }

    /// Places a joint group: first into room already there, class by class, then onto new nodes
    /// each filled with a proportional slice of every class (so a node's resources are used in
    /// the batch's own balance), topped up largest first.
    fn place_group(&mut self, group: &[usize]) {
        // Fill the slack of claims first: up to the cheapest type that already holds what each
        // claim has, so rounding gaps are used before anything grows.
        let mut saved = Vec::new();
        for n in 0..self.nodes.len() {
            if let Some(cap) = self.shrunk_cap(n) {
                saved.push((n, std::mem::replace(&mut self.nodes[n].cap, cap)));
            }
        }
        for &c in group {
            self.place_class_with(c, false);
        }
        for (n, cap) in saved {
            self.nodes[n].cap = cap;
        }
        self.cursors.retain(|(c, _), _| !group.contains(c));
        for &c in group {
            self.place_class_with(c, false);
        }
        loop {
            let live: Vec<usize> = group
                .iter()
                .copied()
                .filter(|c| self.classes[*c].remaining() > 0)
                .collect();
            let Some(&lead) = live.first() else { return };
            let Ok(combos) = self.combos(lead) else {
                return;
            };
            let mut opened = None;
            for combo in &combos {
                if let Some((n, f)) = self.open_group(&live, combo) {
                    opened = Some((n, f, combo.clone()));
                    break;
                }
            }
            let Some((n, f, combo)) = opened else { return };
            let mut placed = 0;
            for &c in &live {
                let share = (self.classes[c].remaining() as f64 * f).floor() as usize;
                if share > 0
                    && let Some((k, zm)) = self.fit(c, n, &combo)
                {
                    self.place(c, n, k.min(share), zm);
                    placed += k.min(share);
                }
            }
            for &c in &live {
                if let Some((k, zm)) = self.fit(c, n, &combo) {
                    self.place(c, n, k, zm);
                    placed += k;
                }
            }
            if placed == 0 {
                self.discard(n);
                return;
            }
        }
    }

    /// Opens a node for a joint group: the type with the lowest price per fraction of the
    /// group's remaining demand it holds, or the cheapest that holds all of it.
    fn open_group(&mut self, live: &[usize], combo: &[u32]) -> Option<(usize, f64)> {
        let lead = live[0];
        let mut demand = vec![0i64; self.res.len()];
        for &c in live {
            let cls = &self.classes[c];
            for (d, r) in demand.iter_mut().zip(&cls.req) {
                *d += r * cls.remaining() as i64;
            }
        }
        for pi in 0..self.pools.len() {
            let Some(bits) = self.classes[lead].compat[pi].clone() else {
                continue;
            };
            let pool = &self.pools[pi];
            if pool.nodes_left.is_some_and(|n| n <= 0) {
                continue;
            }
            let cls = &self.classes[lead];
            let mut zall = cls.zmask & pool.zmask;
            let mut want_ct = None;
            for (i, &key) in cls.dom_keys.iter().enumerate() {
                match self.keys[key].1 {
                    KeyKind::Zone => zall &= 1 << combo[i],
                    KeyKind::CapType => want_ct = Some(combo[i] as usize),
                    _ => {}
                }
            }
            for ct in CapacityType::ALL {
                if cls.ctmask & pool.ctmask & ct_bit(ct) == 0
                    || want_ct.is_some_and(|w| w != ct_index(ct))
                    || ct == CapacityType::Reserved
                {
                    continue;
                }
                // (type, fraction, price, zone mask)
                let mut best: Option<(usize, f64, f64, u64)> = None;
                let mut best_all: Option<(usize, f64, u64)> = None;
                for t in bits.iter() {
                    let pt = &self.ptypes[t];
                    let zm = pt.zm[ct_index(ct)] & zall;
                    if zm == 0 {
                        continue;
                    }
                    if cls.dom_keys.iter().enumerate().any(|(i, key)| {
                        self.keys[*key].1 == KeyKind::Label
                            && pt.labels.get(&self.keys[*key].0).map(String::as_str)
                                != Some(self.val_name(*key, combo[i]))
                    }) {
                        continue;
                    }
                    if pool.limits.iter().any(|(r, rem)| pt.capacity[*r] > *rem) {
                        continue;
                    }
                    if ct == CapacityType::OnDemand
                        && let Some(mix) = &pool.p.capacity_mix
                        && !mix.allows(pool.od, pool.total, pt.capacity[CPU])
                    {
                        continue;
                    }
                    let price = pt
                        .offs
                        .iter()
                        .filter(|o| o.ct == ct && zm & (1 << o.zone) != 0)
                        .map(|o| o.price)
                        .fold(f64::INFINITY, f64::min);
                    if !price.is_finite() {
                        continue;
                    }
                    let f = demand
                        .iter()
                        .zip(&pt.alloc)
                        .filter(|(d, _)| **d > 0)
                        .map(|(d, a)| *a as f64 / *d as f64)
                        .fold(f64::INFINITY, f64::min);
                    if f >= 1.0 {
                        if best_all.as_ref().is_none_or(|(bt, bp, _)| {
                            price < *bp || (price == *bp && pt.it.name < self.ptypes[*bt].it.name)
                        }) {
                            best_all = Some((t, price, zm));
                        }
                        continue;
                    }
                    if f <= 0.0 {
                        continue;
                    }
                    let better = match &best {
                        None => true,
                        Some((bt, bf, bp, _)) => {
                            let (sa, sb) = (price / f, bp / bf);
                            if (sa - sb).abs() > 1e-9 * sb.abs() {
                                sa < sb
                            } else if (f - bf).abs() > 1e-12 {
                                f > *bf
                            } else {
                                pt.it.name < self.ptypes[*bt].it.name
                            }
                        }
                    };
                    if better {
                        best = Some((t, f, price, zm));
                    }
                }
                if let Some((t, _, zm)) = best_all {
                    return Some((self.create(lead, pi, t, ct, zm, None), 1.0));
                }
                if let Some((t, f, _, zm)) = best {
                    return Some((self.create(lead, pi, t, ct, zm, None), f));
                }
            }
        }
        None
    }

    /// Whether a new node could take a pod of the class at all (hostname pod affinity needs a
    /// node that already runs a matching pod, unless none exists anywhere and the pod matches).
    fn can_open(&mut self, c: usize) -> bool {
        let cls = &self.classes[c];
        if cls
            .host_aff
            .iter()
            .all(|&(gid, self_match)| self.gtotal[gid] == 0 && self_match)
        {
            return true;
        }
        if cls.topo_reason.is_none() {
            self.classes[c].topo_reason = Some(format!(
                "pod affinity on {}: no node with room runs a matching pod",
                labels::HOSTNAME
            ));
        }
        false
    }

    fn place_class(&mut self, c: usize) {
        self.place_class_with(c, true);
    }

    fn place_class_with(&mut self, c: usize, allow_open: bool) {
        while self.classes[c].remaining() > 0 {
            let combos = match self.combos(c) {
                Ok(v) => v,
                Err(reason) => {
                    self.classes[c].topo_reason = Some(reason);
                    return;
                }
            };
            let mut done = false;
            for combo in &combos {
                if let Some((n, k, zm)) = self.scan(c, combo) {
                    self.place(c, n, k, zm);
                    done = true;
                    break;
                }
                if allow_open
                    && self.can_open(c)
                    && let Some(n) = self.open(c, combo)
                {
                    if let Some((k, zm)) = self.fit(c, n, combo) {
                        self.place(c, n, k, zm);
                        done = true;
                        break;
                    }
                    self.discard(n);
                }
            }
            if !done {
                return;
            }
        }
    }

    fn static_ok(&self, c: usize, n: usize) -> bool {
        let cls = &self.classes[c];
        match &self.nodes[n].kind {
            Kind::Existing { node } => {
                let node = self.enodes[*node];
                let include_prefer = self.opts.relax_preferences && !cls.tolerate_prefer;
                !node.unschedulable
                    && untolerated(&node.taints, &cls.pod.tolerations, include_prefer).is_none()
                    && cls.reqs.iter().all(|r| {
                        requirement_matches(r, node.labels.get(&r.key).map(String::as_str))
                    })
            }
            Kind::New { pool, target, .. } => cls.compat[*pool]
                .as_ref()
                .is_some_and(|b| b.contains(*target)),
        }
    }

    /// Domain values each of the class's domain keys may take now, in preference order, as
    /// combinations (capped).
    fn combos(&mut self, c: usize) -> Result<Vec<Vec<u32>>, String> {
        let keys = self.classes[c].dom_keys.clone();
        if keys.is_empty() {
            return Ok(vec![Vec::new()]);
        }
        let mut per_key: Vec<Vec<u32>> = Vec::new();
        for key in keys {
            let doms = self.class_domains(c, key);
            if doms.is_empty() {
                // Nowhere to go at all: the pool reasons say why.
                return Ok(Vec::new());
            }
            let cls = &self.classes[c];
            let mut allowed: Vec<(u32, u32)> = doms.iter().map(|v| (0, *v)).collect();
            for con in cls.dom.iter().filter(|d| d.key == key) {
                let cnt = |v: u32| self.dom.get(&(con.gid, key, v)).copied().unwrap_or(0);
                match con.kind {
                    DomKind::Spread { skew, min_domains } => {
                        let min = if (doms.len() as i32) < min_domains {
                            0
                        } else {
                            doms.iter().map(|v| cnt(*v)).min().unwrap_or(0)
                        };
                        let me = u32::from(con.self_match);
                        allowed.retain(|(_, v)| {
                            i64::from(cnt(*v) + me) - i64::from(min) <= i64::from(skew)
                        });
                        for a in &mut allowed {
                            a.0 = a.0.max(cnt(a.1));
                        }
                        if allowed.is_empty() {
                            return Err(format!(
                                "topology spread on {} (maxSkew {skew}) cannot be satisfied in any domain",
                                self.keys[key].0
                            ));
                        }
                    }
                    DomKind::Affinity => {
                        if !(self.gtotal[con.gid] == 0 && con.self_match) {
                            allowed.retain(|(_, v)| cnt(*v) > 0);
                        }
                        if allowed.is_empty() {
                            return Err(format!(
                                "pod affinity on {}: no domain has a matching pod",
                                self.keys[key].0
                            ));
                        }
                    }
                    DomKind::Anti => {
                        allowed.retain(|(_, v)| cnt(*v) == 0);
                        if allowed.is_empty() {
                            return Err(format!(
                                "pod anti-affinity on {}: every domain already has a matching pod",
                                self.keys[key].0
                            ));
                        }
                    }
                }
            }
            for &aid in cls.inverse.iter().filter(|a| self.antis[**a].1 == key) {
                allowed.retain(|(_, v)| self.anti_dom.get(&(aid, *v)).copied().unwrap_or(0) == 0);
            }
            if allowed.is_empty() {
                return Err(format!(
                    "anti-affinity of running pods excludes every {} domain",
                    self.keys[key].0
                ));
            }
            allowed.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| self.val_name(key, a.1).cmp(self.val_name(key, b.1)))
            });
            per_key.push(allowed.into_iter().map(|(_, v)| v).collect());
        }
        let mut combos: Vec<Vec<u32>> = vec![Vec::new()];
        for vals in per_key {
            let mut next = Vec::new();
            for c in &combos {
                for v in &vals {
                    if next.len() >= MAX_COMBOS {
                        break;
                    }
                    let mut x = c.clone();
                    x.push(*v);
                    next.push(x);
                }
            }
            combos = next;
        }
        Ok(combos)
    }

    fn class_domains(&mut self, c: usize, key: usize) -> Vec<u32> {
        if let Some(d) = self.domains_cache.get(&(c, key)) {
            return d.clone();
        }
        let mut set: BTreeSet<u32> = BTreeSet::new();
        for n in 0..self.nodes.len() {
            if matches!(self.nodes[n].kind, Kind::Existing { .. })
                && self.static_ok(c, n)
                && let Some(v) = self.nodes[n].kv[key]
            {
                set.insert(v);
            }
        }
        let mut label_values: Vec<String> = Vec::new();
        {
            let cls = &self.classes[c];
            for (pi, pool) in self.pools.iter().enumerate() {
                let Some(bits) = &cls.compat[pi] else {
                    continue;
                };
                let cts = cls.ctmask & pool.ctmask;
                for t in bits.iter() {
                    let pt = &self.ptypes[t];
                    match self.keys[key].1 {
                        KeyKind::Zone => {
                            let zm = CapacityType::ALL
                                .iter()
                                .filter(|ct| cts & ct_bit(**ct) != 0)
                                .fold(0u64, |m, ct| m | pt.zm[ct_index(*ct)])
                                & cls.zmask;
                            for z in 0..self.zones.len() {
                                if zm & (1 << z) != 0 {
                                    set.insert(z as u32);
                                }
                            }
                        }
                        KeyKind::CapType => {
                            for ct in CapacityType::ALL {
                                if cts & ct_bit(ct) != 0 && pt.zm[ct_index(ct)] & cls.zmask != 0 {
                                    set.insert(ct_index(ct) as u32);
                                }
                            }
                        }
                        KeyKind::Label => {
                            if let Some(v) = pt.labels.get(&self.keys[key].0) {
                                label_values.push(v.clone());
                            }
                        }
                        KeyKind::Hostname => {}
                    }
                }
            }
        }
        for v in label_values {
            if let Some(id) = self.val_id(key, &v) {
                set.insert(id);
            }
        }
        let mut out: Vec<u32> = set.into_iter().collect();
        out.sort_by(|a, b| self.val_name(key, *a).cmp(self.val_name(key, *b)));
        self.domains_cache.insert((c, key), out.clone());
        out
    }

    fn scan(&mut self, c: usize, combo: &[u32]) -> Option<(usize, usize, u64)> {
        let use_cursor = self.classes[c].host_aff.is_empty();
        let ck = (c, combo.to_vec());
        let start = if use_cursor {
            self.cursors.get(&ck).copied().unwrap_or(0)
        } else {
            0
        };
        let mut found = None;
        let mut i = start;
        while i < self.nodes.len() {
            if let Some((k, zm)) = self.fit(c, i, combo) {
                found = Some((i, k, zm));
                break;
            }
            i += 1;
        }
        if use_cursor {
            self.cursors.insert(ck, i);
        }
        found
    }

    /// How many pods of class `c` node `n` takes now (and the node's zone mask afterwards).
    fn fit(&self, c: usize, n: usize, combo: &[u32]) -> Option<(usize, u64)> {
        let cls = &self.classes[c];
        let node = &self.nodes[n];
        let mut k = cls.remaining();
        for (r, want) in cls.req.iter().enumerate() {
            if *want > 0 {
                let room = node.cap[r] - node.used[r];
                if room < *want {
                    return None;
                }
                k = k.min((room / want) as usize);
            }
        }
        if !cls.pod.host_ports.is_empty() {
            if cls
                .pod
                .host_ports
                .iter()
                .any(|hp| node.ports.iter().any(|o| o.conflicts(hp)))
            {
                return None;
            }
            k = k.min(1);
        }
        for &(gid, skew, self_match) in &cls.host_spread {
            let cnt = node.gc(gid) as i32;
            if self_match {
                if cnt >= skew {
                    return None;
                }
                k = k.min((skew - cnt) as usize);
            } else if cnt > skew {
                return None;
            }
        }
        for &(gid, self_match) in &cls.host_anti {
            if node.gc(gid) > 0 {
                return None;
            }
            if self_match {
                k = k.min(1);
            }
        }
        for &(gid, self_match) in &cls.host_aff {
            let free = self.gtotal[gid] == 0 && self_match;
            if !free && node.gc(gid) == 0 {
                return None;
            }
        }
        for &aid in &cls.inverse {
            if self.keys[self.antis[aid].1].1 == KeyKind::Hostname && node.ac(aid) > 0 {
                return None;
            }
        }
        for con in &cls.dom {
            if con.self_match && matches!(con.kind, DomKind::Spread { .. } | DomKind::Anti) {
                k = k.min(1);
            }
        }
        if !self.static_ok(c, n) {
            return None;
        }
        let mut zm = 0u64;
        if let Kind::New {
            target, ct, zmask, ..
        } = &node.kind
        {
            if cls.ctmask & ct_bit(*ct) == 0 {
                return None;
            }
            zm = zmask & cls.zmask & self.ptypes[*target].zm[ct_index(*ct)];
            if zm == 0 {
                return None;
            }
        }
        for (i, &key) in cls.dom_keys.iter().enumerate() {
            let v = combo.get(i).copied()?;
            match (&node.kind, self.keys[key].1) {
                (Kind::New { .. }, KeyKind::Zone) => {
                    if zm & (1 << v) == 0 {
                        return None;
                    }
                    zm = 1 << v;
                }
                _ => {
                    if node.kv[key] != Some(v) {
                        return None;
                    }
                }
            }
        }
        if let Kind::New { .. } = node.kind
            && zm.count_ones() > 1
            && cls
                .pin_keys
                .iter()
                .any(|k| self.keys[*k].1 == KeyKind::Zone)
        {
            zm &= zm.wrapping_neg();
        }
        Some((k, zm))
    }

    fn place(&mut self, c: usize, n: usize, k: usize, zm: u64) {
        let zone_key = self.key_idx.get(labels::ZONE).copied();
        let cls = &mut self.classes[c];
        let members = &cls.members[cls.next..cls.next + k];
        cls.next += k;
        let node = &mut self.nodes[n];
        for (u, r) in node.used.iter_mut().zip(&cls.req) {
            *u += r * k as i64;
        }
        node.pods.extend_from_slice(members);
        for _ in 0..k {
            node.ports.extend(cls.pod.host_ports.iter().cloned());
        }
        if let Kind::New {
            pool,
            zmask,
            compat,
            ..
        } = &mut node.kind
        {
            *zmask = zm;
            if let Some(b) = &cls.compat[*pool] {
                compat.and_with(b);
            }
            if zm.count_ones() == 1
                && let Some(zk) = zone_key
            {
                node.kv[zk] = Some(zm.trailing_zeros());
            }
        }
        let k32 = k as u32;
        for &gid in &cls.matches {
            SNode::bump(&mut node.gcount, gid, k32);
            self.gtotal[gid] += k32;
            for &key in &self.group_keys[gid] {
                if let Some(v) = node.kv[key] {
                    *self.dom.entry((gid, key, v)).or_insert(0) += k32;
                }
            }
        }
        for &aid in &cls.owns {
            SNode::bump(&mut node.acount, aid, k32);
            let key = self.antis[aid].1;
            if let Some(v) = node.kv[key] {
                *self.anti_dom.entry((aid, v)).or_insert(0) += k32;
            }
        }
    }

    /// Whether the class can put only a few pods on one node (hostname spread or anti-affinity,
    /// host ports).
    fn capped(&self, c: usize) -> bool {
        let cls = &self.classes[c];
        !cls.pod.host_ports.is_empty()
            || cls.host_anti.iter().any(|(_, s)| *s)
            || cls.host_spread.iter().any(|(_, _, s)| *s)
    }

    /// For a new claim: the allocatable of the cheapest compatible type that holds what it has.
    fn shrunk_cap(&self, n: usize) -> Option<Vec<i64>> {
        let node = &self.nodes[n];
        let Kind::New {
            ct, zmask, compat, ..
        } = &node.kind
        else {
            return None;
        };
        let mut best: Option<(f64, usize)> = None;
        for t in compat.iter() {
            let pt = &self.ptypes[t];
            if pt.zm[ct_index(*ct)] & zmask == 0
                || node.used.iter().zip(&pt.alloc).any(|(u, a)| u > a)
            {
                continue;
            }
            let price = pt
                .offs
                .iter()
                .filter(|o| o.ct == *ct && zmask & (1 << o.zone) != 0)
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min);
            if best.is_none_or(|(bp, _)| price < bp) {
                best = Some((price, t));
            }
        }
        best.map(|(_, t)| self.ptypes[t].alloc.clone())
    }

    /// Pods of class `c` an empty node of type `t` holds by resources alone.
    fn raw_fit(&self, c: usize, t: usize) -> usize {
        let cls = &self.classes[c];
        let pt = &self.ptypes[t];
        cls.req
            .iter()
            .zip(&pt.alloc)
            .filter(|(want, _)| **want > 0)
            .map(|(want, a)| (a / want).max(0) as usize)
            .min()
            .unwrap_or(0)
    }

    /// Pods of class `c` an empty node of type `t` takes.
    fn empty_fit(&self, c: usize, t: usize) -> usize {
        let cls = &self.classes[c];
        let pt = &self.ptypes[t];
        let mut k = cls.remaining();
        for (r, want) in cls.req.iter().enumerate() {
            if *want > 0 {
                if pt.alloc[r] < *want {
                    return 0;
                }
                k = k.min((pt.alloc[r] / want) as usize);
            }
        }
        if !cls.pod.host_ports.is_empty() {
            k = k.min(1);
        }
        for &(_, skew, self_match) in &cls.host_spread {
            if self_match {
                k = k.min(skew.max(1) as usize);
            }
        }
        if cls.host_anti.iter().any(|(_, s)| *s) {
            k = k.min(1);
        }
        for con in &cls.dom {
            if con.self_match && matches!(con.kind, DomKind::Spread { .. } | DomKind::Anti) {
                k = k.min(1);
            }
        }
        k
    }

    /// Opens a new claim for class `c` in the first pool (weight order) that can take a pod.
    fn open(&mut self, c: usize, combo: &[u32]) -> Option<usize> {
        for pi in 0..self.pools.len() {
            let Some(bits) = self.classes[c].compat[pi].clone() else {
                continue;
            };
            if let Some(n) = self.open_in(c, pi, &bits, combo) {
                return Some(n);
            }
        }
        None
    }

    fn open_in(&mut self, c: usize, pi: usize, bits: &Bitset, combo: &[u32]) -> Option<usize> {
        let pool = &self.pools[pi];
        if pool.nodes_left.is_some_and(|n| n <= 0) {
            let limit = pool.p.limits.get("nodes");
            self.dyn_reasons[pi] = Some(PoolReason::Limit(format!("nodes {limit}")));
            return None;
        }
        let cls = &self.classes[c];
        let mut zall = cls.zmask & pool.zmask;
        let mut want_ct: Option<usize> = None;
        let mut label_pins: Vec<(usize, u32)> = Vec::new();
        for (i, &key) in cls.dom_keys.iter().enumerate() {
            let v = combo[i];
            match self.keys[key].1 {
                KeyKind::Zone => zall &= 1 << v,
                KeyKind::CapType => want_ct = Some(v as usize),
                _ => label_pins.push((key, v)),
            }
        }
        let remaining = cls.remaining();
        let mut limit_hit: Option<String> = None;
        let mut cap_hit = false;
        for ct in CapacityType::ALL {
            if cls.ctmask & pool.ctmask & ct_bit(ct) == 0
                || want_ct.is_some_and(|w| w != ct_index(ct))
            {
                continue;
            }
            let cache_key = (c, pi, ct_bit(ct), zall, combo.to_vec());
            let cacheable = ct != CapacityType::Reserved
                && pool.limits.is_empty()
                && (ct != CapacityType::OnDemand || pool.p.capacity_mix.is_none());
            let mut best: Option<(usize, usize, f64, u64, Option<usize>)> = None;
            if cacheable
                && let Some(&(t, nfit)) = self.open_cache.get(&cache_key)
                && remaining >= nfit
            {
                let pt = &self.ptypes[t];
                let zm = pt.zm[ct_index(ct)] & zall;
                let price = pt
                    .offs
                    .iter()
                    .filter(|o| o.ct == ct && zm & (1 << o.zone) != 0)
                    .map(|o| o.price)
                    .fold(f64::INFINITY, f64::min);
                best = Some((t, nfit, price, zm, None));
            }
            if best.is_none() {
                // Roomy mode (no limit, no cap, no reservation): among the types within 5 % of
                // the best price per pod, take the largest, so later pods fill the claim; the
                // final instance type options shrink it to what it holds.
                let roomy = cacheable && !self.capped(c);
                // Share mode (capped classes, e.g. one pod per node): the cheapest type with room
                // for three such pods, so pods of other groups can share the node; the final
                // options shrink it to what it holds. (Measured: 3 beats 2, 4 and the tightest.)
                let pair = cacheable && !roomy;
                let mut cands: Vec<(usize, usize, f64, u64)> = Vec::new();
                for t in bits.iter() {
                    let pt = &self.ptypes[t];
                    let mut zm = pt.zm[ct_index(ct)] & zall;
                    if zm == 0 {
                        continue;
                    }
                    if label_pins.iter().any(|(key, v)| {
                        pt.labels.get(&self.keys[*key].0).map(String::as_str)
                            != Some(self.val_name(*key, *v))
                    }) {
                        continue;
                    }
                    if let Some((r, _)) = pool.limits.iter().find(|(r, rem)| pt.capacity[*r] > *rem)
                    {
                        limit_hit = Some(format!(
                            "{} {}",
                            self.res[*r],
                            format_resource(&self.res[*r], pool.p.limits.get(&self.res[*r]))
                        ));
                        continue;
                    }
                    if ct == CapacityType::OnDemand
                        && let Some(mix) = &pool.p.capacity_mix
                        && !mix.allows(pool.od, pool.total, pt.capacity[CPU])
                    {
                        cap_hit = true;
                        continue;
                    }
                    let mut reservation = None;
                    let mut price = f64::INFINITY;
                    for o in pt
                        .offs
                        .iter()
                        .filter(|o| o.ct == ct && zm & (1 << o.zone) != 0)
                    {
                        if let Some(ri) = o.reservation {
                            let (cap, used) = self.reservations[ri];
                            if used >= cap {
                                continue;
                            }
                            if o.price < price {
                                reservation = Some(ri);
                            }
                        }
                        price = price.min(o.price);
                    }
                    if !price.is_finite() {
                        continue;
                    }
                    if let Some(ri) = reservation
                        && let Some(o) = pt.offs.iter().find(|o| o.reservation == Some(ri))
                    {
                        zm = 1 << o.zone;
                    }
                    let nfit = self.empty_fit(c, t);
                    if nfit == 0 {
                        continue;
                    }
                    if roomy || pair {
                        cands.push((t, self.raw_fit(c, t), price, zm));
                        continue;
                    }
                    let better = match &best {
                        None => true,
                        Some((bt, bn, bp, _, _)) => {
                            let (sa, sb) = (price / nfit as f64, bp / *bn as f64);
                            if (sa - sb).abs() > 1e-9 * sb.abs().max(1e-12) {
                                sa < sb
                            } else if nfit != *bn {
                                nfit > *bn
                            } else if (price - bp).abs() > 1e-12 {
                                price < *bp
                            } else {
                                pt.it.name < self.ptypes[*bt].it.name
                            }
                        }
                    };
                    if better {
                        best = Some((t, nfit, price, zm, reservation));
                    }
                }
                if pair {
                    for &(t, raw, price, zm) in &cands {
                        let better = match &best {
                            None => true,
                            Some((bt, braw, bp, _, _)) => {
                                let (ok, bok) = (raw >= 3, *braw >= 3);
                                if ok != bok {
                                    ok
                                } else if (price - bp).abs() > 1e-12 {
                                    price < *bp
                                } else {
                                    self.ptypes[t].it.name < self.ptypes[*bt].it.name
                                }
                            }
                        };
                        if better {
                            best = Some((t, raw, price, zm, None));
                        }
                    }
                    if let Some((t, ..)) = best {
                        self.open_cache.insert(cache_key.clone(), (t, 0));
                    }
                }
                if roomy {
                    let min_ratio = cands
                        .iter()
                        .map(|(_, raw, price, _)| price / *raw as f64)
                        .fold(f64::INFINITY, f64::min);
                    for &(t, raw, price, zm) in &cands {
                        if price / raw as f64 > min_ratio * 1.05 {
                            continue;
                        }
                        let better = match &best {
                            None => true,
                            Some((bt, braw, bp, _, _)) => {
                                if raw != *braw {
                                    raw > *braw
                                } else if (price - bp).abs() > 1e-12 {
                                    price < *bp
                                } else {
                                    self.ptypes[t].it.name < self.ptypes[*bt].it.name
                                }
                            }
                        };
                        if better {
                            best = Some((t, raw, price, zm, None));
                        }
                    }
                    if let Some((t, ..)) = best {
                        self.open_cache.insert(cache_key.clone(), (t, 0));
                    }
                }
                // Cache only unclamped choices: while at least `nfit` pods remain, no other
                // type's score changes, so the choice stays the best.
                if !roomy
                    && !pair
                    && cacheable
                    && let Some((t, nfit, ..)) = best
                    && nfit < remaining
                {
                    self.open_cache.insert(cache_key, (t, nfit));
                }
            }
            if let Some((t, _, _, zm, reservation)) = best {
                return Some(self.create(c, pi, t, ct, zm, reservation));
            }
        }
        self.dyn_reasons[pi] = Some(if cap_hit {
            PoolReason::Cap(
                self.pools[pi]
                    .p
                    .capacity_mix
                    .as_ref()
                    .map_or(100, |m| m.on_demand_percent_above_base),
            )
        } else if let Some(l) = limit_hit {
            PoolReason::Limit(l)
        } else {
            PoolReason::NoOffering
        });
        None
    }

    fn create(
        &mut self,
        c: usize,
        pi: usize,
        t: usize,
        ct: CapacityType,
        zm: u64,
        reservation: Option<usize>,
    ) -> usize {
        let pool = &mut self.pools[pi];
        pool.claims += 1;
        let name = format!("{}-{}", pool.p.name, pool.claims);
        if let Some(n) = &mut pool.nodes_left {
            *n -= 1;
        }
        let pt = &self.ptypes[t];
        for (r, rem) in &mut pool.limits {
            *rem -= pt.capacity[*r];
        }
        pool.total += pt.capacity[CPU];
        if ct == CapacityType::OnDemand {
            pool.od += pt.capacity[CPU];
        }
        if let Some(ri) = reservation {
            self.reservations[ri].1 += 1;
        }
        let compat = self.classes[c].compat[pi].clone().unwrap_or_default();
        let mut kv = Vec::with_capacity(self.keys.len());
        let mut label_vals = Vec::new();
        for key in 0..self.keys.len() {
            kv.push(match self.keys[key].1 {
                KeyKind::Hostname => None,
                KeyKind::Zone => (zm.count_ones() == 1).then(|| zm.trailing_zeros()),
                KeyKind::CapType => Some(ct_index(ct) as u32),
                KeyKind::Label => {
                    if let Some(v) = pt.labels.get(&self.keys[key].0) {
                        label_vals.push((key, v.clone()));
                    }
                    None
                }
            });
        }
        let cap = pt.alloc.clone();
        for (key, v) in label_vals {
            kv[key] = self.val_id(key, &v);
        }
        self.nodes.push(SNode {
            name,
            kind: Kind::New {
                pool: pi,
                target: t,
                ct,
                zmask: zm,
                compat,
            },
            used: vec![0; cap.len()],
            cap,
            ports: Vec::new(),
            pods: Vec::new(),
            gcount: Vec::new(),
            acount: Vec::new(),
            kv,
        });
        self.nodes.len() - 1
    }

    /// Undoes the opening of the last node when nothing could go there after all.
    fn discard(&mut self, n: usize) {
        if n + 1 != self.nodes.len() || !self.nodes[n].pods.is_empty() {
            return;
        }
        let Some(node) = self.nodes.pop() else { return };
        if let Kind::New {
            pool, target, ct, ..
        } = node.kind
        {
            let cap = &self.ptypes[target].capacity;
            let p = &mut self.pools[pool];
            if let Some(left) = &mut p.nodes_left {
                *left += 1;
            }
            for (r, rem) in &mut p.limits {
                *rem += cap[*r];
            }
            p.total -= cap[CPU];
            if ct == CapacityType::OnDemand {
                p.od -= cap[CPU];
            }
        }
    }

    fn finish(self) -> Plan {
        let mut plan = Plan {
            unschedulable: self.unschedulable.clone(),
            ..Plan::default()
        };
        for node in &self.nodes {
            match &node.kind {
                Kind::Existing { .. } => {
                    for &p in &node.pods {
                        plan.existing_placements
                            .insert(self.input.pods[p].key(), node.name.clone());
                    }
                }
                Kind::New {
                    pool,
                    target,
                    ct,
                    zmask,
                    compat,
                    ..
                } => {
                    if node.pods.is_empty() {
                        continue;
                    }
                    plan.new_claims
                        .push(self.claim(node, *pool, *target, *ct, *zmask, compat));
                }
            }
        }
        plan
    }

    fn claim(
        &self,
        node: &SNode,
        pi: usize,
        target: usize,
        ct: CapacityType,
        zmask: u64,
        compat: &Bitset,
    ) -> NewClaim {
        let pool = &self.pools[pi];
        let tt = &self.ptypes[target];
        let mut ceiling: Vec<usize> = pool.limits.iter().map(|(r, _)| *r).collect();
        if ct == CapacityType::OnDemand && pool.p.capacity_mix.is_some() {
            ceiling.push(CPU);
        }
        let pinned: Vec<(String, String)> = (0..self.keys.len())
            .filter(|k| self.keys[*k].1 == KeyKind::Label)
            .filter_map(|k| {
                node.kv[k].map(|v| (self.keys[k].0.clone(), self.val_name(k, v).to_string()))
            })
            .filter(|(k, v)| tt.labels.get(k) == Some(v))
            .collect();
        let mut opts: Vec<(f64, usize, u64)> = Vec::new();
        for t in compat.iter() {
            let pt = &self.ptypes[t];
            if node.used.iter().zip(&pt.alloc).any(|(u, a)| u > a) {
                continue;
            }
            if ceiling.iter().any(|r| pt.capacity[*r] > tt.capacity[*r]) {
                continue;
            }
            if pinned.iter().any(|(k, v)| pt.labels.get(k) != Some(v)) {
                continue;
            }
            let zm = pt.zm[ct_index(ct)] & zmask;
            if zm == 0 {
                continue;
            }
            let price = pt
                .offs
                .iter()
                .filter(|o| o.ct == ct && zm & (1 << o.zone) != 0)
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min);
            opts.push((price, t, zm));
        }
        if opts.is_empty() {
            // The target always fits what was packed; keep it as the only option.
            opts.push((
                tt.offs
                    .iter()
                    .filter(|o| o.ct == ct && zmask & (1 << o.zone) != 0)
                    .map(|o| o.price)
                    .fold(f64::INFINITY, f64::min),
                target,
                tt.zm[ct_index(ct)] & zmask,
            ));
        }
        opts.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| self.ptypes[a.1].it.name.cmp(&self.ptypes[b.1].it.name))
        });
        let max = self.opts.max_instance_types.max(1);
        if opts.len() > max {
            let mut keep = vec![false; opts.len()];
            for r in &pool.p.requirements {
                let Some(mv) = r.min_values else { continue };
                let mut seen: BTreeSet<&str> = BTreeSet::new();
                for (i, (_, t, _)) in opts.iter().enumerate() {
                    if seen.len() >= mv.max(0) as usize {
                        break;
                    }
                    if let Some(v) = self.ptypes[*t].labels.get(&r.key)
                        && seen.insert(v.as_str())
                    {
                        keep[i] = true;
                    }
                }
            }
            let mut count = keep.iter().filter(|k| **k).count();
            for k in keep.iter_mut() {
                if count >= max {
                    break;
                }
                if !*k {
                    *k = true;
                    count += 1;
                }
            }
            let mut i = 0;
            opts.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        let zones_mask = opts.iter().fold(0u64, |m, o| m | o.2);
        let zones: Vec<&str> = (0..self.zones.len())
            .filter(|z| zones_mask & (1 << z) != 0)
            .map(|z| self.zones[z].as_str())
            .collect();
        let names: Vec<String> = opts
            .iter()
            .map(|o| self.ptypes[o.1].it.name.clone())
            .collect();
        let it_min = pool
            .p
            .requirements
            .iter()
            .find(|r| r.key == labels::INSTANCE_TYPE)
            .and_then(|r| r.min_values);
        let mut reqs = vec![Requirement::in_(labels::NODEPOOL, [pool.p.name.as_str()])];
        let mut it_req = Requirement::in_(labels::INSTANCE_TYPE, names.iter().map(String::as_str));
        it_req.min_values = it_min;
        reqs.push(it_req);
        reqs.push(Requirement::in_(labels::ZONE, zones));
        reqs.push(Requirement::in_(labels::CAPACITY_TYPE, [ct.as_str()]));
        for r in &pool.p.requirements {
            if ![
                labels::NODEPOOL,
                labels::INSTANCE_TYPE,
                labels::ZONE,
                labels::CAPACITY_TYPE,
            ]
            .contains(&r.key.as_str())
            {
                reqs.push(r.clone());
            }
        }
        for (k, v) in pinned {
            if !reqs
                .iter()
                .any(|r| r.key == k && r.operator == Operator::In && r.values == [v.clone()])
            {
                reqs.push(Requirement::in_(&k, [v.as_str()]));
            }
        }
        let mut requests = node.used.clone();
        for (a, d) in requests.iter_mut().zip(&tt.daemon) {
            *a += d;
        }
        NewClaim {
            name: node.name.clone(),
            nodepool: pool.p.name.clone(),
            requirements: reqs,
            instance_type_options: names,
            pods: node
                .pods
                .iter()
                .map(|p| self.input.pods[*p].key())
                .collect(),
            requests: self.to_resources(&requests),
            cheapest_price: opts[0].0,
        }
    }
}

/// Per compatibility class of the pending pods: the summed requests (with the pod count) and the
/// (allocatable, cheapest usable price) of every instance type that could hold them. Used by the
/// lower bound.
pub(crate) fn bound_groups(input: &SolveInput) -> Vec<(Resources, Vec<(Resources, f64)>)> {
    let opts = SolveOptions::default();
    let e = Engine::new(input, &opts);
    let mut groups: BoundGroups = BTreeMap::new();
    for cls in &e.classes {
        let mut types: Vec<(usize, f64)> = Vec::new();
        for (pi, bits) in cls.loose.iter().enumerate() {
            let cts = cls.ctmask & e.pools[pi].ctmask;
            for t in bits.iter() {
                let price = e.ptypes[t]
                    .offs
                    .iter()
                    .filter(|o| cts & ct_bit(o.ct) != 0 && cls.zmask & (1 << o.zone) != 0)
                    .map(|o| o.price)
                    .fold(f64::INFINITY, f64::min);
                if price.is_finite() {
                    types.push((t, price));
                }
            }
        }
        let key: Vec<(usize, u64)> = types.iter().map(|(t, p)| (*t, p.to_bits())).collect();
        let entry = groups
            .entry(key)
            .or_insert_with(|| (vec![0; e.res.len()], types.clone()));
        for (d, r) in entry.0.iter_mut().zip(&cls.req) {
            *d += r * cls.members.len() as i64;
        }
    }
    groups
        .into_values()
        .map(|(demand, types)| {
            (
                e.to_resources(&demand),
                types
                    .into_iter()
                    .map(|(t, p)| (e.to_resources(&e.ptypes[t].alloc), p))
                    .collect(),
            )
        })
        .collect()
}
