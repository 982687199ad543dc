//! `kind = "kinesis"`: PutRecords, 500 records and 5 MiB a call (partition keys included), each
//! record at most 1 MiB. The partition key is a top-level field of the record
//! (`partition_key`, default `event_id`; `user_id` keeps each user's events in order on one
//! shard); a record without it uses its id. Kinesis answers per record: failed records
//! (`ProvisionedThroughputExceededException`, `InternalFailure`) are sent again, alone.

use serde::{Deserialize, Serialize};

pub const MAX_RECORDS: usize = 500;
pub const MAX_BYTES: usize = 5 << 20;
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Kinesis's partition keys are 1 to 256 Unicode characters.
const MAX_KEY: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkConfig {
    pub stream_name: String,
    /// The record field whose value is the partition key.
    #[serde(default = "default_partition_key")]
    pub partition_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

fn default_partition_key() -> String {
    "event_id".into()
}

impl KinesisSinkConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        super::check_name(&format!("{key}.stream_name"), &self.stream_name, 128, "_.-")?;
        super::check_name(
            &format!("{key}.partition_key"),
            &self.partition_key,
            64,
            "_",
        )?;
        super::validate_common(key, &self.region, &self.endpoint_url)
    }

    /// The partition key of a record.
    pub fn key_of(&self, r: &crate::record::SinkRecord) -> String {
        let v = super::top_level_str(&r.json, &self.partition_key)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| r.id.to_string());
        if v.chars().count() <= MAX_KEY {
            v
        } else {
            format!("{:032x}", xxhash_rust::xxh3::xxh3_128(v.as_bytes()))
        }
    }
}

#[cfg(feature = "aws")]
pub use imp::KinesisSink;

#[cfg(feature = "aws")]
mod imp {
    use async_trait::async_trait;
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;

    use super::{KinesisSinkConfig, MAX_BYTES, MAX_RECORD_BYTES, MAX_RECORDS};
    use crate::record::SinkRecord;
    use crate::sinks::aws::client::{sdk_config, sdk_error};
    use crate::sinks::{BatchLimits, Sent, Sink};
    use crate::{Error, Result};

    pub struct KinesisSink {
        config: KinesisSinkConfig,
        client: aws_sdk_kinesis::Client,
        name: String,
    }

    impl KinesisSink {
        pub async fn new(config: &KinesisSinkConfig) -> Result<Self> {
            let name = format!("kinesis {}", config.stream_name);
            let sdk = sdk_config(&name, &config.region, &config.endpoint_url).await?;
            Ok(KinesisSink {
                config: config.clone(),
                client: aws_sdk_kinesis::Client::new(&sdk),
                name,
            })
        }
    }

    #[async_trait]
    impl Sink for KinesisSink {
        fn describe(&self) -> String {
            self.name.clone()
        }

        fn limits(&self) -> BatchLimits {
            // Partition keys count towards the 5 MiB: leave room for them.
            BatchLimits {
                max_records: MAX_RECORDS,
                max_bytes: MAX_BYTES - MAX_RECORDS * 256,
            }
        }

        async fn send(&self, batch: &[SinkRecord]) -> Result<Sent> {
            let mut sent = Sent::all();
            let mut entries = Vec::with_capacity(batch.len());
            let mut index = Vec::with_capacity(batch.len());
            for (i, r) in batch.iter().enumerate() {
                let key = self.config.key_of(r);
                if r.len() + key.len() > MAX_RECORD_BYTES {
                    sent.rejected.push((
                        i,
                        format!("{} bytes: larger than Kinesis takes (1 MiB)", r.len()),
                    ));
                    continue;
                }
                entries.push(
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(r.json.to_vec()))
                        .partition_key(key)
                        .build()
                        .map_err(|e| Error::sink(&self.name, e.to_string(), false))?,
                );
                index.push(i);
            }
            if entries.is_empty() {
                return Ok(sent);
            }
            let out = self
                .client
                .put_records()
                .stream_name(&self.config.stream_name)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error(&self.name, e))?;
            if out.failed_record_count().unwrap_or(0) > 0 {
                for (j, r) in out.records().iter().enumerate() {
                    if r.error_code().is_some()
                        && let Some(i) = index.get(j)
                    {
                        sent.retry.push(*i);
                    }
                }
            }
            Ok(sent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SinkRecord;

    #[test]
    fn partition_keys_come_from_the_chosen_field() {
        let mut c = KinesisSinkConfig {
            stream_name: "s".into(),
            partition_key: "user_id".into(),
            region: None,
            endpoint_url: None,
        };
        let r = SinkRecord::new("e1", r#"{"event_id":"e1","user_id":"u-9"}"#);
        assert_eq!(c.key_of(&r), "u-9");
        let anonymous = SinkRecord::new("e2", r#"{"event_id":"e2","user_id":null}"#);
        assert_eq!(c.key_of(&anonymous), "e2");
        c.partition_key = "event_id".into();
        assert_eq!(c.key_of(&r), "e1");
        let long = SinkRecord::new("x".repeat(300), "{}");
        assert_eq!(c.key_of(&long).len(), 32);
    }
}
