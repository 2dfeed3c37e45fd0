//! Stowage's controllers: the cluster state fed by watchers, provisioning (pending pods to
//! NodeClaims), the NodeClaim lifecycle (launch, registration, initialization, liveness),
//! termination (drain then delete the instance), garbage collection, NodePool status, leader
//! election and metrics.
//!
//! Key decision: controllers talk to Kubernetes only through `kube::Client` and to the cloud only
//! through `stowage_cloud::CloudProvider`; tests and the simulator drive the same code against the
//! in-memory API server of `stowage-sim` and the fake cloud.

pub mod context;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod settings;
pub mod state;
pub mod watch;

pub use context::Context;
pub use metrics::Metrics;
pub use settings::Settings;
pub use state::ClusterState;
