//! The project's own raw instance-type record: the handful of `DescribeInstanceTypes` facts
//! Stowage uses (vCPUs, memory, architecture, GPUs (whole or fractional), Neuron devices, inference
//! accelerators, FPGAs, media accelerators, EFA, ENIs, hypervisor, bandwidth, bare metal, usage
//! classes, current generation), read from the SDK's `InstanceTypeInfo`
//! by `stowage-aws` (`stowage_aws::catalog::RecordFromSdk`) and stored compactly in the embedded
//! catalogue.
//!
//! Key decision: everything downstream (labels, capacity, overhead) is computed from this record,
//! so the live API and the offline catalogue give byte-identical instance types.

use serde::{Deserialize, Serialize};
use stowage_api::CapacityType;

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub manufacturer: String,
    /// The GPUs the instance exposes: EC2's `LogicalGpuCount` (whole GPUs, or GPU slices on
    /// fractional types, where EC2's physical `Count` is 0), else its `Count`.
    pub count: u32,
    /// Per GPU (per slice on fractional types).
    pub memory_mib: u64,
    /// The share of one physical GPU each exposed GPU is (EC2's `GpuPartitionSize`), only when it
    /// is a slice: `0.125`, `0.25`, `0.5` on `g6f`/`gr6f` (NVIDIA L4 fractions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_size: Option<f64>,
}

impl Gpu {
    /// Whether each exposed GPU is a slice of a physical one.
    pub fn is_fractional(&self) -> bool {
        self.partition_size.is_some_and(|p| p < 1.0)
    }
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

/// One kind of FPGA (`FpgaInfo`, e.g. the AMD/Xilinx Virtex UltraScale+ of `f2`) or media
/// accelerator (`MediaAcceleratorInfo`, e.g. the Xilinx U30 of `vt1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
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

fn is_true(v: &bool) -> bool {
    *v
}

fn yes() -> bool {
    true
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fpgas: Vec<Device>,
    /// Media (video transcoding) accelerators.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Device>,
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
    /// EC2's `CurrentGeneration`: false for the types AWS lists as previous generation (`m4`,
    /// `r3`, ...); true when absent.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub current_generation: bool,
}

impl InstanceTypeRecord {
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
                partition_size: None,
            }],
            neuron: Vec::new(),
            accelerators: Vec::new(),
            fpgas: Vec::new(),
            media: Vec::new(),
            efa: 4,
            enis: 60,
            ipv4_per_eni: 50,
            hypervisor: Some("nitro".to_string()),
            bandwidth_mbps: Some(400_000),
            bare_metal: false,
            usage: vec![CapacityType::Spot, CapacityType::OnDemand],
            current_generation: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for absent in ["fpgas", "media", "partition_size", "current_generation"] {
            assert!(
                !json.contains(absent),
                "{absent} is omitted when empty: {json}"
            );
        }
    }

    #[test]
    fn specialty_facts_round_trip() {
        let mut r = InstanceTypeRecord::dl1_24xlarge();
        r.gpus[0].partition_size = Some(0.125);
        r.fpgas.push(Device {
            name: "Virtex UltraScale+ (VU47P)".into(),
            manufacturer: "Xilinx".into(),
            count: 1,
            memory_mib: 81_920,
        });
        r.media = r.fpgas.clone();
        r.current_generation = false;
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains("\"partition_size\":0.125")
                && json.contains("\"current_generation\":false"),
            "{json}"
        );
        let back: InstanceTypeRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
