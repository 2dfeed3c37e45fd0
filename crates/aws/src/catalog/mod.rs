//! The instance catalogue as the AWS provider reads it: the catalogue itself (records, conversion
//! to solver instance types, the embedded catalogue and prices) is the SDK-free
//! `stowage-aws-catalog`, re-exported here; this module adds the SDK side ([`sdk`]): reading
//! records and offerings from the live EC2 API ([`fetch`]).

pub mod sdk;

pub use sdk::{Fetched, RecordFromSdk, fetch, offerings_from_sdk, record_from_sdk};
pub use stowage_aws_catalog::{
    Arch, CatalogSettings, EmbeddedCatalog, Gpu, InferenceAccelerator, InstanceTypeRecord,
    NeuronDevice, build, convert, embedded, embedded_catalog, embedded_regions,
    embedded_with_prices, record, to_instance_type,
};

/// Errors of the catalogue's SDK side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("instance type {name} is not supported: {reason}")]
    UnsupportedInstanceType { name: String, reason: String },
    #[error("failed to describe instance types")]
    DescribeInstanceTypes(#[source] crate::sdk::Error),
    #[error("failed to describe instance type offerings")]
    DescribeOfferings(#[source] crate::sdk::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
