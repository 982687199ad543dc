//! The AWS sinks: `sqs` (SendMessageBatch), `sns` (PublishBatch), `firehose` (PutRecordBatch)
//! and `kinesis` (PutRecords). Each sends a batch within the service's limits, reads the answer
//! entry by entry and resends only the entries that failed (throttled, an internal failure);
//! entries the service refuses for good (a sender fault) and records larger than the service
//! takes go to the route's dead letters with the service's reason.
//!
//! Credentials, region and endpoint come from the standard AWS environment (the default
//! credentials chain, `AWS_REGION`, `AWS_ENDPOINT_URL`), or from the sink's `region` and
//! `endpoint_url`. The clients are built with `aws` (`--features bitacora/aws`); the settings are
//! read, checked and refused with a clear message in a build without it.

pub mod firehose;
pub mod kinesis;
pub mod sns;
pub mod sqs;

/// Checks the settings every AWS sink has.
pub(crate) fn validate_common(
    key: &str,
    region: &Option<String>,
    endpoint_url: &Option<String>,
) -> bitacora_core::Result<()> {
    if let Some(r) = region {
        let ok = !r.is_empty()
            && r.len() <= 32
            && r.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(bitacora_core::Error::config(
                format!("{key}.region"),
                format!("{r:?} is not an AWS region (us-east-1, eu-west-1, …)"),
            ));
        }
    }
    if let Some(u) = endpoint_url {
        let ok = url::Url::parse(u)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(bitacora_core::Error::config(
                format!("{key}.endpoint_url"),
                format!("expected an http:// or https:// URL, got {u:?}"),
            ));
        }
    }
    Ok(())
}

/// A name of letters, digits and `allowed` punctuation, of 1 to `max` characters.
pub(crate) fn check_name(
    key: &str,
    value: &str,
    max: usize,
    allowed: &str,
) -> bitacora_core::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || allowed.contains(c));
    if ok {
        Ok(())
    } else {
        Err(bitacora_core::Error::config(
            key,
            format!("{value:?}: 1 to {max} letters, digits and {allowed}"),
        ))
    }
}

/// A key of at most `max` characters for a record id (an SQS deduplication id, a Kinesis
/// partition key): the id itself when it fits and uses only `[A-Za-z0-9_-.:]`, else its hash.
pub fn bounded_key(id: &str, max: usize) -> String {
    let plain = id.len() <= max
        && !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if plain {
        id.to_string()
    } else {
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes()))
    }
}

/// The string value of a top-level field of a routed record (a partition key, an SNS message
/// attribute), if it has one.
pub(crate) fn top_level_str(json: &[u8], field: &str) -> Option<String> {
    let map: std::collections::HashMap<std::borrow::Cow<'_, str>, &serde_json::value::RawValue> =
        serde_json::from_slice(json).ok()?;
    let raw = map.get(field)?;
    serde_json::from_str::<String>(raw.get()).ok()
}

/// A failed entry of an SQS or SNS batch answer (`BatchResultErrorEntry`).
pub struct FailedEntry<'a> {
    /// The entry's `Id`: its index in the batch.
    pub id: &'a str,
    pub sender_fault: bool,
    pub code: &'a str,
    pub message: Option<&'a str>,
}

/// Reads the failed entries of an SQS or SNS batch answer into `sent`: a sender fault (a bad
/// message) is refused for good, with the service's reason; any other failure (the service's
/// fault, throttling) is sent again.
pub fn read_failed_entries<'a>(
    failed: impl IntoIterator<Item = FailedEntry<'a>>,
    sent: &mut crate::sinks::Sent,
) {
    for f in failed {
        let Ok(i) = f.id.parse::<usize>() else {
            continue;
        };
        if f.sender_fault && !retryable_code(f.code) {
            sent.rejected
                .push((i, format!("{}: {}", f.code, f.message.unwrap_or_default())));
        } else {
            sent.retry.push(i);
        }
    }
}

/// Error codes that mean "the call may succeed later" (throttling, a service briefly
/// unavailable), across SQS, SNS, Firehose, Kinesis and KMS.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Whether an entry's error code is worth resending.
pub fn retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code) || code.ends_with("Throttled")
}

#[cfg(feature = "aws")]
pub(crate) mod client {
    //! What the AWS sinks share: the SDK configuration and the reading of SDK errors.

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

    use crate::{Error, Result};

    /// The SDK configuration of a sink: the standard AWS environment, with the sink's region
    /// and endpoint when set. Async: never blocks the service's runtime.
    pub async fn sdk_config(
        what: &str,
        region: &Option<String>,
        endpoint_url: &Option<String>,
    ) -> Result<SdkConfig> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(e) = endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::config(
                format!("{what}: region"),
                "no AWS region: set the sink's region, or AWS_REGION",
            ));
        }
        Ok(config)
    }

    /// A sink error from an SDK error: timeouts, lost connections, throttling and server errors
    /// are retryable; what the service refuses (a missing queue, access denied, a bad request)
    /// is not, and its records go to the dead letters with the service's message.
    pub fn sdk_error<E>(
        sink: &str,
        e: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let retryable = match &e {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                status == 429 || status >= 500 || s.err().code().is_some_and(super::retryable_code)
            }
            SdkError::ConstructionFailure(_) => false,
            _ => true,
        };
        Error::sink(sink, DisplayErrorContext(&e).to_string(), retryable)
    }
}

/// A client that is not in this build: its settings are checked, the service refuses to start.
#[cfg(not(feature = "aws"))]
pub(crate) fn not_built(kind: &str) -> crate::Error {
    crate::Error::config(
        format!("sink kind {kind:?}"),
        "the AWS sinks are not in this build: build with `--features bitacora/aws` (cargo build --release --features bitacora/aws)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_their_bounds() {
        assert_eq!(bounded_key("ev-1", 128), "ev-1");
        let long = "x".repeat(300);
        assert_eq!(bounded_key(&long, 128).len(), 32);
        assert_eq!(bounded_key("has space", 128).len(), 32);
        assert_ne!(bounded_key(&long, 128), bounded_key(&"y".repeat(300), 128));
    }

    #[test]
    fn failed_batch_entries_are_resent_or_refused() {
        let mut sent = crate::sinks::Sent::all();
        let e = |id, sender_fault, code| FailedEntry {
            id,
            sender_fault,
            code,
            message: Some("why"),
        };
        read_failed_entries(
            [
                e("3", true, "InvalidParameterValue"),
                e("1", false, "InternalError"),
                e("7", true, "RequestThrottled"),
                e("not-an-index", true, "X"),
            ],
            &mut sent,
        );
        assert_eq!(sent.retry, vec![1, 7]);
        assert_eq!(
            sent.rejected,
            vec![(3, "InvalidParameterValue: why".to_string())]
        );
    }

    #[test]
    fn reads_top_level_strings() {
        let j = br#"{"event_id":"e1","user_id":"u\"7","n":3,"nested":{"user_id":"no"}}"#;
        assert_eq!(top_level_str(j, "user_id").as_deref(), Some("u\"7"));
        assert_eq!(top_level_str(j, "n"), None);
        assert_eq!(top_level_str(j, "missing"), None);
        assert_eq!(top_level_str(b"not json", "a"), None);
    }
}
