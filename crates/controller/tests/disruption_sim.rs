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
use stowage_controller::{Context, Leadership, Settings};
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

/// The controllers as a newly started process has them (always leader).
fn start(env: &SimEnv) -> stowage_controller::Running {
    let settings = Settings {
        cluster_name: "sim".to_string(),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        env.client.clone(),
        env.provider.clone(),
        env.clock.clone(),
        settings,
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
