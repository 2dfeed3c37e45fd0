//! Deterministic synthetic instance-type catalogues for benchmarks, tests and the fake cloud.
//!
//! [`karpenter_shape`] reproduces the shape of Karpenter's scheduling benchmark so figures compare:
//! type `i` has `i+1` vCPU, `2(i+1)` GiB and `10(i+1)` max pods, offered in three zones as spot and
//! on-demand; on-demand costs 0.1 per vCPU plus 0.1 per GiB per hour, spot 0.7 of that.

use std::collections::BTreeMap;

use stowage_api::CapacityType;
use stowage_api::labels;

use crate::model::{InstanceType, Offering, Overhead, Resources, resource};

/// The zones of the synthetic catalogue.
pub const ZONES: [&str; 3] = ["test-zone-a", "test-zone-b", "test-zone-c"];

/// The synthetic name of type `i` (`fake-it-<i>`).
pub fn type_name(i: usize) -> String {
    format!("fake-it-{i}")
}

/// `n` instance types in the Karpenter benchmark's shape (no overhead, every offering available).
pub fn karpenter_shape(n: usize) -> Vec<InstanceType> {
    (0..n).map(karpenter_type).collect()
}

/// Type `i` of [`karpenter_shape`].
pub fn karpenter_type(i: usize) -> InstanceType {
    let vcpu = i as i64 + 1;
    let gib = 2 * vcpu;
    let on_demand = 0.1 * vcpu as f64 + 0.1 * gib as f64;
    let name = type_name(i);
    let mut labels_map = BTreeMap::new();
    labels_map.insert(labels::INSTANCE_TYPE.to_string(), name.clone());
    labels_map.insert(labels::ARCH.to_string(), "amd64".to_string());
    labels_map.insert(labels::OS.to_string(), "linux".to_string());
    labels_map.insert(labels::INSTANCE_CPU.to_string(), vcpu.to_string());
    labels_map.insert(
        labels::INSTANCE_MEMORY.to_string(),
        (gib * 1024).to_string(),
    );
    labels_map.insert(labels::INSTANCE_FAMILY.to_string(), "fake".to_string());
    let mut offerings = Vec::new();
    for zone in ZONES {
        for (ct, price) in [
            (CapacityType::Spot, on_demand * 0.7),
            (CapacityType::OnDemand, on_demand),
        ] {
            offerings.push(Offering {
                zone: zone.to_string(),
                capacity_type: ct,
                price_per_hour: price,
                available: true,
                reservation_capacity: None,
                reservation_id: None,
            });
        }
    }
    InstanceType {
        name,
        labels: labels_map,
        capacity: Resources::new()
            .with(resource::CPU, vcpu * 1000)
            .with(resource::MEMORY, gib << 30)
            .with(resource::PODS, 10 * vcpu),
        overhead: Overhead::default(),
        offerings,
    }
}

/// An accelerator type for scenarios: `count` of `resource` (e.g. `nvidia.com/gpu`), with the
/// given vCPU/GiB and on-demand price, in the synthetic zones, spot at 0.7x.
pub fn accelerator_type(
    name: &str,
    vcpu: i64,
    gib: i64,
    resource_name: &str,
    count: i64,
    on_demand: f64,
) -> InstanceType {
    let mut it = karpenter_type(0);
    it.name = name.to_string();
    it.labels
        .insert(labels::INSTANCE_TYPE.to_string(), name.to_string());
    it.labels
        .insert(labels::INSTANCE_CPU.to_string(), vcpu.to_string());
    it.labels.insert(
        labels::INSTANCE_MEMORY.to_string(),
        (gib * 1024).to_string(),
    );
    it.capacity = Resources::new()
        .with(resource::CPU, vcpu * 1000)
        .with(resource::MEMORY, gib << 30)
        .with(resource::PODS, 110)
        .with(resource_name, count);
    for o in &mut it.offerings {
        o.price_per_hour = match o.capacity_type {
            CapacityType::OnDemand => on_demand,
            _ => on_demand * 0.7,
        };
    }
    it
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karpenter_shape_matches_the_benchmark() {
        let types = karpenter_shape(400);
        assert_eq!(types.len(), 400);
        let t = &types[3];
        assert_eq!(t.name, "fake-it-3");
        assert_eq!(t.capacity.cpu_millis(), 4000);
        assert_eq!(t.capacity.memory_bytes(), 8 << 30);
        assert_eq!(t.capacity.pods(), 40);
        assert_eq!(t.offerings.len(), 6);
        let od = t
            .offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::OnDemand)
            .unwrap();
        assert!((od.price_per_hour - 1.2).abs() < 1e-9);
        let spot = t.cheapest_available().unwrap();
        assert_eq!(spot.capacity_type, CapacityType::Spot);
        assert!((spot.price_per_hour - 0.84).abs() < 1e-9);
        assert_eq!(karpenter_shape(400), types, "deterministic");
    }
}
