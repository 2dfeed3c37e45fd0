//! Test doubles of the SDK traits for the catalogue and pricing tests: canned answers for the
//! calls those modules make, a transport error for every other call.

use async_trait::async_trait;
use aws_sdk_ec2::types as ec2t;

use crate::sdk::{CreateFleetRequest, CreateFleetResponse, Ec2Api, Error, PricingApi, Result};

fn unexpected<T>(operation: &'static str) -> Result<T> {
    Err(Error::Transport {
        operation,
        message: "not expected in this test".into(),
    })
}

/// Canned EC2 answers; `fail` makes every call fail with a service error of that code.
#[derive(Debug, Default)]
pub struct StubEc2 {
    pub types: Vec<ec2t::InstanceTypeInfo>,
    pub offerings: Vec<ec2t::InstanceTypeOffering>,
    pub spot: Vec<ec2t::SpotPrice>,
    pub fail: Option<String>,
}

impl StubEc2 {
    fn answer<T: Clone>(&self, operation: &'static str, value: &[T]) -> Result<Vec<T>> {
        match &self.fail {
            Some(code) => Err(Error::Service {
                operation,
                code: code.clone(),
                message: "stub".into(),
            }),
            None => Ok(value.to_vec()),
        }
    }
}

#[async_trait]
impl Ec2Api for StubEc2 {
    async fn describe_instance_types(
        &self,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::InstanceTypeInfo>> {
        self.answer("DescribeInstanceTypes", &self.types)
    }
    async fn describe_instance_type_offerings(
        &self,
        _l: ec2t::LocationType,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::InstanceTypeOffering>> {
        self.answer("DescribeInstanceTypeOfferings", &self.offerings)
    }
    async fn describe_spot_price_history(
        &self,
        _t: Vec<String>,
        _s: Option<aws_smithy_types::DateTime>,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::SpotPrice>> {
        self.answer("DescribeSpotPriceHistory", &self.spot)
    }
    async fn describe_subnets(
        &self,
        _i: Vec<String>,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Subnet>> {
        unexpected("DescribeSubnets")
    }
    async fn describe_security_groups(
        &self,
        _i: Vec<String>,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::SecurityGroup>> {
        unexpected("DescribeSecurityGroups")
    }
    async fn describe_images(
        &self,
        _i: Vec<String>,
        _o: Vec<String>,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Image>> {
        unexpected("DescribeImages")
    }
    async fn create_launch_template(
        &self,
        _n: String,
        _d: ec2t::RequestLaunchTemplateData,
        _t: Vec<ec2t::TagSpecification>,
    ) -> Result<ec2t::LaunchTemplate> {
        unexpected("CreateLaunchTemplate")
    }
    async fn describe_launch_templates(
        &self,
        _n: Vec<String>,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::LaunchTemplate>> {
        unexpected("DescribeLaunchTemplates")
    }
    async fn delete_launch_template(&self, _n: String) -> Result<()> {
        unexpected("DeleteLaunchTemplate")
    }
    async fn create_fleet(&self, _r: CreateFleetRequest) -> Result<CreateFleetResponse> {
        unexpected("CreateFleet")
    }
    async fn describe_instances(
        &self,
        _i: Vec<String>,
        _f: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Instance>> {
        unexpected("DescribeInstances")
    }
    async fn terminate_instances(&self, _i: Vec<String>) -> Result<Vec<ec2t::InstanceStateChange>> {
        unexpected("TerminateInstances")
    }
    async fn create_tags(&self, _r: Vec<String>, _t: Vec<ec2t::Tag>) -> Result<()> {
        unexpected("CreateTags")
    }
}

/// Canned GetProducts pages (every item at once), or a failure.
#[derive(Debug, Default)]
pub struct StubPricing {
    pub items: Vec<String>,
    pub fail: bool,
}

#[async_trait]
impl PricingApi for StubPricing {
    async fn get_products(
        &self,
        _service_code: String,
        _filters: Vec<aws_sdk_pricing::types::Filter>,
    ) -> Result<Vec<String>> {
        if self.fail {
            return Err(Error::Transport {
                operation: "GetProducts",
                message: "unreachable".into(),
            });
        }
        Ok(self.items.clone())
    }
}
