//! The disruption controller with the real controllers on the simulated cluster, in virtual
//! time: empty nodes go after `consolidateAfter`, half-empty nodes are consolidated, and what
//! must block a node does.
#![allow(clippy::unwrap_used)] // setup helpers outside #[test] functions unwrap too

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use stowage_api::NodeClaim;
use stowage_api::conditions::INITIALIZED;
use stowage_controller::{Context, Leadership, Settings};
use stowage_sim::{Report, Scenario, SimEnv, SimOptions, Simulation};

const HEAD: &str = r#"
catalog: { source: synthetic, types: 8 }
nodeClasses:
  - name: default
    spec:
      amiSelectorTerms: [{ alias: al2023@latest }]
      subnetSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      securityGroupSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      role: NodeRole
"#;

fn pool(disruption: &str) -> String {
    format!(
        r#"nodePools:
  - name: default
    spec:
      disruption: {disruption}
      template:
        spec:
          nodeClassRef: {{ group: aws.stowage.dev, kind: EC2NodeClass, name: default }}
"#
    )
}

async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `yaml` with the real controllers and `script` beside them.
async fn simulate<T, F, Fut>(yaml: &str, script: F) -> (Report, T)
where
    T: Send + 'static,
    F: FnOnce(SimEnv, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let scenario = Scenario::from_yaml("test", yaml).unwrap();
    let report = Simulation::new(scenario, SimOptions::default())
        .run(move |env: SimEnv| async move {
            let ctx = Arc::new(Context::new(
                env.client.clone(),
                env.provider.clone(),
                env.clock.clone(),
                Settings::default(),
            ));
            let running = stowage_controller::start(ctx.clone(), Leadership::Always);
            let mut shutdown = env.shutdown.clone();
            let out = script(env, ctx).await;
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

async fn nodes(client: &kube::Client) -> Vec<Node> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

async fn claims(client: &kube::Client) -> Vec<NodeClaim> {
    Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

async fn running(client: &kube::Client, workload: &str) -> usize {
    let lp = ListParams::default().labels(&format!("sim.stowage.dev/workload={workload}"));
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
}

#[tokio::test(start_paused = true)]
async fn empty_nodes_are_removed_after_consolidate_after() {
    let yaml = format!(
        "name: empty\nduration: 40m\n{HEAD}{}timeline:\n  - at: 0s\n    create: {{ name: web, replicas: 6, requests: {{ cpu: '3', memory: 1Gi }}, antiAffinity: kubernetes.io/hostname }}\n  - at: 8m\n    delete: {{ name: web }}\n",
        pool("{ consolidateAfter: 5m, budgets: [{ nodes: \"100%\" }] }")
    );
    let (_report, (before, removed_at, metrics)) = simulate(&yaml, |env, ctx| async move {
        let client = env.client.clone();
        eventually("6 running pods", Duration::from_secs(300), || async {
            (running(&client, "web").await == 6).then_some(())
        })
        .await;
        let before = nodes(&client).await.len();
        // The workload goes at 8m; nothing is removed before consolidateAfter has passed since.
        eventually("the pods gone", Duration::from_secs(15 * 60), || async {
            (running(&client, "web").await == 0).then_some(())
        })
        .await;
        let start = env.clock.now();
        assert_eq!(nodes(&client).await.len(), before);
        eventually(
            "every claim deleted",
            Duration::from_secs(30 * 60),
            || async {
                let left = claims(&client).await;
                left.iter()
                    .all(|c| c.metadata.deletion_timestamp.is_some())
                    .then_some(())
            },
        )
        .await;
        let removed_at = env.clock.now().duration_since(start);
        eventually("every node gone", Duration::from_secs(10 * 60), || async {
            (claims(&client).await.is_empty() && nodes(&client).await.is_empty()).then_some(())
        })
        .await;
        (before, removed_at, ctx.render_metrics())
    })
    .await;
    assert!(before >= 6, "one node per pod (anti-affinity): {before}");
    // The nodes stayed consolidateAfter (5m) after their pods went, and not much longer.
    assert!(
        (5 * 60..6 * 60).contains(&removed_at.as_secs()),
        "deleted {removed_at:?} after the pods went"
    );
    assert!(
        metrics.contains(
            "stowage_disruption_decisions_total{method=\"emptiness\",result=\"executed\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn consolidate_after_never_keeps_empty_nodes() {
    let yaml = format!(
        "name: never\nduration: 30m\n{HEAD}{}timeline:\n  - at: 0s\n    create: {{ name: web, replicas: 3, requests: {{ cpu: '3', memory: 1Gi }}, antiAffinity: kubernetes.io/hostname }}\n  - at: 5m\n    delete: {{ name: web }}\n",
        pool("{ consolidateAfter: Never }")
    );
    let (_report, (before, after)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("3 running pods", Duration::from_secs(300), || async {
            (running(&client, "web").await == 3).then_some(())
        })
        .await;
        let before = claims(&client).await.len();
        tokio::time::sleep(Duration::from_secs(20 * 60)).await;
        let after: Vec<String> = claims(&client)
            .await
            .iter()
            .filter(|c| c.is_true(INITIALIZED) && c.metadata.deletion_timestamp.is_none())
            .map(|c| c.name_any())
            .collect();
        (before, after.len())
    })
    .await;
    assert_eq!(before, after, "no node was disrupted");
}

/// An on-demand pool (spot-to-spot replacement needs more cheaper types than the synthetic
/// catalogue has) and three 0.6-CPU pods created two minutes apart, so each gets its own
/// 1-vCPU node ($0.30/h): three half-empty nodes that one 2-vCPU node ($0.60/h) holds.
fn three_half_empty(disruption: &str, a_extra: &str) -> String {
    format!(
        r#"name: three
duration: 40m
{HEAD}nodePools:
  - name: default
    spec:
      disruption: {disruption}
      template:
        spec:
          nodeClassRef: {{ group: aws.stowage.dev, kind: EC2NodeClass, name: default }}
          requirements: [{{ key: stowage.dev/capacity-type, operator: In, values: [on-demand] }}]
timeline:
  - at: 0s
    create: {{ name: a, replicas: 1, requests: {{ cpu: 600m, memory: 512Mi }}{a_extra} }}
  - at: 2m
    create: {{ name: b, replicas: 1, requests: {{ cpu: 600m, memory: 512Mi }} }}
  - at: 4m
    create: {{ name: c, replicas: 1, requests: {{ cpu: 600m, memory: 512Mi }} }}
"#
    )
}

/// Live, initialized claims.
async fn live_claims(client: &kube::Client) -> Vec<NodeClaim> {
    claims(client)
        .await
        .into_iter()
        .filter(|c| c.is_true(INITIALIZED) && c.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn all_running(client: &kube::Client) -> bool {
    running(client, "a").await == 1
        && running(client, "b").await == 1
        && running(client, "c").await == 1
}

/// The node the pod of workload `w` runs on.
async fn node_of(client: &kube::Client, w: &str) -> Option<String> {
    let lp = ListParams::default().labels(&format!("sim.stowage.dev/workload={w}"));
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .find_map(|p| p.spec.as_ref()?.node_name.clone())
}

#[tokio::test(start_paused = true)]
async fn three_half_empty_nodes_become_one_cheaper_node() {
    let yaml = three_half_empty(
        "{ consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        "",
    );
    let (_report, (peak, metrics)) = simulate(&yaml, |env, ctx| async move {
        let client = env.client.clone();
        let peak = eventually("three nodes", Duration::from_secs(8 * 60), || async {
            let n = live_claims(&client).await.len();
            (n == 3 && all_running(&client).await).then_some(n)
        })
        .await;
        eventually(
            "one node running all three pods",
            Duration::from_secs(20 * 60),
            || async {
                (live_claims(&client).await.len() == 1 && all_running(&client).await).then_some(())
            },
        )
        .await;
        (peak, ctx.render_metrics())
    })
    .await;
    assert_eq!(peak, 3);
    assert!(
        metrics.contains(
            "stowage_disruption_decisions_total{method=\"multi-node\",result=\"executed\"} 1"
        ),
        "{metrics}"
    );
    let saved: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stowage_consolidation_savings_dollars_per_hour "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(saved > 0.0, "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn when_empty_never_replaces() {
    let yaml = three_half_empty(
        "{ consolidationPolicy: WhenEmpty, consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        "",
    );
    let (_report, (before, after)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("three nodes", Duration::from_secs(8 * 60), || async {
            (live_claims(&client).await.len() == 3 && all_running(&client).await).then_some(())
        })
        .await;
        let names = |cs: Vec<NodeClaim>| cs.iter().map(|c| c.name_any()).collect::<Vec<_>>();
        let before = names(live_claims(&client).await);
        tokio::time::sleep(Duration::from_secs(20 * 60)).await;
        (before, names(claims(&client).await))
    })
    .await;
    assert_eq!(before, after);
}

async fn stays_blocked(a_extra: &str, why: &str) {
    let yaml = three_half_empty(
        "{ consolidateAfter: 1m, budgets: [{ nodes: \"100%\" }] }",
        a_extra,
    );
    let why = why.to_string();
    let (_report, (a_before, a_after, others, events)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("three nodes", Duration::from_secs(8 * 60), || async {
            (live_claims(&client).await.len() == 3 && all_running(&client).await).then_some(())
        })
        .await;
        let a_before = node_of(&client, "a").await;
        // b and c consolidate around a (a's node has room for them), a's node never goes.
        tokio::time::sleep(Duration::from_secs(20 * 60)).await;
        let a_after = node_of(&client, "a").await;
        let others = (node_of(&client, "b").await, node_of(&client, "c").await);
        let events: Vec<String> = Api::<k8s_openapi::api::core::v1::Event>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("DisruptionBlocked"))
            .filter_map(|e| e.message)
            .collect();
        (a_before, a_after, others, events)
    })
    .await;
    assert!(a_before.is_some());
    assert_eq!(a_before, a_after, "the blocked node kept its pod");
    assert!(others.0.is_some() && others.1.is_some(), "{others:?}");
    assert!(
        events.iter().any(|m| m.contains(&why)),
        "no DisruptionBlocked event naming {why:?}: {events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_do_not_disrupt_pod_blocks_its_node() {
    stays_blocked(
        ", annotations: { stowage.dev/do-not-disrupt: 'true' }",
        "is annotated stowage.dev/do-not-disrupt",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_pdb_allowing_no_disruption_blocks_its_node() {
    stays_blocked(", pdb: { minAvailable: '1' }", "allowing 0 disruptions").await;
}

/// What a leader that crashed mid-command leaves: the claim annotated and its Node tainted.
async fn half_done(client: &kube::Client, claim: &NodeClaim, replacements: &[&str]) {
    use kube::api::{Patch, PatchParams};
    let marker = serde_json::json!({
        "method": "single-node",
        "replacements": replacements,
        "since": "2026-01-01T00:00:00Z",
    })
    .to_string();
    Api::<NodeClaim>::all(client.clone())
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                stowage_controller::disruption::command::COMMAND: marker
            }}})),
        )
        .await
        .unwrap();
    let node = claim.node_name().unwrap();
    Api::<Node>::all(client.clone())
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"taints": [
                {"key": stowage_api::labels::DISRUPTED_TAINT_KEY, "effect": "NoSchedule"}
            ]}})),
        )
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_finishes_or_undoes_half_done_commands() {
    let yaml = format!(
        "name: restart\nduration: 30m\n{HEAD}{}timeline:\n  - at: 0s\n    create: {{ name: web, replicas: 2, requests: {{ cpu: '3', memory: 1Gi }}, antiAffinity: kubernetes.io/hostname }}\n",
        pool("{ consolidateAfter: Never }")
    );
    let (_report, (undone_taints, undone_annotated)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("2 running pods", Duration::from_secs(300), || async {
            (running(&client, "web").await == 2).then_some(())
        })
        .await;
        let mut cs = live_claims(&client).await;
        cs.sort_by_key(|c| c.name_any());
        // The first had no replacement: it is deleted. The second's replacement is gone:
        // it is undone.
        half_done(&client, &cs[0], &[]).await;
        half_done(&client, &cs[1], &["replacement-that-failed"]).await;
        let first = cs[0].name_any();
        let second = cs[1].clone();
        eventually("the first deleted", Duration::from_secs(120), || async {
            claims(&client)
                .await
                .iter()
                .find(|c| c.name_any() == first)
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                .then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let node: Node = Api::<Node>::all(client.clone())
            .get(second.node_name().unwrap())
            .await
            .unwrap();
        let taints = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .filter(|t| t.key == stowage_api::labels::DISRUPTED_TAINT_KEY)
            .count();
        let c: NodeClaim = Api::<NodeClaim>::all(client.clone())
            .get(&second.name_any())
            .await
            .unwrap();
        let annotated = c
            .annotations()
            .contains_key(stowage_controller::disruption::command::COMMAND);
        (taints, annotated)
    })
    .await;
    assert_eq!(undone_taints, 0, "the undone node is untainted");
    assert!(!undone_annotated, "the undone claim lost its mark");
}

#[tokio::test(start_paused = true)]
async fn an_on_demand_fallback_node_returns_to_spot_after_restore_spot_after() {
    let yaml = format!(
        r#"name: restore
duration: 60m
{HEAD}nodePools:
  - name: default
    spec:
      disruption: {{ consolidateAfter: Never }}
      capacityMix: {{ restoreSpotAfter: 20m }}
      template:
        spec:
          nodeClassRef: {{ group: aws.stowage.dev, kind: EC2NodeClass, name: default }}
timeline:
  - at: 0s
    insufficientCapacity: {{ capacityType: spot, duration: 10m }}
  - at: 0s
    create: {{ name: web, replicas: 1, requests: {{ cpu: '1', memory: 1Gi }} }}
"#
    );
    let ct = |c: &NodeClaim| {
        c.label(stowage_api::labels::CAPACITY_TYPE)
            .map(str::to_string)
    };
    let (_report, (first, fallback, restored_after, metrics)) =
        simulate(&yaml, move |env, ctx| async move {
            let client = env.client.clone();
            let first = eventually("an on-demand node", Duration::from_secs(300), || async {
                let cs = live_claims(&client).await;
                (cs.len() == 1 && running(&client, "web").await == 1).then(|| cs[0].clone())
            })
            .await;
            let start = env.clock.now();
            // Spot is back at 10m; the node is moved at 20m after its launch, not before.
            eventually(
                "a spot node running the pod",
                Duration::from_secs(40 * 60),
                || async {
                    let cs = live_claims(&client).await;
                    let on_spot = cs.len() == 1 && ct(&cs[0]).as_deref() == Some("spot");
                    (on_spot && running(&client, "web").await == 1).then_some(())
                },
            )
            .await;
            let restored_after = env.clock.now().duration_since(start);
            (
                ct(&first),
                first
                    .annotations()
                    .contains_key(stowage_controller::disruption::candidates::SPOT_FALLBACK),
                restored_after,
                ctx.render_metrics(),
            )
        })
        .await;
    assert_eq!(first.as_deref(), Some("on-demand"));
    assert!(fallback, "the fallback is stamped at launch");
    assert!(
        restored_after.as_secs() >= 18 * 60,
        "moved {restored_after:?} after launch"
    );
    assert!(
        metrics.contains(
            "stowage_disruption_decisions_total{method=\"capacity-mix-restore\",result=\"executed\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_budget_of_one_never_lets_two_nodes_disrupt_at_once() {
    let yaml = format!(
        "name: budget\nduration: 40m\n{HEAD}{}timeline:\n  - at: 0s\n    create: {{ name: web, replicas: 4, requests: {{ cpu: '3', memory: 1Gi }}, antiAffinity: kubernetes.io/hostname }}\n  - at: 5m\n    delete: {{ name: web }}\n",
        pool("{ consolidateAfter: 30s, budgets: [{ nodes: \"1\" }] }")
    );
    let (_report, (most, samples)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("4 running pods", Duration::from_secs(300), || async {
            (running(&client, "web").await == 4).then_some(())
        })
        .await;
        let (mut most, mut samples) = (0, 0);
        // Until every node is gone, nodes disrupting (deleting, Disrupting, tainted) at once.
        loop {
            let cs = claims(&client).await;
            if cs.is_empty() {
                break;
            }
            let ns = nodes(&client).await;
            let disrupting = cs
                .iter()
                .filter(|c| {
                    let tainted = ns.iter().any(|n| {
                        Some(n.name_any().as_str()) == c.node_name()
                            && n.spec
                                .as_ref()
                                .and_then(|s| s.taints.as_ref())
                                .is_some_and(|t| {
                                    t.iter()
                                        .any(|t| t.key == stowage_api::labels::DISRUPTED_TAINT_KEY)
                                })
                    });
                    c.metadata.deletion_timestamp.is_some()
                        || c.is_true(stowage_api::conditions::DISRUPTING)
                        || tainted
                })
                .count();
            most = most.max(disrupting);
            samples += 1;
            assert!(samples < 1_000_000, "the nodes never went");
            // Finer than the termination of an empty node, which no longer lingers 5 s
            // re-asking the cloud: it takes ~50 ms of virtual time (one batched cloud call).
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (most, samples)
    })
    .await;
    assert_eq!(most, 1, "over {samples} samples");
}
