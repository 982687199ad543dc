//! `bitacora-lambda-transform`: a Kinesis Data Firehose data-transformation function. Each record
//! (an app message, a CloudWatch envelope, NDJSON of those, a CloudWatch Logs subscription
//! payload, or a routed record a route wrote) is answered, in order and with its `recordId`:
//!
//! * `Ok`, its data the routed JSON lines of its events (the curated `events` row, one per line,
//!   each ending in a newline: what OpenSearch and S3 destinations take);
//! * `Dropped`: nothing to deliver (a subscription's `CONTROL_MESSAGE`, a blank record);
//! * `ProcessingFailed`: an event of it cannot be trusted (the batch transform's quarantine
//!   reasons), or the response would pass Firehose's limit; Firehose writes the record as it came
//!   to the destination's error prefix, so nothing is lost.
//!
//! No dedup here: Firehose retries a failed invocation with the same records, and a key marked
//! before Firehose delivered would turn a record into a duplicate nobody received (the dedup
//! handler in front of the delivery stream does it).

use aws_lambda_events::event::firehose::{
    KinesisFirehoseEvent, KinesisFirehoseResponse, KinesisFirehoseResponseRecord,
};
use bitacora_model::normalize::Normalizer;
use bitacora_stream::sources::kinesis::records;

use crate::LambdaConfig;

pub const OK: &str = "Ok";
pub const DROPPED: &str = "Dropped";
pub const PROCESSING_FAILED: &str = "ProcessingFailed";

/// What one record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    Ok(Vec<u8>),
    Dropped,
    /// Why, naming the record and the reason (one line).
    Failed(String),
}

/// Transforms one record's data (`id` names it in reasons).
pub fn transform_record(
    normalizer: &Normalizer,
    data: &[u8],
    arrival_ms: i64,
    id: &str,
    log_stream: &str,
) -> Transformed {
    let mut incoming = Vec::new();
    let decoded = records::decode(data, arrival_ms, id, log_stream, &mut incoming);
    if decoded.control || incoming.is_empty() {
        return Transformed::Dropped;
    }
    let mut out = Vec::with_capacity(data.len() * 2);
    for r in &incoming {
        let envelope = r.envelope();
        match r.normalize(&envelope, normalizer) {
            Ok(event) => {
                if let Err(e) = bitacora_model::routed::write_event(&event, &mut out) {
                    return Transformed::Failed(format!("record {id}: {e}"));
                }
                out.push(b'\n');
            }
            Err(rejected) => {
                return Transformed::Failed(format!(
                    "record {id}: {}: {}",
                    rejected.reason.as_str(),
                    rejected.detail
                ));
            }
        }
    }
    Transformed::Ok(out)
}

/// The bytes `record` takes in the response JSON once its data (`data_len` bytes, base64) is
/// in it, with the comma before it.
fn response_bytes(record: &KinesisFirehoseResponseRecord, data_len: usize) -> u64 {
    let skeleton = serde_json::to_vec(record).map_or(256, |v| v.len());
    (skeleton + data_len.div_ceil(3) * 4 + 1) as u64
}

/// Handles one invocation.
pub fn handle(
    normalizer: &Normalizer,
    config: &LambdaConfig,
    event: &KinesisFirehoseEvent,
) -> KinesisFirehoseResponse {
    let log_stream = config.log_stream_of(
        event
            .source_kinesis_stream_arn
            .as_deref()
            .or(event.delivery_stream_arn.as_deref()),
    );
    let mut response = KinesisFirehoseResponse::default();
    let mut total = 64u64;
    let (mut ok, mut dropped, mut failed) = (0usize, 0usize, 0usize);
    // Room kept for the records after each one, should they all fail (a failed record carries
    // no data, but its id and result still count).
    let mut after: u64 = event
        .records
        .iter()
        .map(|r| {
            let mut skeleton = KinesisFirehoseResponseRecord::default();
            skeleton.record_id = r.record_id.clone();
            skeleton.result = Some(PROCESSING_FAILED.into());
            response_bytes(&skeleton, 0)
        })
        .sum();
    for r in &event.records {
        let id = r.record_id.clone().unwrap_or_default();
        let arrival = r.approximate_arrival_timestamp.timestamp_millis();
        let mut result = transform_record(normalizer, &r.data, arrival, &id, &log_stream);
        let mut out = KinesisFirehoseResponseRecord::default();
        out.record_id = Some(id.clone());
        out.result = Some(PROCESSING_FAILED.into());
        after = after.saturating_sub(response_bytes(&out, 0));
        if let Transformed::Ok(data) = &result
            && total + response_bytes(&out, data.len()) + after
                > config.transform_max_response_bytes
        {
            result = Transformed::Failed(format!(
                "record {id}: the response would pass lambda.transform_max_response_bytes ({}): lower the delivery stream's processor buffer size",
                config.transform_max_response_bytes
            ));
        }
        match result {
            Transformed::Ok(data) => {
                ok += 1;
                out.result = Some(OK.into());
                out.data.0 = data;
            }
            Transformed::Dropped => {
                dropped += 1;
                out.result = Some(DROPPED.into());
            }
            Transformed::Failed(why) => {
                failed += 1;
                tracing::warn!("transform: {why}");
                out.result = Some(PROCESSING_FAILED.into());
            }
        }
        total += serde_json::to_vec(&out).map_or(256, |v| v.len() as u64 + 1);
        response.records.push(out);
    }
    tracing::info!(
        "transform: {} records: {ok} ok, {dropped} dropped, {failed} processing failed",
        event.records.len()
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Normalizer {
        Normalizer::new("/mobile/app", 1 << 20)
    }

    #[test]
    fn app_messages_become_routed_lines_and_routed_records_pass_as_they_are() {
        let msg = r#"{"event_id":"e1","ts":"2026-12-01T10:00:00.5Z","level":"INFO","event_type":"purchase","latency_ms":12}"#;
        let Transformed::Ok(line) = transform_record(&n(), msg.as_bytes(), 5, "r1", "s") else {
            panic!("not ok");
        };
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event_id"], "e1");
        assert_eq!(v["event_time"], "2026-12-01T10:00:00.500000Z");
        assert_eq!(v["dt"], "2026-12-01");
        // Its own output sent through again comes out the same.
        let again = transform_record(&n(), text.trim_end().as_bytes(), 9, "r2", "other");
        assert_eq!(again, Transformed::Ok(text.clone().into_bytes()));
    }

    #[test]
    fn untrusted_records_fail_naming_the_record_and_reason() {
        let bad = r#"{"event_id":"e1","ts":"yesterday"}"#;
        let Transformed::Failed(why) = transform_record(&n(), bad.as_bytes(), 5, "r7", "s") else {
            panic!("not failed");
        };
        assert!(why.starts_with("record r7: unparsable_ts:"), "{why}");
        assert_eq!(
            transform_record(&n(), b"  \n", 5, "r8", "s"),
            Transformed::Dropped
        );
    }
}
