//! Stowage's controllers: the cluster state fed by watchers, provisioning (pending pods to
//! NodeClaims), the NodeClaim lifecycle (launch, registration, initialization, liveness),
//! termination (drain then delete the instance), garbage collection, NodePool status, spot
//! interruption handling, drift detection and expiry, disruption, leader election and metrics.
//!
//! Key decision: controllers talk to Kubernetes only through `kube::Client` and to the cloud only
//! through `stowage_cloud::CloudProvider`; tests and the simulator drive the same code against the
//! in-memory API server of `stowage-sim` and the fake cloud.

pub mod context;
pub mod disruption;
pub mod drift;
pub mod error;
pub mod events;
pub mod expiry;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod housekeeping;
pub mod interruption;
pub mod leader;
pub mod lean;
pub mod lifecycle;
pub mod metrics;
pub mod nodeclaim;
pub mod provisioning;
pub mod ratelimit;
pub mod runner;
pub mod settings;
pub mod snapshot;
pub mod state;
pub mod termination;
pub mod watch;

pub use context::Context;
pub use metrics::Metrics;
pub use runner::{Leadership, Running, run_until, start};
pub use settings::Settings;
pub use state::ClusterState;
