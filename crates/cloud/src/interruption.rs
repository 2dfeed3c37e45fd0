//! Instance events the cloud announces before (or as) it takes an instance away — spot
//! interruption warnings, rebalance recommendations, scheduled maintenance, state changes — as
//! typed events, and the [`InterruptionSource`] the controllers read them from.
//!
//! Key decision: a source hands out *messages* and the core acknowledges each one only after it
//! handled every event in it, so a crash mid-way redelivers the message (the AWS provider reads
//! an SQS queue fed by EventBridge; the fake cloud keeps an in-memory queue). A message that is
//! not an event the core acts on is still a message: it says why (`Ignored`, `Malformed`), so
//! the core counts and acknowledges it and it never blocks the queue.

use async_trait::async_trait;

use crate::{OfferingKey, Result};

/// The state an instance moved to, for the states that take it away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceStateChange {
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceStateChange {
    /// EC2's name of the state (`shutting-down`); `None` for states that do not take the
    /// instance away (`pending`, `running`).
    pub fn parse(state: &str) -> Option<Self> {
        match state {
            "stopping" => Some(Self::Stopping),
            "stopped" => Some(Self::Stopped),
            "shutting-down" => Some(Self::ShuttingDown),
            "terminated" => Some(Self::Terminated),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
        }
    }
}

/// What the cloud announced for an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InterruptionKind {
    /// The spot instance will be reclaimed in about two minutes.
    SpotInterruption,
    /// The spot instance is at elevated risk of interruption (no deadline).
    RebalanceRecommendation,
    /// The cloud scheduled maintenance or retirement of the instance.
    ScheduledChange,
    /// The instance is stopping or gone.
    StateChange(InstanceStateChange),
}

impl InterruptionKind {
    /// A short, bounded label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpotInterruption => "spot_interruption",
            Self::RebalanceRecommendation => "rebalance_recommendation",
            Self::ScheduledChange => "scheduled_change",
            Self::StateChange(_) => "state_change",
        }
    }
}

/// One event about one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionEvent {
    pub kind: InterruptionKind,
    /// The provider's instance id (`i-0abc...`): the last path segment of a provider id.
    pub instance_id: String,
    /// When the cloud emitted the event, when known.
    pub time: Option<jiff::Timestamp>,
    /// The offering the instance runs on, when the message says (the core otherwise takes it
    /// from the NodeClaim).
    pub offering: Option<OfferingKey>,
}

impl InterruptionEvent {
    pub fn new(kind: InterruptionKind, instance_id: &str) -> Self {
        Self {
            kind,
            instance_id: instance_id.to_string(),
            time: None,
            offering: None,
        }
    }

    pub fn at(mut self, time: jiff::Timestamp) -> Self {
        self.time = Some(time);
        self
    }

    /// Whether `provider_id` (`aws:///us-east-1a/i-0abc`, `fake:///zone/i-000001`) names this
    /// event's instance.
    pub fn is_for(&self, provider_id: &str) -> bool {
        !self.instance_id.is_empty() && provider_id.rsplit('/').next() == Some(&self.instance_id)
    }
}

/// What a message turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageContent {
    /// One or more instance events (an AWS Health event may name several instances).
    Events(Vec<InterruptionEvent>),
    /// A well-formed message of a kind the core does not act on (its type, for the log).
    Ignored(String),
    /// A message that could not be read (why, for the log; never the body).
    Malformed(String),
}

/// The receipt of a message, given back to acknowledge it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckHandle(pub String);

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptionMessage {
    /// The message's id at the source (for logs).
    pub id: String,
    pub ack: AckHandle,
    pub content: MessageContent,
}

/// Where interruption messages come from.
///
/// Contract: [`InterruptionSource::receive`] waits (long-polls) up to its own bound for at
/// least one message and returns at most [`MAX_BATCH`]; a message not acknowledged comes back
/// later (at-least-once), so handling must be idempotent; [`InterruptionSource::acknowledge`]
/// deletes it.
#[async_trait]
pub trait InterruptionSource: Send + Sync {
    async fn receive(&self) -> Result<Vec<InterruptionMessage>>;
    async fn acknowledge(&self, ack: &AckHandle) -> Result<()>;
    /// A short name for logs (`sqs`, `fake`).
    fn name(&self) -> &'static str;
}

/// The most messages one receive returns (SQS's limit).
pub const MAX_BATCH: usize = 10;

#[async_trait]
impl<S: InterruptionSource + ?Sized> InterruptionSource for std::sync::Arc<S> {
    async fn receive(&self) -> Result<Vec<InterruptionMessage>> {
        (**self).receive().await
    }
    async fn acknowledge(&self, ack: &AckHandle) -> Result<()> {
        (**self).acknowledge(ack).await
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_match_provider_ids_by_instance_id() {
        let e = InterruptionEvent::new(InterruptionKind::SpotInterruption, "i-0abc");
        assert!(e.is_for("aws:///us-east-1a/i-0abc"));
        assert!(!e.is_for("aws:///us-east-1a/i-0abcd"));
        assert!(!InterruptionEvent::new(InterruptionKind::SpotInterruption, "").is_for("x/"));
        assert_eq!(
            InstanceStateChange::parse("shutting-down"),
            Some(InstanceStateChange::ShuttingDown)
        );
        assert_eq!(InstanceStateChange::parse("running"), None);
        assert_eq!(
            InterruptionKind::StateChange(InstanceStateChange::Stopped).as_str(),
            "state_change"
        );
    }
}
