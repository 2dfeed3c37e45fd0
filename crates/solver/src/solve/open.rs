//! Step 6, opening a new claim when no node has room for a class: the first pool (weight
//! order) with a compatible type, capacity types tried reserved > spot > on-demand, and the
//! instance type chosen by [`TypeChoice`] among the [`Candidate`]s, sized by what the claim must
//! hold ([`Engine::must_hold`]). The pool's budget only filters: the choice is the one an
//! unlimited pool would make whenever the budget allows it, except in a pool whose limit binds
//! (`Engine::thrifty`, set when a first solve left pods out at the limit), where
//! [`TypeChoice::Thrifty`] spends the limit well. The claim is charged to the pool's
//! [`super::pools::PoolBudget`] at once; [`Engine::discard`] refunds it when nothing could go
//! there after all, and [`Engine::settle`] shrinks the pool's claims to what they hold when the
//! budget is what stops a purchase.

use std::cmp::Ordering;
use std::sync::Arc;

use stowage_api::CapacityType;

use super::interning::{KeyKind, capacity_type_bit, capacity_type_index};
use super::place::{NodeOrigin, OpenedClaim, SimNode};
use super::pools::OverBudget;
use super::reasons::PoolRejection;
use super::topology::DomainRule;
use super::{Engine, cmp_price, cmp_ratio};
use crate::bitset::Bitset;

/// A type choice remembered per (class, pool, capacity type, zones, domains): the choice with
/// no budget and more pods to place than any candidate holds (reserved capacity is not cached).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct OpenCacheKey {
    class: usize,
    pool: usize,
    capacity_type: CapacityType,
    zone_mask: u64,
    combo: Vec<u32>,
}

/// The cached choice: valid while the class has at least `max_pods` pods to place and the
/// budget allows the type.
#[derive(Debug, Clone, Copy)]
pub(super) struct CachedChoice {
    /// Index into the catalog's types.
    type_index: usize,
    /// The most pods any candidate held.
    max_pods: usize,
}

/// An instance type a new claim could be bought as.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    type_index: usize,
    name: &'a str,
    /// Pods of the class an empty node of the type holds (see [`TypeChoice`]).
    pods: usize,
    /// For bundles: the share of the bundle's remaining demand the type holds (0..1).
    share: f64,
    price: f64,
    /// Zones to launch in.
    zone_mask: u64,
    /// The capacity reservation it would use.
    reservation: Option<usize>,
    /// Whether the pool's budget allows one more node of the type.
    allowed: bool,
    /// The share of the pool's limits one node of the type takes
    /// ([`super::pools::PoolBudget::limit_share`]; [`TypeChoice::Thrifty`] only).
    spend: f64,
}

/// How to choose among candidates; every mode ends with cheaper, then name. `pods` is what an
/// empty node takes of what the class must still place ([`Engine::must_hold`]), except for
/// [`TypeChoice::Share`], where it is the room by resources alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeChoice {
    /// Reserved capacity: the lowest price per pod.
    Strict,
    /// Classes capped per node: the cheapest type with room for three such pods, so pods of
    /// other classes can share the node. (Measured: 3 beats 2, 4 and the tightest.)
    Share,
    /// Among the types within 5 % of the best price per pod, the largest, so later pods fill
    /// the claim (the final options shrink it to what it holds). Pods are counted up to what
    /// the class must still place, so the tail of a class is bought by what it must hold.
    Roomy,
    /// A bundle's node: the lowest price per share of the bundle's remaining demand it holds
    /// (a share counts at most 1: a node that holds it all is worth its price, so the last node
    /// is the cheapest that holds the rest, unless part of the rest is cheaper per share
    /// elsewhere), then the larger share.
    BundleShare,
    /// A pool whose limit binds: among the types within the engine's `thrift_slack` of the
    /// least share of the limit per pod (per share of a bundle's demand), the lowest price per
    /// pod (per share), then more pods. Pods are counted up to what the class must still
    /// place, as for [`TypeChoice::Roomy`], so DaemonSet overhead, unused room and the tail's
    /// slack waste as little of the limit as the types allow.
    Thrifty,
}

/// Room for this many pods of a capped class makes a type good for [`TypeChoice::Share`].
const SHARE_PODS: usize = 3;
/// [`TypeChoice::Roomy`] considers types up to this factor above the best price per pod.
const ROOMY_SLACK: f64 = 1.05;

impl TypeChoice {
    /// `Less` when `a` is the better choice.
    fn cmp(self, a: &Candidate, b: &Candidate) -> Ordering {
        let per_pod = |c: &Candidate| c.price / c.pods as f64;
        let first = match self {
            TypeChoice::Strict => cmp_ratio(per_pod(a), per_pod(b)).then(b.pods.cmp(&a.pods)),
            TypeChoice::Share => (b.pods >= SHARE_PODS).cmp(&(a.pods >= SHARE_PODS)),
            TypeChoice::Roomy => b.pods.cmp(&a.pods),
            TypeChoice::Thrifty => cmp_ratio(per_pod(a), per_pod(b)).then(b.pods.cmp(&a.pods)),
            TypeChoice::BundleShare => {
                let per_share = |c: &Candidate| c.price / c.share.min(1.0);
                cmp_ratio(per_share(a), per_share(b)).then_with(|| {
                    if (a.share - b.share).abs() > 1e-12 {
                        b.share.total_cmp(&a.share)
                    } else {
                        Ordering::Equal
                    }
                })
            }
        };
        first
            .then_with(|| cmp_price(a.price, b.price))
            .then_with(|| a.name.cmp(b.name))
    }

    /// The best candidate (the first of equals).
    fn best<'a>(self, candidates: &[Candidate<'a>], thrift_slack: f64) -> Option<Candidate<'a>> {
        let within_slack = |key: &dyn Fn(&Candidate) -> f64, slack: f64| {
            let min = candidates.iter().map(key).fold(f64::INFINITY, f64::min);
            candidates
                .iter()
                .filter(|c| key(c) <= min * slack)
                .collect()
        };
        let pool: Vec<&Candidate> = match self {
            TypeChoice::Roomy => within_slack(&|c| c.price / c.pods as f64, ROOMY_SLACK),
            TypeChoice::Thrifty => within_slack(&|c| c.spend / c.pods as f64, thrift_slack),
            _ => candidates.iter().collect(),
        };
        pool.into_iter().min_by(|a, b| self.cmp(a, b)).copied()
    }
}

/// What [`Engine::bundle_offers`] depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BundleOffersKey {
    pool: usize,
    capacity_type: usize,
    types: Bitset,
    zone_mask: u64,
    labels: Vec<(usize, u32)>,
}

/// The types a bundle's node may be in one pool as one capacity type (see
/// [`Engine::bundle_offers`]): per type, its cheapest price and zones under the pins, and its
/// allocatable (one resource vector after another).
#[derive(Debug, Default)]
pub(super) struct BundleOffers {
    types: Vec<usize>,
    prices: Vec<f64>,
    zone_masks: Vec<u64>,
    allocatable: Vec<i64>,
}

/// A node opened for a bundle and the share of the bundle's remaining demand it takes (1: all).
pub(super) struct BundleNode {
    pub(super) node: usize,
    pub(super) share: f64,
}

/// Where a new claim must be, from the class's domain combination.
struct DomainPins {
    zone_mask: u64,
    capacity_type: Option<usize>,
    /// (label key, value) the type must carry.
    labels: Vec<(usize, u32)>,
}

impl<'a> Engine<'a> {
    /// Opens a new claim for class `c` in the first pool (weight order) that can take a pod.
    pub(super) fn open(&mut self, c: usize, combo: &[u32]) -> Option<usize> {
        for pi in 0..self.catalog.pools.len() {
            let Some(bits) = self.classes[c].compatible[pi].clone() else {
                continue;
            };
            if let Some(n) = self.open_in(c, pi, &bits, combo) {
                return Some(n);
            }
        }
        None
    }

    /// Opens a claim in pool `pi`; when the budget is what stops it, settles the pool's claims
    /// to what they hold and tries once more.
    fn open_in(&mut self, c: usize, pi: usize, bits: &Bitset, combo: &[u32]) -> Option<usize> {
        match self.try_open_in(c, pi, bits, combo) {
            Ok(n) => Some(n),
            Err(Some(OverBudget::Resource(_) | OverBudget::OnDemandCap)) if self.settle(pi) => {
                self.try_open_in(c, pi, bits, combo).ok()
            }
            Err(_) => None,
        }
    }

    /// Opens a claim in pool `pi`, or says what the budget blocked (recording why in
    /// `pool_failures`).
    fn try_open_in(
        &mut self,
        c: usize,
        pi: usize,
        bits: &Bitset,
        combo: &[u32],
    ) -> Result<usize, Option<OverBudget>> {
        let budget = &self.catalog.pools[pi].budget;
        if budget.out_of_nodes() {
            self.pool_failures[pi] = Some(budget.rejection(OverBudget::Nodes, &self.ids));
            return Err(Some(OverBudget::Nodes));
        }
        let pins = self.domain_pins(c, pi, combo);
        let must_hold = self.must_hold(c, combo);
        let mut blocked: Option<OverBudget> = None;
        for ct in self.capacity_types_for(c, pi, &pins) {
            let cache_key = OpenCacheKey {
                class: c,
                pool: pi,
                capacity_type: ct,
                zone_mask: pins.zone_mask,
                combo: combo.to_vec(),
            };
            let reserved = ct == CapacityType::Reserved;
            let cached = self
                .caches
                .open
                .get(&cache_key)
                .filter(|_| !reserved)
                .filter(|ch| must_hold >= ch.max_pods)
                .map(|ch| ch.type_index)
                .filter(|t| {
                    let budget = &self.catalog.pools[pi].budget;
                    budget.allows(&self.catalog.types[*t].capacity, ct)
                });
            let chosen = match cached {
                Some(t) => Some(self.cached_candidate(t, ct, pins.zone_mask)),
                None => {
                    // A blast radius caps the class per node: the lowest price per pod it may
                    // take is the cheapest type holding the cap.
                    let choice = if reserved {
                        TypeChoice::Strict
                    } else if self.thrifty[pi] {
                        TypeChoice::Thrifty
                    } else if self.open_blast_cap(c, pi, ct).is_some() {
                        TypeChoice::Strict
                    } else if self.classes[c].capped() {
                        TypeChoice::Share
                    } else {
                        TypeChoice::Roomy
                    };
                    let mut candidates = self.candidates(c, pi, bits, ct, &pins, &mut blocked);
                    // Share counts room, not what the class must hold: valid for any count.
                    let max_pods = if choice == TypeChoice::Share {
                        0
                    } else {
                        candidates.iter().map(|x| x.pods).max().unwrap_or(0)
                    };
                    let unbounded = choice.best(&candidates, self.thrift_slack);
                    if !reserved && let Some(b) = &unbounded {
                        let cached = CachedChoice {
                            type_index: b.type_index,
                            max_pods,
                        };
                        self.caches.open.insert(cache_key, cached);
                    }
                    match unbounded {
                        Some(b) if b.allowed && must_hold >= max_pods => Some(b),
                        _ => {
                            candidates.retain(|x| x.allowed);
                            if choice != TypeChoice::Share {
                                for x in &mut candidates {
                                    x.pods = x.pods.min(must_hold);
                                }
                            }
                            choice.best(&candidates, self.thrift_slack)
                        }
                    }
                }
            };
            if let Some(b) = chosen {
                return Ok(self.create(c, pi, b.type_index, ct, b.zone_mask, b.reservation));
            }
        }
        let budget = &self.catalog.pools[pi].budget;
        self.pool_failures[pi] = Some(match blocked {
            Some(why) => budget.rejection(why, &self.ids),
            None => PoolRejection::NoOffering,
        });
        Err(blocked)
    }

    /// How many pods of class `c` a new claim in the domains of `combo` should be sized for:
    /// those left to place, or, under a spread the class counts itself in (zones, say), what
    /// the claim's domain still takes before the spread is even: the domain ends with at most
    /// `ceil(total / domains)` matching pods, and a claim sits in one domain.
    fn must_hold(&mut self, c: usize, combo: &[u32]) -> usize {
        let class = &self.classes[c];
        let remaining = class.remaining();
        let spreads: Vec<(usize, usize, u32)> = class
            .domain_constraints
            .iter()
            .filter(|d| d.selects_self && matches!(d.rule, DomainRule::Spread { .. }))
            .filter_map(|d| {
                let i = class.domain_keys.iter().position(|k| *k == d.key)?;
                Some((d.key, d.group, *combo.get(i)?))
            })
            .collect();
        let mut pods = remaining;
        for (key, group, value) in spreads {
            let domains = self.class_domains(c, key);
            let count = |v: u32| self.topology.domain_count(group, key, v) as usize;
            let total = remaining + domains.iter().map(|v| count(*v)).sum::<usize>();
            let even = total.div_ceil(domains.len().max(1));
            pods = pods.min(even.saturating_sub(count(value)));
        }
        pods.max(1)
    }

    /// Shrinks every claim of pool `pi` this solve opened to the cheapest compatible type that
    /// holds what it has (never larger on a budgeted resource), refunding the difference to the
    /// pool's budget; true when anything was refunded. Called when the budget is what stops a
    /// purchase: claims were charged at the size chosen to be filled, and what they did not
    /// fill is given back before a limit is declared reached.
    pub(super) fn settle(&mut self, pi: usize) -> bool {
        let mut freed = false;
        for n in 0..self.nodes.len() {
            let Some(claim) = self.nodes[n].opened() else {
                continue;
            };
            if claim.pool != pi || self.nodes[n].pods.is_empty() {
                continue;
            }
            let (old, ct) = (claim.target_type, claim.capacity_type);
            let held = if self.thrifty[pi] {
                self.leanest_holding(n)
            } else {
                self.cheapest_holding(n, true)
            };
            let Some(t) = held else {
                continue;
            };
            let ceiling = self.catalog.pools[pi].budget.ceiling(ct);
            let (old_cap, new_cap) = (
                &self.catalog.types[old].capacity,
                &self.catalog.types[t].capacity,
            );
            if t == old || ceiling.iter().all(|r| new_cap[*r] >= old_cap[*r]) {
                continue;
            }
            let pool = &mut self.catalog.pools[pi];
            pool.budget.refund(old_cap, ct);
            pool.budget.charge(new_cap, ct);
            let allocatable = self.catalog.types[t].allocatable.clone();
            let node = &mut self.nodes[n];
            node.capacity = allocatable;
            self.caches.room.touch(n);
            if let NodeOrigin::New(claim) = &mut node.origin {
                claim.target_type = t;
            }
            freed = true;
        }
        freed
    }

    /// The capacity types the class and pool allow (and the domain combination pins), in
    /// preference order.
    fn capacity_types_for(&self, c: usize, pi: usize, pins: &DomainPins) -> Vec<CapacityType> {
        let allowed = self.classes[c].capacity_types & self.catalog.pools[pi].capacity_types;
        CapacityType::ALL
            .into_iter()
            .filter(|ct| {
                allowed & capacity_type_bit(*ct) != 0
                    && pins
                        .capacity_type
                        .is_none_or(|w| w == capacity_type_index(*ct))
            })
            .collect()
    }

    fn cached_candidate(&self, t: usize, ct: CapacityType, zone_mask: u64) -> Candidate<'a> {
        let ty = &self.catalog.types[t];
        let it = ty.instance_type;
        let zones = ty.zones(ct) & zone_mask;
        Candidate {
            type_index: t,
            name: &it.name,
            pods: 0,
            share: 0.0,
            price: ty.cheapest(ct, zones),
            zone_mask: zones,
            reservation: None,
            allowed: true,
            spend: 0.0,
        }
    }

    /// The zones, capacity type and labels the class's domain combination pins a new claim to.
    fn domain_pins(&self, c: usize, pi: usize, combo: &[u32]) -> DomainPins {
        let class = &self.classes[c];
        let mut pins = DomainPins {
            zone_mask: class.zone_mask & self.catalog.pools[pi].zone_mask,
            capacity_type: None,
            labels: Vec::new(),
        };
        for (i, &key) in class.domain_keys.iter().enumerate() {
            let v = combo[i];
            match self.ids.key_kind(key) {
                KeyKind::Zone => pins.zone_mask &= 1 << v,
                KeyKind::CapacityType => pins.capacity_type = Some(v as usize),
                KeyKind::Label => pins.labels.push((key, v)),
                KeyKind::Hostname => {}
            }
        }
        pins
    }

    /// Whether the type carries the pinned label values.
    fn has_pinned_labels(&self, t: usize, pins: &DomainPins) -> bool {
        let labels = &self.catalog.types[t].labels;
        pins.labels.iter().all(|(key, v)| {
            labels.get(self.ids.key_name(*key)) == Some(self.ids.value_name(*key, *v))
        })
    }

    /// Every compatible type of pool `pi` that could be bought as capacity type `ct` for class
    /// `c`, marked with whether the budget allows it now; records what the budget blocked in
    /// `blocked`.
    fn candidates(
        &self,
        c: usize,
        pi: usize,
        bits: &Bitset,
        ct: CapacityType,
        pins: &DomainPins,
        blocked: &mut Option<OverBudget>,
    ) -> Vec<Candidate<'a>> {
        let budget = &self.catalog.pools[pi].budget;
        let share = self.classes[c].capped() && ct != CapacityType::Reserved && !self.thrifty[pi];
        let mut out = Vec::new();
        for t in bits.iter() {
            let ty = &self.catalog.types[t];
            let mut zone_mask = ty.zones(ct) & pins.zone_mask;
            if zone_mask == 0 || !self.has_pinned_labels(t, pins) {
                continue;
            }
            let why = budget.why_not(&ty.capacity, ct);
            if let Some(why) = why {
                // The on-demand cap explains more than a limit: keep it once seen.
                if !matches!(
                    blocked,
                    Some(OverBudget::OnDemandCap | OverBudget::ScopedOnDemandCap(_))
                ) {
                    *blocked = Some(why);
                }
            }
            let (price, reservation) = self.price_and_reservation(t, ct, zone_mask);
            if !price.is_finite() {
                continue;
            }
            if let Some(ri) = reservation
                && let Some(o) = ty.offerings.iter().find(|o| o.reservation == Some(ri))
            {
                zone_mask = 1 << o.zone;
            }
            let raw = self.raw_fit(c, t);
            if raw == 0 {
                continue;
            }
            let blast_cap = self.open_blast_cap(c, pi, ct).unwrap_or(usize::MAX);
            let it = ty.instance_type;
            let spend = if self.thrifty[pi] {
                budget.limit_share(&ty.capacity)
            } else {
                0.0
            };
            out.push(Candidate {
                type_index: t,
                name: &it.name,
                pods: if share {
                    raw
                } else {
                    raw.min(self.node_cap(c))
                }
                .min(blast_cap),
                share: 0.0,
                price,
                zone_mask,
                reservation,
                allowed: why.is_none(),
                spend,
            });
        }
        out
    }

    /// The cheapest offering of type `t` as `ct` in `zone_mask` (reservations with room left
    /// only), and the reservation of the cheapest if it is reserved.
    fn price_and_reservation(
        &self,
        t: usize,
        ct: CapacityType,
        zone_mask: u64,
    ) -> (f64, Option<usize>) {
        let mut reservation = None;
        let mut price = f64::INFINITY;
        let offerings = self.catalog.types[t]
            .offerings
            .iter()
            .filter(|o| o.capacity_type == ct && zone_mask & (1 << o.zone) != 0);
        for o in offerings {
            if let Some(ri) = o.reservation {
                let r = &self.catalog.reservations[ri];
                if r.used >= r.capacity {
                    continue;
                }
                if o.price < price {
                    reservation = Some(ri);
                }
            }
            price = price.min(o.price);
        }
        (price, reservation)
    }

    /// Opens a node for a bundle: the type with the lowest price per share of the bundle's
    /// remaining demand it holds ([`TypeChoice::BundleShare`]).
    pub(super) fn open_for_bundle(&mut self, live: &[usize], combo: &[u32]) -> Option<BundleNode> {
        let lead = live[0];
        let mut demand = vec![0i64; self.ids.resource_count()];
        for &c in live {
            let class = &self.classes[c];
            for (d, r) in demand.iter_mut().zip(&class.requests) {
                *d += r * class.remaining() as i64;
            }
        }
        for pi in 0..self.catalog.pools.len() {
            let Some(bits) = self.bundle_types(live, pi) else {
                continue;
            };
            let pins = self.domain_pins(lead, pi, combo);
            // A second round after settling the pool's claims when its budget blocked a type.
            for _ in 0..2 {
                if self.catalog.pools[pi].budget.out_of_nodes() {
                    break;
                }
                let mut blocked = false;
                for ct in self.capacity_types_for(lead, pi, &pins) {
                    if ct == CapacityType::Reserved {
                        continue;
                    }
                    let offers = self.bundle_offers(pi, &bits, ct, &pins);
                    if let Some(b) = self.best_bundle_type(pi, &offers, ct, &demand, &mut blocked) {
                        let node = self.create(lead, pi, b.type_index, ct, b.zone_mask, None);
                        return Some(BundleNode {
                            node,
                            share: b.share.min(1.0),
                        });
                    }
                }
                if !blocked || !self.settle(pi) {
                    break;
                }
            }
        }
        None
    }

    /// The types of pool `pi` a bundle's node may be: those compatible with every live class
    /// that may use the pool (the lead's when they share none).
    fn bundle_types(&self, live: &[usize], pi: usize) -> Option<Bitset> {
        let lead = self.classes[live[0]].compatible[pi].as_ref()?;
        let mut bits = lead.clone();
        for &c in &live[1..] {
            if let Some(b) = &self.classes[c].compatible[pi] {
                bits.and_with(b);
            }
        }
        Some(if bits.is_empty() { lead.clone() } else { bits })
    }

    /// The types of pool `pi` (of `bits`) a bundle's node may be as `ct` under `pins`, with
    /// their price and allocatable there: what does not change while the bundle is placed,
    /// computed once per (pool, capacity type, types, pins).
    fn bundle_offers(
        &mut self,
        pi: usize,
        bits: &Bitset,
        ct: CapacityType,
        pins: &DomainPins,
    ) -> Arc<BundleOffers> {
        let key = BundleOffersKey {
            pool: pi,
            capacity_type: capacity_type_index(ct),
            types: bits.clone(),
            zone_mask: pins.zone_mask,
            labels: pins.labels.clone(),
        };
        if let Some(offers) = self.caches.bundle_offers.get(&key) {
            return Arc::clone(offers);
        }
        let mut offers = BundleOffers::default();
        for t in bits.iter() {
            let ty = &self.catalog.types[t];
            let zone_mask = ty.zones(ct) & pins.zone_mask;
            if zone_mask == 0 || !self.has_pinned_labels(t, pins) {
                continue;
            }
            offers.types.push(t);
            offers.prices.push(ty.cheapest(ct, zone_mask));
            offers.zone_masks.push(zone_mask);
            offers.allocatable.extend_from_slice(&ty.allocatable);
        }
        let offers = Arc::new(offers);
        self.caches.bundle_offers.insert(key, Arc::clone(&offers));
        offers
    }

    /// Of the `offers` (of pool `pi` as `ct`), the type with the lowest price per share of the
    /// bundle's `demand` it holds ([`TypeChoice::BundleShare`], the first of equals), among those
    /// the pool's budget allows (`blocked` is set when it refused one) and that hold a share.
    fn best_bundle_type(
        &self,
        pi: usize,
        offers: &BundleOffers,
        ct: CapacityType,
        demand: &[i64],
        blocked: &mut bool,
    ) -> Option<Candidate<'a>> {
        let budget = &self.catalog.pools[pi].budget;
        // An unlimited pool allows every type: no need to ask per type.
        let ask_budget = !budget.unlimited_for(ct);
        let resources = demand.len();
        let thrifty = self.thrifty[pi];
        let mut all = Vec::new();
        let mut best: Option<Candidate<'a>> = None;
        // The best's price per share, kept: most types lose on it alone.
        let mut best_per_share = f64::INFINITY;
        for (i, &t) in offers.types.iter().enumerate() {
            let ty = &self.catalog.types[t];
            if ask_budget && !budget.allows(&ty.capacity, ct) {
                *blocked = true;
                continue;
            }
            let price = offers.prices[i];
            if !price.is_finite() {
                continue;
            }
            let share = demand
                .iter()
                .zip(&offers.allocatable[i * resources..(i + 1) * resources])
                .filter(|(d, _)| **d > 0)
                .map(|(d, a)| *a as f64 / *d as f64)
                .fold(f64::INFINITY, f64::min);
            if share <= 0.0 || share.is_nan() {
                continue;
            }
            let candidate = Candidate {
                type_index: t,
                name: &ty.instance_type.name,
                pods: 0,
                share,
                price,
                zone_mask: offers.zone_masks[i],
                reservation: None,
                allowed: true,
                spend: if thrifty {
                    budget.limit_share(&ty.capacity)
                } else {
                    0.0
                },
            };
            if thrifty {
                all.push(candidate);
                continue;
            }
            // As [`TypeChoice::cmp`] orders them: price per share first.
            let per_share = price / share.min(1.0);
            let better = match &best {
                None => true,
                Some(b) => match cmp_ratio(best_per_share, per_share) {
                    Ordering::Equal => {
                        TypeChoice::BundleShare.cmp(b, &candidate) == Ordering::Greater
                    }
                    order => order == Ordering::Greater,
                },
            };
            if better {
                best = Some(candidate);
                best_per_share = per_share;
            }
        }
        if thrifty {
            // The least share of the limit per share of the demand, within the slack; then the
            // bundle's usual order.
            let per_share = |c: &Candidate| c.spend / c.share.min(1.0);
            let min = all.iter().map(per_share).fold(f64::INFINITY, f64::min);
            best = all
                .iter()
                .filter(|c| per_share(c) <= min * self.thrift_slack)
                .min_by(|a, b| TypeChoice::BundleShare.cmp(a, b))
                .copied();
        }
        best
    }

    /// Pods of class `c` an empty node of type `t` holds by resources alone.
    fn raw_fit(&self, c: usize, t: usize) -> usize {
        let class = &self.classes[c];
        let ty = &self.catalog.types[t];
        class
            .requests
            .iter()
            .zip(&ty.allocatable)
            .filter(|(want, _)| **want > 0)
            .map(|(want, a)| (a / want).max(0) as usize)
            .min()
            .unwrap_or(0)
    }

    /// The most pods of class `c` one node may ever hold by its per-node rules (host ports,
    /// hostname spread and anti-affinity); a domain spread limits each step, not the node.
    fn node_cap(&self, c: usize) -> usize {
        self.node_cap_with(c, true)
    }

    /// [`Engine::node_cap`], counting the class's preferred per-node rules (ScheduleAnyway
    /// hostname spread, preferred hostname anti-affinity) only with `preferences`.
    fn node_cap_with(&self, c: usize, preferences: bool) -> usize {
        let class = &self.classes[c];
        let mut k = usize::MAX;
        if !class.pod.host_ports.is_empty() {
            k = k.min(1);
        }
        for s in &class.host_spread {
            if s.selects_self && (preferences || !s.preferred) {
                k = k.min(s.max_skew.max(1) as usize);
            }
        }
        if class
            .host_anti
            .iter()
            .any(|h| h.selects_self && (preferences || !h.preferred))
        {
            k = k.min(1);
        }
        k
    }

    /// Whether honouring the class's preferred per-node caps on a new claim would cost more
    /// per pod (beyond [`ROOMY_SLACK`]) than packing the pods it must still place: then the
    /// preference is dropped instead of opening a node per pod (a preference never multiplies
    /// the cost of a plan). Compared on the best price per pod either way in the first pool and
    /// capacity type [`Engine::open`] would try; budgets are ignored.
    pub(super) fn preference_costs_nodes(&mut self, c: usize, combo: &[u32]) -> bool {
        let (capped, free) = (self.node_cap_with(c, true), self.node_cap_with(c, false));
        if capped >= free {
            return false;
        }
        let must_hold = self.must_hold(c, combo);
        for pi in 0..self.catalog.pools.len() {
            let Some(bits) = &self.classes[c].compatible[pi] else {
                continue;
            };
            let pins = self.domain_pins(c, pi, combo);
            for ct in self.capacity_types_for(c, pi, &pins) {
                let blast = self.open_blast_cap(c, pi, ct).unwrap_or(usize::MAX);
                let (mut honoured, mut packed) = (f64::INFINITY, f64::INFINITY);
                for t in bits.iter() {
                    let ty = &self.catalog.types[t];
                    let zones = ty.zones(ct) & pins.zone_mask;
                    if zones == 0 || !self.has_pinned_labels(t, &pins) {
                        continue;
                    }
                    let (price, raw) = (ty.cheapest(ct, zones), self.raw_fit(c, t).min(blast));
                    if raw == 0 || !price.is_finite() {
                        continue;
                    }
                    honoured = honoured.min(price / raw.min(capped) as f64);
                    packed = packed.min(price / raw.min(free).min(must_hold) as f64);
                }
                if honoured.is_finite() {
                    return honoured > packed * ROOMY_SLACK;
                }
            }
        }
        false
    }

    /// Opens claim `<pool>-<n>` as type `t`, charged to the pool's budget.
    pub(super) fn create(
        &mut self,
        c: usize,
        pi: usize,
        t: usize,
        ct: CapacityType,
        zone_mask: u64,
        reservation: Option<usize>,
    ) -> usize {
        let catalog = &mut self.catalog;
        let pool = &mut catalog.pools[pi];
        let ty = &catalog.types[t];
        pool.claims += 1;
        let name = format!("{}-{}", pool.pool.name, pool.claims);
        pool.budget.charge(&ty.capacity, ct);
        if let Some(ri) = reservation {
            catalog.reservations[ri].used += 1;
        }
        let mut domain_values = Vec::with_capacity(self.ids.key_count());
        let mut label_values = Vec::new();
        for key in 0..self.ids.key_count() {
            domain_values.push(match self.ids.key_kind(key) {
                KeyKind::Hostname => None,
                KeyKind::Zone => (zone_mask.count_ones() == 1).then(|| zone_mask.trailing_zeros()),
                KeyKind::CapacityType => Some(capacity_type_index(ct) as u32),
                KeyKind::Label => {
                    if let Some(v) = ty.labels.get(self.ids.key_name(key)) {
                        label_values.push((key, v.to_string()));
                    }
                    None
                }
            });
        }
        let capacity = ty.allocatable.clone();
        for (key, v) in label_values {
            domain_values[key] = self.ids.value_id(key, &v);
        }
        let claim = OpenedClaim {
            pool: pi,
            target_type: t,
            capacity_type: ct,
            zone_mask,
            compatible: self.classes[c].compatible[pi].clone().unwrap_or_default(),
        };
        self.nodes.push(SimNode::new(
            name,
            NodeOrigin::New(claim),
            capacity,
            domain_values,
        ));
        let n = self.nodes.len() - 1;
        self.caches.room.touch(n);
        // A discarded claim's index is reused: forget what was memoised for it.
        if let Some(memo) = self.caches.shrink.get_mut(n) {
            *memo = None;
        }
        n
    }

    /// Undoes the opening of the last node when nothing could go there after all.
    pub(super) fn discard(&mut self, n: usize) {
        if n + 1 != self.nodes.len() || !self.nodes[n].pods.is_empty() {
            return;
        }
        let Some(node) = self.nodes.pop() else { return };
        self.caches.room.touch(n);
        if let NodeOrigin::New(claim) = node.origin {
            let capacity = &self.catalog.types[claim.target_type].capacity;
            self.catalog.pools[claim.pool]
                .budget
                .refund(capacity, claim.capacity_type);
        }
    }
}
