//! Kubernetes Events (core/v1) written through the normal client, timestamped by the injected
//! clock and de-duplicated in memory so a burst of thousands of pods does not become thousands of
//! repeated writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use stowage_clock::SharedClock;

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
    sent: Mutex<HashMap<(String, String, String), jiff::Timestamp>>,
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
        }
    }

    /// Publishes an event about `obj` unless the same (object, reason, message) was sent within
    /// the de-duplication window.
    pub async fn publish<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object_reference(obj);
        let uid = reference.uid.clone().unwrap_or_default();
        let now = self.clock.now();
        {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            let key = (uid.clone(), reason.to_string(), message.to_string());
            if let Some(at) = sent.get(&key) {
                let age = now.duration_since(*at);
                if age
                    < jiff::SignedDuration::try_from(self.dedupe)
                        .unwrap_or(jiff::SignedDuration::MAX)
                {
                    return;
                }
            }
            if sent.len() > 100_000 {
                sent.clear();
            }
            sent.insert(key, now);
        }
        let namespace = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| self.default_namespace.clone());
        let name = format!("{}.{:x}", obj.name_any(), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: reference,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(reason.to_string()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(err) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(%err, reason, "failed to publish event");
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
