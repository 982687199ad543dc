//! `[lambda]`: the handlers' own settings (the routes, dedup and quarantine are `[stream]`'s).

use std::path::{Path, PathBuf};

use bitacora_core::config::Component;
use serde::{Deserialize, Serialize};

/// Firehose's limit on a data-transformation function's response (6 MB), less room for the
/// response's own framing.
pub const FIREHOSE_RESPONSE_LIMIT: u64 = 6_000_000 - 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaConfig {
    /// The transform's response stays within this many bytes: records past it are answered
    /// `ProcessingFailed` (Firehose writes them to its error prefix, nothing is lost) rather
    /// than failing the whole invocation.
    pub transform_max_response_bytes: u64,
    /// The `log_stream` of app messages that come without an envelope (default: the Kinesis
    /// stream's or SQS queue's name, else `lambda`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
    /// How long an invocation waits for the dedup store (errors, or copies another invocation
    /// is delivering) before reporting its records failed: keep it well below the function's
    /// timeout, so that the answer, not a timeout, reaches the event source.
    pub dedup_wait_secs: u64,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        LambdaConfig {
            transform_max_response_bytes: FIREHOSE_RESPONSE_LIMIT,
            log_stream: None,
            dedup_wait_secs: 10,
        }
    }
}

impl Component for LambdaConfig {
    const SECTION: &'static str = "lambda";

    fn validate(&self) -> bitacora_core::Result<()> {
        if !(1024..=6_000_000).contains(&self.transform_max_response_bytes) {
            return Err(bitacora_core::Error::config(
                "lambda.transform_max_response_bytes",
                format!(
                    "{} is outside 1024..=6000000 (Firehose takes at most 6 MB back)",
                    self.transform_max_response_bytes
                ),
            ));
        }
        if !(1..=900).contains(&self.dedup_wait_secs) {
            return Err(bitacora_core::Error::config(
                "lambda.dedup_wait_secs",
                format!(
                    "{} is outside 1..=900 (a Lambda function runs 15 minutes at most)",
                    self.dedup_wait_secs
                ),
            ));
        }
        Ok(())
    }
}

impl LambdaConfig {
    /// The log stream of records from `source_arn` (a Kinesis stream or SQS queue ARN: its last
    /// part names it).
    pub fn log_stream_of(&self, source_arn: Option<&str>) -> String {
        if let Some(s) = &self.log_stream {
            return s.clone();
        }
        source_arn
            .and_then(|arn| arn.rsplit([':', '/']).next())
            .filter(|s| !s.is_empty())
            .unwrap_or("lambda")
            .to_string()
    }
}

/// What a Lambda handler needs of `[stream]` beyond the service's own checks: a PII key shipped
/// with the function (a key made in an execution environment's `/tmp` differs from the next
/// one's, and so would the hashes a partner receives).
pub fn check_stream(stream: &bitacora_stream::StreamConfig) -> bitacora_core::Result<()> {
    for (i, r) in stream.routes.iter().enumerate() {
        if let Some(p) = &r.pii
            && !p.hash.is_empty()
            && p.key_file.is_none()
        {
            return Err(bitacora_core::Error::config(
                format!("stream.routes[{i}].pii.key_file"),
                format!(
                    "route {:?} hashes {}: a Lambda handler needs the key shipped with the function (a key made on its disk would differ in every execution environment, and so would the hashes)",
                    r.name,
                    p.hash.join(", ")
                ),
            ));
        }
    }
    if !stream.alerts.is_empty() {
        tracing::warn!(
            "[[stream.alerts]] are evaluated by bitacora-stream only: a Lambda handler sees one batch at a time, and ignores them"
        );
    }
    if stream.dedup.kind != bitacora_stream::dedup::DedupKind::Redis {
        tracing::warn!(
            "stream.dedup.kind = {:?}: each execution environment dedups on its own (copies handled by another one pass); set kind = \"redis\" (ElastiCache)",
            stream.dedup.kind_name()
        );
    }
    if stream.quarantine.is_none() {
        tracing::warn!(
            "no [stream.quarantine] sink: quarantined records are written to {} on the function's disk and lost with its execution environment; set one (an SQS queue, a Firehose stream)",
            stream.data_dir.join("quarantine").display()
        );
    }
    Ok(())
}

/// `data_dir` if it can be written (a local run), else the same folder under the temporary
/// directory (a Lambda's code folder is read-only; `/tmp` is the writable one). What is written
/// there lasts as long as the execution environment: configure the quarantine and dead letters
/// as AWS sinks for anything that must be kept.
pub fn writable_data_dir(data_dir: &Path) -> PathBuf {
    if std::fs::create_dir_all(data_dir).is_ok() {
        return data_dir.to_path_buf();
    }
    let name = data_dir
        .file_name()
        .unwrap_or(std::ffi::OsStr::new("bitacora"));
    let tmp = std::env::temp_dir().join(name);
    tracing::warn!(
        "stream.data_dir {} is not writable: using {} (kept only while this execution environment lives)",
        data_dir.display(),
        tmp.display()
    );
    tmp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashing_route_needs_a_shipped_key() {
        let text = "[[stream.routes]]\nname = \"marketing\"\npii = { hash = [\"user_id\"] }\nsink = { kind = \"file\", path = \"/tmp/m\" }\n";
        let config = bitacora_core::Config::from_toml_str(text).unwrap();
        let stream: bitacora_stream::StreamConfig = config.component().unwrap();
        let err = check_stream(&stream).unwrap_err().to_string();
        assert!(err.contains("stream.routes[0].pii.key_file"), "{err}");
        let shipped = text.replace("] }", "], key_file = \"/var/task/pii.key\" }");
        let config = bitacora_core::Config::from_toml_str(&shipped).unwrap();
        assert!(check_stream(&config.component().unwrap()).is_ok());
    }

    #[test]
    fn log_streams_are_named_after_their_source() {
        let c = LambdaConfig::default();
        assert_eq!(
            c.log_stream_of(Some(
                "arn:aws:kinesis:us-east-1:123456789012:stream/mobile-logs"
            )),
            "mobile-logs"
        );
        assert_eq!(
            c.log_stream_of(Some("arn:aws:sqs:us-east-1:123456789012:fanout-analytics")),
            "fanout-analytics"
        );
        assert_eq!(c.log_stream_of(None), "lambda");
        let set = LambdaConfig {
            log_stream: Some("ios".into()),
            ..c
        };
        assert_eq!(set.log_stream_of(Some("arn:aws:sqs:r:1:q")), "ios");
    }

    #[test]
    fn the_response_limit_is_checked() {
        let c = LambdaConfig {
            transform_max_response_bytes: 7_000_000,
            ..LambdaConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("lambda.transform_max_response_bytes"), "{e}");
    }
}
