//! Step 6, opening a new claim when no node has room for a class: the first pool (weight
//! order) with a compatible type, capacity types tried reserved > spot > on-demand, and the
//! instance type chosen by [`TypeChoice`] among the [`Candidate`]s the pool's budget allows.
//! The claim is charged to the pool's [`super::pools::PoolBudget`] at once; [`Engine::discard`]
//! refunds it when nothing could go there after all.

use std::cmp::Ordering;

use stowage_api::CapacityType;

use super::interning::{KeyKind, capacity_type_bit, capacity_type_index};
use super::place::{NodeOrigin, OpenedClaim, SimNode};
use super::pools::OverBudget;
use super::reasons::PoolRejection;
use super::{Engine, cmp_price, cmp_ratio};
use crate::bitset::Bitset;

/// A type choice remembered per (class, pool, capacity type, zones, domains). Only choices the
/// pool's budget cannot change are cached (no limits, no on-demand cap, not reserved).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct OpenCacheKey {
    class: usize,
    pool: usize,
    capacity_type: CapacityType,
    zone_mask: u64,
    combo: Vec<u32>,
}

/// The cached choice: an index into the catalog's types.
pub(super) type CachedChoice = usize;

/// An instance type a new claim could be bought as.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    type_index: usize,
    name: &'a str,
    /// Pods of the class an empty node of the type holds.
    pods: usize,
    /// For bundles: the share of the bundle's remaining demand the type holds (0..1).
    share: f64,
    price: f64,
    /// Zones to launch in.
    zone_mask: u64,
    /// The capacity reservation it would use.
    reservation: Option<usize>,
}

/// How to choose among candidates; every mode ends with cheaper, then name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeChoice {
    /// A limit or on-demand cap charges the claim: the lowest price per pod it takes now.
    Strict,
    /// Classes capped per node: the cheapest type with room for three such pods, so pods of
    /// other classes can share the node. (Measured: 3 beats 2, 4 and the tightest.)
    Share,
    /// No limit, cap or reservation: among the types within 5 % of the best price per pod, the
    /// largest, so later pods fill the claim (the final options shrink it to what it holds).
    Roomy,
    /// A bundle's node: the lowest price per share of the bundle's demand, then the larger share.
    BundleShare,
    /// A bundle's node that holds all its demand: the cheapest.
    BundleWhole,
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
            TypeChoice::BundleShare => {
                cmp_ratio(a.price / a.share, b.price / b.share).then_with(|| {
                    if (a.share - b.share).abs() > 1e-12 {
                        b.share.total_cmp(&a.share)
                    } else {
                        Ordering::Equal
                    }
                })
            }
            TypeChoice::BundleWhole => Ordering::Equal,
        };
        first
            .then_with(|| cmp_price(a.price, b.price))
            .then_with(|| a.name.cmp(b.name))
    }

    /// The best candidate (the first of equals).
    fn best<'a>(self, candidates: &[Candidate<'a>]) -> Option<Candidate<'a>> {
        let pool: Vec<&Candidate> = if self == TypeChoice::Roomy {
            let min = candidates
                .iter()
                .map(|c| c.price / c.pods as f64)
                .fold(f64::INFINITY, f64::min);
            candidates
                .iter()
                .filter(|c| c.price / c.pods as f64 <= min * ROOMY_SLACK)
                .collect()
        } else {
            candidates.iter().collect()
        };
        pool.into_iter().min_by(|a, b| self.cmp(a, b)).copied()
    }
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

    fn open_in(&mut self, c: usize, pi: usize, bits: &Bitset, combo: &[u32]) -> Option<usize> {
        let budget = &self.catalog.pools[pi].budget;
        if budget.out_of_nodes() {
            self.pool_failures[pi] = Some(budget.rejection(OverBudget::Nodes, &self.ids));
            return None;
        }
        let pins = self.domain_pins(c, pi, combo);
        let mut blocked: Option<OverBudget> = None;
        for ct in self.capacity_types_for(c, pi, &pins) {
            let cache_key = OpenCacheKey {
                class: c,
                pool: pi,
                capacity_type: ct,
                zone_mask: pins.zone_mask,
                combo: combo.to_vec(),
            };
            let cacheable =
                ct != CapacityType::Reserved && !self.catalog.pools[pi].budget.constrains(ct);
            let chosen = match self.caches.open.get(&cache_key).filter(|_| cacheable) {
                Some(&t) => Some(self.cached_candidate(t, ct, pins.zone_mask)),
                None => {
                    // A blast radius caps the class per node: the lowest price per pod it may
                    // take is the cheapest type holding the cap.
                    let choice = if !cacheable || self.open_blast_cap(c, pi, ct).is_some() {
                        TypeChoice::Strict
                    } else if self.classes[c].capped() {
                        TypeChoice::Share
                    } else {
                        TypeChoice::Roomy
                    };
                    let candidates = self.candidates(c, pi, bits, ct, &pins, &mut blocked);
                    let best = choice.best(&candidates);
                    if cacheable && let Some(b) = &best {
                        self.caches.open.insert(cache_key, b.type_index);
                    }
                    best
                }
            };
            if let Some(b) = chosen {
                return Some(self.create(c, pi, b.type_index, ct, b.zone_mask, b.reservation));
            }
        }
        let budget = &self.catalog.pools[pi].budget;
        self.pool_failures[pi] = Some(match blocked {
            Some(why) => budget.rejection(why, &self.ids),
            None => PoolRejection::NoOffering,
        });
        None
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

    /// Every compatible type of pool `pi` that could be bought now as capacity type `ct` for
    /// class `c`; records what the budget blocked in `blocked`.
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
        // Cacheable choices look at a type's whole room, not just what is left of the class.
        let cacheable = ct != CapacityType::Reserved && !budget.constrains(ct);
        let mut out = Vec::new();
        for t in bits.iter() {
            let ty = &self.catalog.types[t];
            let mut zone_mask = ty.zones(ct) & pins.zone_mask;
            if zone_mask == 0 || !self.has_pinned_labels(t, pins) {
                continue;
            }
            if let Some(why) = budget.why_not(&ty.capacity, ct) {
                // The on-demand cap explains more than a limit: keep it once seen.
                if !matches!(
                    blocked,
                    Some(OverBudget::OnDemandCap | OverBudget::ScopedOnDemandCap(_))
                ) {
                    *blocked = Some(why);
                }
                continue;
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
            let pods = self.empty_fit(c, t);
            if pods == 0 {
                continue;
            }
            let blast_cap = self.open_blast_cap(c, pi, ct).unwrap_or(usize::MAX);
            let it = ty.instance_type;
            out.push(Candidate {
                type_index: t,
                name: &it.name,
                pods: if cacheable { self.raw_fit(c, t) } else { pods }.min(blast_cap),
                share: 0.0,
                price,
                zone_mask,
                reservation,
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
    /// remaining demand it holds, or the cheapest that holds all of it.
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
            let Some(bits) = self.classes[lead].compatible[pi].clone() else {
                continue;
            };
            if self.catalog.pools[pi].budget.out_of_nodes() {
                continue;
            }
            let pins = self.domain_pins(lead, pi, combo);
            for ct in self.capacity_types_for(lead, pi, &pins) {
                if ct == CapacityType::Reserved {
                    continue;
                }
                let (whole, partial) = self.bundle_candidates(pi, &bits, ct, &pins, &demand);
                let best = TypeChoice::BundleWhole
                    .best(&whole)
                    .map(|b| Candidate { share: 1.0, ..b })
                    .or_else(|| TypeChoice::BundleShare.best(&partial));
                if let Some(b) = best {
                    let node = self.create(lead, pi, b.type_index, ct, b.zone_mask, None);
                    return Some(BundleNode {
                        node,
                        share: b.share,
                    });
                }
            }
        }
        None
    }

    /// The types of a pool that hold all of a bundle's `demand`, and those that hold a share.
    fn bundle_candidates(
        &self,
        pi: usize,
        bits: &Bitset,
        ct: CapacityType,
        pins: &DomainPins,
        demand: &[i64],
    ) -> (Vec<Candidate<'a>>, Vec<Candidate<'a>>) {
        let budget = &self.catalog.pools[pi].budget;
        let (mut whole, mut partial) = (Vec::new(), Vec::new());
        for t in bits.iter() {
            let ty = &self.catalog.types[t];
            let zone_mask = ty.zones(ct) & pins.zone_mask;
            if zone_mask == 0
                || !self.has_pinned_labels(t, pins)
                || !budget.allows(&ty.capacity, ct)
            {
                continue;
            }
            let price = ty.cheapest(ct, zone_mask);
            if !price.is_finite() {
                continue;
            }
            let share = demand
                .iter()
                .zip(&ty.allocatable)
                .filter(|(d, _)| **d > 0)
                .map(|(d, a)| *a as f64 / *d as f64)
                .fold(f64::INFINITY, f64::min);
            let it = ty.instance_type;
            let candidate = Candidate {
                type_index: t,
                name: &it.name,
                pods: 0,
                share,
                price,
                zone_mask,
                reservation: None,
            };
            if share >= 1.0 {
                whole.push(candidate);
            } else if share > 0.0 {
                partial.push(candidate);
            }
        }
        (whole, partial)
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

    /// Pods of class `c` an empty node of type `t` takes (resources, per-node caps, what is
    /// left of the class).
    fn empty_fit(&self, c: usize, t: usize) -> usize {
        let class = &self.classes[c];
        let ty = &self.catalog.types[t];
        let mut k = class.remaining();
        for (r, want) in class.requests.iter().enumerate() {
            if *want > 0 {
                if ty.allocatable[r] < *want {
                    return 0;
                }
                k = k.min((ty.allocatable[r] / want) as usize);
            }
        }
        if !class.pod.host_ports.is_empty() {
            k = k.min(1);
        }
        for s in &class.host_spread {
            if s.selects_self {
                k = k.min(s.max_skew.max(1) as usize);
            }
        }
        if class.host_anti.iter().any(|h| h.selects_self) {
            k = k.min(1);
        }
        if class.domain_constraints.iter().any(|d| d.one_per_node()) {
            k = k.min(1);
        }
        k
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
        self.nodes.len() - 1
    }

    /// Undoes the opening of the last node when nothing could go there after all.
    pub(super) fn discard(&mut self, n: usize) {
        if n + 1 != self.nodes.len() || !self.nodes[n].pods.is_empty() {
            return;
        }
        let Some(node) = self.nodes.pop() else { return };
        if let NodeOrigin::New(claim) = node.origin {
            let capacity = &self.catalog.types[claim.target_type].capacity;
            self.catalog.pools[claim.pool]
                .budget
                .refund(capacity, claim.capacity_type);
        }
    }
}
