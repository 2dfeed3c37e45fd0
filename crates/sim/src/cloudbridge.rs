//! The simulated cloud over HTTP, so that a controller process of its own (`stowage run
//! --cloud-provider simulated`) can drive the fake cloud of a simulation served by `stowage sim
//! serve --scenario ...`, and its memory and CPU be measured apart from the simulator.
//!
//! The bridge is served on the simulated API server's own address under [`PREFIX`] (so the
//! controller reaches it with the same kubeconfig), one `POST` per [`CloudProvider`] operation
//! with JSON bodies; errors travel as a typed body ([`WireError`]) so the controller branches on
//! them exactly as on the in-process provider's. The fake cloud's interruption queue travels the
//! same way (`interruptions/receive` long-polls, `interruptions/ack` deletes), so the separate
//! process sees the scenario's spot interruption warnings as `stowage simulate` does.
//! [`RemoteCloud`] is the client side of both.
//!
//! Nothing here is for production: a real cluster has no such endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use stowage_api::{NodeClaim, NodePool};
use stowage_cloud::interruption::{
    AckHandle, InstanceStateChange, InterruptionEvent, InterruptionKind, InterruptionMessage,
    InterruptionSource, MessageContent,
};
use stowage_cloud::{
    CapacityType, CloudProvider, DriftReason, Error, NodeClassKind, NodeClassStatus, OfferingKey,
    Result,
};
use stowage_solver::InstanceType;

/// Path prefix of the bridge on the API server's address.
pub const PREFIX: &str = "/stowage-sim/cloud/";

/// A provider error as it travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum WireError {
    NotFound { message: String },
    InsufficientCapacity { offerings: Vec<WireOffering> },
    NodeClassNotReady { reason: String },
    NodeClassNotResolved { name: String },
    Launch { code: String, message: String },
    Throttled { message: String },
    Api { operation: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireOffering {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        match e {
            Error::NotFound(m) => WireError::NotFound { message: m.clone() },
            Error::InsufficientCapacity { offerings } => WireError::InsufficientCapacity {
                offerings: offerings
                    .iter()
                    .map(|o| WireOffering {
                        instance_type: o.instance_type.clone(),
                        zone: o.zone.clone(),
                        capacity_type: o.capacity_type,
                    })
                    .collect(),
            },
            Error::NodeClassNotReady { reason } => WireError::NodeClassNotReady {
                reason: reason.clone(),
            },
            Error::NodeClassNotResolved { name } => {
                WireError::NodeClassNotResolved { name: name.clone() }
            }
            Error::Launch { code, message } => WireError::Launch {
                code: code.clone(),
                message: message.clone(),
            },
            Error::Throttled(m) => WireError::Throttled { message: m.clone() },
            Error::Api { operation, message } => WireError::Api {
                operation: (*operation).to_string(),
                message: message.clone(),
            },
        }
    }
}

impl WireError {
    fn into_error(self, operation: &'static str) -> Error {
        match self {
            WireError::NotFound { message } => Error::NotFound(message),
            WireError::InsufficientCapacity { offerings } => Error::InsufficientCapacity {
                offerings: offerings
                    .into_iter()
                    .map(|o| OfferingKey {
                        instance_type: o.instance_type,
                        zone: o.zone,
                        capacity_type: o.capacity_type,
                    })
                    .collect(),
            },
            WireError::NodeClassNotReady { reason } => Error::NodeClassNotReady { reason },
            WireError::NodeClassNotResolved { name } => Error::NodeClassNotResolved { name },
            WireError::Launch { code, message } => Error::Launch { code, message },
            WireError::Throttled { message } => Error::Throttled(message),
            WireError::Api { message, .. } => Error::Api { operation, message },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKind {
    group: String,
    version: String,
    kind: String,
    plural: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    ready: bool,
    reason: String,
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Get {
    provider_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkUnavailable {
    offering: WireOffering,
    ttl_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InterruptionCost {
    offering: WireOffering,
    cost_per_hour: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ack {
    ack: String,
}

/// An interruption message as it travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    id: String,
    ack: String,
    content: WireContent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum WireContent {
    Events { events: Vec<WireEvent> },
    Ignored { what: String },
    Malformed { why: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    /// [`InterruptionKind::as_str`].
    kind: String,
    /// For a state change: EC2's name of the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    instance_id: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offering: Option<WireOffering>,
}

impl From<&OfferingKey> for WireOffering {
    fn from(o: &OfferingKey) -> Self {
        WireOffering {
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            capacity_type: o.capacity_type,
        }
    }
}

impl From<WireOffering> for OfferingKey {
    fn from(o: WireOffering) -> Self {
        OfferingKey {
            instance_type: o.instance_type,
            zone: o.zone,
            capacity_type: o.capacity_type,
        }
    }
}

impl From<&InterruptionMessage> for WireMessage {
    fn from(m: &InterruptionMessage) -> Self {
        let content = match &m.content {
            MessageContent::Events(events) => WireContent::Events {
                events: events
                    .iter()
                    .map(|e| WireEvent {
                        kind: e.kind.as_str().to_string(),
                        state: match e.kind {
                            InterruptionKind::StateChange(s) => Some(s.as_str().to_string()),
                            _ => None,
                        },
                        instance_id: e.instance_id.clone(),
                        time: e.time.map(|t| t.to_string()),
                        offering: e.offering.as_ref().map(|o| WireOffering {
                            instance_type: o.instance_type.clone(),
                            zone: o.zone.clone(),
                            capacity_type: o.capacity_type,
                        }),
                    })
                    .collect(),
            },
            MessageContent::Ignored(what) => WireContent::Ignored { what: what.clone() },
            MessageContent::Malformed(why) => WireContent::Malformed { why: why.clone() },
        };
        WireMessage {
            id: m.id.clone(),
            ack: m.ack.0.clone(),
            content,
        }
    }
}

impl WireEvent {
    /// The event, or why it could not be read (the message is then passed on as malformed, so
    /// the core counts and acknowledges it).
    fn into_event(self) -> std::result::Result<InterruptionEvent, String> {
        let kind = match self.kind.as_str() {
            "spot_interruption" => InterruptionKind::SpotInterruption,
            "rebalance_recommendation" => InterruptionKind::RebalanceRecommendation,
            "scheduled_change" => InterruptionKind::ScheduledChange,
            "state_change" => InterruptionKind::StateChange(
                self.state
                    .as_deref()
                    .and_then(InstanceStateChange::parse)
                    .ok_or_else(|| {
                        format!("state change without a known state: {:?}", self.state)
                    })?,
            ),
            other => return Err(format!("unknown interruption kind {other:?}")),
        };
        let time = match self.time {
            Some(t) => Some(
                t.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("bad event time {t:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(InterruptionEvent {
            kind,
            instance_id: self.instance_id,
            time,
            offering: self.offering.map(|o| OfferingKey {
                instance_type: o.instance_type,
                zone: o.zone,
                capacity_type: o.capacity_type,
            }),
        })
    }
}

impl WireMessage {
    fn into_message(self) -> InterruptionMessage {
        let content = match self.content {
            WireContent::Events { events } => {
                match events.into_iter().map(WireEvent::into_event).collect() {
                    Ok(events) => MessageContent::Events(events),
                    Err(why) => MessageContent::Malformed(why),
                }
            }
            WireContent::Ignored { what } => MessageContent::Ignored(what),
            WireContent::Malformed { why } => MessageContent::Malformed(why),
        };
        InterruptionMessage {
            id: self.id,
            ack: AckHandle(self.ack),
            content,
        }
    }
}

fn drift_from_str(s: &str) -> Option<DriftReason> {
    [
        DriftReason::AmiDrift,
        DriftReason::SubnetDrift,
        DriftReason::SecurityGroupDrift,
        DriftReason::NodeClassDrift,
        DriftReason::InstanceTypeNotFound,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
}

fn json_response(status: u16, body: Vec<u8>) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A provider error is a `422` with its [`WireError`]: a 4xx, because the call was served and the
/// cloud declined it (an ICE, a throttle) — a 5xx would also make the kube client log each one
/// at ERROR as a failed request, noise in the measured process.
fn answer<T: Serialize>(result: Result<T>) -> http::Response<Bytes> {
    match result {
        Ok(v) => json_response(200, serde_json::to_vec(&v).unwrap_or_default()),
        Err(e) => json_response(
            422,
            serde_json::to_vec(&WireError::from(&e)).unwrap_or_default(),
        ),
    }
}

fn bad_request(message: String) -> http::Response<Bytes> {
    answer::<()>(Err(Error::Api {
        operation: "bridge",
        message,
    }))
}

/// Serves one bridge request (`path` below [`PREFIX`]) against `cloud` and, for
/// `interruptions/*`, its interruption queue (refused when none is attached).
pub async fn handle(
    cloud: &dyn CloudProvider,
    interruptions: Option<&dyn InterruptionSource>,
    path: &str,
    body: &[u8],
) -> http::Response<Bytes> {
    fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> std::result::Result<T, String> {
        serde_json::from_slice(body).map_err(|e| format!("bad bridge request body: {e}"))
    }
    macro_rules! with_body {
        ($t:ty, |$v:ident| $e:expr) => {
            match parse::<$t>(body) {
                Ok($v) => $e,
                Err(m) => bad_request(m),
            }
        };
    }
    match path {
        "create" => with_body!(NodeClaim, |c| answer(cloud.create(&c).await)),
        "delete" => with_body!(NodeClaim, |c| answer(cloud.delete(&c).await)),
        "get" => with_body!(Get, |g| answer(cloud.get(&g.provider_id).await)),
        "list" => answer(cloud.list().await),
        "instance-types" => with_body!(NodePool, |p| answer(cloud.instance_types(&p).await)),
        "is-drifted" => with_body!(NodeClaim, |c| answer(
            cloud
                .is_drifted(&c)
                .await
                .map(|r| r.map(|r| r.as_str().to_string()))
        )),
        "node-class" => with_body!(serde_json::Value, |v| answer(
            cloud.reconcile_node_class(&v).await.map(|s| WireStatus {
                ready: s.ready,
                reason: s.reason,
                message: s.message,
                fields: s.fields,
            })
        )),
        "node-class-kind" => answer(Ok(cloud.node_class_kind().map(|k| WireKind {
            group: k.group,
            version: k.version,
            kind: k.kind,
            plural: k.plural,
        }))),
        "mark-unavailable" => with_body!(MarkUnavailable, |m| {
            let ttl = std::time::Duration::try_from_secs_f64(m.ttl_seconds).unwrap_or_default();
            cloud.mark_unavailable(&m.offering.into(), ttl);
            answer(Ok(()))
        }),
        "interruption-costs" => with_body!(Vec<InterruptionCost>, |costs| {
            cloud.set_interruption_costs(
                costs
                    .into_iter()
                    .map(|c| (c.offering.into(), c.cost_per_hour))
                    .collect(),
            );
            answer(Ok(()))
        }),
        "interruptions/receive" | "interruptions/ack" => {
            let Some(queue) = interruptions else {
                return bad_request("no interruption queue is attached to the bridge".into());
            };
            if path == "interruptions/ack" {
                with_body!(Ack, |a| answer(queue.acknowledge(&AckHandle(a.ack)).await))
            } else {
                answer(
                    queue
                        .receive()
                        .await
                        .map(|ms| ms.iter().map(WireMessage::from).collect::<Vec<_>>()),
                )
            }
        }
        other => bad_request(format!("no bridge operation {other:?}")),
    }
}

/// A [`CloudProvider`] that is the fake cloud of a simulation in another process, reached over
/// the simulated API server's address (see the module docs).
pub struct RemoteCloud {
    client: kube::Client,
    kind: Option<NodeClassKind>,
    /// The interruption costs last sent (the core sets them on every provisioning pass; only a
    /// change travels).
    costs: std::sync::Mutex<Vec<InterruptionCost>>,
}

impl std::fmt::Debug for RemoteCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCloud")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl RemoteCloud {
    /// Connects through `client` (a client of the simulated API server) and asks for the node
    /// class kind once.
    pub async fn connect(client: kube::Client) -> Result<Self> {
        let mut cloud = Self {
            client,
            kind: None,
            costs: std::sync::Mutex::new(Vec::new()),
        };
        let kind: Option<WireKind> = cloud
            .call("node-class-kind", "node_class_kind", &())
            .await?;
        cloud.kind = kind.map(|k| NodeClassKind {
            group: k.group,
            version: k.version,
            kind: k.kind,
            plural: k.plural,
        });
        Ok(cloud)
    }

    /// A call for a provider method that does not wait (the trait's setters are synchronous):
    /// sent from a task of its own; a failure is logged, as the in-process setters cannot fail.
    fn send<B: Serialize + Send + Sync + 'static>(&self, path: &'static str, body: B) {
        let remote = Self {
            client: self.client.clone(),
            kind: None,
            costs: std::sync::Mutex::new(Vec::new()),
        };
        tokio::spawn(async move {
            if let Err(err) = remote.call::<B, ()>(path, path, &body).await {
                tracing::warn!(%err, "simulated cloud bridge call failed");
            }
        });
    }

    async fn call<B: Serialize + ?Sized, T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        operation: &'static str,
        body: &B,
    ) -> Result<T> {
        let api = |message: String| Error::Api { operation, message };
        let body = serde_json::to_vec(body).map_err(|e| api(e.to_string()))?;
        let req = http::Request::post(format!("{PREFIX}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| api(e.to_string()))?;
        let resp = self
            .client
            .send(req.map(kube::client::Body::from))
            .await
            .map_err(|e| api(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| api(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| api(e.to_string()))
        } else {
            match serde_json::from_slice::<WireError>(&bytes) {
                Ok(w) => Err(w.into_error(operation)),
                Err(_) => Err(api(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))),
            }
        }
    }
}

#[async_trait]
impl CloudProvider for RemoteCloud {
    async fn create(&self, claim: &NodeClaim) -> Result<NodeClaim> {
        self.call("create", "create", claim).await
    }
    async fn delete(&self, claim: &NodeClaim) -> Result<()> {
        self.call("delete", "delete", claim).await
    }
    async fn get(&self, provider_id: &str) -> Result<NodeClaim> {
        let body = Get {
            provider_id: provider_id.to_string(),
        };
        self.call("get", "get", &body).await
    }
    async fn list(&self) -> Result<Vec<NodeClaim>> {
        self.call("list", "list", &()).await
    }
    async fn instance_types(&self, pool: &NodePool) -> Result<Vec<InstanceType>> {
        self.call("instance-types", "instance_types", pool).await
    }
    async fn is_drifted(&self, claim: &NodeClaim) -> Result<Option<DriftReason>> {
        let r: Option<String> = self.call("is-drifted", "is_drifted", claim).await?;
        Ok(r.as_deref().and_then(drift_from_str))
    }
    fn node_class_kind(&self) -> Option<NodeClassKind> {
        self.kind.clone()
    }
    fn mark_unavailable(&self, offering: &OfferingKey, ttl: std::time::Duration) {
        let body = MarkUnavailable {
            offering: offering.into(),
            ttl_seconds: ttl.as_secs_f64(),
        };
        self.send("mark-unavailable", body);
    }
    fn set_interruption_costs(&self, costs: Vec<(OfferingKey, f64)>) {
        let costs: Vec<InterruptionCost> = costs
            .iter()
            .map(|(o, c)| InterruptionCost {
                offering: o.into(),
                cost_per_hour: *c,
            })
            .collect();
        {
            let mut last = self.costs.lock().unwrap_or_else(|e| e.into_inner());
            if *last == costs {
                return;
            }
            *last = costs.clone();
        }
        self.send("interruption-costs", costs);
    }
    async fn reconcile_node_class(&self, class: &serde_json::Value) -> Result<NodeClassStatus> {
        let s: WireStatus = self
            .call("node-class", "reconcile_node_class", class)
            .await?;
        Ok(NodeClassStatus {
            ready: s.ready,
            reason: s.reason,
            message: s.message,
            fields: s.fields,
        })
    }
    fn name(&self) -> &'static str {
        "simulated"
    }
}

/// The fake cloud's interruption queue in the other process: `receive` long-polls there (up to
/// the fake queue's own bound), `acknowledge` deletes there.
#[async_trait]
impl InterruptionSource for RemoteCloud {
    async fn receive(&self) -> Result<Vec<InterruptionMessage>> {
        let messages: Vec<WireMessage> = self
            .call("interruptions/receive", "receive_interruptions", &())
            .await?;
        Ok(messages
            .into_iter()
            .map(WireMessage::into_message)
            .collect())
    }
    async fn acknowledge(&self, ack: &AckHandle) -> Result<()> {
        let body = Ack { ack: ack.0.clone() };
        self.call("interruptions/ack", "acknowledge_interruption", &body)
            .await
    }
    fn name(&self) -> &'static str {
        "simulated"
    }
}

/// The bridge as the API server's transports see it: the cloud it serves.
pub(crate) type Bridge = Arc<dyn CloudProvider>;

/// The interruption queue the bridge serves, when one is attached.
pub(crate) type BridgeQueue = Arc<dyn InterruptionSource>;

/// Serves one request (the bridge's bodies are small and read whole).
pub(crate) async fn serve(
    cloud: Bridge,
    interruptions: Option<BridgeQueue>,
    path: String,
    body: Bytes,
) -> http::Response<Bytes> {
    handle(cloud.as_ref(), interruptions.as_deref(), &path, &body).await
}
