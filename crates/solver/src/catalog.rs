//! Deterministic synthetic instance-type catalogues for benchmarks, tests and the fake cloud.
//!
//! [`karpenter_shape`] reproduces the shape of Karpenter's scheduling benchmark so figures compare:
//! type `i` has `i+1` vCPU, `2(i+1)` GiB and `10(i+1)` max pods, offered in three zones as spot and
//! on-demand; on-demand costs 0.1 per vCPU plus 0.1 per GiB per hour, spot 0.7 of that.
//!
//! [`aws_like`] is a small catalogue in the shape of EC2's: compute, general and memory families
//! of several generations and a burstable one, sizes `large` to `96xlarge`, ENI-based max pods,
//! EKS-style kube-reserved, and spot prices that vary per type and zone (so price is not linear
//! in size), for tests whose answer depends on the real catalogue's unevenness.

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
    let offerings = zone_offerings(on_demand, |_| on_demand * 0.7);
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

/// A family of [`aws_like`]: name, GiB per vCPU, on-demand $/vCPU-hour, spot as a share of
/// on-demand, and the sizes it comes in (name, vCPU).
struct Family {
    name: &'static str,
    gib_per_vcpu: i64,
    on_demand_per_vcpu: f64,
    spot_share: f64,
    sizes: &'static [(&'static str, i64)],
}

const SIZES_24: &[(&str, i64)] = &[
    ("large", 2),
    ("xlarge", 4),
    ("2xlarge", 8),
    ("4xlarge", 16),
    ("8xlarge", 32),
    ("12xlarge", 48),
    ("16xlarge", 64),
    ("24xlarge", 96),
];
const SIZES_48: &[(&str, i64)] = &[
    ("large", 2),
    ("xlarge", 4),
    ("2xlarge", 8),
    ("4xlarge", 16),
    ("8xlarge", 32),
    ("12xlarge", 48),
    ("16xlarge", 64),
    ("24xlarge", 96),
    ("32xlarge", 128),
    ("48xlarge", 192),
];
const SIZES_96: &[(&str, i64)] = &[
    ("large", 2),
    ("xlarge", 4),
    ("2xlarge", 8),
    ("4xlarge", 16),
    ("8xlarge", 32),
    ("12xlarge", 48),
    ("16xlarge", 64),
    ("24xlarge", 96),
    ("32xlarge", 128),
    ("48xlarge", 192),
    ("96xlarge", 384),
    ("metal-96xl", 384),
];

/// us-east-1 on-demand prices per vCPU-hour of each family (linear in size, as EC2's are).
const FAMILIES: &[Family] = &[
    Family {
        name: "c5",
        gib_per_vcpu: 2,
        on_demand_per_vcpu: 0.0425,
        spot_share: 0.42,
        sizes: SIZES_24,
    },
    Family {
        name: "m5",
        gib_per_vcpu: 4,
        on_demand_per_vcpu: 0.048,
        spot_share: 0.40,
        sizes: SIZES_24,
    },
    Family {
        name: "r5",
        gib_per_vcpu: 8,
        on_demand_per_vcpu: 0.063,
        spot_share: 0.36,
        sizes: SIZES_24,
    },
    Family {
        name: "m5a",
        gib_per_vcpu: 4,
        on_demand_per_vcpu: 0.043,
        spot_share: 0.44,
        sizes: SIZES_24,
    },
    Family {
        name: "c6a",
        gib_per_vcpu: 2,
        on_demand_per_vcpu: 0.03825,
        spot_share: 0.45,
        sizes: SIZES_48,
    },
    Family {
        name: "m6a",
        gib_per_vcpu: 4,
        on_demand_per_vcpu: 0.0432,
        spot_share: 0.43,
        sizes: SIZES_48,
    },
    Family {
        name: "r6a",
        gib_per_vcpu: 8,
        on_demand_per_vcpu: 0.0567,
        spot_share: 0.38,
        sizes: SIZES_48,
    },
    Family {
        name: "c7i",
        gib_per_vcpu: 2,
        on_demand_per_vcpu: 0.04463,
        spot_share: 0.47,
        sizes: SIZES_48,
    },
    Family {
        name: "m7i",
        gib_per_vcpu: 4,
        on_demand_per_vcpu: 0.0504,
        spot_share: 0.45,
        sizes: SIZES_48,
    },
    Family {
        name: "r7i",
        gib_per_vcpu: 8,
        on_demand_per_vcpu: 0.06615,
        spot_share: 0.40,
        sizes: SIZES_48,
    },
    Family {
        name: "m8i",
        gib_per_vcpu: 4,
        on_demand_per_vcpu: 0.0529,
        spot_share: 0.50,
        sizes: SIZES_96,
    },
    Family {
        name: "r8i",
        gib_per_vcpu: 8,
        on_demand_per_vcpu: 0.0695,
        spot_share: 0.48,
        sizes: SIZES_96,
    },
];

/// Burstable types: (name, vCPU, GiB, on-demand $/h, max pods).
const BURSTABLE: &[(&str, i64, i64, f64, i64)] = &[
    ("t3a.small", 2, 2, 0.0188, 11),
    ("t3a.medium", 2, 4, 0.0376, 17),
    ("t3a.large", 2, 8, 0.0752, 35),
    ("t3a.xlarge", 4, 16, 0.1504, 58),
    ("t3a.2xlarge", 8, 32, 0.3008, 58),
];

/// A deterministic number in [0, 1) for a string (FNV-1a), for per-offering price jitter.
/// A spot (priced by `spot`, per zone) and an on-demand offering in every zone of [`ZONES`].
fn zone_offerings(on_demand: f64, spot: impl Fn(&str) -> f64) -> Vec<Offering> {
    ZONES
        .iter()
        .flat_map(|zone| {
            [
                (CapacityType::Spot, spot(zone)),
                (CapacityType::OnDemand, on_demand),
            ]
            .map(|(capacity_type, price_per_hour)| Offering {
                zone: zone.to_string(),
                capacity_type,
                price_per_hour,
                available: true,
                reservation_capacity: None,
                reservation_id: None,
                interruption_cost_per_hour: 0.0,
            })
        })
        .collect()
}

fn unit_hash(s: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// EKS's max pods for a size (ENIs x IPs per ENI).
fn eni_max_pods(vcpu: i64) -> i64 {
    match vcpu {
        ..=2 => 29,
        3..=8 => 58,
        9..=48 => 234,
        _ => 737,
    }
}

/// An EC2-shaped instance type: capacity (memory less 7.5 % hypervisor overhead), EKS's
/// kube-reserved for its vCPU and max pods, and one spot and one on-demand offering per zone,
/// spot at `spot_share` of on-demand +-20 % by type and zone.
fn aws_type(
    name: &str,
    (vcpu, gib, max_pods): (i64, i64, i64),
    on_demand: f64,
    spot_share: f64,
) -> InstanceType {
    let (family, size) = name.split_once('.').unwrap_or((name, name));
    let mut labels_map = BTreeMap::new();
    for (k, v) in [
        (labels::INSTANCE_TYPE, name.to_string()),
        (labels::ARCH, "amd64".to_string()),
        (labels::OS, "linux".to_string()),
        (labels::INSTANCE_CPU, vcpu.to_string()),
        (labels::INSTANCE_MEMORY, (gib * 1024).to_string()),
        (labels::INSTANCE_FAMILY, family.to_string()),
        (labels::INSTANCE_CATEGORY, family[..1].to_string()),
        (
            labels::INSTANCE_GENERATION,
            family
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>(),
        ),
        (labels::INSTANCE_SIZE, size.to_string()),
    ] {
        labels_map.insert(k.to_string(), v);
    }
    // EKS kube-reserved: 6 % of the first core, 1 % of the second, 0.5 % of the next two,
    // 0.25 % of the rest; 11 MiB per pod + 255 MiB.
    let cpu_reserved = 60 + 10 + 10 + (vcpu - 4).max(0) * 5 / 2;
    let mib = |m: i64| m << 20;
    let overhead = Overhead {
        kube_reserved: Resources::new()
            .with(resource::CPU, cpu_reserved)
            .with(resource::MEMORY, mib(11 * max_pods + 255)),
        system_reserved: Resources::new(),
        eviction_threshold: Resources::new().with(resource::MEMORY, mib(100)),
    };
    let offerings = zone_offerings(on_demand, |zone| {
        on_demand * spot_share * (0.8 + 0.4 * unit_hash(&format!("{name}/{zone}")))
    });
    InstanceType {
        name: name.to_string(),
        labels: labels_map,
        capacity: Resources::new()
            .with(resource::CPU, vcpu * 1000)
            .with(resource::MEMORY, (gib << 30) / 1000 * 925)
            .with(resource::PODS, max_pods),
        overhead,
        offerings,
    }
}

/// An EC2-shaped catalogue (see the module docs): 12 families of 8-12 sizes and 5 burstable
/// types, 120 types in all, in the three synthetic zones.
pub fn aws_like() -> Vec<InstanceType> {
    let mut out = Vec::new();
    for f in FAMILIES {
        for &(size, vcpu) in f.sizes {
            let name = format!("{}.{size}", f.name);
            out.push(aws_type(
                &name,
                (vcpu, vcpu * f.gib_per_vcpu, eni_max_pods(vcpu)),
                f.on_demand_per_vcpu * vcpu as f64,
                f.spot_share,
            ));
        }
    }
    for &(name, vcpu, gib, on_demand, max_pods) in BURSTABLE {
        out.push(aws_type(name, (vcpu, gib, max_pods), on_demand, 0.6));
    }
    out
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
