use super::*;
use crate::catalog::karpenter_shape;
use crate::domain::{PodRequest, PoolSpec};
use crate::model::Resources;

fn alloc(vcpu: i64) -> Resources {
    Resources::new()
        .with("cpu", vcpu * 1000)
        .with("memory", (2 * vcpu) << 30)
        .with("pods", 10 * vcpu)
}

fn daemon(node: &str) -> PodRequest {
    let mut p = PodRequest::new("kube-system", &format!("agent-{node}")).cpu_millis(100);
    p.owner = Some("DaemonSet/agent".into());
    p
}

fn node(name: &str, vcpu: i64, ct: CapacityType, busy_millis: &[i64]) -> ExistingNode {
    let mut n = ExistingNode::new(name, alloc(vcpu))
        .label(labels::NODEPOOL, "default")
        .with_pod(daemon(name));
    for (i, m) in busy_millis.iter().enumerate() {
        let mut p = PodRequest::new("default", &format!("{name}-w{i}")).cpu_millis(*m);
        p.owner = Some("ReplicaSet/web".into());
        n = n.with_pod(p);
    }
    n.nodepool = Some("default".into());
    n.capacity_type = Some(ct);
    n.price_per_hour = Some(price(vcpu, ct));
    n
}

fn price(vcpu: i64, ct: CapacityType) -> f64 {
    let od = 0.3 * vcpu as f64;
    if ct == CapacityType::Spot {
        od * 0.7
    } else {
        od
    }
}

fn candidate(n: &ExistingNode) -> Candidate {
    Candidate {
        node: n.name.clone(),
        nodepool: "default".into(),
        price_per_hour: n.price_per_hour.unwrap_or(0.0),
        capacity_type: n.capacity_type.unwrap_or(CapacityType::OnDemand),
        disruption_cost: 0.0,
        underutilized_allowed: true,
        min_instance_types: None,
    }
}

fn input(nodes: Vec<ExistingNode>, types: usize) -> SolveInput {
    SolveInput {
        nodes,
        nodepools: vec![PoolSpec::new("default")],
        instance_types: karpenter_shape(types),
        ..SolveInput::default()
    }
}

fn run(inp: &SolveInput, cands: &[Candidate], budgets: &Budgets) -> Option<Command> {
    decide(inp, cands, budgets, &ConsolidationOptions::default()).command
}

#[test]
fn empty_nodes_go_together_in_one_delete() {
    let nodes = vec![
        node("a", 4, CapacityType::Spot, &[]),
        node("b", 4, CapacityType::Spot, &[3000]),
        node("c", 8, CapacityType::OnDemand, &[]),
    ];
    let inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands, &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.method, Method::Emptiness);
    assert_eq!(cmd.candidates, ["a", "c"]);
    assert!(cmd.replacement.is_none());
    let want = price(4, CapacityType::Spot) + price(8, CapacityType::OnDemand);
    assert!((cmd.savings_per_hour - want).abs() < 1e-9);
}

#[test]
fn a_budget_bounds_how_many_empty_nodes_go() {
    let nodes = vec![
        node("a", 4, CapacityType::Spot, &[]),
        node("b", 4, CapacityType::Spot, &[]),
    ];
    let inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let mut budgets = Budgets::default();
    budgets.set("default", Reason::Empty, 1);
    let cmd = run(&inp, &cands, &budgets).unwrap();
    assert_eq!(cmd.candidates, ["a"]);
    assert!(run(&inp, &cands, &Budgets::default()).is_none());
}

#[test]
fn three_half_empty_on_demand_nodes_become_one_cheaper_node() {
    let nodes = vec![
        node("a", 8, CapacityType::OnDemand, &[2000]),
        node("b", 8, CapacityType::OnDemand, &[2000]),
        node("c", 8, CapacityType::OnDemand, &[2000]),
    ];
    let inp = input(nodes, 20);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands, &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.method, Method::MultiNode);
    assert_eq!(cmd.candidates.len(), 3);
    let r = cmd.replacement.as_ref().unwrap();
    assert_eq!(r.pods.len(), 3);
    let summed = 3.0 * price(8, CapacityType::OnDemand);
    assert!(r.cheapest_price < summed);
    assert!((cmd.savings_per_hour - (summed - r.cheapest_price)).abs() < 1e-9);
    // Every listed option is cheaper than what it replaces, launched as spot.
    for name in &r.instance_type_options {
        let t = inp.instance_types.iter().find(|t| &t.name == name).unwrap();
        let worst = t
            .offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot)
            .map(|o| o.price_per_hour)
            .fold(0.0, f64::max);
        assert!(worst < summed, "{name} at {worst}");
    }
    assert!(validate(&inp, &cmd, &ConsolidationOptions::default()));
}

#[test]
fn pods_that_fit_elsewhere_need_no_replacement() {
    let nodes = vec![
        node("a", 8, CapacityType::Spot, &[1000]),
        node("b", 8, CapacityType::Spot, &[2000]),
    ];
    let inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands[..1], &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.method, Method::SingleNode);
    assert_eq!(cmd.candidates, ["a"]);
    assert!(cmd.replacement.is_none());
}

#[test]
fn when_empty_pools_never_consolidate_busy_nodes() {
    let nodes = vec![
        node("a", 8, CapacityType::OnDemand, &[1000]),
        node("b", 8, CapacityType::OnDemand, &[1000]),
    ];
    let inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp
        .nodes
        .iter()
        .map(|n| Candidate {
            underutilized_allowed: false,
            ..candidate(n)
        })
        .collect();
    assert!(run(&inp, &cands, &Budgets::unlimited(&cands)).is_none());
}

#[test]
fn spot_is_replaced_by_spot_only_with_enough_cheaper_types() {
    let nodes = vec![node("a", 16, CapacityType::Spot, &[1000])];
    // 10 types: fewer than 15 cheaper spot types exist.
    let few = input(nodes.clone(), 10);
    let cands: Vec<Candidate> = few.nodes.iter().map(candidate).collect();
    assert!(run(&few, &cands, &Budgets::unlimited(&cands)).is_none());
    // 15 cheaper spot types (1..15 vCPU) than the 16-vCPU node: replaced, listing 15 options.
    let many = input(nodes, 40);
    let cmd = run(&many, &cands, &Budgets::unlimited(&cands)).unwrap();
    let r = cmd.replacement.unwrap();
    assert_eq!(r.instance_type_options.len(), 15);
}

#[test]
fn a_command_is_dropped_when_the_cluster_changed() {
    let nodes = vec![
        node("a", 8, CapacityType::Spot, &[1000]),
        node("b", 8, CapacityType::Spot, &[2000]),
    ];
    let inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands[..1], &Budgets::unlimited(&cands)).unwrap();
    assert!(validate(&inp, &cmd, &ConsolidationOptions::default()));
    // `b` filled up meanwhile: `a`'s pod no longer fits anywhere without buying.
    let mut changed = inp.clone();
    let mut p = PodRequest::new("default", "late").cpu_millis(5500);
    p.owner = Some("ReplicaSet/late".into());
    changed.nodes[1].pods.push(p.into());
    assert!(!validate(&changed, &cmd, &ConsolidationOptions::default()));
}

#[test]
fn eviction_and_disruption_costs() {
    assert_eq!(eviction_cost(0, 0), 1.0);
    assert_eq!(eviction_cost(i32::MAX, i32::MAX), 10.0);
    assert_eq!(eviction_cost(i32::MIN, i32::MIN), -10.0);
    assert_eq!(disruption_cost([1.0, -3.0, 2.0], 1.0), 3.0);
    assert_eq!(disruption_cost([1.0, 2.0], 0.5), 1.5);
}

fn busy(name: &str, millis: i64) -> PodRequest {
    let mut p = PodRequest::new("default", name).cpu_millis(millis);
    p.owner = Some("ReplicaSet/web".into());
    p
}

#[test]
fn pods_already_pending_do_not_block() {
    let nodes = vec![
        node("a", 8, CapacityType::Spot, &[1000]),
        node("b", 8, CapacityType::Spot, &[2000]),
    ];
    let mut inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    // One pending pod fits no type at all, another needs a new node whatever happens.
    inp.pods.push(busy("huge", 1_000_000).into());
    inp.pods.push(busy("waiting", 9_000).into());
    let cmd = run(&inp, &cands[..1], &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.method, Method::SingleNode);
    assert_eq!(cmd.candidates, ["a"]);
    assert!(cmd.replacement.is_none());
    // The candidates' own pods still must fit: a's pod does not fit once b is full.
    inp.nodes[1].pods.push(busy("late", 5_500).into());
    assert!(run(&inp, &cands[..1], &Budgets::unlimited(&cands)).is_none());
}

#[test]
fn several_nodes_are_not_replaced_by_one_of_their_own_type() {
    // Three on-demand 8-vCPU nodes, 2.6 vCPU used each: one 8-vCPU node would hold all
    // (3 -> 1 of the same type), but deleting two and keeping one saves as much with less churn.
    let nodes: Vec<ExistingNode> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let mut n = node(n, 8, CapacityType::OnDemand, &[1300, 1300]);
            n.instance_type = Some(crate::catalog::type_name(7));
            n
        })
        .collect();
    let mut inp = input(nodes, 10);
    inp.nodepools =
        vec![
            PoolSpec::new("default").requirement(stowage_api::requirements::Requirement::in_(
                labels::CAPACITY_TYPE,
                ["on-demand"],
            )),
        ];
    let od8 = inp.instance_types[7].offerings[0].price_per_hour;
    for n in &mut inp.nodes {
        n.price_per_hour = Some(od8);
    }
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands, &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.method, Method::MultiNode);
    assert_eq!(cmd.candidates, ["a", "b"]);
    assert!(cmd.replacement.is_none());
    // Without the type among the candidates, the three go for one cheaper node.
    for n in &mut inp.nodes {
        n.instance_type = Some("something-else".into());
    }
    let cmd = run(&inp, &cands, &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.candidates.len(), 3);
    assert!(cmd.replacement.is_some());
}

#[test]
fn single_node_candidates_take_turns_across_pools() {
    let mut nodes = vec![
        node("a1", 4, CapacityType::OnDemand, &[3500]),
        node("a2", 4, CapacityType::OnDemand, &[3500]),
        node("a3", 4, CapacityType::OnDemand, &[3500]),
        node("b1", 4, CapacityType::OnDemand, &[500]),
        node("big", 32, CapacityType::OnDemand, &[29_000]),
    ];
    for n in &mut nodes[3..] {
        n.nodepool = Some("other".into());
    }
    let mut inp = input(nodes, 4);
    let on_demand =
        stowage_api::requirements::Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]);
    inp.nodepools = vec![
        PoolSpec::new("default").requirement(on_demand.clone()),
        PoolSpec::new("other").requirement(on_demand),
    ];
    let cands: Vec<Candidate> = inp.nodes[..4]
        .iter()
        .map(|n| Candidate {
            nodepool: n.nodepool.clone().unwrap_or_default(),
            ..candidate(n)
        })
        .collect();
    let order: Vec<&str> = interleave_pools(cands.iter().collect())
        .iter()
        .map(|c| c.node.as_str())
        .collect();
    assert_eq!(order, ["a1", "b1", "a2", "a3"]);
    // Pool `default`'s nodes cannot go (3.5 vCPU pods: no room anywhere, and only their own
    // 4-vCPU on-demand type holds one); `other`'s can (its pod fits on `big`). Two simulations: without turns, both would go to `default`.
    let options = ConsolidationOptions {
        max_simulations: 2,
        ..ConsolidationOptions::default()
    };
    let budgets = Budgets::unlimited(&cands);
    let d = single_node(&inp, &cands, &budgets, &options);
    assert_eq!(d.command.unwrap().candidates, ["b1"]);
    assert_eq!(d.simulations, 2);
}

#[test]
fn spot_to_spot_needs_the_pools_min_values_when_higher() {
    let nodes = vec![node("a", 16, CapacityType::Spot, &[1000])];
    let inp = input(nodes, 40);
    let mut cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    // 15 cheaper spot types exist: enough for the default 15, not for minValues 20.
    cands[0].min_instance_types = Some(20);
    assert!(run(&inp, &cands, &Budgets::unlimited(&cands)).is_none());
    cands[0].min_instance_types = Some(10);
    let r = run(&inp, &cands, &Budgets::unlimited(&cands))
        .unwrap()
        .replacement
        .unwrap();
    assert_eq!(r.instance_type_options.len(), 15);
}

#[test]
fn on_demand_is_replaced_by_spot_without_the_flexibility_rule() {
    // 10 types only: too few for spot-to-spot, but on-demand to spot needs none.
    let nodes = vec![node("a", 16, CapacityType::OnDemand, &[1000])];
    let inp = input(nodes, 10);
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands, &Budgets::unlimited(&cands)).unwrap();
    let r = cmd.replacement.as_ref().unwrap();
    assert!(
        r.requirements
            .iter()
            .any(|q| q.key == labels::CAPACITY_TYPE && q.values == ["spot".to_string()])
    );
    // The price it claims is the cheapest spot offering among the options it lists.
    let cheapest = r
        .instance_type_options
        .iter()
        .flat_map(|name| {
            let t = inp.instance_types.iter().find(|t| &t.name == name).unwrap();
            t.offerings
                .iter()
                .filter(|o| o.capacity_type == CapacityType::Spot)
                .map(|o| o.price_per_hour)
        })
        .fold(f64::INFINITY, f64::min);
    assert!((r.cheapest_price - cheapest).abs() < 1e-12);
    assert!(r.cheapest_price < price(16, CapacityType::OnDemand));
    assert!((cmd.savings_per_hour - (price(16, CapacityType::OnDemand) - cheapest)).abs() < 1e-9);
}

#[test]
fn multi_node_takes_three_nodes_when_no_two_merge_for_less() {
    // Prices are linear in size: two 1-vCPU nodes cost what one 2-vCPU node does, three cost
    // more. Only the whole prefix consolidates, so the search must not bisect it away.
    let nodes = vec![
        node("a", 1, CapacityType::OnDemand, &[600]),
        node("b", 1, CapacityType::OnDemand, &[600]),
        node("c", 1, CapacityType::OnDemand, &[600]),
    ];
    let mut inp = input(nodes, 8);
    inp.nodes
        .iter_mut()
        .for_each(|n| n.pods.retain(|p| !leaves_with_node(p)));
    let cands: Vec<Candidate> = inp.nodes.iter().map(candidate).collect();
    let cmd = run(&inp, &cands, &Budgets::unlimited(&cands)).unwrap();
    assert_eq!(cmd.method, Method::MultiNode);
    assert_eq!(cmd.candidates, ["a", "b", "c"]);
    let r = cmd.replacement.unwrap();
    assert!(r.cheapest_price < 0.9 - 1e-9, "{r:?}");
}
