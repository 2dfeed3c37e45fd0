//! From [`InstanceTypeRecord`] to the solver's [`InstanceType`]: labels, capacity (with extended
//! resources), overhead and offerings.
//!
//! The figures (they decide what fits where, so they are tested one by one):
//! - memory capacity = memory - ceil(memory x VM overhead), VM overhead 7.5 % by default;
//! - pods = the node class's `maxPods`, else `ENIs x (IPv4 per ENI - 1) + 2`; then at most
//!   `podsPerCore x vCPUs` when `podsPerCore` is set;
//! - kube-reserved: memory 11 MiB x pods + 255 MiB; CPU 6 % of the first core, 1 % of the second,
//!   0.5 % of cores 3-4 and 0.25 % of every core above 4; ephemeral storage 1 GiB;
//! - eviction threshold: memory 100 MiB, ephemeral storage 10 % of the root volume;
//! - system-reserved: only what the node class sets; node-class `kubeReserved`/`evictionHard`
//!   values replace the computed ones key by key;
//! - extended resources: GPUs by manufacturer (NVIDIA `nvidia.com/gpu`, AMD `amd.com/gpu`, Habana
//!   `habana.ai/gaudi`; a fractional GPU counts as the one GPU the device plugin advertises),
//!   Neuron devices and cores, EFA interfaces. FPGAs and media accelerators have no device-plugin
//!   resource; they show as labels only.
//! - labels: Karpenter's instance labels under `aws.stowage.dev/` (GPU name, manufacturer, count,
//!   memory only for a single kind of GPU; accelerator name, manufacturer, count for Neuron devices
//!   or one kind of inference accelerator), plus the GPU partition size of fractional GPUs, FPGA
//!   and media-accelerator labels of the same shape, and EC2's current-generation flag. Types with
//!   any accelerator or specialty label are "exotic" to the solver
//!   ([`stowage_api::labels::EXOTIC_LABELS`]).

use std::collections::{BTreeMap, BTreeSet};

use stowage_api::CapacityType;
use stowage_api::labels;
use stowage_solver::model::resource;
use stowage_solver::{InstanceType, Offering, Overhead, Resources};

use crate::pricing::PriceSource;
use crate::record::InstanceTypeRecord;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// Node-class settings that change capacity and overhead. `Default` is Stowage's default node.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogSettings {
    /// Memory the hypervisor and firmware take, as a fraction of the advertised memory.
    pub vm_memory_overhead_percent: f64,
    /// The kubelet's `maxPods` (replaces the ENI-limited figure).
    pub max_pods: Option<u32>,
    /// The kubelet's `podsPerCore` (caps pods at this many per vCPU).
    pub pods_per_core: Option<u32>,
    /// Replaces the computed kube-reserved quantity of each resource it names.
    pub kube_reserved: Resources,
    pub system_reserved: Resources,
    /// Replaces the default eviction threshold of each resource it names (`memory`,
    /// `ephemeral-storage`), as absolute quantities.
    pub eviction_hard: Resources,
    /// Root volume size in bytes (the node's ephemeral storage).
    pub root_volume_bytes: i64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            vm_memory_overhead_percent: 0.075,
            max_pods: None,
            pods_per_core: None,
            kube_reserved: Resources::new(),
            system_reserved: Resources::new(),
            eviction_hard: Resources::new(),
            root_volume_bytes: 20 * GIB,
        }
    }
}

/// `ENIs x (IPv4 per ENI - 1) + 2`: one address per interface is the interface's own; host-network
/// pods (aws-node, kube-proxy) need none.
pub fn eni_limited_pods(record: &InstanceTypeRecord) -> i64 {
    i64::from(record.enis) * (i64::from(record.ipv4_per_eni) - 1).max(0) + 2
}

/// The pods the kubelet will admit under `settings`.
pub fn max_pods(record: &InstanceTypeRecord, settings: &CatalogSettings) -> i64 {
    let pods = settings
        .max_pods
        .map_or_else(|| eni_limited_pods(record), i64::from);
    match settings.pods_per_core {
        Some(per_core) if per_core > 0 => pods.min(i64::from(per_core) * i64::from(record.vcpus)),
        _ => pods,
    }
}

/// Kube-reserved CPU in millicores for `vcpus` cores (the tiers of the module docs).
pub fn kube_reserved_cpu_millis(vcpus: u32) -> i64 {
    // (cores in the tier, millicores reserved per core as parts per 10,000 of 1000m)
    let tiers: [(i64, i64); 4] = [(1, 600), (1, 100), (2, 50), (i64::MAX, 25)];
    let mut remaining = i64::from(vcpus);
    let mut reserved_tenth_millis = 0; // 1/10 millicore units keep 0.25 % exact
    for (cores, per_core) in tiers {
        let n = remaining.min(cores);
        reserved_tenth_millis += n * per_core;
        remaining -= n;
        if remaining == 0 {
            break;
        }
    }
    reserved_tenth_millis / 10
}

/// Capacity of the type under `settings` (before overhead).
pub fn capacity(record: &InstanceTypeRecord, settings: &CatalogSettings) -> Resources {
    let memory_mib = record.memory_mib as i64;
    let vm_overhead_mib = (memory_mib as f64 * settings.vm_memory_overhead_percent).ceil() as i64;
    let mut c = Resources::new()
        .with(resource::CPU, i64::from(record.vcpus) * 1000)
        .with(
            resource::MEMORY,
            (memory_mib - vm_overhead_mib).max(0) * MIB,
        )
        .with(resource::EPHEMERAL_STORAGE, settings.root_volume_bytes)
        .with(resource::PODS, max_pods(record, settings));
    for gpu in &record.gpus {
        let name = match gpu.manufacturer.to_ascii_lowercase().as_str() {
            "nvidia" => labels::RESOURCE_NVIDIA_GPU,
            "amd" => labels::RESOURCE_AMD_GPU,
            "habana" => labels::RESOURCE_HABANA_GAUDI,
            _ => continue,
        };
        let current = c.get(name);
        c.set(name, current + i64::from(gpu.count));
    }
    let devices: i64 = record.neuron.iter().map(|d| i64::from(d.count)).sum();
    let cores: i64 = record
        .neuron
        .iter()
        .map(|d| i64::from(d.count) * i64::from(d.cores))
        .sum();
    c.set(labels::RESOURCE_NEURON, devices);
    c.set(labels::RESOURCE_NEURONCORE, cores);
    c.set(labels::RESOURCE_EFA, i64::from(record.efa));
    c
}

/// Overhead of the type under `settings`, given its capacity.
pub fn overhead(
    record: &InstanceTypeRecord,
    capacity: &Resources,
    settings: &CatalogSettings,
) -> Overhead {
    let pods = capacity.pods();
    let mut kube_reserved = Resources::new()
        .with(resource::CPU, kube_reserved_cpu_millis(record.vcpus))
        .with(resource::MEMORY, (11 * pods + 255) * MIB)
        .with(resource::EPHEMERAL_STORAGE, GIB);
    for (name, value) in &settings.kube_reserved.0 {
        kube_reserved.set(name.clone(), *value);
    }
    let mut eviction_threshold = Resources::new().with(resource::MEMORY, 100 * MIB).with(
        resource::EPHEMERAL_STORAGE,
        capacity.get(resource::EPHEMERAL_STORAGE) / 10,
    );
    for (name, value) in &settings.eviction_hard.0 {
        eviction_threshold.set(name.clone(), *value);
    }
    Overhead {
        kube_reserved,
        system_reserved: settings.system_reserved.clone(),
        eviction_threshold,
    }
}

/// The `aws.stowage.dev/instance-category` and `-generation` of a type name: the leading letters,
/// then (after an optional `-<n>tb` memory tag, as in `u-6tb1`) the generation digits.
pub fn category_and_generation(name: &str) -> (Option<String>, Option<String>) {
    let family = name.split('.').next().unwrap_or(name);
    let category: String = family
        .chars()
        .take_while(char::is_ascii_lowercase)
        .collect();
    let mut rest = &family[category.len()..];
    if let Some(after_dash) = rest.strip_prefix('-') {
        let digits = after_dash.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after_dash[digits..].starts_with("tb") {
            rest = &after_dash[digits + 2..];
        }
    }
    let generation: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (
        (!category.is_empty()).then_some(category),
        (!generation.is_empty()).then_some(generation),
    )
}

/// Lower-kebab-case of a device name for a label value (`Gaudi HL-205` -> `gaudi-hl-205`).
fn label_value(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The labels the type carries (zone and capacity type vary per offering and are not here).
pub fn type_labels(record: &InstanceTypeRecord, region: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        l.insert(k.to_string(), v);
    };
    put(labels::INSTANCE_TYPE, record.name.clone());
    put(labels::ARCH, record.arch.label().to_string());
    put(labels::OS, "linux".to_string());
    put(labels::REGION, region.to_string());
    let (family, size) = record
        .name
        .split_once('.')
        .unwrap_or((record.name.as_str(), ""));
    put(labels::INSTANCE_FAMILY, family.to_string());
    if !size.is_empty() {
        put(labels::INSTANCE_SIZE, size.to_string());
    }
    let (category, generation) = category_and_generation(&record.name);
    if let Some(c) = category {
        put(labels::INSTANCE_CATEGORY, c);
    }
    if let Some(g) = generation {
        put(labels::INSTANCE_GENERATION, g);
    }
    put(labels::INSTANCE_CPU, record.vcpus.to_string());
    put(labels::INSTANCE_MEMORY, record.memory_mib.to_string());
    if let [gpu] = record.gpus.as_slice() {
        put(labels::INSTANCE_GPU_NAME, label_value(&gpu.name));
        put(
            labels::INSTANCE_GPU_MANUFACTURER,
            label_value(&gpu.manufacturer),
        );
        put(labels::INSTANCE_GPU_COUNT, gpu.count.to_string());
        put(labels::INSTANCE_GPU_MEMORY, gpu.memory_mib.to_string());
        if let Some(share) = gpu.partition_size.filter(|_| gpu.is_fractional()) {
            put(labels::INSTANCE_GPU_PARTITION_SIZE, share.to_string());
        }
    }
    // Neuron devices are the accelerator when present (EC2 may list them as inference
    // accelerators too; their manufacturer is AWS); otherwise a single kind of inference
    // accelerator.
    if let [device] = record.neuron.as_slice() {
        put(labels::INSTANCE_ACCELERATOR_NAME, label_value(&device.name));
        put(labels::INSTANCE_ACCELERATOR_MANUFACTURER, "aws".to_string());
        put(labels::INSTANCE_ACCELERATOR_COUNT, device.count.to_string());
    } else if let ([accelerator], true) = (record.accelerators.as_slice(), record.neuron.is_empty())
    {
        put(
            labels::INSTANCE_ACCELERATOR_NAME,
            label_value(&accelerator.name),
        );
        put(
            labels::INSTANCE_ACCELERATOR_MANUFACTURER,
            label_value(&accelerator.manufacturer),
        );
        put(
            labels::INSTANCE_ACCELERATOR_COUNT,
            accelerator.count.to_string(),
        );
    }
    if let [fpga] = record.fpgas.as_slice() {
        put(labels::INSTANCE_FPGA_NAME, label_value(&fpga.name));
        put(
            labels::INSTANCE_FPGA_MANUFACTURER,
            label_value(&fpga.manufacturer),
        );
        put(labels::INSTANCE_FPGA_COUNT, fpga.count.to_string());
        put(labels::INSTANCE_FPGA_MEMORY, fpga.memory_mib.to_string());
    }
    if let [media] = record.media.as_slice() {
        put(
            labels::INSTANCE_MEDIA_ACCELERATOR_NAME,
            label_value(&media.name),
        );
        put(
            labels::INSTANCE_MEDIA_ACCELERATOR_MANUFACTURER,
            label_value(&media.manufacturer),
        );
        put(
            labels::INSTANCE_MEDIA_ACCELERATOR_COUNT,
            media.count.to_string(),
        );
        put(
            labels::INSTANCE_MEDIA_ACCELERATOR_MEMORY,
            media.memory_mib.to_string(),
        );
    }
    put(
        labels::INSTANCE_CURRENT_GENERATION,
        record.current_generation.to_string(),
    );
    if let Some(h) = &record.hypervisor {
        put(labels::INSTANCE_HYPERVISOR, h.clone());
    }
    if let Some(mbps) = record.bandwidth_mbps {
        put(labels::INSTANCE_NETWORK_BANDWIDTH, mbps.to_string());
    }
    l
}

/// One offering per zone the type is offered in x capacity type it is sold as, priced from
/// `prices`; a (zone, capacity type) without a price has no offering. Sorted by zone, then
/// capacity type.
pub fn offerings(
    record: &InstanceTypeRecord,
    zones: &BTreeSet<String>,
    prices: &dyn PriceSource,
) -> Vec<Offering> {
    let mut out = Vec::new();
    for zone in zones {
        let mut usage = record.usage.clone();
        usage.sort();
        for capacity_type in usage {
            let price = match capacity_type {
                CapacityType::OnDemand => prices.on_demand(&record.name),
                CapacityType::Spot => prices.spot(&record.name, zone),
                CapacityType::Reserved => None,
            };
            if let Some(price_per_hour) = price.filter(|p| p.is_finite() && *p > 0.0) {
                out.push(Offering {
                    zone: zone.clone(),
                    capacity_type,
                    price_per_hour,
                    available: true,
                    reservation_capacity: None,
                    reservation_id: None,
                    interruption_cost_per_hour: 0.0,
                });
            }
        }
    }
    out
}

/// The full solver view of one type in `region`, offered in `zones`.
pub fn to_instance_type(
    record: &InstanceTypeRecord,
    region: &str,
    zones: &BTreeSet<String>,
    prices: &dyn PriceSource,
    settings: &CatalogSettings,
) -> InstanceType {
    let capacity = capacity(record, settings);
    let overhead = overhead(record, &capacity, settings);
    InstanceType {
        name: record.name.clone(),
        labels: type_labels(record, region),
        capacity,
        overhead,
        offerings: offerings(record, zones, prices),
    }
}

/// Every record offered in at least one zone of `offered` (type -> zones), as solver instance
/// types sorted by name. Types offered nowhere in the region are left out.
pub fn build(
    records: &[InstanceTypeRecord],
    offered: &BTreeMap<String, BTreeSet<String>>,
    region: &str,
    prices: &dyn PriceSource,
    settings: &CatalogSettings,
) -> Vec<InstanceType> {
    let mut out: Vec<InstanceType> = records
        .iter()
        .filter_map(|r| {
            let zones = offered.get(&r.name).filter(|z| !z.is_empty())?;
            Some(to_instance_type(r, region, zones, prices, settings))
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{PriceBook, SpotPolicy};
    use crate::record::{Arch, Device, Gpu, NeuronDevice};

    fn record(name: &str, vcpus: u32, memory_mib: u64, enis: u32, ipv4: u32) -> InstanceTypeRecord {
        InstanceTypeRecord {
            name: name.into(),
            vcpus,
            memory_mib,
            arch: Arch::X86_64,
            gpus: vec![],
            neuron: vec![],
            accelerators: vec![],
            fpgas: vec![],
            media: vec![],
            efa: 0,
            enis,
            ipv4_per_eni: ipv4,
            hypervisor: Some("nitro".into()),
            bandwidth_mbps: Some(750),
            bare_metal: false,
            usage: vec![CapacityType::Spot, CapacityType::OnDemand],
            current_generation: true,
        }
    }

    fn p5() -> InstanceTypeRecord {
        InstanceTypeRecord {
            gpus: vec![Gpu {
                name: "H100".into(),
                manufacturer: "NVIDIA".into(),
                count: 8,
                memory_mib: 81_920,
                partition_size: None,
            }],
            efa: 32,
            ..record("p5.48xlarge", 192, 2_097_152, 2, 50)
        }
    }

    fn zones(z: &[&str]) -> BTreeSet<String> {
        z.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn m5_large_capacity_and_allocatable() {
        let it = to_instance_type(
            &record("m5.large", 2, 8192, 3, 10),
            "us-east-1",
            &zones(&["us-east-1a"]),
            &PriceBook::new(SpotPolicy::Observed),
            &CatalogSettings::default(),
        );
        // 3 x (10 - 1) + 2 = 29 pods.
        assert_eq!(it.capacity.pods(), 29);
        // 8192 - ceil(614.4) = 7577 MiB.
        assert_eq!(it.capacity.memory_bytes(), 7577 * MIB);
        assert_eq!(it.capacity.cpu_millis(), 2000);
        // CPU: 60 + 10 = 70m; memory: 11 x 29 + 255 = 574 MiB, eviction 100 MiB.
        let a = it.allocatable();
        assert_eq!(a.cpu_millis(), 1930);
        assert_eq!(a.memory_bytes(), (7577 - 574 - 100) * MIB);
        // 20 GiB - 1 GiB kube-reserved - 2 GiB (10 %) eviction.
        assert_eq!(a.get(resource::EPHEMERAL_STORAGE), 17 * GIB);
    }

    #[test]
    fn p5_matches_the_published_allocatable() {
        let it = to_instance_type(
            &p5(),
            "us-east-1",
            &zones(&["us-east-1a"]),
            &PriceBook::new(SpotPolicy::Observed),
            &CatalogSettings::default(),
        );
        assert_eq!(it.capacity.pods(), 100);
        let a = it.allocatable();
        assert_eq!(a.memory_bytes(), 1_938_410 * MIB);
        assert_eq!(a.cpu_millis(), 191_450);
        assert_eq!(a.get(labels::RESOURCE_NVIDIA_GPU), 8);
        assert_eq!(a.get(labels::RESOURCE_EFA), 32);
        assert!(it.is_exotic());
        assert_eq!(it.labels[labels::INSTANCE_GPU_NAME], "h100");
        assert_eq!(it.labels[labels::INSTANCE_GPU_MANUFACTURER], "nvidia");
        assert_eq!(it.labels[labels::INSTANCE_GPU_COUNT], "8");
        assert_eq!(it.labels[labels::INSTANCE_GPU_MEMORY], "81920");
    }

    #[test]
    fn kube_reserved_cpu_tiers() {
        let cases = [
            (1, 60),
            (2, 70),
            (3, 75),
            (4, 80),
            (5, 82),
            (8, 90),
            (96, 310),
            (192, 550),
        ];
        for (vcpus, millis) in cases {
            assert_eq!(kube_reserved_cpu_millis(vcpus), millis, "{vcpus} vCPUs");
        }
    }

    #[test]
    fn node_class_kubelet_settings_change_pods_and_reserved() {
        let r = record("m5.large", 2, 8192, 3, 10);
        let s = CatalogSettings {
            max_pods: Some(110),
            ..CatalogSettings::default()
        };
        let it = to_instance_type(&r, "us-east-1", &zones(&["a"]), &PriceBook::default(), &s);
        assert_eq!(it.capacity.pods(), 110);
        assert_eq!(
            it.overhead.kube_reserved.memory_bytes(),
            (11 * 110 + 255) * MIB
        );

        let s = CatalogSettings {
            pods_per_core: Some(4),
            ..CatalogSettings::default()
        };
        assert_eq!(max_pods(&r, &s), 8);

        let s = CatalogSettings {
            kube_reserved: Resources::new().with(resource::CPU, 500),
            system_reserved: Resources::new().with(resource::MEMORY, 100 * MIB),
            eviction_hard: Resources::new().with(resource::MEMORY, 500 * MIB),
            vm_memory_overhead_percent: 0.0,
            ..CatalogSettings::default()
        };
        let it = to_instance_type(&r, "us-east-1", &zones(&["a"]), &PriceBook::default(), &s);
        let a = it.allocatable();
        assert_eq!(a.cpu_millis(), 1500);
        assert_eq!(a.memory_bytes(), (8192 - 574 - 100 - 500) * MIB);
    }

    #[test]
    fn extended_resources_by_manufacturer() {
        let gaudi = to_instance_type(
            &InstanceTypeRecord::dl1_24xlarge(),
            "us-east-1",
            &zones(&["us-east-1a"]),
            &PriceBook::default(),
            &CatalogSettings::default(),
        );
        assert_eq!(gaudi.capacity.get(labels::RESOURCE_HABANA_GAUDI), 8);
        assert_eq!(gaudi.capacity.get(labels::RESOURCE_NVIDIA_GPU), 0);
        assert_eq!(gaudi.capacity.get(labels::RESOURCE_EFA), 4);
        assert_eq!(gaudi.capacity.pods(), 60 * 49 + 2);
        assert_eq!(gaudi.labels[labels::INSTANCE_GPU_NAME], "gaudi-hl-205");
        assert_eq!(gaudi.labels[labels::INSTANCE_GPU_MANUFACTURER], "habana");

        let amd = InstanceTypeRecord {
            gpus: vec![Gpu {
                name: "Radeon Pro V520".into(),
                manufacturer: "AMD".into(),
                count: 1,
                memory_mib: 8192,
                partition_size: None,
            }],
            ..record("g4ad.xlarge", 4, 16384, 2, 4)
        };
        let amd = to_instance_type(
            &amd,
            "r",
            &zones(&["a"]),
            &PriceBook::default(),
            &CatalogSettings::default(),
        );
        assert_eq!(amd.capacity.get(labels::RESOURCE_AMD_GPU), 1);
        assert_eq!(amd.labels[labels::INSTANCE_GPU_NAME], "radeon-pro-v520");

        let trn = InstanceTypeRecord {
            neuron: vec![NeuronDevice {
                name: "Trainium".into(),
                count: 16,
                cores: 2,
                memory_mib: 32_768,
            }],
            ..record("trn1.32xlarge", 128, 524_288, 40, 50)
        };
        let trn = to_instance_type(
            &trn,
            "r",
            &zones(&["a"]),
            &PriceBook::default(),
            &CatalogSettings::default(),
        );
        assert_eq!(trn.capacity.get(labels::RESOURCE_NEURON), 16);
        assert_eq!(trn.capacity.get(labels::RESOURCE_NEURONCORE), 32);
        assert_eq!(trn.labels[labels::INSTANCE_ACCELERATOR_NAME], "trainium");
        assert_eq!(trn.labels[labels::INSTANCE_ACCELERATOR_MANUFACTURER], "aws");
        assert_eq!(trn.labels[labels::INSTANCE_ACCELERATOR_COUNT], "16");
    }

    #[test]
    fn specialty_hardware_shows_as_labels_and_makes_the_type_exotic() {
        let settings = CatalogSettings::default();
        let build = |r: &InstanceTypeRecord| {
            to_instance_type(r, "r", &zones(&["a"]), &PriceBook::default(), &settings)
        };
        // g6f.4xlarge: half an NVIDIA L4 (EC2: Count 0, LogicalGpuCount 1, GpuPartitionSize 0.5).
        let g6f = build(&InstanceTypeRecord {
            gpus: vec![Gpu {
                name: "L4".into(),
                manufacturer: "NVIDIA".into(),
                count: 1,
                memory_mib: 11_444,
                partition_size: Some(0.5),
            }],
            ..record("g6f.4xlarge", 16, 65_536, 8, 30)
        });
        assert_eq!(g6f.capacity.get(labels::RESOURCE_NVIDIA_GPU), 1);
        assert_eq!(g6f.labels[labels::INSTANCE_GPU_PARTITION_SIZE], "0.5");
        assert_eq!(g6f.labels[labels::INSTANCE_GPU_MEMORY], "11444");
        assert_eq!(g6f.labels[labels::INSTANCE_GPU_COUNT], "1");
        assert!(g6f.is_exotic() && g6f.is_fractional_gpu());
        // A whole GPU carries no partition label.
        assert!(
            !p5_type()
                .labels
                .contains_key(labels::INSTANCE_GPU_PARTITION_SIZE)
        );

        let f2 = build(&InstanceTypeRecord {
            fpgas: vec![Device {
                name: "Virtex UltraScale+ (VU47P)".into(),
                manufacturer: "Xilinx".into(),
                count: 2,
                memory_mib: 81_920,
            }],
            ..record("f2.12xlarge", 48, 524_288, 8, 30)
        });
        assert_eq!(
            f2.labels[labels::INSTANCE_FPGA_NAME],
            "virtex-ultrascale-vu47p"
        );
        assert_eq!(f2.labels[labels::INSTANCE_FPGA_MANUFACTURER], "xilinx");
        assert_eq!(f2.labels[labels::INSTANCE_FPGA_COUNT], "2");
        assert_eq!(f2.labels[labels::INSTANCE_FPGA_MEMORY], "81920");
        assert!(f2.is_exotic() && !f2.is_fractional_gpu());

        let vt1 = build(&InstanceTypeRecord {
            media: vec![Device {
                name: "U30".into(),
                manufacturer: "Xilinx".into(),
                count: 2,
                memory_mib: 24_576,
            }],
            ..record("vt1.6xlarge", 24, 49_152, 8, 30)
        });
        assert_eq!(vt1.labels[labels::INSTANCE_MEDIA_ACCELERATOR_NAME], "u30");
        assert_eq!(vt1.labels[labels::INSTANCE_MEDIA_ACCELERATOR_COUNT], "2");
        assert_eq!(
            vt1.labels[labels::INSTANCE_MEDIA_ACCELERATOR_MEMORY],
            "24576"
        );
        assert!(vt1.is_exotic());

        let m4 = build(&InstanceTypeRecord {
            current_generation: false,
            ..record("m4.large", 2, 8192, 2, 10)
        });
        assert_eq!(m4.labels[labels::INSTANCE_CURRENT_GENERATION], "false");
        assert!(m4.is_previous_generation() && !m4.is_exotic());
        for t in [&g6f, &f2, &vt1, &m4] {
            assert!(
                t.labels
                    .keys()
                    .all(|k| labels::WELL_KNOWN.contains(&k.as_str())),
                "{:?}",
                t.labels
            );
        }
    }

    fn p5_type() -> InstanceType {
        to_instance_type(
            &p5(),
            "us-east-1",
            &zones(&["us-east-1a"]),
            &PriceBook::default(),
            &CatalogSettings::default(),
        )
    }

    #[test]
    fn labels_of_a_general_purpose_type() {
        let mut r = record("m7g.2xlarge", 8, 32768, 4, 15);
        r.arch = Arch::Arm64;
        let l = type_labels(&r, "us-west-2");
        let expect = [
            (labels::INSTANCE_TYPE, "m7g.2xlarge"),
            (labels::ARCH, "arm64"),
            (labels::OS, "linux"),
            (labels::REGION, "us-west-2"),
            (labels::INSTANCE_FAMILY, "m7g"),
            (labels::INSTANCE_SIZE, "2xlarge"),
            (labels::INSTANCE_CATEGORY, "m"),
            (labels::INSTANCE_GENERATION, "7"),
            (labels::INSTANCE_CPU, "8"),
            (labels::INSTANCE_MEMORY, "32768"),
            (labels::INSTANCE_HYPERVISOR, "nitro"),
            (labels::INSTANCE_NETWORK_BANDWIDTH, "750"),
        ];
        for (k, v) in expect {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!l.contains_key(labels::INSTANCE_GPU_NAME));
        assert!(
            l.keys().all(|k| labels::WELL_KNOWN.contains(&k.as_str())),
            "{l:?}"
        );
    }

    #[test]
    fn category_and_generation_of_odd_names() {
        let cases = [
            ("m5.large", Some("m"), Some("5")),
            ("u-6tb1.metal", Some("u"), Some("1")),
            ("trn1n.32xlarge", Some("trn"), Some("1")),
            ("mac2-m2pro.metal", Some("mac"), Some("2")),
            ("dl1.24xlarge", Some("dl"), Some("1")),
        ];
        for (name, c, g) in cases {
            let (cat, gen_) = category_and_generation(name);
            assert_eq!((cat.as_deref(), gen_.as_deref()), (c, g), "{name}");
        }
    }

    #[test]
    fn offerings_follow_zones_usage_and_prices() {
        let prices = PriceBook::new(SpotPolicy::Observed)
            .with_on_demand("m5.large", 0.096)
            .with_spot("m5.large", "us-east-1a", 0.035);
        let mut r = record("m5.large", 2, 8192, 3, 10);
        let o = offerings(&r, &zones(&["us-east-1a", "us-east-1b"]), &prices);
        let got: Vec<(&str, CapacityType, f64)> = o
            .iter()
            .map(|o| (o.zone.as_str(), o.capacity_type, o.price_per_hour))
            .collect();
        assert_eq!(
            got,
            vec![
                ("us-east-1a", CapacityType::Spot, 0.035),
                ("us-east-1a", CapacityType::OnDemand, 0.096),
                ("us-east-1b", CapacityType::OnDemand, 0.096),
            ]
        );
        r.usage = vec![CapacityType::OnDemand];
        assert!(
            offerings(&r, &zones(&["us-east-1a"]), &prices)
                .iter()
                .all(|o| o.capacity_type == CapacityType::OnDemand)
        );
        // No price at all: no offering, never a free one.
        assert!(
            offerings(
                &record("x1.large", 2, 1, 1, 1),
                &zones(&["us-east-1a"]),
                &prices
            )
            .is_empty()
        );
    }

    #[test]
    fn build_keeps_offered_types_sorted() {
        let records = vec![
            record("m5.large", 2, 8192, 3, 10),
            record("c5.large", 2, 4096, 3, 10),
            p5(),
        ];
        let offered: BTreeMap<String, BTreeSet<String>> = [
            ("m5.large".to_string(), zones(&["a"])),
            ("c5.large".to_string(), zones(&["a", "b"])),
            ("p5.48xlarge".to_string(), BTreeSet::new()),
        ]
        .into();
        let types = build(
            &records,
            &offered,
            "r",
            &PriceBook::default(),
            &CatalogSettings::default(),
        );
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c5.large", "m5.large"]);
    }
}
