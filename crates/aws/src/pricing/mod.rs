//! Live instance prices: on-demand from the AWS Price List API (`GetProducts`, [`products`]), spot
//! from `DescribeSpotPriceHistory` (latest per type and zone, [`spot`]), kept in [`Pricing`], the
//! refreshable book the AWS provider reads. The book itself ([`PriceBook`], [`SpotPolicy`], the
//! [`PriceSource`] trait), the embedded on-demand fallback table and the synthetic spot prices are
//! SDK-free and live in `stowage_aws_catalog::pricing`, re-exported here.
//!
//! Key decision: [`Pricing`] starts from the embedded table, so a provider that never reaches the
//! Price List API still prices every known type.

pub mod products;
pub mod spot;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::{Arc, RwLock};

use crate::sdk::{Ec2Api, PricingApi};

pub use stowage_aws_catalog::pricing::{
    FALLBACK_REGION, FallbackTable, PriceBook, PriceSource, SpotPolicy, fallback,
    synthetic_spot_price,
};

/// Errors of the pricing module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to fetch on-demand prices")]
    FetchOnDemand(#[source] crate::sdk::Error),
    #[error("failed to fetch spot prices")]
    FetchSpot(#[source] crate::sdk::Error),
    #[error("failed to build the price list filter {field}: {message}")]
    BuildFilter {
        field: &'static str,
        message: String,
    },
    #[error("failed to parse price list item {index}: {message}")]
    ParseProduct { index: usize, message: String },
    #[error(transparent)]
    Table(#[from] stowage_aws_catalog::Error),
    #[error("the price list answered no on-demand price for region {region}")]
    EmptyOnDemand { region: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The live prices of one region, refreshed by the provider on a timer.
///
/// Starts from the embedded on-demand table with [`SpotPolicy::OnDemandCeiling`]; a successful
/// on-demand refresh replaces the on-demand prices, and the first successful spot refresh switches
/// the policy to [`SpotPolicy::Observed`]. A failed refresh keeps what was there.
#[derive(Debug)]
pub struct Pricing {
    region: String,
    book: RwLock<Arc<PriceBook>>,
}

impl Pricing {
    /// Prices for `region`, seeded from the embedded on-demand table.
    pub fn new(region: &str) -> Result<Self> {
        let table = FallbackTable::embedded()?;
        let mut book = PriceBook::new(SpotPolicy::OnDemandCeiling);
        book.set_on_demand(table.region_or_default(region).clone());
        Ok(Self::with_book(region, book))
    }

    /// Prices for `region` starting from `book` (tests).
    pub fn with_book(region: &str, book: PriceBook) -> Self {
        Self {
            region: region.to_string(),
            book: RwLock::new(Arc::new(book)),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The current prices (a cheap handle; later refreshes do not change it).
    pub fn snapshot(&self) -> Arc<PriceBook> {
        match self.book.read() {
            Ok(book) => Arc::clone(&book),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut PriceBook)) {
        let mut guard = match self.book.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut book = PriceBook::clone(&guard);
        f(&mut book);
        *guard = Arc::new(book);
    }

    /// Fetches every Linux, shared-tenancy on-demand price of the region from the Price List API
    /// and replaces the on-demand prices. Returns how many types got a price.
    pub async fn refresh_on_demand(&self, api: &dyn PricingApi) -> Result<usize> {
        let items = api
            .get_products(
                products::SERVICE_CODE.to_string(),
                products::on_demand_filters(&self.region)?,
            )
            .await
            .map_err(Error::FetchOnDemand)?;
        let prices = products::parse_on_demand(&items, &self.region)?;
        if prices.is_empty() {
            return Err(Error::EmptyOnDemand {
                region: self.region.clone(),
            });
        }
        let count = prices.len();
        self.update(|book| book.set_on_demand(prices));
        Ok(count)
    }

    /// Fetches the latest spot price per (type, zone) and merges it in; from then on a (type, zone)
    /// without an observed price has no spot offering. Returns how many prices were observed.
    pub async fn refresh_spot(
        &self,
        ec2: &dyn Ec2Api,
        start_time: Option<aws_smithy_types::DateTime>,
    ) -> Result<usize> {
        let history = ec2
            .describe_spot_price_history(Vec::new(), start_time, Vec::new())
            .await
            .map_err(Error::FetchSpot)?;
        let latest =
            spot::latest_prices(history.iter().filter_map(spot::SpotObservation::from_sdk));
        let count = latest.len();
        self.update(|book| {
            book.merge_spot(latest);
            book.set_policy(SpotPolicy::Observed);
        });
        Ok(count)
    }
}

impl PriceSource for Pricing {
    fn on_demand(&self, instance_type: &str) -> Option<f64> {
        self.snapshot().on_demand(instance_type)
    }

    fn spot(&self, instance_type: &str, zone: &str) -> Option<f64> {
        self.snapshot().spot(instance_type, zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(instance_type: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {"attributes": {
                "instanceType": instance_type, "regionCode": "us-east-1", "operatingSystem": "Linux",
                "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}},
            "terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"pricePerUnit": {"USD": usd}}}}}}
        })
        .to_string()
    }

    fn spot_row(t: &str, zone: &str, price: &str, secs: i64) -> aws_sdk_ec2::types::SpotPrice {
        aws_sdk_ec2::types::SpotPrice::builder()
            .instance_type(aws_sdk_ec2::types::InstanceType::from(t))
            .availability_zone(zone)
            .spot_price(price)
            .timestamp(aws_smithy_types::DateTime::from_secs(secs))
            .build()
    }

    #[tokio::test]
    async fn refresh_replaces_on_demand_and_switches_spot_to_observed() {
        let pricing = Pricing::new("us-east-1").unwrap();
        let api = testing::StubPricing {
            items: vec![product("m5.large", "0.1"), product("c5.large", "0.085")],
            fail: false,
        };
        assert_eq!(pricing.refresh_on_demand(&api).await.unwrap(), 2);
        assert_eq!(pricing.on_demand("m5.large"), Some(0.1));
        // The fetched list replaces the fallback table entirely.
        assert_eq!(pricing.on_demand("p5.48xlarge"), None);

        let ec2 = testing::StubEc2 {
            spot: vec![
                spot_row("m5.large", "us-east-1a", "0.04", 100),
                spot_row("m5.large", "us-east-1a", "0.03", 200),
            ],
            ..Default::default()
        };
        // Before the first spot refresh, spot is priced at on-demand.
        assert_eq!(pricing.spot("m5.large", "us-east-1b"), Some(0.1));
        assert_eq!(pricing.refresh_spot(&ec2, None).await.unwrap(), 1);
        assert_eq!(pricing.spot("m5.large", "us-east-1a"), Some(0.03));
        assert_eq!(pricing.spot("m5.large", "us-east-1b"), None);
    }

    #[tokio::test]
    async fn failed_refreshes_keep_the_previous_prices() {
        let pricing = Pricing::new("us-east-1").unwrap();
        let before = pricing.snapshot();
        let err = pricing
            .refresh_on_demand(&testing::StubPricing {
                items: vec![],
                fail: true,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FetchOnDemand(_)), "{err}");
        let err = pricing
            .refresh_on_demand(&testing::StubPricing {
                items: vec![],
                fail: false,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::EmptyOnDemand { .. }), "{err}");
        let ec2 = testing::StubEc2 {
            fail: Some("RequestLimitExceeded".into()),
            ..Default::default()
        };
        assert!(matches!(
            pricing.refresh_spot(&ec2, None).await,
            Err(Error::FetchSpot(_))
        ));
        assert_eq!(*pricing.snapshot(), *before);
    }

    #[test]
    fn live_pricing_starts_with_ceiling_policy() {
        let pricing = Pricing::new("us-east-1").unwrap();
        assert_eq!(pricing.snapshot().policy(), SpotPolicy::OnDemandCeiling);
        assert_eq!(pricing.spot("m5.large", "us-east-1a"), Some(0.096));
    }
}
