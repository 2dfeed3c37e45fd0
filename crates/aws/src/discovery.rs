//! Node class discovery: resolves an EC2NodeClass's selectors into concrete subnets (with zone and
//! free addresses), security groups and AMIs (each with the instance requirements it serves), and
//! renders the result as `EC2NodeClassStatus` with a `Ready` condition.
//!
//! AMIs by alias come from the public SSM parameters: AL2023
//! `/aws/service/eks/optimized-ami/<k8s>/amazon-linux-2023/<arch>/<standard|nvidia|neuron>/recommended/image_id`
//! and Bottlerocket `/aws/service/bottlerocket/aws-k8s-<k8s>[-nvidia]/<arch>/<version>/image_id`;
//! AMIs by id, name or tags come from DescribeImages (newest first).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types as ec2t;
use sha2::{Digest, Sha256};
use stowage_api::conditions::{self, Condition, ConditionStatus};
use stowage_api::ec2nodeclass::{AmiStatus, SecurityGroupStatus, SubnetStatus};
use stowage_api::requirements::Requirements;
use stowage_api::{
    AmiFamily, AmiSelectorTerm, EC2NodeClass, EC2NodeClassStatus, Requirement, labels,
};

use crate::sdk::{self, Ec2Api, SsmApi};

/// Errors of discovery; each says which selector could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to describe subnets")]
    DescribeSubnets(#[source] sdk::Error),
    #[error("failed to describe security groups")]
    DescribeSecurityGroups(#[source] sdk::Error),
    #[error("failed to describe images")]
    DescribeImages(#[source] sdk::Error),
    #[error("failed to read ssm parameter(s) for alias {alias}")]
    ReadAmiParameters { alias: String, source: sdk::Error },
    #[error(
        "amiSelectorTerms[{index}].alias {alias:?} is not family@version (family al2023 or bottlerocket)"
    )]
    InvalidAlias { index: usize, alias: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A subnet nodes may launch into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSubnet {
    pub id: String,
    pub zone: String,
    pub zone_id: Option<String>,
    pub free_ips: i32,
}

/// An AMI and the instance types it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedAmi {
    pub id: String,
    pub name: Option<String>,
    pub requirements: Vec<Requirement>,
    pub creation_date: Option<String>,
}

/// Everything a node class resolved to.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedNodeClass {
    pub name: String,
    pub family: AmiFamily,
    /// Sorted by id.
    pub subnets: Vec<ResolvedSubnet>,
    /// (id, name), sorted by id.
    pub security_groups: Vec<(String, Option<String>)>,
    /// In preference order (the first that serves a type is used for it).
    pub amis: Vec<ResolvedAmi>,
    pub instance_profile: Option<String>,
    /// Why the class cannot launch yet, if it cannot.
    pub not_ready: Option<String>,
}

impl ResolvedNodeClass {
    /// The zones the class has subnets in.
    pub fn zones(&self) -> BTreeSet<String> {
        self.subnets.iter().map(|s| s.zone.clone()).collect()
    }

    /// The subnet with the most free addresses in each zone.
    pub fn subnet_per_zone(&self) -> BTreeMap<String, ResolvedSubnet> {
        let mut best: BTreeMap<String, ResolvedSubnet> = BTreeMap::new();
        for s in &self.subnets {
            match best.get(&s.zone) {
                Some(cur) if cur.free_ips >= s.free_ips => {}
                _ => {
                    best.insert(s.zone.clone(), s.clone());
                }
            }
        }
        best
    }

    /// The first AMI whose requirements the instance type's labels satisfy.
    pub fn ami_for(&self, type_labels: &BTreeMap<String, String>) -> Option<&ResolvedAmi> {
        self.amis.iter().find(|ami| {
            Requirements::from_requirements(&ami.requirements)
                .is_ok_and(|reqs| reqs.matches(type_labels))
        })
    }

    /// A hash of what launched nodes depend on (drift and stale launch templates key on it).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.subnets {
            h.update(s.id.as_bytes());
            h.update(b"\0");
        }
        h.update(b"|");
        for (id, _) in &self.security_groups {
            h.update(id.as_bytes());
            h.update(b"\0");
        }
        h.update(b"|");
        for a in &self.amis {
            h.update(a.id.as_bytes());
            h.update(b"\0");
        }
        h.update(b"|");
        h.update(
            self.instance_profile
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        hex::encode(&h.finalize()[..8])
    }

    /// The status to write to the EC2NodeClass.
    pub fn status(&self, generation: Option<i64>) -> EC2NodeClassStatus {
        let condition = match &self.not_ready {
            None => Condition::new(conditions::READY, ConditionStatus::True, "Ready", ""),
            Some(reason) => Condition::new(
                conditions::READY,
                ConditionStatus::False,
                "NotReady",
                reason,
            ),
        }
        .with_observed_generation(generation);
        EC2NodeClassStatus {
            subnets: self
                .subnets
                .iter()
                .map(|s| SubnetStatus {
                    id: s.id.clone(),
                    zone: s.zone.clone(),
                    zone_id: s.zone_id.clone(),
                })
                .collect(),
            security_groups: self
                .security_groups
                .iter()
                .map(|(id, name)| SecurityGroupStatus {
                    id: id.clone(),
                    name: name.clone(),
                })
                .collect(),
            amis: self
                .amis
                .iter()
                .map(|a| AmiStatus {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    requirements: a.requirements.clone(),
                })
                .collect(),
            capacity_reservations: Vec::new(),
            instance_profile: self.instance_profile.clone(),
            conditions: vec![condition],
        }
    }
}

fn tag_filters(tags: &BTreeMap<String, String>) -> Vec<ec2t::Filter> {
    tags.iter()
        .map(|(k, v)| {
            if v == "*" {
                ec2t::Filter::builder().name("tag-key").values(k).build()
            } else {
                ec2t::Filter::builder()
                    .name(format!("tag:{k}"))
                    .values(v)
                    .build()
            }
        })
        .collect()
}

/// Resolves subnets: terms are ORed; a term is an id or a set of tags (ANDed).
pub async fn subnets(ec2: &dyn Ec2Api, class: &EC2NodeClass) -> Result<Vec<ResolvedSubnet>> {
    let mut found: BTreeMap<String, ResolvedSubnet> = BTreeMap::new();
    for term in &class.spec.subnet_selector_terms {
        let (ids, filters) = match &term.id {
            Some(id) => (vec![id.clone()], Vec::new()),
            None if term.tags.is_empty() => continue,
            None => (Vec::new(), tag_filters(&term.tags)),
        };
        let rows = ec2
            .describe_subnets(ids, filters)
            .await
            .map_err(Error::DescribeSubnets)?;
        for s in rows {
            if s.state()
                .is_some_and(|st| *st != ec2t::SubnetState::Available)
            {
                continue;
            }
            let (Some(id), Some(zone)) = (s.subnet_id(), s.availability_zone()) else {
                continue;
            };
            found.insert(
                id.to_string(),
                ResolvedSubnet {
                    id: id.to_string(),
                    zone: zone.to_string(),
                    zone_id: s.availability_zone_id().map(str::to_string),
                    free_ips: s.available_ip_address_count().unwrap_or(0),
                },
            );
        }
    }
    Ok(found.into_values().collect())
}

/// Resolves security groups by id, name or tags (terms ORed).
pub async fn security_groups(
    ec2: &dyn Ec2Api,
    class: &EC2NodeClass,
) -> Result<Vec<(String, Option<String>)>> {
    let mut found: BTreeMap<String, Option<String>> = BTreeMap::new();
    for term in &class.spec.security_group_selector_terms {
        let (ids, filters) = match (&term.id, &term.name) {
            (Some(id), _) => (vec![id.clone()], Vec::new()),
            (None, Some(name)) => {
                let mut f = tag_filters(&term.tags);
                f.push(
                    ec2t::Filter::builder()
                        .name("group-name")
                        .values(name)
                        .build(),
                );
                (Vec::new(), f)
            }
            (None, None) if term.tags.is_empty() => continue,
            (None, None) => (Vec::new(), tag_filters(&term.tags)),
        };
        let rows = ec2
            .describe_security_groups(ids, filters)
            .await
            .map_err(Error::DescribeSecurityGroups)?;
        for g in rows {
            if let Some(id) = g.group_id() {
                found.insert(id.to_string(), g.group_name().map(str::to_string));
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// One SSM-published image variant of an alias.
struct Variant {
    parameter: String,
    requirements: Vec<Requirement>,
}

const NEURON_ACCELERATORS: &[&str] = &["inferentia", "inferentia2", "trainium", "trainium2"];

fn arch_label(arch: &str) -> &'static str {
    if arch == "arm64" { "arm64" } else { "amd64" }
}

fn standard_requirements(arch: &str) -> Vec<Requirement> {
    vec![
        Requirement::in_(labels::ARCH, [arch_label(arch)]),
        Requirement::not_in(labels::INSTANCE_GPU_MANUFACTURER, ["nvidia"]),
        Requirement::not_in(
            labels::INSTANCE_ACCELERATOR_NAME,
            NEURON_ACCELERATORS.iter().copied(),
        ),
    ]
}

fn nvidia_requirements(arch: &str) -> Vec<Requirement> {
    vec![
        Requirement::in_(labels::ARCH, [arch_label(arch)]),
        Requirement::in_(labels::INSTANCE_GPU_MANUFACTURER, ["nvidia"]),
    ]
}

fn neuron_requirements() -> Vec<Requirement> {
    vec![
        Requirement::in_(labels::ARCH, ["amd64"]),
        Requirement::in_(
            labels::INSTANCE_ACCELERATOR_NAME,
            NEURON_ACCELERATORS.iter().copied(),
        ),
    ]
}

/// The SSM parameters (and requirements) of an alias, for Kubernetes `k8s` (e.g. `1.33`).
fn alias_variants(family: AmiFamily, version: &str, k8s: &str) -> Vec<Variant> {
    let mut out = Vec::new();
    match family {
        AmiFamily::AL2023 => {
            // EKS publishes only the recommended AL2023 image per Kubernetes version by path;
            // a pinned version uses the same parameter tree with the release name.
            let release = if version == "latest" {
                "recommended".to_string()
            } else {
                version.to_string()
            };
            for arch in ["x86_64", "arm64"] {
                let base = format!("/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/{arch}");
                out.push(Variant {
                    parameter: format!("{base}/standard/{release}/image_id"),
                    requirements: standard_requirements(arch),
                });
                out.push(Variant {
                    parameter: format!("{base}/nvidia/{release}/image_id"),
                    requirements: nvidia_requirements(arch),
                });
            }
            out.push(Variant {
                parameter: format!(
                    "/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/x86_64/neuron/{release}/image_id"
                ),
                requirements: neuron_requirements(),
            });
        }
        AmiFamily::Bottlerocket => {
            let release = version.trim_start_matches('v');
            for arch in ["x86_64", "arm64"] {
                out.push(Variant {
                    parameter: format!(
                        "/aws/service/bottlerocket/aws-k8s-{k8s}/{arch}/{release}/image_id"
                    ),
                    requirements: standard_requirements(arch),
                });
                out.push(Variant {
                    parameter: format!(
                        "/aws/service/bottlerocket/aws-k8s-{k8s}-nvidia/{arch}/{release}/image_id"
                    ),
                    requirements: nvidia_requirements(arch),
                });
            }
        }
        AmiFamily::AL2 | AmiFamily::Custom => {}
    }
    out
}

/// Resolves AMIs: aliases through SSM, other terms through DescribeImages.
pub async fn amis(
    ec2: &dyn Ec2Api,
    ssm: &dyn SsmApi,
    class: &EC2NodeClass,
    kubernetes_version: &str,
) -> Result<Vec<ResolvedAmi>> {
    let mut out: Vec<ResolvedAmi> = Vec::new();
    for (index, term) in class.spec.ami_selector_terms.iter().enumerate() {
        if let Some(alias) = &term.alias {
            let (family, version) = term
                .alias_parts()
                .and_then(|(f, v)| Some((AmiFamily::from_alias_family(f)?, v)))
                .filter(|(f, _)| matches!(f, AmiFamily::AL2023 | AmiFamily::Bottlerocket))
                .ok_or_else(|| Error::InvalidAlias {
                    index,
                    alias: alias.clone(),
                })?;
            let variants = alias_variants(family, version, kubernetes_version);
            let names: Vec<String> = variants.iter().map(|v| v.parameter.clone()).collect();
            let values =
                ssm.get_parameters(names)
                    .await
                    .map_err(|source| Error::ReadAmiParameters {
                        alias: alias.clone(),
                        source,
                    })?;
            let ids: Vec<String> = variants
                .iter()
                .filter_map(|v| values.get(&v.parameter).cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let images = if ids.is_empty() {
                Vec::new()
            } else {
                ec2.describe_images(ids, Vec::new(), Vec::new())
                    .await
                    .map_err(Error::DescribeImages)?
            };
            for v in &variants {
                let Some(id) = values.get(&v.parameter) else {
                    continue;
                };
                let image = images.iter().find(|i| i.image_id() == Some(id.as_str()));
                out.push(ResolvedAmi {
                    id: id.clone(),
                    name: image.and_then(|i| i.name()).map(str::to_string),
                    requirements: v.requirements.clone(),
                    creation_date: image.and_then(|i| i.creation_date()).map(str::to_string),
                });
            }
        } else {
            out.extend(images_by_term(ec2, term).await?);
        }
    }
    Ok(out)
}

async fn images_by_term(ec2: &dyn Ec2Api, term: &AmiSelectorTerm) -> Result<Vec<ResolvedAmi>> {
    let (ids, owners, mut filters) = match &term.id {
        Some(id) => (vec![id.clone()], Vec::new(), Vec::new()),
        None => {
            let owners = match &term.owner {
                Some(o) => vec![o.clone()],
                None if term.name.is_some() => vec!["self".to_string(), "amazon".to_string()],
                None => Vec::new(),
            };
            (Vec::new(), owners, tag_filters(&term.tags))
        }
    };
    if term.id.is_none() && term.name.is_none() && term.tags.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(name) = &term.name {
        filters.push(ec2t::Filter::builder().name("name").values(name).build());
    }
    let mut images = ec2
        .describe_images(ids, owners, filters)
        .await
        .map_err(Error::DescribeImages)?;
    // Newest first; ties by id so the order is deterministic.
    images.sort_by(|a, b| {
        b.creation_date()
            .cmp(&a.creation_date())
            .then_with(|| a.image_id().cmp(&b.image_id()))
    });
    Ok(images
        .iter()
        .filter_map(|i| {
            let arch = match i.architecture()? {
                ec2t::ArchitectureValues::Arm64 => "arm64",
                ec2t::ArchitectureValues::X8664 => "x86_64",
                _ => return None,
            };
            Some(ResolvedAmi {
                id: i.image_id()?.to_string(),
                name: i.name().map(str::to_string),
                requirements: vec![Requirement::in_(labels::ARCH, [arch_label(arch)])],
                creation_date: i.creation_date().map(str::to_string),
            })
        })
        .collect())
}

/// Resolves the whole node class. `managed_profile` is the instance profile made for the class's
/// `role` (used when the class names no `instanceProfile`).
pub async fn resolve(
    ec2: &dyn Ec2Api,
    ssm: &dyn SsmApi,
    class: &EC2NodeClass,
    kubernetes_version: &str,
    managed_profile: Option<String>,
) -> Result<ResolvedNodeClass> {
    let name = class.metadata.name.clone().unwrap_or_default();
    let subnets = subnets(ec2, class).await?;
    let security_groups = security_groups(ec2, class).await?;
    let amis = amis(ec2, ssm, class, kubernetes_version).await?;
    let instance_profile = class.spec.instance_profile.clone().or(managed_profile);
    let family = class.ami_family().unwrap_or(AmiFamily::AL2023);
    let not_ready = if subnets.is_empty() {
        Some("no subnet matches subnetSelectorTerms".to_string())
    } else if security_groups.is_empty() {
        Some("no security group matches securityGroupSelectorTerms".to_string())
    } else if amis.is_empty() {
        Some("no image matches amiSelectorTerms".to_string())
    } else if instance_profile.is_none() {
        Some("neither spec.instanceProfile nor spec.role is set".to_string())
    } else {
        None
    };
    Ok(ResolvedNodeClass {
        name,
        family,
        subnets,
        security_groups,
        amis,
        instance_profile,
        not_ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_variants_name_the_public_parameters() {
        let v = alias_variants(AmiFamily::AL2023, "latest", "1.33");
        let names: Vec<&str> = v.iter().map(|v| v.parameter.as_str()).collect();
        assert!(names.contains(&"/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id"));
        assert!(names.contains(&"/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/arm64/nvidia/recommended/image_id"));
        assert!(names.contains(&"/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/neuron/recommended/image_id"));
        let b = alias_variants(AmiFamily::Bottlerocket, "latest", "1.33");
        assert_eq!(
            b[0].parameter,
            "/aws/service/bottlerocket/aws-k8s-1.33/x86_64/latest/image_id"
        );
        assert_eq!(
            b[1].parameter,
            "/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/latest/image_id"
        );
    }

    #[test]
    fn subnet_per_zone_takes_the_most_free_addresses() {
        let s = |id: &str, zone: &str, free| ResolvedSubnet {
            id: id.into(),
            zone: zone.into(),
            zone_id: None,
            free_ips: free,
        };
        let class = ResolvedNodeClass {
            name: "default".into(),
            family: AmiFamily::AL2023,
            subnets: vec![
                s("subnet-1", "a", 10),
                s("subnet-2", "a", 200),
                s("subnet-3", "b", 5),
            ],
            security_groups: vec![],
            amis: vec![],
            instance_profile: None,
            not_ready: None,
        };
        let per_zone = class.subnet_per_zone();
        assert_eq!(per_zone["a"].id, "subnet-2");
        assert_eq!(per_zone["b"].id, "subnet-3");
    }
}
