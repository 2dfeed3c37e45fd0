//! Why pods stay unschedulable: per pool, the first thing that rules it out for a class (set
//! when the class is built, [`PoolRejection`]) or that stopped the last claim from opening
//! (limits, on-demand cap, offerings); topology reasons take precedence.

use stowage_api::quantity::format_resource;

use super::Engine;
use crate::model::Resources;

/// Why a pool cannot take a pod of a class.
#[derive(Debug, Clone)]
pub(super) enum PoolRejection {
    /// A taint the pod does not tolerate (as text).
    Taint(String),
    /// No type matches the pod's node requirements on this key.
    Requirements(String),
    TooBig,
    NoOffering,
    /// A limit reached (as text: `cpu 100`).
    Limit(String),
    /// Spot unavailable and the on-demand cap (percent) reached.
    OnDemandCap(u32),
    /// Fewer distinct values than `minValues` on a key can hold the pod.
    MinValues(String, i32),
}

fn fmt_requests(r: &Resources) -> String {
    r.0.iter()
        .map(|(k, v)| format!("{k}={}", format_resource(k, *v)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PoolRejection {
    fn text(&self, requests: &Resources) -> String {
        match self {
            PoolRejection::Taint(t) => format!("taint {t} not tolerated"),
            PoolRejection::Requirements(k) => {
                format!("no instance type matches the pod's node selector/affinity on {k}")
            }
            PoolRejection::TooBig => format!(
                "no instance type has room for requests {}",
                fmt_requests(requests)
            ),
            PoolRejection::NoOffering => {
                "no available offering in the allowed zones and capacity types".to_string()
            }
            PoolRejection::Limit(l) => format!("limit {l} reached"),
            PoolRejection::MinValues(key, mv) => {
                format!("fewer than {mv} distinct {key} values can hold the pod (minValues)")
            }
            PoolRejection::OnDemandCap(pct) => {
                format!("spot unavailable and on-demand cap {pct}% of pool reached")
            }
        }
    }
}

impl Engine<'_> {
    /// Why the remaining pods of class `c` cannot be placed.
    pub(super) fn reason(&self, c: usize) -> String {
        let class = &self.classes[c];
        if let Some(t) = &class.topology_reason {
            return t.clone();
        }
        if self.catalog.pools.is_empty() {
            return "no NodePool exists and no existing node fits".into();
        }
        let per_pool: Vec<(&str, PoolRejection)> = self
            .catalog
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = class.pool_rejections[i]
                    .clone()
                    .or_else(|| self.pool_failures[i].clone())
                    .unwrap_or(PoolRejection::NoOffering);
                (p.pool.name.as_str(), r)
            })
            .collect();
        if let Some((_, PoolRejection::Taint(t))) = per_pool.first()
            && per_pool
                .iter()
                .all(|(_, r)| matches!(r, PoolRejection::Taint(_)))
        {
            return format!("no NodePool tolerates taint {t}");
        }
        per_pool
            .iter()
            .map(|(name, r)| format!("NodePool {name}: {}", r.text(&class.pod.requests)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
