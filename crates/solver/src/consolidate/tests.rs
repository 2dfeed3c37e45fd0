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
    changed.nodes[1].pods.push(p);
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
