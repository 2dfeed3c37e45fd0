//! Step 2, pools and their budgets: each NodePool (weight order, then name) with the instance
//! types it may launch ([`PoolType`]: labels, allocatable after the daemonsets that would land
//! there, available offerings as zone masks per capacity type) and its [`PoolBudget`]: what the
//! pool's limits and on-demand cap still allow. Reserved offerings share [`Reservation`] counts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use stowage_api::quantity::format_resource;
use stowage_api::requirements::{Operator, Requirements};
use stowage_api::{CapacityType, labels};

use super::interning::{Ids, capacity_type_bit, capacity_type_index};
use super::reasons::PoolRejection;
use super::{CPU, DEFAULT_MAX_PODS, PODS};
use crate::domain::{
    OnDemandCap, PoolSpec, SolveInput, TaintEffect, compile_requirements, untolerated,
};
use crate::model::{InstanceType, resource};

/// One available offering of a pool's instance type (the pool's zone and capacity-type
/// requirements applied).
#[derive(Debug)]
pub(super) struct TypeOffering {
    pub(super) zone: usize,
    pub(super) capacity_type: CapacityType,
    pub(super) price: f64,
    /// Index into [`Catalog::reservations`] for reserved offerings.
    pub(super) reservation: Option<usize>,
}

/// The labels of a pool's node of one instance type: the pool's (shared by all its types) over
/// the instance type name over the type's own. Nothing is copied per (pool, type): with hundreds
/// of pools over a 1,400-type catalogue, copies cost gigabytes.
#[derive(Debug, Clone)]
pub(super) struct TypeLabels<'a> {
    pool: Arc<BTreeMap<String, String>>,
    instance_type: &'a InstanceType,
}

impl<'a> TypeLabels<'a> {
    fn new(pool: Arc<BTreeMap<String, String>>, instance_type: &'a InstanceType) -> Self {
        Self {
            pool,
            instance_type,
        }
    }

    /// The value of `key`, if the node would have that label.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.pool.get(key) {
            return Some(v);
        }
        if key == labels::INSTANCE_TYPE {
            return Some(&self.instance_type.name);
        }
        self.instance_type.labels.get(key).map(String::as_str)
    }
}

/// An instance type as one pool would launch it.
#[derive(Debug)]
pub(super) struct PoolType<'a> {
    pub(super) instance_type: &'a InstanceType,
    /// The type's labels plus the pool's (template labels, single-valued requirements, pool name).
    pub(super) labels: TypeLabels<'a>,
    /// Allocatable minus the daemonset overhead of this pool on this type.
    pub(super) allocatable: Vec<i64>,
    pub(super) daemon_overhead: Vec<i64>,
    pub(super) capacity: Vec<i64>,
    pub(super) offerings: Vec<TypeOffering>,
    /// Zone masks of available offerings per capacity type index (reserved, spot, on-demand).
    zones_by_capacity_type: [u64; 3],
    /// The cheapest offering per capacity type index in any zone (infinite if none): what
    /// [`PoolType::cheapest_any`] answers for a zone mask that covers every zone offered.
    cheapest_by_capacity_type: [f64; 3],
    /// Accelerator or specialty hardware ([`InstanceType::is_exotic`]): kept for pods that ask.
    pub(super) exotic: bool,
    /// A GPU slice ([`InstanceType::is_fractional_gpu`]): kept even from GPU pods unless named.
    pub(super) fractional: bool,
    /// Previous generation ([`InstanceType::is_previous_generation`]): kept when named, or when
    /// nothing current fits.
    pub(super) previous_generation: bool,
    /// The pool's requirements ask for this exotic type ([`names_exotic`]).
    pub(super) exotic_named: bool,
    /// The pool's requirements ask for this previous-generation type
    /// ([`names_previous_generation`]).
    pub(super) previous_named: bool,
}

impl PoolType<'_> {
    pub(super) fn name(&self) -> &str {
        &self.instance_type.name
    }

    /// Zones with an available offering of capacity type `ct`.
    pub(super) fn zones(&self, ct: CapacityType) -> u64 {
        self.zones_by_capacity_type[capacity_type_index(ct)]
    }

    /// Zones with an available offering of any capacity type in the mask.
    pub(super) fn zones_any(&self, capacity_types: u8) -> u64 {
        CapacityType::ALL
            .iter()
            .filter(|ct| capacity_types & capacity_type_bit(**ct) != 0)
            .fold(0, |m, ct| m | self.zones(*ct))
    }

    /// The cheapest offering of capacity type `ct` in the zones of `zone_mask` (infinite if none).
    pub(super) fn cheapest(&self, ct: CapacityType, zone_mask: u64) -> f64 {
        self.cheapest_any(capacity_type_bit(ct), zone_mask)
    }

    /// The cheapest offering of any capacity type in the mask in the zones of `zone_mask`.
    pub(super) fn cheapest_any(&self, capacity_types: u8, zone_mask: u64) -> f64 {
        let offered = self.zones_any(capacity_types);
        if offered & !zone_mask == 0 {
            // Every offering of these capacity types is in the mask.
            return CapacityType::ALL
                .iter()
                .filter(|ct| capacity_types & capacity_type_bit(**ct) != 0)
                .map(|ct| self.cheapest_by_capacity_type[capacity_type_index(*ct)])
                .fold(f64::INFINITY, f64::min);
        }
        self.offerings
            .iter()
            .filter(|o| {
                capacity_types & capacity_type_bit(o.capacity_type) != 0
                    && zone_mask & (1 << o.zone) != 0
            })
            .map(|o| o.price)
            .fold(f64::INFINITY, f64::min)
    }
}

/// A capacity reservation: how many instances it can launch, how many this solve used.
#[derive(Debug)]
pub(super) struct Reservation {
    pub(super) capacity: u32,
    pub(super) used: u32,
}

/// A resource limit of a pool.
#[derive(Debug)]
struct ResourceLimit {
    resource: usize,
    /// As written (for messages).
    limit: i64,
    remaining: i64,
}

/// Why a pool cannot take one more node.
#[derive(Debug, Clone, Copy)]
pub(super) enum OverBudget {
    Nodes,
    /// Index into the budget's resource limits.
    Resource(usize),
    OnDemandCap,
    /// Index into the budget's scoped caps.
    ScopedOnDemandCap(usize),
}

/// A scoped on-demand cap during the solve: what the scope's pools hold, and what the solve has
/// added in any of them (on-demand claims as their target type, spot and reserved claims by
/// what their pods request, see [`PoolBudget::count_placed`]). Shared (one `Rc`) by the budgets
/// of every pool of the scope, so on-demand bought in one pool and spot bought in another are
/// counted together.
#[derive(Debug)]
pub(super) struct ScopeBudget {
    /// The pool carrying the mix (for messages).
    owner: String,
    cap: OnDemandCap,
    on_demand_cpu: i64,
    /// Spot and reserved.
    other_cpu: i64,
}

impl ScopeBudget {
    fn allows(&self, add_on_demand: i64) -> bool {
        self.cap
            .excess(self.on_demand_cpu + add_on_demand, self.other_cpu)
            <= 0
    }
}

/// What a pool may still buy: its `limits` (resources and node count) and the on-demand cap of
/// its `capacityMix`, minus what it holds and what this solve has opened.
#[derive(Debug)]
pub(super) struct PoolBudget {
    limits: Vec<ResourceLimit>,
    /// (limit, remaining) of the `nodes` limit.
    nodes: Option<(i64, i64)>,
    on_demand_cap: Option<OnDemandCap>,
    on_demand_cpu: i64,
    total_cpu: i64,
    /// The scoped caps whose scope holds the pool (see [`ScopeBudget`]).
    scopes: Vec<Rc<RefCell<ScopeBudget>>>,
}

impl PoolBudget {
    fn new(pool: &PoolSpec, ids: &Ids, scopes: Vec<Rc<RefCell<ScopeBudget>>>) -> Self {
        let mut limits = Vec::new();
        let mut nodes = None;
        for (k, v) in &pool.limits.0 {
            let used = pool.usage.resources.get(k);
            if k == "nodes" {
                nodes = Some((*v, v - used));
            } else if let Some(resource) = ids.known_resource(k) {
                limits.push(ResourceLimit {
                    resource,
                    limit: *v,
                    remaining: v - used,
                });
            }
        }
        PoolBudget {
            limits,
            nodes,
            // A scoped mix lives in its scope's budget, not the pool's.
            on_demand_cap: pool.capacity_mix.clone().filter(|m| m.scope.is_none()),
            on_demand_cpu: pool.usage.on_demand_cpu_millis,
            total_cpu: pool.usage.total_cpu_millis,
            scopes,
        }
    }

    /// Whether the node count limit is used up (no type can be bought).
    pub(super) fn out_of_nodes(&self) -> bool {
        self.nodes.is_some_and(|(_, left)| left <= 0)
    }

    /// Whether one more node with this capacity and capacity type stays within the budget.
    pub(super) fn allows(&self, capacity: &[i64], ct: CapacityType) -> bool {
        self.why_not(capacity, ct).is_none()
    }

    /// What one more node with this capacity and capacity type would exceed, if anything.
    pub(super) fn why_not(&self, capacity: &[i64], ct: CapacityType) -> Option<OverBudget> {
        if self.out_of_nodes() {
            return Some(OverBudget::Nodes);
        }
        if let Some(i) = self
            .limits
            .iter()
            .position(|l| capacity[l.resource] > l.remaining)
        {
            return Some(OverBudget::Resource(i));
        }
        if ct == CapacityType::OnDemand
            && let Some(cap) = &self.on_demand_cap
            && !cap.allows(self.on_demand_cpu, self.total_cpu, capacity[CPU])
        {
            return Some(OverBudget::OnDemandCap);
        }
        if ct == CapacityType::OnDemand
            && let Some(i) = self
                .scopes
                .iter()
                .position(|s| !s.borrow().allows(capacity[CPU]))
        {
            return Some(OverBudget::ScopedOnDemandCap(i));
        }
        None
    }

    /// Books one node (a claim opened).
    pub(super) fn charge(&mut self, capacity: &[i64], ct: CapacityType) {
        self.apply(capacity, ct, 1);
    }

    /// Returns what [`PoolBudget::charge`] booked (a claim discarded).
    pub(super) fn refund(&mut self, capacity: &[i64], ct: CapacityType) {
        self.apply(capacity, ct, -1);
    }

    fn apply(&mut self, capacity: &[i64], ct: CapacityType, sign: i64) {
        if let Some((_, left)) = &mut self.nodes {
            *left -= sign;
        }
        for l in &mut self.limits {
            l.remaining -= sign * capacity[l.resource];
        }
        self.total_cpu += sign * capacity[CPU];
        if ct == CapacityType::OnDemand {
            self.on_demand_cpu += sign * capacity[CPU];
        }
        if ct == CapacityType::OnDemand {
            for scope in &self.scopes {
                scope.borrow_mut().on_demand_cpu += sign * capacity[CPU];
            }
        }
    }

    /// The largest share of one of the pool's limits (a resource, or the node count) one node
    /// with this capacity takes: what a type costs of the limit when the limit binds (0 for a
    /// pool without limits). Shares of the limits as written, so choices do not drift as the
    /// pool fills.
    pub(super) fn limit_share(&self, capacity: &[i64]) -> f64 {
        let nodes = self.nodes.map_or(0.0, |(l, _)| 1.0 / l.max(1) as f64);
        self.limits
            .iter()
            .map(|l| capacity[l.resource] as f64 / l.limit.max(1) as f64)
            .fold(nodes, f64::max)
    }

    /// Whether `demand` (requests) could fit the resource limits if the pool's new claims, which
    /// were charged `charged` in all, were bought again: never when it exceeds what the limits
    /// left before them. (A node-count limit cannot be told from requests: true.)
    pub(super) fn could_hold(&self, demand: &[i64], charged: &[i64]) -> bool {
        self.limits
            .iter()
            .all(|l| demand[l.resource] <= l.remaining + charged[l.resource])
    }

    /// Whether the pool has no limit and no on-demand cap (what it buys changes no other choice).
    pub(super) fn unlimited(&self) -> bool {
        self.limits.is_empty() && self.nodes.is_none() && self.on_demand_cap.is_none()
    }

    /// [`PoolBudget::unlimited`] for claims of capacity type `ct`: a scoped cap charges on-demand
    /// claims as their type (spot claims only by what their pods request, whatever the type).
    pub(super) fn unlimited_for(&self, ct: CapacityType) -> bool {
        self.unlimited() && (ct != CapacityType::OnDemand || self.scopes.is_empty())
    }

    /// Pods requesting `cpu` millicores placed on a new spot or reserved claim of the pool: its
    /// scopes count them as spot. (The claim may launch as any of its options, each holding at
    /// least what its pods request; its target type is no lower bound.)
    pub(super) fn count_placed(&self, cpu: i64) {
        for scope in &self.scopes {
            scope.borrow_mut().other_cpu += cpu;
        }
    }

    /// Whether an on-demand cap (its own or a scope's) covers the pool.
    fn caps_on_demand(&self) -> bool {
        self.on_demand_cap.is_some() || !self.scopes.is_empty()
    }

    /// The resources a claim of capacity type `ct` may not grow on past the type it was charged
    /// for (limited resources, and CPU under an on-demand cap).
    pub(super) fn ceiling(&self, ct: CapacityType) -> Vec<usize> {
        let mut out: Vec<usize> = self.limits.iter().map(|l| l.resource).collect();
        if ct == CapacityType::OnDemand && self.caps_on_demand() {
            out.push(CPU);
        }
        out
    }

    /// The unschedulable reason for a budget block.
    pub(super) fn rejection(&self, why: OverBudget, ids: &Ids) -> PoolRejection {
        match why {
            OverBudget::Nodes => {
                let limit = self.nodes.map_or(0, |(l, _)| l);
                PoolRejection::Limit(format!("nodes {limit}"))
            }
            OverBudget::Resource(i) => {
                let l = &self.limits[i];
                let name = ids.resource_name(l.resource);
                PoolRejection::Limit(format!("{name} {}", format_resource(name, l.limit)))
            }
            OverBudget::OnDemandCap => PoolRejection::OnDemandCap(
                self.on_demand_cap
                    .as_ref()
                    .map_or(100, |m| m.on_demand_percent_above_base),
            ),
            OverBudget::ScopedOnDemandCap(i) => {
                let scope = self.scopes[i].borrow();
                PoolRejection::ScopedOnDemandCap(
                    scope.owner.clone(),
                    scope.cap.on_demand_percent_above_base,
                )
            }
        }
    }
}

/// A NodePool during the solve.
#[derive(Debug)]
pub(super) struct PoolState<'a> {
    pub(super) pool: &'a PoolSpec,
    /// Indices into [`Catalog::types`].
    pub(super) types: Vec<usize>,
    /// Zones and capacity types the pool's requirements allow.
    pub(super) zone_mask: u64,
    pub(super) capacity_types: u8,
    pub(super) budget: PoolBudget,
    /// Claims opened so far (for names).
    pub(super) claims: usize,
}

/// The pools and every (pool, instance type) they may launch.
#[derive(Debug)]
pub(super) struct Catalog<'a> {
    /// Built once per [`SharedCatalog`]; no solve changes them.
    pub(super) types: Arc<Vec<PoolType<'a>>>,
    pub(super) pools: Vec<PoolState<'a>>,
    pub(super) reservations: Vec<Reservation>,
    /// Per capacity type index: every type index by its cheapest offering of that capacity
    /// type in any zone (a lower bound on its price in any zones), then by index; what lets a
    /// search for the cheapest type stop early ([`Catalog::by_price`]).
    by_price: Arc<[Vec<usize>; 3]>,
}

/// What a [`Catalog`] is made of that no solve changes, built once: the (pool, type) list,
/// the price orders, each pool's types, zones and capacity types, the reservations'
/// capacities. [`SharedCatalog::catalog`] makes a solve's catalogue of it with fresh budgets
/// (limits, on-demand caps, scoped caps as the input states them), no claim opened and no
/// reservation used: the catalogue [`Catalog::build`] makes, without rebuilding the types.
/// Shared by a consolidation round's probes (one per round instead of one per probe).
#[derive(Debug)]
pub(crate) struct SharedCatalog<'a> {
    types: Arc<Vec<PoolType<'a>>>,
    by_price: Arc<[Vec<usize>; 3]>,
    /// In catalogue order (weight, then name).
    pools: Vec<SharedPool<'a>>,
    /// The capacity of each reservation.
    reservations: Vec<u32>,
}

#[derive(Debug)]
struct SharedPool<'a> {
    pool: &'a PoolSpec,
    types: Vec<usize>,
    zone_mask: u64,
    capacity_types: u8,
}

impl<'a> SharedCatalog<'a> {
    /// The catalogue of `input`'s pools, instance types and daemonsets over `base`'s ids: what
    /// every probe on `base` would build (their inputs have the same pools, types and
    /// daemonsets).
    pub(crate) fn for_base(input: &'a SolveInput, base: &super::Base) -> Self {
        Self::new(input, &base.ids)
    }

    /// The catalogue of `input`'s pools, instance types and daemonsets, over `ids`' resources
    /// and zones.
    fn new(input: &'a SolveInput, ids: &Ids) -> Self {
        let built = Catalog::build_types(input, ids);
        SharedCatalog {
            types: Arc::new(built.types),
            by_price: Arc::new(built.by_price),
            pools: built
                .pools
                .into_iter()
                .map(|p| SharedPool {
                    pool: p.pool,
                    types: p.types,
                    zone_mask: p.zone_mask,
                    capacity_types: p.capacity_types,
                })
                .collect(),
            reservations: built.reservations.iter().map(|r| r.capacity).collect(),
        }
    }

    /// A solve's catalogue: the shared types with fresh budgets and counts (`ids`: those the
    /// catalogue was built over, as the solve's own ids start).
    pub(super) fn catalog(&self, ids: &Ids) -> Catalog<'a> {
        let sorted: Vec<&PoolSpec> = self.pools.iter().map(|p| p.pool).collect();
        let scopes = scope_budgets(&sorted);
        Catalog {
            types: Arc::clone(&self.types),
            pools: self
                .pools
                .iter()
                .map(|p| PoolState {
                    pool: p.pool,
                    types: p.types.clone(),
                    zone_mask: p.zone_mask,
                    capacity_types: p.capacity_types,
                    budget: PoolBudget::new(p.pool, ids, covering(&scopes, p.pool)),
                    claims: 0,
                })
                .collect(),
            reservations: self
                .reservations
                .iter()
                .map(|&capacity| Reservation { capacity, used: 0 })
                .collect(),
            by_price: Arc::clone(&self.by_price),
        }
    }
}

/// The scoped budgets of `scopes` that cover pool `p`.
fn covering(
    scopes: &[(Vec<String>, Rc<RefCell<ScopeBudget>>)],
    p: &PoolSpec,
) -> Vec<Rc<RefCell<ScopeBudget>>> {
    scopes
        .iter()
        .filter(|(names, _)| names.contains(&p.name))
        .map(|(_, s)| s.clone())
        .collect()
}

/// A catalogue's parts as [`Catalog::build_types`] makes them.
struct Built<'a> {
    types: Vec<PoolType<'a>>,
    by_price: [Vec<usize>; 3],
    pools: Vec<PoolState<'a>>,
    reservations: Vec<Reservation>,
}

/// A daemonset's pod compiled once: its alternative node requirements and requests.
struct Daemon<'a> {
    pod: &'a crate::domain::PodRequest,
    terms: Vec<Requirements>,
    requests: Vec<i64>,
}

impl<'a> Built<'a> {
    fn add_pool(
        &mut self,
        p: &'a PoolSpec,
        input: &'a SolveInput,
        ids: &Ids,
        daemons: &[Daemon],
        scopes: Vec<Rc<RefCell<ScopeBudget>>>,
    ) {
        let reqs = compile_requirements(&p.requirements);
        let mut zone_mask = 0u64;
        for (zi, z) in ids.zones().iter().enumerate() {
            if reqs.get(labels::ZONE).is_none_or(|s| s.has(z)) {
                zone_mask |= 1 << zi;
            }
        }
        zone_mask &= ids.all_zones();
        let mut capacity_types = 0u8;
        for ct in CapacityType::ALL {
            if reqs
                .get(labels::CAPACITY_TYPE)
                .is_none_or(|s| s.has(ct.as_str()))
            {
                capacity_types |= capacity_type_bit(ct);
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
        let base_labels = Arc::new(base_labels);
        let catalogue: &[InstanceType] =
            p.instance_types.as_deref().unwrap_or(&input.instance_types);
        let mut types = Vec::new();
        for it in catalogue {
            let type_labels = TypeLabels::new(base_labels.clone(), it);
            if !holds_on_new_node(&reqs, &type_labels) {
                continue;
            }
            let offerings = self.offerings(it, ids, zone_mask, capacity_types);
            let mut ty = pool_type(it, type_labels, offerings, p, ids, daemons);
            ty.exotic_named = ty.exotic && asks_for_exotic(&reqs, &ty);
            ty.previous_named =
                ty.previous_generation && names_previous_generation(&reqs, &ty.labels);
            self.types.push(ty);
            types.push(self.types.len() - 1);
        }
        self.pools.push(PoolState {
            pool: p,
            types,
            zone_mask,
            capacity_types,
            budget: PoolBudget::new(p, ids, scopes),
            claims: 0,
        });
    }

    /// The available offerings of `it` in the pool's zones and capacity types.
    fn offerings(
        &mut self,
        it: &InstanceType,
        ids: &Ids,
        zone_mask: u64,
        capacity_types: u8,
    ) -> Vec<TypeOffering> {
        let mut out = Vec::new();
        for o in &it.offerings {
            let Some(z) = ids.zone_id(&o.zone) else {
                continue;
            };
            if !o.available
                || zone_mask & (1 << z) == 0
                || capacity_types & capacity_type_bit(o.capacity_type) == 0
            {
                continue;
            }
            let reservation = (o.capacity_type == CapacityType::Reserved).then(|| {
                self.reservations.push(Reservation {
                    capacity: o.reservation_capacity.unwrap_or(0),
                    used: 0,
                });
                self.reservations.len() - 1
            });
            out.push(TypeOffering {
                zone: z,
                capacity_type: o.capacity_type,
                price: o.ranking_price(),
                reservation,
            });
        }
        out
    }
}

impl<'a> Catalog<'a> {
    pub(super) fn build(input: &'a SolveInput, ids: &Ids) -> Self {
        SharedCatalog::new(input, ids).catalog(ids)
    }

    /// The types, pools (with budgets) and reservations of `input` over `ids`.
    fn build_types(input: &'a SolveInput, ids: &Ids) -> Built<'a> {
        let daemons: Vec<Daemon> = input
            .daemonsets
            .iter()
            .map(|d| {
                // A term pinning node names never holds on a node to buy (its name is not
                // known, and cannot be chosen).
                let terms = if d.pod.required_node_affinity.is_empty() {
                    vec![compile_requirements(&d.pod.node_requirements(None))]
                } else {
                    (0..d.pod.required_node_affinity.len())
                        .filter(|i| d.pod.required_node_affinity[*i].admits_unnamed_node())
                        .map(|i| compile_requirements(&d.pod.node_requirements(Some(i))))
                        .collect()
                };
                Daemon {
                    pod: &d.pod,
                    terms,
                    requests: ids.quantities(&d.pod.requests),
                }
            })
            .collect();
        let mut catalog = Built {
            types: Vec::new(),
            pools: Vec::new(),
            reservations: Vec::new(),
            by_price: Default::default(),
        };
        let mut pools: Vec<&PoolSpec> = input.nodepools.iter().collect();
        pools.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
        let scopes = scope_budgets(&pools);
        for p in pools {
            catalog.add_pool(p, input, ids, &daemons, covering(&scopes, p));
        }
        for (ct, order) in catalog.by_price.iter_mut().enumerate() {
            let types = &catalog.types;
            *order = (0..types.len()).collect();
            order.sort_by(|a, b| {
                let (pa, pb) = (
                    types[*a].cheapest_by_capacity_type[ct],
                    types[*b].cheapest_by_capacity_type[ct],
                );
                pa.total_cmp(&pb).then(a.cmp(b))
            });
        }
        catalog
    }

    /// Every type index with its lowest price as capacity type `ct` in any zone, cheapest
    /// first (then by index): a type's price in any zones is at least that, so a search for
    /// the cheapest type that finds one at price `p` can stop at the first bound above `p`.
    pub(super) fn by_price(&self, ct: CapacityType) -> impl Iterator<Item = (usize, f64)> + '_ {
        let ci = capacity_type_index(ct);
        self.by_price[ci]
            .iter()
            .map(move |&t| (t, self.types[t].cheapest_by_capacity_type[ci]))
    }

    pub(super) fn any_prefer_taint(&self) -> bool {
        self.pools.iter().any(|p| {
            p.pool
                .taints
                .iter()
                .any(|t| t.effect == TaintEffect::PreferNoSchedule)
        })
    }
}

/// The scoped caps of `pools` (in their order), each with the names of the pools it covers.
fn scope_budgets(pools: &[&PoolSpec]) -> Vec<(Vec<String>, Rc<RefCell<ScopeBudget>>)> {
    pools
        .iter()
        .filter_map(|p| {
            let cap = p.capacity_mix.as_ref()?;
            let scope = cap.scope.as_ref()?;
            let mut names = scope.pools.clone();
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
            let budget = ScopeBudget {
                owner: p.name.clone(),
                cap: cap.clone(),
                on_demand_cpu: scope.on_demand_cpu_millis,
                other_cpu: scope.other_cpu_millis,
            };
            Some((names, Rc::new(RefCell::new(budget))))
        })
        .collect()
}

/// One pool's view of an instance type: quantities, daemonset overhead, offering zone masks.
fn pool_type<'a>(
    it: &'a InstanceType,
    labels: TypeLabels<'a>,
    offerings: Vec<TypeOffering>,
    pool: &PoolSpec,
    ids: &Ids,
    daemons: &[Daemon],
) -> PoolType<'a> {
    let mut zones_by_capacity_type = [0u64; 3];
    let mut cheapest_by_capacity_type = [f64::INFINITY; 3];
    for o in &offerings {
        let ct = capacity_type_index(o.capacity_type);
        zones_by_capacity_type[ct] |= 1 << o.zone;
        cheapest_by_capacity_type[ct] = cheapest_by_capacity_type[ct].min(o.price);
    }
    let mut capacity = ids.quantities(&it.capacity);
    let mut allocatable = ids.quantities(&it.allocatable());
    if it.capacity.get(resource::PODS) == 0 {
        capacity[PODS] = DEFAULT_MAX_PODS;
        allocatable[PODS] = DEFAULT_MAX_PODS;
    }
    // Daemonsets that would land on this pool's nodes of this type.
    let mut daemon_overhead = vec![0; ids.resource_count()];
    for d in daemons {
        if untolerated(&pool.taints, &d.pod.tolerations, false).is_some()
            || !d.terms.iter().any(|t| holds_on_new_node(t, &labels))
        {
            continue;
        }
        for (a, b) in daemon_overhead.iter_mut().zip(&d.requests) {
            *a += b;
        }
        daemon_overhead[PODS] += 1;
    }
    for (a, d) in allocatable.iter_mut().zip(&daemon_overhead) {
        *a -= d;
    }
    PoolType {
        instance_type: it,
        labels,
        allocatable,
        daemon_overhead,
        capacity,
        offerings,
        zones_by_capacity_type,
        cheapest_by_capacity_type,
        exotic: it.is_exotic(),
        fractional: it.is_fractional_gpu(),
        previous_generation: it.is_previous_generation(),
        exotic_named: false,
        previous_named: false,
    }
}

/// Whether `reqs` list the type's value under `key` in an `In` requirement.
fn lists(reqs: &Requirements, key: &str, type_labels: &TypeLabels<'_>) -> bool {
    match (reqs.get(key), type_labels.get(key)) {
        (Some(set), Some(value)) => set.is_finite() && !set.allows_absent() && set.has(value),
        _ => false,
    }
}

/// Whether `reqs` (a pool's or a pod's) name this exotic type: an `In` on its instance type,
/// family or category that lists it, or a requirement on an accelerator or specialty label
/// ([`labels::EXOTIC_LABELS`]: `instance-gpu-count Exists`, `instance-gpu-name In [l4]`, ...) that
/// it satisfies and that needs the label present.
fn names_exotic(reqs: &Requirements, type_labels: &TypeLabels<'_>) -> bool {
    [
        labels::INSTANCE_TYPE,
        labels::INSTANCE_FAMILY,
        labels::INSTANCE_CATEGORY,
    ]
    .iter()
    .any(|key| lists(reqs, key, type_labels))
        || labels::EXOTIC_LABELS.iter().any(|key| {
            reqs.get(key).is_some_and(|set| {
                !set.allows_absent() && type_labels.get(key).is_some_and(|v| set.has(v))
            })
        })
}

/// Whether `reqs` ask for this exotic type: [`names_exotic`], except that a GPU slice needs its
/// instance type or family listed, or a requirement on `instance-gpu-partition-size` (a GPU pool
/// selecting `instance-gpu-count Exists` means whole GPUs).
pub(super) fn asks_for_exotic(reqs: &Requirements, ty: &PoolType<'_>) -> bool {
    if ty.fractional {
        lists(reqs, labels::INSTANCE_TYPE, &ty.labels)
            || lists(reqs, labels::INSTANCE_FAMILY, &ty.labels)
            || reqs
                .get(labels::INSTANCE_GPU_PARTITION_SIZE)
                .is_some_and(|set| {
                    !set.allows_absent()
                        && ty
                            .labels
                            .get(labels::INSTANCE_GPU_PARTITION_SIZE)
                            .is_some_and(|v| set.has(v))
                })
    } else {
        names_exotic(reqs, &ty.labels)
    }
}

/// Whether `reqs` ask for this previous-generation type: an `In` on its instance type, family or
/// generation that lists it, or a requirement on `instance-current-generation` that `"false"`
/// satisfies.
pub(super) fn names_previous_generation(reqs: &Requirements, type_labels: &TypeLabels<'_>) -> bool {
    [
        labels::INSTANCE_TYPE,
        labels::INSTANCE_FAMILY,
        labels::INSTANCE_GENERATION,
    ]
    .iter()
    .any(|key| lists(reqs, key, type_labels))
        || reqs
            .get(labels::INSTANCE_CURRENT_GENERATION)
            .is_some_and(|set| set.has("false"))
}

/// Whether compiled requirements can hold for a new node whose labels are `labels`: its
/// hostname is not known yet (only `NotIn`/`Exists` can hold), and zone and capacity type are
/// checked through offerings instead.
pub(super) fn holds_on_new_node(reqs: &Requirements, labels: &TypeLabels<'_>) -> bool {
    first_mismatch_on_new_node(reqs, labels).is_none()
}

/// The first key (in key order) of [`holds_on_new_node`] that fails.
pub(super) fn first_mismatch_on_new_node<'r>(
    reqs: &'r Requirements,
    labels: &TypeLabels<'_>,
) -> Option<&'r str> {
    reqs.iter()
        .find(|(key, set)| match *key {
            labels::HOSTNAME => !matches!(set.operator(), Operator::NotIn | Operator::Exists),
            labels::ZONE | labels::CAPACITY_TYPE => false,
            _ => !set.matches(labels.get(key)),
        })
        .map(|(key, _)| key)
}
