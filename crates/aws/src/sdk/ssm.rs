//! `SsmApi` over aws-sdk-ssm.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ssm::operation::get_parameter::GetParameterError;

use super::{Error, Result, SsmApi};

/// The SSM client.
#[derive(Clone, Debug)]
pub struct SdkSsm(pub aws_sdk_ssm::Client);

#[async_trait]
impl SsmApi for SdkSsm {
    async fn get_parameter(&self, name: String) -> Result<Option<String>> {
        match self.0.get_parameter().name(name).send().await {
            Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetParameterError::ParameterNotFound(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::from_sdk("GetParameter", e)),
        }
    }

    async fn get_parameters(&self, names: Vec<String>) -> Result<BTreeMap<String, String>> {
        let mut found = BTreeMap::new();
        for chunk in names.chunks(10) {
            let out = self
                .0
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("GetParameters", e))?;
            for p in out.parameters.unwrap_or_default() {
                if let (Some(n), Some(v)) = (p.name, p.value) {
                    found.insert(n, v);
                }
            }
        }
        Ok(found)
    }
}
