//! Data keys wrapped by AWS KMS (feature `aws`): `encryption.mode = "envelope"` with `kms_key_id`.
//!
//! Every raw object gets its own data key from `GenerateDataKey` (AES-256); the header stores the
//! KMS ciphertext blob and the transform recovers the key with `Decrypt`. The object's lake path is
//! the KMS encryption context, so KMS itself refuses a key presented for another object, and
//! CloudTrail records which object each key was used for.

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::aws::{sdk_config, sdk_error};
use crate::crypto::KeyProvider;
use crate::error::{Error, Result};
use crate::runtime::block_on;

/// Encryption-context key naming the object a data key belongs to.
const CONTEXT_KEY: &str = "bitacora:object";

/// A KMS key (id, ARN or `alias/...`) that wraps per-object data keys.
#[derive(Debug, Clone)]
pub struct KmsKey {
    client: Client,
    key_id: String,
}

impl KmsKey {
    pub fn new(key_id: &str) -> KmsKey {
        KmsKey {
            client: Client::new(&sdk_config()),
            key_id: key_id.to_string(),
        }
    }
}

impl KeyProvider for KmsKey {
    fn provider(&self) -> &'static str {
        "kms"
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn new_data_key(&self, object: &str) -> Result<([u8; 32], String)> {
        let out = block_on(
            self.client
                .generate_data_key()
                .key_id(&self.key_id)
                .key_spec(DataKeySpec::Aes256)
                .encryption_context(CONTEXT_KEY, object)
                .send(),
        )
        .map_err(|e| sdk_error("kms", "GenerateDataKey", e))?;
        let bad = |m: &str| Error::Crypto {
            object: object.to_string(),
            message: format!("KMS key {}: {m}", self.key_id),
        };
        let plain = out
            .plaintext()
            .ok_or_else(|| bad("GenerateDataKey returned no plaintext key"))?;
        let key: [u8; 32] = plain
            .as_ref()
            .try_into()
            .map_err(|_| bad("GenerateDataKey returned a key that is not 256 bits"))?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| bad("GenerateDataKey returned no ciphertext blob"))?;
        Ok((key, B64.encode(blob.as_ref())))
    }

    fn unwrap(&self, wrapped: &str, object: &str) -> Result<[u8; 32]> {
        let bad = |m: String| Error::Crypto {
            object: object.to_string(),
            message: m,
        };
        let blob = B64
            .decode(wrapped)
            .map_err(|_| bad("corrupt wrapped data key".into()))?;
        let out = block_on(
            self.client
                .decrypt()
                .key_id(&self.key_id)
                .ciphertext_blob(Blob::new(blob))
                .encryption_context(CONTEXT_KEY, object)
                .send(),
        )
        .map_err(|e| {
            bad(format!(
                "cannot unwrap the data key with KMS key {}: {}",
                self.key_id,
                sdk_error("kms", "Decrypt", e)
            ))
        })?;
        let plain = out
            .plaintext()
            .ok_or_else(|| bad("KMS Decrypt returned no plaintext".into()))?;
        plain
            .as_ref()
            .try_into()
            .map_err(|_| bad("KMS returned a data key that is not 256 bits".into()))
    }
}
