//! Prices as the catalogue conversion reads them: the [`PriceSource`] trait, the [`PriceBook`]
//! (on-demand prices, observed spot prices and the rule for missing spot prices), the embedded
//! on-demand table ([`fallback`]) and the synthetic spot price used offline. The live book that
//! fetches from the Price List API and `DescribeSpotPriceHistory` is `stowage_aws::pricing::Pricing`.
//!
//! Key decisions:
//! - A missing spot price never makes a type look free. What happens instead is the book's
//!   [`SpotPolicy`]: no spot offering at all (`Observed`, the rule once spot prices were fetched),
//!   the on-demand price as the spot price (`OnDemandCeiling`, before the first spot fetch), or a
//!   documented synthetic price (`Synthetic`, offline use and the simulator only). An observed spot
//!   price above the on-demand price is capped at the on-demand price.
//! - Non-positive and non-finite prices are dropped on the way in, so a zero never reaches the solver.
//!
//! **The synthetic spot price is made up.** Real spot prices move hourly and are not shipped with
//! Stowage; the simulator and offline `stowage plan` need *some* spot price that is stable, differs
//! by zone and sits well below on-demand, so they use
//! `on_demand x (0.25 + 0.20 x h)` where `h` in `[0, 1]` is the first four bytes of
//! `sha256("<zone>/<instance type>")` read big-endian and divided by `u32::MAX`, rounded to
//! 1e-6 USD. That is 55-75 % off on-demand, deterministic across runs and machines.

pub mod fallback;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub use fallback::{FALLBACK_REGION, FallbackTable};

use crate::Result;

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

/// The synthetic spot price of a type in a zone given its on-demand price (see the module docs).
pub fn synthetic_spot_price(on_demand: f64, instance_type: &str, zone: &str) -> f64 {
    let digest = Sha256::digest(format!("{zone}/{instance_type}").as_bytes());
    let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let fraction = f64::from(h) / f64::from(u32::MAX);
    let price = on_demand * (0.25 + 0.20 * fraction);
    ((price * 1e6).round() / 1e6).max(1e-6)
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

    #[test]
    fn synthetic_price_is_deterministic_zonal_and_discounted() {
        let a = synthetic_spot_price(0.096, "m5.large", "us-east-1a");
        let b = synthetic_spot_price(0.096, "m5.large", "us-east-1b");
        assert_eq!(a, synthetic_spot_price(0.096, "m5.large", "us-east-1a"));
        assert_ne!(a, b);
        for p in [a, b] {
            assert!(
                (0.096 * 0.25 - 1e-6..=0.096 * 0.45 + 1e-6).contains(&p),
                "{p}"
            );
        }
        assert!(synthetic_spot_price(1e-9, "t", "z") > 0.0);
    }
}
