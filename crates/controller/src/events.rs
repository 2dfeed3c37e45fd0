//! Kubernetes Events (core/v1) written through the normal client, timestamped by the injected
//! clock and de-duplicated in memory so a burst of thousands of pods does not become thousands of
//! repeated writes.
//!
//! Two ways to publish: [`Recorder::publish`] writes at once (awaited; for the few events of a
//! reconcile), [`Recorder::queue`] hands the event to a background writer and returns at once
//! (for the per-pod events of a provisioning batch, which must not stand between pending pods and
//! their NodeClaims). The writer paces itself at [`QUEUED_EVENT_QPS`] (burst
//! [`QUEUED_EVENT_BURST`]) on top of the client's own limit, so a batch of thousands of pods
//! leaves the client's budget to the controllers' writes; warnings are written before normal
//! events; at most [`QUEUE_CAPACITY`] events wait, further ones are dropped and counted
//! ([`Recorder::dropped`]), as the API server's own event handling sheds load.
//!
//! Memory: a waiting event is held as what it says (the object's reference, reason, message and
//! time; ~0.5 KB, a third of a whole `Event`), and made an `Event` when it is written; the
//! de-duplication window keeps a 64-bit hash of (object, reason, message) per event sent, not
//! the strings (a full queue and window held ~30 MB at 40,000 pending pods).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use stowage_clock::SharedClock;

use crate::ratelimit::TokenBucket;

/// Events the background writer may hold before new ones are dropped (a batch of 5,000 pods with
/// a Nominated event each, three times over).
pub const QUEUE_CAPACITY: usize = 15_000;
/// The background writer's pace, in events per second (an eighth of the client's default 200
/// QPS).
pub const QUEUED_EVENT_QPS: f64 = 25.0;
/// The background writer's burst: the first events of a batch are written at once.
pub const QUEUED_EVENT_BURST: u32 = 100;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Publishes Events about objects; failures are logged, never propagated (events are advisory).
pub struct Recorder {
    client: Client,
    clock: SharedClock,
    component: String,
    /// Namespace for events about cluster-scoped objects.
    default_namespace: String,
    dedupe: Duration,
    /// When each (object uid, reason, message) was last sent, by its hash.
    sent: Mutex<HashMap<u64, jiff::Timestamp>>,
    /// Hashes the keys of `sent`.
    hasher: std::collections::hash_map::RandomState,
    queue: Arc<Queue>,
    /// Whether the background writer has been started (on the first queued event).
    writer_started: AtomicBool,
}

/// The background writer's queue: warnings first, then normal events, each in order.
#[derive(Debug, Default)]
struct Queue {
    lanes: Mutex<Lanes>,
    wake: tokio::sync::Notify,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Lanes {
    warnings: VecDeque<Pending>,
    normal: VecDeque<Pending>,
    /// The recorder is gone: the writer stops.
    closed: bool,
}

/// An event admitted and not written yet: what [`Pending::event`] makes the `Event` from.
#[derive(Debug)]
struct Pending {
    type_: EventType,
    api_version: Cow<'static, str>,
    kind: Cow<'static, str>,
    name: Option<String>,
    /// The object's own (`None`: cluster-scoped).
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    reason: String,
    message: String,
    at: jiff::Timestamp,
}

impl Pending {
    /// The `Event` to write, from `component`, in `default_namespace` for cluster-scoped
    /// objects.
    fn event(self, component: &str, default_namespace: &str) -> Event {
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string());
        let name = format!(
            "{}.{:x}",
            self.name.as_deref().unwrap_or_default(),
            self.at.as_nanosecond()
        );
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(self.api_version.into_owned()),
                kind: Some(self.kind.into_owned()),
                name: self.name,
                namespace: self.namespace,
                uid: self.uid,
                resource_version: self.resource_version,
                field_path: None,
            },
            action: Some(self.reason.clone()),
            reason: Some(self.reason),
            message: Some(self.message),
            type_: Some(self.type_.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(Time(self.at)),
            last_timestamp: Some(Time(self.at)),
            event_time: Some(MicroTime(self.at)),
            source: Some(EventSource {
                component: Some(component.to_string()),
                host: None,
            }),
            reporting_component: Some(component.to_string()),
            reporting_instance: Some(component.to_string()),
            ..Default::default()
        }
    }
}

impl Lanes {
    fn len(&self) -> usize {
        self.warnings.len() + self.normal.len()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.queue
            .lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.queue.wake.notify_one();
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(
        client: Client,
        clock: SharedClock,
        component: impl Into<String>,
        default_namespace: impl Into<String>,
        dedupe: Duration,
    ) -> Self {
        Self {
            client,
            clock,
            component: component.into(),
            default_namespace: default_namespace.into(),
            dedupe,
            sent: Mutex::new(HashMap::new()),
            hasher: Default::default(),
            queue: Arc::new(Queue::default()),
            writer_started: AtomicBool::new(false),
        }
    }

    /// Publishes an event about `obj` unless the same (object, reason, message) was sent within
    /// the de-duplication window; returns once it is written (or failed to be).
    pub async fn publish<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let Some(event) = self.admit(obj, type_, reason, message) else {
            return;
        };
        write(
            &self.client,
            &event.event(&self.component, &self.default_namespace),
        )
        .await;
    }

    /// Hands an event about `obj` to the background writer (de-duplicated as
    /// [`Recorder::publish`] is) and returns at once; see the module docs for its pace and
    /// bounds. Must be called inside a tokio runtime for the writer to start.
    pub fn queue<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let Some(event) = self.admit(obj, type_, reason, message) else {
            return;
        };
        {
            let mut lanes = self.queue.lanes.lock().unwrap_or_else(|e| e.into_inner());
            if lanes.len() >= QUEUE_CAPACITY {
                let dropped = self.queue.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped % 1000 == 1 {
                    tracing::warn!(
                        dropped,
                        capacity = QUEUE_CAPACITY,
                        reason,
                        "event queue full; events dropped"
                    );
                }
                return;
            }
            match type_ {
                EventType::Warning => lanes.warnings.push_back(event),
                EventType::Normal => lanes.normal.push_back(event),
            }
        }
        self.start_writer();
        self.queue.wake.notify_one();
    }

    /// Events queued and not written yet.
    pub fn queued(&self) -> usize {
        self.queue
            .lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    fn start_writer(&self) {
        if self.writer_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.writer_started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(run_writer(
            self.client.clone(),
            self.queue.clone(),
            TokenBucket::new(QUEUED_EVENT_QPS, QUEUED_EVENT_BURST),
            (self.component.clone(), self.default_namespace.clone()),
        ));
    }

    /// The event to write, unless the same (object, reason, message) was sent within the
    /// de-duplication window.
    fn admit<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str) -> Option<Pending>
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
        let now = self.clock.now();
        {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            let key =
                self.hasher
                    .hash_one((meta.uid.as_deref().unwrap_or_default(), reason, message));
            if let Some(at) = sent.get(&key) {
                let age = now.duration_since(*at);
                if age
                    < jiff::SignedDuration::try_from(self.dedupe)
                        .unwrap_or(jiff::SignedDuration::MAX)
                {
                    return None;
                }
            }
            if sent.len() > 100_000 {
                sent.clear();
            }
            sent.insert(key, now);
        }
        Some(Pending {
            type_,
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            reason: reason.to_string(),
            message: message.to_string(),
            at: now,
        })
    }
}

async fn write(client: &Client, event: &Event) {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Err(err) = api.create(&PostParams::default(), event).await {
        tracing::debug!(%err, reason = ?event.reason, "failed to publish event");
    }
}

/// The background writer: one event at a time, warnings first, each after a token of `pace`;
/// stops when the recorder is dropped.
async fn run_writer(
    client: Client,
    queue: Arc<Queue>,
    pace: TokenBucket,
    (component, default_namespace): (String, String),
) {
    loop {
        let next = {
            let mut lanes = queue.lanes.lock().unwrap_or_else(|e| e.into_inner());
            if lanes.closed {
                return;
            }
            lanes
                .warnings
                .pop_front()
                .or_else(|| lanes.normal.pop_front())
        };
        match next {
            Some(event) => {
                pace.acquire().await;
                write(&client, &event.event(&component, &default_namespace)).await;
            }
            // A wake-up sent while nobody waited is kept for the next wait: none is lost.
            None => queue.wake.notified().await,
        }
    }
}

/// An `ObjectReference` to any typed object.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Pod;
    use tokio::time::Instant;

    use super::*;
    use crate::fixtures::pending_pod;

    /// Every event written: (when, reason, object name).
    type Written = Arc<Mutex<Vec<(Instant, String, String)>>>;

    /// A recorder (its namespace `namespace`) on a transport that accepts every request and
    /// hands each Event written to `seen`.
    fn recorder_seeing(
        namespace: &str,
        seen: impl Fn(Event) + Clone + Send + Sync + 'static,
    ) -> Recorder {
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                let body = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                seen(serde_json::from_slice(&body).unwrap());
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .status(201)
                        .body(kube::client::Body::from(body.to_vec()))
                        .unwrap(),
                )
            }
        });
        let clock: SharedClock = Arc::new(stowage_clock::TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        Recorder::new(
            kube::Client::new(svc, "default"),
            clock,
            "stowage",
            namespace,
            Duration::from_secs(300),
        )
    }

    /// A recorder on a transport that accepts every request and notes the events written.
    fn recorder() -> (Recorder, Written) {
        let written: Written = Arc::default();
        let log = written.clone();
        let recorder = recorder_seeing("stowage", move |event: Event| {
            log.lock().unwrap().push((
                Instant::now(),
                event.reason.clone().unwrap_or_default(),
                event.involved_object.name.clone().unwrap_or_default(),
            ));
        });
        (recorder, written)
    }

    fn pods(n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| pending_pod("default", &format!("p{i}"), "1"))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn queued_events_are_written_in_the_background_warnings_first_at_the_writer_pace() {
        let (recorder, written) = recorder();
        let start = Instant::now();
        let pods = pods(150);
        for pod in &pods {
            recorder.queue(pod, EventType::Normal, "Nominated", "nodeclaim/a");
        }
        recorder.queue(&pods[0], EventType::Warning, "FailedScheduling", "no room");
        // Queuing wrote nothing: the caller did not wait for a single write.
        assert!(written.lock().unwrap().is_empty());
        assert_eq!(recorder.queued(), 151);
        tokio::time::sleep(Duration::from_millis(1)).await;
        {
            let w = written.lock().unwrap();
            assert_eq!(
                w.len(),
                QUEUED_EVENT_BURST as usize,
                "the burst is written at once"
            );
            assert_eq!(w[0].1, "FailedScheduling", "warnings first");
            assert_eq!(w[1].2, "p0", "then normal events in order");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let w = written.lock().unwrap();
        assert_eq!(w.len(), 151, "nothing lost");
        assert_eq!(recorder.queued(), 0);
        // The 51 events past the burst at 25 per second.
        let last = w[150].0.duration_since(start).as_secs_f64();
        let expected = 51.0 / QUEUED_EVENT_QPS;
        assert!((last - expected).abs() < 0.05, "last event at {last}s");
    }

    #[tokio::test(start_paused = true)]
    async fn queued_events_are_deduplicated_like_published_ones() {
        let (recorder, written) = recorder();
        let pod = &pods(1)[0];
        recorder.queue(pod, EventType::Normal, "Nominated", "nodeclaim/a");
        recorder.queue(pod, EventType::Normal, "Nominated", "nodeclaim/a");
        recorder
            .publish(pod, EventType::Normal, "Nominated", "nodeclaim/a")
            .await;
        recorder.queue(pod, EventType::Normal, "Nominated", "nodeclaim/b");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let reasons: Vec<String> = written
            .lock()
            .unwrap()
            .iter()
            .map(|w| w.1.clone())
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
    }

    /// A queued event is written as a published one is: the same `Event`, made when written.
    #[tokio::test(start_paused = true)]
    async fn a_queued_event_is_the_event_a_published_one_is() {
        let bodies: Arc<Mutex<Vec<Event>>> = Arc::default();
        let log = bodies.clone();
        let recorder = recorder_seeing("stowage-system", move |event: Event| {
            log.lock().unwrap().push(event);
        });
        let mut pod = pending_pod("team-a", "web-0", "1");
        pod.metadata.uid = Some("uid-1".into());
        pod.metadata.resource_version = Some("7".into());
        recorder
            .publish(&pod, EventType::Warning, "FailedScheduling", "no room")
            .await;
        recorder.queue(&pod, EventType::Warning, "Nominated", "nodeclaim/a");
        let mut pool = stowage_api::NodePool::new("spot", Default::default());
        pool.metadata.uid = Some("uid-2".into());
        recorder.queue(&pool, EventType::Normal, "Limited", "cpu limit reached");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let events = bodies.lock().unwrap();
        assert_eq!(events.len(), 3);
        let (published, queued) = (&events[0], &events[1]);
        for e in [published, queued] {
            assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
            assert!(e.metadata.name.as_deref().unwrap().starts_with("web-0."));
            assert_eq!(e.involved_object, object_reference(&pod));
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(e.count, Some(1));
            assert_eq!(
                e.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("stowage")
            );
            assert_eq!(e.reporting_component.as_deref(), Some("stowage"));
            assert_eq!(e.reporting_instance.as_deref(), Some("stowage"));
            assert_eq!(e.first_timestamp, e.last_timestamp);
            assert!(e.event_time.is_some());
        }
        assert_eq!(queued.reason.as_deref(), Some("Nominated"));
        assert_eq!(queued.action.as_deref(), Some("Nominated"));
        assert_eq!(queued.message.as_deref(), Some("nodeclaim/a"));
        // A cluster-scoped object's events go to the recorder's namespace.
        let limited = &events[2];
        assert_eq!(
            limited.metadata.namespace.as_deref(),
            Some("stowage-system")
        );
        assert_eq!(limited.involved_object, object_reference(&pool));
        assert_eq!(limited.type_.as_deref(), Some("Normal"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_what_it_cannot_hold() {
        let (recorder, written) = recorder();
        let pods = pods(QUEUE_CAPACITY + 5);
        // The writer runs on this thread: it has written nothing before the loop ends.
        for pod in &pods {
            recorder.queue(pod, EventType::Normal, "Nominated", "nodeclaim/a");
        }
        assert_eq!(recorder.queued(), QUEUE_CAPACITY);
        assert_eq!(recorder.dropped(), 5);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(written.lock().unwrap().len(), QUEUED_EVENT_BURST as usize);
    }
}
