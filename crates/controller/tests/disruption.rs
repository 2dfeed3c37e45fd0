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
