//! Spot prices: the latest observed price per (instance type, zone) out of a
//! `DescribeSpotPriceHistory` answer. (The synthetic spot price used offline is
//! `stowage_aws_catalog::pricing::synthetic_spot_price`.)

use std::collections::BTreeMap;

/// One row of a spot price history.
#[derive(Clone, Debug, PartialEq)]
pub struct SpotObservation {
    pub instance_type: String,
    pub zone: String,
    /// USD per hour.
    pub price: f64,
    /// Seconds since the Unix epoch (0 when the row had none).
    pub timestamp: i64,
}

impl SpotObservation {
    /// Reads an SDK row; rows without a type, zone or parseable price are skipped.
    pub fn from_sdk(row: &aws_sdk_ec2::types::SpotPrice) -> Option<Self> {
        Some(Self {
            instance_type: row.instance_type()?.as_str().to_string(),
            zone: row.availability_zone()?.to_string(),
            price: row.spot_price()?.trim().parse().ok()?,
            timestamp: row.timestamp().map_or(0, |t| t.secs()),
        })
    }
}

/// The latest positive price per (instance type, zone); on equal timestamps the lower price wins,
/// so the result does not depend on row order.
pub fn latest_prices(
    rows: impl IntoIterator<Item = SpotObservation>,
) -> BTreeMap<(String, String), f64> {
    let mut latest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    for row in rows {
        if !(row.price.is_finite() && row.price > 0.0) {
            continue;
        }
        let key = (row.instance_type, row.zone);
        let candidate = (row.timestamp, row.price);
        latest
            .entry(key)
            .and_modify(|cur| {
                if candidate.0 > cur.0 || (candidate.0 == cur.0 && candidate.1 < cur.1) {
                    *cur = candidate;
                }
            })
            .or_insert(candidate);
    }
    latest
        .into_iter()
        .map(|(k, (_, price))| (k, price))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(t: &str, z: &str, price: f64, timestamp: i64) -> SpotObservation {
        SpotObservation {
            instance_type: t.into(),
            zone: z.into(),
            price,
            timestamp,
        }
    }

    #[test]
    fn keeps_the_latest_price_per_type_and_zone() {
        let latest = latest_prices([
            obs("m5.large", "us-east-1a", 0.05, 100),
            obs("m5.large", "us-east-1a", 0.03, 200),
            obs("m5.large", "us-east-1a", 0.07, 150),
            obs("m5.large", "us-east-1b", 0.04, 100),
            obs("m5.large", "us-east-1c", 0.0, 300),
        ]);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[&("m5.large".into(), "us-east-1a".into())], 0.03);
        assert_eq!(latest[&("m5.large".into(), "us-east-1b".into())], 0.04);
    }

    #[test]
    fn equal_timestamps_resolve_independently_of_order() {
        let a = latest_prices([obs("m5.large", "z", 0.05, 1), obs("m5.large", "z", 0.04, 1)]);
        let b = latest_prices([obs("m5.large", "z", 0.04, 1), obs("m5.large", "z", 0.05, 1)]);
        assert_eq!(a, b);
    }

    #[test]
    fn reads_sdk_rows() {
        let row = aws_sdk_ec2::types::SpotPrice::builder()
            .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
            .availability_zone("us-east-1a")
            .spot_price("0.038650")
            .timestamp(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build();
        let o = SpotObservation::from_sdk(&row).unwrap();
        assert_eq!(o, obs("m5.large", "us-east-1a", 0.03865, 1_700_000_000));
        let unpriced = aws_sdk_ec2::types::SpotPrice::builder()
            .availability_zone("z")
            .build();
        assert!(SpotObservation::from_sdk(&unpriced).is_none());
    }
}
