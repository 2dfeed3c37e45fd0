//! `Ec2Api` over aws-sdk-ec2. Paginated calls collect every page through the SDK's paginators
//! (which also cope with pages that come back short after server-side filtering).

use async_trait::async_trait;
use aws_sdk_ec2::types as ec2t;

use super::{CreateFleetRequest, CreateFleetResponse, Ec2Api, Error, Result};

/// The EC2 client.
#[derive(Clone, Debug)]
pub struct SdkEc2(pub aws_sdk_ec2::Client);

fn some_if_any<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v) }
}

#[async_trait]
impl Ec2Api for SdkEc2 {
    async fn describe_instance_types(
        &self,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::InstanceTypeInfo>> {
        self.0
            .describe_instance_types()
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeInstanceTypes", e))
    }

    async fn describe_instance_type_offerings(
        &self,
        location_type: ec2t::LocationType,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::InstanceTypeOffering>> {
        self.0
            .describe_instance_type_offerings()
            .location_type(location_type)
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeInstanceTypeOfferings", e))
    }

    async fn describe_spot_price_history(
        &self,
        instance_types: Vec<String>,
        start_time: Option<aws_smithy_types::DateTime>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::SpotPrice>> {
        let types = instance_types
            .iter()
            .map(|t| ec2t::InstanceType::from(t.as_str()))
            .collect::<Vec<_>>();
        self.0
            .describe_spot_price_history()
            .set_instance_types(some_if_any(types))
            .product_descriptions("Linux/UNIX")
            .set_start_time(start_time)
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeSpotPriceHistory", e))
    }

    async fn describe_subnets(
        &self,
        ids: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Subnet>> {
        self.0
            .describe_subnets()
            .set_subnet_ids(some_if_any(ids))
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeSubnets", e))
    }

    async fn describe_security_groups(
        &self,
        ids: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::SecurityGroup>> {
        self.0
            .describe_security_groups()
            .set_group_ids(some_if_any(ids))
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeSecurityGroups", e))
    }

    async fn describe_images(
        &self,
        ids: Vec<String>,
        owners: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Image>> {
        self.0
            .describe_images()
            .set_image_ids(some_if_any(ids))
            .set_owners(some_if_any(owners))
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeImages", e))
    }

    async fn create_launch_template(
        &self,
        name: String,
        data: ec2t::RequestLaunchTemplateData,
        tag_specifications: Vec<ec2t::TagSpecification>,
    ) -> Result<ec2t::LaunchTemplate> {
        let out = self
            .0
            .create_launch_template()
            .launch_template_name(name.clone())
            .launch_template_data(data)
            .set_tag_specifications(some_if_any(tag_specifications))
            .send()
            .await
            .map_err(|e| Error::from_sdk("CreateLaunchTemplate", e))?;
        out.launch_template.ok_or_else(|| Error::Transport {
            operation: "CreateLaunchTemplate",
            message: format!("response for launch template {name} carries no template"),
        })
    }

    async fn describe_launch_templates(
        &self,
        names: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::LaunchTemplate>> {
        self.0
            .describe_launch_templates()
            .set_launch_template_names(some_if_any(names))
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeLaunchTemplates", e))
    }

    async fn delete_launch_template(&self, name: String) -> Result<()> {
        self.0
            .delete_launch_template()
            .launch_template_name(name)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteLaunchTemplate", e))?;
        Ok(())
    }

    async fn create_fleet(&self, request: CreateFleetRequest) -> Result<CreateFleetResponse> {
        let out = self
            .0
            .create_fleet()
            .r#type(ec2t::FleetType::Instant)
            .set_client_token(request.client_token)
            .set_launch_template_configs(Some(request.launch_template_configs))
            .set_target_capacity_specification(request.target_capacity)
            .set_spot_options(request.spot_options)
            .set_on_demand_options(request.on_demand_options)
            .set_tag_specifications(some_if_any(request.tag_specifications))
            .send()
            .await
            .map_err(|e| Error::from_sdk("CreateFleet", e))?;
        Ok(CreateFleetResponse {
            fleet_id: out.fleet_id,
            instances: out.instances.unwrap_or_default(),
            errors: out.errors.unwrap_or_default(),
        })
    }

    async fn describe_instances(
        &self,
        ids: Vec<String>,
        filters: Vec<ec2t::Filter>,
    ) -> Result<Vec<ec2t::Instance>> {
        let reservations: Vec<ec2t::Reservation> = self
            .0
            .describe_instances()
            .set_instance_ids(some_if_any(ids))
            .set_filters(some_if_any(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("DescribeInstances", e))?;
        Ok(reservations
            .into_iter()
            .flat_map(|r| r.instances.unwrap_or_default())
            .collect())
    }

    async fn terminate_instances(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<ec2t::InstanceStateChange>> {
        let out = self
            .0
            .terminate_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .map_err(|e| Error::from_sdk("TerminateInstances", e))?;
        Ok(out.terminating_instances.unwrap_or_default())
    }

    async fn create_tags(&self, resources: Vec<String>, tags: Vec<ec2t::Tag>) -> Result<()> {
        self.0
            .create_tags()
            .set_resources(Some(resources))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| Error::from_sdk("CreateTags", e))?;
        Ok(())
    }
}
