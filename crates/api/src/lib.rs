//! The Stowage API: `stowage.dev/v1` NodePool and NodeClaim, `aws.stowage.dev/v1` EC2NodeClass,
//! the well-known labels, the requirement algebra, validation with field paths and CRD generation.
//!
//! Key decision: this crate holds data and pure functions only (no client, no I/O), so the solver,
//! the controllers and the simulator share one definition of every object and every rule.

pub mod conditions;
pub mod crds;
pub mod cron;
pub mod duration;
pub mod ec2nodeclass;
pub mod key;
pub mod labels;
pub mod nodeclaim;
pub mod nodepool;
pub mod openapi;
pub mod quantity;
pub mod reference;
pub mod requirements;
pub mod stamp;
pub mod validation;

pub use conditions::{Condition, ConditionStatus};
pub use duration::{Duration, NillableDuration};
pub use ec2nodeclass::{
    AmiFamily, AmiSelectorTerm, BlockDevice, BlockDeviceMapping, CapacityReservationSelectorTerm,
    EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus, KubeletConfiguration, MetadataOptions,
    SecurityGroupSelectorTerm, SubnetSelectorTerm,
};
pub use key::{key_of, namespaced_key};
pub use labels::CapacityType;
pub use nodeclaim::{
    NodeClaim, NodeClaimSpec, NodeClaimStatus, NodeClassRef, ResourceRequirements,
};
pub use nodepool::{
    Budget, CapacityMix, CapacityMixScope, ConsolidationPolicy, Disruption, DisruptionReason,
    NodeClaimTemplate, NodeClaimTemplateSpec, NodePool, NodePoolSelector, NodePoolSpec,
    NodePoolStatus, SpotBlastRadius, TemplateMetadata,
};
pub use requirements::{Operator, Requirement, Requirements, ValueSet};
pub use stamp::{HashStamp, StampCheck};
pub use validation::FieldError;
