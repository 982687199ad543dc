//! AWS plumbing shared by every AWS backend (feature `aws`).
//!
//! One SDK configuration per process, loaded from the standard AWS environment: region
//! (`AWS_REGION`, profile), the default credentials chain (environment, profile, SSO, web identity,
//! ECS/EC2 roles) and `AWS_ENDPOINT_URL` (a local AWS-compatible endpoint in tests). Like the tokio
//! runtime, it is re-created in a forked child. The object store of `s3://` lakes signs with the same
//! credentials chain through [`SdkCredentials`].

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

use crate::error::{Error, one_line};
use crate::runtime::block_on;

static SDK: Mutex<Option<(u32, SdkConfig)>> = Mutex::new(None);

/// The SDK configuration of this process.
pub fn sdk_config() -> SdkConfig {
    let pid = std::process::id();
    {
        let guard = SDK.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, config)) = guard.as_ref()
            && *owner == pid
        {
            return config.clone();
        }
    }
    // Loaded without the lock held (it may call the network for credentials): a fork() while
    // another thread loads must not leave the child a lock that nobody will release.
    let config = block_on(aws_config::defaults(BehaviorVersion::latest()).load());
    let mut guard = SDK.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some((owner, first)) if *owner == pid => first.clone(),
        _ => {
            *guard = Some((pid, config.clone()));
            config
        }
    }
}

/// The endpoint override of the environment (`AWS_ENDPOINT_URL`), if any.
pub fn endpoint_override() -> Option<String> {
    std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// An [`Error::Aws`] from any SDK error, with the service's own code and message on one line.
pub fn sdk_error<E>(service: &'static str, operation: &'static str, e: E) -> Error
where
    E: std::error::Error + 'static,
{
    Error::Aws {
        service,
        operation,
        message: one_line(&aws_sdk_kms::error::DisplayErrorContext(&e).to_string()),
    }
}

/// The SDK's credentials chain as an `object_store` credential provider.
#[derive(Debug)]
pub struct SdkCredentials(pub aws_credential_types::provider::SharedCredentialsProvider);

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentials {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        let c = self
            .0
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(Arc::new(object_store::aws::AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }))
    }
}
