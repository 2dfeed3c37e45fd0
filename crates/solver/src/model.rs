//! The domain model the cloud provider fills in and the solver reads: resources in integer units,
//! instance types with their overhead and offerings. This is the contract between `stowage-cloud`
//! (and `stowage-aws`) and the solver; keep it plain data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stowage_api::{CapacityType, labels};

/// Resource names with a fixed meaning.
pub mod resource {
    /// Millicores.
    pub const CPU: &str = "cpu";
    /// Bytes.
    pub const MEMORY: &str = "memory";
    /// Bytes.
    pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
    /// Count.
    pub const PODS: &str = "pods";
}

/// Resource quantities in integer units: `cpu` in millicores, `memory` and `ephemeral-storage` in
/// bytes, `pods` and every extended resource (`nvidia.com/gpu`, `habana.ai/gaudi`, ...) as counts.
/// Absent names are zero. Ordered so output that lists resources is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources(pub BTreeMap<String, i64>);

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style setter: `Resources::new().with("cpu", 2000)`.
    pub fn with(mut self, name: impl Into<String>, value: i64) -> Self {
        self.set(name, value);
        self
    }

    pub fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Sets a quantity; zero removes the entry so equal resources compare equal.
    pub fn set(&mut self, name: impl Into<String>, value: i64) {
        let name = name.into();
        if value == 0 {
            self.0.remove(&name);
        } else {
            self.0.insert(name, value);
        }
    }

    pub fn cpu_millis(&self) -> i64 {
        self.get(resource::CPU)
    }

    pub fn memory_bytes(&self) -> i64 {
        self.get(resource::MEMORY)
    }

    pub fn pods(&self) -> i64 {
        self.get(resource::PODS)
    }

    /// Adds every quantity of `other` (saturating).
    pub fn add(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            self.combine(k, *v, i64::saturating_add);
        }
    }

    /// Subtracts every quantity of `other` (saturating; may go negative).
    pub fn sub(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            self.combine(k, *v, i64::saturating_sub);
        }
    }

    /// `self[k] = op(self[k], v)`, zero removing the entry, the name copied only when it is
    /// new (summing a node's pods adds the same few names thousands of times).
    fn combine(&mut self, k: &str, v: i64, op: fn(i64, i64) -> i64) {
        match self.0.get_mut(k) {
            Some(cur) => {
                *cur = op(*cur, v);
                if *cur == 0 {
                    self.0.remove(k);
                }
            }
            None => {
                let x = op(0, v);
                if x != 0 {
                    self.0.insert(k.to_string(), x);
                }
            }
        }
    }

    /// Element-wise maximum.
    pub fn max_with(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            if *v > self.get(k) {
                self.set(k.clone(), *v);
            }
        }
    }

    /// True when every quantity requested here is available in `available`.
    pub fn fits_in(&self, available: &Resources) -> bool {
        self.0.iter().all(|(k, v)| *v <= available.get(k))
    }

    pub fn is_zero(&self) -> bool {
        self.0.values().all(|v| *v == 0)
    }
}

/// What the node reserves before pods get anything. Allocatable = capacity - all three.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overhead {
    pub kube_reserved: Resources,
    pub system_reserved: Resources,
    pub eviction_threshold: Resources,
}

impl Overhead {
    pub fn total(&self) -> Resources {
        let mut t = self.kube_reserved.clone();
        t.add(&self.system_reserved);
        t.add(&self.eviction_threshold);
        t
    }
}

/// One place and way an instance type can be bought.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    pub zone: String,
    pub capacity_type: CapacityType,
    /// USD per hour. Reserved offerings carry a token price (already paid for).
    pub price_per_hour: f64,
    /// False when the insufficient-capacity cache (or the catalogue) says it cannot be had now.
    pub available: bool,
    /// For reserved offerings: how many more instances the reservation can still launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_capacity: Option<u32>,
    /// For reserved offerings: the capacity reservation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    /// USD per hour an interruption of this offering is expected to cost (learnt interruption
    /// rate x price x a weight; see the controller's `interruption::rates`). The solver ranks
    /// offerings by `price_per_hour + interruption_cost_per_hour`, so a spot pool that is often
    /// interrupted loses to a slightly dearer calm one. 0 (the default): pure price.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interruption_cost_per_hour: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Offering {
    /// The price the solver ranks by: list price plus the expected interruption cost.
    pub fn ranking_price(&self) -> f64 {
        self.price_per_hour + self.interruption_cost_per_hour.max(0.0)
    }
}

/// An instance type as the solver sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    /// e.g. `m5.large`.
    pub name: String,
    /// The requirements it satisfies, as single-valued labels (`kubernetes.io/arch`,
    /// `node.kubernetes.io/instance-type`, `aws.stowage.dev/instance-family`, ...). Zone and
    /// capacity type are not here: they vary per offering.
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub overhead: Overhead,
    pub offerings: Vec<Offering>,
}

impl InstanceType {
    /// Capacity minus overhead, never negative.
    pub fn allocatable(&self) -> Resources {
        let mut a = self.capacity.clone();
        a.sub(&self.overhead.total());
        for v in a.0.values_mut() {
            if *v < 0 {
                *v = 0;
            }
        }
        a.0.retain(|_, v| *v != 0);
        a
    }

    /// True when the type has accelerator or specialty hardware: an accelerator resource (GPU,
    /// Neuron, Gaudi) or any of [`labels::EXOTIC_LABELS`] (GPUs including fractional ones,
    /// inference accelerators, FPGAs, media accelerators). The solver buys such types only for
    /// pods that ask for them.
    pub fn is_exotic(&self) -> bool {
        labels::ACCELERATOR_RESOURCES
            .iter()
            .any(|r| self.capacity.get(r) > 0)
            || labels::EXOTIC_LABELS
                .iter()
                .any(|k| self.labels.contains_key(*k))
    }

    /// True for a slice of a GPU (`instance-gpu-partition-size` set, e.g. `g6f`): not what a pod
    /// requesting a GPU means, so only pods or pools that name it get it.
    pub fn is_fractional_gpu(&self) -> bool {
        self.labels
            .contains_key(labels::INSTANCE_GPU_PARTITION_SIZE)
    }

    /// True when the cloud lists the type as previous generation
    /// (`instance-current-generation: "false"`, e.g. `m4`, `r3`).
    pub fn is_previous_generation(&self) -> bool {
        self.labels
            .get(labels::INSTANCE_CURRENT_GENERATION)
            .is_some_and(|v| v == "false")
    }

    /// The cheapest available offering, if any (ties broken by zone name for determinism).
    pub fn cheapest_available(&self) -> Option<&Offering> {
        self.offerings
            .iter()
            .filter(|o| o.available)
            .min_by(|a, b| {
                a.price_per_hour
                    .total_cmp(&b.price_per_hour)
                    .then_with(|| a.zone.cmp(&b.zone))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_subtracts_overhead_and_clamps() {
        let it = InstanceType {
            name: "m5.large".into(),
            labels: BTreeMap::new(),
            capacity: Resources::new()
                .with("cpu", 2000)
                .with("memory", 8 << 30)
                .with("pods", 29),
            overhead: Overhead {
                kube_reserved: Resources::new().with("cpu", 70).with("memory", 574 << 20),
                system_reserved: Resources::new(),
                eviction_threshold: Resources::new()
                    .with("memory", 100 << 20)
                    .with("ephemeral-storage", 1),
            },
            offerings: vec![],
        };
        let a = it.allocatable();
        assert_eq!(a.cpu_millis(), 1930);
        assert_eq!(a.memory_bytes(), (8 << 30) - (674 << 20));
        assert_eq!(a.pods(), 29);
        assert_eq!(a.get("ephemeral-storage"), 0);
        assert!(!it.is_exotic());
    }

    #[test]
    fn specialty_hardware_is_exotic_by_resource_or_label() {
        let plain = InstanceType {
            name: "m7i.large".into(),
            labels: BTreeMap::from([(labels::INSTANCE_CURRENT_GENERATION.into(), "true".into())]),
            capacity: Resources::new().with("cpu", 2000),
            overhead: Overhead::default(),
            offerings: vec![],
        };
        assert!(!plain.is_exotic() && !plain.is_previous_generation());
        let with = |key: &str, value: &str| {
            let mut it = plain.clone();
            it.labels.insert(key.into(), value.into());
            it
        };
        for (key, value) in [
            (labels::INSTANCE_FPGA_COUNT, "1"),
            (labels::INSTANCE_MEDIA_ACCELERATOR_NAME, "u30"),
            (labels::INSTANCE_GPU_PARTITION_SIZE, "0.5"),
            (labels::INSTANCE_ACCELERATOR_NAME, "qualcomm-ai100"),
        ] {
            assert!(with(key, value).is_exotic(), "{key}");
        }
        assert!(with(labels::INSTANCE_GPU_PARTITION_SIZE, "0.5").is_fractional_gpu());
        assert!(!with(labels::INSTANCE_GPU_COUNT, "1").is_fractional_gpu());
        let mut gpu = plain.clone();
        gpu.capacity.set(labels::RESOURCE_AMD_GPU, 1);
        assert!(gpu.is_exotic());
        assert!(with(labels::INSTANCE_CURRENT_GENERATION, "false").is_previous_generation());
    }

    #[test]
    fn resources_arithmetic() {
        let mut a = Resources::new().with("cpu", 100);
        a.add(&Resources::new().with("cpu", 50).with("nvidia.com/gpu", 1));
        assert_eq!(a.get("cpu"), 150);
        assert!(Resources::new().with("cpu", 150).fits_in(&a));
        assert!(!Resources::new().with("nvidia.com/gpu", 2).fits_in(&a));
        a.sub(&Resources::new().with("nvidia.com/gpu", 1));
        assert_eq!(a, Resources::new().with("cpu", 150));
    }
}
