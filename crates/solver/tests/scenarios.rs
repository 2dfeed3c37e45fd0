//! Scenario tests of the solve: each builds a small cluster with the builders and states what the
//! plan must be.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

use std::collections::BTreeMap;

use stowage_api::CapacityType;
use stowage_api::labels;
use stowage_api::requirements::Requirement;
use stowage_solver::catalog::{ZONES, accelerator_type, karpenter_shape};
use stowage_solver::domain::Placement;
use stowage_solver::{
    DaemonSet, ExistingNode, InstanceType, NodeTaint, Plan, PodRequest, PoolSpec, PoolUsage,
    Resources, SolveInput, SolveOptions, TaintEffect, Toleration, WhenUnsatisfiable, solve,
};

fn input(pods: Vec<PodRequest>, pools: Vec<PoolSpec>, types: Vec<InstanceType>) -> SolveInput {
    SolveInput {
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        nodepools: pools,
        instance_types: types,
        ..SolveInput::default()
    }
}

fn pods(prefix: &str, n: usize, f: impl Fn(PodRequest) -> PodRequest) -> Vec<PodRequest> {
    (0..n)
        .map(|i| f(PodRequest::new("default", &format!("{prefix}-{i:03}"))))
        .collect()
}

fn claim_of<'a>(plan: &'a Plan, pod: &str) -> &'a stowage_solver::NewClaim {
    match plan.placement_of(pod) {
        Some(Placement::NewClaim(i)) => &plan.new_claims[i],
        other => panic!(
            "{pod} not on a new claim: {other:?} ({:?})",
            plan.unschedulable.get(pod)
        ),
    }
}

fn req_values<'a>(claim: &'a stowage_solver::NewClaim, key: &str) -> &'a [String] {
    &claim
        .requirements
        .iter()
        .find(|r| r.key == key)
        .unwrap()
        .values
}

fn type_map(types: &[InstanceType]) -> BTreeMap<&str, &InstanceType> {
    types.iter().map(|t| (t.name.as_str(), t)).collect()
}

/// Every placed pod fits the allocatable of every option of its claim (with daemon overhead).
fn assert_claims_fit(plan: &Plan, types: &[InstanceType]) {
    let m = type_map(types);
    for c in &plan.new_claims {
        assert!(!c.instance_type_options.is_empty());
        for t in &c.instance_type_options {
            assert!(
                c.requests.fits_in(&m[t.as_str()].allocatable()),
                "{} does not fit {t}",
                c.name
            );
        }
    }
}

#[test]
fn packs_generic_pods_cheaply_on_spot() {
    let types = karpenter_shape(50);
    let p = pods("web", 40, |p| p.cpu_millis(1000).memory_mib(1024));
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let placed: usize = plan.new_claims.iter().map(|c| c.pods.len()).sum();
    assert_eq!(placed, 40);
    for c in &plan.new_claims {
        assert_eq!(req_values(c, labels::CAPACITY_TYPE), ["spot"]);
        assert_eq!(req_values(c, labels::NODEPOOL), ["default"]);
    }
    // 40 vCPU of pods at 0.21 per spot vCPU(+2GiB): the packing is exact.
    assert!(
        (plan.cost_per_hour() - 40.0 * 0.21).abs() < 1e-6,
        "{}",
        plan.cost_per_hour()
    );
    assert_claims_fit(&plan, &types);
}

#[test]
fn claim_options_are_the_cheapest_sixty_in_price_order() {
    // 200 types, most of which hold a 1-vCPU pod: more candidates than the default 60 options.
    let types = karpenter_shape(200);
    let p = pods("web", 4, |p| p.cpu_millis(1000).memory_mib(1024));
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let claim = &plan.new_claims[0];
    let opts = &claim.instance_type_options;
    assert_eq!(
        opts.len(),
        60,
        "truncated to the default max_instance_types"
    );
    let zones = req_values(claim, labels::ZONE);
    // The cheapest spot price of a type in the claim's zones.
    let price = |name: &str| -> f64 {
        let t = types.iter().find(|t| t.name == name).unwrap();
        t.offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot && o.available)
            .filter(|o| zones.is_empty() || zones.contains(&o.zone))
            .map(|o| o.price_per_hour)
            .fold(f64::INFINITY, f64::min)
    };
    for pair in opts.windows(2) {
        assert!(
            price(&pair[0]) <= price(&pair[1]),
            "{} (${}) listed before {} (${})",
            pair[0],
            price(&pair[0]),
            pair[1],
            price(&pair[1])
        );
    }
    // No type left out is cheaper than the dearest one listed, among those that hold the pods.
    let dearest = price(&opts[59]);
    let requests = &claim.requests;
    for t in &types {
        if !opts.contains(&t.name) && requests.fits_in(&t.allocatable()) {
            assert!(
                price(&t.name) >= dearest,
                "{} (${}) was left out",
                t.name,
                price(&t.name)
            );
        }
    }
}

#[test]
fn existing_capacity_is_used_first() {
    let types = karpenter_shape(10);
    let node = ExistingNode::new(
        "existing-1",
        Resources::new()
            .with("cpu", 4000)
            .with("memory", 8 << 30)
            .with("pods", 20),
    )
    .label(labels::ZONE, ZONES[0]);
    let mut inp = input(
        pods("a", 3, |p| p.cpu_millis(1000)),
        vec![PoolSpec::new("default")],
        types,
    );
    inp.nodes.push(node);
    let plan = solve(&inp, &SolveOptions::default());
    assert_eq!(plan.existing_placements.len(), 3);
    assert!(plan.new_claims.is_empty());
    assert_eq!(plan.existing_placements["default/a-000"], "existing-1");
}

#[test]
fn gpu_pod_gets_a_gpu_type_and_cpu_pods_never_do() {
    let mut types = karpenter_shape(20);
    types.push(accelerator_type(
        "g5.xlarge",
        4,
        16,
        labels::RESOURCE_NVIDIA_GPU,
        1,
        1.0,
    ));
    types.push(accelerator_type(
        "g5.48xlarge",
        192,
        768,
        labels::RESOURCE_NVIDIA_GPU,
        8,
        16.0,
    ));
    let mut all = pods("cpu", 10, |p| p.cpu_millis(500).memory_mib(512));
    all.push(
        PodRequest::new("default", "trainer")
            .cpu_millis(2000)
            .request(labels::RESOURCE_NVIDIA_GPU, 1),
    );
    let plan = solve(
        &input(all, vec![PoolSpec::new("default")], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let gpu_claim = claim_of(&plan, "default/trainer");
    assert_eq!(gpu_claim.instance_type_options[0], "g5.xlarge");
    let m = type_map(&types);
    for c in &plan.new_claims {
        let has_cpu_pod = c.pods.iter().any(|p| p.contains("/cpu-"));
        if has_cpu_pod {
            for t in &c.instance_type_options {
                assert!(
                    !m[t.as_str()].is_exotic(),
                    "cpu pods bought an accelerator type {t}"
                );
            }
        }
    }
    // When only accelerator types fit, a CPU pod gets one only if it or its pool asks for it
    // (issue 10: CPU pods' claims never list an accelerator type they did not ask for).
    let only_gpu = vec![accelerator_type(
        "g5.xlarge",
        4,
        16,
        labels::RESOURCE_NVIDIA_GPU,
        1,
        1.0,
    )];
    let plan = solve(
        &input(
            pods("cpu", 1, |p| p.cpu_millis(500)),
            vec![PoolSpec::new("default")],
            only_gpu.clone(),
        ),
        &SolveOptions::default(),
    );
    let reason = &plan.unschedulable["default/cpu-000"];
    assert!(
        reason.contains("only accelerator and specialty types fit"),
        "{reason}"
    );
    let gpu_pool =
        PoolSpec::new("gpu").requirement(Requirement::in_(labels::INSTANCE_TYPE, ["g5.xlarge"]));
    let plan = solve(
        &input(
            pods("cpu", 1, |p| p.cpu_millis(500)),
            vec![gpu_pool],
            only_gpu.clone(),
        ),
        &SolveOptions::default(),
    );
    assert_eq!(
        claim_of(&plan, "default/cpu-000").instance_type_options,
        ["g5.xlarge"]
    );
    let plan = solve(
        &input(
            pods("cpu", 1, |p| {
                p.cpu_millis(500)
                    .node_selector(labels::INSTANCE_TYPE, "g5.xlarge")
            }),
            vec![PoolSpec::new("default")],
            only_gpu,
        ),
        &SolveOptions::default(),
    );
    assert_eq!(
        claim_of(&plan, "default/cpu-000").instance_type_options,
        ["g5.xlarge"],
        "a pod selecting the type asks for it"
    );
}

#[test]
fn gaudi_pod_lands_only_on_the_pool_that_offers_it() {
    let gaudi = accelerator_type(
        "dl1.24xlarge",
        96,
        768,
        labels::RESOURCE_HABANA_GAUDI,
        8,
        13.1,
    );
    let taint = NodeTaint::new(
        labels::RESOURCE_HABANA_GAUDI,
        "true",
        TaintEffect::NoSchedule,
    );
    let general = PoolSpec::new("general")
        .weight(50)
        .requirement(Requirement::not_in(labels::INSTANCE_TYPE, ["dl1.24xlarge"]));
    let habana = PoolSpec::new("habana")
        .requirement(Requirement::in_(labels::INSTANCE_TYPE, ["dl1.24xlarge"]))
        .taint(taint.clone());
    let mut types = karpenter_shape(100);
    types.push(gaudi);
    let pod = PodRequest::new("ml", "gaudi-train")
        .cpu_millis(8000)
        .memory_mib(64 * 1024)
        .request(labels::RESOURCE_HABANA_GAUDI, 8)
        .toleration(Toleration::equal(
            labels::RESOURCE_HABANA_GAUDI,
            "true",
            Some(TaintEffect::NoSchedule),
        ));
    let plain = PodRequest::new("ml", "notebook").cpu_millis(1000);
    let plan = solve(
        &input(vec![pod, plain], vec![general, habana], types),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let c = claim_of(&plan, "ml/gaudi-train");
    assert_eq!(c.nodepool, "habana");
    assert_eq!(c.instance_type_options, ["dl1.24xlarge"]);
    assert_eq!(claim_of(&plan, "ml/notebook").nodepool, "general");
    // Without the toleration, the pool's taint is the reason.
    let untolerant = PodRequest::new("ml", "gaudi-2").request(labels::RESOURCE_HABANA_GAUDI, 8);
    let habana_only = PoolSpec::new("habana").taint(taint);
    let types = vec![accelerator_type(
        "dl1.24xlarge",
        96,
        768,
        labels::RESOURCE_HABANA_GAUDI,
        8,
        13.1,
    )];
    let plan = solve(
        &input(vec![untolerant], vec![habana_only], types),
        &SolveOptions::default(),
    );
    assert_eq!(
        plan.unschedulable["ml/gaudi-2"],
        "no NodePool tolerates taint habana.ai/gaudi=true:NoSchedule"
    );
}

#[test]
fn zone_spread_balances_three_zones() {
    let types = karpenter_shape(30);
    let p = pods("z", 9, |p| {
        p.cpu_millis(1000).label("app", "z").spread(
            labels::ZONE,
            1,
            WhenUnsatisfiable::DoNotSchedule,
        )
    });
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for c in &plan.new_claims {
        let zones = req_values(c, labels::ZONE);
        assert_eq!(zones.len(), 1, "spread claims are pinned to one zone");
        *per_zone.entry(zones[0].clone()).or_default() += c.pods.len();
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3],
        "{per_zone:?}"
    );
    assert_claims_fit(&plan, &types);
}

/// Pods per zone of the claims holding pods whose name starts with `prefix`.
fn pods_per_zone(plan: &Plan, prefix: &str) -> Vec<usize> {
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for c in &plan.new_claims {
        let zones = req_values(c, labels::ZONE);
        assert_eq!(zones.len(), 1, "spread claims are pinned to one zone");
        let n = c.pods.iter().filter(|p| p.starts_with(prefix)).count();
        *per_zone.entry(zones[0].clone()).or_default() += n;
    }
    per_zone.into_values().filter(|n| *n > 0).collect()
}

#[test]
fn several_zone_spreads_each_balance_their_own_pods() {
    // Two Deployments each spread over zones; a third one spreads best effort
    // (ScheduleAnyway), which is dealt to zones the same way (before: placed a pod or so per
    // step as a required spread).
    let types = karpenter_shape(30);
    let spread = |app: &'static str, n: usize, when: WhenUnsatisfiable| {
        pods(app, n, move |p| {
            p.cpu_millis(1000)
                .label("app", app)
                .spread(labels::ZONE, 1, when)
        })
    };
    let mut p = spread("a", 6, WhenUnsatisfiable::DoNotSchedule);
    p.extend(spread("b", 9, WhenUnsatisfiable::DoNotSchedule));
    p.extend(spread("c", 12, WhenUnsatisfiable::ScheduleAnyway));
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_eq!(pods_per_zone(&plan, "default/a-"), [2, 2, 2]);
    assert_eq!(pods_per_zone(&plan, "default/b-"), [3, 3, 3]);
    assert_eq!(pods_per_zone(&plan, "default/c-"), [4, 4, 4]);
    assert_claims_fit(&plan, &types);
}

#[test]
fn hostname_anti_affinity_gives_each_pod_its_own_node() {
    let types = karpenter_shape(10);
    let p = pods("db", 5, |p| {
        p.cpu_millis(500)
            .label("app", "db")
            .self_anti_affinity(labels::HOSTNAME)
    });
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types),
        &SolveOptions::default(),
    );
    assert_eq!(plan.new_claims.len(), 5);
    assert!(plan.new_claims.iter().all(|c| c.pods.len() == 1));
    assert_eq!(plan.new_claims[0].instance_type_options[0], "fake-it-0");
}

#[test]
fn spot_unavailable_falls_back_to_on_demand_until_the_cap() {
    let mut types = karpenter_shape(8);
    for t in &mut types {
        for o in &mut t.offerings {
            if o.capacity_type == CapacityType::Spot {
                o.available = false;
            }
        }
    }
    // 100 vCPU of spot already; on-demand may be 5 % of the pool: 5 vCPU fit, more do not.
    let pool = PoolSpec::new("spot-workflows")
        .capacity_mix(0, 5)
        .usage(PoolUsage {
            resources: Resources::new().with("cpu", 100_000),
            on_demand_cpu_millis: 0,
            total_cpu_millis: 100_000,
        });
    let p = pods("job", 8, |p| {
        p.cpu_millis(1000)
            .label("app", "job")
            .self_anti_affinity(labels::HOSTNAME)
    });
    let plan = solve(&input(p, vec![pool], types), &SolveOptions::default());
    let od_cpu: usize = plan.new_claims.len();
    assert!(od_cpu >= 1);
    for c in &plan.new_claims {
        assert_eq!(req_values(c, labels::CAPACITY_TYPE), ["on-demand"]);
        assert_eq!(
            c.instance_type_options,
            ["fake-it-0"],
            "capped claims never grow past the charge"
        );
    }
    assert_eq!(
        plan.new_claims.len(),
        5,
        "5 x 1 vCPU on-demand keeps 5/105 <= 5 %"
    );
    assert_eq!(plan.unschedulable.len(), 3);
    for reason in plan.unschedulable.values() {
        assert_eq!(
            reason,
            "NodePool spot-workflows: spot unavailable and on-demand cap 5% of pool reached"
        );
    }
}

#[test]
fn nodepool_limits_count_what_a_claim_could_grow_to() {
    let types = karpenter_shape(16);
    let pool = PoolSpec::new("spot-workflows").limit("cpu", 10_000);
    let p = pods("w", 30, |p| p.cpu_millis(1000));
    let plan = solve(
        &input(p, vec![pool], types.clone()),
        &SolveOptions::default(),
    );
    let m = type_map(&types);
    let max_cpu: i64 = plan
        .new_claims
        .iter()
        .map(|c| {
            c.instance_type_options
                .iter()
                .map(|t| m[t.as_str()].capacity.cpu_millis())
                .max()
                .unwrap()
        })
        .sum();
    assert!(max_cpu <= 10_000, "claims could grow to {max_cpu}m");
    assert_eq!(
        plan.unschedulable.len(),
        20,
        "one 10 vCPU claim, then the limit"
    );
    assert!(
        plan.unschedulable
            .values()
            .all(|r| r == "NodePool spot-workflows: limit cpu 10 reached"),
        "{:?}",
        plan.unschedulable
    );
}

#[test]
fn weight_orders_pools_and_taints_explain_failures() {
    let types = karpenter_shape(10);
    let heavy = PoolSpec::new("heavy").weight(100);
    let light = PoolSpec::new("light").weight(1);
    let plan = solve(
        &input(
            pods("a", 2, |p| p.cpu_millis(100)),
            vec![light, heavy],
            types.clone(),
        ),
        &SolveOptions::default(),
    );
    assert!(plan.new_claims.iter().all(|c| c.nodepool == "heavy"));

    let tainted =
        PoolSpec::new("gpu").taint(NodeTaint::new("dedicated", "gpu", TaintEffect::NoSchedule));
    let plan = solve(
        &input(pods("b", 1, |p| p.cpu_millis(100)), vec![tainted], types),
        &SolveOptions::default(),
    );
    assert_eq!(
        plan.unschedulable["default/b-000"],
        "no NodePool tolerates taint dedicated=gpu:NoSchedule"
    );
}

#[test]
fn preferences_are_relaxed_only_when_needed() {
    let types = karpenter_shape(10);
    let zone_b = Requirement::in_(labels::ZONE, [ZONES[1]]);
    let nowhere = Requirement::in_(labels::ZONE, ["no-such-zone"]);
    let p = vec![
        PodRequest::new("default", "likes-b")
            .cpu_millis(100)
            .prefer(10, vec![zone_b]),
        PodRequest::new("default", "likes-nowhere")
            .cpu_millis(100)
            .prefer(10, vec![nowhere.clone()]),
    ];
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_eq!(
        req_values(claim_of(&plan, "default/likes-b"), labels::ZONE),
        [ZONES[1]]
    );
    // A required term that cannot match: the next OR term is tried.
    let p = vec![
        PodRequest::new("default", "either")
            .cpu_millis(100)
            .require_any(vec![nowhere])
            .require_any(vec![Requirement::in_(labels::ZONE, [ZONES[2]])]),
    ];
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types),
        &SolveOptions::default(),
    );
    assert_eq!(
        req_values(claim_of(&plan, "default/either"), labels::ZONE),
        [ZONES[2]]
    );
}

#[test]
fn daemonset_overhead_is_reserved_on_new_nodes() {
    let types = karpenter_shape(4);
    let ds = DaemonSet {
        name: "kube-system/agent".into(),
        pod: PodRequest::new("kube-system", "agent").cpu_millis(500),
    };
    let mut inp = input(
        pods("a", 1, |p| p.cpu_millis(1000)),
        vec![PoolSpec::new("default")],
        types,
    );
    inp.daemonsets.push(ds);
    let plan = solve(&inp, &SolveOptions::default());
    let c = &plan.new_claims[0];
    assert_eq!(
        c.instance_type_options[0], "fake-it-1",
        "1000m + 500m daemon needs 2 vCPU"
    );
    assert_eq!(c.requests.cpu_millis(), 1500);
    assert_eq!(c.requests.pods(), 2);
}

fn node_with_cpu(name: &str, cpu: i64) -> ExistingNode {
    ExistingNode::new(
        name,
        Resources::new()
            .with("cpu", cpu)
            .with("memory", 8 << 30)
            .with("pods", 20),
    )
    .label(labels::ZONE, ZONES[0])
}

#[test]
fn a_pod_pinned_by_node_name_goes_to_that_node_or_stays_unschedulable() {
    let types = karpenter_shape(10);
    let agent = |node: &str| {
        PodRequest::new("kube-system", "agent")
            .cpu_millis(500)
            .pin_to_node(node)
    };
    let solve_on = |pod: PodRequest, nodes: Vec<ExistingNode>, in_flight: Vec<ExistingNode>| {
        let mut inp = input(vec![pod], vec![PoolSpec::new("default")], types.clone());
        inp.nodes = nodes;
        inp.in_flight = in_flight;
        solve(&inp, &SolveOptions::default())
    };
    // Room on its node: placed there, though the first node has room too.
    let plan = solve_on(
        agent("node-b"),
        vec![node_with_cpu("node-a", 4000), node_with_cpu("node-b", 4000)],
        vec![],
    );
    assert_eq!(
        plan.existing_placements
            .get("kube-system/agent")
            .map(String::as_str),
        Some("node-b"),
        "{plan:?}"
    );
    assert!(plan.new_claims.is_empty());
    // Its node is full: nothing is bought, and the reason names the node.
    let full =
        node_with_cpu("node-b", 4000).with_pod(PodRequest::new("default", "big").cpu_millis(3800));
    let plan = solve_on(
        agent("node-b"),
        vec![node_with_cpu("node-a", 4000), full.clone()],
        vec![],
    );
    assert!(plan.new_claims.is_empty(), "{plan:?}");
    assert!(plan.existing_placements.is_empty(), "{plan:?}");
    let reason = &plan.unschedulable["kube-system/agent"];
    assert!(
        reason.contains("node node-b has no room: Insufficient cpu"),
        "{reason}"
    );
    // Pinned to a node that does not exist: a new claim cannot be it, nor can an in-flight
    // claim that happens to carry the name.
    let plan = solve_on(
        agent("node-z"),
        vec![node_with_cpu("node-a", 4000)],
        vec![node_with_cpu("node-z", 4000)],
    );
    assert!(plan.new_claims.is_empty(), "{plan:?}");
    assert!(plan.existing_placements.is_empty(), "{plan:?}");
    let reason = &plan.unschedulable["kube-system/agent"];
    assert!(reason.contains("node node-z does not exist"), "{reason}");
    assert!(reason.contains("a new node cannot"), "{reason}");
    // An alternative term without a name: used when the named node is full.
    let either = agent("node-b").require_any(vec![Requirement::in_(labels::ZONE, [ZONES[1]])]);
    let plan = solve_on(either, vec![full], vec![]);
    assert_eq!(
        req_values(claim_of(&plan, "kube-system/agent"), labels::ZONE),
        [ZONES[1]]
    );
    // NotIn excludes a node and admits new ones.
    let mut not_a = PodRequest::new("default", "not-a").cpu_millis(500);
    not_a
        .required_node_affinity
        .push(stowage_solver::NodeAffinityTerm {
            requirements: Vec::new(),
            node_names: vec![stowage_solver::NodeNameRequirement::NotIn(
                ["node-a".to_string()].into(),
            )],
        });
    let plan = solve_on(not_a.clone(), vec![node_with_cpu("node-a", 4000)], vec![]);
    assert!(plan.existing_placements.is_empty(), "{plan:?}");
    claim_of(&plan, "default/not-a");
    let plan = solve_on(
        not_a,
        vec![node_with_cpu("node-a", 4000), node_with_cpu("node-b", 4000)],
        vec![],
    );
    assert_eq!(plan.existing_placements["default/not-a"], "node-b");
}

#[test]
fn a_daemonset_pinned_by_node_name_adds_no_overhead_on_new_nodes() {
    let types = karpenter_shape(4);
    let mut inp = input(
        pods("a", 1, |p| p.cpu_millis(1000)),
        vec![PoolSpec::new("default")],
        types,
    );
    inp.daemonsets.push(DaemonSet {
        name: "kube-system/everywhere".into(),
        pod: PodRequest::new("kube-system", "everywhere").cpu_millis(100),
    });
    inp.daemonsets.push(DaemonSet {
        name: "kube-system/one-node".into(),
        pod: PodRequest::new("kube-system", "one-node")
            .cpu_millis(500)
            .pin_to_node("node-a"),
    });
    let plan = solve(&inp, &SolveOptions::default());
    assert_eq!(plan.new_claims[0].requests.cpu_millis(), 1100, "{plan:?}");
    assert_eq!(plan.new_claims[0].requests.pods(), 2);
}

#[test]
fn min_values_survive_truncation() {
    let types = karpenter_shape(100);
    let pool = PoolSpec::new("default")
        .requirement(Requirement::exists(labels::INSTANCE_CPU).with_min_values(5));
    let opts = SolveOptions {
        max_instance_types: 3,
        ..SolveOptions::default()
    };
    let plan = solve(
        &input(pods("a", 1, |p| p.cpu_millis(100)), vec![pool], types),
        &opts,
    );
    let c = &plan.new_claims[0];
    assert_eq!(
        c.instance_type_options.len(),
        5,
        "minValues 5 wins over max 3"
    );
    let opts = SolveOptions {
        max_instance_types: 2,
        ..SolveOptions::default()
    };
    let plan = solve(
        &input(
            pods("a", 1, |p| p.cpu_millis(100)),
            vec![PoolSpec::new("default")],
            karpenter_shape(100),
        ),
        &opts,
    );
    assert_eq!(
        plan.new_claims[0].instance_type_options,
        ["fake-it-0", "fake-it-1"]
    );
}

#[test]
fn same_input_same_plan() {
    let types = karpenter_shape(40);
    let mut p = pods("g", 30, |p| p.cpu_millis(700).memory_mib(900));
    p.extend(pods("s", 12, |p| {
        p.cpu_millis(300).label("app", "s").spread(
            labels::ZONE,
            1,
            WhenUnsatisfiable::ScheduleAnyway,
        )
    }));
    p.extend(pods("h", 6, |p| {
        p.cpu_millis(300)
            .label("app", "h")
            .self_anti_affinity(labels::HOSTNAME)
    }));
    let inp = input(p, vec![PoolSpec::new("default")], types);
    let a = solve(&inp, &SolveOptions::default());
    let b = solve(&inp, &SolveOptions::default());
    assert_eq!(a, b);
    // The same pods in another order and the pools' and types' lists reversed: the same plan.
    let mut shuffled = inp.clone();
    shuffled.pods.reverse();
    shuffled.pods.rotate_left(17);
    shuffled.instance_types.reverse();
    let c = solve(&shuffled, &SolveOptions::default());
    assert_eq!(a, c, "the plan does not depend on input order");
    assert!(a.unschedulable.is_empty(), "{:?}", a.unschedulable);
    assert!(!a.new_claims.is_empty());
}

#[test]
fn reasons_name_the_real_obstacle() {
    let types = karpenter_shape(10);
    // A spread pod that no pool tolerates: the taint is the reason, not the spread.
    let tainted =
        PoolSpec::new("gpu").taint(NodeTaint::new("dedicated", "gpu", TaintEffect::NoSchedule));
    let p = vec![
        PodRequest::new("default", "s")
            .cpu_millis(100)
            .label("app", "s")
            .spread(labels::ZONE, 1, WhenUnsatisfiable::DoNotSchedule),
    ];
    let plan = solve(
        &input(p, vec![tainted], types.clone()),
        &SolveOptions::default(),
    );
    assert_eq!(
        plan.unschedulable["default/s"],
        "no NodePool tolerates taint dedicated=gpu:NoSchedule"
    );
    // Hostname affinity to pods that run nowhere.
    let mut p = PodRequest::new("default", "follower").cpu_millis(100);
    p.pod_affinity.push(stowage_solver::PodAffinityTerm {
        label_selector: Some(stowage_solver::LabelSelector::labels([("app", "leader")])),
        topology_key: labels::HOSTNAME.into(),
        namespaces: None,
    });
    let plan = solve(
        &input(vec![p], vec![PoolSpec::new("default")], types),
        &SolveOptions::default(),
    );
    assert!(plan.new_claims.is_empty());
    assert!(
        plan.unschedulable["default/follower"]
            .starts_with("pod affinity on kubernetes.io/hostname"),
        "{:?}",
        plan.unschedulable
    );
}

/// A node's allocatable: 4 vCPU, 8 GiB, 20 pods.
fn four_cpu_node() -> Resources {
    Resources::new()
        .with("cpu", 4000)
        .with("memory", 8 << 30)
        .with("pods", 20)
}

/// Node `a`: a 1-vCPU pod `default/w1` and a DaemonSet pod `kube-system/agent-a`.
fn node_a_with_agent() -> ExistingNode {
    let mut ds = PodRequest::new("kube-system", "agent-a").cpu_millis(100);
    ds.owner = Some("DaemonSet/agent".into());
    ExistingNode::new("a", four_cpu_node())
        .with_pod(PodRequest::new("default", "w1").cpu_millis(1000))
        .with_pod(ds)
}

#[test]
fn simulate_without_replaces_removed_nodes() {
    let types = karpenter_shape(10);
    let alloc = four_cpu_node;
    let a = node_a_with_agent();
    let b =
        ExistingNode::new("b", alloc()).with_pod(PodRequest::new("default", "w2").cpu_millis(1000));
    let inp = SolveInput {
        nodes: vec![a, b],
        nodepools: vec![PoolSpec::new("default")],
        instance_types: types,
        ..SolveInput::default()
    };
    let plan = stowage_solver::simulate_without(&inp, &["a"], &SolveOptions::default());
    assert_eq!(
        plan.existing_placements
            .get("default/w1")
            .map(String::as_str),
        Some("b")
    );
    assert!(plan.new_claims.is_empty() && plan.unschedulable.is_empty());
    assert!(!plan.existing_placements.contains_key("kube-system/agent-a"));
}

#[test]
fn displace_takes_the_candidates_out_in_place_and_plans_as_simulate_without() {
    let types = karpenter_shape(10);
    let alloc = four_cpu_node;
    let a = node_a_with_agent();
    let b =
        ExistingNode::new("b", alloc()).with_pod(PodRequest::new("default", "w2").cpu_millis(3500));
    let c =
        ExistingNode::new("c", alloc()).with_pod(PodRequest::new("default", "w3").cpu_millis(500));
    let claim = ExistingNode::new("claim-1", alloc())
        .with_pod(PodRequest::new("default", "w4").cpu_millis(3900));
    let inp = SolveInput {
        pods: vec![
            PodRequest::new("default", "pending")
                .cpu_millis(3000)
                .into(),
        ],
        nodes: vec![a, b, c],
        in_flight: vec![claim],
        nodepools: vec![PoolSpec::new("default")],
        instance_types: types,
        ..SolveInput::default()
    };
    let candidates = ["claim-1", "a"];
    let mut owned = inp.clone();
    let gone = stowage_solver::displace(&mut owned, &candidates);
    let names = |ns: &[ExistingNode]| ns.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&gone), ["a", "claim-1"]);
    assert_eq!(names(&owned.nodes), ["b", "c"]);
    assert!(owned.in_flight.is_empty());
    // The input's own pods first, then the candidates' (nodes before claims), DaemonSet pods
    // left with their node.
    let pods: Vec<&str> = owned.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods, ["pending", "w1", "w4"]);
    let options = SolveOptions::default();
    assert_eq!(
        solve(&owned, &options),
        stowage_solver::simulate_without(&inp, &candidates, &options)
    );
}

#[test]
fn reserved_capacity_first_until_the_reservation_is_used() {
    let mut types = karpenter_shape(4);
    types[0].offerings.push(stowage_solver::Offering {
        zone: ZONES[0].into(),
        capacity_type: CapacityType::Reserved,
        price_per_hour: 0.0001,
        available: true,
        reservation_capacity: Some(1),
        reservation_id: Some("cr-1".into()),
        interruption_cost_per_hour: 0.0,
    });
    let p = pods("r", 2, |p| {
        p.cpu_millis(500)
            .label("app", "r")
            .self_anti_affinity(labels::HOSTNAME)
    });
    let plan = solve(
        &input(p, vec![PoolSpec::new("default")], types),
        &SolveOptions::default(),
    );
    let cts: Vec<&str> = plan
        .new_claims
        .iter()
        .map(|c| req_values(c, labels::CAPACITY_TYPE)[0].as_str())
        .collect();
    assert_eq!(cts, ["reserved", "spot"]);
    assert_eq!(req_values(&plan.new_claims[0], labels::ZONE), [ZONES[0]]);
}

#[test]
fn in_flight_claims_take_pods_before_new_claims() {
    let types = karpenter_shape(4);
    let claim = ExistingNode::new(
        "default-abc12",
        Resources::new()
            .with("cpu", 2000)
            .with("memory", 4 << 30)
            .with("pods", 20),
    )
    .label(labels::NODEPOOL, "default");
    let mut inp = input(
        pods("a", 3, |p| p.cpu_millis(1000)),
        vec![PoolSpec::new("default")],
        types,
    );
    inp.in_flight.push(claim);
    let plan = solve(&inp, &SolveOptions::default());
    assert_eq!(
        plan.existing_placements
            .values()
            .filter(|n| *n == "default-abc12")
            .count(),
        2
    );
    assert_eq!(plan.new_claims.len(), 1);
    assert_eq!(plan.new_claims[0].pods, ["default/a-002"]);
}

fn preferring_apart(prefix: &str, n: usize, cpu: i64) -> Vec<PodRequest> {
    pods(prefix, n, |p| {
        let mut p = p.cpu_millis(cpu).label("app", prefix);
        let term = stowage_solver::PodAffinityTerm {
            label_selector: Some(stowage_solver::LabelSelector::labels([("app", prefix)])),
            topology_key: labels::HOSTNAME.into(),
            namespaces: None,
        };
        p.preferred_pod_anti_affinity
            .push(stowage_solver::WeightedPodAffinityTerm { weight: 50, term });
        p
    })
}

#[test]
fn preferred_anti_affinity_is_relaxed_when_the_pool_is_full() {
    let types = karpenter_shape(8);
    let pool = PoolSpec::new("one-node").limit("nodes", 1);
    let p = preferring_apart("w", 2, 500);
    let plan = solve(
        &input(p.clone(), vec![pool.clone()], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_eq!(plan.new_claims.len(), 1);
    assert_eq!(plan.new_claims[0].pods.len(), 2);
    // With room for two nodes, the preference is honoured when it costs nothing: one 1-vCPU
    // pod per 1-vCPU node costs what both on a 2-vCPU node cost.
    let roomy = PoolSpec::new("two-nodes").limit("nodes", 2);
    let p = preferring_apart("w", 2, 1000);
    let plan = solve(&input(p, vec![roomy], types), &SolveOptions::default());
    assert_eq!(plan.new_claims.len(), 2);
}

#[test]
fn a_preferred_anti_affinity_never_opens_a_node_per_pod_when_packing_is_cheaper() {
    let types = karpenter_shape(40);
    // 500m pods: two fit the smallest type, so a node each would double the cost. The
    // preference is dropped for new nodes (before: one claim per pod, 2x the cost).
    let two = solve(
        &input(
            preferring_apart("w", 2, 500),
            vec![PoolSpec::new("default")],
            types.clone(),
        ),
        &SolveOptions::default(),
    );
    assert_eq!(two.new_claims.len(), 1);
    let many = solve(
        &input(
            preferring_apart("w", 300, 500),
            vec![PoolSpec::new("default")],
            types.clone(),
        ),
        &SolveOptions::default(),
    );
    let plain = solve(
        &input(
            pods("w", 300, |p| p.cpu_millis(500).label("app", "w")),
            vec![PoolSpec::new("default")],
            types.clone(),
        ),
        &SolveOptions::default(),
    );
    assert!(many.unschedulable.is_empty(), "{:?}", many.unschedulable);
    assert!(many.new_claims.len() <= plain.new_claims.len() + 1);
    assert!(
        many.cost_per_hour() <= plain.cost_per_hour() * 1.01,
        "{} vs {}",
        many.cost_per_hour(),
        plain.cost_per_hour()
    );
    // Room already there is used the preferred way: one pod per node with room.
    let nodes: Vec<ExistingNode> = (0..3)
        .map(|i| node_with_cpu(&format!("n{i}"), 4000))
        .collect();
    let plan = solve(
        &SolveInput {
            nodes,
            ..input(
                preferring_apart("w", 3, 500),
                vec![PoolSpec::new("default")],
                types,
            )
        },
        &SolveOptions::default(),
    );
    assert!(plan.new_claims.is_empty());
    let used: std::collections::BTreeSet<&String> = plan.existing_placements.values().collect();
    assert_eq!(used.len(), 3, "{:?}", plan.existing_placements);
}

#[test]
fn min_values_that_cannot_be_met_make_the_pool_unusable() {
    let types = karpenter_shape(10);
    let pool = PoolSpec::new("flexible")
        .requirement(Requirement::exists(labels::INSTANCE_CPU).with_min_values(5));
    // Only 3 types (8, 9, 10 vCPU) hold a 7.5 vCPU pod.
    let plan = solve(
        &input(pods("big", 1, |p| p.cpu_millis(7500)), vec![pool], types),
        &SolveOptions::default(),
    );
    assert_eq!(
        plan.unschedulable["default/big-000"],
        "NodePool flexible: fewer than 5 distinct aws.stowage.dev/instance-cpu values can hold the pod (minValues)"
    );
}

/// vCPU millicores of a claim: the smallest option (`lo`) and the largest (`hi`).
fn claim_cpu(c: &stowage_solver::NewClaim, types: &[InstanceType]) -> (i64, i64) {
    let m = type_map(types);
    let cpus: Vec<i64> = c
        .instance_type_options
        .iter()
        .map(|t| m[t.as_str()].capacity.get("cpu"))
        .collect();
    (
        cpus.iter().copied().min().unwrap(),
        cpus.iter().copied().max().unwrap(),
    )
}

/// Spot vCPUs (each claim at its smallest option) and on-demand vCPUs (at its largest).
fn spot_and_on_demand_cpu(plan: &Plan, types: &[InstanceType]) -> (i64, i64) {
    let (mut spot, mut od) = (0, 0);
    for c in &plan.new_claims {
        let (lo, hi) = claim_cpu(c, types);
        match req_values(c, labels::CAPACITY_TYPE)[0].as_str() {
            "on-demand" => od += hi,
            _ => spot += lo,
        }
    }
    (spot, od)
}

/// The seed's tiers: `spot` (weight 80, spot only) and `od` (weight 50, on-demand only) capped at
/// 5 % of the scope's spot, which holds `spot_now` millicores already.
fn seed_tiers(spot_now: i64) -> Vec<PoolSpec> {
    let mut spot = PoolSpec::new("spot")
        .weight(80)
        .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["spot"]));
    spot.usage.total_cpu_millis = spot_now;
    let od = PoolSpec::new("od")
        .weight(50)
        .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]))
        .scoped_capacity_mix(0, 5, &["spot"], 0, spot_now);
    vec![spot, od]
}

#[test]
fn a_scoped_cap_holds_the_on_demand_tier_to_5_percent_of_the_spot_tier() {
    let types = karpenter_shape(16);
    // 150 pods: the last spot claim is half full and may launch as a smaller type than the
    // one it was opened as; the cap holds whichever option is launched.
    let mut p = pods("batch", 150, |p| p.cpu_millis(1000).memory_mib(1024));
    // Placed first (priority), before any spot is bought: only the retry after the spot tier
    // is bought lets them use the cap.
    p.extend(pods("steady", 20, |p| PodRequest {
        priority: 100,
        ..p.cpu_millis(1000)
            .memory_mib(1024)
            .node_selector(labels::CAPACITY_TYPE, "on-demand")
    }));
    let plan = solve(
        &input(p, seed_tiers(0), types.clone()),
        &SolveOptions::default(),
    );
    assert_claims_fit(&plan, &types);
    for i in 0..150 {
        let c = claim_of(&plan, &format!("default/batch-{i:03}"));
        assert_eq!(c.nodepool, "spot", "the spot tier is preferred");
    }
    let (spot, od) = spot_and_on_demand_cpu(&plan, &types);
    assert!(spot >= 150_000, "{spot}");
    assert!(od > 0, "pods that need on-demand get some");
    assert!(od * 100 <= 5 * spot, "on-demand {od} > 5 % of spot {spot}");
    let placed_steady = (0..20)
        .filter(|i| {
            plan.placement_of(&format!("default/steady-{i:03}"))
                .is_some()
        })
        .count();
    assert_eq!(placed_steady as i64 * 1000, od, "on-demand claims are full");
    assert_eq!(plan.unschedulable.len(), 20 - placed_steady);
    for reason in plan.unschedulable.values() {
        assert!(
            reason.contains(
                "on-demand cap of NodePool od's capacityMix scope reached (5% of the scope's spot and reserved vCPUs)"
            ),
            "{reason}"
        );
    }
}

#[test]
fn a_scoped_cap_counts_the_spot_the_scope_already_runs() {
    let types = karpenter_shape(16);
    let p = pods("steady", 20, |p| {
        p.cpu_millis(1000)
            .node_selector(labels::CAPACITY_TYPE, "on-demand")
    });
    // 400 spot vCPUs already: 20 on-demand vCPUs are 5 %.
    let plan = solve(
        &input(p.clone(), seed_tiers(400_000), types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let (_, od) = spot_and_on_demand_cpu(&plan, &types);
    assert!(od <= 20_000, "{od}");
    // 200 spot vCPUs: only 10 of them.
    let plan = solve(
        &input(p, seed_tiers(200_000), types.clone()),
        &SolveOptions::default(),
    );
    let (_, od) = spot_and_on_demand_cpu(&plan, &types);
    assert!(od <= 10_000, "{od}");
    assert_eq!(plan.unschedulable.len(), 10);
}

#[test]
fn a_pool_in_two_scopes_keeps_both_caps_whatever_the_pool_order() {
    let types = karpenter_shape(16);
    let p = pods("steady", 40, |p| {
        p.cpu_millis(1000)
            .node_selector(labels::CAPACITY_TYPE, "on-demand")
    });
    // `od` caps its scope at 50 % of 400 spot vCPUs; `guard` puts `od` in a second scope at 5 %.
    let mut pools = seed_tiers(400_000);
    pools[1] = pools[1]
        .clone()
        .scoped_capacity_mix(0, 50, &["spot"], 0, 400_000);
    pools.push(
        PoolSpec::new("guard")
            .weight(10)
            .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["spot"]))
            .scoped_capacity_mix(0, 5, &["od", "spot"], 0, 400_000),
    );
    let plan = solve(
        &input(p.clone(), pools.clone(), types.clone()),
        &SolveOptions::default(),
    );
    let (_, od) = spot_and_on_demand_cpu(&plan, &types);
    assert_eq!(od, 20_000, "the stricter cap (5 %) binds");
    assert_eq!(plan.unschedulable.len(), 20);
    assert!(
        plan.unschedulable
            .values()
            .all(|r| r.contains("NodePool guard's capacityMix scope")),
        "{:?}",
        plan.unschedulable
    );
    pools.reverse();
    let reversed = solve(&input(p, pools, types), &SolveOptions::default());
    assert_eq!(
        reversed, plan,
        "deterministic whatever the order of the pools"
    );
}

/// 100 executors of one Spark application (4 vCPU / 8 GiB, owned by the driver pod).
fn executors(app: &str) -> Vec<PodRequest> {
    pods(&format!("{app}-exec"), 100, |p| {
        p.cpu_millis(4000)
            .memory_mib(8 * 1024)
            .owned_by(&format!("Pod/{app}-driver"))
    })
}

fn executors_per_claim(plan: &Plan, app: &str) -> Vec<usize> {
    plan.new_claims
        .iter()
        .map(|c| {
            c.pods
                .iter()
                .filter(|p| p.starts_with(&format!("default/{app}-exec")))
                .count()
        })
        .collect()
}

#[test]
fn a_spot_blast_radius_caps_each_workload_per_spot_node() {
    let types = karpenter_shape(64);
    let pool =
        || PoolSpec::new("spot").requirement(Requirement::in_(labels::CAPACITY_TYPE, ["spot"]));
    let uncapped = solve(
        &input(executors("a"), vec![pool()], types.clone()),
        &SolveOptions::default(),
    );
    assert!(
        executors_per_claim(&uncapped, "a").iter().any(|n| *n > 4),
        "without a cap executors share big nodes"
    );
    let mut p = executors("a");
    p.extend(executors("b"));
    let uncapped = solve(
        &input(p.clone(), vec![pool()], types.clone()),
        &SolveOptions::default(),
    );
    let plan = solve(
        &input(p, vec![pool().spot_blast_radius(4)], types.clone()),
        &SolveOptions::default(),
    );
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_claims_fit(&plan, &types);
    for app in ["a", "b"] {
        let per = executors_per_claim(&plan, app);
        assert!(per.iter().all(|n| *n <= 4), "{app}: {per:?}");
        assert_eq!(per.iter().sum::<usize>(), 100);
    }
    // Nodes are bought for four executors, not the largest type: no dearer than without the
    // cap on a catalogue priced per vCPU.
    assert!(
        plan.cost_per_hour() <= uncapped.cost_per_hour() * 1.001,
        "{} > {}",
        plan.cost_per_hour(),
        uncapped.cost_per_hour()
    );
}

#[test]
fn a_spot_blast_radius_leaves_on_demand_nodes_alone_and_counts_running_pods() {
    let types = karpenter_shape(64);
    let od = PoolSpec::new("od")
        .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]))
        .spot_blast_radius(4);
    let plan = solve(
        &input(executors("a"), vec![od], types.clone()),
        &SolveOptions::default(),
    );
    assert!(executors_per_claim(&plan, "a").iter().any(|n| *n > 4));

    // An existing spot node of the pool runs 3 executors of `a`: it takes 1 more of `a`, and
    // still 4 of `b`.
    let mut node = ExistingNode::new(
        "spot-node",
        Resources::new()
            .with("cpu", 64_000)
            .with("memory", 128 << 30)
            .with("pods", 110),
    )
    .label(labels::CAPACITY_TYPE, "spot");
    node.nodepool = Some("spot".into());
    node.capacity_type = Some(CapacityType::Spot);
    for p in executors("a").into_iter().take(3) {
        node = node.with_pod(PodRequest {
            name: format!("running-{}", p.name),
            ..p
        });
    }
    let pool = PoolSpec::new("spot")
        .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["spot"]))
        .spot_blast_radius(4);
    let mut p: Vec<PodRequest> = executors("a").into_iter().take(10).collect();
    p.extend(executors("b").into_iter().take(10));
    let mut inp = input(p, vec![pool], types);
    inp.nodes.push(node);
    let plan = solve(&inp, &SolveOptions::default());
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let on_node = |app: &str| {
        plan.existing_placements
            .keys()
            .filter(|k| k.starts_with(&format!("default/{app}-exec")))
            .count()
    };
    assert_eq!(on_node("a"), 1);
    assert_eq!(on_node("b"), 4);
}

#[test]
fn two_zone_spread_groups_are_each_dealt_to_zones() {
    // Two deployments spread over zones (maxSkew 1): dealing the first group adds classes; the
    // second group's check must not read past the classes there were (it once panicked with an
    // index out of bounds).
    let spread = |p: PodRequest| p.spread(labels::ZONE, 1, WhenUnsatisfiable::DoNotSchedule);
    let mut all = pods("a", 6, |p| spread(p.label("app", "a").cpu_millis(500)));
    all.extend(pods("b", 6, |p| {
        spread(p.label("app", "b").cpu_millis(500))
    }));
    let inp = input(all, vec![PoolSpec::new("default")], karpenter_shape(10));
    let plan = solve(&inp, &SolveOptions::default());
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    // Group a: two pods in each zone.
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let zones = req_values(claim_of(&plan, &format!("default/a-{i:03}")), labels::ZONE);
        assert_eq!(zones.len(), 1);
        *per_zone.entry(zones[0].clone()).or_default() += 1;
    }
    assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
}

/// A zone holding only nodes the pods cannot use (a tainted node, a cordoned one) is still a
/// domain of their zone spread to kube-scheduler (nodeTaintsPolicy Ignore; cordoned nodes are
/// not filtered), and its count (0 here) is the global minimum: with maxSkew 2, zones already
/// holding 3 matching pods refuse another. The solver must not buy nodes there for them
/// (seed-full: ~860 nodes launched in zones the scheduler refused, gaudi nodes being the only
/// nodes of a zone the spot pool cannot buy in).
#[test]
fn zone_spread_counts_zones_of_nodes_the_pods_cannot_use() {
    use stowage_solver::predicates::{ClusterIndex, Misfit};
    let types = karpenter_shape(30);
    let api = |p: PodRequest| {
        p.cpu_millis(1000).label("app", "api").spread(
            labels::ZONE,
            2,
            WhenUnsatisfiable::DoNotSchedule,
        )
    };
    let alloc = || {
        Resources::new()
            .with("cpu", 3000)
            .with("memory", 8 << 30)
            .with("pods", 20)
    };
    let nodes: Vec<ExistingNode> = ZONES
        .iter()
        .enumerate()
        .map(|(z, zone)| {
            let mut n = ExistingNode::new(&format!("full-{z}"), alloc()).label(labels::ZONE, zone);
            for i in 0..3 {
                n = n.with_pod(api(PodRequest::new("default", &format!("run-{z}-{i}"))));
            }
            n
        })
        .collect();
    let other_zone = "test-zone-e";
    for unusable in [
        ExistingNode::new("gaudi", alloc())
            .label(labels::ZONE, other_zone)
            .taint(NodeTaint::new(
                "habana.ai/gaudi",
                "true",
                TaintEffect::NoSchedule,
            )),
        {
            let mut n = ExistingNode::new("cordoned", alloc()).label(labels::ZONE, other_zone);
            n.unschedulable = true;
            n
        },
    ] {
        let mut nodes = nodes.clone();
        nodes.push(unusable.clone());
        // The scheduler's view: a new empty node in a zone the pool can buy in is refused.
        let mut idx = ClusterIndex::new(nodes.clone());
        idx.add_node(ExistingNode::new("new", alloc()).label(labels::ZONE, ZONES[0]));
        let pod = api(PodRequest::new("default", "api-000"));
        assert_eq!(idx.check(&pod, "new"), Err(Misfit::TopologySpread));
        let inp = SolveInput {
            nodes,
            ..input(
                pods("api", 3, api),
                vec![PoolSpec::new("default")],
                types.clone(),
            )
        };
        let plan = solve(&inp, &SolveOptions::default());
        assert!(
            plan.new_claims.is_empty(),
            "{}: bought {} claim(s) the scheduler refuses: {:?}",
            unusable.name,
            plan.new_claims.len(),
            plan.new_claims
                .iter()
                .map(|c| req_values(c, labels::ZONE).to_vec())
                .collect::<Vec<_>>()
        );
        assert_eq!(plan.unschedulable.len(), 3, "{:?}", plan.unschedulable);
        assert!(
            plan.unschedulable["default/api-000"].contains("topology spread"),
            "{:?}",
            plan.unschedulable
        );
    }
}

/// Dealt to zones or placed one by one (minDomains keeps a spread from being dealt), a zone
/// spread buys only for the pods the scheduler will bind: with a zone of unusable nodes at 0
/// matching pods and maxSkew 2, one more pod per zone holding 1, the rest unschedulable; every
/// bought pod is then bound by the scheduler's own predicates.
#[test]
fn zone_spread_buys_only_what_the_scheduler_binds() {
    use stowage_solver::predicates::ClusterIndex;
    let types = karpenter_shape(30);
    for min_domains in [None, Some(1)] {
        let api = |p: PodRequest| {
            let mut p = p.cpu_millis(1000).label("app", "api").spread(
                labels::ZONE,
                2,
                WhenUnsatisfiable::DoNotSchedule,
            );
            p.topology_spread[0].min_domains = min_domains;
            p
        };
        let alloc = |cpu: i64| {
            Resources::new()
                .with("cpu", cpu)
                .with("memory", 64 << 30)
                .with("pods", 100)
        };
        let mut nodes: Vec<ExistingNode> = ZONES
            .iter()
            .enumerate()
            .map(|(z, zone)| {
                ExistingNode::new(&format!("full-{z}"), alloc(1000))
                    .label(labels::ZONE, zone)
                    .with_pod(api(PodRequest::new("default", &format!("run-{z}"))))
            })
            .collect();
        nodes.push(
            ExistingNode::new("gaudi", alloc(96_000))
                .label(labels::ZONE, "test-zone-e")
                .taint(NodeTaint::new(
                    "habana.ai/gaudi",
                    "true",
                    TaintEffect::NoSchedule,
                )),
        );
        let pending = pods("api", 6, api);
        let inp = SolveInput {
            nodes: nodes.clone(),
            ..input(
                pending.clone(),
                vec![PoolSpec::new("default")],
                types.clone(),
            )
        };
        let plan = solve(&inp, &SolveOptions::default());
        assert_eq!(
            plan.unschedulable.len(),
            3,
            "minDomains {min_domains:?}: {:?}",
            plan.unschedulable
        );
        let bought: usize = plan.new_claims.iter().map(|c| c.pods.len()).sum();
        assert_eq!(bought, 3, "minDomains {min_domains:?}");
        // The scheduler binds every pod bought for to its claim's node.
        let mut idx = ClusterIndex::new(nodes);
        for (i, c) in plan.new_claims.iter().enumerate() {
            let name = format!("claim-{i}");
            idx.add_node(
                ExistingNode::new(&name, alloc(30_000))
                    .label(labels::ZONE, &req_values(c, labels::ZONE)[0]),
            );
            for key in &c.pods {
                let pod = pending.iter().find(|p| &p.key() == key).unwrap();
                assert_eq!(
                    idx.check(pod, &name),
                    Ok(()),
                    "minDomains {min_domains:?}: {key}"
                );
                idx.bind(pod.clone(), &name).unwrap();
            }
        }
    }
}
