//! The pure core of Stowage: scheduling simulation and cost-minimal bin packing.
//!
//! Invariant: no I/O, no async, no clock reads, no kube client. Same input, same plan.
//!
//! - [`model`]: instance types, offerings, resources (the cloud provider's contract).
//! - [`domain`]: pods, nodes, NodePools, daemonsets, [`SolveInput`], [`SolveOptions`], [`Plan`].
//! - [`solve()`]: the solve itself, one file per phase under `solve/` (the map is at the top of
//!   `solve/mod.rs`); [`bound`]: the lower bound on its cost.
//! - [`predicates`]: kube-scheduler's filters over existing nodes ([`predicates::ClusterIndex`]).
//! - [`convert`]: Kubernetes objects to domain types (the only place `k8s_openapi` is read).
//! - [`catalog`]: deterministic synthetic catalogues for benchmarks, tests and the fake cloud.
//! - [`hash`]: the fast, deterministic hasher of the solver's own maps.

pub mod bitset;
pub mod bound;
pub mod catalog;
pub mod consolidate;
pub mod convert;
pub mod domain;
pub mod hash;
pub mod model;
pub mod predicates;
pub mod solve;

pub use domain::{
    CapScope, CapViolation, CapacityChange, DaemonSet, ExistingNode, HostPort, LabelSelector,
    NewClaim, NodeAffinityTerm, NodeNameRequirement, NodeTaint, OnDemandCap, Placement, Plan,
    PodAffinityTerm, PodKey, PodRequest, PoolSpec, PoolUsage, PreferredTerm, SolveInput,
    SolveOptions, TaintEffect, Toleration, TolerationOperator, TopologySpread,
    WeightedPodAffinityTerm, WhenUnsatisfiable, on_demand_caps_allow,
};
pub use model::{InstanceType, Offering, Overhead, Resources};
pub use solve::{displace, simulate_without, solve};
