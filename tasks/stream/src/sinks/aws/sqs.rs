//! `kind = "sqs"`: SendMessageBatch, 10 messages and 256 KiB a call; the message body is the
//! routed record. A FIFO queue (`….fifo`) gets `message_group_id` (default `bitacora`) and the
//! record's id as its deduplication id, so SQS itself drops a copy sent within five minutes.

use serde::{Deserialize, Serialize};

/// SQS's limits: 10 entries and 256 KiB (the sum of the bodies) per call.
pub const MAX_RECORDS: usize = 10;
pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqsSinkConfig {
    /// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` (what CreateQueue and GetQueueUrl return).
    pub queue_url: String,
    /// FIFO queues: the message group of every message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

impl SqsSinkConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        let ok = url::Url::parse(&self.queue_url)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.path().len() > 1);
        if !ok {
            return Err(bitacora_core::Error::config(
                format!("{key}.queue_url"),
                format!(
                    "expected a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), got {:?}",
                    self.queue_url
                ),
            ));
        }
        if let Some(g) = &self.message_group_id {
            super::check_name(
                &format!("{key}.message_group_id"),
                g,
                128,
                "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            )?;
        }
        super::validate_common(key, &self.region, &self.endpoint_url)
    }

    pub fn is_fifo(&self) -> bool {
        self.queue_url.trim_end_matches('/').ends_with(".fifo")
    }
}

#[cfg(feature = "aws")]
pub use imp::SqsSink;

#[cfg(feature = "aws")]
mod imp {
    use async_trait::async_trait;
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

    use super::{MAX_BYTES, MAX_RECORDS, SqsSinkConfig};
    use crate::record::SinkRecord;
    use crate::sinks::aws::client::{sdk_config, sdk_error};
    use crate::sinks::aws::{FailedEntry, read_failed_entries};
    use crate::sinks::{BatchLimits, Sent, Sink};
    use crate::{Error, Result};

    pub struct SqsSink {
        config: SqsSinkConfig,
        client: aws_sdk_sqs::Client,
        name: String,
    }

    impl SqsSink {
        pub async fn new(config: &SqsSinkConfig) -> Result<Self> {
            let name = format!("sqs {}", config.queue_url);
            let sdk = sdk_config(&name, &config.region, &config.endpoint_url).await?;
            Ok(SqsSink {
                config: config.clone(),
                client: aws_sdk_sqs::Client::new(&sdk),
                name,
            })
        }
    }

    #[async_trait]
    impl Sink for SqsSink {
        fn describe(&self) -> String {
            self.name.clone()
        }

        fn limits(&self) -> BatchLimits {
            BatchLimits {
                max_records: MAX_RECORDS,
                max_bytes: MAX_BYTES,
            }
        }

        async fn send(&self, batch: &[SinkRecord]) -> Result<Sent> {
            let mut sent = Sent::all();
            let fifo = self.config.is_fifo();
            let group = self
                .config
                .message_group_id
                .as_deref()
                .unwrap_or("bitacora");
            let mut entries = Vec::with_capacity(batch.len());
            for (i, r) in batch.iter().enumerate() {
                if r.len() > MAX_BYTES {
                    sent.rejected.push((
                        i,
                        format!("{} bytes: larger than SQS takes (256 KiB)", r.len()),
                    ));
                    continue;
                }
                let Ok(body) = std::str::from_utf8(&r.json) else {
                    sent.rejected.push((i, "not UTF-8".into()));
                    continue;
                };
                let mut e = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body);
                if fifo {
                    e = e
                        .message_group_id(group)
                        .message_deduplication_id(crate::sinks::aws::bounded_key(&r.id, 128));
                }
                entries.push(
                    e.build()
                        .map_err(|e| Error::sink(&self.name, e.to_string(), false))?,
                );
            }
            if entries.is_empty() {
                return Ok(sent);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error(&self.name, e))?;
            let failed = out.failed().iter().map(|f| FailedEntry {
                id: f.id(),
                sender_fault: f.sender_fault(),
                code: f.code(),
                message: f.message(),
            });
            read_failed_entries(failed, &mut sent);
            Ok(sent)
        }
    }
}
