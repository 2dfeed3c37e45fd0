//! `stowage.dev/v1` NodeClaim: one request for one node, and what became of it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::{self, Condition, impl_condition_helpers};
use crate::duration::{Duration, NillableDuration};
use crate::labels;
use crate::requirements::{Requirement, RequirementError, Requirements};

/// The default `expireAfter`: 30 days.
pub const DEFAULT_EXPIRE_AFTER: NillableDuration = NillableDuration::from_hours(720);

pub(crate) fn default_expire_after() -> NillableDuration {
    DEFAULT_EXPIRE_AFTER
}

/// A reference to the node class (e.g. an EC2NodeClass) nodes are launched from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassRef {
    /// API group of the node class, `aws.stowage.dev`.
    pub group: String,
    /// Kind of the node class, `EC2NodeClass`.
    pub kind: String,
    /// Name of the node class.
    pub name: String,
}

impl NodeClassRef {
    /// A reference to the EC2NodeClass `name`.
    pub fn ec2(name: &str) -> Self {
        NodeClassRef {
            group: labels::AWS_GROUP.to_string(),
            kind: "EC2NodeClass".to_string(),
            name: name.to_string(),
        }
    }
}

impl Default for NodeClassRef {
    /// The EC2NodeClass named `default` (convenient in tests; manifests must name it).
    fn default() -> Self {
        NodeClassRef::ec2("default")
    }
}

/// Resources a NodeClaim asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// The summed requests of the pods (and daemonsets) the claim was made for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// The desired node: what it must satisfy and how long it may live.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    singular = "nodeclaim",
    status = "NodeClaimStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "stowage",
    doc = "A request for one node: what it must satisfy, and the instance that was bought for it.",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".metadata.labels.node\\.kubernetes\\.io/instance-type"}"#,
    printcolumn = r#"{"name": "Capacity", "type": "string", "jsonPath": ".metadata.labels.stowage\\.dev/capacity-type"}"#,
    printcolumn = r#"{"name": "Zone", "type": "string", "jsonPath": ".metadata.labels.topology\\.kubernetes\\.io/zone"}"#,
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".status.nodeName"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name": "ID", "type": "string", "jsonPath": ".status.providerID", "priority": 1}"#,
    printcolumn = r#"{"name": "NodePool", "type": "string", "jsonPath": ".metadata.labels.stowage\\.dev/nodepool", "priority": 1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// Requirements the node must satisfy (instance type, zone, capacity type, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<Requirement>,
    /// Resources the node must have room for.
    #[serde(default)]
    pub resources: ResourceRequirements,
    /// Taints the node carries for its whole life.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present at boot that a daemon removes; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// The node class to launch from.
    pub node_class_ref: NodeClassRef,
    /// The node is replaced this long after creation (`Never` disables expiry).
    #[serde(default = "default_expire_after")]
    pub expire_after: NillableDuration,
    /// The longest a drain may take before pods are deleted regardless of PDBs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<Duration>,
}

impl Default for NodeClaimSpec {
    fn default() -> Self {
        NodeClaimSpec {
            requirements: Vec::new(),
            resources: ResourceRequirements::default(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            node_class_ref: NodeClassRef::default(),
            expire_after: DEFAULT_EXPIRE_AFTER,
            termination_grace_period: None,
        }
    }
}

/// What the cloud and the cluster report about a NodeClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// The Node registered for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The cloud's id of the instance, `aws:///<zone>/<instance-id>`.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// The image the instance booted.
    #[serde(default, rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Total resources of the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    /// Resources left for pods after system overhead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, Quantity>,
    /// When a pod was last bound to or removed from the node (consolidation waits on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl_condition_helpers!(NodeClaimStatus);

impl NodeClaim {
    /// The condition of `type_`, if the claim has a status and the condition is set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref().and_then(|s| s.condition(type_))
    }

    /// Whether the condition of `type_` is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(Condition::is_true)
    }

    /// The status, created empty if absent.
    pub fn status_mut(&mut self) -> &mut NodeClaimStatus {
        self.status.get_or_insert_with(NodeClaimStatus::default)
    }

    /// The provider id, once launched.
    pub fn provider_id(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.provider_id.as_deref())
    }

    /// The registered Node's name.
    pub fn node_name(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.node_name.as_deref())
    }

    /// The NodePool this claim belongs to (its `stowage.dev/nodepool` label).
    pub fn nodepool_name(&self) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()?
            .get(labels::NODEPOOL)
            .map(String::as_str)
    }

    /// A label of the claim.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// The claim's requirements, compiled.
    pub fn requirements(&self) -> Result<Requirements, RequirementError> {
        Requirements::from_requirements(&self.spec.requirements)
    }

    /// Launched, registered and initialized.
    pub fn is_ready(&self) -> bool {
        self.is_true(conditions::READY)
            || (self.is_true(conditions::LAUNCHED)
                && self.is_true(conditions::REGISTERED)
                && self.is_true(conditions::INITIALIZED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{INITIALIZED, LAUNCHED, REGISTERED};

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn readiness_follows_the_lifecycle_conditions() {
        let mut claim = NodeClaim::new("c1", NodeClaimSpec::default());
        assert!(!claim.is_ready());
        assert!(claim.condition(LAUNCHED).is_none());
        claim.status_mut().set_true(LAUNCHED, "Launched", now());
        claim.status_mut().set_true(REGISTERED, "Registered", now());
        assert!(!claim.is_ready());
        claim
            .status_mut()
            .set_true(INITIALIZED, "Initialized", now());
        assert!(claim.is_ready());
        claim
            .status_mut()
            .set_false(INITIALIZED, "NodeNotReady", "node went away", now());
        assert!(!claim.is_ready());
        assert_eq!(
            claim.condition(INITIALIZED).unwrap().message,
            "node went away"
        );
    }

    #[test]
    fn accessors_read_labels_and_status() {
        let mut claim = NodeClaim::new("c1", NodeClaimSpec::default());
        claim.metadata.labels = Some([(labels::NODEPOOL.to_string(), "web".to_string())].into());
        claim.status_mut().provider_id = Some("aws:///us-east-1a/i-0abc".into());
        assert_eq!(claim.nodepool_name(), Some("web"));
        assert_eq!(claim.provider_id(), Some("aws:///us-east-1a/i-0abc"));
        assert_eq!(claim.node_name(), None);
        assert_eq!(claim.spec.expire_after, DEFAULT_EXPIRE_AFTER);
        let json = serde_json::to_value(&claim).unwrap();
        assert_eq!(json["status"]["providerID"], "aws:///us-east-1a/i-0abc");
        assert_eq!(json["spec"]["expireAfter"], "720h");
        assert_eq!(json["spec"]["nodeClassRef"]["kind"], "EC2NodeClass");
    }
}
