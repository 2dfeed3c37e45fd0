//! The AWS calls Stowage makes, as narrow async traits (one per service), their implementations over
//! the official SDK clients, and client construction from [`AwsConfig`].
//!
//! Key decision: everything above this module talks to AWS through `Ec2Api`, `IamApi`, `PricingApi`,
//! `SqsApi` and `SsmApi`, which list only the calls the provider uses and take and return the SDK's own
//! model types. Paginated calls return every page. Errors are flattened into one [`Error`] carrying
//! the AWS error code, so classification (capacity, throttling, not-found) happens in one place
//! (`crate::errors`), not at every call site. The SDK's standard retry (with exponential backoff on
//! throttling) runs underneath every call.

mod config;
mod ec2;
mod iam;
mod pricing;
mod sqs;
mod ssm;

use async_trait::async_trait;
use aws_sdk_ec2::types as ec2t;

pub use config::{AwsConfig, Clients, StaticCredentials};

/// A failed AWS call: the operation, and the AWS error code when the service answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The service answered with an error (`code` as AWS spells it, e.g. `RequestLimitExceeded`).
    #[error("aws {operation} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// No usable answer: connection, timeout, credentials, or an unparseable response.
    #[error("aws {operation} failed: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
}

impl Error {
    /// The AWS error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Service { code, .. } => Some(code),
            Error::Transport { .. } => None,
        }
    }

    /// The operation that failed (`CreateFleet`, ...).
    pub fn operation(&self) -> &'static str {
        match self {
            Error::Service { operation, .. } | Error::Transport { operation, .. } => operation,
        }
    }

    /// The message, without the operation and code.
    pub fn message(&self) -> &str {
        match self {
            Error::Service { message, .. } | Error::Transport { message, .. } => message,
        }
    }

    /// Builds the error from any SDK client's error.
    pub(crate) fn from_sdk<E, R>(
        operation: &'static str,
        err: aws_sdk_ec2::error::SdkError<E, R>,
    ) -> Self
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_ec2::error::ProvideErrorMetadata;
        match err.code() {
            Some(code) => Error::Service {
                operation,
                code: code.to_string(),
                message: err.message().unwrap_or_default().to_string(),
            },
            None => Error::Transport {
                operation,
                message: aws_sdk_ec2::error::DisplayErrorContext(&err).to_string(),
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The parameters of one `CreateFleet` call (`Type=instant` is implied).
#[derive(Clone, Debug, Default)]
pub struct CreateFleetRequest {
    /// Idempotency token (at most 64 ASCII characters).
    pub client_token: Option<String>,
    pub launch_template_configs: Vec<ec2t::FleetLaunchTemplateConfigRequest>,
    pub target_capacity: Option<ec2t::TargetCapacitySpecificationRequest>,
    pub spot_options: Option<ec2t::SpotOptionsRequest>,
    pub on_demand_options: Option<ec2t::OnDemandOptionsRequest>,
    pub tag_specifications: Vec<ec2t::TagSpecification>,
}

/// The result of one `CreateFleet` call: launched instances and per-override errors.
#[derive(Clone, Debug, Default)]
pub struct CreateFleetResponse {
    pub fleet_id: Option<String>,
    pub instances: Vec<ec2t::CreateFleetInstance>,
    pub errors: Vec<ec2t::CreateFleetError>,
}

/// The EC2 calls the provider makes.
#[async_trait]
pub trait Ec2Api: Send + Sync + std::fmt::Debug {
    /// DescribeInstanceTypes, every page, optionally filtered.
    async fn describe_instance_types(
        &self,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::InstanceTypeInfo>>;
    /// DescribeInstanceTypeOfferings for `location_type` (usually availability-zone), every page.
    async fn describe_instance_type_offerings(
        &self,
        location_type: ec2t::LocationType,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::InstanceTypeOffering>>;
    /// DescribeSpotPriceHistory (Linux/UNIX) since `start_time`, every page.
    async fn describe_spot_price_history(
        &self,
        instance_types: Vec<String>,
        start_time: Option<aws_smithy_types::DateTime>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::SpotPrice>>;
    /// DescribeSubnets by ids and/or filters, every page.
    async fn describe_subnets(
        &self,
        ids: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Subnet>>;
    /// DescribeSecurityGroups by ids and/or filters, every page.
    async fn describe_security_groups(
        &self,
        ids: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::SecurityGroup>>;
    /// DescribeImages by ids, owners and/or filters, every page.
    async fn describe_images(
        &self,
        ids: Vec<String>,
        owners: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Image>>;
    /// CreateLaunchTemplate; returns the created template.
    async fn create_launch_template(
        &self,
        name: String,
        data: ec2t::RequestLaunchTemplateData,
        tag_specifications: Vec<ec2t::TagSpecification>,
    ) -> Result<ec2t::LaunchTemplate>;
    /// DescribeLaunchTemplates by names and/or filters, every page.
    async fn describe_launch_templates(
        &self,
        names: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::LaunchTemplate>>;
    /// DeleteLaunchTemplate by name.
    async fn delete_launch_template(&self, name: String) -> Result<()>;
    /// CreateFleet with `Type=instant`.
    async fn create_fleet(&self, request: CreateFleetRequest) -> Result<CreateFleetResponse>;
    /// DescribeInstances by ids and/or filters, every page, flattened out of their reservations.
    async fn describe_instances(
        &self,
        ids: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Instance>>;
    /// TerminateInstances; returns the state changes.
    async fn terminate_instances(&self, ids: Vec<String>)
    -> Result<Vec<ec2t::InstanceStateChange>>;
    /// CreateTags on the resources.
    async fn create_tags(&self, resources: Vec<String>, tags: Vec<ec2t::Tag>) -> Result<()>;
}

/// The IAM calls the provider makes (instance profiles it manages for role-only node classes).
#[async_trait]
pub trait IamApi: Send + Sync + std::fmt::Debug {
    /// GetInstanceProfile; `None` when it does not exist (`NoSuchEntity`).
    async fn get_instance_profile(
        &self,
        name: String,
    ) -> Result<Option<aws_sdk_iam::types::InstanceProfile>>;
    /// CreateInstanceProfile under `path`, tagged.
    async fn create_instance_profile(
        &self,
        name: String,
        path: String,
        tags: Vec<aws_sdk_iam::types::Tag>,
    ) -> Result<()>;
    /// AddRoleToInstanceProfile (by role name).
    async fn add_role_to_instance_profile(&self, profile: String, role: String) -> Result<()>;
    /// RemoveRoleFromInstanceProfile (by role name).
    async fn remove_role_from_instance_profile(&self, profile: String, role: String) -> Result<()>;
    /// DeleteInstanceProfile (it must have no role).
    async fn delete_instance_profile(&self, name: String) -> Result<()>;
    /// ListInstanceProfiles under `path_prefix`, every page.
    async fn list_instance_profiles(
        &self,
        path_prefix: String,
    ) -> Result<Vec<aws_sdk_iam::types::InstanceProfile>>;
}

/// The AWS Price List calls the provider makes.
#[async_trait]
pub trait PricingApi: Send + Sync + std::fmt::Debug {
    /// GetProducts for a service code (`AmazonEC2`) with TERM_MATCH filters, every page; each item
    /// is one PriceList JSON document.
    async fn get_products(
        &self,
        service_code: String,
        filters: Vec<aws_sdk_pricing::types::Filter>,
    ) -> Result<Vec<String>>;
}

/// The SQS calls the interruption handler makes.
#[async_trait]
pub trait SqsApi: Send + Sync + std::fmt::Debug {
    /// ReceiveMessage (long poll of `wait_seconds`, up to `max_messages` of at most 10).
    async fn receive_messages(
        &self,
        queue_url: String,
        max_messages: i32,
        wait_seconds: i32,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>>;
    /// DeleteMessage by receipt handle.
    async fn delete_message(&self, queue_url: String, receipt_handle: String) -> Result<()>;
    /// GetQueueUrl of a queue name.
    async fn get_queue_url(&self, queue_name: String) -> Result<String>;
}

/// The SSM calls image discovery makes.
#[async_trait]
pub trait SsmApi: Send + Sync + std::fmt::Debug {
    /// GetParameter; `Ok(None)` when the parameter does not exist.
    async fn get_parameter(&self, name: String) -> Result<Option<String>>;
    /// GetParameters (batched by 10); the map holds the parameters that exist, by name.
    async fn get_parameters(
        &self,
        names: Vec<String>,
    ) -> Result<std::collections::BTreeMap<String, String>>;
}
