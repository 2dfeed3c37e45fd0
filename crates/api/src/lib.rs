//! The Stowage API: `stowage.dev/v1` NodePool and NodeClaim, `aws.stowage.dev/v1` EC2NodeClass,
//! the well-known labels, the requirement algebra, validation with field paths and CRD generation.
//!
//! Key decision: this crate holds data and pure functions only (no client, no I/O), so the solver,
//! the controllers and the simulator share one definition of every object and every rule.

pub mod labels;
pub mod quantity;

pub use labels::CapacityType;
