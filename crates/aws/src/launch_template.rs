//! Launch templates: which template each launch option needs (the node class's AMI for the type,
//! its security groups and block devices, user data with the type's max pods and reserved
//! resources), one per distinct (AMI, security groups, user data, instance profile, block
//! devices, metadata options, network and monitoring settings), named by a hash of exactly those,
//! created on first use, cached, and deleted once stale (their node class is gone or resolves to
//! something else).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types as ec2t;
use base64::Engine;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use sha2::{Digest, Sha256};
use stowage_api::{AmiFamily, BlockDevice, BlockDeviceMapping, EC2NodeClass, MetadataOptions};

use crate::discovery::ResolvedNodeClass;
use crate::errors::{ErrorClass, classify};
use crate::sdk::{self, Ec2Api};
use crate::selection::LaunchOption;
use crate::userdata::{self, NodeBootstrap};

/// At most this many launch-template configs go into one CreateFleet call (the API's limit).
pub const MAX_LAUNCH_TEMPLATE_CONFIGS: usize = 50;

/// Tag on launch templates: the cluster they belong to.
pub const CLUSTER_TAG: &str = "stowage.dev/cluster";
/// Tag on launch templates: the node class they were made for.
pub const NODECLASS_TAG: &str = "aws.stowage.dev/ec2nodeclass";
/// Tag on launch templates: the node class's resolution hash when the template was made.
pub const NODECLASS_HASH_TAG: &str = "aws.stowage.dev/ec2nodeclass-hash";

const GIB: i64 = 1 << 30;

/// Everything that distinguishes one launch template from another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaunchTemplateSpec {
    pub image_id: String,
    /// Sorted.
    pub security_group_ids: Vec<String>,
    /// Plain text (base64-encoded when sent).
    pub user_data: String,
    pub instance_profile: Option<String>,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub metadata: MetadataOptions,
    pub associate_public_ip_address: Option<bool>,
    pub detailed_monitoring: Option<bool>,
}

impl LaunchTemplateSpec {
    /// `stowage/<cluster>/<hash>`: the same spec always gets the same name.
    pub fn name(&self, cluster: &str) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        format!("stowage/{cluster}/{}", hex::encode(&digest[..16]))
    }

    /// The launch template data sent to EC2.
    pub fn data(&self) -> ec2t::RequestLaunchTemplateData {
        let mut d = ec2t::RequestLaunchTemplateData::builder()
            .image_id(&self.image_id)
            .user_data(base64::engine::general_purpose::STANDARD.encode(self.user_data.as_bytes()))
            .metadata_options(
                ec2t::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_endpoint(ec2t::LaunchTemplateInstanceMetadataEndpointState::from(
                        self.metadata.http_endpoint.as_str(),
                    ))
                    .http_protocol_ipv6(ec2t::LaunchTemplateInstanceMetadataProtocolIpv6::from(
                        self.metadata.http_protocol_ipv6.as_str(),
                    ))
                    .http_put_response_hop_limit(
                        i32::try_from(self.metadata.http_put_response_hop_limit).unwrap_or(1),
                    )
                    .http_tokens(ec2t::LaunchTemplateHttpTokensState::from(
                        self.metadata.http_tokens.as_str(),
                    ))
                    .build(),
            );
        if let Some(profile) = &self.instance_profile {
            d = d.iam_instance_profile(
                ec2t::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(profile)
                    .build(),
            );
        }
        match self.associate_public_ip_address {
            Some(public) => {
                d = d.network_interfaces(
                    ec2t::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                        .device_index(0)
                        .associate_public_ip_address(public)
                        .set_groups(Some(self.security_group_ids.clone()))
                        .build(),
                );
            }
            None => d = d.set_security_group_ids(Some(self.security_group_ids.clone())),
        }
        if let Some(monitoring) = self.detailed_monitoring {
            d = d.monitoring(
                ec2t::LaunchTemplatesMonitoringRequest::builder()
                    .enabled(monitoring)
                    .build(),
            );
        }
        for bdm in &self.block_devices {
            let mut m = ec2t::LaunchTemplateBlockDeviceMappingRequest::builder()
                .set_device_name(bdm.device_name.clone());
            if let Some(ebs) = &bdm.ebs {
                let size_gib = ebs.volume_size.as_ref().and_then(|q| {
                    let bytes = stowage_api::quantity::parse_value(&q.0).ok()?;
                    i32::try_from((bytes + GIB - 1) / GIB).ok()
                });
                m = m.ebs(
                    ec2t::LaunchTemplateEbsBlockDeviceRequest::builder()
                        .set_delete_on_termination(ebs.delete_on_termination)
                        .set_encrypted(ebs.encrypted)
                        .set_iops(ebs.iops.and_then(|v| i32::try_from(v).ok()))
                        .set_kms_key_id(ebs.kms_key_id.clone())
                        .set_snapshot_id(ebs.snapshot_id.clone())
                        .set_throughput(ebs.throughput.and_then(|v| i32::try_from(v).ok()))
                        .set_volume_size(size_gib)
                        .set_volume_type(ebs.volume_type.as_deref().map(ec2t::VolumeType::from))
                        .build(),
                );
            }
            d = d.block_device_mappings(m.build());
        }
        d.build()
    }
}

/// Creates, caches and garbage-collects launch templates.
#[derive(Debug)]
pub struct LaunchTemplates {
    ec2: Arc<dyn Ec2Api>,
    cluster: String,
    /// Names known to exist.
    known: Mutex<BTreeSet<String>>,
    create: tokio::sync::Mutex<()>,
}

impl LaunchTemplates {
    pub fn new(ec2: Arc<dyn Ec2Api>, cluster: &str) -> Self {
        Self {
            ec2,
            cluster: cluster.to_string(),
            known: Mutex::new(BTreeSet::new()),
            create: tokio::sync::Mutex::new(()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        match self.known.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The template's name, creating it if it does not exist yet.
    pub async fn ensure(
        &self,
        spec: &LaunchTemplateSpec,
        node_class: &str,
        node_class_hash: &str,
    ) -> Result<String, sdk::Error> {
        let name = spec.name(&self.cluster);
        if self.known().contains(&name) {
            return Ok(name);
        }
        let _guard = self.create.lock().await;
        if self.known().contains(&name) {
            return Ok(name);
        }
        match self
            .ec2
            .describe_launch_templates(vec![name.clone()], Vec::new())
            .await
        {
            Ok(found) if !found.is_empty() => {
                self.known().insert(name.clone());
                return Ok(name);
            }
            Ok(_) => {}
            Err(e) if classify(&e) == ErrorClass::NotFound => {}
            Err(e) => return Err(e),
        }
        let tags = ec2t::TagSpecification::builder()
            .resource_type(ec2t::ResourceType::LaunchTemplate)
            .tags(tag(CLUSTER_TAG, &self.cluster))
            .tags(tag(NODECLASS_TAG, node_class))
            .tags(tag(NODECLASS_HASH_TAG, node_class_hash))
            .build();
        match self
            .ec2
            .create_launch_template(name.clone(), spec.data(), vec![tags])
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("InvalidLaunchTemplateName.AlreadyExistsException") => {}
            Err(e) => return Err(e),
        }
        self.known().insert(name.clone());
        Ok(name)
    }

    /// The cluster's launch templates: name -> (node class, node class hash).
    pub async fn list(&self) -> Result<BTreeMap<String, (String, String)>, sdk::Error> {
        let filter = ec2t::Filter::builder()
            .name(format!("tag:{CLUSTER_TAG}"))
            .values(&self.cluster)
            .build();
        let templates = self
            .ec2
            .describe_launch_templates(Vec::new(), vec![filter])
            .await?;
        Ok(templates
            .iter()
            .filter_map(|t| {
                let get = |k: &str| {
                    t.tags()
                        .iter()
                        .find(|x| x.key() == Some(k))
                        .and_then(|x| x.value())
                        .unwrap_or_default()
                        .to_string()
                };
                Some((
                    t.launch_template_name()?.to_string(),
                    (get(NODECLASS_TAG), get(NODECLASS_HASH_TAG)),
                ))
            })
            .collect())
    }

    /// Deletes the cluster's templates whose node class is not in `live` (class -> current hash)
    /// or was resolved differently. Returns the deleted names.
    pub async fn delete_stale(
        &self,
        live: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, sdk::Error> {
        self.delete_where(|class, hash| live.get(class).map(String::as_str) != Some(hash))
            .await
    }

    /// Deletes the templates of `class` made for another resolution than `current_hash`.
    pub async fn delete_outdated(
        &self,
        class: &str,
        current_hash: &str,
    ) -> Result<Vec<String>, sdk::Error> {
        self.delete_where(|c, hash| c == class && hash != current_hash)
            .await
    }

    async fn delete_where(
        &self,
        stale: impl Fn(&str, &str) -> bool,
    ) -> Result<Vec<String>, sdk::Error> {
        let mut deleted = Vec::new();
        for (name, (class, hash)) in self.list().await? {
            if !stale(&class, &hash) {
                continue;
            }
            match self.ec2.delete_launch_template(name.clone()).await {
                Ok(()) => {}
                Err(e) if classify(&e) == ErrorClass::NotFound => {}
                Err(e) => return Err(e),
            }
            self.known().remove(&name);
            deleted.push(name);
        }
        Ok(deleted)
    }
}

/// The volumes of a node class without `blockDeviceMappings`: a 20 GiB encrypted gp3 root
/// (Bottlerocket: a 4 GiB OS volume and a 20 GiB data volume).
pub fn default_block_devices(family: AmiFamily) -> Vec<BlockDeviceMapping> {
    let volume = |device: &str, size: &str, root: bool| BlockDeviceMapping {
        device_name: Some(device.to_string()),
        root_volume: root,
        ebs: Some(BlockDevice {
            delete_on_termination: Some(true),
            encrypted: Some(true),
            volume_size: Some(Quantity(size.to_string())),
            volume_type: Some("gp3".to_string()),
            ..BlockDevice::default()
        }),
    };
    match family {
        AmiFamily::Bottlerocket => vec![
            volume("/dev/xvda", "4Gi", false),
            volume("/dev/xvdb", "20Gi", true),
        ],
        _ => vec![volume("/dev/xvda", "20Gi", true)],
    }
}

/// Launch options that share one launch template.
#[derive(Debug)]
pub struct TemplateGroup<'o, 'a> {
    pub spec: LaunchTemplateSpec,
    /// Cheapest first.
    pub options: Vec<&'o LaunchOption<'a>>,
}

/// The launch templates `options` need, in the order of their cheapest option: options sharing
/// a spec share a group; options no image of the class serves are skipped, and so are options
/// that would open a group beyond [`MAX_LAUNCH_TEMPLATE_CONFIGS`]. `base` is the node's
/// bootstrap without the per-type values (max pods, reserved resources).
pub fn group_by_template<'o, 'a>(
    class: &EC2NodeClass,
    resolved: &ResolvedNodeClass,
    base: &NodeBootstrap,
    options: &'o [LaunchOption<'a>],
) -> Result<Vec<TemplateGroup<'o, 'a>>, userdata::Error> {
    let mut security_group_ids: Vec<String> = resolved
        .security_groups
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    security_group_ids.sort();
    let block_devices = if class.spec.block_device_mappings.is_empty() {
        default_block_devices(resolved.family)
    } else {
        class.spec.block_device_mappings.clone()
    };
    let mut groups: Vec<TemplateGroup<'o, 'a>> = Vec::new();
    for option in options {
        let t = option.instance_type;
        let Some(ami) = resolved.ami_for(&t.labels) else {
            continue;
        };
        let pods = t.capacity.pods();
        let bootstrap = NodeBootstrap {
            max_pods: (pods > 0).then_some(pods),
            ..base.clone()
        }
        .with_overhead(&t.overhead);
        let spec = LaunchTemplateSpec {
            image_id: ami.id.clone(),
            security_group_ids: security_group_ids.clone(),
            user_data: userdata::render(
                resolved.family,
                &bootstrap,
                class.spec.user_data.as_deref(),
            )?,
            instance_profile: resolved.instance_profile.clone(),
            block_devices: block_devices.clone(),
            metadata: class.spec.metadata_options.clone(),
            associate_public_ip_address: class.spec.associate_public_ip_address,
            detailed_monitoring: class.spec.detailed_monitoring,
        };
        match groups.iter().position(|g| g.spec == spec) {
            Some(i) => groups[i].options.push(option),
            None if groups.len() < MAX_LAUNCH_TEMPLATE_CONFIGS => groups.push(TemplateGroup {
                spec,
                options: vec![option],
            }),
            None => {}
        }
    }
    Ok(groups)
}

pub(crate) fn tag(key: &str, value: &str) -> ec2t::Tag {
    ec2t::Tag::builder().key(key).value(value).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchTemplateSpec {
        LaunchTemplateSpec {
            image_id: "ami-1".into(),
            security_group_ids: vec!["sg-1".into()],
            user_data: "#!/bin/bash\n".into(),
            instance_profile: Some("node".into()),
            block_devices: vec![],
            metadata: MetadataOptions::default(),
            associate_public_ip_address: None,
            detailed_monitoring: None,
        }
    }

    #[test]
    fn the_name_is_a_hash_of_the_spec() {
        let a = spec();
        assert_eq!(a.name("c"), spec().name("c"));
        assert!(a.name("c").starts_with("stowage/c/"));
        let mut b = spec();
        b.user_data.push_str("echo hi\n");
        assert_ne!(a.name("c"), b.name("c"));
        let mut c = spec();
        c.image_id = "ami-2".into();
        assert_ne!(a.name("c"), c.name("c"));
    }

    #[test]
    fn data_carries_image_groups_profile_and_imdsv2() {
        let d = spec().data();
        assert_eq!(d.image_id(), Some("ami-1"));
        assert_eq!(d.security_group_ids(), ["sg-1".to_string()]);
        assert_eq!(
            d.iam_instance_profile().and_then(|p| p.name()),
            Some("node")
        );
        assert_eq!(
            d.metadata_options().and_then(|m| m.http_tokens()),
            Some(&ec2t::LaunchTemplateHttpTokensState::Required)
        );
    }
}
