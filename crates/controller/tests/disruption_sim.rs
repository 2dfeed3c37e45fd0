//! Disruption against the simulated cluster, with the real controllers: every scenario runs in
//! virtual time, and what must never happen is counted by the simulated cluster itself (its
//! referee: PDB and budget violations, disrupted and lost pods), not by the controllers.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use stowage_controller::{Context, Leadership};
use stowage_sim::{Report, Sample, Scenario, SimEnv, SimOptions, Simulation};

/// A scenario on the synthetic catalogue (type `i` has `i+1` vCPUs, `2(i+1)` GiB; prices
/// linear in size, spot at 0.7x) with one NodePool `default`: `pool` is the pool's `spec`
/// besides the template's node class, as YAML lines indented under `spec:`.
fn scenario(duration: &str, requirements: &str, pool: &str, timeline: &str) -> String {
    format!(
        "name: disruption\nduration: {duration}\nsampleEvery: 10s\n\
catalog: {{ source: synthetic, types: 8 }}\n\
nodeClasses: [{{ name: default }}]\n\
nodePools:\n  - name: default\n    spec:\n      template:\n        spec:\n          nodeClassRef: {{ group: aws.stowage.dev, kind: EC2NodeClass, name: default }}\n          requirements:\n{requirements}\n{pool}\n\
timeline:\n{timeline}"
    )
}

/// On-demand nodes of at least 2 vCPUs: 1-CPU pods pair up, and no spot-to-spot flexibility
/// rule gets in the way of a cheaper replacement.
const ON_DEMAND_2CPU: &str = "            - { key: stowage.dev/capacity-type, operator: In, values: [on-demand] }\n            - { key: aws.stowage.dev/instance-cpu, operator: Gt, values: [\"1\"] }";

/// Three Deployments of two 1-CPU pods, created two minutes apart so each gets its own
/// 2-vCPU node, then scaled to one pod each at 6m: three half-empty nodes.
fn three_half_empty(extra: &str) -> String {
    let mut t = String::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        t.push_str(&format!(
            "  - at: {}m\n    create: {{ name: {name}, replicas: 2, requests: {{ cpu: \"1\", memory: 1Gi }}{extra} }}\n",
            i * 2
        ));
    }
    for name in ["a", "b", "c"] {
        t.push_str(&format!(
            "  - at: 6m\n    scale: {{ name: {name}, replicas: 1 }}\n"
        ));
    }
    t
}

/// The controllers as a newly started process has them (always leader), wired as `stowage
/// simulate` and `stowage run` wire them: spot interruption warnings come from the fake cloud's
/// queue, as they come from SQS in a cluster.
fn start(env: &SimEnv) -> stowage_controller::Running {
    let ctx = Arc::new(Context::simulated(
        env.client.clone(),
        env.provider.clone(),
        env.clock.clone(),
        env.cloud.clone(),
    ));
    stowage_controller::start(ctx, Leadership::Always)
}

/// Runs `yaml` with the controllers and `script` alongside (it returns when it has seen enough;
/// the controllers run to the scenario's end either way).
async fn simulate_with<T, F, Fut>(yaml: &str, script: F) -> (Report, T)
where
    T: Send + 'static,
    F: FnOnce(SimEnv) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let scenario = Scenario::from_yaml("test scenario", yaml).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let report = Simulation::new(scenario, SimOptions::default())
        .run(move |env: SimEnv| async move {
            let running = start(&env);
            let mut shutdown = env.shutdown.clone();
            let out = script(env).await;
            let _ = tx.send(out);
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
            drop(running);
        })
        .await
        .unwrap();
    (report, rx.await.expect("the script finished"))
}

async fn simulate(yaml: &str) -> Report {
    simulate_with(yaml, |_| async {}).await.0
}

/// The sample at `secs` of virtual time (the last one at or before it).
fn at(report: &Report, secs: f64) -> &Sample {
    report
        .samples
        .iter()
        .rev()
        .find(|s| s.t <= secs + 1e-6)
        .unwrap()
}

/// Nothing the referee counts as unsafe happened.
fn assert_safe(report: &Report) {
    assert_eq!(report.pdb_violations, 0, "{:?}", report.violations);
    assert_eq!(report.budget_violations, 0, "{:?}", report.violations);
    assert_eq!(report.pods_lost, 0, "{:?}", report.violations);
}

/// What a script watching the cluster saw: for each Node, whether it was ever tainted
/// disrupted; for each pod, the node it ran on.
#[derive(Debug, Default)]
struct Watched {
    tainted: BTreeSet<String>,
    pod_nodes: BTreeMap<String, BTreeSet<String>>,
}

/// Polls Nodes and pods every 5 s of virtual time for `how_long`.
async fn watch(env: SimEnv, how_long: Duration) -> Watched {
    let nodes: Api<Node> = Api::all(env.client.clone());
    let pods: Api<Pod> = Api::all(env.client.clone());
    let seen = Arc::new(Mutex::new(Watched::default()));
    let start = tokio::time::Instant::now();
    while start.elapsed() < how_long {
        for n in nodes.list(&ListParams::default()).await.unwrap().items {
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == "stowage.dev/disrupted"));
            if tainted {
                seen.lock().unwrap().tainted.insert(n.name_any());
            }
        }
        for p in pods.list(&ListParams::default()).await.unwrap().items {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                seen.lock()
                    .unwrap()
                    .pod_nodes
                    .entry(p.name_any())
                    .or_default()
                    .insert(node);
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    std::mem::take(&mut *seen.lock().unwrap())
}

#[tokio::test(start_paused = true)]
async fn empty_nodes_are_removed_once_consolidate_after_has_passed() {
    let yaml = scenario(
        "20m",
        "            - { key: stowage.dev/capacity-type, operator: In, values: [on-demand] }",
        "      disruption: { consolidateAfter: 5m, budgets: [{ nodes: \"100%\" }] }",
        concat!(
            "  - at: 0s\n    create: { name: web, replicas: 4, requests: { cpu: \"1\", memory: 1Gi }, antiAffinity: kubernetes.io/hostname }\n",
            "  - at: 4m\n    scale: { name: web, replicas: 0 }\n"
        ),
    );
    let report = simulate(&yaml).await;
    assert_eq!(at(&report, 230.0).nodes(), 4, "one node per pod");
    // The pods left at 4m: the nodes stay until 5 minutes later.
    assert_eq!(at(&report, 4.0 * 60.0 + 295.0).nodes(), 4);
    assert_eq!(report.nodes_at_end, 0, "{}", report.summary_table());
    assert_eq!(report.disruptions_by_method.get("emptiness"), Some(&4));
    assert_eq!(report.disruptions_by_reason.get("Empty"), Some(&4));
    assert!((report.replacement_price_per_hour).abs() < 1e-9);
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn three_half_empty_nodes_are_consolidated_into_one_cheaper_node() {
    let yaml = scenario(
        "20m",
        ON_DEMAND_2CPU,
        "      disruption: { consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        &three_half_empty(""),
    );
    let report = simulate(&yaml).await;
    let before = at(&report, 6.0 * 60.0 + 5.0);
    assert_eq!(before.nodes(), 3, "{}", report.summary_table());
    let end = report.samples.last().unwrap();
    assert_eq!(end.nodes(), 1, "{}", report.summary_table());
    assert_eq!(end.running_pods, 3);
    assert!(
        end.cost_per_hour < before.cost_per_hour,
        "{} -> {}",
        before.cost_per_hour,
        end.cost_per_hour
    );
    assert_eq!(report.disruptions_by_method.get("multi-node"), Some(&3));
    assert_eq!(report.disruption_commands, 1);
    assert!(report.replacement_price_per_hour > 0.0);
    assert!(
        (report.saved_per_hour - (before.cost_per_hour - end.cost_per_hour)).abs() < 1e-6,
        "saved {} vs {} -> {}",
        report.saved_per_hour,
        before.cost_per_hour,
        end.cost_per_hour
    );
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn a_do_not_disrupt_pod_and_a_pdb_allowing_nothing_each_block_their_node() {
    // a: free to move; b: do-not-disrupt; c: one pod under `minAvailable: 1`.
    let mut timeline = String::new();
    let extras = [
        ("a", ""),
        (
            "b",
            ", annotations: { stowage.dev/do-not-disrupt: \"true\" }",
        ),
        ("c", ", pdb: { minAvailable: \"1\" }"),
    ];
    for (i, (name, extra)) in extras.iter().enumerate() {
        timeline.push_str(&format!(
            "  - at: {}m\n    create: {{ name: {name}, replicas: 2, requests: {{ cpu: \"1\", memory: 1Gi }}{extra} }}\n",
            i * 2
        ));
    }
    for (name, _) in extras {
        timeline.push_str(&format!(
            "  - at: 6m\n    scale: {{ name: {name}, replicas: 1 }}\n"
        ));
    }
    let yaml = scenario(
        "25m",
        ON_DEMAND_2CPU,
        "      disruption: { consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        &timeline,
    );
    let (report, seen) = simulate_with(&yaml, |env| async move {
        // From after the scale-down to the end.
        tokio::time::sleep(Duration::from_secs(7 * 60)).await;
        watch(env, Duration::from_secs(17 * 60)).await
    })
    .await;
    let end = report.samples.last().unwrap();
    assert_eq!(
        end.nodes(),
        2,
        "a's node goes, b's and c's stay: {}",
        report.summary_table()
    );
    for blocked in ["b-", "c-"] {
        let pods: Vec<(&String, &BTreeSet<String>)> = seen
            .pod_nodes
            .iter()
            .filter(|(p, _)| p.starts_with(blocked))
            .collect();
        assert_eq!(
            pods.len(),
            1,
            "the one {blocked} pod was never replaced: {pods:?}"
        );
        assert_eq!(pods[0].1.len(), 1);
        let node = pods[0].1.iter().next().unwrap();
        assert!(
            !seen.tainted.contains(node),
            "{node} (of {blocked}) was tainted"
        );
    }
    assert_eq!(report.disruptions_by_reason.values().sum::<u64>(), 1);
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn a_budget_of_one_never_lets_two_nodes_disrupt_at_once() {
    let yaml = scenario(
        "30m",
        "            - { key: stowage.dev/capacity-type, operator: In, values: [on-demand] }",
        "      disruption: { consolidateAfter: 0s, budgets: [{ nodes: \"1\" }] }",
        concat!(
            "  - at: 0s\n    create: { name: web, replicas: 6, requests: { cpu: \"1\", memory: 1Gi }, antiAffinity: kubernetes.io/hostname }\n",
            "  - at: 3m\n    scale: { name: web, replicas: 0 }\n"
        ),
    );
    let report = simulate(&yaml).await;
    assert_eq!(at(&report, 170.0).nodes(), 6);
    assert_eq!(report.nodes_at_end, 0, "{}", report.summary_table());
    assert_eq!(report.disruptions_by_reason.values().sum::<u64>(), 6);
    // Checked by the referee at every change of every Node and NodeClaim.
    assert_eq!(report.max_disrupting_by_pool.get("default"), Some(&1));
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn when_empty_never_replaces_and_only_removes_empty_nodes() {
    let mut timeline = three_half_empty("");
    for name in ["a", "b", "c"] {
        timeline.push_str(&format!(
            "  - at: 15m\n    scale: {{ name: {name}, replicas: 0 }}\n"
        ));
    }
    let yaml = scenario(
        "25m",
        ON_DEMAND_2CPU,
        "      disruption: { consolidationPolicy: WhenEmpty, consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        &timeline,
    );
    let report = simulate(&yaml).await;
    assert_eq!(
        at(&report, 15.0 * 60.0 - 5.0).nodes(),
        3,
        "half-empty nodes stay: {}",
        report.summary_table()
    );
    assert_eq!(report.nodes_at_end, 0);
    assert!(report.replacement_price_per_hour.abs() < 1e-9);
    assert_eq!(
        report.disruptions_by_reason.keys().collect::<Vec<_>>(),
        ["Empty"]
    );
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn consolidate_after_never_never_acts() {
    let mut timeline = three_half_empty("");
    timeline.push_str("  - at: 10m\n    scale: { name: a, replicas: 0 }\n");
    let yaml = scenario(
        "25m",
        ON_DEMAND_2CPU,
        "      disruption: { consolidateAfter: Never, budgets: [{ nodes: \"100%\" }] }",
        &timeline,
    );
    let report = simulate(&yaml).await;
    assert_eq!(report.nodes_at_end, 3, "{}", report.summary_table());
    assert_eq!(report.disruption_commands, 0);
    assert!(report.disruptions_by_reason.is_empty());
    assert_eq!(report.pods_disrupted, 0);
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn an_on_demand_fallback_for_iced_spot_returns_to_spot_after_restore_spot_after() {
    // Spot is out for the first 5 minutes; the fallback node may go back to spot 10 minutes
    // after it was bought (consolidation itself is off: only the capacity-mix restore acts).
    let yaml = scenario(
        "30m",
        "            - { key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand] }",
        "      capacityMix: { restoreSpotAfter: 10m }\n      disruption: { consolidationPolicy: WhenEmpty, consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        concat!(
            "  - at: 0s\n    insufficientCapacity: { capacityType: spot, duration: 5m }\n",
            "  - at: 10s\n    create: { name: web, replicas: 2, requests: { cpu: \"1\", memory: 1Gi } }\n"
        ),
    );
    let report = simulate(&yaml).await;
    let early = at(&report, 9.0 * 60.0);
    assert!(
        early.nodes_on_demand >= 1 && early.nodes_spot == 0,
        "{}",
        report.summary_table()
    );
    let end = report.samples.last().unwrap();
    assert_eq!(end.nodes_on_demand, 0, "{}", report.summary_table());
    assert!(end.nodes_spot >= 1);
    assert_eq!(end.running_pods, 2);
    assert!(
        report
            .disruptions_by_method
            .contains_key("capacity-mix-restore"),
        "{:?}",
        report.disruptions_by_method
    );
    assert!(report.saved_per_hour > 0.0);
    assert_safe(&report);
}

#[tokio::test(start_paused = true)]
async fn the_quickstart_ends_without_an_empty_node() {
    let report = Simulation::new(
        Scenario::builtin("quickstart").unwrap(),
        SimOptions::default(),
    )
    .run(|env: SimEnv| async move {
        let running = start(&env);
        let mut shutdown = env.shutdown.clone();
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        drop(running);
    })
    .await
    .unwrap();
    let last = report.samples.last().unwrap();
    assert_eq!(last.nodes_empty, 0, "{}", report.summary_table());
    assert_safe(&report);
    eprintln!("{}", report.summary_table());
}

/// A pod as the scheduler reports it when nothing holds it: what provisioning buys for.
fn as_unscheduled(mut pod: Pod) -> Pod {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = None;
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}

/// How many nodes a fresh solve buys for every workload pod in the cluster now (running or
/// pending, DaemonSet pods aside): what the remaining work needs.
async fn nodes_needed(env: &SimEnv, catalog: &[stowage_solver::InstanceType]) -> usize {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use stowage_api::NodePool;
    let pods: Api<Pod> = Api::all(env.client.clone());
    let pools: Api<NodePool> = Api::all(env.client.clone());
    let daemonsets: Api<DaemonSet> = Api::all(env.client.clone());
    let mut state = stowage_controller::state::ClusterState::new();
    for p in pools.list(&ListParams::default()).await.unwrap().items {
        state.apply_nodepool(p);
    }
    for d in daemonsets.list(&ListParams::default()).await.unwrap().items {
        state.apply_daemonset(d);
    }
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        let daemon = p.owner_references().iter().any(|o| o.kind == "DaemonSet");
        let finished = matches!(phase.as_deref(), Some("Succeeded" | "Failed"));
        if daemon || finished || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        state.apply_pod(as_unscheduled(p));
    }
    let pools = stowage_controller::snapshot::pools(&state);
    let types = Arc::new(catalog.to_vec());
    let types = pools
        .iter()
        .map(|p| (p.name_any(), types.clone()))
        .collect();
    let snap = stowage_controller::snapshot::build(&state, &pools, types, env.clock.now());
    let plan = stowage_solver::solve(&snap.input, &stowage_solver::SolveOptions::default());
    plan.new_claims.len()
}

/// Virtual seconds since the scenario started.
fn elapsed(env: &SimEnv) -> f64 {
    env.clock
        .now()
        .duration_since(SimOptions::default().epoch)
        .as_secs_f64()
}

#[tokio::test(start_paused = true)]
#[ignore = "the 1,000-node seed scenario takes many minutes in a debug build: run it with --release -- --ignored"]
async fn the_seed_shrinks_to_what_the_remaining_work_needs_within_15_minutes_of_the_spark_job() {
    let catalog = stowage_aws_catalog::embedded(
        "us-east-1",
        &stowage_aws_catalog::CatalogSettings::default(),
    )
    .unwrap();
    let options = SimOptions {
        aws_catalog: Some(catalog),
        ..SimOptions::default()
    };
    let scenario = Scenario::builtin("seed").unwrap();
    let sold = Simulation::new(scenario.clone(), options.clone())
        .catalog()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let report = Simulation::new(scenario, options)
        .run(move |env: SimEnv| async move {
            let running = start(&env);
            let pods: Api<Pod> = Api::all(env.client.clone());
            let drivers = ListParams::default().labels("spark-role=driver");
            // The Spark job ends when its driver succeeds.
            let ended = loop {
                let done = pods.list(&drivers).await.unwrap().items.iter().any(|p| {
                    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
                });
                if done {
                    break elapsed(&env);
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            };
            tokio::time::sleep(Duration::from_secs(15 * 60)).await;
            let needed = nodes_needed(&env, &sold).await;
            let _ = tx.send((ended, needed, elapsed(&env)));
            let mut shutdown = env.shutdown.clone();
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
            drop(running);
        })
        .await
        .unwrap();
    let (ended, needed, checked) = rx.await.expect("the Spark job ended before the scenario");
    let before = at(&report, ended).nodes();
    let after = at(&report, checked).nodes();
    eprintln!(
        "seed: Spark job ended at {ended:.0}s with {before} nodes; {after} nodes 15 min later, \
         a fresh solve of the remaining pods buys {needed}\n{}",
        report.summary_table()
    );
    // Consolidation moves pods in commands of at most one new node and does not re-pack the
    // whole cluster: it may stay a quarter above a fresh solve, no more.
    assert!(
        after as f64 <= (needed as f64 * 1.25).ceil(),
        "{after} nodes 15 min after the Spark job ended; the remaining work needs {needed}"
    );
    assert!(after < before);
    assert_safe(&report);
}

/// SplitMix64: the randomised scenario is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 24 hours of pods coming and going on a spot/on-demand pool (budget 3) and an on-demand
/// pool (budget 2): Deployments of random sizes with and without PDBs and do-not-disrupt, one
/// scaled every 40 s, a Job every 20 minutes, a spot interruption every 2 hours; the last
/// hour is quiet so every desired replica can be Running at the end.
fn randomised_scenario(seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut t = String::new();
    let cpus = ["250m", "500m", "1", "1500m", "2", "3"];
    let n = 14;
    let mut defs = Vec::new();
    for i in 0..n {
        let cpu = cpus[rng.below(cpus.len() as u64) as usize];
        let mem = 1 + rng.below(4);
        let pool = if i % 4 == 0 { "steady" } else { "general" };
        let mut extra = format!(", nodeSelector: {{ stowage.dev/nodepool: {pool} }}");
        match rng.below(6) {
            0 => extra.push_str(", pdb: { maxUnavailable: \"1\" }"),
            1 => extra.push_str(", pdb: { minAvailable: \"60%\" }"),
            2 => extra.push_str(", annotations: { stowage.dev/do-not-disrupt: \"true\" }"),
            3 => extra
                .push_str(", spread: [{ topologyKey: topology.kubernetes.io/zone, maxSkew: 2 }]"),
            _ => {}
        }
        let replicas = 1 + rng.below(12);
        t.push_str(&format!(
            "  - at: 0s\n    create: {{ name: d{i}, replicas: {replicas}, requests: {{ cpu: \"{cpu}\", memory: {mem}Gi }}{extra} }}\n"
        ));
        defs.push(i);
    }
    for step in 1..23 * 60 * 3 / 2 {
        // A scale every 40 s.
        let secs = step * 40;
        let minute = secs / 60;
        let i = defs[rng.below(n) as usize];
        let replicas = rng.below(16);
        t.push_str(&format!(
            "  - at: {secs}s\n    scale: {{ name: d{i}, replicas: {replicas} }}\n"
        ));
        if secs % 60 != 0 {
            continue;
        }
        if minute % 20 == 0 {
            let replicas = 5 + rng.below(30);
            let run = 3 + rng.below(15);
            t.push_str(&format!(
                "  - at: {minute}m\n    create: {{ name: job{minute}, kind: Job, replicas: {replicas}, runTime: {run}m, requests: {{ cpu: \"1\", memory: 2Gi }}, nodeSelector: {{ stowage.dev/nodepool: general }} }}\n"
            ));
        }
        if minute % 120 == 60 {
            t.push_str(&format!(
                "  - at: {minute}m\n    interrupt: {{ count: 1, nodePool: general }}\n"
            ));
        }
    }
    let head = r#"name: randomised
duration: 24h
sampleEvery: 1m
catalog: { source: synthetic, types: 16 }
nodeClasses: [{ name: default }]
nodePools:
  - name: general
    spec:
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          requirements:
            - { key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand] }
      disruption: { consolidateAfter: 30s, budgets: [{ nodes: "3" }] }
  - name: steady
    spec:
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          requirements:
            - { key: stowage.dev/capacity-type, operator: In, values: [on-demand] }
      disruption: { consolidateAfter: 1m, budgets: [{ nodes: "2" }] }
daemonSets:
  - name: node-agent
    requests: { cpu: 100m, memory: 128Mi }
    tolerations: [{ operator: Exists }]
timeline:
"#;
    format!("{head}{t}")
}

#[tokio::test(start_paused = true)]
async fn a_randomised_day_of_churn_disrupts_safely_and_loses_no_pod() {
    let yaml = randomised_scenario(42);
    let report = simulate(&yaml).await;
    eprintln!("{}", report.summary_table());
    assert!(
        report.disruption_commands >= 1_000,
        "{} disruption commands",
        report.disruption_commands
    );
    assert_safe(&report);
    assert_eq!(
        report.replicas_short_at_end,
        0,
        "{}",
        report.summary_table()
    );
    assert_eq!(report.pending_at_end, 0);
    assert_eq!(report.jobs_unfinished_at_end, 0);
}
