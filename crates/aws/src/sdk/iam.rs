//! `IamApi` over aws-sdk-iam.

use async_trait::async_trait;
use aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileError;
use aws_sdk_iam::types::{InstanceProfile, Tag};

use super::{Error, IamApi, Result};

/// The IAM client.
#[derive(Clone, Debug)]
pub struct SdkIam(pub aws_sdk_iam::Client);

#[async_trait]
impl IamApi for SdkIam {
    async fn get_instance_profile(&self, name: String) -> Result<Option<InstanceProfile>> {
        match self
            .0
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.instance_profile),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetInstanceProfileError::NoSuchEntityException(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::from_sdk("GetInstanceProfile", e)),
        }
    }

    async fn create_instance_profile(
        &self,
        name: String,
        path: String,
        tags: Vec<Tag>,
    ) -> Result<()> {
        self.0
            .create_instance_profile()
            .instance_profile_name(name)
            .path(path)
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sdk("CreateInstanceProfile", e))
    }

    async fn add_role_to_instance_profile(&self, profile: String, role: String) -> Result<()> {
        self.0
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sdk("AddRoleToInstanceProfile", e))
    }

    async fn remove_role_from_instance_profile(&self, profile: String, role: String) -> Result<()> {
        self.0
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sdk("RemoveRoleFromInstanceProfile", e))
    }

    async fn delete_instance_profile(&self, name: String) -> Result<()> {
        self.0
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sdk("DeleteInstanceProfile", e))
    }

    async fn list_instance_profiles(&self, path_prefix: String) -> Result<Vec<InstanceProfile>> {
        self.0
            .list_instance_profiles()
            .path_prefix(path_prefix)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from_sdk("ListInstanceProfiles", e))
    }
}
