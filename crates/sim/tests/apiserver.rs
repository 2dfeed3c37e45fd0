//! Conformance of the simulated API server, driven through the real `kube::Client`.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use stowage_clock::{SharedClock, TokioClock};
use stowage_sim::{ApiServer, ApiServerOptions};

fn clock() -> SharedClock {
    Arc::new(TokioClock::starting_at(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ))
}

fn server() -> ApiServer {
    ApiServer::new(clock())
}

/// A pod builder: `pod("web").label("app", "web").node("n1")`.
struct PodB(serde_json::Value);
fn pod(name: &str) -> PodB {
    PodB(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": {} },
        "spec": { "containers": [{ "name": "c", "image": "busybox", "resources": { "requests": { "cpu": "100m" } } }] }
    }))
}
impl PodB {
    fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    fn node(mut self, n: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(n);
        self
    }
    fn owner(mut self, rs: &ReplicaSet) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name, "uid": rs.metadata.uid, "controller": true
        }]);
        self
    }
    fn build(self) -> Pod {
        serde_json::from_value(self.0).unwrap()
    }
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn run_pod(pods: &Api<Pod>, name: &str) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } })),
    )
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn crud_generate_name_and_errors() {
    let client = server().client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("web").build())
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created
            .metadata
            .creation_timestamp
            .as_ref()
            .unwrap()
            .0
            .to_string(),
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));

    let err = api_err(
        pods.create(&PostParams::default(), &pod("web").build())
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "pods \"web\" already exists");

    let mut generated = pod("").build();
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("worker-".into());
    let g = pods
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(
        gname.starts_with("worker-") && gname.len() == "worker-".len() + 5,
        "{gname}"
    );

    let err = api_err(pods.get("missing").await.unwrap_err());
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (404, "NotFound", "pods \"missing\" not found")
    );

    let other: Api<Pod> = Api::namespaced(client.clone(), "nope");
    let err = api_err(
        other
            .create(&PostParams::default(), &pod("x").build())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );

    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let gone = pods.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_left(), "an unbound pod is removed at once");
    assert!(pods.get_opt("web").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn stale_update_is_a_conflict() {
    let client = server().client();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let v1 = pods
        .create(&PostParams::default(), &pod("web").build())
        .await
        .unwrap();
    let mut a = v1.clone();
    a.metadata.labels = Some([("x".to_string(), "1".to_string())].into());
    let v2 = pods
        .replace("web", &PostParams::default(), &a)
        .await
        .unwrap();
    assert_ne!(v2.metadata.resource_version, v1.metadata.resource_version);
    let mut stale = v1.clone();
    stale.metadata.labels = Some([("x".to_string(), "2".to_string())].into());
    let err = api_err(
        pods.replace("web", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    // A merge patch carrying a stale resourceVersion is a conflict too.
    let p = json!({ "metadata": { "resourceVersion": v1.metadata.resource_version, "labels": { "y": "1" } } });
    let err = api_err(
        pods.patch("web", &PatchParams::default(), &Patch::Merge(p))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
}

/// A watch of `pods` from `rv` is refused as too old: `410 Expired`, as an error event or
/// an error response.
async fn assert_watch_expired(pods: &Api<Pod>, rv: &str) {
    let mut old = pods
        .watch(&WatchParams::default(), rv)
        .await
        .unwrap()
        .boxed();
    match old.next().await.unwrap() {
        Ok(WatchEvent::Error(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn watch_resumes_from_a_version_and_expires_old_ones() {
    let srv = ApiServer::with_options(
        clock(),
        ApiServerOptions {
            history_per_kind: 4,
            ..Default::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(srv.client(), "default");
    let first = pods
        .create(&PostParams::default(), &pod("a").build())
        .await
        .unwrap();
    let rv0 = first.metadata.resource_version.unwrap();
    pods.create(&PostParams::default(), &pod("b").build())
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("c").label("app", "x").build())
        .await
        .unwrap();

    // Resume right after `a`: we see b and c, then live events.
    let mut stream = pods
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    let names: Vec<String> = (&mut stream)
        .take(2)
        .map(|e| match e.unwrap() {
            WatchEvent::Added(p) => p.metadata.name.unwrap(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
        .await;
    assert_eq!(names, ["b", "c"]);
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Deleted(p) => assert_eq!(p.metadata.name.as_deref(), Some("a")),
        other => panic!("unexpected {other:?}"),
    }

    // A filtered watch sees an object leave its selector as DELETED.
    let latest = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut sel = pods
        .watch(&WatchParams::default().labels("app=x"), &latest)
        .await
        .unwrap()
        .boxed();
    pods.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "app": "y" } } })),
    )
    .await
    .unwrap();
    assert!(matches!(
        sel.next().await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));

    // Push the history past rv0: watching from it is now 410 Gone.
    for i in 0..6 {
        pods.create(&PostParams::default(), &pod(&format!("n{i}")).build())
            .await
            .unwrap();
    }
    assert_watch_expired(&pods, &rv0).await;
}

#[tokio::test(start_paused = true)]
async fn watch_history_keeps_75_seconds_like_the_watch_cache() {
    let pods: Api<Pod> = Api::namespaced(server().client(), "default");
    let first = pods
        .create(&PostParams::default(), &pod("a").build())
        .await
        .unwrap();
    let rv0 = first.metadata.resource_version.unwrap();
    // 150 more events within a minute: more than the 100 always kept, all fresh.
    for i in 0..150 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}")).build())
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    let mut fresh = pods
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    match fresh.next().await.unwrap().unwrap() {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("p0")),
        other => panic!("unexpected {other:?}"),
    }
    drop(fresh);
    // Past 75 s, the next write drops what is older and beyond the last 100: rv0 is too old.
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    pods.create(&PostParams::default(), &pod("late").build())
        .await
        .unwrap();
    assert_watch_expired(&pods, &rv0).await;
    // The last 100 events stay however old: a watch from the 50th newest sees 50 events.
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    let list = pods.list(&ListParams::default()).await.unwrap();
    let mut rvs: Vec<u64> = list
        .items
        .iter()
        .map(|p| {
            p.metadata
                .resource_version
                .as_deref()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    rvs.sort_unstable();
    let from = rvs[rvs.len() - 51].to_string();
    let seen: Vec<_> = pods
        .watch(&WatchParams::default().timeout(1), &from)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(seen.len(), 50, "{seen:?}");
    assert!(seen.iter().all(|e| matches!(e, WatchEvent::Added(_))));
}

#[tokio::test(start_paused = true)]
async fn events_expire_an_hour_after_their_last_write() {
    use k8s_openapi::api::core::v1::Event;
    let client = server().client();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let event = |name: &str| -> Event {
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "involvedObject": { "kind": "Pod", "namespace": "default", "name": "web" },
            "reason": "Nominated", "message": "m", "type": "Normal", "count": 1
        }))
        .unwrap()
    };
    events
        .create(&PostParams::default(), &event("once"))
        .await
        .unwrap();
    events
        .create(&PostParams::default(), &event("again"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("web").build())
        .await
        .unwrap();
    let rv = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut wp = WatchParams::default().timeout(7200);
    wp.bookmarks = false;
    let mut watch = events.watch(&wp, &rv).await.unwrap().boxed();
    // Half an hour later "again" is written again (count 2): its hour starts over.
    tokio::time::sleep(std::time::Duration::from_secs(1800)).await;
    events
        .patch(
            "again",
            &PatchParams::default(),
            &Patch::Merge(json!({ "count": 2 })),
        )
        .await
        .unwrap();
    match watch.next().await.unwrap().unwrap() {
        WatchEvent::Modified(e) => assert_eq!(e.metadata.name.as_deref(), Some("again")),
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::sleep(std::time::Duration::from_secs(1801)).await;
    let names = |l: kube::core::ObjectList<Event>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|e| e.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(events.list(&ListParams::default()).await.unwrap()),
        ["again"]
    );
    match watch.next().await.unwrap().unwrap() {
        WatchEvent::Deleted(e) => assert_eq!(e.metadata.name.as_deref(), Some("once")),
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::sleep(std::time::Duration::from_secs(1800)).await;
    assert!(
        names(events.list(&ListParams::default()).await.unwrap()).is_empty(),
        "an hour after its last write"
    );
    match watch.next().await.unwrap().unwrap() {
        WatchEvent::Deleted(e) => assert_eq!(e.metadata.name.as_deref(), Some("again")),
        other => panic!("unexpected {other:?}"),
    }
    // Other kinds do not expire.
    assert!(pods.get_opt("web").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn bookmarks_and_timeouts_in_virtual_time() {
    let pods: Api<Pod> = Api::namespaced(server().client(), "default");
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut wp = WatchParams::default().timeout(150);
    wp.bookmarks = true;
    let events: Vec<_> = pods
        .watch(&wp, &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    // 150 s of silence: two bookmarks (60 s, 120 s), then the server ends the watch.
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))));
}

#[tokio::test(start_paused = true)]
async fn kube_runtime_watcher_syncs() {
    let client = server().client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a").build())
        .await
        .unwrap();
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    let rf = kube::runtime::reflector(
        writer,
        kube::runtime::watcher(pods.clone(), Default::default()),
    );
    let handle = tokio::spawn(rf.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.len(), 1);
    pods.create(&PostParams::default(), &pod("b").build())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    assert_eq!(reader.len(), 2);
    handle.abort();
}

#[tokio::test(start_paused = true)]
async fn finalizers_hold_deletion_until_removed() {
    let nodes: Api<Node> = Api::all(server().client());
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": "n1", "finalizers": ["stowage.dev/termination"] }
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    let n = nodes.get("n1").await.unwrap();
    assert!(n.metadata.deletion_timestamp.is_some());
    // No new finalizers on a terminating object.
    let err = api_err(
        nodes
            .patch(
                "n1",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({ "metadata": { "finalizers": ["stowage.dev/termination", "x"] } }),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    assert!(nodes.get_opt("n1").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn bound_pods_terminate_gracefully() {
    let pods: Api<Pod> = Api::namespaced(server().client(), "default");
    pods.create(&PostParams::default(), &pod("a").node("n1").build())
        .await
        .unwrap();
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    let p = pods.get("a").await.unwrap();
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(
        p.metadata.deletion_timestamp.unwrap().0.to_string(),
        "2026-01-01T00:00:30Z"
    );
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("a").await.unwrap().is_none());
}

/// Pods `a` and `b` labelled `app: web` on `n1`, Running and Ready (owned by `rs` if given).
async fn running_web_pods(pods: &Api<Pod>, rs: Option<&ReplicaSet>) {
    for n in ["a", "b"] {
        let mut p = pod(n).label("app", "web").node("n1");
        if let Some(rs) = rs {
            p = p.owner(rs);
        }
        pods.create(&PostParams::default(), &p.build())
            .await
            .unwrap();
        run_pod(pods, n).await;
    }
}

/// A PDB `name` in `default` selecting `app: <name>`, with `budget` (`minAvailable` or
/// `maxUnavailable`) in its spec.
async fn create_pdb(client: &kube::Client, name: &str, budget: serde_json::Value) {
    let mut spec = json!({ "selector": { "matchLabels": { "app": name } } });
    spec.as_object_mut()
        .unwrap()
        .extend(budget.as_object().unwrap().clone());
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
    Api::<PodDisruptionBudget>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn eviction_is_blocked_by_a_pdb() {
    let client = server().client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    running_web_pods(&pods, None).await;
    create_pdb(&client, "web", json!({ "minAvailable": 2 })).await;
    let err = api_err(pods.evict("a", &EvictParams::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(
        err.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &err.details.as_ref().unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );

    pods.create(
        &PostParams::default(),
        &pod("c").label("app", "web").node("n1").build(),
    )
    .await
    .unwrap();
    run_pod(&pods, "c").await;
    pods.evict("a", &EvictParams::default()).await.unwrap();
    assert!(
        pods.get("a")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // a is terminating, so b cannot go either.
    assert_eq!(
        api_err(pods.evict("b", &EvictParams::default()).await.unwrap_err()).code,
        429
    );
}

/// `maxUnavailable` is counted against the controllers' `replicas`, as the disruption controller
/// counts it, not against the pods present: a pod deleted and not yet recreated still counts.
#[tokio::test(start_paused = true)]
async fn eviction_expects_the_controllers_replicas() {
    let client = server().client();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } } }
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    running_web_pods(&pods, Some(&rs)).await;
    create_pdb(&client, "web", json!({ "maxUnavailable": 1 })).await;
    // 3 expected, 1 may be unavailable: 2 desired, 2 healthy, none allowed (counting the 2
    // pods present would have allowed one).
    let err = api_err(pods.evict("a", &EvictParams::default()).await.unwrap_err());
    assert_eq!(err.code, 429);
    assert_eq!(
        err.details.as_ref().unwrap().causes[0].message,
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    // Scaled down to the 2 present: 1 desired, 1 allowed.
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 2 } })),
    )
    .await
    .unwrap();
    pods.evict("a", &EvictParams::default()).await.unwrap();

    // A Job's pods have no scale to count: a maxUnavailable budget over them allows nothing.
    let jobs = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("batch", "v1", "Job"), "jobs"),
    );
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "etl" },
        "spec": { "template": { "spec": { "containers": [] } } }
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.unwrap();
    let mut p = pod("etl-1").label("app", "etl").node("n1").build();
    p.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "etl".into(),
            uid: job.metadata.uid.clone().unwrap(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    run_pod(&pods, "etl-1").await;
    create_pdb(&client, "etl", json!({ "maxUnavailable": "50%" })).await;
    let err = api_err(
        pods.evict("etl-1", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 429);
    assert_eq!(
        err.details.as_ref().unwrap().causes[0].message,
        "The disruption budget etl allows no disruption: the pods' controller Job/etl is gone or has no scale"
    );
}

fn nodeclaims(client: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("stowage.dev", "v1", "NodeClaim"),
        "nodeclaims",
    );
    Api::all_with(client, &ar)
}

#[tokio::test(start_paused = true)]
async fn status_subresource_and_custom_resources() {
    let claims = nodeclaims(server().client());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1", "kind": "NodeClaim",
        "metadata": { "name": "c1" },
        "spec": { "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" } },
        "status": { "providerID": "ignored" }
    }))
    .unwrap();
    let created = claims.create(&PostParams::default(), &obj).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );
    let patched = claims
        .patch_status(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "providerID": "fake://i-1" }, "spec": { "expireAfter": "1h" } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["providerID"], "fake://i-1");
    assert_eq!(
        patched.data["spec"]["expireAfter"], "720h",
        "the status subresource changes only status (the schema default stays)"
    );
    let main = claims
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "providerID": "nope" }, "spec": { "expireAfter": "2h", "y": 2 } })),
        )
        .await
        .unwrap();
    assert_eq!(
        main.data["status"]["providerID"], "fake://i-1",
        "the main resource ignores status"
    );
    assert_eq!(main.data["spec"]["expireAfter"], "2h");
    assert!(
        main.data["spec"].get("y").is_none(),
        "fields the schema does not declare are pruned"
    );
    assert_eq!(main.metadata.generation, Some(2));
    let err = api_err(
        claims
            .patch(
                "c1",
                &PatchParams::default(),
                &Patch::Strategic(json!({ "spec": { "z": 1 } })),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 415,
        "strategic merge is refused for custom resources"
    );
    let applied = claims
        .patch(
            "c2",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({ "apiVersion": "stowage.dev/v1", "kind": "NodeClaim", "metadata": { "name": "c2" },
                "spec": { "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" } } })),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("c2"));
}

/// Custom resources are defaulted and validated against their CRD's schema on create, update
/// and patch, with the real API server's wording, so a test sees what a real cluster rejects.
#[tokio::test(start_paused = true)]
async fn custom_resources_are_checked_against_their_crd_schema() {
    let client = server().client();
    let claims = nodeclaims(client.clone());
    let types: Vec<String> = (0..600).map(|i| format!("m{i}.large")).collect();
    let claim = |name: &str, types: &[String]| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "stowage.dev/v1", "kind": "NodeClaim", "metadata": { "name": name },
            "spec": {
                "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" },
                "requirements": [{ "key": "node.kubernetes.io/instance-type", "operator": "In", "values": types }],
            }
        }))
        .unwrap()
    };
    let err = api_err(
        claims
            .create(&PostParams::default(), &claim("broad", &types))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "NodeClaim.stowage.dev \"broad\" is invalid: spec.requirements[0].values: Too many: 600: must have at most 500 items"
    );
    let ok = claims
        .create(&PostParams::default(), &claim("narrow", &types[..60]))
        .await
        .unwrap();
    assert_eq!(
        ok.data["spec"]["expireAfter"], "720h",
        "defaulted on create"
    );
    let err = api_err(
        claims
            .patch(
                "narrow",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "requirements": [{ "key": "k", "operator": "Sometimes" }] } })),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    assert!(
        err.message
            .contains("spec.requirements[0].operator: unsupported value"),
        "{}",
        err.message
    );

    let pools = Api::<DynamicObject>::all_with(
        client,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("stowage.dev", "v1", "NodePool"),
            "nodepools",
        ),
    );
    let pool = |weight: i64| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "stowage.dev/v1", "kind": "NodePool", "metadata": { "name": "p" },
            "spec": { "weight": weight, "template": { "spec": {
                "nodeClassRef": { "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default" } } } }
        }))
        .unwrap()
    };
    let err = api_err(
        pools
            .create(&PostParams::default(), &pool(500))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "NodePool.stowage.dev \"p\" is invalid: spec.weight: should be less than or equal to 100"
    );
    let created = pools
        .create(&PostParams::default(), &pool(10))
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["disruption"]["budgets"],
        json!([{ "nodes": "10%" }]),
        "schema defaults are applied"
    );
}

#[tokio::test(start_paused = true)]
async fn selectors_and_pagination() {
    let pods: Api<Pod> = Api::namespaced(server().client(), "default");
    for (n, app, node) in [
        ("a", "web", "n1"),
        ("b", "web", ""),
        ("c", "db", "n2"),
        ("d", "cache", ""),
        ("e", "web", "n1"),
    ] {
        let mut p = pod(n).label("app", app);
        if !node.is_empty() {
            p = p.node(node);
        }
        pods.create(&PostParams::default(), &p.build())
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app in (web,db)"))
                .await
                .unwrap()
        ),
        ["a", "b", "c", "e"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app!=web"))
                .await
                .unwrap()
        ),
        ["c", "d"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName="))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName=n1,status.phase=Pending"))
                .await
                .unwrap()
        ),
        ["a", "e"]
    );
    let err = api_err(
        pods.list(&ListParams::default().labels("app in (web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = pods.list(&lp).await.unwrap();
        let token = page.metadata.continue_.clone();
        seen.extend(names(page));
        match token {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

#[tokio::test(start_paused = true)]
async fn binding_and_strategic_merge_of_conditions() {
    let client = server().client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a").build())
        .await
        .unwrap();
    pods.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Strategic(json!({ "status": { "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable" }] } })),
    )
    .await
    .unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/pods/a/binding")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "a" }, "target": { "kind": "Node", "name": "n1" } })).unwrap())
        .unwrap();
    client.request_text(req).await.unwrap();
    let p = pods.get("a").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    let conds = p.status.unwrap().conditions.unwrap();
    assert_eq!(conds.len(), 1);
    assert_eq!(
        (conds[0].type_.as_str(), conds[0].status.as_str()),
        ("PodScheduled", "True")
    );
}

#[tokio::test(start_paused = true)]
async fn owner_references_drive_garbage_collection() {
    let client = server().client();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs_spec = |n: &str| -> ReplicaSet {
        serde_json::from_value(json!({ "metadata": { "name": n }, "spec": { "selector": { "matchLabels": { "a": "b" } } } })).unwrap()
    };
    let rs1 = rss
        .create(&PostParams::default(), &rs_spec("one"))
        .await
        .unwrap();
    let rs2 = rss
        .create(&PostParams::default(), &rs_spec("two"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("p1").owner(&rs1).build())
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("p2").owner(&rs2).build())
        .await
        .unwrap();
    rss.delete("one", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        pods.get_opt("p1").await.unwrap().is_none(),
        "background deletion removes dependents"
    );
    rss.delete("two", &DeleteParams::orphan()).await.unwrap();
    let p2 = pods.get("p2").await.unwrap();
    assert!(
        p2.metadata.owner_references.unwrap_or_default().is_empty(),
        "orphaned dependents lose the reference"
    );
}

#[tokio::test(start_paused = true)]
async fn discovery_finds_every_kind() {
    let client = server().client();
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let mut kinds: Vec<String> = discovery
        .groups()
        .flat_map(|g| {
            g.recommended_resources()
                .into_iter()
                .map(|(ar, _)| format!("{}/{}", ar.group, ar.kind))
        })
        .collect();
    kinds.sort();
    for want in [
        "/Pod",
        "/Node",
        "stowage.dev/NodeClaim",
        "stowage.dev/NodePool",
        "aws.stowage.dev/EC2NodeClass",
        "policy/PodDisruptionBudget",
        "coordination.k8s.io/Lease",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing from {kinds:?}"
        );
    }
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "33");
    let nss: Api<Namespace> = Api::all(client);
    assert_eq!(
        nss.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
}

#[tokio::test]
async fn http_transport_serves_kube_clients() {
    let srv = ApiServer::new(Arc::new(stowage_clock::SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = srv.clone();
    let task = tokio::spawn(async move { serving.serve(listener).await });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    ApiServer::write_kubeconfig(&url, &path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "n1" } })).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let rv = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = nodes
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    assert!(matches!(
        w.next().await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn kubectl_tables_and_protobuf_refusal() {
    let client = server().client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web").node("n1").build())
        .await
        .unwrap();
    let req = http::Request::get("/api/v1/pods")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value =
        serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["web", "Pending", "n1", "0s"])
    );
    assert_eq!(
        table["rows"][0]["object"]["metadata"]["namespace"],
        "default"
    );
    let req = http::Request::post("/api/v1/namespaces")
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .body(vec![0x6b, 0x38, 0x73, 0x00])
        .unwrap();
    let err = api_err(client.request_text(req).await.unwrap_err());
    assert_eq!(
        (err.code, err.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
}

/// Requests the real API server refuses are refused here too, with its status codes.
#[tokio::test(start_paused = true)]
async fn hostile_requests_are_refused_like_the_real_server() {
    let srv = server();
    let client = srv.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for bad in ["Bad_Name!!", "a/b", "UPPER", "-lead", "x..y"] {
        let err = api_err(
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({ "metadata": { "name": bad } })).unwrap(),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(err.code, 422, "{bad}: {}", err.message);
        assert!(
            err.message.contains("metadata.name: Invalid value")
                && err.message.contains("RFC 1123 subdomain"),
            "{bad}: {}",
            err.message
        );
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let err = api_err(
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": "a.b" } })).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert!(err.message.contains("RFC 1123 label"), "{}", err.message);
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "ip-10-0-0-1.ec2.internal" } }))
                .unwrap(),
        )
        .await
        .unwrap();

    // Merge patches that are not objects: 422, and the object is unchanged.
    for body in [json!(null), json!([1]), json!("x")] {
        let err = api_err(
            nodes
                .patch(
                    "ip-10-0-0-1.ec2.internal",
                    &PatchParams::default(),
                    &Patch::Merge(body.clone()),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(err.code, 422, "{body}: {}", err.message);
    }
    // `$patch` directives: unknown ones refused under strategic merge, never stored literally.
    let err = api_err(
        nodes
            .patch(
                "ip-10-0-0-1.ec2.internal",
                &PatchParams::default(),
                &Patch::Strategic(json!({ "$patch": "explode" })),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    let merged = nodes
        .patch(
            "ip-10-0-0-1.ec2.internal",
            &PatchParams::default(),
            &Patch::Merge(json!({ "$patch": "explode", "metadata": { "labels": { "a": "b" } } })),
        )
        .await
        .unwrap();
    let stored = serde_json::to_value(&merged).unwrap();
    assert!(stored.get("$patch").is_none(), "{stored}");
    assert_eq!(stored["metadata"]["labels"]["a"], "b");

    // Bodies: text/plain is 415, more than 3 MiB is 413.
    let plain = http::Request::post("/api/v1/nodes")
        .header("content-type", "text/plain")
        .body(bytes::Bytes::from_static(br#"{"metadata":{"name":"n2"}}"#))
        .unwrap();
    assert_eq!(srv.handle(plain).status(), 415);
    let huge = "x".repeat(stowage_sim::apiserver::MAX_REQUEST_BODY_BYTES);
    let err = api_err(
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({ "metadata": { "name": "n3", "annotations": { "big": huge } } }),
                )
                .unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 413, "{}", err.message);
    assert!(nodes.get_opt("n3").await.unwrap().is_none());
}

/// The HTTP listener closes connections that send nothing and keeps serving past its
/// connection cap (the next client waits for a slot instead of failing the server).
#[tokio::test]
async fn http_listener_closes_idle_connections_and_caps_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = ApiServer::new(Arc::new(stowage_clock::SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = srv.clone();
    let limits = stowage_sim::ServeLimits {
        max_connections: 2,
        idle_timeout: std::time::Duration::from_millis(300),
    };
    let task = tokio::spawn(async move { serving.serve_with(listener, limits).await });
    // Two idle connections take both slots; the server closes them after the idle timeout.
    let mut idle1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), idle1.read(&mut buf))
        .await
        .expect("the idle connection is closed by the server");
    assert_eq!(closed.unwrap_or(0), 0, "closed without a response");
    let _ = idle2.read(&mut buf).await;
    // A third client is served once the slots are free.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.read_to_string(&mut response),
    )
    .await
    .expect("served after the idle connections went")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!task.is_finished(), "the server keeps serving");
    task.abort();
}

/// A large list is sent in chunks as it is serialized, and still parses as one List.
#[tokio::test(start_paused = true)]
async fn large_lists_stream_in_chunks() {
    use http_body_util::BodyExt;
    let srv = server();
    let nodes: Api<Node> = Api::all(srv.client());
    for i in 0..2_000 {
        let node = json!({ "metadata": { "name": format!("node-{i:04}"), "labels": { "pool": "a", "zone": "z1" } } });
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(node).unwrap(),
            )
            .await
            .unwrap();
    }
    let req = http::Request::get("/api/v1/nodes")
        .body(bytes::Bytes::new())
        .unwrap();
    let mut body = srv.handle(req).into_body();
    let mut frames = 0;
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        frames += 1;
        all.extend_from_slice(&data);
    }
    assert!(frames > 2, "{frames} frame(s) for {} bytes", all.len());
    let list: serde_json::Value = serde_json::from_slice(&all).unwrap();
    assert_eq!(list["kind"], "NodeList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2_000);
    assert_eq!(list["items"][1999]["metadata"]["name"], "node-1999");
}

#[tokio::test(start_paused = true)]
async fn audit_mode_records_each_request_of_its_client_in_rbac_terms() {
    use stowage_sim::apiserver::{AuditRecord, ResourceRequest};
    let s = server();
    let (audited, log) = s.audited_client();
    let plain = s.client();
    let pods: Api<Pod> = Api::namespaced(audited.clone(), "default");
    pods.create(&PostParams::default(), &pod("web").build())
        .await
        .unwrap();
    // A request the server refuses is recorded too: RBAC comes first.
    assert!(pods.get("missing").await.is_err());
    pods.evict("web", &EvictParams::default()).await.unwrap();
    Api::<Node>::all(audited.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    // The other client is not audited.
    Api::<Pod>::all(plain)
        .list(&ListParams::default())
        .await
        .unwrap();
    let got: Vec<String> = log.records().iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "create core/pods in default",
            "get core/pods in default named missing",
            "create core/pods/eviction in default named web",
            "list core/nodes",
        ]
    );
    assert_eq!(
        log.records()[2],
        AuditRecord::Resource(ResourceRequest {
            verb: "create".into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: "eviction".into(),
            namespace: "default".into(),
            name: "web".into(),
        })
    );
}
