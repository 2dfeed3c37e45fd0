//! End-to-end tests with the whole simulated cluster (scheduler, kubelet, workload controllers)
//! around the real controllers, in virtual time.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use stowage_api::NodeClaim;
use stowage_api::conditions::{INITIALIZED, REGISTERED};
use stowage_api::labels;
use stowage_tests::{eventually, simulate};

const POOL: &str = r#"
catalog: { source: synthetic, types: 8 }
nodeClasses:
  - name: default
    spec:
      amiSelectorTerms: [{ alias: al2023@latest }]
      subnetSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      securityGroupSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      role: NodeRole
nodePools:
  - name: default
    spec:
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
"#;

async fn running_pods(client: &kube::Client, workload: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("sim.stowage.dev/workload={workload}"));
    let pods = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn pending_pods_become_one_batch_of_claims_then_nodes_then_running_pods() {
    let yaml = format!(
        "name: flow\nduration: 10m\n{POOL}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 12, requests: {{ cpu: 500m, memory: 512Mi }} }}\n"
    );
    let (report, (claims, nodes, batches, metrics)) = simulate(&yaml, |env, ctx| async move {
        let client = env.client.clone();
        eventually("12 running pods", Duration::from_secs(300), || async {
            (running_pods(&client, "web").await.len() == 12).then_some(())
        })
        .await;
        let claims: Vec<NodeClaim> = Api::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let nodes: Vec<Node> = Api::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let metrics = ctx.render_metrics();
        let batches = metrics
            .lines()
            .find_map(|l| l.strip_prefix("stowage_provisioner_batch_size_count "))
            .map(str::to_string);
        (claims, nodes, batches, metrics)
    })
    .await;
    assert_eq!(batches.as_deref(), Some("1"), "one batch for the 12 pods");
    assert!(!claims.is_empty());
    // Launch latency: one observation per claim that initialized.
    assert!(
        metrics.contains(&format!(
            "stowage_nodeclaims_initialized_duration_seconds_count {}\n",
            claims.len()
        )),
        "{metrics}"
    );
    // The pool's on-demand cap (no capacityMix: 100 %, no cap) for the on-demand-share alert.
    assert!(
        metrics
            .contains("stowage_nodepool_on_demand_percent_above_base{nodepool=\"default\"} 100\n"),
        "{metrics}"
    );
    for c in &claims {
        assert!(
            c.is_true(REGISTERED) && c.is_true(INITIALIZED),
            "claim {} not ready",
            c.name_any()
        );
        let node = nodes
            .iter()
            .find(|n| Some(n.name_any().as_str()) == c.node_name())
            .unwrap();
        assert_eq!(
            node.labels().get(labels::NODEPOOL).map(String::as_str),
            Some("default")
        );
        assert_eq!(
            node.labels().get(labels::INITIALIZED).map(String::as_str),
            Some("true")
        );
        assert!(
            node.finalizers()
                .contains(&labels::TERMINATION_FINALIZER.to_string())
        );
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert!(
            taints
                .iter()
                .all(|t| t.key != labels::UNREGISTERED_TAINT_KEY)
        );
    }
    assert_eq!(report.pending_at_end, 0);
}

#[tokio::test(start_paused = true)]
async fn deleting_a_node_drains_it_within_the_pdb_and_waits_while_the_pdb_blocks() {
    // Three replicas; the PDB allows no disruption at first.
    let yaml = format!(
        "name: drain\nduration: 30m\n{POOL}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 3, requests: {{ cpu: 300m, memory: 256Mi }}, pdb: {{ maxUnavailable: \"0\" }} }}\n"
    );
    let (_report, outcome) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("3 running pods", Duration::from_secs(300), || async {
            (running_pods(&client, "web").await.len() == 3).then_some(())
        })
        .await;
        let victim = running_pods(&client, "web").await[0]
            .spec
            .as_ref()
            .unwrap()
            .node_name
            .clone()
            .unwrap();
        let on_victim = |pods: &[Pod]| {
            pods.iter()
                .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(&victim))
                .count()
        };
        let before = on_victim(&running_pods(&client, "web").await);
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .delete(&victim, &DeleteParams::default())
            .await
            .unwrap();
        // Blocked: the node stays, tainted, its pods keep running, and an event says why.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let node = nodes.get(&victim).await.unwrap();
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert!(
            taints.iter().any(|t| t.key == labels::DISRUPTED_TAINT_KEY),
            "tainted disrupted"
        );
        assert_eq!(
            on_victim(&running_pods(&client, "web").await),
            before,
            "no pod evicted past the PDB"
        );
        let events: Vec<Event> = Api::namespaced(client.clone(), "kube-system")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let blocked = events.iter().any(|e| {
            e.reason.as_deref() == Some("FailedDraining")
                && e.involved_object.name.as_deref() == Some(&victim)
        });
        // The PDB relaxes to one disruption at a time: the drain proceeds without ever going
        // below two running replicas.
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
        pdbs.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxUnavailable": 1}})),
        )
        .await
        .unwrap();
        let mut min_running = usize::MAX;
        let start = tokio::time::Instant::now();
        while nodes.get_opt(&victim).await.unwrap().is_some() {
            assert!(
                start.elapsed() < Duration::from_secs(900),
                "node {victim} not drained"
            );
            min_running = min_running.min(running_pods(&client, "web").await.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (blocked, min_running, victim)
    })
    .await;
    let (blocked, min_running, _victim) = outcome;
    assert!(blocked, "a FailedDraining event while the PDB blocked");
    assert!(
        min_running >= 2,
        "the PDB kept at least two replicas running (min seen {min_running})"
    );
}

#[tokio::test(start_paused = true)]
async fn deleting_a_nodeclaim_by_hand_drains_its_node_and_releases_the_instance() {
    let yaml = format!(
        "name: delete-claim\nduration: 20m\n{POOL}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 4, requests: {{ cpu: 300m, memory: 256Mi }} }}\n"
    );
    let (_report, (victim_claim, victim_node, provider_id, cloud)) =
        simulate(&yaml, |env, _ctx| async move {
            let client = env.client.clone();
            eventually("4 running pods", Duration::from_secs(300), || async {
                (running_pods(&client, "web").await.len() == 4).then_some(())
            })
            .await;
            let claims: Api<NodeClaim> = Api::all(client.clone());
            let claim = claims
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .remove(0);
            let name = claim.name_any();
            let node = claim.node_name().unwrap().to_string();
            let provider_id = claim.provider_id().unwrap().to_string();
            claims
                .delete(&name, &DeleteParams::default())
                .await
                .unwrap();
            let nodes: Api<Node> = Api::all(client.clone());
            eventually("claim and node gone", Duration::from_secs(600), || async {
                let claim_gone = claims.get_opt(&name).await.unwrap().is_none();
                let node_gone = nodes.get_opt(&node).await.unwrap().is_none();
                (claim_gone && node_gone).then_some(())
            })
            .await;
            // The evicted pods come back on other nodes.
            eventually("4 running pods again", Duration::from_secs(600), || async {
                (running_pods(&client, "web").await.len() == 4).then_some(())
            })
            .await;
            (name, node, provider_id, env.cloud.clone())
        })
        .await;
    assert!(
        cloud.instance(&provider_id).is_none(),
        "instance of {victim_claim} ({victim_node}) terminated"
    );
}

/// Sum of `stowage_nodeclaims_terminated_total{reason="deleted"}` in the controllers' registry.
fn terminated_deleted(ctx: &stowage_controller::Context) -> f64 {
    ctx.metrics
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("stowage_nodeclaims_terminated_total{")
                && l.contains("reason=\"deleted\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Deleting many NodeClaims at once counts each termination once, however often the claims are
/// reconciled from stale copies while their finalizers come off.
#[tokio::test(start_paused = true)]
async fn deleting_many_nodeclaims_counts_each_termination_once() {
    let yaml = format!(
        "name: delete-many\nduration: 30m\n{POOL}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 12, requests: {{ cpu: 1500m, memory: 1Gi }} }}\n"
    );
    let (_report, (deleted, counted)) = simulate(&yaml, |env, ctx| async move {
        let client = env.client.clone();
        eventually("12 running pods", Duration::from_secs(300), || async {
            (running_pods(&client, "web").await.len() == 12).then_some(())
        })
        .await;
        let claims: Api<NodeClaim> = Api::all(client.clone());
        let names: Vec<String> = claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|c| c.name_any())
            .collect();
        assert!(names.len() >= 3, "several claims to delete: {names:?}");
        for name in &names {
            claims.delete(name, &DeleteParams::default()).await.unwrap();
        }
        // A copy as a lagging cache holds it: deleting, finalizer still on.
        let stale = claims.get(&names[0]).await.unwrap();
        assert!(stale.metadata.deletion_timestamp.is_some());
        eventually("the claims gone", Duration::from_secs(900), || async {
            for name in &names {
                if claims.get_opt(name).await.unwrap().is_some() {
                    return None;
                }
            }
            Some(())
        })
        .await;
        // Let every stale reconcile of the deleted claims run out...
        tokio::time::sleep(Duration::from_secs(60)).await;
        // ...and finalize the stale copy once more, as a reconcile racing its watch does.
        stowage_controller::termination::finalize(&stale, &ctx)
            .await
            .unwrap();
        (names.len(), terminated_deleted(&ctx))
    })
    .await;
    assert_eq!(counted, deleted as f64, "one count per deleted claim");
}

/// The node a DaemonSet pod is pinned to by `matchFields` on `metadata.name`, as the real
/// DaemonSet controller writes it.
fn pinned_node(p: &Pod) -> Option<String> {
    let term = p
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .first()?
        .clone();
    let field = term.match_fields?.into_iter().next()?;
    (field.key == "metadata.name" && field.operator == "In").then(|| field.values?.pop())?
}

#[tokio::test(start_paused = true)]
async fn daemonset_pods_pinned_by_node_name_are_read_by_the_solver_on_every_node() {
    let yaml = format!(
        "name: daemonsets\nduration: 10m\n{POOL}daemonSets:\n  - {{ name: agent, requests: {{ cpu: 200m, memory: 128Mi }} }}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 6, requests: {{ cpu: 1500m, memory: 1Gi }} }}\n"
    );
    let (_report, (nodes, agents, snapshot)) = simulate(&yaml, |env, ctx| async move {
        let client = env.client.clone();
        eventually("6 running pods", Duration::from_secs(300), || async {
            (running_pods(&client, "web").await.len() == 6).then_some(())
        })
        .await;
        let nodes: Vec<String> = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|n| n.name_any())
            .collect();
        let agents_api: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
        let agents = eventually(
            "a running agent on every node",
            Duration::from_secs(60),
            || async {
                let pods = agents_api.list(&ListParams::default()).await.unwrap().items;
                let running = pods
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                (running == nodes.len()).then_some(pods)
            },
        )
        .await;
        // Let a provisioning pass or two go by, then read what the solver would read.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let snap = stowage_controller::snapshot::build(
            &ctx.state(),
            &[],
            Default::default(),
            env.clock.now(),
        );
        let skipped: Vec<String> = snap.skipped.iter().map(ToString::to_string).collect();
        let per_node: Vec<(String, Vec<(String, i64)>)> = snap
            .input
            .nodes
            .iter()
            .map(|n| {
                let daemon_pods = n
                    .pods
                    .iter()
                    .filter(|p| p.owner.as_deref() == Some("DaemonSet/agent"))
                    .map(|p| (p.key(), p.requests.cpu_millis()))
                    .collect();
                (n.name.clone(), daemon_pods)
            })
            .collect();
        (nodes, agents, (skipped, per_node))
    })
    .await;
    assert!(!nodes.is_empty());
    // Shaped as the real DaemonSet controller's: owned (controller), pinned by name, the
    // default tolerations, and bound by the scheduler to the node it is pinned to.
    for p in &agents {
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("DaemonSet", "agent", Some(true))
        );
        let pinned = pinned_node(p).expect("pinned by matchFields");
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some(pinned.as_str())
        );
        let tolerations = p
            .spec
            .as_ref()
            .unwrap()
            .tolerations
            .clone()
            .unwrap_or_default();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unschedulable",
        ] {
            assert!(
                tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
                "{key}"
            );
        }
    }
    let mut pinned: Vec<String> = agents.iter().filter_map(pinned_node).collect();
    pinned.sort();
    let mut all = nodes.clone();
    all.sort();
    assert_eq!(pinned, all, "one agent per node");
    let (skipped, per_node) = snapshot;
    assert!(skipped.is_empty(), "nothing unreadable: {skipped:?}");
    assert_eq!(per_node.len(), nodes.len());
    for (node, daemon_pods) in per_node {
        assert_eq!(daemon_pods.len(), 1, "{node}: {daemon_pods:?}");
        assert_eq!(
            daemon_pods[0].1, 200,
            "{node}: the agent's requests are counted"
        );
    }
}

/// One of the pods nominated to a claim cannot schedule on its Node once it is initialized (a
/// pod bound there by someone else took the room the plan counted on): it goes back into the
/// next batch, with an Event saying why, and ends Running on new capacity.
#[tokio::test(start_paused = true)]
async fn a_pod_that_does_not_fit_its_initialized_node_is_provisioned_for_again() {
    use stowage_api::quantity::parse_resource;
    let pool = POOL.replace(
        "          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }",
        "          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }\n          startupTaints: [{ key: example.com/agent, effect: NoSchedule }]",
    );
    let yaml = format!(
        "name: stolen-room\nduration: 15m\n{pool}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 3, requests: {{ cpu: 1, memory: 256Mi }} }}\n"
    );
    let (_report, (claims, events)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        let nodes: Api<Node> = Api::all(client.clone());
        // The first Node registers, still carrying its startup taint...
        let node = eventually("a node", Duration::from_secs(300), || async {
            nodes
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        })
        .await;
        // ...and a pod bound there by someone else takes all but half a CPU of it.
        let alloc = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("cpu"))
            .map(|q| parse_resource("cpu", &q.0).unwrap())
            .unwrap();
        let mut foreign = stowage_tests::pod("foreign", &format!("{}m", alloc - 500), "64Mi");
        foreign.spec.as_mut().unwrap().node_name = Some(node.name_any());
        foreign.spec.as_mut().unwrap().tolerations =
            Some(vec![k8s_openapi::api::core::v1::Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]);
        Api::<Pod>::namespaced(client.clone(), "default")
            .create(&Default::default(), &foreign)
            .await
            .unwrap();
        eventually("3 running pods", Duration::from_secs(600), || async {
            (running_pods(&client, "web").await.len() == 3).then_some(())
        })
        .await;
        let claims: Vec<NodeClaim> = Api::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let events: Vec<Event> = Api::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        (claims, events)
    })
    .await;
    assert!(
        claims.len() >= 2,
        "a new claim for the pods that did not fit: {:?}",
        claims.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    );
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("NominationFailed")),
        "an Event on the pod says why it is provisioned for again"
    );
}

/// A launch slow enough that a kill finds claims at every stage: created, launched, registered
/// with their startup taint, initialized.
const SLOW_LAUNCH: &str = r#"
catalog: { source: synthetic, types: 8 }
timings: { launchLatency: 20s, nodeRegistration: 20s, startupTaintRemoval: 20s }
nodeClasses:
  - name: default
nodePools:
  - name: default
    spec:
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          startupTaints: [{ key: example.com/agent, effect: NoSchedule }]
timeline:
  - at: 0s
    create: { name: web, replicas: 24, requests: { cpu: 1, memory: 1Gi } }
"#;

/// Runs [`SLOW_LAUNCH`], killing the controllers at each of `kills` (ms after the pods appear)
/// and starting a fresh process (whose provider has not resolved the node class yet) each time;
/// returns the instances bought and the claims and running pods at the end.
async fn launch_killed_at(kills: &'static [u64]) -> (u64, usize, usize) {
    let yaml = format!("name: restart\nduration: 12m\n{SLOW_LAUNCH}");
    let (report, (claims, running)) =
        stowage_tests::simulate_unmanaged(&yaml, move |env| async move {
            let start = tokio::time::Instant::now();
            let mut running = stowage_tests::start_controllers(&env);
            for ms in kills {
                tokio::time::sleep_until(start + Duration::from_millis(*ms)).await;
                running.abort();
                drop(running);
                for _ in 0..5 {
                    env.cloud.fail_next(
                        stowage_cloud::Operation::Create,
                        stowage_cloud::Error::NodeClassNotResolved {
                            name: "default".into(),
                        },
                    );
                }
                running = stowage_tests::start_controllers(&env);
            }
            let client = env.client.clone();
            let what = format!("24 running pods (killed at {kills:?} ms)");
            eventually(&what, Duration::from_secs(400), || async {
                (running_pods(&client, "web").await.len() == 24).then_some(())
            })
            .await;
            // Long enough for a surplus claim to be bought and launched.
            tokio::time::sleep(Duration::from_secs(120)).await;
            let claims: Vec<NodeClaim> = Api::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .expect("list nodeclaims");
            let pods = running_pods(&client, "web").await.len();
            drop(running);
            (claims.len(), pods)
        })
        .await;
    (report.launches, claims, running)
}

/// Killed at any point of a launch, a restarted controller counts the claims in flight as
/// capacity for the pods it finds pending: it buys what a run without a restart buys.
#[tokio::test(start_paused = true)]
async fn a_controller_killed_at_any_point_of_a_launch_buys_no_more_than_without_the_kill() {
    let (baseline, claims, running) = launch_killed_at(&[]).await;
    assert!(baseline >= 2, "the scenario needs several nodes");
    assert_eq!((claims as u64, running), (baseline, 24));
    let runs: [&'static [u64]; 9] = [
        &[100],
        &[1_000],
        &[5_000],
        &[20_000],
        &[30_000],
        &[40_000],
        &[50_000],
        &[60_000],
        // Seven kills in one launch, as on the real cluster.
        &[500, 3_000, 12_000, 25_000, 42_000, 51_000, 63_000],
    ];
    for kills in runs {
        let (launches, claims, running) = launch_killed_at(kills).await;
        assert_eq!(
            (launches, claims as u64, running),
            (baseline, baseline, 24),
            "killed at {kills:?} ms after the pods appeared: instances bought, claims and running pods"
        );
    }
}

/// The seed's tiers on the synthetic catalogue: `spot` (weight 80) is preferred; `od` (weight 50)
/// takes the pods that need on-demand, capped at 5 % of the spot vCPUs of both tiers (the
/// `tier: general` scope). `od` is tainted so that the scheduler does not fill its scarce nodes
/// with pods that could run on spot.
const TIERS: &str = r#"
catalog: { source: synthetic, types: 16 }
nodeClasses:
  - name: default
    spec:
      amiSelectorTerms: [{ alias: al2023@latest }]
      subnetSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      securityGroupSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      role: NodeRole
nodePools:
  - name: spot
    labels: { tier: general }
    spec:
      weight: 80
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          requirements: [{ key: stowage.dev/capacity-type, operator: In, values: [spot] }]
  - name: od
    labels: { tier: general }
    spec:
      weight: 50
      capacityMix:
        onDemandPercentAboveBase: 5
        scope: { nodePoolSelector: { matchLabels: { tier: general } } }
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          taints: [{ key: example.com/on-demand, value: "true", effect: NoSchedule }]
          requirements: [{ key: stowage.dev/capacity-type, operator: In, values: [on-demand] }]
timeline:
  - at: 0s
    create: { name: batch, replicas: 160, requests: { cpu: "1", memory: 1Gi } }
  - at: 0s
    create:
      name: payments
      replicas: 20
      requests: { cpu: "1", memory: 1Gi }
      nodeSelector: { stowage.dev/capacity-type: on-demand }
      tolerations: [{ key: example.com/on-demand, operator: Equal, value: "true", effect: NoSchedule }]
"#;

/// vCPUs of the nodes per capacity type label value.
fn node_cpu(nodes: &[Node], capacity_type: &str) -> f64 {
    nodes
        .iter()
        .filter(|n| {
            n.labels().get(labels::CAPACITY_TYPE).map(String::as_str) == Some(capacity_type)
        })
        .filter_map(|n| n.status.as_ref()?.capacity.as_ref()?.get("cpu").cloned())
        .map(|q| stowage_api::quantity::parse_milli(&q.0).unwrap_or(0) as f64 / 1000.0)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn the_on_demand_tier_stays_within_5_percent_of_the_spot_tier() {
    let yaml = format!("name: tiers\nduration: 15m\n{TIERS}");
    let (_, (nodes, payments, pools)) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually(
            "160 batch pods running",
            Duration::from_secs(600),
            || async { (running_pods(&client, "batch").await.len() == 160).then_some(()) },
        )
        .await;
        eventually(
            "payments on on-demand",
            Duration::from_secs(600),
            || async { (!running_pods(&client, "payments").await.is_empty()).then_some(()) },
        )
        .await;
        // A few more provisioning rounds: nothing may push on-demand past the cap.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let nodes: Vec<Node> = Api::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let payments = running_pods(&client, "payments").await;
        let pools: Vec<stowage_api::NodePool> = Api::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        (nodes, payments, pools)
    })
    .await;
    let spot = node_cpu(&nodes, "spot");
    let on_demand = node_cpu(&nodes, "on-demand");
    assert!(spot >= 160.0, "{spot}");
    assert!(on_demand > 0.0);
    assert!(
        on_demand <= 0.05 * spot,
        "on-demand {on_demand} vCPU > 5 % of spot {spot} vCPU"
    );
    // The spot tier is preferred: every spot node is the spot pool's, every on-demand node od's.
    for n in &nodes {
        let pool = n.labels().get(labels::NODEPOOL).map(String::as_str);
        match n.labels().get(labels::CAPACITY_TYPE).map(String::as_str) {
            Some("spot") => assert_eq!(pool, Some("spot")),
            Some("on-demand") => assert_eq!(pool, Some("od")),
            other => panic!("{other:?}"),
        }
    }
    for p in &payments {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
        let n = nodes.iter().find(|n| n.name_any() == node).unwrap();
        assert_eq!(
            n.labels().get(labels::CAPACITY_TYPE).map(String::as_str),
            Some("on-demand")
        );
    }
    let od = pools.iter().find(|p| p.name_any() == "od").unwrap();
    let scope = od
        .condition(stowage_api::conditions::CAPACITY_MIX_SCOPE)
        .unwrap();
    assert!(scope.is_true());
    assert_eq!(scope.message, "the on-demand cap counts NodePools od, spot");
}

/// Runs 60 web pods (500m / 1Gi, a node agent on every node) to completion on the synthetic
/// catalogue; returns the peak cost per hour and the node count.
async fn web_on_a_pool(spread: bool, limit: bool) -> (f64, usize) {
    let spread = if spread {
        ", spread: [{ topologyKey: topology.kubernetes.io/zone, maxSkew: 1 }]"
    } else {
        ""
    };
    let limits = if limit {
        "      limits: { cpu: \"400\" }\n"
    } else {
        ""
    };
    let yaml = format!(
        "name: web\nduration: 10m\n{POOL}{limits}daemonSets:\n  - name: node-agent\n    requests: {{ cpu: 100m, memory: 128Mi }}\n    tolerations: [{{ operator: Exists }}]\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 60, requests: {{ cpu: 500m, memory: 1Gi }}{spread} }}\n"
    );
    let (report, nodes) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        eventually("60 running pods", Duration::from_secs(300), || async {
            (running_pods(&client, "web").await.len() == 60).then_some(())
        })
        .await;
        let nodes: Vec<Node> = Api::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("list nodes")
            .items;
        nodes.len()
    })
    .await;
    assert_eq!(report.pending_at_end, 0);
    (report.peak_cost_per_hour, nodes)
}

#[tokio::test(start_paused = true)]
async fn a_zone_spread_deployment_on_a_limited_pool_costs_about_the_unconstrained_one() {
    let (free, free_nodes) = web_on_a_pool(false, false).await;
    let (both, both_nodes) = web_on_a_pool(true, true).await;
    let figures = format!(
        "unconstrained {free_nodes} nodes ${free:.2}/h, zone spread + cpu limit {both_nodes} nodes ${both:.2}/h"
    );
    eprintln!("{figures}");
    // 20 pods per zone share nodes: a few nodes per zone, not one per pod; the extra cost is
    // one node agent and one partly used node per zone.
    assert!(both_nodes <= 3 * 3, "{figures}");
    assert!(both <= free * 1.10, "{figures}");
}
