//! EC2 instances as the provider sees them: provider ids (`aws:///<zone>/<instance-id>`), the
//! tags that mark an instance as this cluster's, the fields of a described instance that become
//! NodeClaim status, and the coalesced per-instance calls (DescribeInstances by id or by
//! NodeClaim tag, TerminateInstances) that answer many callers with one AWS call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_ec2::types as ec2t;
use stowage_api::{CapacityType, labels};
use stowage_cloud::Error as CloudError;

use crate::errors::{self, ErrorClass, classify};
use crate::sdk::Ec2Api;

/// EC2 tag naming the cluster for EKS.
pub const EKS_CLUSTER_TAG: &str = "eks:eks-cluster-name";
/// Instance states that still hold (or will hold) capacity.
pub const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// The `kubernetes.io/cluster/<name>` tag key.
pub fn cluster_tag(cluster: &str) -> String {
    format!("kubernetes.io/cluster/{cluster}")
}

pub type DescribeResult = std::result::Result<Option<InstanceView>, CloudError>;
pub type TerminateResult = std::result::Result<(), CloudError>;

/// Builds `aws:///<zone>/<instance-id>`.
pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance id of `aws:///<zone>/<instance-id>` (or a bare `i-...`).
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let id = provider_id.rsplit('/').next()?;
    id.starts_with("i-").then_some(id)
}

/// The parts of a described instance the provider uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// `pending`, `running`, `shutting-down`, `terminated`, ...
    pub state: String,
    pub image_id: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl InstanceView {
    pub fn from_sdk(i: &ec2t::Instance) -> Option<Self> {
        Some(Self {
            id: i.instance_id()?.to_string(),
            instance_type: i.instance_type()?.as_str().to_string(),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
            capacity_type: match i.instance_lifecycle() {
                Some(ec2t::InstanceLifecycleType::Spot) => CapacityType::Spot,
                _ if i.capacity_reservation_id().is_some() => CapacityType::Reserved,
                _ => CapacityType::OnDemand,
            },
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            image_id: i.image_id().map(str::to_string),
            subnet_id: i.subnet_id().map(str::to_string),
            security_group_ids: i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .map(str::to_string)
                .collect(),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
        })
    }

    /// Terminated or on its way there.
    pub fn is_gone(&self) -> bool {
        matches!(self.state.as_str(), "terminated" | "shutting-down")
    }

    pub fn provider_id(&self) -> String {
        provider_id(&self.zone, &self.id)
    }
}

/// One DescribeInstances (by `instance-id` filter, so unknown ids are simply absent).
pub async fn describe_batch(ec2: Arc<dyn Ec2Api>, ids: Vec<String>) -> Vec<DescribeResult> {
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let filter = ec2t::Filter::builder()
        .name("instance-id")
        .set_values(Some(unique.into_iter().collect()))
        .build();
    match ec2.describe_instances(Vec::new(), vec![filter]).await {
        Ok(found) => {
            let by_id: HashMap<String, InstanceView> = found
                .iter()
                .filter_map(InstanceView::from_sdk)
                .map(|v| (v.id.clone(), v))
                .collect();
            ids.iter().map(|id| Ok(by_id.get(id).cloned())).collect()
        }
        Err(e) => {
            let err = errors::to_cloud(e);
            ids.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

/// One DescribeInstances for the live instances of many NodeClaims (tag filter values are ORed).
pub async fn lookup_batch(
    ec2: Arc<dyn Ec2Api>,
    cluster: String,
    names: Vec<String>,
) -> Vec<DescribeResult> {
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    let filters = vec![
        ec2t::Filter::builder()
            .name(format!("tag:{}", labels::NODECLAIM))
            .set_values(Some(unique.into_iter().collect()))
            .build(),
        ec2t::Filter::builder()
            .name(format!("tag:{}", cluster_tag(&cluster)))
            .values("owned")
            .build(),
        ec2t::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
            .build(),
    ];
    match ec2.describe_instances(Vec::new(), filters).await {
        Ok(found) => {
            let mut by_claim: BTreeMap<String, InstanceView> = BTreeMap::new();
            let mut views: Vec<InstanceView> =
                found.iter().filter_map(InstanceView::from_sdk).collect();
            // Lowest instance id first, so the answer is the same on every call.
            views.sort_by(|a, b| a.id.cmp(&b.id));
            for v in views {
                if let Some(claim) = v.tags.get(labels::NODECLAIM).cloned() {
                    by_claim.entry(claim).or_insert(v);
                }
            }
            names.iter().map(|n| Ok(by_claim.get(n).cloned())).collect()
        }
        Err(e) => {
            let err = errors::to_cloud(e);
            names.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

/// One TerminateInstances; if one id is unknown the call fails as a whole, so then each id is
/// retried alone to tell which are gone.
pub async fn terminate_batch(ec2: Arc<dyn Ec2Api>, ids: Vec<String>) -> Vec<TerminateResult> {
    let unique: Vec<String> = ids
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    match ec2.terminate_instances(unique.clone()).await {
        Ok(_) => ids.iter().map(|_| Ok(())).collect(),
        Err(e) if classify(&e) == ErrorClass::NotFound && unique.len() > 1 => {
            let mut each: HashMap<String, TerminateResult> = HashMap::new();
            for id in unique {
                let r = ec2
                    .terminate_instances(vec![id.clone()])
                    .await
                    .map(|_| ())
                    .map_err(errors::to_cloud);
                each.insert(id, r);
            }
            ids.iter()
                .map(|id| match each.get(id) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(CloudError::NotFound(id.clone())),
                })
                .collect()
        }
        Err(e) => {
            let err = errors::to_cloud(e);
            ids.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_round_trip() {
        let p = provider_id("us-east-1a", "i-0123");
        assert_eq!(p, "aws:///us-east-1a/i-0123");
        assert_eq!(instance_id(&p), Some("i-0123"));
        assert_eq!(instance_id("i-9"), Some("i-9"));
        assert_eq!(instance_id("kind://node"), None);
    }
}
