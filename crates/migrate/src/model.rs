//! The node group as every input describes it, before it becomes a NodePool: one shape for eksctl
//! groups and bare ASGs, each value with the place it came from ([`Src`]).

use std::collections::BTreeMap;

use serde::Serialize;

/// A value and where it came from (`cluster.yaml:42 managedNodeGroups[3].maxSize`).
#[derive(Clone, Debug)]
pub struct Src<T> {
    pub v: T,
    pub at: String,
}

impl<T> Src<T> {
    pub fn new(v: T, at: impl Into<String>) -> Self {
        Src { v, at: at.into() }
    }
}

/// Spot, on-demand, or an ASG mixed-instances split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Capacity {
    Spot,
    OnDemand,
    /// `OnDemandBaseCapacity` (instances) and `OnDemandPercentageAboveBaseCapacity`.
    Mixed {
        base: i64,
        percent: i64,
    },
}

/// eksctl's `instanceSelector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Selector {
    pub vcpus: Option<i64>,
    pub memory_mib: Option<i64>,
    /// A Kubernetes arch (`amd64`, `arm64`).
    pub arch: Option<String>,
    pub gpus: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Ami {
    /// `al2023@latest`.
    Alias(String),
    /// A pinned AMI with its family (`AL2023`, `AL2`, `Bottlerocket`).
    Id { id: String, family: String },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Term {
    Id(String),
    Tags(BTreeMap<String, String>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Iam {
    Role(String),
    Profile(String),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Volume {
    pub size_gib: i64,
    pub kind: Option<String>,
    pub encrypted: Option<bool>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
}

/// How the group's instances are launched: what becomes an EC2NodeClass.
#[derive(Clone, Debug)]
pub struct Class {
    pub ami: Src<Ami>,
    pub subnets: Src<Vec<Term>>,
    pub security_groups: Src<Vec<Term>>,
    pub iam: Src<Iam>,
    pub volume: Option<Src<Volume>>,
    pub tags: BTreeMap<String, Src<String>>,
    pub public_ip: Option<Src<bool>>,
    pub max_pods: Option<Src<i64>>,
}

impl Class {
    /// The values only (two groups with the same key share one EC2NodeClass).
    pub fn key(&self) -> String {
        let tags: BTreeMap<&String, &String> = self.tags.iter().map(|(k, v)| (k, &v.v)).collect();
        serde_json::json!([
            self.ami.v,
            self.subnets.v,
            self.security_groups.v,
            self.iam.v,
            self.volume.as_ref().map(|v| &v.v),
            tags,
            self.public_ip.as_ref().map(|v| v.v),
            self.max_pods.as_ref().map(|v| v.v),
        ])
        .to_string()
    }
}

/// Cluster Autoscaler's scale-down settings (global flags or per-ASG autoscaling options).
#[derive(Clone, Debug, Default)]
pub struct CaOptions {
    pub threshold: Option<Src<f64>>,
    /// A canonical Stowage duration (`10m`).
    pub unneeded: Option<Src<String>>,
    pub enabled: Option<Src<bool>>,
}

/// One node group.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    /// Where the group is defined.
    pub at: String,
    /// Names the priority expander's patterns are matched against (node group, ASG).
    pub names: Vec<String>,
    pub instance_types: Option<Src<Vec<String>>>,
    pub selector: Option<Src<Selector>>,
    pub capacity: Src<Capacity>,
    pub min: Option<Src<i64>>,
    pub max: Option<Src<i64>>,
    pub desired: Option<Src<i64>>,
    pub labels: BTreeMap<String, Src<String>>,
    pub taints: Vec<Src<Taint>>,
    pub zones: Option<Src<Vec<String>>>,
    pub class: Class,
    pub ca: CaOptions,
}
