//! The fleet metrics: per NodePool and capacity type, the nodes, their allocatable and
//! requested resources, and their cost per hour; each NodePool's on-demand cap (`capacityMix`);
//! plus the pending-pod and synced gauges.

use std::collections::BTreeMap;

use kube::ResourceExt;
use stowage_api::quantity::parse_resource;

use crate::context::Context;
use crate::metrics::FleetSample;
use crate::nodeclaim::claim_capacity_type;

/// Recomputes the per-nodepool fleet gauges (nodes, allocatable, requested, cost per hour).
pub fn update_fleet_metrics(ctx: &Context) {
    let state = ctx.state();
    // Keyed by the state's strings while counting (no copies per claim).
    let mut by_key: BTreeMap<(&str, &str), FleetSample> = BTreeMap::new();
    ctx.metrics
        .pending_pods
        .set(state.pending_pods(ctx.clock.now()).len() as i64);
    ctx.metrics
        .cluster_state_synced
        .set(i64::from(state.is_synced()));
    for claim in state
        .claims()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
    {
        let pool = claim.nodepool_name().unwrap_or("");
        let ct = claim_capacity_type(claim);
        let ct_name = ct.map_or("", |c| c.as_str());
        let sample = by_key.entry((pool, ct_name)).or_default();
        let Some(node) = state.claim_node(claim) else {
            continue;
        };
        sample.nodes += 1;
        for (k, q) in node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .into_iter()
            .flatten()
        {
            if let Ok(v) = parse_resource(k, &q.0) {
                add(&mut sample.allocatable, k, scaled(k, v));
            }
        }
        let name = node.metadata.name.as_deref().unwrap_or_default();
        for pod in state.pods_on_node_iter(name) {
            if pod.is_terminal() {
                continue;
            }
            let Some(pod) = pod.request() else {
                continue;
            };
            for (k, v) in &pod.requests.0 {
                add(&mut sample.requested, k, scaled(k, *v));
            }
        }
        let it = claim.label(stowage_api::labels::INSTANCE_TYPE);
        let zone = claim.label(stowage_api::labels::ZONE);
        if let (Some(it), Some(zone), Some(ct)) = (it, zone, ct) {
            sample.cost_per_hour += ctx.price(it, zone, ct).unwrap_or(0.0);
        }
    }
    let samples: BTreeMap<(String, String), FleetSample> = by_key
        .into_iter()
        .filter(|(_, s)| s.nodes > 0)
        .map(|((pool, ct), s)| ((pool.to_string(), ct.to_string()), s))
        .collect();
    ctx.metrics.set_fleet(&samples);
    let caps: Vec<(String, f64, i64)> = state
        .nodepools()
        .map(|pool| {
            let mix = pool.capacity_mix();
            let base = mix
                .on_demand_base
                .as_ref()
                .and_then(|q| parse_resource("cpu", &q.0).ok())
                .map_or(0.0, |m| scaled("cpu", m));
            (
                pool.name_any(),
                base,
                i64::from(mix.on_demand_percent_above_base),
            )
        })
        .collect();
    ctx.metrics
        .set_on_demand_caps(caps.iter().map(|(p, b, pct)| (p.as_str(), *b, *pct)));
}

/// Adds `v` to `map[k]`, copying the name only the first time.
fn add(map: &mut BTreeMap<String, f64>, k: &str, v: f64) {
    match map.get_mut(k) {
        Some(total) => *total += v,
        None => {
            map.insert(k.to_string(), v);
        }
    }
}

/// CPU in cores, the rest as is.
fn scaled(name: &str, v: i64) -> f64 {
    if name == "cpu" {
        v as f64 / 1000.0
    } else {
        v as f64
    }
}
