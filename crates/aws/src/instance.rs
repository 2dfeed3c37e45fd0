//! EC2 instances as the provider sees them: provider ids (`aws:///<zone>/<instance-id>`) and the
//! fields of a described instance that become NodeClaim status.

use std::collections::BTreeMap;

use aws_sdk_ec2::types as ec2t;
use stowage_api::CapacityType;

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
