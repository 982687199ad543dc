//! `kind = "firehose"`: PutRecordBatch, 500 records and 4 MiB a call, each record at most
//! 1,000 KiB; a record is the routed record and a newline (so that an S3 destination holds
//! NDJSON). Firehose answers per record: a record with an error code (throttled, an internal
//! failure) is sent again alone with the others that failed, never the whole batch.

use serde::{Deserialize, Serialize};

pub const MAX_RECORDS: usize = 500;
pub const MAX_BYTES: usize = 4 << 20;
/// One record's limit (1,000 KiB), its newline included.
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirehoseSinkConfig {
    /// The Firehose stream's name (`DeliveryStreamName`).
    pub delivery_stream_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

impl FirehoseSinkConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        super::check_name(
            &format!("{key}.delivery_stream_name"),
            &self.delivery_stream_name,
            64,
            "_.-",
        )?;
        super::validate_common(key, &self.region, &self.endpoint_url)
    }
}

/// What a PutRecordBatch answer says of each record: `Some(code: message)` for each failed one.
pub fn failures(
    codes: impl Iterator<Item = (Option<String>, Option<String>)>,
) -> Vec<(usize, String)> {
    codes
        .enumerate()
        .filter_map(|(i, (code, message))| {
            code.map(|c| (i, format!("{c}: {}", message.unwrap_or_default())))
        })
        .collect()
}

#[cfg(feature = "aws")]
pub use imp::FirehoseSink;

#[cfg(feature = "aws")]
mod imp {
    use async_trait::async_trait;
    use aws_sdk_firehose::primitives::Blob;
    use aws_sdk_firehose::types::Record;

    use super::{FirehoseSinkConfig, MAX_BYTES, MAX_RECORD_BYTES, MAX_RECORDS, failures};
    use crate::record::SinkRecord;
    use crate::sinks::aws::client::{sdk_config, sdk_error};
    use crate::sinks::{BatchLimits, Sent, Sink};
    use crate::{Error, Result};

    pub struct FirehoseSink {
        config: FirehoseSinkConfig,
        client: aws_sdk_firehose::Client,
        name: String,
    }

    impl FirehoseSink {
        pub async fn new(config: &FirehoseSinkConfig) -> Result<Self> {
            let name = format!("firehose {}", config.delivery_stream_name);
            let sdk = sdk_config(&name, &config.region, &config.endpoint_url).await?;
            Ok(FirehoseSink {
                config: config.clone(),
                client: aws_sdk_firehose::Client::new(&sdk),
                name,
            })
        }
    }

    #[async_trait]
    impl Sink for FirehoseSink {
        fn describe(&self) -> String {
            self.name.clone()
        }

        fn limits(&self) -> BatchLimits {
            // Each record gains a newline: leave room for them.
            BatchLimits {
                max_records: MAX_RECORDS,
                max_bytes: MAX_BYTES - MAX_RECORDS,
            }
        }

        async fn send(&self, batch: &[SinkRecord]) -> Result<Sent> {
            let mut sent = Sent::all();
            let mut records = Vec::with_capacity(batch.len());
            let mut index = Vec::with_capacity(batch.len());
            for (i, r) in batch.iter().enumerate() {
                if r.len() + 1 > MAX_RECORD_BYTES {
                    sent.rejected.push((
                        i,
                        format!("{} bytes: larger than Firehose takes (1,000 KiB)", r.len()),
                    ));
                    continue;
                }
                let mut data = Vec::with_capacity(r.len() + 1);
                data.extend_from_slice(&r.json);
                data.push(b'\n');
                records.push(
                    Record::builder()
                        .data(Blob::new(data))
                        .build()
                        .map_err(|e| Error::sink(&self.name, e.to_string(), false))?,
                );
                index.push(i);
            }
            if records.is_empty() {
                return Ok(sent);
            }
            let out = self
                .client
                .put_record_batch()
                .delivery_stream_name(&self.config.delivery_stream_name)
                .set_records(Some(records))
                .send()
                .await
                .map_err(|e| sdk_error(&self.name, e))?;
            if out.failed_put_count() > 0 {
                let answers = out.request_responses().iter().map(|r| {
                    (
                        r.error_code().map(str::to_string),
                        r.error_message().map(str::to_string),
                    )
                });
                let failed = failures(answers);
                tracing::debug!(
                    "{}: {} records failed: {:?}",
                    self.name,
                    failed.len(),
                    failed.first()
                );
                // Every per-record failure of PutRecordBatch is worth resending
                // (ServiceUnavailableException, InternalFailure, KMS throttling).
                sent.retry.extend(
                    failed
                        .into_iter()
                        .filter_map(|(j, _)| index.get(j).copied()),
                );
            }
            Ok(sent)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_per_record_failures() {
        let answers = vec![
            (None, None),
            (
                Some("ServiceUnavailableException".to_string()),
                Some("slow down".to_string()),
            ),
            (None, None),
            (Some("InternalFailure".to_string()), None),
        ];
        let f = super::failures(answers.into_iter());
        assert_eq!(
            f,
            vec![
                (1, "ServiceUnavailableException: slow down".to_string()),
                (3, "InternalFailure: ".to_string())
            ]
        );
    }
}
