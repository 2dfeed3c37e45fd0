//! Drift detection against the simulated API server: the `Drifted` condition set and cleared
//! with its reason, stamps backfilled on claims launched before hashes existed, the metric and
//! the Event, behavioural NodePool fields that drift nothing, and the loop reacting to a change.
#![allow(clippy::unwrap_used)] // setup helpers outside #[test] functions unwrap too

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stowage_api::conditions::{DRIFTED, INITIALIZED, LAUNCHED, REGISTERED};
use stowage_api::requirements::Requirement;
use stowage_api::{
    EC2NodeClass, NodeClaim, NodeClaimSpec, NodeClassRef, NodePool, NodePoolSpec, labels,
};
use stowage_clock::{SharedClock, TokioClock};
use stowage_cloud::DriftReason;
use stowage_cloud::fake::FakeCloud;
use stowage_controller::drift::{self, NODEPOOL_DRIFTED, REQUIREMENTS_DRIFTED};
use stowage_controller::{Context, Settings};
use stowage_sim::ApiServer;

struct Setup {
    _api: ApiServer,
    ctx: Arc<Context>,
    cloud: FakeCloud,
    _watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for w in &self._watchers {
            w.abort();
        }
    }
}

impl Setup {
    /// The `general` NodePool (label `team: web`, spot or on-demand) and its node class, watched.
    async fn new() -> Setup {
        let clock: SharedClock = Arc::new(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let api = ApiServer::new(clock.clone());
        let client = api.client();
        let cloud = FakeCloud::builder()
            .karpenter_catalog(4)
            .node_class_kind(stowage_sim::node_class_kind())
            .build();
        let ctx = Arc::new(Context::new(
            client.clone(),
            Arc::new(cloud.clone()),
            clock,
            Settings::default(),
        ));
        ctx.set_leader(true);
        let classes: Api<EC2NodeClass> = Api::all(client.clone());
        classes
            .create(
                &PostParams::default(),
                &EC2NodeClass::new("default", stowage_sim::scenario::simulated_node_class()),
            )
            .await
            .unwrap();
        let mut spec = NodePoolSpec::default();
        spec.template.spec.node_class_ref = NodeClassRef::ec2("default");
        spec.template
            .metadata
            .labels
            .insert("team".into(), "web".into());
        spec.template.spec.requirements = vec![Requirement::in_(
            labels::CAPACITY_TYPE,
            ["spot", "on-demand"],
        )];
        let pools: Api<NodePool> = Api::all(client);
        pools
            .create(&PostParams::default(), &NodePool::new("general", spec))
            .await
            .unwrap();
        let watchers = stowage_controller::watch::spawn_all(&ctx);
        let s = Setup {
            _api: api,
            ctx,
            cloud,
            _watchers: watchers,
        };
        s.settle(|ctx| ctx.state().is_synced()).await;
        s
    }

    /// Waits (virtual time) until `done` holds for the state the watchers feed.
    async fn settle(&self, done: impl Fn(&Context) -> bool) {
        for _ in 0..600 {
            if done(&self.ctx) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the state did not settle");
    }

    fn claims(&self) -> Api<NodeClaim> {
        Api::all(self.ctx.client.clone())
    }

    fn pools(&self) -> Api<NodePool> {
        Api::all(self.ctx.client.clone())
    }

    /// An initialized on-demand claim of `general` as provisioning makes it (stamped), or as an
    /// older release made it (`stamped: false`).
    async fn initialized_claim(&self, name: &str, stamped: bool) -> NodeClaim {
        let pool = self.ctx.state().nodepool("general").unwrap();
        let mut c = NodeClaim::new(
            name,
            NodeClaimSpec {
                node_class_ref: NodeClassRef::ec2("default"),
                ..NodeClaimSpec::default()
            },
        );
        let mut l = pool.spec.template.metadata.labels.clone();
        l.insert(labels::NODEPOOL.into(), "general".into());
        l.insert(labels::CAPACITY_TYPE.into(), "on-demand".into());
        c.metadata.labels = Some(l);
        if stamped {
            let mut a = BTreeMap::new();
            pool.template_stamp().apply(&mut a);
            c.metadata.annotations = Some(a);
        }
        self.claims()
            .create(&PostParams::default(), &c)
            .await
            .unwrap();
        let now = self.ctx.clock.now();
        let status = c.status_mut();
        status.provider_id = Some(format!("fake:///zone-a/{name}"));
        for t in [LAUNCHED, REGISTERED, INITIALIZED] {
            status.set_true(t, t, now);
        }
        let c = self
            .claims()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .unwrap();
        let rv = c.metadata.resource_version.clone();
        self.settle(|ctx| {
            ctx.state()
                .claim(name)
                .is_some_and(|s| s.metadata.resource_version == rv)
        })
        .await;
        c
    }

    async fn edit_pool(&self, patch: serde_json::Value) {
        let p = self
            .pools()
            .patch("general", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        let rv = p.metadata.resource_version.clone();
        self.settle(|ctx| {
            ctx.state()
                .nodepool("general")
                .is_some_and(|s| s.metadata.resource_version == rv)
        })
        .await;
    }

    /// A pass, once the watchers have seen what the last pass wrote.
    async fn pass(&self) -> drift::PassResult {
        let r = drift::detect(&self.ctx).await;
        let written: Vec<(String, Option<String>)> = self
            .claims()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| (c.metadata.name.unwrap(), c.metadata.resource_version))
            .collect();
        self.settle(|ctx| {
            written.iter().all(|(n, rv)| {
                ctx.state()
                    .claim(n)
                    .is_some_and(|s| s.metadata.resource_version == *rv)
            })
        })
        .await;
        r
    }

    async fn drifted(&self, name: &str) -> Option<String> {
        let c = self.claims().get(name).await.unwrap();
        c.condition(DRIFTED).map(|d| {
            assert!(d.is_true(), "the condition is only ever True: {d:?}");
            d.reason.clone()
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_template_change_drifts_every_node_of_the_pool_and_reverting_it_clears_them() {
    let s = Setup::new().await;
    s.initialized_claim("general-a", true).await;
    s.initialized_claim("general-old", false).await;

    let first = s.pass().await;
    assert_eq!((first.checked, first.backfilled, first.drifted), (2, 1, 0));
    let old = s.claims().get("general-old").await.unwrap();
    let pool = s.ctx.state().nodepool("general").unwrap();
    assert_eq!(
        pool.template_stamp()
            .check(old.metadata.annotations.as_ref().unwrap()),
        stowage_api::StampCheck::Current,
        "a claim from before stamps is stamped with today's hash, not drifted"
    );
    assert_eq!(s.drifted("general-old").await, None);

    // Behavioural fields: nothing drifts.
    s.edit_pool(json!({"spec": {
        "weight": 40,
        "limits": {"cpu": "1000"},
        "disruption": {"budgets": [{"nodes": "0"}], "consolidateAfter": "Never"},
        "capacityMix": {"onDemandPercentAboveBase": 20},
        "spotBlastRadius": {"maxPodsPerWorkload": 3},
    }}))
    .await;
    let r = s.pass().await;
    assert_eq!((r.drifted, r.backfilled), (0, 0), "{r:?}");
    assert!(r.by_reason.is_empty());

    // A template label changes: both nodes (the backfilled one too) are drifted.
    s.edit_pool(json!({"spec": {"template": {"metadata": {"labels": {"team": "search"}}}}}))
        .await;
    let r = s.pass().await;
    assert_eq!(r.drifted, 2, "{r:?}");
    for name in ["general-a", "general-old"] {
        assert_eq!(s.drifted(name).await.as_deref(), Some(NODEPOOL_DRIFTED));
    }
    assert_eq!(
        s.ctx
            .metrics
            .nodeclaims_drifted("general", NODEPOOL_DRIFTED),
        2
    );
    assert!(
        s.ctx.render_metrics().contains(
            "stowage_nodeclaims_drifted{nodepool=\"general\",reason=\"NodePoolDrifted\"} 2"
        )
    );
    let events: Api<Event> = Api::namespaced(s.ctx.client.clone(), "kube-system");
    let drifted_events: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Drifted"))
        .collect();
    assert_eq!(drifted_events.len(), 2, "one Event per claim that drifted");
    assert!(
        drifted_events[0]
            .message
            .as_deref()
            .unwrap()
            .contains("template of NodePool general changed"),
        "{drifted_events:?}"
    );
    // A second pass changes nothing and sends no second Event.
    let r = s.pass().await;
    assert_eq!((r.drifted, r.cleared), (0, 0));

    // Reverted: no longer drifted, condition and series gone.
    s.edit_pool(json!({"spec": {"template": {"metadata": {"labels": {"team": "web"}}}}}))
        .await;
    let r = s.pass().await;
    assert_eq!(r.cleared, 2, "{r:?}");
    assert_eq!(s.drifted("general-a").await, None);
    assert_eq!(
        s.ctx
            .metrics
            .nodeclaims_drifted("general", NODEPOOL_DRIFTED),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn narrowed_requirements_and_the_cloud_name_their_reason() {
    let s = Setup::new().await;
    s.initialized_claim("general-a", true).await;
    // Spot only now: the on-demand node is outside the pool's requirements.
    s.edit_pool(json!({"spec": {"template": {"spec": {"requirements": [
        {"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["spot"]}
    ]}}}}))
    .await;
    s.pass().await;
    assert_eq!(
        s.drifted("general-a").await.as_deref(),
        Some(REQUIREMENTS_DRIFTED)
    );
    let c = s.claims().get("general-a").await.unwrap();
    assert!(
        c.condition(DRIFTED)
            .unwrap()
            .message
            .contains("stowage.dev/capacity-type=on-demand"),
        "{:?}",
        c.condition(DRIFTED)
    );
    // Widened again: the cloud's finding is next in line.
    s.edit_pool(json!({"spec": {"template": {"spec": {"requirements": [
        {"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["spot", "on-demand", "reserved"]}
    ]}}}}))
    .await;
    s.cloud.mark_drifted("general-a", DriftReason::AmiDrift);
    s.pass().await;
    assert_eq!(s.drifted("general-a").await.as_deref(), Some("AMIDrift"));
    assert_eq!(s.ctx.metrics.nodeclaims_drifted("general", "AMIDrift"), 1);
    assert_eq!(
        s.ctx
            .metrics
            .nodeclaims_drifted("general", REQUIREMENTS_DRIFTED),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_judges_within_seconds_of_a_nodepool_change() {
    let s = Setup::new().await;
    s.initialized_claim("general-a", true).await;
    let handle = tokio::spawn(drift::run(s.ctx.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.drifted("general-a").await, None);
    s.edit_pool(json!({"spec": {"template": {"spec": {"taints": [
        {"key": "dedicated", "value": "search", "effect": "NoSchedule"}
    ]}}}}))
    .await;
    // Far sooner than the 5-minute period: the change is noticed within WATCH_PERIOD.
    tokio::time::sleep(drift::WATCH_PERIOD + Duration::from_secs(1)).await;
    assert_eq!(
        s.drifted("general-a").await.as_deref(),
        Some(NODEPOOL_DRIFTED)
    );
    handle.abort();
}
