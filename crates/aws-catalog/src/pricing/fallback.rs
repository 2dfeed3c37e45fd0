//! The embedded on-demand fallback table (`crates/aws-catalog/data/on-demand-prices.json`): used when the
//! Price List API is unreachable (isolated VPCs), before the first refresh, and offline by
//! `stowage plan` and the simulator. Regions without a table of their own use us-east-1's.
//!
//! The file is Stowage's own format, written by [`FallbackTable::to_json`] from a
//! `region,instance_type,usd_per_hour` CSV (`stowage catalog prices --csv FILE --out FILE`):
//!
//! ```json
//! {"format":"stowage-on-demand-prices/v1","source":"...","regions":{"us-east-1":{
//! "a1.2xlarge":0.204,
//! ...}}}
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The region whose table stands in for regions that have none.
pub const FALLBACK_REGION: &str = "us-east-1";

/// The format tag of the table file.
pub const FORMAT: &str = "stowage-on-demand-prices/v1";

/// The `source` line of the committed table (the CSV's provenance, see shared/data/README.md).
pub const DEFAULT_SOURCE: &str =
    "AWS Price List, on-demand Linux shared-tenancy USD/hour, recorded 2026-07-20";

const EMBEDDED: &str = include_str!("../../data/on-demand-prices.json");

/// Region -> instance type -> USD per hour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FallbackTable {
    pub format: String,
    /// Where the figures came from.
    pub source: String,
    pub regions: BTreeMap<String, BTreeMap<String, f64>>,
}

static EMPTY: BTreeMap<String, f64> = BTreeMap::new();

impl FallbackTable {
    /// The table compiled into the binary (parsed once).
    pub fn embedded() -> Result<&'static FallbackTable> {
        static TABLE: OnceLock<std::result::Result<FallbackTable, String>> = OnceLock::new();
        TABLE
            .get_or_init(|| {
                Self::from_json(EMBEDDED, "embedded on-demand-prices.json")
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| Error::ParseTable {
                source_name: "embedded on-demand-prices.json".into(),
                line: 0,
                message: message.clone(),
            })
    }

    /// The prices of `region`, or of [`FALLBACK_REGION`] when the table has none for it.
    pub fn region_or_default(&self, region: &str) -> &BTreeMap<String, f64> {
        self.regions
            .get(region)
            .or_else(|| self.regions.get(FALLBACK_REGION))
            .unwrap_or(&EMPTY)
    }

    /// Parses the table file; `source_name` names it in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        let table: FallbackTable = serde_json::from_str(text).map_err(|e| Error::ParseTable {
            source_name: source_name.to_string(),
            line: e.line(),
            message: e.to_string(),
        })?;
        if table.format != FORMAT {
            return Err(Error::ParseTable {
                source_name: source_name.to_string(),
                line: 1,
                message: format!("format is {:?}, expected {FORMAT:?}", table.format),
            });
        }
        for (region, prices) in &table.regions {
            if let Some((name, price)) = prices.iter().find(|(_, p)| !(p.is_finite() && **p > 0.0))
            {
                return Err(Error::ParseTable {
                    source_name: source_name.to_string(),
                    line: 0,
                    message: format!("{region} {name}: price {price} is not positive"),
                });
            }
        }
        Ok(table)
    }

    /// Reads a `region,instance_type,usd_per_hour` CSV (with that header line). Every bad line is
    /// an error naming the file and line; a type listed twice for a region is an error too.
    pub fn from_csv(text: &str, source_name: &str, source: &str) -> Result<Self> {
        let err = |line: usize, message: String| Error::ParseTable {
            source_name: source_name.to_string(),
            line,
            message,
        };
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.trim() == "region,instance_type,usd_per_hour" => {}
            Some((_, header)) => {
                return Err(err(
                    1,
                    format!("header is {header:?}, expected region,instance_type,usd_per_hour"),
                ));
            }
            None => return Err(err(1, "the file is empty".into())),
        }
        let mut regions: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for (index, line) in lines {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [region, instance_type, price] = fields[..] else {
                return Err(err(
                    number,
                    format!("expected 3 fields, found {}", fields.len()),
                ));
            };
            if region.is_empty() || instance_type.is_empty() {
                return Err(err(
                    number,
                    "region and instance_type must not be empty".into(),
                ));
            }
            let price: f64 = price
                .parse()
                .map_err(|_| err(number, format!("usd_per_hour {price:?} is not a number")))?;
            if !(price.is_finite() && price > 0.0) {
                return Err(err(number, format!("usd_per_hour {price} is not positive")));
            }
            let previous = regions
                .entry(region.to_string())
                .or_default()
                .insert(instance_type.to_string(), price);
            if previous.is_some() {
                return Err(err(
                    number,
                    format!("{region} {instance_type} is listed twice"),
                ));
            }
        }
        Ok(Self {
            format: FORMAT.to_string(),
            source: source.to_string(),
            regions,
        })
    }

    /// The table file's text: compact JSON, one instance type per line, sorted (diffable).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{{\"format\":{},\"source\":{},\"regions\":{{",
            json_string(&self.format),
            json_string(&self.source)
        ));
        for (r, (region, prices)) in self.regions.iter().enumerate() {
            if r > 0 {
                out.push(',');
            }
            out.push_str(&format!("\n{}:{{", json_string(region)));
            for (i, (name, price)) in prices.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(
                    "\n{}:{}",
                    json_string(name),
                    serde_json::Value::from(*price)
                ));
            }
            out.push('}');
        }
        out.push_str("}}\n");
        out
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_through_the_table_format() {
        let csv = "region,instance_type,usd_per_hour\nus-east-1,m5.large,0.096000\nus-east-1,c5.large,0.085\n\nus-west-2,m5.large,0.1\n";
        let table = FallbackTable::from_csv(csv, "prices.csv", "test").unwrap();
        assert_eq!(table.regions["us-east-1"]["m5.large"], 0.096);
        let text = table.to_json();
        assert!(
            text.contains("\n\"c5.large\":0.085,\n\"m5.large\":0.096}"),
            "{text}"
        );
        assert_eq!(FallbackTable::from_json(&text, "t.json").unwrap(), table);
    }

    #[test]
    fn bad_csv_lines_are_named() {
        let cases = [
            ("region,type\n", 1, "header"),
            (
                "region,instance_type,usd_per_hour\nus-east-1,m5.large\n",
                2,
                "3 fields",
            ),
            (
                "region,instance_type,usd_per_hour\nus-east-1,m5.large,abc\n",
                2,
                "not a number",
            ),
            (
                "region,instance_type,usd_per_hour\nus-east-1,m5.large,0\n",
                2,
                "not positive",
            ),
            (
                "region,instance_type,usd_per_hour\nus-east-1,m5.large,1\nus-east-1,m5.large,2\n",
                3,
                "twice",
            ),
        ];
        for (csv, line, needle) in cases {
            match FallbackTable::from_csv(csv, "prices.csv", "test") {
                Err(Error::ParseTable {
                    source_name,
                    line: l,
                    message,
                }) => {
                    assert_eq!(source_name, "prices.csv");
                    assert_eq!(l, line, "{csv:?}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{csv:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_format_tag_is_refused() {
        let err =
            FallbackTable::from_json(r#"{"format":"other","source":"","regions":{}}"#, "x.json")
                .unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
    }

    /// The committed table is what the generator makes of the reference CSV. The CSV lives in the
    /// read-only `shared/` folder beside the checkout (CI lays it there); without it this test
    /// fails rather than passing without checking anything.
    #[test]
    fn committed_table_matches_the_generator() {
        let csv_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/aws-on-demand-prices.csv"
        );
        let csv = std::fs::read_to_string(csv_path).unwrap_or_else(|e| {
            panic!("the reference price CSV is missing at {csv_path} ({e}): shared/ belongs beside the checkout")
        });
        let table = FallbackTable::from_csv(&csv, csv_path, DEFAULT_SOURCE).unwrap();
        assert_eq!(
            table.to_json(),
            EMBEDDED,
            "regenerate with `stowage catalog prices`"
        );
    }

    #[test]
    fn embedded_table_has_us_east_1() {
        let table = FallbackTable::embedded().unwrap();
        let prices = table.region_or_default("us-east-1");
        assert!(prices.len() > 1000, "{}", prices.len());
        assert_eq!(prices["p5.48xlarge"], 55.04);
        assert_eq!(table.region_or_default("eu-west-1"), prices);
    }
}
