//! `aws.stowage.dev/v1` EC2NodeClass: how to launch an EC2 instance (AMI, subnets, security
//! groups, IAM, user data, disks, kubelet settings) and what those selectors resolved to.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::{Condition, impl_condition_helpers};
use crate::requirements::Requirement;
use crate::stamp::{HashStamp, fnv1a_hex};

/// The version of [`EC2NodeClass::static_hash`]: bumped whenever the hashed fields or their
/// encoding change, so claims stamped by an older release are re-stamped instead of drifted.
pub const STATIC_HASH_VERSION: &str = "v1";

/// AMI families an alias may name (`al2023@latest`, `bottlerocket@v1.30.0`, `al2@v20240807`).
pub const AMI_ALIAS_FAMILIES: &[&str] = &["al2023", "bottlerocket", "al2"];

/// The operating system image family; decides the user-data format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AmiFamily {
    AL2023,
    Bottlerocket,
    AL2,
    /// User data is passed through untouched.
    Custom,
}

impl AmiFamily {
    /// The family an alias family name stands for (`al2023` → `AL2023`).
    pub fn from_alias_family(family: &str) -> Option<AmiFamily> {
        match family {
            "al2023" => Some(AmiFamily::AL2023),
            "bottlerocket" => Some(AmiFamily::Bottlerocket),
            "al2" => Some(AmiFamily::AL2),
            _ => None,
        }
    }
}

/// Selects AMIs: an `alias` on its own, an `id` on its own, or `name`/`owner`/`tags` together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmiSelectorTerm {
    /// `family@version`: `al2023@latest`, `bottlerocket@v1.30.0`, `al2@v20240807`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// An AMI id, `ami-0123456789abcdef0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An AMI name (wildcards allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The AMI owner: an account id or `self`, `amazon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Tags the AMI must carry (`*` as value matches any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl AmiSelectorTerm {
    /// `(family, version)` of the alias, if this term has one in the `family@version` form.
    pub fn alias_parts(&self) -> Option<(&str, &str)> {
        self.alias.as_deref()?.split_once('@')
    }
}

/// Selects subnets by `id` or by `tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSelectorTerm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Selects security groups by `id`, by `name` or by `tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSelectorTerm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Selects capacity reservations by `id`, or by `tags` (optionally of one owner account).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReservationSelectorTerm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "ownerID", skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// An EBS volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    #[serde(default, rename = "kmsKeyID", skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Throughput in MiB/s (gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    /// Size, e.g. `20Gi` (1Gi..64Ti).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<Quantity>,
    /// `gp3`, `gp2`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
}

/// A block device of the instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    /// e.g. `/dev/xvda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// This volume is the root volume (at most one mapping may say so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_volume: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<BlockDevice>,
}

fn default_enabled() -> String {
    "enabled".to_string()
}
fn default_disabled() -> String {
    "disabled".to_string()
}
fn default_hop_limit() -> i64 {
    1
}
fn default_required() -> String {
    "required".to_string()
}

/// Instance metadata service settings. Default: IMDSv2 only, hop limit 1 (pods cannot reach it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOptions {
    /// `enabled` or `disabled`.
    #[serde(default = "default_enabled")]
    pub http_endpoint: String,
    /// `enabled` or `disabled`.
    #[serde(default = "default_disabled", rename = "httpProtocolIPv6")]
    pub http_protocol_ipv6: String,
    /// 1..64.
    #[serde(default = "default_hop_limit")]
    pub http_put_response_hop_limit: i64,
    /// `required` (IMDSv2) or `optional`.
    #[serde(default = "default_required")]
    pub http_tokens: String,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            http_endpoint: default_enabled(),
            http_protocol_ipv6: default_disabled(),
            http_put_response_hop_limit: default_hop_limit(),
            http_tokens: default_required(),
        }
    }
}

/// Kubelet settings baked into user data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_per_core: Option<i32>,
    /// e.g. `{cpu: 100m, memory: 100Mi}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system_reserved: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kube_reserved: BTreeMap<String, String>,
    /// e.g. `{memory.available: 5%}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_hard: BTreeMap<String, String>,
    #[serde(default, rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
}

/// How to launch EC2 instances for a NodePool.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "aws.stowage.dev",
    version = "v1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    singular = "ec2nodeclass",
    status = "EC2NodeClassStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "stowage",
    shortname = "ec2nc",
    doc = "How Stowage launches EC2 instances: AMI, subnets, security groups, IAM, user data, disks and kubelet settings.",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Role", "type": "string", "jsonPath": ".spec.role"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassSpec {
    /// AMIs to launch (terms are ORed).
    #[serde(default)]
    pub ami_selector_terms: Vec<AmiSelectorTerm>,
    /// The family of AMIs selected by id/name/tags (implied by an alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_family: Option<AmiFamily>,
    /// Subnets to launch into (terms are ORed).
    #[serde(default)]
    pub subnet_selector_terms: Vec<SubnetSelectorTerm>,
    /// Security groups to attach (terms are ORed).
    #[serde(default)]
    pub security_group_selector_terms: Vec<SecurityGroupSelectorTerm>,
    /// Capacity reservations to use (`reserved` capacity type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_reservation_selector_terms: Vec<CapacityReservationSelectorTerm>,
    /// IAM role for the nodes; Stowage manages an instance profile for it. Exclusive with
    /// `instanceProfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// An existing instance profile. Exclusive with `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Extra user data, merged with what the AMI family needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// Default: IMDSv2 required, hop limit 1.
    #[serde(default)]
    pub metadata_options: MetadataOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// Tags for instances, volumes and launch templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "associatePublicIPAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub associate_public_ip_address: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
}

/// A resolved subnet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetStatus {
    pub id: String,
    pub zone: String,
    #[serde(default, rename = "zoneID", skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A resolved security group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupStatus {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A resolved AMI and the instance requirements it serves (e.g. `kubernetes.io/arch In [arm64]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmiStatus {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<Requirement>,
}

/// A resolved capacity reservation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReservationStatus {
    pub id: String,
    pub instance_type: String,
    pub availability_zone: String,
    #[serde(default, rename = "ownerID", skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

/// What the selectors resolved to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroupStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<AmiStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_reservations: Vec<CapacityReservationStatus>,
    /// The instance profile nodes get (the managed one when `role` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl_condition_helpers!(EC2NodeClassStatus);

impl EC2NodeClass {
    /// The condition of `type_`, if the class has a status and the condition is set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref().and_then(|s| s.condition(type_))
    }

    /// Whether the condition of `type_` is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(Condition::is_true)
    }

    /// The status, created empty if absent.
    pub fn status_mut(&mut self) -> &mut EC2NodeClassStatus {
        self.status.get_or_insert_with(EC2NodeClassStatus::default)
    }

    /// A stable hash of the spec fields a launched node keeps (`amiFamily`, `role`,
    /// `instanceProfile`, `userData`, `blockDeviceMappings`, `metadataOptions`, `kubelet`, `tags`,
    /// `associatePublicIPAddress`, `detailedMonitoring`): a change of any of them drifts the
    /// class's nodes. The selector terms (AMIs, subnets, security groups, capacity reservations)
    /// are left out: what they resolve to is compared with each node instead, so an edit that
    /// still selects a node's image, subnet and groups does not replace it.
    pub fn static_hash(&self) -> String {
        let mut spec = match serde_json::to_value(&self.spec) {
            Ok(serde_json::Value::Object(map)) => map,
            // A spec always encodes as an object; an empty hash would only make every
            // comparison equal, never drift a node by mistake.
            _ => serde_json::Map::new(),
        };
        for dynamic in [
            "amiSelectorTerms",
            "subnetSelectorTerms",
            "securityGroupSelectorTerms",
            "capacityReservationSelectorTerms",
        ] {
            spec.remove(dynamic);
        }
        let sorted: BTreeMap<String, serde_json::Value> = spec.into_iter().collect();
        fnv1a_hex(
            serde_json::to_string(&sorted)
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    /// [`EC2NodeClass::static_hash`] as the stamp written on claims launched from this class.
    pub fn static_stamp(&self) -> HashStamp {
        HashStamp {
            key: crate::labels::EC2NODECLASS_HASH,
            version_key: crate::labels::EC2NODECLASS_HASH_VERSION,
            hash: self.static_hash(),
            version: STATIC_HASH_VERSION,
        }
    }

    /// The AMI family: from the alias if there is one, else `amiFamily`.
    pub fn ami_family(&self) -> Option<AmiFamily> {
        self.spec
            .ami_selector_terms
            .iter()
            .find_map(|t| {
                t.alias_parts()
                    .and_then(|(family, _)| AmiFamily::from_alias_family(family))
            })
            .or(self.spec.ami_family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(f: impl FnOnce(&mut EC2NodeClassSpec)) -> EC2NodeClass {
        let mut spec = EC2NodeClassSpec {
            ami_selector_terms: vec![AmiSelectorTerm {
                alias: Some("al2023@latest".into()),
                ..AmiSelectorTerm::default()
            }],
            subnet_selector_terms: vec![SubnetSelectorTerm {
                tags: [("team".to_string(), "a".to_string())].into(),
                ..SubnetSelectorTerm::default()
            }],
            role: Some("nodes".into()),
            ..EC2NodeClassSpec::default()
        };
        f(&mut spec);
        EC2NodeClass::new("default", spec)
    }

    #[test]
    fn the_static_hash_ignores_selectors_and_tracks_what_nodes_keep() {
        let h = class(|_| {}).static_hash();
        assert_eq!(h.len(), 16);
        assert_eq!(class(|_| {}).static_hash(), h, "deterministic");
        let selectors_only = [
            class(|s| s.ami_selector_terms[0].alias = Some("al2023@v20261101".into())),
            class(|s| {
                s.subnet_selector_terms[0]
                    .tags
                    .insert("zone".into(), "a".into());
            }),
            class(|s| {
                s.security_group_selector_terms
                    .push(SecurityGroupSelectorTerm {
                        id: Some("sg-1".into()),
                        ..SecurityGroupSelectorTerm::default()
                    })
            }),
        ];
        for c in &selectors_only {
            assert_eq!(c.static_hash(), h, "{:?}", c.spec);
        }
        let kept_by_nodes = [
            class(|s| s.role = Some("other".into())),
            class(|s| s.user_data = Some("echo hi".into())),
            class(|s| {
                s.tags.insert("cost-centre".into(), "42".into());
            }),
            class(|s| s.metadata_options.http_put_response_hop_limit = 2),
            class(|s| {
                s.kubelet = Some(KubeletConfiguration {
                    max_pods: Some(50),
                    ..KubeletConfiguration::default()
                })
            }),
            class(|s| s.ami_family = Some(AmiFamily::Custom)),
            class(|s| s.detailed_monitoring = Some(true)),
        ];
        for c in &kept_by_nodes {
            assert_ne!(c.static_hash(), h, "{:?}", c.spec);
        }
        let stamp = class(|_| {}).static_stamp();
        assert_eq!(stamp.key, crate::labels::EC2NODECLASS_HASH);
        assert_eq!(stamp.version, STATIC_HASH_VERSION);
        assert_eq!(stamp.hash, h);
    }
}
