//! The referee's counters on hand-made state changes (no controllers): each test writes the
//! objects a disruption would touch straight into the store and checks what was counted.

use std::sync::Arc;

use serde_json::{Value, json};
use stowage_clock::{SharedClock, TokioClock};
use stowage_cloud::fake::{FakeCloud, FakeEvent, TerminationReason};

use super::*;
use crate::apiserver::{ApiServer, CoreKinds, DeleteOpts, Sub, patch::PatchKind};

const EPOCH: i64 = 1_767_225_600;

struct Fixture {
    api: ApiServer,
    k: CoreKinds,
    referee: Referee,
    now: jiff::Timestamp,
}

impl Fixture {
    fn new() -> Self {
        let now = jiff::Timestamp::from_second(EPOCH).unwrap();
        let clock: SharedClock = Arc::new(TokioClock::starting_at(now));
        let api = ApiServer::new(clock);
        let k = api.core_kinds().unwrap();
        let cloud = FakeCloud::builder().karpenter_catalog(4).build();
        let referee = Referee::new(&api, k, &cloud);
        Self {
            api,
            k,
            referee,
            now,
        }
    }

    fn drain(&mut self) -> &Tally {
        self.referee.drain(self.now);
        &self.referee.tally
    }

    fn pool(&self, name: &str, budgets: Value) {
        self.api
            .store()
            .create(
                self.k.nodepool,
                "",
                json!({ "apiVersion": "stowage.dev/v1", "kind": "NodePool", "metadata": { "name": name },
                    "spec": {
                        "template": { "spec": { "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" } } },
                        "disruption": { "budgets": budgets }
                    } }),
            )
            .unwrap();
    }

    /// An initialized NodeClaim of `pool` with its Node `<name>-node`.
    fn node(&self, pool: &str, name: &str, expire_after: &str) {
        let store = self.api.store();
        store
            .create(
                self.k.nodeclaim,
                "",
                json!({ "apiVersion": "stowage.dev/v1", "kind": "NodeClaim",
                    "metadata": { "name": name, "labels": { labels::NODEPOOL: pool } },
                    "spec": {
                        "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" },
                        "requirements": [],
                        "expireAfter": expire_after
                    } }),
            )
            .unwrap();
        let status = json!({ "status": {
            "nodeName": format!("{name}-node"), "providerID": format!("fake:///z/{name}"),
            "conditions": [{ "type": "Initialized", "status": "True", "reason": "Initialized", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
        }});
        store
            .patch(
                self.k.nodeclaim,
                "",
                name,
                &PatchKind::Merge,
                status.to_string().as_bytes(),
                Sub::Status,
            )
            .unwrap();
        store
            .create(
                self.k.node,
                "",
                json!({ "apiVersion": "v1", "kind": "Node",
                    "metadata": { "name": format!("{name}-node"), "labels": { labels::NODEPOOL: pool, labels::NODECLAIM: name } },
                    "spec": { "providerID": format!("fake:///z/{name}") } }),
            )
            .unwrap();
    }

    /// The disruption controller's marks: `Disrupting=True` with `reason` (none: leave the
    /// condition alone) and the taint on the Node.
    fn disrupt(&self, name: &str, reason: Option<&str>) {
        let store = self.api.store();
        if let Some(reason) = reason {
            store
                .modify(self.k.nodeclaim, "", name, |c| {
                    c["metadata"]["annotations"] = json!({ COMMAND_ANNOTATION: format!("{{\"method\":\"single-node\",\"since\":\"{name}\"}}") });
                    c["status"]["conditions"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({ "type": "Disrupting", "status": "True", "reason": reason, "lastTransitionTime": "2026-01-01T00:00:00Z" }));
                    true
                })
                .unwrap();
        }
        self.taint(name, true);
    }

    fn taint(&self, name: &str, on: bool) {
        self.api
            .store()
            .modify(self.k.node, "", &format!("{name}-node"), |n| {
                n["spec"]["taints"] = if on {
                    json!([{ "key": labels::DISRUPTED_TAINT_KEY, "effect": "NoSchedule" }])
                } else {
                    json!([])
                };
                true
            })
            .unwrap();
    }

    /// A Running pod of a ReplicaSet (`owner` uid; `None`: a bare pod) on `node`'s Node.
    fn pod(&self, name: &str, app: &str, node: &str, owner: Option<(&str, &str)>) {
        let mut obj = json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "labels": { "app": app } },
            "spec": { "nodeName": format!("{node}-node"), "terminationGracePeriodSeconds": 30,
                      "containers": [{ "name": "main", "image": "busybox" }] } });
        if let Some((kind, uid)) = owner {
            obj["metadata"]["ownerReferences"] = json!([{ "apiVersion": "apps/v1", "kind": kind, "name": app, "uid": uid, "controller": true }]);
        }
        let store = self.api.store();
        store.create(self.k.pod, "default", obj).unwrap();
        store
            .modify(self.k.pod, "default", name, |p| {
                p["status"] = json!({ "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] });
                true
            })
            .unwrap();
    }

    fn pdb(&self, app: &str, min_available: Value) {
        self.api
            .store()
            .create(
                self.k.pdb,
                "default",
                json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": app },
                    "spec": { "selector": { "matchLabels": { "app": app } }, "minAvailable": min_available } }),
            )
            .unwrap();
    }

    fn delete_pod(&self, name: &str) {
        self.api
            .store()
            .delete(self.k.pod, "default", name, &DeleteOpts::default())
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_budget_of_one_counts_the_second_node_disrupting_at_once() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "1" }]));
    for n in ["a", "b", "c"] {
        f.node("default", n, "720h");
    }
    f.disrupt("a", Some("Underutilized"));
    assert_eq!(f.drain().budget_violations, 0);
    f.disrupt("b", Some("Empty"));
    let t = f.drain();
    assert_eq!(t.budget_violations, 1, "{:?}", t.details);
    assert_eq!(t.max_disrupting_by_pool["default"], 2);
    assert_eq!(t.disruptions_by_reason["Underutilized"], 1);
    assert_eq!(t.disruptions_by_reason["Empty"], 1);
    assert_eq!(t.disruptions_by_method["single-node"], 2);
    assert_eq!(t.disruption_commands, 2);
    // A node that is done (its instance gone) no longer counts: the next one fits the budget.
    f.referee.on_cloud(
        FakeEvent::Terminated {
            claim_name: "a".into(),
            provider_id: "fake:///z/a".into(),
            reason: TerminationReason::Deleted,
        },
        f.now,
    );
    f.referee.on_cloud(
        FakeEvent::Terminated {
            claim_name: "b".into(),
            provider_id: "fake:///z/b".into(),
            reason: TerminationReason::Deleted,
        },
        f.now,
    );
    f.disrupt("c", Some("Underutilized"));
    assert_eq!(f.drain().budget_violations, 1);
}

#[tokio::test(start_paused = true)]
async fn nodes_disrupting_one_after_the_other_within_budget_are_fine() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "1" }]));
    for n in ["a", "b"] {
        f.node("default", n, "720h");
    }
    f.disrupt("a", Some("Underutilized"));
    f.drain();
    // Undone: untainted and the condition dropped.
    f.taint("a", false);
    f.api
        .store()
        .modify(f.k.nodeclaim, "", "a", |c| {
            c["status"]["conditions"]
                .as_array_mut()
                .unwrap()
                .retain(|x| x["type"] != "Disrupting");
            true
        })
        .unwrap();
    f.disrupt("b", Some("Underutilized"));
    let t = f.drain();
    assert_eq!(t.budget_violations, 0, "{:?}", t.details);
    assert_eq!(t.max_disrupting_by_pool["default"], 1);
}

#[tokio::test(start_paused = true)]
async fn percentages_round_up_over_the_pools_nodes_and_reasons_pick_their_budget() {
    let mut f = Fixture::new();
    // 10% of 3 nodes rounds up to 1; drift may not disrupt anything.
    f.pool(
        "default",
        json!([{ "nodes": "10%" }, { "nodes": "0", "reasons": ["Drifted"] }]),
    );
    for n in ["a", "b", "c"] {
        f.node("default", n, "720h");
    }
    f.disrupt("a", Some("Empty"));
    assert_eq!(f.drain().budget_violations, 0);
    f.disrupt("b", Some("Drifted"));
    assert_eq!(f.drain().budget_violations, 1);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_names_its_reason_is_held_to_the_strictest_budget() {
    let mut f = Fixture::new();
    f.pool(
        "default",
        json!([{ "nodes": "100%" }, { "nodes": "0", "reasons": ["Drifted"] }]),
    );
    f.node("default", "a", "720h");
    f.taint("a", true);
    assert_eq!(f.drain().budget_violations, 0, "judged when it leaves");
    f.taint("a", false);
    let t = f.drain();
    assert_eq!(t.budget_violations, 1);
    assert_eq!(t.disruptions_by_reason["Unknown"], 1);
    assert_eq!(t.disruptions_by_method["unknown"], 1);
}

#[tokio::test(start_paused = true)]
async fn interrupted_and_expired_nodes_are_exempt_from_budgets() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "0" }]));
    f.node("default", "a", "720h");
    f.node("default", "b", "1h");
    f.referee.on_cloud(
        FakeEvent::InterruptionWarning {
            claim_name: "a".into(),
            provider_id: "fake:///z/a".into(),
            notice: std::time::Duration::from_secs(120),
        },
        f.now,
    );
    f.disrupt("a", Some("Interrupted"));
    f.now += jiff::SignedDuration::from_hours(2);
    f.disrupt("b", Some("Expired"));
    let t = f.drain();
    assert_eq!(t.budget_violations, 0, "{:?}", t.details);
    assert!(t.max_disrupting_by_pool.is_empty());
    // The same pool's other node disrupting for a budgeted reason is judged.
    f.node("default", "c", "720h");
    f.disrupt("c", Some("Underutilized"));
    assert_eq!(f.drain().budget_violations, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pod_deleted_while_its_pdb_allows_nothing_is_a_violation() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    for p in ["web-1", "web-2", "web-3"] {
        f.pod(p, "web", "a", Some(("ReplicaSet", "rs-web")));
    }
    f.pdb("web", json!(2));
    f.delete_pod("web-1");
    let t = f.drain();
    assert_eq!(t.pdb_violations, 0, "3 healthy, 2 desired: one may go");
    assert_eq!(t.pods_disrupted, 1);
    f.delete_pod("web-2");
    let t = f.drain();
    assert_eq!(t.pdb_violations, 1, "{:?}", t.details);
    assert_eq!(t.pods_lost, 0, "a ReplicaSet recreates them");
    // Evictions the API server refuses change nothing.
    let pdb_kind = Some(f.k.pdb);
    assert!(
        f.api
            .store()
            .evict(
                f.k.pod,
                pdb_kind,
                "default",
                "web-3",
                &DeleteOpts::default()
            )
            .is_err()
    );
    assert_eq!(f.drain().pdb_violations, 1);
}

#[tokio::test(start_paused = true)]
async fn the_clusters_own_deletions_and_finished_pods_are_no_disruption() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    f.pod("web-1", "web", "a", Some(("ReplicaSet", "rs-web")));
    f.pod("job-1", "job", "a", Some(("Job", "job-uid")));
    f.pod("ds-1", "agent", "a", Some(("DaemonSet", "ds-uid")));
    f.pdb("web", json!(1));
    f.pdb("job", json!(1));
    f.pdb("agent", json!(1));
    f.referee.own_pod_deletion("default/web-1");
    f.delete_pod("web-1");
    f.api
        .store()
        .modify(f.k.pod, "default", "job-1", |p| {
            p["status"]["phase"] = json!("Succeeded");
            true
        })
        .unwrap();
    f.delete_pod("job-1");
    f.delete_pod("ds-1");
    let t = f.drain();
    assert_eq!(t.pods_disrupted, 0, "{t:?}");
    assert_eq!(t.pdb_violations, 0);
}

#[tokio::test(start_paused = true)]
async fn pods_of_a_deleted_workload_are_the_clusters_own_doing() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    f.pod("web-1", "web", "a", Some(("ReplicaSet", "rs-web")));
    f.pdb("web", json!(1));
    f.referee.own_owner_deletion("rs-web");
    f.delete_pod("web-1");
    assert_eq!(f.drain().pods_disrupted, 0);
}

#[tokio::test(start_paused = true)]
async fn pods_killed_with_their_instance_are_lost_unless_it_was_interrupted() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    f.node("default", "b", "720h");
    f.pod("web-1", "web", "a", Some(("ReplicaSet", "rs-web")));
    f.pod("web-2", "web", "b", Some(("ReplicaSet", "rs-web")));
    f.pod("ds-a", "agent", "a", Some(("DaemonSet", "ds-uid")));
    f.pdb("web", json!(1));
    f.drain();
    f.referee.on_cloud(
        FakeEvent::Terminated {
            claim_name: "b".into(),
            provider_id: "fake:///z/b".into(),
            reason: TerminationReason::Interrupted,
        },
        f.now,
    );
    let t = f.referee.tally.clone();
    assert_eq!(
        (t.pods_interrupted, t.pods_disrupted, t.pdb_violations),
        (1, 0, 0)
    );
    f.referee.on_cloud(
        FakeEvent::Terminated {
            claim_name: "a".into(),
            provider_id: "fake:///z/a".into(),
            reason: TerminationReason::Deleted,
        },
        f.now,
    );
    let t = f.referee.tally.clone();
    assert_eq!((t.pods_killed, t.pods_lost), (1, 1), "{t:?}");
    assert_eq!(
        t.pdb_violations, 1,
        "the last healthy web pod killed under minAvailable 1"
    );
    // Pod garbage collection of the dead node counts nothing twice.
    f.api
        .store()
        .delete(f.k.node, "", "a-node", &DeleteOpts::default())
        .unwrap();
    f.delete_pod("web-1");
    let t = f.drain();
    assert_eq!((t.pods_killed, t.pods_disrupted), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn pods_deleted_at_their_interrupted_instances_end_are_cut_short_not_violations() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    for p in ["web-1", "web-2", "web-3"] {
        f.pod(p, "web", "a", Some(("ReplicaSet", "rs-web")));
    }
    // Every pod is needed: the budget allows nothing.
    f.pdb("web", json!(3));
    f.drain();
    f.referee.on_cloud(
        FakeEvent::InterruptionWarning {
            claim_name: "a".into(),
            provider_id: "fake:///z/a".into(),
            notice: std::time::Duration::from_secs(120),
        },
        f.now,
    );
    // Deleted at the warning: the PDB could still be honoured for 90 s. A violation.
    f.delete_pod("web-1");
    let t = f.drain();
    assert_eq!(
        (t.pdb_violations, t.pods_cut_short),
        (1, 0),
        "{:?}",
        t.details
    );
    // Deleted 90 s in, within its 30 s grace period of the instance's end: waiting for the PDB
    // would only have it killed with the instance.
    f.now += jiff::SignedDuration::from_secs(90);
    f.delete_pod("web-2");
    let t = f.drain();
    assert_eq!(
        (t.pdb_violations, t.pods_cut_short, t.pods_interrupted),
        (1, 1, 1),
        "{:?}",
        t.details
    );
    assert_eq!(t.pods_disrupted, 1, "web-1 only");
    // The last one killed with the instance: interrupted, as before.
    f.referee.on_cloud(
        FakeEvent::Terminated {
            claim_name: "a".into(),
            provider_id: "fake:///z/a".into(),
            reason: TerminationReason::Interrupted,
        },
        f.now,
    );
    let t = f.referee.tally.clone();
    assert_eq!((t.pdb_violations, t.pods_interrupted), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_bare_pod_disrupted_is_lost() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    f.pod("bare", "bare", "a", None);
    f.delete_pod("bare");
    let t = f.drain();
    assert_eq!((t.pods_disrupted, t.pods_lost), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn removed_and_replacement_prices_give_the_savings() {
    let mut f = Fixture::new();
    let cloud = f.referee.cloud.clone();
    f.pool("default", json!([{ "nodes": "100%" }]));
    // Two real fake instances: a candidate and its replacement.
    let types = cloud.catalog();
    let mut launched = Vec::new();
    for (name, ty) in [("old", &types[types.len() - 1]), ("new", &types[0])] {
        let claim: stowage_api::NodeClaim = serde_json::from_value(json!({
            "apiVersion": "stowage.dev/v1", "kind": "NodeClaim",
            "metadata": { "name": name, "labels": { labels::NODEPOOL: "default" } },
            "spec": { "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" },
                      "requirements": [{ "key": labels::INSTANCE_TYPE, "operator": "In", "values": [ty.name] },
                                       { "key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"] }] }
        }))
        .unwrap();
        let out = stowage_cloud::CloudProvider::create(&cloud, &claim)
            .await
            .unwrap();
        let pid = out.status.unwrap().provider_id.unwrap();
        launched.push((
            name,
            pid.clone(),
            cloud.instance(&pid).unwrap().price_per_hour,
        ));
        let mut obj = serde_json::to_value(&claim).unwrap();
        if name == "new" {
            obj["metadata"]["annotations"] = json!({ REPLACEMENT_ANNOTATION: "old" });
        }
        f.api.store().create(f.k.nodeclaim, "", obj).unwrap();
        let status = json!({ "status": { "providerID": pid, "nodeName": format!("{name}-node"),
            "conditions": [{ "type": "Initialized", "status": "True", "reason": "Initialized", "lastTransitionTime": "2026-01-01T00:00:00Z" }] } });
        f.api
            .store()
            .patch(
                f.k.nodeclaim,
                "",
                name,
                &PatchKind::Merge,
                status.to_string().as_bytes(),
                Sub::Status,
            )
            .unwrap();
    }
    f.api
        .store()
        .create(
            f.k.node,
            "",
            json!({ "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": "old-node", "labels": { labels::NODEPOOL: "default", labels::NODECLAIM: "old" } },
            "spec": { "providerID": launched[0].1 } }),
        )
        .unwrap();
    f.disrupt("old", Some("Underutilized"));
    f.drain();
    // The termination path: the claim's object goes, then the cloud reports the instance gone.
    f.api
        .store()
        .delete(f.k.nodeclaim, "", "old", &DeleteOpts::default())
        .unwrap();
    f.drain();
    f.referee.on_cloud(
        FakeEvent::Terminated {
            claim_name: "old".into(),
            provider_id: launched[0].1.clone(),
            reason: TerminationReason::Deleted,
        },
        f.now,
    );
    let t = &f.referee.tally;
    assert!(
        (t.removed_price_per_hour - launched[0].2).abs() < 1e-9,
        "{t:?}"
    );
    assert!((t.replacement_price_per_hour - launched[1].2).abs() < 1e-9);
    assert!(launched[0].2 > launched[1].2);
}

/// `maxUnavailable` is judged against the ReplicaSet's `replicas`, as the eviction subresource
/// judges it: a pod gone and not yet recreated still counts as expected.
#[tokio::test(start_paused = true)]
async fn max_unavailable_is_judged_against_the_controllers_replicas() {
    let mut f = Fixture::new();
    f.pool("default", json!([{ "nodes": "10%" }]));
    f.node("default", "a", "720h");
    let rs = f
        .api
        .store()
        .create(
            f.k.replicaset,
            "default",
            json!({ "metadata": { "name": "web" },
                "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } } } }),
        )
        .unwrap();
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    for p in ["web-1", "web-2", "web-3"] {
        f.pod(p, "web", "a", Some(("ReplicaSet", &uid)));
    }
    f.api
        .store()
        .create(
            f.k.pdb,
            "default",
            json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "web" },
                "spec": { "selector": { "matchLabels": { "app": "web" } }, "maxUnavailable": 1 } }),
        )
        .unwrap();
    let gone = DeleteOpts {
        grace_period_seconds: Some(0),
        ..DeleteOpts::default()
    };
    f.api
        .store()
        .delete(f.k.pod, "default", "web-1", &gone)
        .unwrap();
    assert_eq!(
        f.drain().pdb_violations,
        0,
        "3 expected, 3 healthy: one may go"
    );
    // web-1 is gone, not recreated yet: 3 expected, 2 desired, 2 healthy. Counting the two
    // pods present as expected would have allowed one more.
    f.delete_pod("web-2");
    let t = f.drain();
    assert_eq!(t.pdb_violations, 1, "{:?}", t.details);
}
