//! Step 7, finishing claims: every opened claim that holds pods becomes a [`NewClaim`]. Its
//! instance type options are every compatible type that fits what it holds (so a claim that
//! ended up half full is bought smaller), never larger than the charged type on a budgeted
//! resource, carrying the labels it was pinned to, cheapest first, trimmed to
//! `max_instance_types` while keeping the pool's `minValues`; its requirements pin pool,
//! types, zones and capacity type.

use std::collections::BTreeSet;

use stowage_api::requirements::{Operator, Requirement};
use stowage_api::{CapacityType, labels};

use super::Engine;
use super::interning::Ids;
use super::interning::KeyKind;
use super::interning::capacity_type_index;
use super::place::{NodeOrigin, OpenedClaim, SimNode};
use super::pools::PoolType;
use crate::bitset::Bitset;
use crate::domain::{NewClaim, Plan};
use crate::hash::FastMap;

/// One instance type a claim may launch as.
#[derive(Debug, Clone, Copy)]
struct TypeOption {
    price: f64,
    type_index: usize,
    zone_mask: u64,
}

/// Everything a claim's instance type options depend on ([`Engine::type_options`] and
/// [`Engine::trim_options`]): claims alike in all of it (the copies of one packing pattern, say)
/// list the same options, computed once.
#[derive(PartialEq, Eq, Hash)]
struct OptionsKey<'n> {
    pool: usize,
    capacity_type: usize,
    zone_mask: u64,
    target_type: usize,
    compatible: &'n Bitset,
    used: &'n [i64],
    pinned: Vec<(String, String)>,
}

/// Claims are built on two threads from this many on (below it a thread costs more than it
/// saves; consolidation probes finish small plans many times).
const PARALLEL_CLAIMS: usize = 256;

/// What building a claim reads, apart from the engine's single-threaded parts (budgets,
/// caches): shared by the threads that build the claims.
struct ClaimContext<'e, 'a> {
    ids: &'e Ids,
    types: &'e [PoolType<'a>],
    pools: Vec<PoolView<'a>>,
    pod_keys: &'e [String],
    max_instance_types: usize,
}

/// A pool as its claims are written: its spec and, per capacity type index, the resources its
/// budget caps (a claim's options never exceed its charged type on them).
struct PoolView<'a> {
    pool: &'a crate::domain::PoolSpec,
    ceilings: [Vec<usize>; 3],
}

impl Engine<'_> {
    /// Step 7: the plan. The claims are built on two threads when there are many (each thread
    /// takes a contiguous half, in node order, so the plan is the same whatever the timing),
    /// while a third drops what the plan does not need (classes, caches, topology counts).
    pub(super) fn finish(mut self) -> Plan {
        let mut plan = Plan {
            unschedulable: std::mem::take(&mut self.unschedulable),
            ..Plan::default()
        };
        let mut claims = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            match &node.origin {
                NodeOrigin::Existing { index } => {
                    for &p in &node.pods {
                        plan.existing_placements
                            .insert(self.pod_keys[p].clone(), self.existing[*index].name.clone());
                    }
                }
                NodeOrigin::New(_) => {
                    if !node.pods.is_empty() {
                        claims.push(n);
                    }
                }
            }
        }
        let spare = (
            std::mem::take(&mut self.classes),
            std::mem::take(&mut self.caches),
            std::mem::take(&mut self.topology),
            std::mem::take(&mut self.bundles),
        );
        let cx = ClaimContext {
            ids: &self.ids,
            types: &self.catalog.types,
            pools: self
                .catalog
                .pools
                .iter()
                .map(|p| PoolView {
                    pool: p.pool,
                    ceilings: CapacityType::ALL.map(|ct| p.budget.ceiling(ct)),
                })
                .collect(),
            pod_keys: &self.pod_keys,
            max_instance_types: self.options.max_instance_types,
        };
        let nodes = &self.nodes;
        if claims.len() < PARALLEL_CLAIMS {
            drop(spare);
            plan.new_claims = cx.claims(nodes, &claims);
            return plan;
        }
        let (first, second) = claims.split_at(claims.len() / 2);
        plan.new_claims = std::thread::scope(|s| {
            s.spawn(move || drop(spare));
            let later = s.spawn(|| cx.claims(nodes, second));
            let mut out = cx.claims(nodes, first);
            match later.join() {
                Ok(more) => out.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            out
        });
        plan
    }
}

impl ClaimContext<'_, '_> {
    /// The claims of `nodes[n]` for each `n` of `claims`, in that order.
    fn claims(&self, nodes: &[SimNode], claims: &[usize]) -> Vec<NewClaim> {
        let mut memo: FastMap<OptionsKey, Vec<TypeOption>> = FastMap::default();
        claims
            .iter()
            .filter_map(|&n| {
                let node = &nodes[n];
                match &node.origin {
                    NodeOrigin::New(claim) => Some(self.claim(node, claim, &mut memo)),
                    NodeOrigin::Existing { .. } => None,
                }
            })
            .collect()
    }

    fn claim<'n>(
        &self,
        node: &'n SimNode,
        claim: &'n OpenedClaim,
        memo: &mut FastMap<OptionsKey<'n>, Vec<TypeOption>>,
    ) -> NewClaim {
        let pool = &self.pools[claim.pool];
        let target = &self.types[claim.target_type];
        let pinned: Vec<(String, String)> = (0..self.ids.key_count())
            .filter(|k| self.ids.key_kind(*k) == KeyKind::Label)
            .filter_map(|k| {
                node.domain_values[k].map(|v| {
                    (
                        self.ids.key_name(k).to_string(),
                        self.ids.value_name(k, v).to_string(),
                    )
                })
            })
            .filter(|(k, v)| target.labels.get(k) == Some(v))
            .collect();
        let key = OptionsKey {
            pool: claim.pool,
            capacity_type: capacity_type_index(claim.capacity_type),
            zone_mask: claim.zone_mask,
            target_type: claim.target_type,
            compatible: &claim.compatible,
            used: &node.used,
            pinned: pinned.clone(),
        };
        let options = match memo.get(&key) {
            Some(options) => options.clone(),
            None => {
                let options = self.trim_options(pool, self.type_options(node, claim, &pinned));
                memo.entry(key).or_insert(options).clone()
            }
        };
        let names: Vec<String> = options
            .iter()
            .map(|o| self.types[o.type_index].name().to_string())
            .collect();
        let zone_mask = options.iter().fold(0u64, |m, o| m | o.zone_mask);
        let mut requests = node.used.clone();
        for (a, d) in requests.iter_mut().zip(&target.daemon_overhead) {
            *a += d;
        }
        NewClaim {
            name: node.name.clone(),
            nodepool: pool.pool.name.clone(),
            requirements: self.claim_requirements(pool, claim, &names, zone_mask, pinned),
            instance_type_options: names,
            pods: node
                .pods
                .iter()
                .map(|p| self.pod_keys[*p].clone())
                .collect(),
            requests: self.ids.to_resources(&requests),
            cheapest_price: options[0].price,
        }
    }

    /// Every compatible type that holds what the claim has, within the budget ceiling and the
    /// pinned labels, cheapest first (the target type alone if none).
    fn type_options(
        &self,
        node: &SimNode,
        claim: &OpenedClaim,
        pinned: &[(String, String)],
    ) -> Vec<TypeOption> {
        let ct = claim.capacity_type;
        let target = &self.types[claim.target_type];
        let ceiling = &self.pools[claim.pool].ceilings[capacity_type_index(ct)];
        let mut options: Vec<TypeOption> = Vec::new();
        for t in claim.compatible.iter() {
            let ty = &self.types[t];
            let zone_mask = ty.zones(ct) & claim.zone_mask;
            if node.used.iter().zip(&ty.allocatable).any(|(u, a)| u > a)
                || ceiling
                    .iter()
                    .any(|r| ty.capacity[*r] > target.capacity[*r])
                || pinned.iter().any(|(k, v)| ty.labels.get(k) != Some(v))
                || zone_mask == 0
            {
                continue;
            }
            options.push(TypeOption {
                price: ty.cheapest(ct, zone_mask),
                type_index: t,
                zone_mask,
            });
        }
        if options.is_empty() {
            // The target always fits what was packed; keep it as the only option.
            options.push(TypeOption {
                price: target.cheapest(ct, claim.zone_mask),
                type_index: claim.target_type,
                zone_mask: target.zones(ct) & claim.zone_mask,
            });
        }
        let types = self.types;
        options.sort_by(|a, b| {
            a.price
                .total_cmp(&b.price)
                .then_with(|| types[a.type_index].name().cmp(types[b.type_index].name()))
        });
        options
    }

    /// At most `max_instance_types` options, keeping the first that give each `minValues`
    /// requirement of the pool its distinct values, then the cheapest.
    fn trim_options(&self, pool: &PoolView, options: Vec<TypeOption>) -> Vec<TypeOption> {
        let max = self.max_instance_types.max(1);
        if options.len() <= max {
            return options;
        }
        let mut keep = vec![false; options.len()];
        for r in &pool.pool.requirements {
            let Some(min_values) = r.min_values else {
                continue;
            };
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            for (i, o) in options.iter().enumerate() {
                if seen.len() >= min_values.max(0) as usize {
                    break;
                }
                if let Some(v) = self.types[o.type_index].labels.get(&r.key)
                    && seen.insert(v)
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
        options
            .into_iter()
            .zip(keep)
            .filter_map(|(o, k)| k.then_some(o))
            .collect()
    }

    /// The claim's requirements: pool, instance types (with the pool's `minValues`), zones,
    /// capacity type, the pool's other requirements, pinned labels.
    fn claim_requirements(
        &self,
        pool: &PoolView,
        claim: &OpenedClaim,
        names: &[String],
        zone_mask: u64,
        pinned: Vec<(String, String)>,
    ) -> Vec<Requirement> {
        let zones: Vec<&str> = (0..self.ids.zones().len())
            .filter(|z| zone_mask & (1 << z) != 0)
            .map(|z| self.ids.zones()[z].as_str())
            .collect();
        let p = pool.pool;
        let mut reqs = vec![Requirement::in_(labels::NODEPOOL, [p.name.as_str()])];
        let mut types = Requirement::in_(labels::INSTANCE_TYPE, names.iter().map(String::as_str));
        types.min_values = p
            .requirements
            .iter()
            .find(|r| r.key == labels::INSTANCE_TYPE)
            .and_then(|r| r.min_values);
        reqs.push(types);
        reqs.push(Requirement::in_(labels::ZONE, zones));
        reqs.push(Requirement::in_(
            labels::CAPACITY_TYPE,
            [claim.capacity_type.as_str()],
        ));
        let own = [
            labels::NODEPOOL,
            labels::INSTANCE_TYPE,
            labels::ZONE,
            labels::CAPACITY_TYPE,
        ];
        reqs.extend(
            p.requirements
                .iter()
                .filter(|r| !own.contains(&r.key.as_str()))
                .cloned(),
        );
        for (k, v) in pinned {
            if !reqs
                .iter()
                .any(|r| r.key == k && r.operator == Operator::In && r.values == [v.clone()])
            {
                reqs.push(Requirement::in_(&k, [v.as_str()]));
            }
        }
        reqs
    }
}
