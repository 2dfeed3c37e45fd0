//! Instance profiles Stowage manages for node classes that name a `role` instead of an
//! `instanceProfile`: one per (region, cluster, node class), created on first resolution, kept
//! holding exactly the class's role, and deleted once the class is gone and no live instance of
//! the class remains.
//!
//! Key decision: the profile's name is derived from the region, cluster and class name only
//! (`stowage_<cluster>_<hash>`, at most 128 characters), so every replica and every restart finds
//! the same profile without remembering anything; the path `/stowage/<region>/<cluster>/` scopes
//! the listing that finds the profiles of classes that no longer exist.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_ec2::types as ec2t;
use aws_sdk_iam::types::{InstanceProfile, Tag};
use sha2::{Digest, Sha256};
use stowage_api::labels;

use crate::instance::{LIVE_STATES, cluster_tag};
use crate::launch_template::{CLUSTER_TAG, NODECLASS_TAG};
use crate::sdk::{self, Ec2Api, IamApi};

/// IAM's limit on an instance profile's name.
pub const MAX_NAME_LEN: usize = 128;

const PREFIX: &str = "stowage_";
const HASH_HEX: usize = 16;

/// What a sweep of stale profiles did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stale {
    /// Deleted profiles.
    pub deleted: Vec<String>,
    /// Profiles of deleted classes kept because instances of the class still run.
    pub kept: Vec<String>,
}

/// The managed instance profiles of one cluster.
#[derive(Clone, Debug)]
pub struct InstanceProfiles {
    iam: Arc<dyn IamApi>,
    ec2: Arc<dyn Ec2Api>,
    cluster: String,
    region: String,
}

/// The role name of `role`, which may also be given as an ARN (`arn:aws:iam::1:role/path/name`).
pub fn role_name(role: &str) -> &str {
    if role.starts_with("arn:") {
        role.rsplit('/').next().unwrap_or(role)
    } else {
        role
    }
}

fn profile_tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("tag key and value are set")
}

fn role_names(profile: &InstanceProfile) -> Vec<String> {
    profile
        .roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .collect()
}

/// The IAM path of a cluster's managed profiles: `/stowage/<region>/<cluster>/`.
pub fn profile_path(region: &str, cluster: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if ('!'..='~').contains(&c) && c != '/' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("/stowage/{}/{}/", clean(region), clean(cluster))
}

/// The managed profile's name for a node class: `stowage_<cluster>_<hash of region, cluster,
/// class>`, the cluster cut so the whole fits IAM's 128 characters.
pub fn profile_name(region: &str, cluster: &str, class: &str) -> String {
    let digest = Sha256::digest(format!("{region}\0{cluster}\0{class}"));
    let hash = &hex::encode(digest)[..HASH_HEX];
    let cluster: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN - PREFIX.len() - 1 - HASH_HEX)
        .collect();
    format!("{PREFIX}{cluster}_{hash}")
}

impl InstanceProfiles {
    pub fn new(iam: Arc<dyn IamApi>, ec2: Arc<dyn Ec2Api>, cluster: &str, region: &str) -> Self {
        Self {
            iam,
            ec2,
            cluster: cluster.to_string(),
            region: region.to_string(),
        }
    }

    /// The IAM path of this cluster's managed profiles.
    pub fn path(&self) -> String {
        profile_path(&self.region, &self.cluster)
    }

    /// The managed profile's name for node class `class`.
    pub fn name(&self, class: &str) -> String {
        profile_name(&self.region, &self.cluster, class)
    }

    /// Makes the class's profile exist and hold exactly `role`; returns its name.
    pub async fn ensure(&self, class: &str, role: &str) -> sdk::Result<String> {
        let name = self.name(class);
        let role = role_name(role).to_string();
        let current = match self.iam.get_instance_profile(name.clone()).await? {
            Some(profile) => role_names(&profile),
            None => {
                let tags = vec![
                    profile_tag(CLUSTER_TAG, &self.cluster),
                    profile_tag(NODECLASS_TAG, class),
                ];
                match self
                    .iam
                    .create_instance_profile(name.clone(), self.path(), tags)
                    .await
                {
                    Ok(()) => Vec::new(),
                    // Another replica made it between our Get and Create: read what it holds.
                    Err(e) if e.code() == Some("EntityAlreadyExists") => self
                        .iam
                        .get_instance_profile(name.clone())
                        .await?
                        .map(|p| role_names(&p))
                        .unwrap_or_default(),
                    Err(e) => return Err(e),
                }
            }
        };
        // A profile holds at most one role: drop the class's former role before adding the new.
        for other in current.iter().filter(|r| **r != role) {
            self.iam
                .remove_role_from_instance_profile(name.clone(), other.clone())
                .await?;
        }
        if !current.contains(&role) {
            self.iam
                .add_role_to_instance_profile(name.clone(), role)
                .await?;
        }
        Ok(name)
    }

    /// Deletes this cluster's managed profiles whose node class is not in `classes`, unless a live
    /// instance of that class still runs (its credentials come from the profile).
    pub async fn delete_stale(&self, classes: &BTreeSet<String>) -> sdk::Result<Stale> {
        let path = self.path();
        let live: BTreeSet<String> = classes.iter().map(|c| self.name(c)).collect();
        let mut stale = Stale::default();
        for profile in self.iam.list_instance_profiles(path.clone()).await? {
            let name = profile.instance_profile_name().to_string();
            if profile.path() != path || live.contains(&name) || !name.starts_with(PREFIX) {
                continue;
            }
            // The class's name, from the full profile (ListInstanceProfiles omits tags).
            let Some(full) = self.iam.get_instance_profile(name.clone()).await? else {
                continue;
            };
            let class = full
                .tags()
                .iter()
                .find(|t| t.key() == NODECLASS_TAG)
                .map(|t| t.value().to_string());
            if let Some(class) = &class
                && self.class_has_live_instances(class).await?
            {
                stale.kept.push(name);
                continue;
            }
            for role in role_names(&full) {
                self.iam
                    .remove_role_from_instance_profile(name.clone(), role)
                    .await?;
            }
            match self.iam.delete_instance_profile(name.clone()).await {
                Ok(()) => stale.deleted.push(name),
                Err(e) if e.code() == Some("NoSuchEntity") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(stale)
    }

    async fn class_has_live_instances(&self, class: &str) -> sdk::Result<bool> {
        let filters = vec![
            ec2t::Filter::builder()
                .name(format!("tag:{}", cluster_tag(&self.cluster)))
                .values("owned")
                .build(),
            ec2t::Filter::builder()
                .name(format!("tag:{}", labels::EC2NODECLASS))
                .values(class)
                .build(),
            ec2t::Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        ];
        Ok(!self
            .ec2
            .describe_instances(Vec::new(), filters)
            .await?
            .is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_accept_arns() {
        assert_eq!(role_name("KarpenterNodeRole"), "KarpenterNodeRole");
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/nodes/KarpenterNodeRole"),
            "KarpenterNodeRole"
        );
    }

    #[test]
    fn names_are_stable_distinct_and_fit_iams_limit() {
        let a = profile_name("us-east-1", "prod", "default");
        assert_eq!(a, profile_name("us-east-1", "prod", "default"));
        assert!(a.starts_with("stowage_prod_"));
        assert_ne!(a, profile_name("us-east-1", "prod", "gpu"));
        assert_ne!(a, profile_name("eu-west-1", "prod", "default"));
        assert_ne!(a, profile_name("us-east-1", "prod2", "default"));
        let long = profile_name("us-east-1", &"c".repeat(300), &"k".repeat(300));
        assert_eq!(long.len(), MAX_NAME_LEN);
        let odd = profile_name("us-east-1", "a b/c", "default");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        );
        assert_eq!(profile_path("us-east-1", "a/b"), "/stowage/us-east-1/a-b/");
    }
}
