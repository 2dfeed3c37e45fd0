//! The `CloudProvider` trait the controllers drive, the typed errors they branch on, a `Metered`
//! decorator, and (feature `fake`) an in-memory provider for tests, the simulator and benchmarks.
//!
//! Key decision: controllers never name a cloud type; everything cloud-specific is behind this
//! trait, and failures that change what the core does (capacity, not-found, throttling) are
//! distinct variants rather than strings.

pub mod clock;

use async_trait::async_trait;
use stowage_solver::InstanceType;

pub use clock::{Clock, SharedClock, SystemClock, TokioClock};
pub use stowage_api::CapacityType;

/// An offering the cloud could not fill right now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferingKey {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

/// Why a NodeClaim no longer matches what would be launched today.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriftReason {
    /// The image the node runs is no longer selected by its node class.
    AmiDrift,
    SubnetDrift,
    SecurityGroupDrift,
    /// The node class changed in a way that affects launched nodes.
    NodeClassDrift,
    /// The instance type is gone from the catalogue.
    InstanceTypeNotFound,
}

impl DriftReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftReason::AmiDrift => "AMIDrift",
            DriftReason::SubnetDrift => "SubnetDrift",
            DriftReason::SecurityGroupDrift => "SecurityGroupDrift",
            DriftReason::NodeClassDrift => "NodeClassDrift",
            DriftReason::InstanceTypeNotFound => "InstanceTypeNotFound",
        }
    }
}

/// Errors the core branches on. Messages are lower-case and say what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The instance (or the NodeClaim's instance) does not exist (any more).
    #[error("instance not found: {0}")]
    NotFound(String),
    /// None of the requested offerings could be filled; they are now cached unavailable.
    #[error("insufficient capacity for {} offering(s)", offerings.len())]
    InsufficientCapacity { offerings: Vec<OfferingKey> },
    /// The node class is not resolved yet (no subnets, security groups or images).
    #[error("node class not ready: {reason}")]
    NodeClassNotReady { reason: String },
    /// The launch failed for another reason; `code` is the provider's error code.
    #[error("failed to launch instance: {code}: {message}")]
    Launch { code: String, message: String },
    /// The provider's API throttled us after retries.
    #[error("cloud API throttled: {0}")]
    Throttled(String),
    /// Any other provider failure (network, auth, unexpected response).
    #[error("cloud provider call {operation} failed: {message}")]
    Api { operation: &'static str, message: String },
}

impl Error {
    /// A short, bounded label for metrics (`not_found`, `insufficient_capacity`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::InsufficientCapacity { .. } => "insufficient_capacity",
            Error::NodeClassNotReady { .. } => "node_class_not_ready",
            Error::Launch { .. } => "launch",
            Error::Throttled(_) => "throttled",
            Error::Api { .. } => "api",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cloud that can buy and release nodes for NodeClaims.
///
/// Contract: `create` is idempotent per NodeClaim (a retry with the same claim never buys a
/// second instance); `delete` returns `NotFound` once the instance is gone; every instance it
/// creates is tagged with the cluster and the NodeClaim name, so `list` finds leaks.
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// Launches an instance for the claim and returns the claim with `status.providerID`,
    /// `status.capacity`, `status.allocatable` and the resolved labels (instance type, zone,
    /// capacity type) filled in.
    async fn create(&self, claim: &stowage_api::NodeClaim) -> Result<stowage_api::NodeClaim>;
    /// Terminates the claim's instance. `NotFound` when it is already gone.
    async fn delete(&self, claim: &stowage_api::NodeClaim) -> Result<()>;
    /// The instance behind a provider id, as a NodeClaim (status filled in).
    async fn get(&self, provider_id: &str) -> Result<stowage_api::NodeClaim>;
    /// Every instance this cluster owns, as NodeClaims (name from the instance's NodeClaim tag).
    async fn list(&self) -> Result<Vec<stowage_api::NodeClaim>>;
    /// The instance types (with offerings, prices and availability) a NodePool may use.
    async fn instance_types(&self, pool: &stowage_api::NodePool) -> Result<Vec<InstanceType>>;
    /// Whether the claim's instance drifted from what its node class would launch today.
    async fn is_drifted(&self, claim: &stowage_api::NodeClaim) -> Result<Option<DriftReason>>;
    /// A short name for logs and metrics (`aws`, `fake`).
    fn name(&self) -> &'static str;
}
