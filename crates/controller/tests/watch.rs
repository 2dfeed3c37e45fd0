//! The watchers against the simulated API server behind a transport that can fail: how often
//! they retry while the API server is unreachable, that only a sync resets their backoff, and that
//! an object that does not decode is skipped and counted without blocking readiness.
#![allow(clippy::unwrap_used)] // the transport and setup helpers outside #[test] functions unwrap too

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use stowage_api::NodePool;
use stowage_clock::{SharedClock, TokioClock};
use stowage_cloud::fake::FakeCloud;
use stowage_controller::state::Kind;
use stowage_controller::{Context, Settings};
use stowage_sim::apiserver::{ApiBody, kinds};
use stowage_sim::{ApiServer, ApiServerOptions, ApiService};
use tokio::time::Instant;

/// One request the watchers sent.
#[derive(Clone, Debug)]
struct Request {
    at: Instant,
    path: String,
    watch: bool,
    failed: bool,
}

/// The simulated API server's in-process transport, refusing every request while `down` (as an
/// unreachable API server does) and recording every request.
#[derive(Clone)]
struct Flaky {
    inner: ApiService,
    down: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Request>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<kube::client::Body>> for Flaky {
    type Response = http::Response<ApiBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let failed = self.down.load(Ordering::SeqCst);
        if req.method() == http::Method::GET {
            self.log.lock().unwrap().push(Request {
                at: Instant::now(),
                path: req.uri().path().to_string(),
                watch: req.uri().query().unwrap_or("").contains("watch=true"),
                failed,
            });
        }
        if failed {
            return Box::pin(async { Err::<_, BoxError>("connection refused".into()) });
        }
        let mut inner = self.inner.clone();
        Box::pin(async move {
            tower::Service::call(&mut inner, req)
                .await
                .map_err(|e| match e {})
        })
    }
}

/// A simulated API server (NodePools and NodeClaims not validated against their CRDs, as one serving a newer CRD
/// version would store fields this build reads differently), the failing transport in front of
/// it and a controller context on that transport.
struct Setup {
    api: ApiServer,
    ctx: Arc<Context>,
    cloud: FakeCloud,
    down: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Setup {
    fn new() -> Self {
        let clock: SharedClock = Arc::new(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let kinds = kinds::builtin()
            .into_iter()
            .map(|mut k| {
                if k.kind == "NodePool" || k.kind == "NodeClaim" {
                    k.custom = false;
                }
                k
            })
            .collect();
        let api = ApiServer::with_options(
            clock.clone(),
            ApiServerOptions {
                kinds,
                ..ApiServerOptions::default()
            },
        );
        let down = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let flaky = Flaky {
            inner: api.service(),
            down: down.clone(),
            log: log.clone(),
        };
        let client = kube::Client::new(flaky, "default");
        let cloud = FakeCloud::builder()
            .karpenter_catalog(4)
            .node_class_kind(stowage_sim::node_class_kind())
            .build();
        let ctx = Arc::new(Context::new(
            client,
            Arc::new(cloud.clone()),
            clock,
            Settings::default(),
        ));
        Self {
            api,
            ctx,
            cloud,
            down,
            log,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// List requests per path.
    fn lists(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| !r.watch && r.path == path)
            .count()
    }

    /// Waits (virtual time) until the state is synced; panics after `limit`.
    async fn synced_within(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        while !self.ctx.state().is_synced() {
            assert!(start.elapsed() < limit, "not synced after {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start.elapsed()
    }
}

const WATCHED: [&str; 7] = [
    "/api/v1/pods",
    "/api/v1/nodes",
    "/apis/stowage.dev/v1/nodeclaims",
    "/apis/stowage.dev/v1/nodepools",
    "/apis/aws.stowage.dev/v1/ec2nodeclasses",
    "/apis/apps/v1/daemonsets",
    "/apis/policy/v1/poddisruptionbudgets",
];

/// Ten minutes of an unreachable API server cost each watcher a few dozen list attempts (not one
/// a second); when it comes back every watcher syncs within the longest pause, and then lists no
/// more.
#[tokio::test(start_paused = true)]
async fn an_unreachable_api_server_is_retried_with_growing_pauses() {
    let s = Setup::new();
    s.down.store(true, Ordering::SeqCst);
    let _watchers = stowage_controller::watch::spawn_all(&s.ctx);
    tokio::time::sleep(Duration::from_secs(600)).await;
    for path in WATCHED {
        let n = s.lists(path);
        // 0.5 s doubling to 30 s, jittered to 50-100 %: about 30 attempts in 600 s, at most 46.
        assert!((10..=46).contains(&n), "{path}: {n} list attempts in 600 s");
    }
    assert!(!s.ctx.state().is_synced());

    s.down.store(false, Ordering::SeqCst);
    let took = s.synced_within(Duration::from_secs(31)).await;
    assert!(took <= Duration::from_secs(30), "synced after {took:?}");
    let before: Vec<usize> = WATCHED.iter().map(|p| s.lists(p)).collect();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let after: Vec<usize> = WATCHED.iter().map(|p| s.lists(p)).collect();
    assert_eq!(before, after, "a healthy watcher does not re-list");
}

/// After a sync the backoff starts over: a second outage (watches end, re-watching fails) is
/// retried after about half a second, then a second, and so on.
#[tokio::test(start_paused = true)]
async fn a_sync_resets_the_backoff() {
    let s = Setup::new();
    s.down.store(true, Ordering::SeqCst);
    let _watchers = stowage_controller::watch::spawn_all(&s.ctx);
    // A long first outage: every watcher's pause is at its 15-30 s cap.
    tokio::time::sleep(Duration::from_secs(300)).await;
    s.down.store(false, Ordering::SeqCst);
    s.synced_within(Duration::from_secs(31)).await;
    let up = Instant::now();
    s.down.store(true, Ordering::SeqCst);
    // Watches end after their 290 s timeout; re-watching then fails.
    tokio::time::sleep(Duration::from_secs(400)).await;
    let requests = s.requests();
    for path in WATCHED {
        let failed: Vec<Instant> = requests
            .iter()
            .filter(|r| r.path == path && r.failed && r.at > up)
            .map(|r| r.at)
            .collect();
        assert!(
            failed.len() >= 4,
            "{path}: {} failed attempts",
            failed.len()
        );
        let gaps: Vec<Duration> = failed.windows(2).map(|w| w[1] - w[0]).collect();
        // Pauses of 0.25-0.5 s, 0.5-1 s, 1-2 s: the failures of the first outage are forgotten.
        assert!(gaps[0] <= Duration::from_millis(500), "{path}: {gaps:?}");
        assert!(gaps[1] <= Duration::from_secs(1), "{path}: {gaps:?}");
        assert!(gaps[2] <= Duration::from_secs(2), "{path}: {gaps:?}");
    }
}

/// One NodePool that does not decode is skipped and counted; the others sync, the state becomes
/// ready, and the pool is picked up once it is fixed.
#[tokio::test(start_paused = true)]
async fn an_object_that_does_not_decode_is_skipped_and_counted() {
    let s = Setup::new();
    let client = s.ctx.client.clone();
    let pools: Api<NodePool> = Api::all(client.clone());
    for name in ["a", "c"] {
        let mut pool = NodePool::new(name, Default::default());
        pool.spec.weight = Some(10);
        pools.create(&PostParams::default(), &pool).await.unwrap();
    }
    let resource = kube::api::ApiResource::erase::<NodePool>(&());
    let raw: Api<DynamicObject> = Api::all_with(client, &resource);
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1",
        "kind": "NodePool",
        "metadata": {"name": "b"},
        "spec": {"weight": "heavy", "template": {"spec": {"nodeClassRef": {
            "group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default"}}}}
    }))
    .unwrap();
    raw.create(&PostParams::default(), &bad).await.unwrap();
    assert!(
        pools.list(&Default::default()).await.is_err(),
        "a typed list of the kind fails as a whole"
    );

    let lists_before = s.lists("/apis/stowage.dev/v1/nodepools");
    let _watchers = stowage_controller::watch::spawn_all(&s.ctx);
    s.synced_within(Duration::from_secs(5)).await;
    let names = |ctx: &Context| -> BTreeSet<String> {
        ctx.state()
            .nodepools()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(names(&s.ctx), BTreeSet::from(["a".into(), "c".into()]));
    let undecodable = |ctx: &Context| -> Vec<String> {
        ctx.state()
            .undecodable(Kind::NodePool)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(undecodable(&s.ctx), ["b"]);
    assert_eq!(s.ctx.metrics.watch_decode_errors_total("NodePool"), 1);
    assert!(
        s.ctx
            .render_metrics()
            .contains("stowage_watch_decode_errors_total{kind=\"NodePool\"} 1")
    );
    // Nothing re-lists it or counts it again while it stays as it is.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.ctx.metrics.watch_decode_errors_total("NodePool"), 1);
    assert_eq!(s.lists("/apis/stowage.dev/v1/nodepools"), lists_before + 1);

    // Fixed, it joins the state; broken by a later update, it leaves it and counts again.
    let merge = |weight: serde_json::Value| Patch::Merge(json!({"spec": {"weight": weight}}));
    raw.patch("b", &PatchParams::default(), &merge(json!(30)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        names(&s.ctx),
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
    assert!(undecodable(&s.ctx).is_empty());
    raw.patch("c", &PatchParams::default(), &merge(json!([1])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(names(&s.ctx), BTreeSet::from(["a".into(), "b".into()]));
    assert_eq!(undecodable(&s.ctx), ["c"]);
    assert_eq!(s.ctx.metrics.watch_decode_errors_total("NodePool"), 2);
    assert!(s.ctx.state().is_synced());
    drop(s.api);
}

/// A NodeClaim that does not decode is absent from the state, so its instance looks orphaned:
/// garbage collection waits instead of terminating it.
#[tokio::test(start_paused = true)]
async fn garbage_collection_spares_the_instance_of_a_nodeclaim_that_does_not_decode() {
    use stowage_cloud::CloudProvider;
    let s = Setup::new();
    let claim = stowage_api::NodeClaim::new("x", Default::default());
    s.cloud.create(&claim).await.unwrap();
    let resource = kube::api::ApiResource::erase::<stowage_api::NodeClaim>(&());
    let raw: Api<DynamicObject> = Api::all_with(s.ctx.client.clone(), &resource);
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "x"},
        "spec": {"requirements": "not a list"}
    }))
    .unwrap();
    raw.create(&PostParams::default(), &bad).await.unwrap();
    let _watchers = stowage_controller::watch::spawn_all(&s.ctx);
    s.synced_within(Duration::from_secs(5)).await;
    assert_eq!(
        s.ctx.metrics.watch_decode_errors_total("NodeClaim"),
        1,
        "the claim does not decode"
    );

    let mut gc = stowage_controller::housekeeping::Gc::new();
    for _ in 0..3 {
        let result = gc.collect(&s.ctx).await.unwrap();
        assert!(result.instances_terminated.is_empty(), "{result:?}");
        tokio::time::sleep(s.ctx.settings.gc_grace).await;
    }
    assert_eq!(s.cloud.instances().len(), 1, "the instance is still there");
}
