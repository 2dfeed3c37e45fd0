//! What `create` does for one NodeClaim: find the claim's resolved node class (a class not
//! resolved yet makes the caller wait; a resolved class that cannot launch fails the launch),
//! return the instance already launched for the claim if there is one, else select the offerings
//! the claim allows ([`crate::selection`]), make sure their launch templates exist
//! ([`crate::launch_template`]) and join a coalesced CreateFleet ([`crate::fleet`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use stowage_api::{NodeClaim, labels};
use stowage_cloud::{Error as CloudError, Result};
use tracing::debug;

use super::{AwsCloudProvider, ClassEntry, client_token, dropped};
use crate::discovery::ResolvedSubnet;
use crate::errors;
use crate::fleet::{ClaimRef, FleetKey, Override};
use crate::instance::InstanceView;
use crate::launch_template::{TemplateGroup, group_by_template};
use crate::selection;
use crate::userdata::NodeBootstrap;

/// Launch-template configs of a fleet, and the image each instance type launches with.
type FleetConfigs = (Vec<(String, Vec<Override>)>, HashMap<String, String>);

impl AwsCloudProvider {
    /// `CloudProvider::create`; see the module docs. The claim comes back stamped with the
    /// node class's static hash (`aws.stowage.dev/ec2nodeclass-hash` and its version), which
    /// `is_drifted` compares later.
    pub(super) async fn launch(&self, claim: &NodeClaim) -> Result<NodeClaim> {
        let entry = self.class(&claim.spec.node_class_ref.name)?;
        let mut launched = self.launch_from(claim, &entry).await?;
        entry.stamp.apply(
            launched
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new),
        );
        Ok(launched)
    }

    async fn launch_from(&self, claim: &NodeClaim, entry: &ClassEntry) -> Result<NodeClaim> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        if let Some(reason) = &entry.resolved.not_ready {
            return Err(CloudError::NodeClassNotReady {
                reason: reason.clone(),
            });
        }
        if let Some(existing) = self.find_claim_instance(&name).await? {
            debug!(claim = %name, instance = %existing.id, "instance already launched for claim");
            return Ok(self.claim_from_instance(&existing, Some(claim)).await);
        }
        let types = self.types_for(entry).await?;
        let per_zone = entry.resolved.subnet_per_zone();
        let zones: BTreeSet<String> = per_zone.keys().cloned().collect();
        let selection = selection::select(claim, &types, &zones)?;
        let base = self.bootstrap(claim, entry);
        let groups = group_by_template(&entry.class, &entry.resolved, &base, &selection.options)
            .map_err(|e| CloudError::NodeClassNotReady {
                reason: format!("invalid userData: {e}"),
            })?;
        if groups.is_empty() {
            return Err(CloudError::Launch {
                code: "NoCompatibleInstanceTypes".to_string(),
                message: format!("no image of the node class serves nodeclaim {name}'s options"),
            });
        }
        let (configs, image_of) = self.fleet_configs(entry, &groups, &per_zone).await?;
        let tags = self.instance_tags(entry, claim.nodepool_name());
        let key = FleetKey {
            capacity_type: selection.capacity_type,
            configs,
            tags: tags.clone().into_iter().collect(),
        };
        let claim_ref = ClaimRef {
            name: name.clone(),
            token: client_token(claim),
        };
        let launched = self
            .inner
            .fleet
            .call(key, claim_ref)
            .await
            .map_err(|e| dropped("CreateFleet", e))??;
        let view = InstanceView {
            id: launched.id.clone(),
            image_id: image_of.get(&launched.instance_type).cloned(),
            instance_type: launched.instance_type,
            zone: launched.zone,
            capacity_type: launched.capacity_type,
            state: "pending".to_string(),
            subnet_id: None,
            security_group_ids: Vec::new(),
            tags,
        };
        Ok(self.claim_from_instance(&view, Some(claim)).await)
    }

    /// The node's bootstrap for `claim` before per-type values: the claim's labels (plus its
    /// node class), taints and startup taints, the class's cluster DNS.
    fn bootstrap(&self, claim: &NodeClaim, entry: &ClassEntry) -> NodeBootstrap {
        let mut claim_labels = claim.metadata.labels.clone().unwrap_or_default();
        claim_labels.insert(
            labels::EC2NODECLASS.to_string(),
            entry.resolved.name.clone(),
        );
        let mut taints = claim.spec.taints.clone();
        taints.extend(claim.spec.startup_taints.clone());
        NodeBootstrap {
            cluster: self.inner.settings.cluster.clone(),
            labels: claim_labels,
            taints,
            max_pods: None,
            cluster_dns: entry
                .class
                .spec
                .kubelet
                .as_ref()
                .map(|k| k.cluster_dns.clone())
                .unwrap_or_default(),
            ..NodeBootstrap::default()
        }
    }

    /// Ensures each group's launch template and lists its overrides: every option's type in the
    /// subnet with the most free addresses of each of its zones.
    async fn fleet_configs(
        &self,
        entry: &ClassEntry,
        groups: &[TemplateGroup<'_, '_>],
        per_zone: &BTreeMap<String, ResolvedSubnet>,
    ) -> Result<FleetConfigs> {
        let mut configs = Vec::with_capacity(groups.len());
        let mut image_of: HashMap<String, String> = HashMap::new();
        for group in groups {
            let lt = self
                .inner
                .templates
                .ensure(&group.spec, &entry.resolved.name, &entry.hash)
                .await
                .map_err(errors::launch_to_cloud)?;
            let mut overrides = Vec::new();
            for option in &group.options {
                let t = &option.instance_type.name;
                image_of.insert(t.clone(), group.spec.image_id.clone());
                for zone in &option.zones {
                    if let Some(subnet) = per_zone.get(zone) {
                        overrides.push(Override {
                            instance_type: t.clone(),
                            subnet_id: subnet.id.clone(),
                            zone: zone.clone(),
                        });
                    }
                }
            }
            configs.push((lt, overrides));
        }
        Ok((configs, image_of))
    }
}
