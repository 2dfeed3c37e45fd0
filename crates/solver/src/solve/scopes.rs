//! Scoped on-demand caps, settled on the finished plan. While placing, a scope is charged with
//! the type each claim was opened as ([`super::pools::PoolBudget`]); the finished claims may
//! launch as any of their options, and a spot claim that ended up half full lists smaller types.
//! So the plan is checked once more counting every spot (or reserved) claim of a scope as its
//! smallest option and every on-demand claim as its largest; while a scope is over its cap, its
//! last on-demand claim is dropped and its pods stay pending (the next solve, which sees the
//! nodes actually launched, may place them). With the cap not binding nothing changes.

use std::collections::{BTreeSet, HashMap};

use stowage_api::{CapacityType, labels};

use super::{CPU, Engine};
use crate::domain::{NewClaim, OnDemandCap, Plan};

/// What [`ScopeCheck::settle`] needs from the engine.
pub(super) struct ScopeCheck {
    /// Per scoped cap: the pool carrying it, the cap (with the scope's current usage) and the
    /// pools it covers.
    scopes: Vec<(String, OnDemandCap, BTreeSet<String>)>,
    /// (pool, instance type) -> vCPU millicores, for the pools of any scope.
    cpu: HashMap<(String, String), i64>,
}

fn claim_capacity_type(c: &NewClaim) -> Option<CapacityType> {
    let r = c
        .requirements
        .iter()
        .find(|r| r.key == labels::CAPACITY_TYPE)?;
    CapacityType::ALL
        .into_iter()
        .find(|ct| r.values.len() == 1 && r.values[0] == ct.as_str())
}

impl Engine<'_> {
    /// The check, when some pool has a scoped capacity mix.
    pub(super) fn scope_check(&self) -> Option<ScopeCheck> {
        let scopes: Vec<(String, OnDemandCap, BTreeSet<String>)> = self
            .input
            .nodepools
            .iter()
            .filter_map(|p| {
                let cap = p.capacity_mix.as_ref()?;
                let scope = cap.scope.as_ref()?;
                let mut pools: BTreeSet<String> = scope.pools.iter().cloned().collect();
                pools.insert(p.name.clone());
                Some((p.name.clone(), cap.clone(), pools))
            })
            .collect();
        if scopes.is_empty() {
            return None;
        }
        let mut cpu = HashMap::new();
        for pool in &self.catalog.pools {
            if !scopes.iter().any(|(_, _, s)| s.contains(&pool.pool.name)) {
                continue;
            }
            for &t in &pool.types {
                let ty = &self.catalog.types[t];
                cpu.insert(
                    (pool.pool.name.clone(), ty.name().to_string()),
                    ty.capacity[CPU],
                );
            }
        }
        Some(ScopeCheck { scopes, cpu })
    }
}

impl ScopeCheck {
    /// The smallest and largest vCPU millicores the claim may launch with.
    fn cpu_range(&self, c: &NewClaim) -> (i64, i64) {
        let cpus = c
            .instance_type_options
            .iter()
            .filter_map(|t| self.cpu.get(&(c.nodepool.clone(), t.clone())).copied());
        cpus.fold((i64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
    }

    /// Drops the last on-demand claims of every scope over its cap (see the module docs).
    pub(super) fn settle(&self, plan: &mut Plan) {
        for (owner, cap, pools) in &self.scopes {
            let Some(scope) = &cap.scope else { continue };
            loop {
                let mut on_demand = scope.on_demand_cpu_millis;
                let mut other = scope.other_cpu_millis;
                let mut last_on_demand = None;
                for (i, c) in plan.new_claims.iter().enumerate() {
                    if !pools.contains(&c.nodepool) {
                        continue;
                    }
                    let (lo, hi) = self.cpu_range(c);
                    if claim_capacity_type(c) == Some(CapacityType::OnDemand) {
                        on_demand += hi;
                        last_on_demand = Some(i);
                    } else if lo != i64::MAX {
                        other += lo;
                    }
                }
                let Some(i) = last_on_demand.filter(|_| cap.excess(on_demand, other) > 0) else {
                    break;
                };
                let dropped = plan.new_claims.remove(i);
                let reason = format!(
                    "NodePool {}: on-demand cap of NodePool {owner}'s capacityMix scope reached ({}% of the scope's spot and reserved vCPUs)",
                    dropped.nodepool, cap.on_demand_percent_above_base
                );
                for p in dropped.pods {
                    plan.unschedulable.insert(p, reason.clone());
                }
            }
        }
    }
}
