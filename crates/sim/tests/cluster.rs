//! The simulated cluster's behaviour: scheduler, kubelet, workloads, DaemonSets, interruptions,
//! driven through scenarios in virtual time with a toy provisioner plugged in as "controllers".
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stowage_api::NodeClaim;
use stowage_sim::{ApiServer, Scenario, SimEnv, SimOptions, Simulation};

fn scenario(extra: &str) -> Scenario {
    let yaml = format!(
        "name: test\nduration: 8m\nsampleEvery: 10s\ncatalog: {{ source: synthetic, types: 8 }}\n\
nodeClasses: [{{ name: default }}]\n\
nodePools:\n  - name: default\n    spec:\n      template:\n        spec:\n          nodeClassRef: {{ group: aws.stowage.dev, kind: EC2NodeClass, name: default }}\n          startupTaints: [{{ key: agent-not-ready, effect: NoSchedule }}]\n\
{extra}"
    );
    Scenario::from_yaml("test.yaml", &yaml).unwrap()
}

fn unschedulable_message(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| c.message.clone())
}

/// A toy provisioner: one NodeClaim per unschedulable pod, launched on the fake cloud, and the
/// `unregistered` taint removed from nodes as they register. Enough to exercise the kubelet.
async fn toy_provisioner(env: SimEnv) {
    let pods: Api<Pod> = Api::all(env.client.clone());
    let nodes: Api<Node> = Api::all(env.client.clone());
    let claims: Api<NodeClaim> = Api::all(env.client.clone());
    let mut handled = BTreeSet::new();
    let mut n = 0;
    loop {
        for p in pods.list(&ListParams::default()).await.unwrap().items {
            let key = stowage_api::key_of(&p);
            if unschedulable_message(&p).is_none()
                || p.spec.as_ref().unwrap().node_name.is_some()
                || !handled.insert(key)
            {
                continue;
            }
            n += 1;
            let claim: NodeClaim = serde_json::from_value(json!({
                "apiVersion": "stowage.dev/v1", "kind": "NodeClaim",
                "metadata": { "name": format!("default-{n}"), "labels": { "stowage.dev/nodepool": "default" } },
                "spec": {
                    "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" },
                    "requirements": [{ "key": "stowage.dev/capacity-type", "operator": "In", "values": ["spot"] }],
                    "resources": { "requests": { "cpu": "1200m" } },
                    "startupTaints": [{ "key": "agent-not-ready", "effect": "NoSchedule" }]
                }
            }))
            .unwrap();
            let created = claims.create(&PostParams::default(), &claim).await.unwrap();
            let launched = env.provider.create(&created).await.unwrap();
            claims
                .patch_status(
                    &format!("default-{n}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": launched.status })),
                )
                .await
                .unwrap();
        }
        for node in nodes.list(&ListParams::default()).await.unwrap().items {
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if taints.iter().any(|t| t.key == "stowage.dev/unregistered") {
                let kept: Vec<_> = taints
                    .into_iter()
                    .filter(|t| t.key != "stowage.dev/unregistered")
                    .collect();
                nodes
                    .patch(
                        node.metadata.name.as_deref().unwrap(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "spec": { "taints": kept } })),
                    )
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn without_controllers_pods_stay_pending_and_say_why() {
    let s = scenario(
        "timeline:\n  - at: 0s\n    create: { name: web, replicas: 5, requests: { cpu: 500m } }\n  - at: 0s\n    create: { name: huge, replicas: 1, requests: { cpu: \"500\" } }\n",
    );
    let seen: Arc<Mutex<Option<ApiServer>>> = Arc::default();
    let keep = seen.clone();
    let report = Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| async move {
            *keep.lock().unwrap() = Some(env.api.clone());
        })
        .await
        .unwrap();
    assert_eq!(report.pending_at_end, 5, "web fits the catalogue");
    assert_eq!(
        report.unschedulable_at_end, 1,
        "500 cpu fits no instance type"
    );
    assert_eq!(report.launches, 0);
    assert!(report.samples.iter().all(|s| s.nodes() == 0));
    let api = seen.lock().unwrap().clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client(), "default");
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 6);
    for p in &all {
        assert_eq!(
            unschedulable_message(p).as_deref(),
            Some("no nodes available to schedule pods")
        );
        let cond = p
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .unwrap();
        assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    }
}

#[tokio::test(start_paused = true)]
async fn scheduler_binds_what_fits_and_explains_the_rest() {
    let s = scenario(
        "initialNodes:\n  - { instanceType: fake-it-1, count: 2, zone: test-zone-a }\n  - { instanceType: fake-it-3, count: 1, zone: test-zone-b, taints: [{ key: dedicated, value: gpu, effect: NoSchedule }] }\n\
timeline:\n  - at: 0s\n    create: { name: web, replicas: 5, requests: { cpu: \"1\" } }\n",
    );
    let seen: Arc<Mutex<Option<ApiServer>>> = Arc::default();
    let keep = seen.clone();
    let report = Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| async move {
            *keep.lock().unwrap() = Some(env.api.clone());
        })
        .await
        .unwrap();
    let api = seen.lock().unwrap().clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client(), "default");
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let running: Vec<_> = all
        .iter()
        .filter(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
        .collect();
    assert_eq!(running.len(), 4, "two 2-cpu nodes hold four 1-cpu pods");
    let waiting: Vec<_> = all.iter().filter_map(unschedulable_message).collect();
    assert_eq!(
        waiting,
        [
            "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
        ]
    );
    assert_eq!(report.pending_at_end, 1);
    assert_eq!(report.pods_started, 4);
    assert_eq!(
        report.p95_pending_seconds, 2.1,
        "bound after the 0.1s scheduler debounce, running after the 2s start-up"
    );
    assert!(report.samples.last().unwrap().cost_per_hour > 0.0);
}

#[tokio::test(start_paused = true)]
async fn kubelet_registers_nodes_runs_pods_and_daemonsets() {
    let s = scenario(
        "daemonSets:\n  - { name: agent, requests: { cpu: 100m }, tolerations: [{ operator: Exists }] }\n\
timeline:\n  - at: 0s\n    create: { name: web, replicas: 2, requests: { cpu: 500m } }\n  - at: 0s\n    create: { name: batch, kind: Job, replicas: 2, runTime: 1m, requests: { cpu: 500m } }\n",
    );
    let seen: Arc<Mutex<Option<ApiServer>>> = Arc::default();
    let keep = seen.clone();
    let report = Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| {
            *keep.lock().unwrap() = Some(env.api.clone());
            toy_provisioner(env)
        })
        .await
        .unwrap();
    let api = seen.lock().unwrap().clone().unwrap();
    let client = api.client();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(nodes.len(), 4, "one node per pod");
    for n in &nodes {
        let pid = n.spec.as_ref().unwrap().provider_id.clone().unwrap();
        assert!(pid.starts_with("fake:///"), "{pid}");
        let labels = n.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels.get("stowage.dev/nodepool").map(String::as_str),
            Some("default")
        );
        assert_eq!(
            labels.get("stowage.dev/capacity-type").map(String::as_str),
            Some("spot")
        );
        assert!(labels.contains_key("topology.kubernetes.io/zone"));
        let taints = n.spec.as_ref().unwrap().taints.clone().unwrap_or_default();
        assert!(
            taints.is_empty(),
            "startup and unregistered taints are gone: {taints:?}"
        );
        assert!(
            n.status
                .as_ref()
                .unwrap()
                .allocatable
                .as_ref()
                .unwrap()
                .contains_key("cpu")
        );
    }
    let pods = Api::<Pod>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let agents = pods
        .iter()
        .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("agent-"))
        .count();
    assert_eq!(agents, 4, "a DaemonSet pod on every node");
    let batch = pods
        .iter()
        .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("batch-"))
        .count();
    assert_eq!(batch, 0, "finished Job pods are cleaned up");
    assert!(
        pods.iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    );
    assert_eq!(report.pending_at_end, 0);
    assert_eq!(report.launches, 4);
    // Launch (3s, the toy launches one at a time) + registration (30s) + start-up (2s).
    assert!(
        report.p50_pending_seconds >= 35.0 && report.p95_pending_seconds <= 60.0,
        "{:?}",
        report.p95_pending_seconds
    );
}

#[tokio::test(start_paused = true)]
async fn deletion_honours_grace_and_replicas_are_replaced() {
    let s = scenario(
        "initialNodes:\n  - { instanceType: fake-it-3, count: 1 }\ntimeline:\n  - at: 0s\n    create: { name: web, replicas: 2, requests: { cpu: 500m } }\n",
    );
    let outcome: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = outcome.clone();
    Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| async move {
            let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
            tokio::time::sleep(Duration::from_secs(10)).await;
            let first = pods.list(&ListParams::default()).await.unwrap().items;
            let victim = first[0].metadata.name.clone().unwrap();
            pods.delete(&victim, &DeleteParams::default())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let p = pods.get(&victim).await.unwrap();
            out.lock().unwrap().push(format!(
                "terminating={}",
                p.metadata.deletion_timestamp.is_some()
            ));
            tokio::time::sleep(Duration::from_secs(3)).await;
            let gone = pods.get_opt(&victim).await.unwrap().is_none();
            out.lock().unwrap().push(format!("gone={gone}"));
            let now = pods.list(&ListParams::default()).await.unwrap().items;
            let running = now
                .iter()
                .filter(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
                .count();
            out.lock().unwrap().push(format!("running={running}"));
        })
        .await
        .unwrap();
    assert_eq!(
        *outcome.lock().unwrap(),
        ["terminating=true", "gone=true", "running=2"]
    );
}

#[tokio::test(start_paused = true)]
async fn spot_interruptions_remove_nodes_and_pods_come_back() {
    let s = scenario(
        "timeline:\n  - at: 0s\n    create: { name: web, replicas: 2, requests: { cpu: 1500m } }\n  - at: 2m\n    interrupt: { count: 1 }\n",
    );
    let seen: Arc<Mutex<Option<ApiServer>>> = Arc::default();
    let keep = seen.clone();
    let report = Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| {
            *keep.lock().unwrap() = Some(env.api.clone());
            toy_provisioner(env)
        })
        .await
        .unwrap();
    assert_eq!(report.interruptions, 1);
    // Involuntary: the referee counts the pod that went with it, as no disruption.
    assert_eq!(report.pods_interrupted, 1);
    assert_eq!(
        (
            report.pods_disrupted,
            report.pods_lost,
            report.pdb_violations
        ),
        (0, 0, 0)
    );
    assert_eq!(
        report.launches, 3,
        "the interrupted node's pod got a new node"
    );
    assert_eq!(report.pending_at_end, 0);
    // The node count dipped to 1 after the interruption and recovered.
    let counts: Vec<usize> = report.samples.iter().map(|s| s.nodes()).collect();
    assert!(
        counts.contains(&1) && *counts.last().unwrap() == 2,
        "{counts:?}"
    );
    let api = seen.lock().unwrap().clone().unwrap();
    let nodes = Api::<Node>::all(api.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(nodes.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn quickstart_without_controllers_reports_everything_pending() {
    let report = Simulation::new(
        Scenario::builtin("quickstart").unwrap(),
        SimOptions::default(),
    )
    .run_without_controllers()
    .await
    .unwrap();
    assert!(!report.controllers);
    assert_eq!(report.peak_nodes, 0);
    // web went 24 -> 40 -> 12 replicas; with the Job's 40 pods, everything is still pending.
    assert_eq!(report.pending_at_end, 12 + 40);
    assert_eq!(report.pods_created, 24 + 40 + 16);
    assert_eq!(
        report.samples.len(),
        20 * 4 + 1,
        "a sample every 15s over 20 minutes, both ends"
    );
    assert!(
        report
            .summary_table()
            .contains("no controllers: pods stay pending")
    );
}

/// The node a DaemonSet pod is pinned to (`matchFields` `metadata.name In [node]`).
fn pinned_node(p: &Pod) -> Option<String> {
    let v = serde_json::to_value(p).unwrap();
    v.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(|n| n.as_str())
        .map(str::to_string)
}

#[tokio::test(start_paused = true)]
async fn daemonset_pods_wait_for_their_taints_to_go_and_are_replaced_when_deleted() {
    // No toleration: not on a node while it has its startup taint (the real controller's check).
    let s = scenario(
        "daemonSets:\n  - { name: picky, requests: { cpu: 100m } }\n\
timeline:\n  - at: 0s\n    create: { name: web, replicas: 2, requests: { cpu: 500m } }\n",
    );
    // (running before, the pod deleted, running after)
    type Seen = (Vec<Pod>, String, Vec<Pod>);
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let keep = seen.clone();
    Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| async move {
            let client = env.client.clone();
            tokio::spawn(toy_provisioner(env));
            let api: Api<Pod> = Api::namespaced(client, "kube-system");
            let running = || async {
                api.list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .collect::<Vec<Pod>>()
            };
            let mut first = Vec::new();
            for _ in 0..300 {
                first = running().await;
                if first.len() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let victim = first.first().and_then(|p| p.metadata.name.clone());
            let victim = victim.unwrap_or_default();
            if !victim.is_empty() {
                api.delete(&victim, &DeleteParams::default()).await.unwrap();
            }
            let mut after = Vec::new();
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                after = running().await;
                if after.len() == 2
                    && after
                        .iter()
                        .all(|p| p.metadata.name.as_deref() != Some(&victim))
                {
                    break;
                }
            }
            *keep.lock().unwrap() = Some((first, victim, after));
        })
        .await
        .unwrap();
    let (first, victim, after) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        first.len(),
        2,
        "a picky pod on each node once its taints are gone"
    );
    for p in first.iter().chain(&after) {
        assert_eq!(
            p.spec.as_ref().unwrap().node_name,
            pinned_node(p),
            "bound by the scheduler to the node it is pinned to"
        );
    }
    assert_eq!(after.len(), 2, "the deleted pod {victim} is replaced");
    assert!(
        after
            .iter()
            .all(|p| p.metadata.name.as_deref() != Some(victim.as_str()))
    );
    let before: BTreeSet<Option<String>> = first.iter().map(pinned_node).collect();
    let now: BTreeSet<Option<String>> = after.iter().map(pinned_node).collect();
    assert_eq!(before, now, "on the same node");
}

#[tokio::test(start_paused = true)]
async fn a_finished_spark_driver_takes_its_executors_with_it() {
    let s = scenario(
        "initialNodes:\n  - { instanceType: fake-it-3, count: 1 }\ntimeline:\n  - at: 0s\n    create: { name: etl, kind: SparkApplication, replicas: 3, runTime: 60s, requests: { cpu: 100m } }\n",
    );
    let outcome: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = outcome.clone();
    Simulation::new(s, SimOptions::default())
        .run(move |env: SimEnv| async move {
            let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
            let roles = |items: Vec<Pod>| {
                let mut v: Vec<String> = items
                    .iter()
                    .map(|p| {
                        let role = p.metadata.labels.as_ref().unwrap()["spark-role"].clone();
                        let phase = p.status.as_ref().unwrap().phase.clone().unwrap();
                        let deleting = if p.metadata.deletion_timestamp.is_some() {
                            " deleting"
                        } else {
                            ""
                        };
                        format!("{role} {phase}{deleting}")
                    })
                    .collect();
                v.sort();
                v.join(", ")
            };
            tokio::time::sleep(Duration::from_secs(30)).await;
            let items = pods.list(&ListParams::default()).await.unwrap().items;
            out.lock().unwrap().push(roles(items));
            tokio::time::sleep(Duration::from_secs(120)).await;
            let items = pods.list(&ListParams::default()).await.unwrap().items;
            out.lock().unwrap().push(roles(items));
        })
        .await
        .unwrap();
    assert_eq!(
        *outcome.lock().unwrap(),
        [
            "driver Running, executor Running, executor Running, executor Running",
            "driver Succeeded",
        ]
    );
}
