//! The AWS provider: `stowage_cloud::CloudProvider` for EC2, launching through CreateFleet without
//! node groups or auto-scaling groups.
//!
//! Key decision: every AWS call goes through the narrow per-service traits in [`sdk`], so the
//! provider's logic (discovery, launch selection, launch templates, fleet requests, error
//! classification, request coalescing) is plain Rust over those traits and is tested through the
//! real SDK against a moto-based emulator (`tests/fakeaws`).

pub mod catalog;
pub mod coalescer;
pub mod discovery;
pub mod errors;
pub mod fleet;
pub mod instance;
pub mod instance_profile;
pub mod interruption;
pub mod launch_template;
pub mod pricing;
pub mod provider;
pub mod sdk;
pub mod selection;
pub mod settings;
pub mod unavailable;
pub mod userdata;

pub use provider::AwsCloudProvider;
pub use sdk::{AwsConfig, Clients};
pub use settings::ProviderSettings;
