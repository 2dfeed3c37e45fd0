//! The simulated cluster Stowage's controllers are tested and demonstrated against: an in-memory
//! Kubernetes API server (in-process `tower::Service` and HTTP), a fake kube-scheduler and
//! kubelet, scenario files run in virtual time, and the report.
//!
//! Key decision: controllers reach the simulated cluster only through a real `kube::Client`
//! (the production code path); the simulator's own components use the store directly, which
//! keeps thousand-node scenarios fast without a second client implementation in the controllers.

pub mod apiserver;
pub mod cloudbridge;
pub mod cluster;
mod json;
pub mod report;
pub mod runner;
pub mod scenario;

pub use apiserver::{ApiServer, ApiServerOptions, ApiService, ServeLimits};
pub use cluster::{Cluster, ClusterOptions, node_class_kind};
pub use report::{Report, Sample};
pub use runner::{SimEnv, SimOptions, Simulation};
pub use scenario::Scenario;
