//! Well-known label, annotation, taint and finalizer names: the one place every other crate takes
//! them from, so a name is never spelled twice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The API group of NodePool and NodeClaim.
pub const GROUP: &str = "stowage.dev";
/// The API group of EC2NodeClass.
pub const AWS_GROUP: &str = "aws.stowage.dev";

// --- Stowage labels -------------------------------------------------------------------------
/// The NodePool a node (or NodeClaim) belongs to.
pub const NODEPOOL: &str = "stowage.dev/nodepool";
/// `spot`, `on-demand` or `reserved`.
pub const CAPACITY_TYPE: &str = "stowage.dev/capacity-type";
/// Set on a Node once its NodeClaim is registered.
pub const REGISTERED: &str = "stowage.dev/registered";
/// Set on a Node once its NodeClaim is initialized.
pub const INITIALIZED: &str = "stowage.dev/initialized";
/// The NodeClaim a Node or instance belongs to (also an EC2 tag).
pub const NODECLAIM: &str = "stowage.dev/nodeclaim";
/// The EC2NodeClass a node was launched from.
pub const EC2NODECLASS: &str = "aws.stowage.dev/ec2nodeclass";

// --- AWS instance labels --------------------------------------------------------------------
pub const INSTANCE_FAMILY: &str = "aws.stowage.dev/instance-family";
pub const INSTANCE_CATEGORY: &str = "aws.stowage.dev/instance-category";
pub const INSTANCE_GENERATION: &str = "aws.stowage.dev/instance-generation";
pub const INSTANCE_SIZE: &str = "aws.stowage.dev/instance-size";
pub const INSTANCE_CPU: &str = "aws.stowage.dev/instance-cpu";
pub const INSTANCE_MEMORY: &str = "aws.stowage.dev/instance-memory";
pub const INSTANCE_GPU_NAME: &str = "aws.stowage.dev/instance-gpu-name";
pub const INSTANCE_GPU_COUNT: &str = "aws.stowage.dev/instance-gpu-count";
pub const INSTANCE_GPU_MANUFACTURER: &str = "aws.stowage.dev/instance-gpu-manufacturer";
pub const INSTANCE_GPU_MEMORY: &str = "aws.stowage.dev/instance-gpu-memory";
/// Set only on fractional GPUs (e.g. `g6f`, a slice of an NVIDIA L4): the share of one GPU, as EC2's
/// `GpuPartitionSize` (`0.125`, `0.25`, `0.5`); `instance-gpu-count` is then the logical count.
pub const INSTANCE_GPU_PARTITION_SIZE: &str = "aws.stowage.dev/instance-gpu-partition-size";
pub const INSTANCE_ACCELERATOR_NAME: &str = "aws.stowage.dev/instance-accelerator-name";
pub const INSTANCE_ACCELERATOR_MANUFACTURER: &str =
    "aws.stowage.dev/instance-accelerator-manufacturer";
pub const INSTANCE_ACCELERATOR_COUNT: &str = "aws.stowage.dev/instance-accelerator-count";
/// FPGAs (`f2`): EC2's `FpgaInfo`.
pub const INSTANCE_FPGA_NAME: &str = "aws.stowage.dev/instance-fpga-name";
pub const INSTANCE_FPGA_MANUFACTURER: &str = "aws.stowage.dev/instance-fpga-manufacturer";
pub const INSTANCE_FPGA_COUNT: &str = "aws.stowage.dev/instance-fpga-count";
pub const INSTANCE_FPGA_MEMORY: &str = "aws.stowage.dev/instance-fpga-memory";
/// Media (video transcoding) accelerators (`vt1`): EC2's `MediaAcceleratorInfo`.
pub const INSTANCE_MEDIA_ACCELERATOR_NAME: &str = "aws.stowage.dev/instance-media-accelerator-name";
pub const INSTANCE_MEDIA_ACCELERATOR_MANUFACTURER: &str =
    "aws.stowage.dev/instance-media-accelerator-manufacturer";
pub const INSTANCE_MEDIA_ACCELERATOR_COUNT: &str =
    "aws.stowage.dev/instance-media-accelerator-count";
pub const INSTANCE_MEDIA_ACCELERATOR_MEMORY: &str =
    "aws.stowage.dev/instance-media-accelerator-memory";
/// `"true"` or `"false"`: EC2's `CurrentGeneration` flag (AWS's previous-generation types, e.g.
/// `m4`, `r3`, say `"false"`).
pub const INSTANCE_CURRENT_GENERATION: &str = "aws.stowage.dev/instance-current-generation";
pub const INSTANCE_NETWORK_BANDWIDTH: &str = "aws.stowage.dev/instance-network-bandwidth";
pub const INSTANCE_HYPERVISOR: &str = "aws.stowage.dev/instance-hypervisor";

// --- Standard Kubernetes labels -------------------------------------------------------------
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// Every label an instance type may carry; requirements on other keys in these domains are refused.
pub const WELL_KNOWN: &[&str] = &[
    NODEPOOL,
    CAPACITY_TYPE,
    INSTANCE_FAMILY,
    INSTANCE_CATEGORY,
    INSTANCE_GENERATION,
    INSTANCE_SIZE,
    INSTANCE_CPU,
    INSTANCE_MEMORY,
    INSTANCE_GPU_NAME,
    INSTANCE_GPU_COUNT,
    INSTANCE_GPU_MANUFACTURER,
    INSTANCE_GPU_MEMORY,
    INSTANCE_GPU_PARTITION_SIZE,
    INSTANCE_ACCELERATOR_NAME,
    INSTANCE_ACCELERATOR_MANUFACTURER,
    INSTANCE_ACCELERATOR_COUNT,
    INSTANCE_FPGA_NAME,
    INSTANCE_FPGA_MANUFACTURER,
    INSTANCE_FPGA_COUNT,
    INSTANCE_FPGA_MEMORY,
    INSTANCE_MEDIA_ACCELERATOR_NAME,
    INSTANCE_MEDIA_ACCELERATOR_MANUFACTURER,
    INSTANCE_MEDIA_ACCELERATOR_COUNT,
    INSTANCE_MEDIA_ACCELERATOR_MEMORY,
    INSTANCE_CURRENT_GENERATION,
    INSTANCE_NETWORK_BANDWIDTH,
    INSTANCE_HYPERVISOR,
    INSTANCE_TYPE,
    ZONE,
    REGION,
    ARCH,
    OS,
];

// --- Annotations, taints, finalizers ---------------------------------------------------------
/// A pod or node with this annotation set to `"true"` is never voluntarily disrupted.
pub const DO_NOT_DISRUPT: &str = "stowage.dev/do-not-disrupt";
/// Taint key put on a node that is being disrupted (effect NoSchedule).
pub const DISRUPTED_TAINT_KEY: &str = "stowage.dev/disrupted";
/// Taint key put on a node until its NodeClaim is registered (effect NoExecute).
pub const UNREGISTERED_TAINT_KEY: &str = "stowage.dev/unregistered";
/// Finalizer on NodeClaims and Nodes: the instance is terminated and pods drained before removal.
pub const TERMINATION_FINALIZER: &str = "stowage.dev/termination";
/// Hash of the NodePool template a NodeClaim was made from (static drift).
pub const NODEPOOL_HASH: &str = "stowage.dev/nodepool-hash";
/// On a NodeClaim whose instance the cloud announced it takes away: the event kind
/// (`spot_interruption`, `scheduled_change`, `rebalance_recommendation`). Set before its
/// replacement is launched, so a redelivered event never buys the replacement twice.
pub const INTERRUPTED: &str = "stowage.dev/interrupted";
/// On an interrupted NodeClaim: when the instance goes away (RFC 3339). The drain deletes the
/// pods still there in time for it, whatever PodDisruptionBudgets say.
pub const INTERRUPTION_DEADLINE: &str = "stowage.dev/interruption-deadline";
/// The version of the NodePool template hash function the claim was stamped with.
pub const NODEPOOL_HASH_VERSION: &str = "stowage.dev/nodepool-hash-version";
/// Hash of the EC2NodeClass fields a node was launched with (node-class drift).
pub const EC2NODECLASS_HASH: &str = "aws.stowage.dev/ec2nodeclass-hash";
/// The version of the EC2NodeClass hash function the claim was stamped with.
pub const EC2NODECLASS_HASH_VERSION: &str = "aws.stowage.dev/ec2nodeclass-hash-version";

// --- Extended resources ------------------------------------------------------------------------
pub const RESOURCE_NVIDIA_GPU: &str = "nvidia.com/gpu";
pub const RESOURCE_AMD_GPU: &str = "amd.com/gpu";
pub const RESOURCE_NEURON: &str = "aws.amazon.com/neuron";
pub const RESOURCE_NEURONCORE: &str = "aws.amazon.com/neuroncore";
pub const RESOURCE_HABANA_GAUDI: &str = "habana.ai/gaudi";
pub const RESOURCE_EFA: &str = "vpc.amazonaws.com/efa";
/// Accelerator resources: an instance type offering any of them is "exotic" (see
/// [`EXOTIC_LABELS`]); a pod requesting one of them asks for accelerator hardware.
pub const ACCELERATOR_RESOURCES: &[&str] = &[
    RESOURCE_NVIDIA_GPU,
    RESOURCE_AMD_GPU,
    RESOURCE_NEURON,
    RESOURCE_NEURONCORE,
    RESOURCE_HABANA_GAUDI,
];

/// Labels only accelerator and specialty hardware carries (GPUs, fractional GPUs, Neuron and
/// inference accelerators, FPGAs, media accelerators). An instance type with any of them, or with
/// an [`ACCELERATOR_RESOURCES`] capacity, is "exotic": it is bought only for pods that ask for it
/// (request the resource, or select it through the pod's or its NodePool's requirements). A
/// requirement on one of these keys that the type satisfies and that needs the label present
/// selects it.
pub const EXOTIC_LABELS: &[&str] = &[
    INSTANCE_GPU_NAME,
    INSTANCE_GPU_COUNT,
    INSTANCE_GPU_MANUFACTURER,
    INSTANCE_GPU_MEMORY,
    INSTANCE_GPU_PARTITION_SIZE,
    INSTANCE_ACCELERATOR_NAME,
    INSTANCE_ACCELERATOR_MANUFACTURER,
    INSTANCE_ACCELERATOR_COUNT,
    INSTANCE_FPGA_NAME,
    INSTANCE_FPGA_MANUFACTURER,
    INSTANCE_FPGA_COUNT,
    INSTANCE_FPGA_MEMORY,
    INSTANCE_MEDIA_ACCELERATOR_NAME,
    INSTANCE_MEDIA_ACCELERATOR_MANUFACTURER,
    INSTANCE_MEDIA_ACCELERATOR_COUNT,
    INSTANCE_MEDIA_ACCELERATOR_MEMORY,
];

/// How an instance is paid for. The declaration order is the solver's preference order:
/// reserved capacity (already paid) before spot before on-demand.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum CapacityType {
    #[serde(rename = "reserved")]
    Reserved,
    #[serde(rename = "spot")]
    Spot,
    #[serde(rename = "on-demand")]
    OnDemand,
}

impl CapacityType {
    pub const ALL: [CapacityType; 3] = [
        CapacityType::Reserved,
        CapacityType::Spot,
        CapacityType::OnDemand,
    ];

    /// The label value (`reserved`, `spot`, `on-demand`).
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::Reserved => "reserved",
            CapacityType::Spot => "spot",
            CapacityType::OnDemand => "on-demand",
        }
    }
}

impl fmt::Display for CapacityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a capacity-type label value that is none of the three.
#[derive(Debug, thiserror::Error)]
#[error("unknown capacity type {0:?} (expected reserved, spot or on-demand)")]
pub struct UnknownCapacityType(pub String);

impl FromStr for CapacityType {
    type Err = UnknownCapacityType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reserved" => Ok(CapacityType::Reserved),
            "spot" => Ok(CapacityType::Spot),
            "on-demand" => Ok(CapacityType::OnDemand),
            other => Err(UnknownCapacityType(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_type_round_trips_and_orders_by_preference() {
        for ct in CapacityType::ALL {
            assert_eq!(ct.as_str().parse::<CapacityType>().unwrap(), ct);
        }
        assert!(CapacityType::Reserved < CapacityType::Spot);
        assert!(CapacityType::Spot < CapacityType::OnDemand);
        assert!("demand".parse::<CapacityType>().is_err());
    }
}
