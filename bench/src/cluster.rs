//! A running, seed-shaped cluster for timing consolidation: nodes of mixed sizes from a
//! catalogue (spot, on-demand and GPU pools), every node running the node-agent DaemonSet and a
//! seeded share of the workload, 30 % of the nodes under-used; some nodes are blocked (a pod
//! whose PDB allows no disruption, or `do-not-disrupt`) and left out of the candidates, as the
//! disruption controller would; a few pods are still pending, some of which fit nowhere.
//!
//! Key decision: the cluster is built directly (not by solving the seed batch first), so every
//! shape the benchmark claims (sizes, utilisation, blocked share) is set here and seeded.

use std::collections::BTreeMap;

use stowage_api::CapacityType;
use stowage_api::labels;
use stowage_solver::consolidate::{Budgets, Candidate, Reason, disruption_cost, eviction_cost};
use stowage_solver::{
    ExistingNode, InstanceType, PodRequest, SolveInput, Toleration, WhenUnsatisfiable,
};

use crate::{Rng, seed_input};

/// The general-purpose families and sizes general nodes are drawn from (sizes weighted by
/// repetition: 2xlarge and 4xlarge are the most common).
const FAMILIES: [&str; 6] = ["m6i", "c6i", "r6i", "m7i", "m6a", "c7i"];
const SIZES: [&str; 8] = [
    "xlarge", "2xlarge", "2xlarge", "4xlarge", "4xlarge", "4xlarge", "8xlarge", "12xlarge",
];
const GPU_TYPES: [&str; 3] = ["g5.xlarge", "g5.2xlarge", "g5.4xlarge"];

/// What [`consolidation_cluster`] built.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub input: SolveInput,
    /// Eligible nodes, cheapest to move first.
    pub candidates: Vec<Candidate>,
    /// 10 % of each pool's nodes (rounded up), per reason: NodePools' default budget.
    pub budgets: Budgets,
    /// Nodes left out because a pod's PDB allows no disruption or something is `do-not-disrupt`.
    pub blocked: usize,
    /// Workload pods on nodes (DaemonSet pods not counted).
    pub running_pods: usize,
}

/// `nodes` nodes running `pods` workload pods (plus one DaemonSet pod each), seeded; see the
/// module docs. Types not found in `catalog` are skipped; panics only if none is found.
pub fn consolidation_cluster(
    nodes: usize,
    pods: usize,
    catalog: Vec<InstanceType>,
    seed: u64,
) -> Cluster {
    let mut rng = Rng::new(seed);
    let general: Vec<&InstanceType> = FAMILIES
        .iter()
        .flat_map(|f| SIZES.iter().map(move |s| format!("{f}.{s}")))
        .filter_map(|name| catalog.iter().find(|t| t.name == name))
        .collect();
    let gpu: Vec<&InstanceType> = GPU_TYPES
        .iter()
        .filter_map(|name| catalog.iter().find(|t| t.name == *name))
        .collect();
    assert!(
        !general.is_empty(),
        "no general-purpose type in the catalogue"
    );
    let mut input = seed_input(0, Vec::new());
    input.pods = Vec::new();

    // Per node: pool, type, capacity type, whether under-used, workload pod count.
    struct Shape<'a> {
        pool: &'static str,
        ty: &'a InstanceType,
        ct: CapacityType,
        under: bool,
        count: usize,
    }
    let mut shapes: Vec<Shape> = (0..nodes)
        .map(|i| {
            let roll = rng.next_u64() % 100;
            let (pool, ty, ct) = if roll < 4 && !gpu.is_empty() {
                ("gpu", rng.pick(&gpu), CapacityType::OnDemand)
            } else if roll < 35 {
                ("on-demand", rng.pick(&general), CapacityType::OnDemand)
            } else {
                ("spot", rng.pick(&general), CapacityType::Spot)
            };
            Shape {
                pool,
                ty,
                ct,
                under: i % 10 < 3,
                count: 0,
            }
        })
        .collect();
    // Under-used nodes hold 1-3 pods; the rest share what is left in proportion to their CPU.
    let mut left = pods;
    for s in shapes.iter_mut().filter(|s| s.under) {
        s.count = (1 + (rng.next_u64() % 3) as usize).min(left);
        left -= s.count;
    }
    let busy_cpu: i64 = shapes
        .iter()
        .filter(|s| !s.under)
        .map(|s| s.ty.allocatable().cpu_millis())
        .sum();
    let mut given = 0;
    let busy: Vec<usize> = (0..shapes.len()).filter(|i| !shapes[*i].under).collect();
    for &i in &busy {
        let share = shapes[i].ty.allocatable().cpu_millis() as f64 / busy_cpu.max(1) as f64;
        shapes[i].count = ((left as f64) * share).floor() as usize;
        given += shapes[i].count;
    }
    for k in 0..left.saturating_sub(given) {
        if let Some(&i) = busy.get(k % busy.len().max(1)) {
            shapes[i].count += 1;
        }
    }

    let mut out_nodes = Vec::with_capacity(nodes);
    let mut running_pods = 0;
    let mut blocked_names = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let name = format!("node-{i:05}");
        let offerings: Vec<_> =
            s.ty.offerings
                .iter()
                .filter(|o| o.available && o.capacity_type == s.ct)
                .collect();
        let Some(offering) = offerings
            .get((rng.next_u64() % offerings.len().max(1) as u64) as usize)
            .copied()
        else {
            continue;
        };
        let alloc = s.ty.allocatable();
        let mut n = ExistingNode::new(&name, alloc.clone());
        n.capacity = s.ty.capacity.clone();
        n.labels.extend(s.ty.labels.clone());
        n.labels.insert(labels::ZONE.into(), offering.zone.clone());
        n.labels
            .insert(labels::CAPACITY_TYPE.into(), s.ct.as_str().into());
        n.labels.insert(labels::NODEPOOL.into(), s.pool.into());
        n.labels
            .insert(labels::INSTANCE_TYPE.into(), s.ty.name.clone());
        if let Some(p) = input.nodepools.iter().find(|p| p.name == s.pool) {
            n.taints = p.taints.clone();
        }
        n.nodepool = Some(s.pool.into());
        n.capacity_type = Some(s.ct);
        n.instance_type = Some(s.ty.name.clone());
        n.price_per_hour = Some(offering.price_per_hour);
        let mut agent = PodRequest::new("kube-system", &format!("node-agent-{i:05}"))
            .cpu_millis(100)
            .memory_mib(128)
            .toleration(Toleration::exists("", None));
        agent.owner = Some("DaemonSet/node-agent".into());
        n.pods.push(agent.into());

        // Pod sizes: the node's target share of CPU and memory split over its pods.
        let fill = if s.under {
            0.08 + 0.17 * unit(&mut rng)
        } else {
            0.6 + 0.3 * unit(&mut rng)
        };
        let cpu_budget = ((alloc.cpu_millis() - 100) as f64 * fill) as i64;
        let mem_budget = ((alloc.memory_bytes() >> 20) - 128) as f64 * fill;
        let count = s.count.max(1) as i64;
        let (mut cpu_left, mut mem_left) = (cpu_budget, mem_budget as i64);
        for k in 0..s.count {
            // Sizes vary around the node's average; never more than leaves 50m/64Mi for each
            // pod still to come.
            let after = (s.count - k - 1) as i64;
            let cpu = ((cpu_budget / count) as f64 * (0.6 + 0.8 * unit(&mut rng))) as i64;
            let cpu = cpu.min(cpu_left - 50 * after).max(50) / 50 * 50;
            let mem = ((mem_budget / count as f64) * (0.6 + 0.8 * unit(&mut rng))) as i64;
            let mem = mem.min(mem_left - 64 * after).max(64);
            cpu_left -= cpu;
            mem_left -= mem;
            let (ns, app, kind) = match (s.pool, rng.next_u64() % 20) {
                ("gpu", _) => ("ml", "inference", 3),
                ("on-demand", 0..=5) => ("payments", "payments", 2),
                (_, 0) => ("web", "web", 1),
                (_, 1..=6) => ("spark", "spark-executor", 0),
                _ => ("batch", "batch", 0),
            };
            let workload = rng.next_u64() % 40;
            let mut p = PodRequest::new(ns, &format!("{app}-{i:05}-{k:02}"))
                .label("app", app)
                .cpu_millis(cpu)
                .memory_mib(mem);
            p.owner = Some(format!("ReplicaSet/{app}-{workload}"));
            p = match kind {
                1 => p.spread(labels::ZONE, 1, WhenUnsatisfiable::ScheduleAnyway),
                2 => p.node_selector(labels::CAPACITY_TYPE, "on-demand"),
                3 => p
                    .request(labels::RESOURCE_NVIDIA_GPU, 1)
                    .node_selector(labels::NODEPOOL, "gpu")
                    .toleration(Toleration::exists(
                        labels::RESOURCE_NVIDIA_GPU,
                        Some(stowage_solver::TaintEffect::NoSchedule),
                    )),
                _ => p,
            };
            if kind == 3 && alloc.get(labels::RESOURCE_NVIDIA_GPU) <= k as i64 {
                // No GPU left for it: a CPU-only sidecar of the inference service instead.
                p.requests.set(labels::RESOURCE_NVIDIA_GPU, 0);
            }
            n.pods.push(p.into());
            running_pods += 1;
        }
        // 4 % of nodes run a pod whose PDB allows 0 disruptions now, 3 % are do-not-disrupt.
        let roll = rng.next_u64() % 100;
        if roll < 7 {
            blocked_names.push(name.clone());
        }
        out_nodes.push(n);
    }
    input.nodes = out_nodes;
    input.instance_types = catalog;
    // Pending pods: a few batch pods the provisioner has not placed yet, two that fit nowhere.
    for k in 0..40 {
        let mut p = PodRequest::new("batch", &format!("pending-{k:03}"))
            .label("app", "batch")
            .cpu_millis(rng.pick(&[500, 1000, 2000]))
            .memory_mib(rng.pick(&[1024, 2048, 4096]));
        p.owner = Some("Job/pending".into());
        input.pods.push(p.into());
    }
    for k in 0..2 {
        let mut p = PodRequest::new("batch", &format!("huge-{k}"))
            .label("app", "huge")
            .cpu_millis(4_000_000);
        p.owner = Some("Job/huge".into());
        input.pods.push(p.into());
    }

    let mut candidates: Vec<Candidate> = input
        .nodes
        .iter()
        .filter(|n| !blocked_names.contains(&n.name))
        .map(|n| Candidate {
            node: n.name.clone(),
            nodepool: n.nodepool.clone().unwrap_or_default(),
            price_per_hour: n.price_per_hour.unwrap_or(0.0),
            capacity_type: n.capacity_type.unwrap_or(CapacityType::OnDemand),
            disruption_cost: disruption_cost(
                n.pods
                    .iter()
                    .filter(|p| !stowage_solver::consolidate::leaves_with_node(p))
                    .map(|p| eviction_cost(p.priority, 0)),
                1.0,
            ),
            underutilized_allowed: true,
            min_instance_types: None,
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.disruption_cost
            .total_cmp(&b.disruption_cost)
            .then(b.price_per_hour.total_cmp(&a.price_per_hour))
            .then_with(|| a.node.cmp(&b.node))
    });
    let mut per_pool: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &input.nodes {
        *per_pool
            .entry(n.nodepool.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    let mut budgets = Budgets::default();
    for (pool, count) in per_pool {
        for r in [Reason::Empty, Reason::Underutilized, Reason::Drifted] {
            budgets.set(pool, r, count.div_ceil(10));
        }
    }
    Cluster {
        blocked: blocked_names.len(),
        input,
        candidates,
        budgets,
        running_pods,
    }
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_has_the_shape_it_claims() {
        let types = stowage_aws_catalog::embedded(
            "us-east-1",
            &stowage_aws_catalog::CatalogSettings::default(),
        )
        .unwrap();
        let c = consolidation_cluster(300, 3_000, types, 7);
        assert_eq!(c.input.nodes.len(), 300);
        assert_eq!(c.running_pods, 3_000);
        assert_eq!(c.candidates.len() + c.blocked, 300);
        // Every node runs its DaemonSet pod and fits what it holds.
        for n in &c.input.nodes {
            assert!(
                n.pods
                    .iter()
                    .any(|p| stowage_solver::consolidate::leaves_with_node(p))
            );
            assert!(
                n.requested().cpu_millis() <= n.allocatable.cpu_millis(),
                "{}",
                n.name
            );
            assert!(
                n.requested().memory_bytes() <= n.allocatable.memory_bytes(),
                "{}",
                n.name
            );
        }
        // 30 % under-used (at most 3 pods, a quarter of the CPU), no node empty.
        let under = c
            .input
            .nodes
            .iter()
            .filter(|n| n.requested().cpu_millis() * 4 <= n.allocatable.cpu_millis())
            .count();
        assert!((80..=120).contains(&under), "{under}");
        assert!(c.input.nodes.iter().all(|n| n.pods.len() >= 2));
        // Several pools, spot and on-demand, candidates cheapest to move first.
        let pools: std::collections::BTreeSet<&str> =
            c.candidates.iter().map(|c| c.nodepool.as_str()).collect();
        assert!(pools.len() >= 3, "{pools:?}");
        assert!(
            c.candidates
                .windows(2)
                .all(|w| w[0].disruption_cost <= w[1].disruption_cost)
        );
        assert!(c.budgets.get("spot", Reason::Underutilized) > 0);
    }
}
