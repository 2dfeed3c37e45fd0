//! The project's own raw instance-type record: the handful of `DescribeInstanceTypes` facts
//! Stowage uses (vCPUs, memory, architecture, GPUs, Neuron devices, inference accelerators, EFA,
//! ENIs, hypervisor, bandwidth, bare metal, usage classes), read from the SDK's `InstanceTypeInfo`
//! and stored compactly in the embedded catalogue.
//!
//! Key decision: everything downstream (labels, capacity, overhead) is computed from this record,
//! so the live API and the offline catalogue give byte-identical instance types.

use serde::{Deserialize, Serialize};
use stowage_api::CapacityType;

use aws_sdk_ec2::types as ec2t;

use super::{Error, Result};

/// A CPU architecture Stowage launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// The `kubernetes.io/arch` value.
    pub fn label(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The EC2 spelling (`x86_64`, `arm64`).
    pub fn as_ec2(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// One kind of GPU (or GPU-like accelerator EC2 reports in `GpuInfo`, e.g. Habana Gaudi).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub manufacturer: String,
    pub count: u32,
    /// Per device.
    pub memory_mib: u64,
}

/// One kind of AWS Neuron device (Inferentia, Trainium).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeuronDevice {
    pub name: String,
    pub count: u32,
    /// NeuronCores per device.
    pub cores: u32,
    /// Per device.
    pub memory_mib: u64,
}

/// One kind of inference accelerator (`InferenceAcceleratorInfo`, e.g. Qualcomm AI100).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceAccelerator {
    pub name: String,
    pub manufacturer: String,
    pub count: u32,
    /// Per device.
    pub memory_mib: u64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Nearly every type is sold both ways, so the embedded catalogue omits that value.
fn default_usage() -> Vec<CapacityType> {
    vec![CapacityType::Spot, CapacityType::OnDemand]
}

fn is_default_usage(v: &[CapacityType]) -> bool {
    v == default_usage().as_slice()
}

/// The facts of one instance type that Stowage uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceTypeRecord {
    /// e.g. `m5.large`.
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub arch: Arch,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<Gpu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neuron: Vec<NeuronDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accelerators: Vec<InferenceAccelerator>,
    /// Maximum EFA interfaces (0: no EFA).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub efa: u32,
    /// Network interfaces usable on the default network card.
    pub enis: u32,
    /// Private IPv4 addresses per interface.
    pub ipv4_per_eni: u32,
    /// `nitro` or `xen`; absent on bare metal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    /// Baseline network bandwidth over all network cards, in Mbit/s, when EC2 reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub bare_metal: bool,
    /// How it can be bought (`spot`, `on-demand`), in preference order; both when absent.
    #[serde(default = "default_usage", skip_serializing_if = "is_default_usage")]
    pub usage: Vec<CapacityType>,
}

fn non_negative(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn unsupported(name: &str, reason: impl Into<String>) -> Error {
    Error::UnsupportedInstanceType {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn gpus_of(info: &ec2t::InstanceTypeInfo) -> Vec<Gpu> {
    info.gpu_info()
        .map(|g| g.gpus())
        .unwrap_or_default()
        .iter()
        .map(|g| Gpu {
            name: g.name().unwrap_or_default().to_string(),
            manufacturer: g.manufacturer().unwrap_or_default().to_string(),
            count: non_negative(g.count()),
            memory_mib: u64::from(non_negative(g.memory_info().and_then(|m| m.size_in_mib()))),
        })
        .filter(|g| g.count > 0)
        .collect()
}

fn neuron_of(info: &ec2t::InstanceTypeInfo) -> Vec<NeuronDevice> {
    info.neuron_info()
        .map(|n| n.neuron_devices())
        .unwrap_or_default()
        .iter()
        .map(|d| NeuronDevice {
            name: d.name().unwrap_or_default().to_string(),
            count: non_negative(d.count()),
            cores: non_negative(d.core_info().and_then(|c| c.count())),
            memory_mib: u64::from(non_negative(d.memory_info().and_then(|m| m.size_in_mib()))),
        })
        .filter(|d| d.count > 0)
        .collect()
}

fn accelerators_of(
    info: &ec2t::InstanceTypeInfo,
    neuron: &[NeuronDevice],
) -> Vec<InferenceAccelerator> {
    info.inference_accelerator_info()
        .map(|a| a.accelerators())
        .unwrap_or_default()
        .iter()
        .map(|a| InferenceAccelerator {
            name: a.name().unwrap_or_default().to_string(),
            manufacturer: a.manufacturer().unwrap_or_default().to_string(),
            count: non_negative(a.count()),
            memory_mib: u64::from(non_negative(a.memory_info().and_then(|m| m.size_in_mib()))),
        })
        .filter(|a| a.count > 0)
        // EC2 lists Neuron devices (Inferentia) here too; the Neuron record describes them.
        .filter(|a: &InferenceAccelerator| !neuron.iter().any(|d: &NeuronDevice| d.name == a.name))
        .collect()
}

/// The network figures of a type: EFA interfaces, ENIs of the default card, IPv4 addresses per
/// ENI, baseline bandwidth.
struct Network {
    efa: u32,
    enis: u32,
    ipv4_per_eni: u32,
    bandwidth_mbps: Option<u64>,
}

fn network_of(info: &ec2t::InstanceTypeInfo) -> Network {
    let network = info.network_info();
    let efa = match network {
        Some(n) if n.efa_supported() == Some(true) => {
            non_negative(n.efa_info().and_then(|e| e.maximum_efa_interfaces())).max(1)
        }
        _ => 0,
    };
    let enis = network.map_or(0, |n| {
        let default_card = n.default_network_card_index().unwrap_or(0);
        n.network_cards()
            .iter()
            .find(|c| c.network_card_index().unwrap_or(0) == default_card)
            .and_then(|c| c.maximum_network_interfaces())
            .or(n.maximum_network_interfaces())
            .map_or(0, |v| non_negative(Some(v)))
    });
    let ipv4_per_eni = non_negative(network.and_then(|n| n.ipv4_addresses_per_interface()));
    let bandwidth_gbps: f64 = network
        .map(|n| {
            n.network_cards()
                .iter()
                .filter_map(|c| c.baseline_bandwidth_in_gbps())
                .sum()
        })
        .unwrap_or(0.0);
    let bandwidth_mbps = (bandwidth_gbps.is_finite() && bandwidth_gbps > 0.0)
        .then(|| (bandwidth_gbps * 1000.0).round() as u64);
    Network {
        efa,
        enis,
        ipv4_per_eni,
        bandwidth_mbps,
    }
}

impl InstanceTypeRecord {
    /// Reads an SDK `InstanceTypeInfo`. Types Stowage cannot launch (not HVM, neither x86_64 nor
    /// arm64, neither on-demand nor spot) and types missing vCPU or memory figures are
    /// [`Error::UnsupportedInstanceType`], which callers skip.
    pub fn from_sdk(info: &ec2t::InstanceTypeInfo) -> Result<Self> {
        let name = info
            .instance_type()
            .map(|t| t.as_str().to_string())
            .ok_or_else(|| unsupported("<unnamed>", "no instance type name"))?;
        if !info
            .supported_virtualization_types()
            .contains(&ec2t::VirtualizationType::Hvm)
        {
            return Err(unsupported(&name, "not HVM"));
        }
        let archs = info
            .processor_info()
            .map(|p| p.supported_architectures())
            .unwrap_or_default();
        let arch = if archs.contains(&ec2t::ArchitectureType::X8664) {
            Arch::X86_64
        } else if archs.contains(&ec2t::ArchitectureType::Arm64) {
            Arch::Arm64
        } else {
            return Err(unsupported(
                &name,
                "architecture is neither x86_64 nor arm64",
            ));
        };
        let vcpus = non_negative(info.v_cpu_info().and_then(|v| v.default_v_cpus()));
        let memory_mib = info
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0);
        if vcpus == 0 || memory_mib == 0 {
            return Err(unsupported(&name, "no vCPU or memory figure"));
        }
        let mut usage = Vec::new();
        for (class, capacity_type) in [
            (ec2t::UsageClassType::Spot, CapacityType::Spot),
            (ec2t::UsageClassType::OnDemand, CapacityType::OnDemand),
        ] {
            if info.supported_usage_classes().contains(&class) {
                usage.push(capacity_type);
            }
        }
        if usage.is_empty() {
            return Err(unsupported(&name, "sold neither on-demand nor spot"));
        }
        let gpus = gpus_of(info);
        let neuron = neuron_of(info);
        let accelerators = accelerators_of(info, &neuron);
        let Network {
            efa,
            enis,
            ipv4_per_eni,
            bandwidth_mbps,
        } = network_of(info);
        Ok(Self {
            name,
            vcpus,
            memory_mib,
            arch,
            gpus,
            neuron,
            accelerators,
            efa,
            enis,
            ipv4_per_eni,
            hypervisor: info.hypervisor().map(|h| h.as_str().to_string()),
            bandwidth_mbps,
            bare_metal: info.bare_metal().unwrap_or(false),
            usage,
        })
    }

    /// `dl1.24xlarge` (Habana Gaudi) from its published figures: the emulator's catalogue lacks
    /// it, and the seed workload needs it (see `shared/data/README.md`).
    pub fn dl1_24xlarge() -> Self {
        Self {
            name: "dl1.24xlarge".to_string(),
            vcpus: 96,
            memory_mib: 786_432,
            arch: Arch::X86_64,
            gpus: vec![Gpu {
                name: "Gaudi HL-205".to_string(),
                manufacturer: "Habana".to_string(),
                count: 8,
                memory_mib: 32_768,
            }],
            neuron: Vec::new(),
            accelerators: Vec::new(),
            efa: 4,
            enis: 60,
            ipv4_per_eni: 50,
            hypervisor: Some("nitro".to_string()),
            bandwidth_mbps: Some(400_000),
            bare_metal: false,
            usage: vec![CapacityType::Spot, CapacityType::OnDemand],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// p5.48xlarge as the EC2 API describes it (32 network cards of 2 interfaces each).
    fn p5() -> ec2t::InstanceTypeInfo {
        let cards = (0..32).map(|i| {
            ec2t::NetworkCardInfo::builder()
                .network_card_index(i)
                .maximum_network_interfaces(2)
                .baseline_bandwidth_in_gbps(100.0)
                .build()
        });
        let mut network = ec2t::NetworkInfo::builder()
            .maximum_network_interfaces(64)
            .default_network_card_index(0)
            .ipv4_addresses_per_interface(50)
            .efa_supported(true)
            .efa_info(ec2t::EfaInfo::builder().maximum_efa_interfaces(32).build());
        for card in cards {
            network = network.network_cards(card);
        }
        ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::P548xlarge)
            .supported_virtualization_types(ec2t::VirtualizationType::Hvm)
            .supported_usage_classes(ec2t::UsageClassType::OnDemand)
            .supported_usage_classes(ec2t::UsageClassType::Spot)
            .supported_usage_classes(ec2t::UsageClassType::CapacityBlock)
            .processor_info(
                ec2t::ProcessorInfo::builder()
                    .supported_architectures(ec2t::ArchitectureType::X8664)
                    .build(),
            )
            .v_cpu_info(ec2t::VCpuInfo::builder().default_v_cpus(192).build())
            .memory_info(ec2t::MemoryInfo::builder().size_in_mib(2_097_152).build())
            .hypervisor(ec2t::InstanceTypeHypervisor::Nitro)
            .bare_metal(false)
            .gpu_info(
                ec2t::GpuInfo::builder()
                    .gpus(
                        ec2t::GpuDeviceInfo::builder()
                            .name("H100")
                            .manufacturer("NVIDIA")
                            .count(8)
                            .memory_info(
                                ec2t::GpuDeviceMemoryInfo::builder()
                                    .size_in_mib(81_920)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .network_info(network.build())
            .build()
    }

    #[test]
    fn reads_p5_from_the_sdk() {
        let r = InstanceTypeRecord::from_sdk(&p5()).unwrap();
        assert_eq!(r.name, "p5.48xlarge");
        assert_eq!(
            (r.vcpus, r.memory_mib, r.arch),
            (192, 2_097_152, Arch::X86_64)
        );
        assert_eq!(
            r.gpus,
            vec![Gpu {
                name: "H100".into(),
                manufacturer: "NVIDIA".into(),
                count: 8,
                memory_mib: 81_920
            }]
        );
        // The default network card's interfaces, not the instance total.
        assert_eq!((r.enis, r.ipv4_per_eni), (2, 50));
        assert_eq!(r.efa, 32);
        assert_eq!(r.bandwidth_mbps, Some(3_200_000));
        assert_eq!(r.hypervisor.as_deref(), Some("nitro"));
        assert_eq!(r.usage, vec![CapacityType::Spot, CapacityType::OnDemand]);
    }

    #[test]
    fn reads_neuron_devices() {
        let info = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::Inf2Xlarge)
            .supported_virtualization_types(ec2t::VirtualizationType::Hvm)
            .supported_usage_classes(ec2t::UsageClassType::OnDemand)
            .processor_info(
                ec2t::ProcessorInfo::builder()
                    .supported_architectures(ec2t::ArchitectureType::X8664)
                    .build(),
            )
            .v_cpu_info(ec2t::VCpuInfo::builder().default_v_cpus(4).build())
            .memory_info(ec2t::MemoryInfo::builder().size_in_mib(16_384).build())
            .neuron_info(
                ec2t::NeuronInfo::builder()
                    .neuron_devices(
                        ec2t::NeuronDeviceInfo::builder()
                            .name("Inferentia2")
                            .count(1)
                            .core_info(ec2t::NeuronDeviceCoreInfo::builder().count(2).build())
                            .memory_info(
                                ec2t::NeuronDeviceMemoryInfo::builder()
                                    .size_in_mib(32_768)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .inference_accelerator_info(
                ec2t::InferenceAcceleratorInfo::builder()
                    .accelerators(
                        ec2t::InferenceDeviceInfo::builder()
                            .name("Inferentia2")
                            .manufacturer("AWS")
                            .count(1)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let r = InstanceTypeRecord::from_sdk(&info).unwrap();
        assert!(
            r.accelerators.is_empty(),
            "the Neuron record describes it: {:?}",
            r.accelerators
        );
        assert_eq!(
            r.neuron,
            vec![NeuronDevice {
                name: "Inferentia2".into(),
                count: 1,
                cores: 2,
                memory_mib: 32_768
            }]
        );
        assert_eq!(r.usage, vec![CapacityType::OnDemand]);
        assert_eq!(r.efa, 0);
    }

    #[test]
    fn refuses_types_stowage_cannot_launch() {
        let mac = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::Mac1Metal)
            .supported_virtualization_types(ec2t::VirtualizationType::Hvm)
            .supported_usage_classes(ec2t::UsageClassType::OnDemand)
            .processor_info(
                ec2t::ProcessorInfo::builder()
                    .supported_architectures(ec2t::ArchitectureType::X8664Mac)
                    .build(),
            )
            .build();
        let err = InstanceTypeRecord::from_sdk(&mac).unwrap_err();
        assert!(err.to_string().contains("mac1.metal"), "{err}");
        let pv = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::M1Small)
            .supported_virtualization_types(ec2t::VirtualizationType::Paravirtual)
            .build();
        assert!(matches!(
            InstanceTypeRecord::from_sdk(&pv),
            Err(Error::UnsupportedInstanceType { .. })
        ));
    }

    #[test]
    fn records_serialize_compactly() {
        let json = serde_json::to_string(&InstanceTypeRecord::dl1_24xlarge()).unwrap();
        assert!(
            !json.contains("neuron") && !json.contains("bare_metal"),
            "{json}"
        );
        assert!(
            !json.contains("usage"),
            "both capacity types is the default: {json}"
        );
        let back: InstanceTypeRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, InstanceTypeRecord::dl1_24xlarge());
    }
}
