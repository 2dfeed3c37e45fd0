//! Client construction: one [`AwsConfig`] -> the five SDK clients, sharing one rustls (ring) HTTP
//! client, the standard credential chain (or static credentials), and the SDK's standard retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_ec2::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_smithy_http_client::tls;

use super::{Ec2Api, IamApi, PricingApi, SqsApi, SsmApi};

/// Where and how to reach AWS. `Default` is the production setting for `us-east-1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsConfig {
    /// The region the cluster runs in (`AWS_REGION` in-cluster).
    pub region: String,
    /// One endpoint URL for every service (a private VPC endpoint, or the tests' emulator);
    /// `None` uses the public AWS endpoints.
    pub endpoint_url: Option<String>,
    /// The Pricing API's region (it only exists in a few; `us-east-1` serves every region's prices).
    pub pricing_region: String,
    /// Attempts per call, including the first (SDK standard retry, exponential backoff with jitter;
    /// throttling errors such as `RequestLimitExceeded` are retried).
    pub max_attempts: u32,
    /// The first retry's backoff; later ones double, capped at 20 s.
    pub initial_backoff: Duration,
    /// Per-attempt timeout of a call.
    pub attempt_timeout: Duration,
    /// Static credentials instead of the standard chain (env, profile, IRSA, Pod Identity, IMDS).
    pub static_credentials: Option<StaticCredentials>,
    /// Extra HTTP headers on every request. Empty in production; the tests use
    /// `x-moto-account-id` to give each test its own emulated account.
    pub extra_headers: BTreeMap<String, String>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_string(),
            endpoint_url: None,
            pricing_region: "us-east-1".to_string(),
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(30),
            static_credentials: None,
            extra_headers: BTreeMap::new(),
        }
    }
}

/// An access key pair (tests, or environments without an instance role).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The five service clients, behind their narrow traits.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: Arc<dyn Ec2Api>,
    pub iam: Arc<dyn IamApi>,
    pub pricing: Arc<dyn PricingApi>,
    pub sqs: Arc<dyn SqsApi>,
    pub ssm: Arc<dyn SsmApi>,
}

/// Adds fixed headers to every request.
#[derive(Debug)]
struct ExtraHeaders(BTreeMap<String, String>);

impl Intercept for ExtraHeaders {
    fn name(&self) -> &'static str {
        "StowageExtraHeaders"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request_mut().headers_mut();
        for (k, v) in &self.0 {
            headers.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

impl Clients {
    /// Builds the clients. Loads credentials lazily (the first call resolves them), so this does
    /// no I/O beyond reading the environment and profile files.
    pub async fn new(config: &AwsConfig) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(config.max_attempts.max(1))
            .with_initial_backoff(config.initial_backoff);
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(config.attempt_timeout)
            .connect_timeout(Duration::from_secs(5))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http)
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(creds) = &config.static_credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                creds.access_key_id.clone(),
                creds.secret_access_key.clone(),
                None,
                None,
                "stowage-static",
            ));
        }
        let sdk = loader.load().await;
        let headers = config.extra_headers.clone();

        let mut ec2 = aws_sdk_ec2::config::Builder::from(&sdk);
        let mut iam = aws_sdk_iam::config::Builder::from(&sdk);
        let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk);
        let mut ssm = aws_sdk_ssm::config::Builder::from(&sdk);
        let mut pricing = aws_sdk_pricing::config::Builder::from(&sdk);
        if config.endpoint_url.is_none() {
            pricing = pricing.region(Region::new(config.pricing_region.clone()));
        }
        if !headers.is_empty() {
            ec2 = ec2.interceptor(ExtraHeaders(headers.clone()));
            iam = iam.interceptor(ExtraHeaders(headers.clone()));
            sqs = sqs.interceptor(ExtraHeaders(headers.clone()));
            ssm = ssm.interceptor(ExtraHeaders(headers.clone()));
            pricing = pricing.interceptor(ExtraHeaders(headers));
        }
        Self {
            ec2: Arc::new(super::ec2::SdkEc2(aws_sdk_ec2::Client::from_conf(
                ec2.build(),
            ))),
            iam: Arc::new(super::iam::SdkIam(aws_sdk_iam::Client::from_conf(
                iam.build(),
            ))),
            pricing: Arc::new(super::pricing::SdkPricing(
                aws_sdk_pricing::Client::from_conf(pricing.build()),
            )),
            sqs: Arc::new(super::sqs::SdkSqs(aws_sdk_sqs::Client::from_conf(
                sqs.build(),
            ))),
            ssm: Arc::new(super::ssm::SdkSsm(aws_sdk_ssm::Client::from_conf(
                ssm.build(),
            ))),
        }
    }
}
