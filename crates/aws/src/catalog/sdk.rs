//! The SDK side of the instance catalogue: reading [`InstanceTypeRecord`]s from
//! `DescribeInstanceTypes` ([`RecordFromSdk`]), zone offerings from
//! `DescribeInstanceTypeOfferings` ([`offerings_from_sdk`]), and [`fetch`], which asks both through
//! the `Ec2Api` trait. Everything after the record (conversion, embedded data) is in
//! `stowage-aws-catalog`.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types as ec2t;
use stowage_api::CapacityType;
use stowage_aws_catalog::record::{
    Arch, Device, Gpu, InferenceAccelerator, InstanceTypeRecord, NeuronDevice,
};

use super::{Error, Result};
use crate::sdk::Ec2Api;

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
        .map(|g| {
            // Fractional GPUs (g6f: half an L4) have a physical count of 0 and one logical GPU.
            let logical = non_negative(g.logical_gpu_count());
            Gpu {
                name: g.name().unwrap_or_default().to_string(),
                manufacturer: g.manufacturer().unwrap_or_default().to_string(),
                count: if logical > 0 {
                    logical
                } else {
                    non_negative(g.count())
                },
                memory_mib: u64::from(non_negative(g.memory_info().and_then(|m| m.size_in_mib()))),
                partition_size: g
                    .gpu_partition_size()
                    .filter(|p| p.is_finite() && *p > 0.0 && *p < 1.0),
            }
        })
        .filter(|g| g.count > 0)
        .collect()
}

/// FPGAs (`FpgaInfo`) as records.
fn fpgas_of(info: &ec2t::InstanceTypeInfo) -> Vec<Device> {
    info.fpga_info()
        .map(|f| f.fpgas())
        .unwrap_or_default()
        .iter()
        .map(|f| Device {
            name: f.name().unwrap_or_default().to_string(),
            manufacturer: f.manufacturer().unwrap_or_default().to_string(),
            count: non_negative(f.count()),
            memory_mib: u64::from(non_negative(f.memory_info().and_then(|m| m.size_in_mib()))),
        })
        .filter(|f| f.count > 0)
        .collect()
}

/// Media accelerators (`MediaAcceleratorInfo`) as records.
fn media_of(info: &ec2t::InstanceTypeInfo) -> Vec<Device> {
    info.media_accelerator_info()
        .map(|m| m.accelerators())
        .unwrap_or_default()
        .iter()
        .map(|a| Device {
            name: a.name().unwrap_or_default().to_string(),
            manufacturer: a.manufacturer().unwrap_or_default().to_string(),
            count: non_negative(a.count()),
            memory_mib: u64::from(non_negative(a.memory_info().and_then(|m| m.size_in_mib()))),
        })
        .filter(|a| a.count > 0)
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

/// Reads an SDK `InstanceTypeInfo`. Types Stowage cannot launch (not HVM, neither x86_64 nor
/// arm64, neither on-demand nor spot) and types missing vCPU or memory figures are
/// [`Error::UnsupportedInstanceType`], which callers skip.
pub fn record_from_sdk(info: &ec2t::InstanceTypeInfo) -> Result<InstanceTypeRecord> {
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
    Ok(InstanceTypeRecord {
        name,
        vcpus,
        memory_mib,
        arch,
        gpus,
        neuron,
        accelerators,
        fpgas: fpgas_of(info),
        media: media_of(info),
        efa,
        enis,
        ipv4_per_eni,
        hypervisor: info.hypervisor().map(|h| h.as_str().to_string()),
        bandwidth_mbps,
        bare_metal: info.bare_metal().unwrap_or(false),
        usage,
        current_generation: info.current_generation().unwrap_or(true),
    })
}

/// `InstanceTypeRecord::from_sdk` ([`record_from_sdk`]): an extension trait, as the record lives in
/// the SDK-free `stowage-aws-catalog`.
pub trait RecordFromSdk: Sized {
    fn from_sdk(info: &ec2t::InstanceTypeInfo) -> Result<Self>;
}

impl RecordFromSdk for InstanceTypeRecord {
    fn from_sdk(info: &ec2t::InstanceTypeInfo) -> Result<Self> {
        record_from_sdk(info)
    }
}

/// Instance type -> zones from a `DescribeInstanceTypeOfferings` (availability-zone) answer.
pub fn offerings_from_sdk(
    rows: &[ec2t::InstanceTypeOffering],
) -> BTreeMap<String, BTreeSet<String>> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rows {
        if let (Some(t), Some(zone)) = (row.instance_type(), row.location()) {
            map.entry(t.as_str().to_string())
                .or_default()
                .insert(zone.to_string());
        }
    }
    map
}

/// What one region's EC2 API says: the launchable records (sorted by name), type -> zones, and
/// how many types were skipped as unsupported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    pub records: Vec<InstanceTypeRecord>,
    pub offerings: BTreeMap<String, BTreeSet<String>>,
    pub skipped: usize,
}

/// Reads every instance type and its zone offerings through `ec2` (the client's region).
/// Only x86_64/arm64 HVM types are asked for, as the provider launches nothing else.
pub async fn fetch(ec2: &dyn Ec2Api) -> Result<Fetched> {
    let filters = vec![
        ec2t::Filter::builder()
            .name("supported-virtualization-type")
            .values("hvm")
            .build(),
        ec2t::Filter::builder()
            .name("processor-info.supported-architecture")
            .values("x86_64")
            .values("arm64")
            .build(),
    ];
    let infos = ec2
        .describe_instance_types(filters)
        .await
        .map_err(Error::DescribeInstanceTypes)?;
    let rows = ec2
        .describe_instance_type_offerings(ec2t::LocationType::AvailabilityZone, Vec::new())
        .await
        .map_err(Error::DescribeOfferings)?;
    let mut records = Vec::with_capacity(infos.len());
    let mut skipped = 0;
    for info in &infos {
        match InstanceTypeRecord::from_sdk(info) {
            Ok(r) => records.push(r),
            Err(_) => skipped += 1,
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records.dedup_by(|a, b| a.name == b.name);
    Ok(Fetched {
        records,
        offerings: offerings_from_sdk(&rows),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(z: &[&str]) -> BTreeSet<String> {
        z.iter().map(|s| s.to_string()).collect()
    }

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
                memory_mib: 81_920,
                partition_size: None,
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

    /// An x86_64 HVM type sold on demand with `vcpus` and `memory_mib` (the rest left out).
    fn plain(name: &str, vcpus: i32, memory_mib: i64) -> ec2t::InstanceTypeInfo {
        ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::from(name))
            .supported_virtualization_types(ec2t::VirtualizationType::Hvm)
            .supported_usage_classes(ec2t::UsageClassType::OnDemand)
            .processor_info(
                ec2t::ProcessorInfo::builder()
                    .supported_architectures(ec2t::ArchitectureType::X8664)
                    .build(),
            )
            .v_cpu_info(ec2t::VCpuInfo::builder().default_v_cpus(vcpus).build())
            .memory_info(ec2t::MemoryInfo::builder().size_in_mib(memory_mib).build())
            .build()
    }

    /// The figures are what DescribeInstanceTypes answers for these types (moto 5.2.5's recorded
    /// answers, which the embedded catalogue is generated from).
    #[test]
    fn reads_fractional_gpus_fpgas_media_accelerators_and_generation() {
        // g6f.4xlarge: half an NVIDIA L4; EC2 says Count 0, LogicalGpuCount 1.
        let mut g6f = plain("g6f.4xlarge", 16, 65_536);
        g6f.gpu_info = Some(
            ec2t::GpuInfo::builder()
                .gpus(
                    ec2t::GpuDeviceInfo::builder()
                        .name("L4")
                        .manufacturer("NVIDIA")
                        .count(0)
                        .logical_gpu_count(1)
                        .gpu_partition_size(0.5)
                        .memory_info(
                            ec2t::GpuDeviceMemoryInfo::builder()
                                .size_in_mib(11_444)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
        let r = InstanceTypeRecord::from_sdk(&g6f).unwrap();
        assert_eq!(
            r.gpus,
            vec![Gpu {
                name: "L4".into(),
                manufacturer: "NVIDIA".into(),
                count: 1,
                memory_mib: 11_444,
                partition_size: Some(0.5),
            }]
        );
        assert!(r.gpus[0].is_fractional());
        assert!(r.current_generation);

        // A whole GPU reports partition size 1: not a slice.
        let mut g6 = plain("g6.xlarge", 4, 16_384);
        g6.gpu_info = Some(
            ec2t::GpuInfo::builder()
                .gpus(
                    ec2t::GpuDeviceInfo::builder()
                        .name("L4")
                        .manufacturer("NVIDIA")
                        .count(1)
                        .logical_gpu_count(1)
                        .gpu_partition_size(1.0)
                        .build(),
                )
                .build(),
        );
        let r = InstanceTypeRecord::from_sdk(&g6).unwrap();
        assert_eq!((r.gpus[0].count, r.gpus[0].partition_size), (1, None));

        let mut f2 = plain("f2.6xlarge", 24, 262_144);
        f2.fpga_info = Some(
            ec2t::FpgaInfo::builder()
                .fpgas(
                    ec2t::FpgaDeviceInfo::builder()
                        .name("Virtex UltraScale+ (VU47P)")
                        .manufacturer("Xilinx")
                        .count(1)
                        .memory_info(
                            ec2t::FpgaDeviceMemoryInfo::builder()
                                .size_in_mib(81_920)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
        let r = InstanceTypeRecord::from_sdk(&f2).unwrap();
        assert_eq!(
            r.fpgas,
            vec![Device {
                name: "Virtex UltraScale+ (VU47P)".into(),
                manufacturer: "Xilinx".into(),
                count: 1,
                memory_mib: 81_920,
            }]
        );
        assert!(r.gpus.is_empty() && r.media.is_empty());

        let mut vt1 = plain("vt1.3xlarge", 12, 24_576);
        vt1.media_accelerator_info = Some(
            ec2t::MediaAcceleratorInfo::builder()
                .accelerators(
                    ec2t::MediaDeviceInfo::builder()
                        .name("U30")
                        .manufacturer("Xilinx")
                        .count(1)
                        .memory_info(
                            ec2t::MediaDeviceMemoryInfo::builder()
                                .size_in_mib(24_576)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
        let r = InstanceTypeRecord::from_sdk(&vt1).unwrap();
        assert_eq!(
            r.media,
            vec![Device {
                name: "U30".into(),
                manufacturer: "Xilinx".into(),
                count: 1,
                memory_mib: 24_576,
            }]
        );

        let mut m4 = plain("m4.large", 2, 8192);
        m4.current_generation = Some(false);
        assert!(
            !InstanceTypeRecord::from_sdk(&m4)
                .unwrap()
                .current_generation
        );
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
        // Apple silicon Macs are arm64_mac: refused too, so no Mac is ever in the catalogue.
        let mac2 = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::from("mac2-m2pro.metal"))
            .supported_virtualization_types(ec2t::VirtualizationType::Hvm)
            .supported_usage_classes(ec2t::UsageClassType::OnDemand)
            .processor_info(
                ec2t::ProcessorInfo::builder()
                    .supported_architectures(ec2t::ArchitectureType::Arm64Mac)
                    .build(),
            )
            .v_cpu_info(ec2t::VCpuInfo::builder().default_v_cpus(12).build())
            .memory_info(ec2t::MemoryInfo::builder().size_in_mib(32_768).build())
            .build();
        let err = InstanceTypeRecord::from_sdk(&mac2).unwrap_err();
        assert!(err.to_string().contains("architecture"), "{err}");
        let pv = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::M1Small)
            .supported_virtualization_types(ec2t::VirtualizationType::Paravirtual)
            .build();
        assert!(matches!(
            InstanceTypeRecord::from_sdk(&pv),
            Err(Error::UnsupportedInstanceType { .. })
        ));
    }

    #[tokio::test]
    async fn fetch_reads_records_and_offerings_and_skips_the_unlaunchable() {
        let launchable = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::M5Large)
            .supported_virtualization_types(ec2t::VirtualizationType::Hvm)
            .supported_usage_classes(ec2t::UsageClassType::OnDemand)
            .processor_info(
                ec2t::ProcessorInfo::builder()
                    .supported_architectures(ec2t::ArchitectureType::X8664)
                    .build(),
            )
            .v_cpu_info(ec2t::VCpuInfo::builder().default_v_cpus(2).build())
            .memory_info(ec2t::MemoryInfo::builder().size_in_mib(8192).build())
            .build();
        let paravirtual = ec2t::InstanceTypeInfo::builder()
            .instance_type(ec2t::InstanceType::M1Small)
            .supported_virtualization_types(ec2t::VirtualizationType::Paravirtual)
            .build();
        let ec2 = crate::pricing::testing::StubEc2 {
            types: vec![launchable, paravirtual],
            offerings: vec![
                ec2t::InstanceTypeOffering::builder()
                    .instance_type(ec2t::InstanceType::M5Large)
                    .location("us-east-1a")
                    .build(),
            ],
            ..Default::default()
        };
        let fetched = fetch(&ec2).await.unwrap();
        assert_eq!(fetched.records.len(), 1);
        assert_eq!(fetched.records[0].name, "m5.large");
        assert_eq!(fetched.skipped, 1);
        assert_eq!(fetched.offerings["m5.large"], zones(&["us-east-1a"]));

        let failing = crate::pricing::testing::StubEc2 {
            fail: Some("UnauthorizedOperation".into()),
            ..Default::default()
        };
        assert!(matches!(
            fetch(&failing).await,
            Err(Error::DescribeInstanceTypes(_))
        ));
    }

    #[test]
    fn reads_offerings_rows() {
        let rows = vec![
            ec2t::InstanceTypeOffering::builder()
                .instance_type(ec2t::InstanceType::M5Large)
                .location("us-east-1a")
                .build(),
            ec2t::InstanceTypeOffering::builder()
                .instance_type(ec2t::InstanceType::M5Large)
                .location("us-east-1b")
                .build(),
        ];
        assert_eq!(
            offerings_from_sdk(&rows)["m5.large"],
            zones(&["us-east-1a", "us-east-1b"])
        );
    }
}
