//! The embedded catalogue: instance-type records plus, per region, the zones each type is offered
//! in. Generated from `DescribeInstanceTypes` + `DescribeInstanceTypeOfferings` by
//! `stowage catalog generate`, committed as `crates/aws-catalog/data/catalog.json` and compiled in, so
//! `stowage plan` and the simulator work offline.
//!
//! Format (compact JSON, one record or offering line per type, sorted, so diffs stay readable):
//!
//! ```json
//! {"format":"stowage-catalog/v1","source":"...","regions":{
//! "us-east-1":{"zones":["us-east-1a",...],"offerings":{
//! "a1.large":[0,1,3],
//! ...}}},"types":[
//! {"name":"a1.large","vcpus":2,...},
//! ...]}
//! ```
//! Offerings list indexes into the region's `zones`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::record::InstanceTypeRecord;
use crate::{Error, Result};

/// The format tag of the embedded catalogue file.
pub const FORMAT: &str = "stowage-catalog/v1";

/// One region's offerings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionOfferings {
    /// Every zone any type is offered in, sorted.
    pub zones: Vec<String>,
    /// Instance type -> indexes into `zones`.
    pub offerings: BTreeMap<String, Vec<usize>>,
}

impl RegionOfferings {
    /// From type -> zone names.
    pub fn from_map(map: &BTreeMap<String, BTreeSet<String>>) -> Self {
        let zones: Vec<String> = map
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<&str, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.as_str(), i))
            .collect();
        let offerings = map
            .iter()
            .filter(|(_, z)| !z.is_empty())
            .map(|(t, z)| {
                (
                    t.clone(),
                    z.iter()
                        .filter_map(|z| index.get(z.as_str()).copied())
                        .collect(),
                )
            })
            .collect();
        Self { zones, offerings }
    }

    /// Back to type -> zone names (out-of-range indexes are a parse error, see [`EmbeddedCatalog::from_json`]).
    pub fn to_map(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.offerings
            .iter()
            .map(|(t, idx)| {
                (
                    t.clone(),
                    idx.iter()
                        .filter_map(|i| self.zones.get(*i).cloned())
                        .collect(),
                )
            })
            .collect()
    }
}

/// The whole embedded catalogue (every region it covers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedCatalog {
    pub format: String,
    /// Where the data came from.
    pub source: String,
    pub regions: BTreeMap<String, RegionOfferings>,
    /// Sorted by name.
    pub types: Vec<InstanceTypeRecord>,
}

impl EmbeddedCatalog {
    /// Assembles an embedded catalogue from per-region API answers. Records offered in none of the regions
    /// are dropped (they cannot be launched there, and they keep the file small).
    pub fn from_regions(
        source: &str,
        records: Vec<InstanceTypeRecord>,
        regions: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    ) -> Self {
        let offered: BTreeSet<&String> = regions.values().flat_map(|m| m.keys()).collect();
        let mut by_name: BTreeMap<String, InstanceTypeRecord> = BTreeMap::new();
        for r in records {
            if offered.contains(&r.name) {
                by_name.insert(r.name.clone(), r);
            }
        }
        let regions = regions
            .into_iter()
            .map(|(region, map)| {
                let known: BTreeMap<String, BTreeSet<String>> = map
                    .into_iter()
                    .filter(|(t, _)| by_name.contains_key(t))
                    .collect();
                (region, RegionOfferings::from_map(&known))
            })
            .collect();
        Self {
            format: FORMAT.to_string(),
            source: source.to_string(),
            regions,
            types: by_name.into_values().collect(),
        }
    }

    /// Adds (or replaces) a record offered in every zone of each listed region that the catalogue
    /// has; used for types the API source lacks (`dl1.24xlarge` in the emulator).
    pub fn add_everywhere(&mut self, record: InstanceTypeRecord, regions: &[&str]) {
        for region in regions {
            if let Some(r) = self.regions.get_mut(*region) {
                r.offerings
                    .insert(record.name.clone(), (0..r.zones.len()).collect());
            }
        }
        self.types.retain(|t| t.name != record.name);
        self.types.push(record);
        self.types.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The records and type -> zones of one region.
    pub fn region(&self, region: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
        self.regions.get(region).map(RegionOfferings::to_map)
    }

    /// Parses and validates an embedded catalogue file (format tag, zone indexes, offered types known).
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        let invalid = |message: String| Error::ParseEmbedded {
            source_name: source_name.to_string(),
            message,
        };
        let catalog: EmbeddedCatalog =
            serde_json::from_str(text).map_err(|e| invalid(format!("line {}: {e}", e.line())))?;
        if catalog.format != FORMAT {
            return Err(invalid(format!(
                "format is {:?}, expected {FORMAT:?}",
                catalog.format
            )));
        }
        let names: BTreeSet<&str> = catalog.types.iter().map(|t| t.name.as_str()).collect();
        for (region, offerings) in &catalog.regions {
            for (name, idx) in &offerings.offerings {
                if !names.contains(name.as_str()) {
                    return Err(invalid(format!(
                        "regions.{region}.offerings.{name}: no such type in types"
                    )));
                }
                if let Some(i) = idx.iter().find(|i| **i >= offerings.zones.len()) {
                    return Err(invalid(format!(
                        "regions.{region}.offerings.{name}: zone index {i} out of range"
                    )));
                }
            }
        }
        Ok(catalog)
    }

    /// The file's text (see the module docs for the layout).
    pub fn to_json(&self) -> Result<String> {
        let mut out = format!(
            "{{\"format\":{},\"source\":{},\"regions\":{{",
            enc(&self.format)?,
            enc(&self.source)?
        );
        for (r, (region, offerings)) in self.regions.iter().enumerate() {
            if r > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "\n{}:{{\"zones\":{},\"offerings\":{{",
                enc(region)?,
                enc(&offerings.zones)?
            ));
            for (i, (name, idx)) in offerings.offerings.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("\n{}:{}", enc(name)?, enc(idx)?));
            }
            out.push_str("}}");
        }
        out.push_str("},\"types\":[");
        for (i, t) in self.types.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&enc(t)?);
        }
        out.push_str("]}\n");
        Ok(out)
    }
}

fn enc<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::WriteEmbedded(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Arch;
    use stowage_api::CapacityType;

    fn rec(name: &str) -> InstanceTypeRecord {
        InstanceTypeRecord {
            name: name.into(),
            vcpus: 2,
            memory_mib: 8192,
            arch: Arch::X86_64,
            gpus: vec![],
            neuron: vec![],
            accelerators: vec![],
            fpgas: vec![],
            media: vec![],
            efa: 0,
            enis: 3,
            ipv4_per_eni: 10,
            hypervisor: Some("nitro".into()),
            bandwidth_mbps: None,
            bare_metal: false,
            usage: vec![CapacityType::Spot, CapacityType::OnDemand],
            current_generation: true,
        }
    }

    fn zones(z: &[&str]) -> BTreeSet<String> {
        z.iter().map(|s| s.to_string()).collect()
    }

    fn sample() -> EmbeddedCatalog {
        let east: BTreeMap<String, BTreeSet<String>> = [
            ("m5.large".to_string(), zones(&["us-east-1a", "us-east-1c"])),
            ("c5.large".to_string(), zones(&["us-east-1b"])),
            ("unknown.large".to_string(), zones(&["us-east-1a"])),
        ]
        .into();
        let west: BTreeMap<String, BTreeSet<String>> =
            [("m5.large".to_string(), zones(&["us-west-2a"]))].into();
        EmbeddedCatalog::from_regions(
            "test",
            vec![rec("m5.large"), rec("c5.large"), rec("unoffered.large")],
            [
                ("us-east-1".to_string(), east),
                ("us-west-2".to_string(), west),
            ]
            .into(),
        )
    }

    #[test]
    fn assembles_round_trips_and_drops_unoffered_types() {
        let s = sample();
        let names: Vec<&str> = s.types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c5.large", "m5.large"]);
        assert_eq!(
            s.regions["us-east-1"].zones,
            ["us-east-1a", "us-east-1b", "us-east-1c"]
        );
        assert_eq!(s.regions["us-east-1"].offerings["m5.large"], [0, 2]);
        assert!(
            !s.regions["us-east-1"]
                .offerings
                .contains_key("unknown.large")
        );
        let text = s.to_json().unwrap();
        assert!(text.contains("\n\"m5.large\":[0,2]"), "{text}");
        assert_eq!(EmbeddedCatalog::from_json(&text, "t.json").unwrap(), s);
        assert_eq!(
            s.region("us-west-2").unwrap()["m5.large"],
            zones(&["us-west-2a"])
        );
    }

    #[test]
    fn add_everywhere_offers_in_every_zone() {
        let mut s = sample();
        s.add_everywhere(
            InstanceTypeRecord::dl1_24xlarge(),
            &["us-east-1", "us-west-2", "eu-west-1"],
        );
        assert_eq!(s.regions["us-east-1"].offerings["dl1.24xlarge"], [0, 1, 2]);
        assert_eq!(s.regions["us-west-2"].offerings["dl1.24xlarge"], [0]);
        assert!(s.types.iter().any(|t| t.name == "dl1.24xlarge"));
        assert!(s.types.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn invalid_embedded_catalogues_are_named() {
        let mut s = sample();
        s.regions
            .get_mut("us-east-1")
            .unwrap()
            .offerings
            .insert("m5.large".into(), vec![7]);
        let err = EmbeddedCatalog::from_json(&s.to_json().unwrap(), "cat.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cat.json") && err.contains("out of range"),
            "{err}"
        );
        let err = EmbeddedCatalog::from_json(
            "{\"format\":\"x\",\"source\":\"\",\"regions\":{},\"types\":[]}",
            "cat.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("format"), "{err}");
    }
}
