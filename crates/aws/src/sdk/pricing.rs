//! `PricingApi` over aws-sdk-pricing.

use async_trait::async_trait;

use super::{Error, PricingApi, Result};

/// The Price List client.
#[derive(Clone, Debug)]
pub struct SdkPricing(pub aws_sdk_pricing::Client);

#[async_trait]
impl PricingApi for SdkPricing {
    async fn get_products(
        &self,
        service_code: String,
        filters: Vec<aws_sdk_pricing::types::Filter>,
    ) -> Result<Vec<String>> {
        self.0
            .get_products()
            .service_code(service_code)
            .set_filters(Some(filters))
            .format_version("aws_v1")
            .max_results(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("GetProducts", e))
    }
}
