//! The AWS provider: `stowage_cloud::CloudProvider` for EC2, launching through CreateFleet without
//! node groups or auto-scaling groups.
//!
//! Key decision: every AWS call goes through the narrow per-service traits in [`sdk`], so the
//! provider's logic (discovery, launch templates, fleet requests, error classification, batching)
//! is plain Rust over those traits and is tested through the real SDK against a moto-based emulator.

pub mod sdk;
