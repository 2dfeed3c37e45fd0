//! Interruption events: the EventBridge messages EC2 and AWS Health put on the interruption SQS
//! queue (spot interruption warning, rebalance recommendation, instance state change, scheduled
//! change), parsed into typed events, and the queue they are read from and acknowledged on.
//!
//! Key decision: parsing is pure and total over the message body: an unknown event type is
//! `Ok(None)` (acknowledge and ignore), a malformed body is an error naming what is wrong, so a bad
//! message never blocks the queue. The queue is the provider's
//! [`stowage_cloud::InterruptionSource`]: each message becomes the cloud-neutral
//! [`MessageContent`] the controllers handle (one event per instance named; a state change to
//! `pending` or `running` is `Ignored`), so the controllers never see an EventBridge shape.
//!
//! The four EventBridge rules (see docs/interruption.md) and what they become:
//! - `aws.ec2` / `EC2 Spot Instance Interruption Warning` -> `SpotInterruption`;
//! - `aws.ec2` / `EC2 Instance Rebalance Recommendation` -> `RebalanceRecommendation`;
//! - `aws.health` / `AWS Health Event`, service `EC2`, category `scheduledChange` ->
//!   `ScheduledChange` for every affected instance;
//! - `aws.ec2` / `EC2 Instance State-change Notification` (stopping, stopped, shutting-down,
//!   terminated) -> `StateChange`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use stowage_cloud::{
    AckHandle, InstanceStateChange, InterruptionMessage, InterruptionSource, MessageContent,
};

use crate::sdk::{self, SqsApi};

/// Seconds one receive long-polls (SQS's maximum).
pub const LONG_POLL_SECONDS: i32 = 20;

/// Errors of the interruption queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to parse interruption message: {0}")]
    ParseMessage(String),
    #[error("failed to resolve the interruption queue {queue}")]
    ResolveQueue { queue: String, source: sdk::Error },
    #[error("failed to receive interruption messages")]
    Receive(#[source] sdk::Error),
    #[error("failed to delete an interruption message")]
    Delete(#[source] sdk::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What happened to the instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterruptionKind {
    /// The spot instance will be reclaimed in about two minutes.
    SpotInterruption,
    /// The spot instance is at elevated risk of interruption.
    RebalanceRecommendation,
    /// The instance changed state (`stopping`, `stopped`, `shutting-down`, `terminated`, ...).
    StateChange { state: String },
    /// AWS Health scheduled a change (maintenance, retirement) for the instances.
    ScheduledChange,
}

/// One parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionEvent {
    /// The EventBridge event id.
    pub id: String,
    pub kind: InterruptionKind,
    /// Sorted, deduplicated.
    pub instance_ids: Vec<String>,
    /// The event time as sent (RFC 3339).
    pub time: Option<String>,
}

impl InterruptionEvent {
    /// Whether the node should be drained and replaced now (everything but an instance that is
    /// merely starting or running again).
    pub fn is_disruptive(&self) -> bool {
        match &self.kind {
            InterruptionKind::StateChange { state } => {
                matches!(
                    state.as_str(),
                    "stopping" | "stopped" | "shutting-down" | "terminated"
                )
            }
            _ => true,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    detail: serde_json::Value,
}

/// Parses one message body; `Ok(None)` for event types Stowage does not act on.
pub fn parse_message(body: &str) -> Result<Option<InterruptionEvent>> {
    let e: Envelope =
        serde_json::from_str(body).map_err(|err| Error::ParseMessage(err.to_string()))?;
    let detail_instance = || {
        e.detail
            .get("instance-id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let from_resources = || {
        e.resources
            .iter()
            .filter_map(|r| r.rsplit('/').next())
            .filter(|id| id.starts_with("i-"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (kind, mut ids) = match (e.source.as_str(), e.detail_type.as_str()) {
        (_, "EC2 Spot Instance Interruption Warning") => (
            InterruptionKind::SpotInterruption,
            detail_instance().into_iter().collect(),
        ),
        (_, "EC2 Instance Rebalance Recommendation") => (
            InterruptionKind::RebalanceRecommendation,
            detail_instance().into_iter().collect(),
        ),
        (_, "EC2 Instance State-change Notification") => {
            let state = e
                .detail
                .get("state")
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    Error::ParseMessage("state-change event without detail.state".into())
                })?;
            (
                InterruptionKind::StateChange {
                    state: state.to_string(),
                },
                detail_instance().into_iter().collect(),
            )
        }
        ("aws.health", "AWS Health Event") => {
            let is_ec2 = e.detail.get("service").and_then(|v| v.as_str()) == Some("EC2");
            let scheduled = e.detail.get("eventTypeCategory").and_then(|v| v.as_str())
                == Some("scheduledChange");
            if !is_ec2 || !scheduled {
                return Ok(None);
            }
            let ids: Vec<String> = e
                .detail
                .get("affectedEntities")
                .and_then(|v| v.as_array())
                .map(|entities| {
                    entities
                        .iter()
                        .filter_map(|x| x.get("entityValue").and_then(|v| v.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (InterruptionKind::ScheduledChange, ids)
        }
        _ => return Ok(None),
    };
    if ids.is_empty() {
        ids = from_resources();
    }
    if ids.is_empty() {
        return Err(Error::ParseMessage(format!(
            "{} event {} names no instance",
            e.detail_type, e.id
        )));
    }
    ids.sort();
    ids.dedup();
    Ok(Some(InterruptionEvent {
        id: e.id,
        kind,
        instance_ids: ids,
        time: e.time,
    }))
}

impl InterruptionEvent {
    /// The cloud-neutral events of this one (one per instance), or why it is not acted on.
    pub fn to_content(&self) -> MessageContent {
        let kind = match &self.kind {
            InterruptionKind::SpotInterruption => stowage_cloud::InterruptionKind::SpotInterruption,
            InterruptionKind::RebalanceRecommendation => {
                stowage_cloud::InterruptionKind::RebalanceRecommendation
            }
            InterruptionKind::ScheduledChange => stowage_cloud::InterruptionKind::ScheduledChange,
            InterruptionKind::StateChange { state } => match InstanceStateChange::parse(state) {
                Some(s) => stowage_cloud::InterruptionKind::StateChange(s),
                None => return MessageContent::Ignored(format!("instance state {state}")),
            },
        };
        let time = self.time.as_deref().and_then(|t| t.parse().ok());
        MessageContent::Events(
            self.instance_ids
                .iter()
                .map(|id| stowage_cloud::InterruptionEvent {
                    kind,
                    instance_id: id.clone(),
                    time,
                    offering: None,
                })
                .collect(),
        )
    }
}

/// What a parsed message body is to the controllers.
pub fn content_of(parsed: &Result<Option<InterruptionEvent>>) -> MessageContent {
    match parsed {
        Ok(Some(event)) => event.to_content(),
        Ok(None) => MessageContent::Ignored("event type not handled".into()),
        Err(err) => MessageContent::Malformed(err.to_string()),
    }
}

/// A received message: the parsed event (or why it could not be parsed) and its receipt handle.
#[derive(Debug)]
pub struct Received {
    pub event: Result<Option<InterruptionEvent>>,
    pub receipt_handle: String,
    /// SQS's message id (empty when SQS sent none).
    pub message_id: String,
}

/// The interruption queue.
#[derive(Debug, Clone)]
pub struct InterruptionQueue {
    sqs: Arc<dyn SqsApi>,
    url: String,
}

impl InterruptionQueue {
    /// The queue `name_or_url` (a name is resolved with GetQueueUrl).
    pub async fn new(sqs: Arc<dyn SqsApi>, name_or_url: &str) -> Result<Self> {
        let url = if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
            name_or_url.to_string()
        } else {
            sqs.get_queue_url(name_or_url.to_string())
                .await
                .map_err(|source| Error::ResolveQueue {
                    queue: name_or_url.to_string(),
                    source,
                })?
        };
        Ok(Self { sqs, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Long-polls up to 10 messages for at most `wait_seconds` (0..=20).
    pub async fn receive(&self, wait_seconds: i32) -> Result<Vec<Received>> {
        let messages = self
            .sqs
            .receive_messages(self.url.clone(), 10, wait_seconds)
            .await
            .map_err(Error::Receive)?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let receipt_handle = m.receipt_handle?;
                Some(Received {
                    event: parse_message(m.body.as_deref().unwrap_or_default()),
                    receipt_handle,
                    message_id: m.message_id.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Deletes a handled message.
    pub async fn acknowledge(&self, receipt_handle: &str) -> Result<()> {
        self.sqs
            .delete_message(self.url.clone(), receipt_handle.to_string())
            .await
            .map_err(Error::Delete)
    }
}

#[async_trait]
impl InterruptionSource for InterruptionQueue {
    /// Long-polls 20 s for up to 10 messages.
    async fn receive(&self) -> stowage_cloud::Result<Vec<InterruptionMessage>> {
        let received = InterruptionQueue::receive(self, LONG_POLL_SECONDS)
            .await
            .map_err(cloud_error("ReceiveMessage"))?;
        Ok(received
            .into_iter()
            .map(|r| InterruptionMessage {
                content: content_of(&r.event),
                id: r.message_id,
                ack: AckHandle(r.receipt_handle),
            })
            .collect())
    }

    async fn acknowledge(&self, ack: &AckHandle) -> stowage_cloud::Result<()> {
        InterruptionQueue::acknowledge(self, &ack.0)
            .await
            .map_err(cloud_error("DeleteMessage"))
    }

    fn name(&self) -> &'static str {
        "sqs"
    }
}

fn cloud_error(operation: &'static str) -> impl Fn(Error) -> stowage_cloud::Error {
    move |err| match err {
        Error::Receive(e) | Error::Delete(e) | Error::ResolveQueue { source: e, .. } => {
            crate::errors::to_cloud(e)
        }
        Error::ParseMessage(message) => stowage_cloud::Error::Api { operation, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail_type: &str, source: &str, detail: serde_json::Value) -> String {
        serde_json::json!({
            "version": "0", "id": "e-1", "detail-type": detail_type, "source": source,
            "account": "123456789012", "time": "2026-11-28T10:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"], "detail": detail
        })
        .to_string()
    }

    #[test]
    fn parses_every_event_kind() {
        let spot = parse_message(&event(
            "EC2 Spot Instance Interruption Warning",
            "aws.ec2",
            serde_json::json!({"instance-id": "i-0abc", "instance-action": "terminate"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(spot.kind, InterruptionKind::SpotInterruption);
        assert_eq!(spot.instance_ids, ["i-0abc"]);
        let rebalance = parse_message(&event(
            "EC2 Instance Rebalance Recommendation",
            "aws.ec2",
            serde_json::json!({"instance-id": "i-0abc"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(rebalance.kind, InterruptionKind::RebalanceRecommendation);
        let state = parse_message(&event(
            "EC2 Instance State-change Notification",
            "aws.ec2",
            serde_json::json!({"instance-id": "i-0abc", "state": "running"}),
        ))
        .unwrap()
        .unwrap();
        assert!(!state.is_disruptive());
        let health = parse_message(&event(
            "AWS Health Event",
            "aws.health",
            serde_json::json!({"service": "EC2", "eventTypeCategory": "scheduledChange",
                "affectedEntities": [{"entityValue": "i-2"}, {"entityValue": "i-1"}]}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(health.kind, InterruptionKind::ScheduledChange);
        assert_eq!(health.instance_ids, ["i-1", "i-2"]);
        assert!(health.is_disruptive());
    }

    #[test]
    fn unknown_events_are_ignored_and_malformed_ones_are_errors() {
        assert_eq!(
            parse_message(&event(
                "EC2 AMI State Change",
                "aws.ec2",
                serde_json::json!({})
            ))
            .unwrap(),
            None
        );
        assert!(matches!(
            parse_message("not json"),
            Err(Error::ParseMessage(_))
        ));
        let no_state = event(
            "EC2 Instance State-change Notification",
            "aws.ec2",
            serde_json::json!({"instance-id": "i-1"}),
        );
        assert!(parse_message(&no_state).is_err());
    }
}
