//! Step 6b, pattern packing: after the greedy placement ([`super::place`], [`super::open`]),
//! the new claims that hold only pods of *free* classes are packed again as a whole and the
//! result is kept when it is cheaper.
//!
//! A class is free when its pods can move between new nodes without any other check: no host
//! ports, no topology spread, pod affinity or anti-affinity of its own, not counted or repelled by
//! anyone else's, no domain pins. A claim is repacked when it is opened by this solve, holds only
//! pods of free classes, is not reserved, and its NodePool has no limit and no on-demand cap (so
//! what it buys changes no other choice). Claims are repacked per (NodePool, capacity type) as
//! the greedy chose them, so the pool weight order and reserved > spot > on-demand are kept; the
//! classes of a bucket are packed per zone mask.
//!
//! The packing is the configuration LP (Gilmore-Gomory): `min sum p_k x_P` over *patterns* `P`
//! (how many pods of each class one node of kind `k` holds) with every class covered, solved by
//! a revised simplex over the classes whose entering columns come from a pool of patterns or, when
//! none prices out, from an integer knapsack per kind with the simplex duals as values (column
//! generation). Rounding: the LP's whole nodes are taken and the LP solved again for what is left,
//! a few times; the last pass rounds up. Every limit is an iteration count, so the result is
//! deterministic. Both plans are priced as `finish` buys them (the cheapest compatible type that
//! holds each node) and the cheaper kept, so repacking never makes a bucket dearer (the price
//! ignores the label values `finish` pins when some pod uses a plain node label as topology key).
//! A bucket the greedy already packs within [`CLOSE_ENOUGH`] of [`resource_bound`] is skipped.

use std::collections::BTreeMap;

use stowage_api::CapacityType;

use super::Engine;
use super::place::NodeOrigin;
use crate::bitset::Bitset;
use crate::hash::FastMap;

/// Simplex iterations per LP solve.
const MAX_PIVOTS: usize = 600;
/// Pivots between recomputations of the basis inverse (against rounding drift).
const REFACTOR: usize = 50;
/// Knapsack pricing rounds per LP solve.
const MAX_PRICING_ROUNDS: usize = 40;
/// Patterns a pricing round adds to the pool (the best by price ratio).
const PATTERNS_PER_ROUND: usize = 20;
/// Search nodes per knapsack before settling for the best pattern found.
const KNAPSACK_NODES: usize = 2_000;
/// Knapsack search nodes per solve, over all groups (bounds the phase's time whatever the input).
const PATTERN_WORK: usize = 1_500_000;
/// A bucket the greedy packs within this fraction of [`resource_bound`] is left as it is.
const CLOSE_ENOUGH: f64 = 1e-3;
/// Knapsack search nodes per pod a bucket repacks (small batches stay fast).
const WORK_PER_POD: usize = 200;
/// Rounding passes (take the LP's whole nodes, solve again for the rest); the last rounds up.
const ROUNDING_PASSES: usize = 4;
/// Relative reduced cost below which a column improves the LP.
const IMPROVES: f64 = 1e-9;

/// Memo of [`Engine::holding_price`]: (compatible types, zones, used) -> price.
type PriceMemo = FastMap<(Bitset, u64, Vec<i64>), f64>;

/// One group of a bucket: classes of one zone mask, packed together.
struct Group<'g> {
    pool: usize,
    ct: CapacityType,
    mask: u64,
    classes: &'g [usize],
    kinds: &'g [Kind],
}

/// A node of a pattern plan: its type (index into the catalog's types), pods per class.
type NodePlan = (usize, Vec<(usize, Vec<usize>)>);

/// A node kind a bucket may buy: an instance type with its price and room.
#[derive(Debug, Clone)]
pub(super) struct Kind {
    /// Index into the catalog's types.
    pub(super) type_index: usize,
    pub(super) price: f64,
    pub(super) allocatable: Vec<i64>,
    /// Per class of the problem: whether the kind may hold it.
    pub(super) holds: Vec<bool>,
}

/// A pattern: `count[c]` pods of each class on one node of `kind`.
#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    kind: usize,
    count: Vec<i64>,
}

/// A simplex column: a pattern of the pool, or the surplus of a class (covering more than asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Pattern(usize),
    Surplus(usize),
}

/// Whole nodes to buy: `copies` nodes of `kind`, each holding up to `count[c]` pods of class `c`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PatternNodes {
    pub(super) kind: usize,
    pub(super) count: Vec<i64>,
    pub(super) copies: i64,
}

/// Pods of class `c` one empty node of room `a` holds.
fn fit(request: &[i64], a: &[i64]) -> i64 {
    request
        .iter()
        .zip(a)
        .filter(|(q, _)| **q > 0)
        .map(|(q, a)| (*a).max(0) / q)
        .min()
        .unwrap_or(0)
}

/// Whole nodes that hold `demand[c]` pods of each class `c` (requests `requests[c]`) on the
/// `kinds`, cheap by the configuration LP (see the module docs); None when a class with demand
/// fits no kind.
pub(super) fn pattern_plan(
    demand: &[i64],
    requests: &[&[i64]],
    kinds: &[Kind],
    work: &mut usize,
) -> Option<Vec<PatternNodes>> {
    let nc = demand.len();
    // Start with each class alone on the kind that holds it cheapest per pod.
    let mut pool: Vec<Pattern> = Vec::new();
    for c in 0..nc {
        let mut best: Option<(f64, usize, i64)> = None;
        for (k, kind) in kinds.iter().enumerate() {
            if !kind.holds[c] {
                continue;
            }
            let m = fit(requests[c], &kind.allocatable).min(demand[c].max(1));
            if m > 0 && best.is_none_or(|(r, _, _)| kind.price / (m as f64) < r) {
                best = Some((kind.price / m as f64, k, m));
            }
        }
        let (k, m) = match best {
            Some((_, k, m)) => (k, m),
            None if demand[c] == 0 => (0, 0),
            None => return None,
        };
        let mut count = vec![0; nc];
        count[c] = m;
        pool.push(Pattern { kind: k, count });
    }
    let mut chosen: BTreeMap<usize, i64> = BTreeMap::new();
    let mut residual = demand.to_vec();
    for pass in 0..ROUNDING_PASSES {
        if residual.iter().all(|r| *r <= 0) {
            break;
        }
        let x = solve_lp(&residual, requests, kinds, &mut pool, work);
        let last = pass + 1 == ROUNDING_PASSES || x.iter().all(|(_, v)| *v < 1.0 - 1e-9);
        for (j, v) in x {
            let copies = if last {
                (v - 1e-9).ceil()
            } else {
                (v + 1e-9).floor()
            };
            if copies >= 1.0 {
                *chosen.entry(j).or_default() += copies as i64;
            }
        }
        residual = demand.to_vec();
        for (j, copies) in &chosen {
            for (r, n) in residual.iter_mut().zip(&pool[*j].count) {
                *r -= n * copies;
            }
        }
        if last {
            break;
        }
    }
    if residual.iter().any(|r| *r > 0) {
        return None;
    }
    Some(
        chosen
            .into_iter()
            .map(|(j, copies)| PatternNodes {
                kind: pool[j].kind,
                count: pool[j].count.clone(),
                copies,
            })
            .collect(),
    )
}

/// The configuration LP for `demand` by revised simplex with column generation, from a basis of
/// the pool's first `demand.len()` patterns (one class each): the basic patterns and their
/// values. New patterns are added to `pool`.
fn solve_lp(
    demand: &[i64],
    requests: &[&[i64]],
    kinds: &[Kind],
    pool: &mut Vec<Pattern>,
    work: &mut usize,
) -> Vec<(usize, f64)> {
    let nc = demand.len();
    let d: Vec<f64> = demand.iter().map(|v| (*v).max(0) as f64).collect();
    let mut basis: Vec<Column> = (0..nc)
        .map(|c| {
            if pool[c].count[c] > 0 {
                Column::Pattern(c)
            } else {
                Column::Surplus(c)
            }
        })
        .collect();
    let column = |pool: &[Pattern], col: Column| -> (Vec<f64>, f64) {
        match col {
            Column::Pattern(j) => (
                pool[j].count.iter().map(|v| *v as f64).collect(),
                kinds[pool[j].kind].price,
            ),
            Column::Surplus(c) => {
                let mut a = vec![0.0; nc];
                a[c] = -1.0;
                (a, 0.0)
            }
        }
    };
    let mut x_b = d.clone();
    let mut pricing_rounds = 0;
    // The basis inverse, updated per pivot and computed afresh every [`REFACTOR`] pivots.
    let mut inverse: Vec<Vec<f64>> = Vec::new();
    for pivot in 0..MAX_PIVOTS {
        if pivot % REFACTOR == 0 {
            let cols: Vec<Vec<f64>> = basis.iter().map(|b| column(pool, *b).0).collect();
            let matrix: Vec<Vec<f64>> = (0..nc)
                .map(|i| cols.iter().map(|a| a[i]).collect())
                .collect();
            let Some(inv) = invert(&matrix) else { break };
            inverse = inv;
        }
        x_b = inverse
            .iter()
            .map(|row| row.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>().max(0.0))
            .collect();
        let costs: Vec<f64> = basis.iter().map(|b| column(pool, *b).1).collect();
        let pi: Vec<f64> = (0..nc)
            .map(|j| (0..nc).map(|i| costs[i] * inverse[i][j]).sum())
            .collect();
        // Entering column: the best relative reduced cost in the pool, then a surplus.
        let mut entering: Option<(f64, Column)> = None;
        for (j, p) in pool.iter().enumerate() {
            if basis.contains(&Column::Pattern(j)) {
                continue;
            }
            let price = kinds[p.kind].price;
            let value: f64 = p.count.iter().zip(&pi).map(|(n, v)| *n as f64 * v).sum();
            let gain = value / price - 1.0;
            if gain > IMPROVES && entering.is_none_or(|(g, _)| gain > g) {
                entering = Some((gain, Column::Pattern(j)));
            }
        }
        if entering.is_none() {
            entering = pi
                .iter()
                .position(|v| *v < -IMPROVES)
                .map(|c| (0.0, Column::Surplus(c)));
        }
        if entering.is_none() && pricing_rounds < MAX_PRICING_ROUNDS && *work > 0 {
            pricing_rounds += 1;
            let mut found: Vec<(f64, Pattern)> = Vec::new();
            for (k, kind) in kinds.iter().enumerate() {
                let items: Vec<(usize, f64)> = (0..nc)
                    .filter(|c| kind.holds[*c] && pi[*c] > 0.0)
                    .map(|c| (c, pi[c]))
                    .collect();
                let Some((value, count)) = knapsack(
                    &kind.allocatable,
                    &items,
                    requests,
                    demand,
                    kind.price,
                    work,
                ) else {
                    continue;
                };
                let gain = value / kind.price - 1.0;
                if gain > IMPROVES {
                    found.push((gain, Pattern { kind: k, count }));
                }
            }
            found.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.kind.cmp(&y.1.kind)));
            for (gain, pattern) in found.into_iter().take(PATTERNS_PER_ROUND) {
                if pool.contains(&pattern) {
                    continue;
                }
                pool.push(pattern);
                if entering.is_none() {
                    entering = Some((gain, Column::Pattern(pool.len() - 1)));
                }
            }
        }
        let Some((_, enter)) = entering else { break };
        let (a, _) = column(pool, enter);
        let w: Vec<f64> = inverse
            .iter()
            .map(|row| row.iter().zip(&a).map(|(x, y)| x * y).sum())
            .collect();
        let mut leave: Option<(f64, usize)> = None;
        for i in 0..nc {
            if w[i] > 1e-9 {
                let ratio = x_b[i] / w[i];
                if leave.is_none_or(|(r, _)| ratio < r - 1e-12) {
                    leave = Some((ratio, i));
                }
            }
        }
        let Some((_, i)) = leave else { break };
        basis[i] = enter;
        let row: Vec<f64> = inverse[i].iter().map(|v| v / w[i]).collect();
        for (r, other) in inverse.iter_mut().enumerate() {
            if r != i && w[r] != 0.0 {
                for (x, y) in other.iter_mut().zip(&row) {
                    *x -= w[r] * y;
                }
            }
        }
        inverse[i] = row;
    }
    basis
        .iter()
        .zip(&x_b)
        .filter_map(|(b, v)| match b {
            Column::Pattern(j) if *v > 1e-9 => Some((*j, *v)),
            _ => None,
        })
        .collect()
}

/// The inverse of a square matrix by Gauss-Jordan elimination with partial pivoting; None if
/// singular.
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for col in 0..n {
        let p = (col..n).max_by(|x, y| a[*x][col].abs().total_cmp(&a[*y][col].abs()))?;
        if a[p][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, p);
        let scale = a[col][col];
        for v in a[col].iter_mut() {
            *v /= scale;
        }
        let pivot = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col && row[col] != 0.0 {
                let f = row[col];
                for (x, y) in row.iter_mut().zip(&pivot) {
                    *x -= f * y;
                }
            }
        }
    }
    Some(a.into_iter().map(|row| row[n..].to_vec()).collect())
}

/// `max sum v_c n_c s.t. sum n_c q_c <= a, 0 <= n_c <= demand_c integer` over `items` (class,
/// value) by
/// depth-first branch and bound (at most [`KNAPSACK_NODES`] nodes): the best value found and its
/// counts per class, or None when even the fractional bound stays within `threshold`.
fn knapsack(
    a: &[i64],
    items: &[(usize, f64)],
    requests: &[&[i64]],
    demand: &[i64],
    threshold: f64,
    work: &mut usize,
) -> Option<(f64, Vec<i64>)> {
    let nc = demand.len();
    if items.is_empty() {
        return None;
    }
    let resources: Vec<usize> = (0..a.len())
        .filter(|r| items.iter().all(|(c, _)| requests[*c][*r] > 0))
        .collect();
    let weight = |c: usize| {
        (0..a.len())
            .filter(|r| requests[c][*r] > 0)
            .map(|r| requests[c][r] as f64 / a[r].max(1) as f64)
            .fold(0f64, f64::max)
    };
    let mut order: Vec<(usize, f64)> = items.to_vec();
    order.sort_by(|x, y| {
        (y.1 / weight(y.0))
            .total_cmp(&(x.1 / weight(x.0)))
            .then(x.0.cmp(&y.0))
    });
    // suffix[i][j]: the best value per unit of resources[j] among order[i..].
    let mut suffix = vec![vec![0f64; resources.len()]; order.len() + 1];
    for i in (0..order.len()).rev() {
        for (j, r) in resources.iter().enumerate() {
            let here = order[i].1 / requests[order[i].0][*r] as f64;
            suffix[i][j] = suffix[i + 1][j].max(here);
        }
    }
    let search = Search {
        order: &order,
        requests,
        demand,
        resources: &resources,
        suffix: &suffix,
        best: 0.0,
        pattern: vec![0; order.len()],
        current: vec![0; order.len()],
        nodes: 0,
        limit: KNAPSACK_NODES.min(*work),
    };
    if search.fractional(0, a) <= threshold * (1.0 + IMPROVES) {
        return None;
    }
    let mut search = search;
    let mut left = a.to_vec();
    search.go(0, &mut left, 0.0);
    *work = work.saturating_sub(search.nodes);
    let mut count = vec![0; nc];
    for ((c, _), n) in order.iter().zip(&search.pattern) {
        count[*c] = *n;
    }
    Some((search.best, count))
}

/// The state of one [`knapsack`] search.
struct Search<'s> {
    order: &'s [(usize, f64)],
    requests: &'s [&'s [i64]],
    /// No pattern needs more pods of a class than are asked for.
    demand: &'s [i64],
    resources: &'s [usize],
    suffix: &'s [Vec<f64>],
    best: f64,
    pattern: Vec<i64>,
    current: Vec<i64>,
    nodes: usize,
    /// Nodes to search at most.
    limit: usize,
}

impl Search<'_> {
    /// An upper bound on what items `i..` add in room `left`.
    fn fractional(&self, i: usize, left: &[i64]) -> f64 {
        self.resources
            .iter()
            .enumerate()
            .map(|(j, r)| left[*r].max(0) as f64 * self.suffix[i][j])
            .fold(f64::INFINITY, f64::min)
    }

    fn go(&mut self, i: usize, left: &mut [i64], value: f64) {
        self.nodes += 1;
        if value > self.best {
            self.best = value;
            self.pattern.clone_from(&self.current);
        }
        if i == self.order.len() || self.nodes > self.limit {
            return;
        }
        if value + self.fractional(i, left) <= self.best * (1.0 + 1e-12) {
            return;
        }
        let (class, v) = self.order[i];
        let q = self.requests[class];
        let most = fit(q, left).min(self.demand[class]);
        for n in (0..=most).rev() {
            for (l, q) in left.iter_mut().zip(q) {
                *l -= n * q;
            }
            self.current[i] = n;
            self.go(i + 1, left, value + n as f64 * v);
            self.current[i] = 0;
            for (l, q) in left.iter_mut().zip(q) {
                *l += n * q;
            }
            if self.nodes > self.limit {
                return;
            }
        }
    }
}

impl Engine<'_> {
    /// Whether pods of class `c` can move between new nodes with no check but resources and
    /// compatible types (see the module docs).
    fn free(&self, c: usize) -> bool {
        let k = &self.classes[c];
        k.pod.host_ports.is_empty()
            && k.host_spread.is_empty()
            && k.host_anti.is_empty()
            && k.host_affinity.is_empty()
            && k.domain_constraints.is_empty()
            && k.domain_keys.is_empty()
            && k.pin_keys.is_empty()
            && k.counted_in.is_empty()
            && k.owned_antis.is_empty()
            && k.repelled_by.is_empty()
            // Counted per node under a spot blast radius.
            && k.workload.is_none()
    }

    /// The price `finish` would pay for a claim of `pool`/`ct` in `zone_mask` holding `used`:
    /// the cheapest of the `compatible` types that holds it (infinite if none).
    fn holding_price(
        &self,
        memo: &mut PriceMemo,
        compatible: &Bitset,
        ct: CapacityType,
        zone_mask: u64,
        used: &[i64],
    ) -> f64 {
        let key = (compatible.clone(), zone_mask, used.to_vec());
        if let Some(p) = memo.get(&key) {
            return *p;
        }
        let price = compatible
            .iter()
            .filter_map(|t| {
                let ty = &self.catalog.types[t];
                let zones = ty.zones(ct) & zone_mask;
                (zones != 0 && used.iter().zip(&ty.allocatable).all(|(u, a)| u <= a))
                    .then(|| ty.cheapest(ct, zones))
            })
            .fold(f64::INFINITY, f64::min);
        memo.insert(key, price);
        price
    }

    /// Step 6b: repacks the claims that hold only free classes' pods where the pattern plan is
    /// cheaper (see the module docs).
    pub(super) fn pack_patterns(&mut self) {
        let mut class_of = vec![usize::MAX; self.input.pods.len()];
        for (c, class) in self.classes.iter().enumerate() {
            for &m in &class.members[..class.next] {
                class_of[m] = c;
            }
        }
        let free: Vec<bool> = (0..self.classes.len()).map(|c| self.free(c)).collect();
        let mut buckets: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let Some(claim) = node.opened() else { continue };
            if claim.capacity_type == CapacityType::Reserved
                || !self.catalog.pools[claim.pool]
                    .budget
                    .unlimited_for(claim.capacity_type)
                || node.pods.is_empty()
                || node.pods.iter().any(|p| !free[class_of[*p]])
            {
                continue;
            }
            let ct = super::interning::capacity_type_index(claim.capacity_type);
            buckets.entry((claim.pool, ct)).or_default().push(n);
        }
        let mut removed: Vec<usize> = Vec::new();
        let mut memo = PriceMemo::default();
        let mut work = PATTERN_WORK;
        let mut added: Vec<(usize, CapacityType, u64, NodePlan)> = Vec::new();
        for ((pi, _), nodes) in buckets {
            let Some(first) = self.nodes[nodes[0]].opened() else {
                continue;
            };
            let ct = first.capacity_type;
            let greedy: f64 = nodes
                .iter()
                .filter_map(|n| {
                    let node = &self.nodes[*n];
                    node.opened().map(|claim| {
                        self.holding_price(
                            &mut memo,
                            &claim.compatible,
                            ct,
                            claim.zone_mask,
                            &node.used,
                        )
                    })
                })
                .sum();
            // Pods per class, in node order; classes per zone mask.
            let mut pods: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for &n in &nodes {
                for &p in &self.nodes[n].pods {
                    pods.entry(class_of[p]).or_default().push(p);
                }
            }
            let pool_mask = self.catalog.pools[pi].zone_mask;
            let mut by_mask: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for &c in pods.keys() {
                by_mask
                    .entry(self.classes[c].zone_mask & pool_mask)
                    .or_default()
                    .push(c);
            }
            // Buckets the greedy already packs within [`CLOSE_ENOUGH`] of a bound stay.
            let mut groups = Vec::new();
            let mut bound = 0.0;
            for (mask, classes) in by_mask {
                let Some(kinds) = self.group_kinds(pi, ct, mask, &classes) else {
                    bound = f64::INFINITY;
                    break;
                };
                let demand: Vec<i64> = classes.iter().map(|c| pods[c].len() as i64).collect();
                bound += resource_bound(&demand, &self.requests_of(&classes), &kinds);
                groups.push((mask, classes, kinds));
            }
            if greedy <= bound * (1.0 + CLOSE_ENOUGH) || !bound.is_finite() {
                continue;
            }
            let moved: usize = pods.values().map(Vec::len).sum();
            let mut bucket_work = work.min(moved.saturating_mul(WORK_PER_POD));
            let before = bucket_work;
            let mut cost = 0.0;
            let mut plan = Vec::new();
            for (mask, classes, kinds) in groups {
                let group = Group {
                    pool: pi,
                    ct,
                    mask,
                    classes: &classes,
                    kinds: &kinds,
                };
                match self.pack_group(&group, &pods, &mut memo, &mut bucket_work) {
                    Some((c, nodes)) => {
                        cost += c;
                        plan.extend(nodes.into_iter().map(|node| (pi, ct, mask, node)));
                    }
                    None => cost = f64::INFINITY,
                }
            }
            work -= before - bucket_work;
            if cost < greedy * (1.0 - 1e-9) {
                removed.extend(nodes);
                added.extend(plan);
            }
        }
        if removed.is_empty() {
            return;
        }
        let mut gone = vec![false; self.nodes.len()];
        for &n in &removed {
            gone[n] = true;
            if let Some(claim) = self.nodes[n].opened() {
                let capacity = &self.catalog.types[claim.target_type].capacity;
                let (pool, ct) = (claim.pool, claim.capacity_type);
                self.catalog.pools[pool].budget.refund(capacity, ct);
            }
        }
        let mut index = 0;
        self.nodes.retain(|_| {
            index += 1;
            !gone[index - 1]
        });
        // Node indices moved: the per-index shrink memo and room summaries no longer apply.
        self.caches.shrink.clear();
        self.caches.room.reset();
        for (pi, ct, mask, (t, held)) in added {
            let zones = self.catalog.types[t].zones(ct) & mask;
            let n = self.create(held[0].0, pi, t, ct, zones, None);
            for (c, pods) in held {
                let class = &self.classes[c];
                let node = &mut self.nodes[n];
                node.version += 1;
                self.caches.room.touch(n);
                for (u, r) in node.used.iter_mut().zip(&class.requests) {
                    *u += r * pods.len() as i64;
                }
                node.pods.extend_from_slice(&pods);
                if let NodeOrigin::New(claim) = &mut node.origin
                    && let Some(b) = &class.compatible[claim.pool]
                {
                    claim.compatible.and_with(b);
                }
            }
        }
        // Name the new claims `<pool>-1`, `<pool>-2`, ... again, in node order.
        let mut counters = vec![0usize; self.catalog.pools.len()];
        for node in &mut self.nodes {
            if let NodeOrigin::New(claim) = &node.origin {
                counters[claim.pool] += 1;
                node.name = format!(
                    "{}-{}",
                    self.catalog.pools[claim.pool].pool.name, counters[claim.pool]
                );
            }
        }
        for (pool, n) in self.catalog.pools.iter_mut().zip(counters) {
            pool.claims = n;
        }
    }

    /// Requests per pod of each of the `classes`.
    fn requests_of(&self, classes: &[usize]) -> Vec<&[i64]> {
        classes
            .iter()
            .map(|c| self.classes[*c].requests.as_slice())
            .collect()
    }

    /// The kinds a group of `classes` may be packed on in pool `pi` as `ct` in `mask`: every
    /// type compatible with one of them, offered there, and not beaten by another.
    fn group_kinds(
        &self,
        pi: usize,
        ct: CapacityType,
        mask: u64,
        classes: &[usize],
    ) -> Option<Vec<Kind>> {
        let compatible: Vec<&Bitset> = classes
            .iter()
            .map(|c| self.classes[*c].compatible[pi].as_ref())
            .collect::<Option<_>>()?;
        let requests = self.requests_of(classes);
        let mut union = compatible.first()?.to_owned().clone();
        for b in &compatible[1..] {
            union.or_with(b);
        }
        let mut kinds: Vec<Kind> = Vec::new();
        for t in union.iter() {
            let ty = &self.catalog.types[t];
            let zones = ty.zones(ct) & mask;
            let price = ty.cheapest(ct, zones);
            if zones == 0 || !price.is_finite() || price <= 0.0 {
                continue;
            }
            let holds: Vec<bool> = compatible
                .iter()
                .zip(&requests)
                .map(|(b, q)| b.contains(t) && fit(q, &ty.allocatable) > 0)
                .collect();
            if holds.iter().any(|h| *h) {
                kinds.push(Kind {
                    type_index: t,
                    price,
                    allocatable: ty.allocatable.clone(),
                    holds,
                });
            }
        }
        Some(undominated(kinds))
    }

    /// The pattern plan of one group (pods `pods[c]` of each class): its price as `finish` buys
    /// it, and its nodes (type, pods per class).
    fn pack_group(
        &self,
        group: &Group,
        pods: &BTreeMap<usize, Vec<usize>>,
        memo: &mut PriceMemo,
        work: &mut usize,
    ) -> Option<(f64, Vec<NodePlan>)> {
        let Group {
            pool: pi,
            ct,
            mask,
            classes,
            kinds,
        } = *group;
        let compatible: Vec<&Bitset> = classes
            .iter()
            .map(|c| self.classes[*c].compatible[pi].as_ref())
            .collect::<Option<_>>()?;
        let requests = self.requests_of(classes);
        let demand: Vec<i64> = classes.iter().map(|c| pods[c].len() as i64).collect();
        let plan = pattern_plan(&demand, &requests, kinds, work)?;
        // Hand out the pods, node by node.
        let mut next = vec![0usize; classes.len()];
        let mut cost = 0.0;
        let mut out = Vec::new();
        for nodes in plan {
            let kind = &kinds[nodes.kind];
            for _ in 0..nodes.copies {
                let mut held = Vec::new();
                let mut used = vec![0i64; kind.allocatable.len()];
                let zones = self.catalog.types[kind.type_index].zones(ct) & mask;
                let mut compat = compatible[0].clone();
                for (i, &c) in classes.iter().enumerate() {
                    let take = (nodes.count[i].max(0) as usize).min(demand[i] as usize - next[i]);
                    if take == 0 {
                        continue;
                    }
                    let list = pods[&c][next[i]..next[i] + take].to_vec();
                    next[i] += take;
                    for (u, r) in used.iter_mut().zip(requests[i]) {
                        *u += r * take as i64;
                    }
                    compat.and_with(compatible[i]);
                    held.push((c, list));
                }
                if held.is_empty() {
                    continue;
                }
                cost += self.holding_price(memo, &compat, ct, zones, &used);
                out.push((kind.type_index, held));
            }
        }
        if next.iter().zip(&demand).any(|(n, d)| *n as i64 != *d) {
            return None;
        }
        Some((cost, out))
    }
}

/// The kinds no other kind beats: one that holds at least the same classes, at no higher price,
/// with at least as much of every resource (the first of equals stays).
fn undominated(kinds: Vec<Kind>) -> Vec<Kind> {
    let beats = |o: &Kind, k: &Kind| {
        o.price <= k.price
            && o.holds.iter().zip(&k.holds).all(|(a, b)| *a || !*b)
            && o.allocatable
                .iter()
                .zip(&k.allocatable)
                .all(|(a, b)| a >= b)
    };
    // In this order a kind can only be beaten by kinds before it, and beating is transitive,
    // so checking against the kept ones suffices.
    let size = |k: &Kind| {
        (
            k.holds.iter().filter(|h| **h).count(),
            k.allocatable.iter().map(|a| *a as i128).sum::<i128>(),
        )
    };
    let mut order: Vec<usize> = (0..kinds.len()).collect();
    order.sort_by(|a, b| {
        kinds[*a]
            .price
            .total_cmp(&kinds[*b].price)
            .then_with(|| size(&kinds[*b]).cmp(&size(&kinds[*a])))
            .then(a.cmp(b))
    });
    let mut keep = vec![false; kinds.len()];
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if !kept.iter().any(|o| beats(&kinds[*o], &kinds[i])) {
            kept.push(i);
            keep[i] = true;
        }
    }
    kinds
        .into_iter()
        .zip(keep)
        .filter_map(|(k, keep)| keep.then_some(k))
        .collect()
}

/// A lower bound on any cover of `demand` by `kinds`: per resource, every pod's request at the
/// lowest price per unit of that resource among the kinds that hold its class; the largest.
fn resource_bound(demand: &[i64], requests: &[&[i64]], kinds: &[Kind]) -> f64 {
    let resources = requests.first().map_or(0, |q| q.len());
    (0..resources)
        .map(|r| {
            demand
                .iter()
                .enumerate()
                .map(|(c, n)| {
                    let q = requests[c][r];
                    if q <= 0 || *n <= 0 {
                        return 0.0;
                    }
                    let per_unit = kinds
                        .iter()
                        .filter(|k| k.holds[c] && k.allocatable[r] > 0)
                        .map(|k| k.price / k.allocatable[r] as f64)
                        .fold(f64::INFINITY, f64::min);
                    *n as f64 * q as f64 * per_unit
                })
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::karpenter_type;
    use crate::model::resource;
    use crate::{InstanceType, PodRequest, PoolSpec, Resources, SolveInput, SolveOptions, solve};
    use stowage_api::labels;

    /// A type of `cpu` vCPU and `gib` GiB at `price` for every offering.
    fn ty(name: &str, cpu: i64, gib: i64, price: f64) -> InstanceType {
        let mut t = karpenter_type(0);
        t.name = name.to_string();
        t.labels
            .insert(labels::INSTANCE_TYPE.to_string(), name.to_string());
        t.capacity = Resources::new()
            .with(resource::CPU, cpu * 1000)
            .with(resource::MEMORY, gib << 30)
            .with(resource::PODS, 100);
        for o in &mut t.offerings {
            o.price_per_hour = price;
        }
        t
    }

    /// 10 cpu-heavy pods (3 vCPU, 1 GiB) and 10 memory-heavy ones (1 vCPU, 3 GiB), of different
    /// shapes (so not one bundle); types that hold two of one kind at $1, or one of each at $0.9.
    fn complementary(pool: PoolSpec) -> SolveInput {
        let mut pods = Vec::new();
        for i in 0..10 {
            pods.push(
                PodRequest::new("default", &format!("cpu-{i:02}"))
                    .cpu_millis(3000)
                    .memory_mib(1024)
                    .label("app", "cpu"),
            );
            pods.push(
                PodRequest::new("default", &format!("mem-{i:02}"))
                    .cpu_millis(1000)
                    .memory_mib(3072)
                    .label("app", "mem"),
            );
        }
        SolveInput {
            pods: pods.into_iter().map(std::sync::Arc::new).collect(),
            nodepools: vec![pool],
            instance_types: vec![ty("c", 6, 2, 1.0), ty("m", 2, 6, 1.0), ty("b", 4, 4, 0.9)],
            ..SolveInput::default()
        }
    }

    #[test]
    fn pairs_complementary_classes_on_one_type() {
        let plan = solve(
            &complementary(PoolSpec::new("default")),
            &SolveOptions::default(),
        );
        assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
        // The greedy packs each class alone (5 "c" and 5 "m", $10); pairs cost $9.
        assert_eq!(plan.new_claims.len(), 10);
        assert!((plan.cost_per_hour() - 9.0).abs() < 1e-9, "{plan:?}");
        for c in &plan.new_claims {
            assert_eq!(c.instance_type_options[0], "b");
            assert_eq!(c.pods.len(), 2);
            assert!(c.pods.iter().any(|p| p.to_string().contains("cpu-")));
            assert!(c.pods.iter().any(|p| p.to_string().contains("mem-")));
        }
        let names: Vec<&str> = plan.new_claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[0], "default-1");
        assert_eq!(names[9], "default-10");
    }

    #[test]
    fn leaves_limited_pools_to_the_greedy() {
        let pool = PoolSpec::new("default").limit(resource::CPU, 1_000_000);
        let plan = solve(&complementary(pool), &SolveOptions::default());
        assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
        // The greedy itself now pairs the two classes (one bundle: same pools, types, zones, and
        // a type suiting their sum is cheaper than each alone), so the limited pool gets the $9
        // plan without the pattern step (it used to get $10, each class alone).
        assert!((plan.cost_per_hour() - 9.0).abs() < 1e-9, "{plan:?}");
    }

    #[test]
    fn same_input_same_plan() {
        let mut input = complementary(PoolSpec::new("default"));
        for i in 0..30 {
            input.pods.push(
                PodRequest::new("default", &format!("odd-{i:02}"))
                    .cpu_millis(500 + 250 * (i % 5))
                    .memory_mib(512 * (1 + i % 3))
                    .label("app", &format!("odd-{}", i % 4))
                    .into(),
            );
        }
        input.instance_types.extend((1..12).map(karpenter_type));
        let a = solve(&input, &SolveOptions::default());
        let b = solve(&input, &SolveOptions::default());
        assert_eq!(a, b);
        assert!(a.unschedulable.is_empty(), "{:?}", a.unschedulable);
    }

    #[test]
    fn the_lp_pairs_what_fits_together() {
        let a: &[i64] = &[3, 1];
        let b: &[i64] = &[1, 3];
        let kind = |type_index, price, allocatable: Vec<i64>| Kind {
            type_index,
            price,
            allocatable,
            holds: vec![true, true],
        };
        let kinds = vec![
            kind(0, 1.0, vec![6, 2]),
            kind(1, 1.0, vec![2, 6]),
            kind(2, 0.9, vec![4, 4]),
        ];
        let mut work = PATTERN_WORK;
        let plan = pattern_plan(&[7, 7], &[a, b], &kinds, &mut work).unwrap();
        assert_eq!(
            plan,
            vec![PatternNodes {
                kind: 2,
                count: vec![1, 1],
                copies: 7
            }]
        );
        // A class no kind holds has no plan.
        let none = vec![kind(0, 1.0, vec![2, 2])];
        assert!(pattern_plan(&[1, 0], &[a, b], &none, &mut work).is_none());
    }

    #[test]
    fn rounding_covers_every_pod() {
        let a: &[i64] = &[3, 1];
        let b: &[i64] = &[1, 3];
        let c: &[i64] = &[2, 2];
        let kinds = vec![
            Kind {
                type_index: 0,
                price: 1.0,
                allocatable: vec![8, 8],
                holds: vec![true, true, true],
            },
            Kind {
                type_index: 1,
                price: 0.3,
                allocatable: vec![2, 2],
                holds: vec![false, false, true],
            },
        ];
        let demand = [13, 5, 9];
        let mut work = PATTERN_WORK;
        let plan = pattern_plan(&demand, &[a, b, c], &kinds, &mut work).unwrap();
        for (i, d) in demand.iter().enumerate() {
            let covered: i64 = plan.iter().map(|p| p.count[i] * p.copies).sum();
            assert!(covered >= *d, "class {i}: {covered} < {d} in {plan:?}");
        }
        for p in &plan {
            let used: Vec<i64> = (0..2)
                .map(|r| [a, b, c].iter().zip(&p.count).map(|(q, n)| q[r] * n).sum())
                .collect();
            assert!(
                used.iter()
                    .zip(&kinds[p.kind].allocatable)
                    .all(|(u, a)| u <= a)
            );
        }
    }
}
