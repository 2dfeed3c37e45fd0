//! The Price List API side of on-demand pricing: the `GetProducts` filters for Linux, shared
//! tenancy, no pre-installed software, capacity status `Used`, and the parser of the PriceList JSON
//! documents it returns (`terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`).
//!
//! The parser re-checks every attribute the filters ask for, so an endpoint that ignores a filter
//! (or a future attribute value) cannot slip a Windows or dedicated-host price into the book.

use std::collections::BTreeMap;

use aws_sdk_pricing::types::{Filter, FilterType};
use serde::Deserialize;

use super::{Error, Result};

/// The Price List service code of EC2.
pub const SERVICE_CODE: &str = "AmazonEC2";

/// The attributes (and values) an on-demand Linux shared-tenancy price must have.
const REQUIRED_ATTRIBUTES: &[(&str, &str)] = &[
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
];

/// The region whose Price List endpoint serves `region`'s prices (the API lives in few regions).
pub fn endpoint_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "cn-northwest-1"
    } else if region.starts_with("ap-") {
        "ap-south-1"
    } else if region.starts_with("eu-") {
        "eu-central-1"
    } else {
        "us-east-1"
    }
}

/// The TERM_MATCH filters of the on-demand query for `region`.
pub fn on_demand_filters(region: &str) -> Result<Vec<Filter>> {
    let mut pairs: Vec<(&'static str, &str)> = vec![("regionCode", region)];
    pairs.extend(REQUIRED_ATTRIBUTES.iter().copied());
    pairs
        .into_iter()
        .map(|(field, value)| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
                .map_err(|e| Error::BuildFilter {
                    field,
                    message: e.to_string(),
                })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct PriceListItem {
    product: Product,
    #[serde(default)]
    terms: Terms,
}

#[derive(Debug, Deserialize)]
struct Product {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Terms {
    #[serde(rename = "OnDemand", default)]
    on_demand: BTreeMap<String, Term>,
}

#[derive(Debug, Deserialize)]
struct Term {
    #[serde(rename = "priceDimensions", default)]
    price_dimensions: BTreeMap<String, PriceDimension>,
}

#[derive(Debug, Deserialize)]
struct PriceDimension {
    #[serde(rename = "pricePerUnit", default)]
    price_per_unit: BTreeMap<String, String>,
}

/// The currency of a region's prices.
fn currency(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "CNY"
    } else {
        "USD"
    }
}

/// Parses GetProducts documents into instance type -> hourly on-demand price for `region`.
///
/// Items for another region, operating system, tenancy, software or capacity status are skipped;
/// an item that is not valid JSON of the PriceList shape is an error naming its index. When a type
/// appears more than once the lowest positive price wins (deterministic whatever the page order).
pub fn parse_on_demand(items: &[String], region: &str) -> Result<BTreeMap<String, f64>> {
    let currency = currency(region);
    let mut prices: BTreeMap<String, f64> = BTreeMap::new();
    for (index, raw) in items.iter().enumerate() {
        let item: PriceListItem = serde_json::from_str(raw).map_err(|e| Error::ParseProduct {
            index,
            message: e.to_string(),
        })?;
        let attrs = &item.product.attributes;
        let Some(instance_type) = attrs.get("instanceType") else {
            continue;
        };
        if attrs.get("regionCode").is_some_and(|r| r != region) {
            continue;
        }
        if !REQUIRED_ATTRIBUTES
            .iter()
            .all(|(k, v)| attrs.get(*k).is_none_or(|actual| actual == v))
        {
            continue;
        }
        for dimension in item
            .terms
            .on_demand
            .values()
            .flat_map(|t| t.price_dimensions.values())
        {
            let Some(text) = dimension.price_per_unit.get(currency) else {
                continue;
            };
            let price: f64 = text.trim().parse().map_err(|_| Error::ParseProduct {
                index,
                message: format!("price {text:?} of {instance_type} is not a number"),
            })?;
            if price.is_finite() && price > 0.0 {
                prices
                    .entry(instance_type.clone())
                    .and_modify(|p| *p = p.min(price))
                    .or_insert(price);
            }
        }
    }
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PriceList document as GetProducts returns it (one per item, as a JSON string).
    fn item(instance_type: &str, region: &str, os: &str, tenancy: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": region,
                    "operatingSystem": os,
                    "tenancy": tenancy,
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                },
                "sku": "SKU1",
            },
            "terms": {
                "OnDemand": {
                    "SKU1.JRTCKXETXF": {
                        "priceDimensions": {
                            "SKU1.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": usd},
                            }
                        }
                    }
                }
            }
        })
        .to_string()
    }

    #[test]
    fn parses_linux_shared_prices_of_the_region() {
        let items = vec![
            item("m5.large", "us-east-1", "Linux", "Shared", "0.0960000000"),
            item("m5.large", "us-east-1", "Windows", "Shared", "0.1880000000"),
            item(
                "m5.large",
                "us-east-1",
                "Linux",
                "Dedicated",
                "0.1060000000",
            ),
            item("m5.large", "eu-west-1", "Linux", "Shared", "0.1070000000"),
            item("c5.large", "us-east-1", "Linux", "Shared", "0.0850000000"),
            item("free.large", "us-east-1", "Linux", "Shared", "0.0000000000"),
        ];
        let prices = parse_on_demand(&items, "us-east-1").unwrap();
        assert_eq!(prices.len(), 2);
        assert_eq!(prices["m5.large"], 0.096);
        assert_eq!(prices["c5.large"], 0.085);
    }

    #[test]
    fn duplicate_items_keep_the_lowest_price() {
        let items = vec![
            item("m5.large", "us-east-1", "Linux", "Shared", "0.2"),
            item("m5.large", "us-east-1", "Linux", "Shared", "0.096"),
        ];
        assert_eq!(
            parse_on_demand(&items, "us-east-1").unwrap()["m5.large"],
            0.096
        );
    }

    #[test]
    fn malformed_items_name_their_index() {
        let items = vec![
            item("m5.large", "us-east-1", "Linux", "Shared", "0.096"),
            "<html>".into(),
        ];
        let err = parse_on_demand(&items, "us-east-1").unwrap_err();
        assert!(matches!(err, Error::ParseProduct { index: 1, .. }), "{err}");
        let bad_price = vec![item("m5.large", "us-east-1", "Linux", "Shared", "cheap")];
        let err = parse_on_demand(&bad_price, "us-east-1").unwrap_err();
        assert!(err.to_string().contains("m5.large"), "{err}");
    }

    #[test]
    fn filters_name_the_region_and_linux_shared() {
        let filters = on_demand_filters("us-west-2").unwrap();
        let pairs: Vec<(&str, &str)> = filters.iter().map(|f| (f.field(), f.value())).collect();
        assert!(pairs.contains(&("regionCode", "us-west-2")));
        assert!(pairs.contains(&("operatingSystem", "Linux")));
        assert!(pairs.contains(&("tenancy", "Shared")));
        assert!(pairs.contains(&("preInstalledSw", "NA")));
        assert!(pairs.contains(&("capacitystatus", "Used")));
        assert!(filters.iter().all(|f| f.r#type() == &FilterType::TermMatch));
    }

    #[test]
    fn endpoint_regions() {
        assert_eq!(endpoint_region("us-west-2"), "us-east-1");
        assert_eq!(endpoint_region("eu-west-1"), "eu-central-1");
        assert_eq!(endpoint_region("ap-northeast-1"), "ap-south-1");
        assert_eq!(endpoint_region("cn-north-1"), "cn-northwest-1");
    }
}
