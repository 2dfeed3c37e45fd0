//! The `CloudProvider` trait the controllers drive, the typed errors they branch on, a `Metered`
//! decorator, and (feature `fake`) an in-memory provider for tests, the simulator and benchmarks.
//!
//! Key decision: controllers never name a cloud type; everything cloud-specific is behind this
//! trait, and failures that change what the core does (capacity, not-found, throttling) are
//! distinct variants rather than strings.

#[cfg(feature = "fake")]
pub mod ec2_model;
#[cfg(feature = "fake")]
pub mod fake;
pub mod interruption;
pub mod metered;

use async_trait::async_trait;
use stowage_solver::InstanceType;

pub use interruption::{
    AckHandle, InstanceStateChange, InterruptionEvent, InterruptionKind, InterruptionMessage,
    InterruptionSource, MessageContent,
};
pub use metered::{Metered, OperationStats};
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

/// The Kubernetes kind of a provider's node classes (the controllers watch it generically).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeClassKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The resource name in URLs (`nodeclasses`).
    pub plural: String,
}

impl NodeClassKind {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        }
    }

    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// What a provider made of one node class: whether it can launch, and the rest of its status.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeClassStatus {
    pub ready: bool,
    /// A CamelCase reason for the `Ready` condition (`Ready`, `NotReady`).
    pub reason: String,
    /// Why it is not ready, in words a person can act on (empty when ready).
    pub message: String,
    /// The `status` fields other than `conditions`, in the node class's schema.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl NodeClassStatus {
    /// Ready, with no other status fields.
    pub fn ready() -> Self {
        Self {
            ready: true,
            reason: "Ready".to_string(),
            message: String::new(),
            fields: serde_json::Map::new(),
        }
    }

    /// Not ready because of `message`.
    pub fn not_ready(message: &str) -> Self {
        Self {
            ready: false,
            reason: "NotReady".to_string(),
            message: message.to_string(),
            fields: serde_json::Map::new(),
        }
    }
}

/// Errors the core branches on. Messages are lower-case and say what failed. `Clone`, so one
/// failed batched call can answer every caller that joined it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The instance (or the NodeClaim's instance) does not exist (any more).
    #[error("instance not found: {0}")]
    NotFound(String),
    /// None of the requested offerings could be filled; they are now cached unavailable.
    #[error("insufficient capacity for {} offering(s)", offerings.len())]
    InsufficientCapacity { offerings: Vec<OfferingKey> },
    /// The node class was resolved and cannot launch (nothing matched its selectors, invalid
    /// user data), or it does not exist: the launch fails for good.
    #[error("node class not ready: {reason}")]
    NodeClassNotReady { reason: String },
    /// The provider has not resolved the node class yet (just started, or its API failed): the
    /// caller waits and retries; this is never a reason to give up on a NodeClaim.
    #[error("node class {name} is not resolved yet")]
    NodeClassNotResolved { name: String },
    /// The launch failed for another reason; `code` is the provider's error code.
    #[error("failed to launch instance: {code}: {message}")]
    Launch { code: String, message: String },
    /// The provider's API throttled us after retries.
    #[error("cloud API throttled: {0}")]
    Throttled(String),
    /// Any other provider failure (network, auth, unexpected response).
    #[error("cloud provider call {operation} failed: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
}

impl Error {
    /// A short, bounded label for metrics (`not_found`, `insufficient_capacity`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::InsufficientCapacity { .. } => "insufficient_capacity",
            Error::NodeClassNotReady { .. } => "node_class_not_ready",
            Error::NodeClassNotResolved { .. } => "node_class_not_resolved",
            Error::Launch { .. } => "launch",
            Error::Throttled(_) => "throttled",
            Error::Api { .. } => "api",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The operations of [`CloudProvider`], for metrics, recorded calls and injected errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Create,
    Delete,
    Get,
    List,
    InstanceTypes,
    IsDrifted,
    ReconcileNodeClass,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::Create,
        Operation::Delete,
        Operation::Get,
        Operation::List,
        Operation::InstanceTypes,
        Operation::IsDrifted,
        Operation::ReconcileNodeClass,
    ];

    /// A short, bounded label for metrics (`create`, `instance_types`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Get => "get",
            Operation::List => "list",
            Operation::InstanceTypes => "instance_types",
            Operation::IsDrifted => "is_drifted",
            Operation::ReconcileNodeClass => "reconcile_node_class",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cloud that can buy and release nodes for NodeClaims.
///
/// Contract: `create` is idempotent per NodeClaim (a retry with the same claim never buys a
/// second instance) and launches only the offerings the claim's requirements allow (the solver
/// chose them; the provider may drop offerings it knows are unavailable, never add any);
/// `delete` returns `Ok` when the cloud accepted the termination (the controllers call it once
/// and do not poll) and `NotFound` once the instance is gone; every instance it creates is tagged
/// with the cluster and the NodeClaim name, so `list` finds leaks. Node classes are the
/// provider's: the core watches their kind generically ([`CloudProvider::node_class_kind`]),
/// hands each object to [`CloudProvider::reconcile_node_class`] and writes back the status it
/// returns; `create` finds the class by the claim's `nodeClassRef`.
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
    /// The Kubernetes kind of this provider's node classes, which the controllers watch
    /// generically; `None` for a provider without node classes (every `nodeClassRef` is then
    /// taken as ready).
    fn node_class_kind(&self) -> Option<NodeClassKind> {
        None
    }
    /// Resolves one node class object (as the API server returned it, any kind's JSON),
    /// remembers the result for `create`, and says whether it is ready and which `status`
    /// fields to write. An `Err` means it could not be resolved now (for example the cloud's API
    /// failed); the class then stays unresolved and launches naming it wait.
    async fn reconcile_node_class(&self, class: &serde_json::Value) -> Result<NodeClassStatus> {
        let _ = class;
        Ok(NodeClassStatus::ready())
    }
    /// Forgets every resolved node class whose name is not in `names` (they were deleted).
    fn retain_node_classes(&self, names: &std::collections::BTreeSet<String>) {
        let _ = names;
    }
    /// Keeps `offering` out of [`CloudProvider::instance_types`] (shown unavailable) and out of
    /// launches for `ttl`, as an insufficient-capacity answer would: the core calls it for the
    /// offering of an interrupted spot instance, so the next batch does not buy it straight back.
    fn mark_unavailable(&self, offering: &OfferingKey, ttl: std::time::Duration) {
        let _ = (offering, ttl);
    }
    /// The expected interruption cost per hour of spot offerings (the core's learnt interruption
    /// rates, weighted), replacing the previous set. A provider that itself chooses among the
    /// offerings a claim allows may add it to their price when it ranks them, as the solver
    /// does. Default: ignored (AWS: CreateFleet's price-capacity-optimized allocation already
    /// weighs each pool's spare capacity; the solver's ranking decides types and sizes).
    fn set_interruption_costs(&self, costs: Vec<(OfferingKey, f64)>) {
        let _ = costs;
    }
    /// The stamp `create` writes on a claim launched from the node class `name` now (a hash of
    /// the class fields a node keeps), once the class is resolved; `None` for a provider without
    /// one. The drift controller writes it on claims that lack it (launched before stamps
    /// existed), so they are compared from then on instead of all drifting at once.
    fn node_class_stamp(&self, name: &str) -> Option<stowage_api::HashStamp> {
        let _ = name;
        None
    }
    /// A short name for logs and metrics (`aws`, `fake`).
    fn name(&self) -> &'static str;
}

/// A shared provider is a provider (so `Metered<Arc<dyn CloudProvider>>` and friends work).
#[async_trait]
impl<P: CloudProvider + ?Sized> CloudProvider for std::sync::Arc<P> {
    async fn create(&self, claim: &stowage_api::NodeClaim) -> Result<stowage_api::NodeClaim> {
        (**self).create(claim).await
    }
    async fn delete(&self, claim: &stowage_api::NodeClaim) -> Result<()> {
        (**self).delete(claim).await
    }
    async fn get(&self, provider_id: &str) -> Result<stowage_api::NodeClaim> {
        (**self).get(provider_id).await
    }
    async fn list(&self) -> Result<Vec<stowage_api::NodeClaim>> {
        (**self).list().await
    }
    async fn instance_types(&self, pool: &stowage_api::NodePool) -> Result<Vec<InstanceType>> {
        (**self).instance_types(pool).await
    }
    async fn is_drifted(&self, claim: &stowage_api::NodeClaim) -> Result<Option<DriftReason>> {
        (**self).is_drifted(claim).await
    }
    fn node_class_kind(&self) -> Option<NodeClassKind> {
        (**self).node_class_kind()
    }
    async fn reconcile_node_class(&self, class: &serde_json::Value) -> Result<NodeClassStatus> {
        (**self).reconcile_node_class(class).await
    }
    fn retain_node_classes(&self, names: &std::collections::BTreeSet<String>) {
        (**self).retain_node_classes(names)
    }
    fn mark_unavailable(&self, offering: &OfferingKey, ttl: std::time::Duration) {
        (**self).mark_unavailable(offering, ttl)
    }
    fn set_interruption_costs(&self, costs: Vec<(OfferingKey, f64)>) {
        (**self).set_interruption_costs(costs)
    }
    fn node_class_stamp(&self, name: &str) -> Option<stowage_api::HashStamp> {
        (**self).node_class_stamp(name)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}
