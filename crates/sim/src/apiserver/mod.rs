//! An in-memory Kubernetes API server, generic over kinds, with two transports over one store:
//! an in-process `tower::Service` (`ApiServer::client()` hands out a `kube::Client` on it) and an
//! HTTP/1 listener (`ApiServer::serve`) that kubectl and the real binary can use.
//!
//! Faithful where controllers depend on it: resourceVersions, watch resume and `410 Gone`,
//! bookmarks, optimistic concurrency, finalizers, graceful pod deletion, owner-reference garbage
//! collection, bindings, PDB-aware evictions and `Status` error bodies. Simplifications are listed
//! in docs/simulator.md.

pub mod audit;
pub mod budget;
pub mod discovery;
pub mod handler;
pub mod kinds;
pub mod patch;
pub mod selector;
pub mod status;
pub mod store;

use crate::json::JsonPointer as _;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use serde_json::{Value, json};
use stowage_clock::SharedClock;

pub use audit::{AuditLog, AuditRecord, ResourceRequest};
pub use handler::ApiBody;
pub use kinds::KindInfo;
pub use status::ApiError;
pub use store::{
    DEFAULT_EVENT_TTL, DeleteOpts, EventType, Filter, HistoryLimits, KindId, Store, Sub, WatchMsg,
};

/// Tuning of the API server.
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    /// Watch events retained per kind at most; watching from an older resourceVersion is
    /// `410 Gone`. kube-apiserver's watch cache grows to 102,400 when 75 s hold that many; the
    /// simulator stops at 20,000 (by default) to bound its own memory (a pod's every version
    /// held as JSON). See [`HistoryLimits`] for the rest.
    pub history_per_kind: usize,
    /// Events younger than this are kept (beyond the last 100 per kind, and within
    /// `history_per_kind`); kube-apiserver's watch cache keeps 75 s.
    pub history_fresh: Duration,
    /// Events (core and `events.k8s.io`) are deleted this long after their last write, as
    /// kube-apiserver's `--event-ttl` (default 1 h) has etcd do; `None`: kept for good.
    pub event_ttl: Option<Duration>,
    /// Kinds served (default: [`kinds::builtin`]).
    pub kinds: Vec<KindInfo>,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            history_per_kind: 20_000,
            history_fresh: HistoryLimits::default().fresh,
            event_ttl: Some(DEFAULT_EVENT_TTL),
            kinds: kinds::builtin(),
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Limits of the HTTP listener ([`ApiServer::serve_with`]).
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that sends no request headers for this long is closed (watch streams, which
    /// are responses in progress, are not affected).
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The largest request body accepted, as the real API server's 3 MiB limit.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) pdb_kind: Option<KindId>,
    /// Wall time spent handling requests and writing watch streams, in nanoseconds.
    pub(crate) busy_nanos: std::sync::atomic::AtomicU64,
    pub(crate) requests: std::sync::atomic::AtomicU64,
    /// The simulated cloud served under [`crate::cloudbridge::PREFIX`], once attached.
    pub(crate) cloud: std::sync::OnceLock<crate::cloudbridge::Bridge>,
    /// Its interruption queue, served beside it once attached.
    pub(crate) interruptions: std::sync::OnceLock<crate::cloudbridge::BridgeQueue>,
}

/// Ids of the kinds the simulated cluster's own components use.
#[derive(Clone, Copy, Debug)]
pub struct CoreKinds {
    pub pod: KindId,
    pub node: KindId,
    pub namespace: KindId,
    pub event: KindId,
    pub daemonset: KindId,
    pub replicaset: KindId,
    pub job: KindId,
    pub pdb: KindId,
    pub nodepool: KindId,
    pub nodeclaim: KindId,
    pub nodeclass: KindId,
}

/// Failure to start the HTTP transport or write its kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to accept a connection")]
    Accept(#[source] std::io::Error),
    #[error("failed to write kubeconfig {path}")]
    WriteKubeconfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kind {0} is not registered with the API server")]
    MissingKind(&'static str),
}

/// The API server. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

impl ApiServer {
    /// A server with every built-in kind and the usual namespaces.
    pub fn new(clock: SharedClock) -> Self {
        Self::with_options(clock, ApiServerOptions::default())
    }

    pub fn with_options(clock: SharedClock, options: ApiServerOptions) -> Self {
        let history = HistoryLimits {
            max: options.history_per_kind,
            fresh: options.history_fresh,
            ..HistoryLimits::default()
        };
        let store = Store::new(options.kinds, clock, history, options.event_ttl);
        if let Some(ns_kind) = store.kind_id("", "Namespace") {
            for ns in &options.namespaces {
                let _ = store.create(ns_kind, "", json!({ "metadata": { "name": ns } }));
            }
        }
        let pdb_kind = store.kind_id("policy", "PodDisruptionBudget");
        Self {
            shared: Arc::new(Shared {
                store,
                pdb_kind,
                busy_nanos: Default::default(),
                requests: Default::default(),
                cloud: std::sync::OnceLock::new(),
                interruptions: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The store, for in-process components (the simulated kubelet and scheduler).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Ids of the built-in kinds (errors if a custom kind table left one out).
    pub fn core_kinds(&self) -> Result<CoreKinds, Error> {
        let s = &self.shared.store;
        let id = |g: &str, k: &'static str| s.kind_id(g, k).ok_or(Error::MissingKind(k));
        Ok(CoreKinds {
            pod: id("", "Pod")?,
            node: id("", "Node")?,
            namespace: id("", "Namespace")?,
            event: id("", "Event")?,
            daemonset: id("apps", "DaemonSet")?,
            replicaset: id("apps", "ReplicaSet")?,
            job: id("batch", "Job")?,
            pdb: id("policy", "PodDisruptionBudget")?,
            nodepool: id(stowage_api::labels::GROUP, "NodePool")?,
            nodeclaim: id(stowage_api::labels::GROUP, "NodeClaim")?,
            nodeclass: id(stowage_api::labels::AWS_GROUP, "EC2NodeClass")?,
        })
    }

    /// Requests served and wall time spent serving them (watch streams included).
    pub fn load(&self) -> (u64, std::time::Duration) {
        use std::sync::atomic::Ordering;
        (
            self.shared.requests.load(Ordering::Relaxed),
            std::time::Duration::from_nanos(self.shared.busy_nanos.load(Ordering::Relaxed)),
        )
    }

    /// Serves `cloud` under [`crate::cloudbridge::PREFIX`] on both transports (for a controller
    /// process of its own; see [`crate::cloudbridge`]). The first attached cloud stays.
    pub fn attach_cloud(&self, cloud: Arc<dyn stowage_cloud::CloudProvider>) {
        let _ = self.shared.cloud.set(cloud);
    }

    /// Serves `queue` (the attached cloud's interruption warnings) under
    /// [`crate::cloudbridge::PREFIX`]`interruptions/`. The first attached queue stays.
    pub fn attach_interruptions(
        &self,
        queue: Arc<dyn stowage_cloud::interruption::InterruptionSource>,
    ) {
        let _ = self.shared.interruptions.set(queue);
    }

    /// The in-process transport.
    pub fn service(&self) -> ApiService {
        ApiService {
            shared: self.shared.clone(),
            audit: None,
        }
    }

    /// The in-process transport, recording every request made through it into `audit`.
    pub fn audited_service(&self, audit: AuditLog) -> ApiService {
        ApiService {
            shared: self.shared.clone(),
            audit: Some(audit),
        }
    }

    /// A `kube::Client` talking to this server in-process (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.service(), "default")
    }

    /// A `kube::Client` like [`Self::client`] whose every request is recorded, in RBAC's terms,
    /// into the returned log (audit mode; what a least-privilege check compares with a Role).
    pub fn audited_client(&self) -> (kube::Client, AuditLog) {
        let audit = AuditLog::new();
        let client = kube::Client::new(self.audited_service(audit.clone()), "default");
        (client, audit)
    }

    /// Handles one request with a complete body (both transports end here).
    pub fn handle(&self, req: http::Request<Bytes>) -> http::Response<ApiBody> {
        self.shared.handle(req)
    }

    /// Serves HTTP/1 on `listener` until the task is dropped, with the default [`ServeLimits`].
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> Result<(), Error> {
        self.serve_with(listener, ServeLimits::default()).await
    }

    /// Serves HTTP/1 on `listener` until the task is dropped. A failed `accept()` (for example
    /// "too many open files") is logged once per streak and retried with a growing pause, never
    /// fatal; at most `limits.max_connections` connections are open at once (the next waits for
    /// a free slot); a connection that sends no request headers for `limits.idle_timeout` is
    /// closed.
    pub async fn serve_with(
        &self,
        listener: tokio::net::TcpListener,
        limits: ServeLimits,
    ) -> Result<(), Error> {
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        let mut failures = 0u32;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return Ok(());
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    if failures > 0 {
                        tracing::info!(failures, "accepting connections again");
                    }
                    failures = 0;
                    stream
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, "failed to accept a connection; retrying with backoff");
                    }
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(10u64 << failures.min(7));
                    tokio::time::sleep(pause.min(Duration::from_secs(1))).await;
                    continue;
                }
            };
            let svc = hyper_util::service::TowerToHyperService::new(self.service());
            let idle = limits.idle_timeout;
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(idle)
                    .serve_connection(io, svc)
                    .await
                {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            });
        }
    }

    /// A kubeconfig pointing at `url` (no credentials; the simulated server checks none).
    pub fn kubeconfig(url: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stowage-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: stowage-sim\n  context:\n    cluster: stowage-sim\n    user: stowage-sim\n    namespace: default\ncurrent-context: stowage-sim\nusers:\n- name: stowage-sim\n  user: {{}}\n"
        )
    }

    /// Writes [`Self::kubeconfig`] to `path`.
    pub fn write_kubeconfig(url: &str, path: &std::path::Path) -> Result<(), Error> {
        std::fs::write(path, Self::kubeconfig(url)).map_err(|source| Error::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The in-process `tower::Service` (also what the HTTP listener runs).
#[derive(Clone)]
pub struct ApiService {
    shared: Arc<Shared>,
    /// Audit mode: where this transport's requests are recorded.
    audit: Option<AuditLog>,
}

impl std::fmt::Debug for ApiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiService").finish_non_exhaustive()
    }
}

impl<B> tower::Service<http::Request<B>> for ApiService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = http::Response<ApiBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        if let Some(audit) = &self.audit {
            audit.record(AuditRecord::from_request(req.method(), req.uri()));
        }
        let bridge = req
            .uri()
            .path()
            .strip_prefix(crate::cloudbridge::PREFIX)
            .map(str::to_string)
            .and_then(|op| {
                let queue = shared.interruptions.get().cloned();
                Some((op, shared.cloud.get()?.clone(), queue))
            });
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match read_body(body).await {
                Ok(b) => b,
                Err(err) => {
                    let mut r = http::Response::new(ApiBody::Full(Some(Bytes::from(
                        err.to_status().to_string(),
                    ))));
                    *r.status_mut() = http::StatusCode::from_u16(err.code)
                        .unwrap_or(http::StatusCode::BAD_REQUEST);
                    return Ok(r);
                }
            };
            if let Some((op, cloud, queue)) = bridge {
                let (head, body) = crate::cloudbridge::serve(cloud, queue, op, bytes)
                    .await
                    .into_parts();
                return Ok(http::Response::from_parts(head, ApiBody::Full(Some(body))));
            }
            Ok(shared.handle(http::Request::from_parts(parts, bytes)))
        })
    }
}

/// A request body of at most [`MAX_REQUEST_BODY_BYTES`] (`413` past it, like the real server),
/// read frame by frame so an oversized body is refused without being held whole.
async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = Box::pin(body);
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("failed to read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_REQUEST_BODY_BYTES {
                return Err(ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}"),
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// The `metadata.name` of a stored object.
pub fn name_of(obj: &Value) -> &str {
    obj.ptr("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The `metadata.namespace` of a stored object (empty for cluster-scoped kinds).
pub fn namespace_of(obj: &Value) -> &str {
    obj.ptr("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}
