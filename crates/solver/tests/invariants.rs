//! Property tests of the solve's invariants on random small clusters: every placed pod fits; no
//! NodePool limit or on-demand cap is exceeded; every new claim has an available compatible
//! offering; placed and unschedulable partition the input; the plan is deterministic.
#![allow(clippy::unwrap_used)] // strategies and checks outside #[test] functions unwrap too

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use stowage_api::CapacityType;
use stowage_api::labels;
use stowage_api::requirements::Requirement;
use stowage_solver::catalog::{ZONES, karpenter_shape};
use stowage_solver::{
    ExistingNode, InstanceType, NodeTaint, Plan, PodRequest, PoolSpec, PoolUsage, Resources,
    SolveInput, SolveOptions, TaintEffect, Toleration, WhenUnsatisfiable, solve,
};

#[derive(Debug, Clone)]
struct PodSpec {
    cpu: i64,
    mem: i64,
    kind: u8,
    tolerate: bool,
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        prop::sample::select(vec![100i64, 250, 500, 1000, 1500, 3000]),
        prop::sample::select(vec![100i64, 256, 1024, 4096]),
        0u8..8,
        any::<bool>(),
    )
        .prop_map(|(cpu, mem, kind, tolerate)| PodSpec {
            cpu,
            mem,
            kind,
            tolerate,
        })
}

fn build_pod(i: usize, s: &PodSpec) -> PodRequest {
    let p = PodRequest::new("default", &format!("p-{i:03}"))
        .cpu_millis(s.cpu)
        .memory_mib(s.mem)
        .owned_by(&format!("Job/w{}", i % 3));
    let p = match s.kind {
        1 => p
            .label("app", "zs")
            .spread(labels::ZONE, 1, WhenUnsatisfiable::DoNotSchedule),
        2 => p.label("app", "ha").self_anti_affinity(labels::HOSTNAME),
        3 => p.node_selector(labels::ZONE, ZONES[1]),
        4 => p.label("app", "za").self_affinity(labels::ZONE),
        5 => p
            .label("app", "hs")
            .spread(labels::HOSTNAME, 2, WhenUnsatisfiable::ScheduleAnyway),
        _ => p,
    };
    if s.tolerate {
        p.toleration(Toleration::exists("dedicated", None))
    } else {
        p
    }
}

#[derive(Debug, Clone)]
struct World {
    pods: Vec<PodSpec>,
    types: usize,
    unavailable: Vec<bool>,
    cpu_limit: Option<i64>,
    cap: Option<u32>,
    spot_usage: i64,
    tainted_second: bool,
    existing: bool,
    /// `second` (on-demand) capped at 5 % of the spot of a scope of both pools.
    scoped: bool,
    /// `first`'s spot blast radius.
    blast: Option<u32>,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(pod_spec(), 1..40),
        3usize..25,
        prop::collection::vec(any::<bool>(), 150),
        prop::option::of(prop::sample::select(vec![4_000i64, 16_000, 64_000])),
        prop::option::of(prop::sample::select(vec![0u32, 5, 50])),
        prop::sample::select(vec![0i64, 20_000]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![1u32, 2, 4])),
    )
        .prop_map(
            |(
                pods,
                types,
                unavailable,
                cpu_limit,
                cap,
                spot_usage,
                tainted_second,
                existing,
                scoped,
                blast,
            )| {
                World {
                    pods,
                    types,
                    unavailable,
                    cpu_limit,
                    cap,
                    spot_usage,
                    tainted_second,
                    existing,
                    scoped,
                    blast,
                }
            },
        )
}

fn input(w: &World) -> SolveInput {
    let mut types: Vec<InstanceType> = karpenter_shape(w.types);
    let mut k = 0;
    for t in &mut types {
        for o in &mut t.offerings {
            // Roughly a third of offerings unavailable.
            o.available = !(w.unavailable[k % w.unavailable.len()]
                && w.unavailable[(k * 7 + 3) % w.unavailable.len()]);
            k += 1;
        }
    }
    let mut first = PoolSpec::new("first").weight(10).usage(PoolUsage {
        resources: Resources::new().with("cpu", w.spot_usage),
        on_demand_cpu_millis: 0,
        total_cpu_millis: w.spot_usage,
    });
    if let Some(l) = w.cpu_limit {
        first = first.limit("cpu", l + w.spot_usage);
    }
    if let Some(c) = w.cap {
        first = first.capacity_mix(0, c);
    }
    let mut second =
        PoolSpec::new("second").requirement(Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]));
    if let Some(b) = w.blast {
        first = first.spot_blast_radius(b);
    }
    if w.scoped {
        second = second.scoped_capacity_mix(0, 5, &["first"], 0, w.spot_usage);
    }
    if w.tainted_second {
        second = second.taint(NodeTaint::new("dedicated", "x", TaintEffect::NoSchedule));
    }
    let mut nodes = Vec::new();
    if w.existing {
        nodes.push(
            ExistingNode::new(
                "existing",
                Resources::new()
                    .with("cpu", 2000)
                    .with("memory", 4 << 30)
                    .with("pods", 8),
            )
            .label(labels::ZONE, ZONES[0])
            .with_pod(
                PodRequest::new("kube-system", "running")
                    .cpu_millis(500)
                    .label("app", "zs"),
            ),
        );
    }
    SolveInput {
        pods: w
            .pods
            .iter()
            .enumerate()
            .map(|(i, s)| build_pod(i, s).into())
            .collect(),
        nodes,
        nodepools: vec![first, second],
        instance_types: types,
        ..SolveInput::default()
    }
}

fn check(inp: &SolveInput, plan: &Plan) {
    let types: BTreeMap<&str, &InstanceType> = inp
        .instance_types
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    // Partition.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for k in plan
        .existing_placements
        .keys()
        .chain(plan.unschedulable.keys())
    {
        assert!(seen.insert(k.clone()), "{k} placed twice");
    }
    for c in &plan.new_claims {
        for p in &c.pods {
            assert!(seen.insert(p.clone()), "{p} placed twice");
        }
    }
    let input_keys: BTreeSet<String> = inp.pods.iter().map(|p| p.key()).collect();
    assert_eq!(seen, input_keys);
    // Hostname anti-affinity and host ports: at most one such pod per node.
    let by_key: BTreeMap<String, &PodRequest> = inp.pods.iter().map(|p| (p.key(), &**p)).collect();
    let mut groups: Vec<Vec<&str>> = plan
        .new_claims
        .iter()
        .map(|c| c.pods.iter().map(String::as_str).collect())
        .collect();
    let mut per_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (pod, node) in &plan.existing_placements {
        per_node.entry(node).or_default().push(pod);
    }
    groups.extend(per_node.into_values());
    for g in groups {
        let anti = g
            .iter()
            .filter(|p| by_key[**p].labels.get("app").is_some_and(|a| a == "ha"))
            .count();
        assert!(anti <= 1, "two anti-affinity pods share a node: {g:?}");
        let ports = g
            .iter()
            .filter(|p| !by_key[**p].host_ports.is_empty())
            .count();
        assert!(
            ports <= 1,
            "two pods bind host port 8080 on one node: {g:?}"
        );
    }
    // Existing nodes hold what they are given.
    for n in &inp.nodes {
        let mut used = n.requested();
        for (pod, node) in &plan.existing_placements {
            if node == &n.name {
                let p = inp.pods.iter().find(|p| &p.key() == pod).unwrap();
                used.add(&p.requests);
                used.set("pods", used.pods() + 1);
            }
        }
        assert!(
            used.fits_in(&n.allocatable),
            "{} overcommitted: {used:?}",
            n.name
        );
    }
    // Claims: fit every option, have an available offering, respect limits and caps.
    let mut pool_cpu: BTreeMap<&str, i64> = BTreeMap::new();
    let mut pool_od: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &plan.new_claims {
        let ct: CapacityType = c
            .requirements
            .iter()
            .find(|r| r.key == labels::CAPACITY_TYPE)
            .unwrap()
            .values[0]
            .parse()
            .unwrap();
        let zones = &c
            .requirements
            .iter()
            .find(|r| r.key == labels::ZONE)
            .unwrap()
            .values;
        let mut max_cpu = 0;
        for name in &c.instance_type_options {
            let t = types[name.as_str()];
            assert!(
                c.requests.fits_in(&t.allocatable()),
                "{} does not fit {name}",
                c.name
            );
            max_cpu = max_cpu.max(t.capacity.cpu_millis());
        }
        let first = types[c.instance_type_options[0].as_str()];
        assert!(
            first
                .offerings
                .iter()
                .any(|o| o.available && o.capacity_type == ct && zones.contains(&o.zone)),
            "{} has no available offering",
            c.name
        );
        *pool_cpu.entry(c.nodepool.as_str()).or_default() += max_cpu;
        if ct == CapacityType::OnDemand {
            *pool_od.entry(c.nodepool.as_str()).or_default() += max_cpu;
        }
    }
    // Scoped caps: on-demand claims at their largest option, spot claims at their smallest.
    for pool in &inp.nodepools {
        let Some(mix) = &pool.capacity_mix else {
            continue;
        };
        let Some(scope) = &mix.scope else { continue };
        let (mut od, mut other) = (scope.on_demand_cpu_millis, scope.other_cpu_millis);
        for c in plan
            .new_claims
            .iter()
            .filter(|c| scope.pools.contains(&c.nodepool))
        {
            let cpus = c
                .instance_type_options
                .iter()
                .map(|t| types[t.as_str()].capacity.cpu_millis());
            if req(c, labels::CAPACITY_TYPE) == ["on-demand"] {
                od += cpus.max().unwrap();
            } else {
                other += cpus.min().unwrap();
            }
        }
        assert!(mix.excess(od, other) <= 0, "scoped cap of {}", pool.name);
    }
    // Spot blast radius: at most that many pods of one owner per spot node of the pool.
    for c in &plan.new_claims {
        let pool = inp.nodepools.iter().find(|p| p.name == c.nodepool).unwrap();
        if let Some(max) = pool.spot_max_pods_per_workload
            && req(c, labels::CAPACITY_TYPE) == ["spot"]
        {
            let mut per_owner: BTreeMap<&str, u32> = BTreeMap::new();
            for p in &c.pods {
                *per_owner
                    .entry(by_key[p.as_str()].owner.as_deref().unwrap())
                    .or_default() += 1;
            }
            assert!(
                per_owner.values().all(|n| *n <= max),
                "{}: {per_owner:?} > {max}",
                c.name
            );
        }
    }
    for pool in &inp.nodepools {
        let added = pool_cpu.get(pool.name.as_str()).copied().unwrap_or(0);
        if pool.limits.cpu_millis() > 0 {
            assert!(
                pool.usage.resources.cpu_millis() + added <= pool.limits.cpu_millis(),
                "limit of {}",
                pool.name
            );
        }
        if let Some(mix) = pool.capacity_mix.as_ref().filter(|m| m.scope.is_none()) {
            let od = pool_od.get(pool.name.as_str()).copied().unwrap_or(0);
            assert!(
                mix.allows(
                    pool.usage.on_demand_cpu_millis,
                    pool.usage.total_cpu_millis + added - od,
                    od
                ),
                "cap of {}",
                pool.name
            );
        }
    }
}

fn req<'a>(c: &'a stowage_solver::NewClaim, key: &str) -> &'a [String] {
    &c.requirements.iter().find(|r| r.key == key).unwrap().values
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn solve_keeps_its_invariants(w in world()) {
        let inp = input(&w);
        let plan = solve(&inp, &SolveOptions::default());
        check(&inp, &plan);
        prop_assert_eq!(&plan, &solve(&inp, &SolveOptions::default()));
        let strict = SolveOptions { relax_preferences: false, ..SolveOptions::default() };
        check(&inp, &solve(&inp, &strict));
    }
}

/// The world's input on irregular types (1, 2, 4 or 8 GiB per vCPU, priced per resource), where
/// packing classes jointly pays (step 6b repacks claims).
fn irregular_input(w: &World, shapes: &[(i64, usize)]) -> SolveInput {
    // Without limits or caps, and (but for zone selectors) without topology: what step 6b
    // repacks.
    let w = World {
        cpu_limit: None,
        cap: None,
        pods: w
            .pods
            .iter()
            .map(|p| PodSpec {
                kind: if p.kind == 3 { 3 } else { 0 },
                ..p.clone()
            })
            .collect(),
        ..w.clone()
    };
    let mut inp = input(&w);
    let mut k = 0;
    inp.instance_types = shapes
        .iter()
        .enumerate()
        .map(|(i, (cpu, r))| {
            let gib = cpu * [1, 2, 4, 8][*r];
            let mut t = stowage_solver::catalog::karpenter_type(i);
            t.labels
                .insert(labels::INSTANCE_CPU.to_string(), cpu.to_string());
            t.labels.insert(
                labels::INSTANCE_MEMORY.to_string(),
                (gib * 1024).to_string(),
            );
            t.capacity = Resources::new()
                .with("cpu", cpu * 1000)
                .with("memory", gib << 30)
                .with("pods", 10 * cpu);
            let price = 0.04 * *cpu as f64 + 0.005 * gib as f64;
            for o in &mut t.offerings {
                let spot = o.capacity_type == CapacityType::Spot;
                o.price_per_hour = if spot { price * 0.7 } else { price };
                o.available = !(w.unavailable[k % w.unavailable.len()]
                    && w.unavailable[(k * 7 + 3) % w.unavailable.len()]);
                k += 1;
            }
            t
        })
        .collect();
    inp
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn repacking_keeps_the_invariants(
        w in world(),
        shapes in prop::collection::vec((1i64..17, 0usize..4), 3..12),
    ) {
        let inp = irregular_input(&w, &shapes);
        let plan = solve(&inp, &SolveOptions::default());
        check(&inp, &plan);
        prop_assert_eq!(&plan, &solve(&inp, &SolveOptions::default()));
    }
}
