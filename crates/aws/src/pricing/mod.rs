//! Instance prices: on-demand from the AWS Price List API (`GetProducts`), spot from
//! `DescribeSpotPriceHistory` (latest per type and zone), an embedded on-demand fallback table for
//! when the Price List API is unreachable, and the rules that turn them into offering prices.
//!
//! Key decisions:
//! - A missing spot price never makes a type look free. What happens instead is the book's
//!   [`SpotPolicy`]: no spot offering at all (`Observed`, the rule once spot prices were fetched),
//!   the on-demand price as the spot price (`OnDemandCeiling`, before the first spot fetch), or a
//!   documented synthetic price (`Synthetic`, offline use and the simulator only). An observed spot
//!   price above the on-demand price is capped at the on-demand price.
//! - Non-positive and non-finite prices are dropped on the way in, so a zero never reaches the solver.
//! - [`Pricing`] is the live, refreshable book the AWS provider reads; it starts from the embedded
//!   table, so a provider that never reaches the Price List API still prices every known type.

pub mod fallback;
pub mod products;
pub mod spot;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::sdk::{Ec2Api, PricingApi};

pub use fallback::{FALLBACK_REGION, FallbackTable};
pub use spot::synthetic_spot_price;

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
    #[error("failed to parse price table {source_name}, line {line}: {message}")]
    ParseTable {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("the price list answered no on-demand price for region {region}")]
    EmptyOnDemand { region: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where offering prices come from: the catalogue conversion reads prices only through this.
pub trait PriceSource: Send + Sync {
    /// USD per hour for an on-demand instance, if known (always positive).
    fn on_demand(&self, instance_type: &str) -> Option<f64>;
    /// USD per hour for a spot instance in the zone; `None` means there is no spot offering.
    fn spot(&self, instance_type: &str, zone: &str) -> Option<f64>;
}

/// What a spot price is when none was observed for a (type, zone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpotPolicy {
    /// No observed price, no spot offering (the rule once spot prices have been fetched).
    #[default]
    Observed,
    /// The on-demand price (so spot is never cheaper than what we know): before the first fetch.
    OnDemandCeiling,
    /// [`synthetic_spot_price`]: deterministic and made up, for the simulator and offline planning.
    Synthetic,
}

/// A set of prices and the rule for missing spot prices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PriceBook {
    on_demand: BTreeMap<String, f64>,
    /// Instance type -> zone -> USD per hour.
    spot: BTreeMap<String, BTreeMap<String, f64>>,
    policy: SpotPolicy,
}

fn valid_price(price: f64) -> bool {
    price.is_finite() && price > 0.0
}

impl PriceBook {
    pub fn new(policy: SpotPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// The embedded on-demand table for `region` with synthetic spot prices: the offline book used
    /// by `stowage plan` and the simulator.
    pub fn embedded(region: &str) -> Result<Self> {
        let table = FallbackTable::embedded()?;
        let mut book = Self::new(SpotPolicy::Synthetic);
        book.set_on_demand(table.region_or_default(region).clone());
        Ok(book)
    }

    pub fn policy(&self) -> SpotPolicy {
        self.policy
    }

    pub fn set_policy(&mut self, policy: SpotPolicy) {
        self.policy = policy;
    }

    /// Replaces every on-demand price (invalid prices are dropped).
    pub fn set_on_demand(&mut self, prices: BTreeMap<String, f64>) {
        self.on_demand = prices
            .into_iter()
            .filter(|(_, p)| valid_price(*p))
            .collect();
    }

    /// Sets one on-demand price (ignored unless positive and finite).
    pub fn with_on_demand(mut self, instance_type: &str, price: f64) -> Self {
        if valid_price(price) {
            self.on_demand.insert(instance_type.to_string(), price);
        }
        self
    }

    /// Sets one observed spot price (ignored unless positive and finite).
    pub fn with_spot(mut self, instance_type: &str, zone: &str, price: f64) -> Self {
        self.merge_spot([((instance_type.to_string(), zone.to_string()), price)]);
        self
    }

    /// Merges observed spot prices into the book: new prices replace old ones for the same
    /// (type, zone); prices not in this update are kept (a partial answer never drops a zone).
    pub fn merge_spot(&mut self, prices: impl IntoIterator<Item = ((String, String), f64)>) {
        for ((instance_type, zone), price) in prices {
            if valid_price(price) {
                self.spot
                    .entry(instance_type)
                    .or_default()
                    .insert(zone, price);
            }
        }
    }

    pub fn on_demand_count(&self) -> usize {
        self.on_demand.len()
    }

    pub fn spot_count(&self) -> usize {
        self.spot.values().map(BTreeMap::len).sum()
    }
}

impl PriceSource for PriceBook {
    fn on_demand(&self, instance_type: &str) -> Option<f64> {
        self.on_demand.get(instance_type).copied()
    }

    fn spot(&self, instance_type: &str, zone: &str) -> Option<f64> {
        let on_demand = self.on_demand(instance_type);
        let observed = self
            .spot
            .get(instance_type)
            .and_then(|zones| zones.get(zone))
            .copied();
        match (observed, self.policy) {
            (Some(price), _) => Some(on_demand.map_or(price, |od| price.min(od))),
            (None, SpotPolicy::Observed) => None,
            (None, SpotPolicy::OnDemandCeiling) => on_demand,
            (None, SpotPolicy::Synthetic) => {
                on_demand.map(|od| synthetic_spot_price(od, instance_type, zone))
            }
        }
    }
}

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

    #[test]
    fn observed_policy_has_no_spot_offering_without_a_price() {
        let book = PriceBook::new(SpotPolicy::Observed)
            .with_on_demand("m5.large", 0.096)
            .with_spot("m5.large", "us-east-1a", 0.035);
        assert_eq!(book.spot("m5.large", "us-east-1a"), Some(0.035));
        assert_eq!(book.spot("m5.large", "us-east-1b"), None);
        assert_eq!(book.spot("c5.large", "us-east-1a"), None);
    }

    #[test]
    fn spot_is_capped_at_on_demand() {
        let book = PriceBook::new(SpotPolicy::Observed)
            .with_on_demand("m5.large", 0.096)
            .with_spot("m5.large", "us-east-1a", 0.5);
        assert_eq!(book.spot("m5.large", "us-east-1a"), Some(0.096));
    }

    #[test]
    fn ceiling_policy_uses_on_demand_for_missing_spot() {
        let book = PriceBook::new(SpotPolicy::OnDemandCeiling).with_on_demand("m5.large", 0.096);
        assert_eq!(book.spot("m5.large", "us-east-1a"), Some(0.096));
        assert_eq!(book.spot("unpriced.large", "us-east-1a"), None);
    }

    #[test]
    fn zero_and_negative_prices_never_enter_the_book() {
        let book = PriceBook::new(SpotPolicy::OnDemandCeiling)
            .with_on_demand("m5.large", 0.0)
            .with_on_demand("c5.large", f64::NAN)
            .with_spot("r5.large", "us-east-1a", -1.0);
        assert_eq!(book.on_demand("m5.large"), None);
        assert_eq!(book.on_demand("c5.large"), None);
        assert_eq!(book.spot("r5.large", "us-east-1a"), None);
        assert_eq!(book.spot_count(), 0);
    }

    #[test]
    fn synthetic_policy_prices_spot_below_on_demand() {
        let book = PriceBook::new(SpotPolicy::Synthetic).with_on_demand("m5.large", 0.096);
        let spot = book.spot("m5.large", "us-east-1a").unwrap();
        assert!((0.096 * 0.25..=0.096 * 0.45).contains(&spot), "{spot}");
        assert_eq!(book.spot("unpriced.large", "us-east-1a"), None);
    }

    #[test]
    fn merge_keeps_zones_not_in_the_update() {
        let mut book =
            PriceBook::new(SpotPolicy::Observed).with_spot("m5.large", "us-east-1a", 0.03);
        book.merge_spot([(("m5.large".to_string(), "us-east-1b".to_string()), 0.04)]);
        assert_eq!(book.spot("m5.large", "us-east-1a"), Some(0.03));
        assert_eq!(book.spot("m5.large", "us-east-1b"), Some(0.04));
    }

    #[test]
    fn embedded_book_prices_known_types() {
        let book = PriceBook::embedded("us-east-1").unwrap();
        assert_eq!(book.on_demand("m5.large"), Some(0.096));
        assert_eq!(book.on_demand("dl1.24xlarge"), Some(13.10904));
        // Regions without a table of their own use us-east-1's.
        let west = PriceBook::embedded("us-west-2").unwrap();
        assert_eq!(west.on_demand("m5.large"), Some(0.096));
    }

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
