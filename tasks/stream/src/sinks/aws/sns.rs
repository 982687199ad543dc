//! `kind = "sns"`: PublishBatch, 10 messages and 256 KiB a call; the message is the routed
//! record, with the event's `attributes` (default `event_type`, `level`, `platform`) as String
//! message attributes, so that each subscriber's filter policy picks what it wants (marketing
//! tools, on-call alerts) without reading the body. FIFO topics (`….fifo`) get
//! `message_group_id` (default `bitacora`) and the record's id as the deduplication id.

use serde::{Deserialize, Serialize};

pub const MAX_RECORDS: usize = 10;
pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnsSinkConfig {
    /// `arn:aws:sns:REGION:ACCOUNT:NAME`.
    pub topic_arn: String,
    /// Top-level string fields of the record sent as message attributes (for filter policies).
    #[serde(default = "default_attributes")]
    pub attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

fn default_attributes() -> Vec<String> {
    vec!["event_type".into(), "level".into(), "platform".into()]
}

impl SnsSinkConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        let parts: Vec<&str> = self.topic_arn.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
            return Err(bitacora_core::Error::config(
                format!("{key}.topic_arn"),
                format!(
                    "expected arn:aws:sns:REGION:ACCOUNT:NAME, got {:?}",
                    self.topic_arn
                ),
            ));
        }
        if self.attributes.len() > 10 {
            return Err(bitacora_core::Error::config(
                format!("{key}.attributes"),
                "SNS takes at most 10 message attributes",
            ));
        }
        for a in &self.attributes {
            super::check_name(&format!("{key}.attributes"), a, 256, "_-.")?;
        }
        super::validate_common(key, &self.region, &self.endpoint_url)
    }

    pub fn is_fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
    }
}

#[cfg(feature = "aws")]
pub use imp::SnsSink;

#[cfg(feature = "aws")]
mod imp {
    use async_trait::async_trait;
    use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

    use super::{MAX_BYTES, MAX_RECORDS, SnsSinkConfig};
    use crate::record::SinkRecord;
    use crate::sinks::aws::client::{sdk_config, sdk_error};
    use crate::sinks::aws::{FailedEntry, read_failed_entries};
    use crate::sinks::aws::{bounded_key, top_level_str};
    use crate::sinks::{BatchLimits, Sent, Sink};
    use crate::{Error, Result};

    pub struct SnsSink {
        config: SnsSinkConfig,
        client: aws_sdk_sns::Client,
        name: String,
    }

    impl SnsSink {
        pub async fn new(config: &SnsSinkConfig) -> Result<Self> {
            let name = format!("sns {}", config.topic_arn);
            let sdk = sdk_config(&name, &config.region, &config.endpoint_url).await?;
            Ok(SnsSink {
                config: config.clone(),
                client: aws_sdk_sns::Client::new(&sdk),
                name,
            })
        }
    }

    #[async_trait]
    impl Sink for SnsSink {
        fn describe(&self) -> String {
            self.name.clone()
        }

        fn limits(&self) -> BatchLimits {
            // Room for the message attributes, which count towards the 256 KiB too.
            BatchLimits {
                max_records: MAX_RECORDS,
                max_bytes: MAX_BYTES - 16 * 1024,
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
                let Ok(body) = std::str::from_utf8(&r.json) else {
                    sent.rejected.push((i, "not UTF-8".into()));
                    continue;
                };
                let mut e = PublishBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message(body);
                // Attributes count towards the 256 KiB too.
                let mut size = r.len();
                for a in &self.config.attributes {
                    if let Some(v) = top_level_str(&r.json, a).filter(|v| !v.is_empty()) {
                        size += a.len() + v.len() + "String".len();
                        let value = MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(v)
                            .build()
                            .map_err(|e| Error::sink(&self.name, e.to_string(), false))?;
                        e = e.message_attributes(a, value);
                    }
                }
                if size > MAX_BYTES {
                    sent.rejected
                        .push((i, format!("{size} bytes: larger than SNS takes (256 KiB)")));
                    continue;
                }
                if fifo {
                    e = e
                        .message_group_id(group)
                        .message_deduplication_id(bounded_key(&r.id, 128));
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
                .publish_batch()
                .topic_arn(&self.config.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
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
