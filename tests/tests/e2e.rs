//! End-to-end tests of the controllers against the simulated API server (through a real
//! `kube::Client`) and the fake cloud, in virtual time.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use stowage_api::NodeClaim;
use stowage_api::conditions::LAUNCHED;
use stowage_api::labels;
use stowage_cloud::CapacityType;
use stowage_tests::{Harness, eventually, pod};

async fn claims(h: &Harness) -> Vec<NodeClaim> {
    let api: Api<NodeClaim> = Api::all(h.client.clone());
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The NodeClaims the cloud was asked to create, call by call.
fn create_calls(h: &Harness) -> Vec<String> {
    h.cloud
        .calls()
        .into_iter()
        .filter(|c| c.operation == stowage_cloud::Operation::Create)
        .map(|c| c.subject)
        .collect()
}

async fn events_for(h: &Harness, pod: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let all = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    all.into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_pending_pod_gets_a_launched_nodeclaim_from_its_pool() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let claim = eventually("a launched nodeclaim", Duration::from_secs(60), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    assert_eq!(claim.nodepool_name(), Some("general"));
    assert!(
        claim
            .finalizers()
            .contains(&labels::TERMINATION_FINALIZER.to_string())
    );
    assert!(
        claim
            .provider_id()
            .is_some_and(|p| p.starts_with("fake:///"))
    );
    assert!(
        claim.label(labels::INSTANCE_TYPE).is_some(),
        "launch labels copied onto the claim"
    );
    assert_eq!(h.cloud.instances().len(), 1);
    let events = eventually("a Nominated event", Duration::from_secs(10), || async {
        let e = events_for(&h, "web").await;
        e.iter()
            .any(|e| e.reason.as_deref() == Some("Nominated"))
            .then_some(e)
    })
    .await;
    assert!(events.iter().any(|e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.contains("nodeclaim/"))
    }));
}

#[tokio::test(start_paused = true)]
async fn in_flight_capacity_is_not_bought_twice() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("a", "500m", "256Mi")).await;
    eventually("a launched nodeclaim", Duration::from_secs(60), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    // The scheduler refreshes the unschedulable condition (no node yet) and a small pod that fits
    // in the launched instance's spare room arrives. Long past the nomination window, still one
    // claim: both pods wait for the in-flight one.
    h.pending_pod(pod("b", "100m", "64Mi")).await;
    tokio::time::sleep(Duration::from_secs(90)).await;
    let all = claims(&h).await;
    assert_eq!(
        all.len(),
        1,
        "claims: {:?}",
        all.iter()
            .map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(h.cloud.instances().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn insufficient_capacity_on_the_cheapest_spot_offering_relaunches_on_the_next() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |p| {
        p.spec.template.spec.requirements = vec![stowage_api::Requirement::in_(
            labels::CAPACITY_TYPE,
            ["spot"],
        )];
    })
    .await;
    // Every spot offering of the cheapest type that fits is out of capacity.
    let cheapest = h.cloud.catalog()[0].name.clone();
    for it in h.cloud.catalog().iter().filter(|t| t.name == cheapest) {
        for o in &it.offerings {
            if o.capacity_type == CapacityType::Spot {
                h.cloud.mark_insufficient(stowage_cloud::OfferingKey {
                    instance_type: it.name.clone(),
                    zone: o.zone.clone(),
                    capacity_type: CapacityType::Spot,
                });
            }
        }
    }
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let claim = eventually("a launched nodeclaim", Duration::from_secs(120), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    assert_ne!(
        claim.label(labels::INSTANCE_TYPE),
        Some(cheapest.as_str()),
        "relaunched on another type"
    );
    assert_eq!(claim.label(labels::CAPACITY_TYPE), Some("spot"));
    assert_eq!(
        h.cloud.instances().len(),
        1,
        "no leaked or duplicate instance"
    );
}

#[tokio::test(start_paused = true)]
async fn a_nodepool_limit_shows_up_as_an_event_with_the_reason() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("small", |p| {
        p.spec.limits.insert(
            "cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
    })
    .await;
    h.pending_pod(pod("big", "3", "1Gi")).await;
    let events = eventually(
        "a FailedScheduling event",
        Duration::from_secs(60),
        || async {
            let e = events_for(&h, "big").await;
            e.iter()
                .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
                .then_some(e)
        },
    )
    .await;
    let msg = events
        .iter()
        .find_map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(msg.contains("limit"), "{msg}");
    assert!(claims(&h).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_registers_is_replaced_after_the_registration_timeout() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let first = eventually("a launched nodeclaim", Duration::from_secs(60), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    let first_name = first.metadata.name.clone().unwrap_or_default();
    // No kubelet runs here: the node never registers.
    let second = eventually(
        "a replacement nodeclaim",
        Duration::from_secs(20 * 60),
        || async {
            claims(&h)
                .await
                .into_iter()
                .find(|c| c.metadata.name.as_deref() != Some(&first_name) && c.is_true(LAUNCHED))
        },
    )
    .await;
    let launched_at = first
        .condition(LAUNCHED)
        .and_then(|c| c.last_transition())
        .unwrap();
    let replaced_at = second.metadata.creation_timestamp.as_ref().unwrap().0;
    let waited = replaced_at.duration_since(launched_at);
    assert!(
        waited >= jiff::SignedDuration::from_mins(15),
        "replaced after {waited:?}"
    );
    eventually(
        "the first claim and its instance gone",
        Duration::from_secs(60),
        || async {
            let gone = claims(&h)
                .await
                .iter()
                .all(|c| c.metadata.name.as_deref() != Some(&first_name));
            (gone && h.cloud.instances().len() == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn pods_ignored_by_the_provisioner_get_no_claim() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    let api: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    // Not marked unschedulable by the scheduler yet: not provisionable.
    api.create(&Default::default(), &pod("fresh", "500m", "256Mi"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(claims(&h).await.is_empty());
    // Positive control: the same provisioner, alive, buys for the pod once the scheduler marks it
    // unschedulable (so the empty list above is a decision, not a dead controller).
    let status = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/0 nodes are available"}]}});
    api.patch_status(
        "fresh",
        &Default::default(),
        &kube::api::Patch::Merge(status),
    )
    .await
    .unwrap();
    eventually(
        "a claim for the unschedulable pod",
        Duration::from_secs(60),
        || async { (claims(&h).await.len() == 1).then_some(()) },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_two_thousand_pods_over_five_seconds_is_one_batch() {
    let h = Harness::new(16);
    let running = h.start();
    h.nodepool("general", |_| {}).await;
    let start = tokio::time::Instant::now();
    for i in 0..2000 {
        h.pending_pod(pod(&format!("burst-{i}"), "250m", "128Mi"))
            .await;
        // 2,000 pods over 5 s of virtual time.
        tokio::time::sleep(Duration::from_micros(2500)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(5));
    eventually("claims for the burst", Duration::from_secs(60), || async {
        (!claims(&h).await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let metrics = running.ctx.render_metrics();
    assert!(
        metrics.contains("stowage_provisioner_batch_size_count 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stowage_provisioner_batch_size_sum 2000.0"),
        "{metrics}"
    );
    // Every pod is nominated to exactly one new claim.
    let nominated: usize = claims(&h)
        .await
        .iter()
        .map(|c| {
            running
                .ctx
                .state()
                .nominated_to(c.metadata.name.as_deref().unwrap_or_default())
                .len()
        })
        .sum();
    assert_eq!(nominated, 2000);
}

#[tokio::test(start_paused = true)]
async fn two_replicas_elect_one_leader_and_the_standby_takes_over() {
    let h = Harness::new(8);
    let a = h.start_replica("replica-a");
    let b = h.start_replica("replica-b");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(a.ctx.is_leader() ^ b.ctx.is_leader(), "exactly one leader");
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(claims(&h).await.len(), 1, "only the leader provisions");
    let (leader, standby) = if a.ctx.is_leader() { (a, b) } else { (b, a) };
    // The leader dies without releasing the lease: the standby takes over once it expires.
    leader.abort();
    drop(leader);
    eventually("the standby to lead", Duration::from_secs(60), || async {
        standby.ctx.is_leader().then_some(())
    })
    .await;
    assert_eq!(h.cloud.instances().len(), 1);
}

/// SIGTERM (every rollout and node drain) stops the leader cleanly: it releases the Lease and
/// the standby leads at once, well before the lease would have expired.
#[tokio::test(start_paused = true)]
async fn a_leader_shutting_down_hands_over_at_once() {
    let h = Harness::new(8);
    let a = h.start_replica("replica-a");
    let b = h.start_replica("replica-b");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(a.ctx.is_leader() ^ b.ctx.is_leader(), "exactly one leader");
    let (leader, standby) = if a.ctx.is_leader() { (a, b) } else { (b, a) };
    let leader_ctx = leader.ctx.clone();
    let start = tokio::time::Instant::now();
    leader.shutdown().await;
    assert!(!leader_ctx.is_leader());
    eventually("the standby to lead", Duration::from_secs(60), || async {
        standby.ctx.is_leader().then_some(())
    })
    .await;
    let lease_duration = stowage_controller::leader::LeaseConfig::new("x", "y", "z").lease_duration;
    assert!(
        start.elapsed() < lease_duration / 2,
        "took over after {:?}; the lease lasts {lease_duration:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_controller_restart_mid_launch_leaves_no_duplicate_and_no_leak() {
    let cloud = stowage_cloud::fake::FakeCloud::builder()
        .karpenter_catalog(8)
        .launch_latency(Duration::from_secs(30))
        .node_class_kind(stowage_sim::node_class_kind())
        .build();
    let h = Harness::with_cloud(cloud);
    let first = h.start();
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    // The claim exists and its launch is under way...
    eventually("a nodeclaim", Duration::from_secs(30), || async {
        (!claims(&h).await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        claims(&h).await.iter().all(|c| !c.is_true(LAUNCHED)),
        "still launching"
    );
    // ...when the controller dies.
    first.abort();
    drop(first);
    let _second = h.start();
    let claim = eventually("the claim launched", Duration::from_secs(120), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(claims(&h).await.len(), 1);
    let instances = h.cloud.instances();
    assert_eq!(
        instances.len(),
        1,
        "one instance, none leaked: {instances:?}"
    );
    assert_eq!(Some(instances[0].provider_id.as_str()), claim.provider_id());
}

#[tokio::test(start_paused = true)]
async fn an_instance_without_a_nodeclaim_is_terminated_after_the_grace_period() {
    use stowage_cloud::CloudProvider;
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    // An instance launched for a claim that never made it into the cluster (a crash between the
    // launch and the write, or a claim deleted behind our back).
    let mut ghost = NodeClaim::new("ghost", Default::default());
    ghost.metadata.labels = Some([(labels::NODEPOOL.to_string(), "general".to_string())].into());
    ghost.spec.resources.requests.insert(
        "cpu".into(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into()),
    );
    h.cloud.create(&ghost).await.unwrap();
    assert_eq!(h.cloud.instances().len(), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.cloud.instances().len(), 1, "kept within the grace period");
    eventually(
        "the orphan terminated",
        Duration::from_secs(300),
        || async { h.cloud.instances().is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn nodepool_status_reports_usage_and_readiness() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    h.nodepool("orphaned", |p| {
        p.spec.template.spec.node_class_ref = stowage_api::NodeClassRef::ec2("missing")
    })
    .await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let pools: Api<stowage_api::NodePool> = Api::all(h.client.clone());
    let general = eventually(
        "general counts its node",
        Duration::from_secs(120),
        || async {
            let p = pools.get("general").await.ok()?;
            (p.status.as_ref()?.nodes == 1).then_some(p)
        },
    )
    .await;
    let status = general.status.unwrap();
    assert!(status.is_true("Ready"), "{:?}", status.conditions);
    assert!(status.resources.contains_key("cpu"));
    let orphaned = eventually("orphaned not ready", Duration::from_secs(120), || async {
        let p = pools.get("orphaned").await.ok()?;
        p.status.as_ref()?.condition("Ready").cloned()
    })
    .await;
    assert!(orphaned.is_false());
    assert_eq!(orphaned.reason, "NodeClassNotReady");
    // The node class's status came from the provider through the generic node-class path.
    let classes: Api<stowage_api::EC2NodeClass> = Api::all(h.client.clone());
    let class = eventually("the class resolved", Duration::from_secs(120), || async {
        let c = classes.get("default").await.ok()?;
        (!c.status.as_ref()?.subnets.is_empty()).then_some(c)
    })
    .await;
    let status = class.status.unwrap();
    assert!(status.is_true("Ready"), "{:?}", status.conditions);
    assert!(
        status
            .subnets
            .iter()
            .all(|s| s.id.starts_with("subnet-fake-"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_launch_waits_for_its_node_class_to_be_resolved_and_keeps_its_claim() {
    let h = Harness::new(8);
    // Right after a restart the provider has not resolved the class yet: the launch must wait.
    for _ in 0..3 {
        h.cloud.fail_next(
            stowage_cloud::Operation::Create,
            stowage_cloud::Error::NodeClassNotResolved {
                name: "default".into(),
            },
        );
    }
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let launched = eventually("a launched nodeclaim", Duration::from_secs(120), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    let creates = create_calls(&h);
    assert!(creates.len() >= 4, "{creates:?}");
    assert!(
        creates.iter().all(|n| *n == launched.name_any()),
        "the claim waited instead of being deleted: {creates:?}"
    );
    assert_eq!(claims(&h).await.len(), 1);
    assert_eq!(h.cloud.instances().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_launch_for_a_node_class_that_does_not_exist_gives_up_its_claim() {
    let h = Harness::new(8);
    h.cloud.fail_next(
        stowage_cloud::Operation::Create,
        stowage_cloud::Error::NodeClassNotResolved {
            name: "missing".into(),
        },
    );
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let launched = eventually("a launched nodeclaim", Duration::from_secs(120), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    let creates = create_calls(&h);
    assert_ne!(
        creates.first(),
        Some(&launched.name_any()),
        "the claim naming an absent class was deleted and its pod solved again: {creates:?}"
    );
    assert!(
        !claims(&h)
            .await
            .iter()
            .any(|c| Some(&c.name_any()) == creates.first()),
        "the first claim is gone"
    );
    assert_eq!(h.cloud.instances().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broad_nodepool_over_a_large_catalogue_writes_claims_the_crd_accepts() {
    // 700 types that all fit the pod: the solver's options are cut to `max_instance_types`.
    let h = Harness::new(700);
    let _running = h.start();
    h.nodepool("broad", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let claim = eventually("a launched nodeclaim", Duration::from_secs(120), || async {
        claims(&h).await.into_iter().find(|c| c.is_true(LAUNCHED))
    })
    .await;
    let options = claim
        .spec
        .requirements
        .iter()
        .find(|r| r.key == labels::INSTANCE_TYPE)
        .map(|r| r.values.len());
    assert_eq!(options, Some(h.settings.max_instance_types));
    assert_eq!(h.settings.max_instance_types, 60);
    assert!(h.settings.max_instance_types <= stowage_api::validation::MAX_REQUIREMENT_VALUES);
    assert!(
        claim.label(labels::INSTANCE_TYPE).is_some_and(|t| claim
            .spec
            .requirements
            .iter()
            .any(|r| r.key == labels::INSTANCE_TYPE && r.values.iter().any(|v| v == t))),
        "the instance launched is one of the claim's options"
    );

    // Control: the 600 options the controller once wrote are refused by the API server, as a
    // real one refuses them, so no claim ever exists.
    let mut h = Harness::new(700);
    h.settings.max_instance_types = 600;
    let _running = h.start();
    h.nodepool("broad", |_| {}).await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(claims(&h).await.is_empty());
}

/// A pod that no ready NodePool can take is told why the NodePools that exist are not used (here
/// the only pool's node class does not exist), not only "no NodePool exists".
#[tokio::test(start_paused = true)]
async fn failed_scheduling_events_name_the_pools_that_are_not_ready() {
    let h = Harness::new(8);
    let _running = h.start();
    h.nodepool("orphaned", |p| {
        p.spec.template.spec.node_class_ref = stowage_api::NodeClassRef::ec2("missing")
    })
    .await;
    let pools: Api<stowage_api::NodePool> = Api::all(h.client.clone());
    eventually(
        "the pool reported not ready",
        Duration::from_secs(120),
        || async {
            let p = pools.get("orphaned").await.ok()?;
            p.condition("Ready")
                .is_some_and(|c| c.is_false())
                .then_some(())
        },
    )
    .await;
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let message = eventually(
        "a FailedScheduling event",
        Duration::from_secs(120),
        || async {
            events_for(&h, "web")
                .await
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                .find_map(|e| e.message)
                .filter(|m| m.contains("NodePools not used"))
        },
    )
    .await;
    assert!(
        message.contains("orphaned: NodeClassReady False (") && message.contains("missing"),
        "{message}"
    );
    assert!(claims(&h).await.is_empty());
}

/// With the cloud API unreachable, the node class is not ready with that error, its NodePool says
/// `NodeClassReady=False`, and a pending pod's Event names the pool and the error; once the cloud
/// answers again, the pool provisions.
#[tokio::test(start_paused = true)]
async fn an_unreachable_cloud_shows_on_the_class_the_pool_and_the_pod() {
    let h = Harness::new(8);
    for _ in 0..20 {
        h.cloud.fail_next(
            stowage_cloud::Operation::ReconcileNodeClass,
            stowage_cloud::Error::Api {
                operation: "DescribeSubnets",
                message: "dial tcp: connection refused".into(),
            },
        );
    }
    let _running = h.start();
    h.nodepool("general", |_| {}).await;
    let pools: Api<stowage_api::NodePool> = Api::all(h.client.clone());
    let condition = eventually(
        "the pool reports its class",
        Duration::from_secs(120),
        || async {
            let p = pools.get("general").await.ok()?;
            let c = p.condition("NodeClassReady")?.clone();
            c.is_false().then_some(c)
        },
    )
    .await;
    assert!(
        condition.message.contains("connection refused"),
        "{condition:?}"
    );
    let classes: Api<stowage_api::EC2NodeClass> = Api::all(h.client.clone());
    let class = classes.get("default").await.unwrap();
    let ready = class
        .status
        .as_ref()
        .and_then(|s| s.condition("Ready"))
        .cloned();
    let ready = ready.expect("the class has a Ready condition");
    assert!(
        ready.is_false() && ready.reason == "ResolutionFailed",
        "{ready:?}"
    );
    assert!(ready.message.contains("connection refused"), "{ready:?}");
    h.pending_pod(pod("web", "500m", "256Mi")).await;
    let message = eventually(
        "a FailedScheduling event",
        Duration::from_secs(120),
        || async {
            events_for(&h, "web")
                .await
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                .find_map(|e| e.message)
        },
    )
    .await;
    assert!(
        message.contains("general: NodeClassReady False") && message.contains("connection refused"),
        "{message}"
    );
    // The cloud answers again: the class becomes ready and the pod gets its node.
    eventually(
        "a claim once the cloud is back",
        Duration::from_secs(1800),
        || async { (!claims(&h).await.is_empty()).then_some(()) },
    )
    .await;
}
