//! The pure core of Stowage: scheduling simulation and cost-minimal bin packing.
//!
//! Invariant: no I/O, no async, no clock reads, no kube client. Same input, same plan.

pub mod model;

pub use model::{InstanceType, Offering, Overhead, Resources};
