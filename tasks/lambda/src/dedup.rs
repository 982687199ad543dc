//! `bitacora-lambda-dedup`: an SQS event (a fan-out queue) → dedup → normalise → routes (a
//! Firehose stream to OpenSearch, a consumer's own queue, …).
//!
//! A message body is what a fan-out route sent: an SNS notification (a queue subscribed to a
//! topic without raw message delivery; its `Message` is read), a routed record (read as it is:
//! it was normalised once), an app message, a CloudWatch envelope, NDJSON of those, or a
//! CloudWatch Logs subscription payload. Each message is a unit: delivered whole, or reported
//! in `batchItemFailures` by its `messageId` (only those come back). Needs the event source
//! mapping's `FunctionResponseTypes: ["ReportBatchItemFailures"]`.

use std::borrow::Cow;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bitacora_stream::pipeline::Pipeline;
use bitacora_stream::sources::kinesis::records;

use crate::LambdaConfig;

/// An SNS notification as SQS holds it (a subscription without raw message delivery).
#[derive(serde::Deserialize)]
struct SnsNotification<'a> {
    #[serde(rename = "Type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "Message", borrow)]
    message: Cow<'a, str>,
}

/// The payload of a message body: an SNS notification's `Message`, else the body itself.
pub fn unwrap_sns(body: &str) -> Cow<'_, str> {
    let t = body.trim_start();
    if t.starts_with('{')
        && t.contains("\"TopicArn\"")
        && let Ok(n) = serde_json::from_str::<SnsNotification<'_>>(t)
        && n.kind == "Notification"
    {
        return n.message;
    }
    Cow::Borrowed(body)
}

/// Handles one invocation.
pub async fn handle(
    pipeline: &Pipeline,
    config: &LambdaConfig,
    event: &SqsEvent,
) -> SqsBatchResponse {
    let mut incoming = Vec::new();
    let mut units = Vec::new();
    let now = bitacora_stream::record::now_ms();
    for (i, m) in event.records.iter().enumerate() {
        let log_stream = config.log_stream_of(m.event_source_arn.as_deref());
        let sent_ms = m
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(now);
        let id = m.message_id.as_deref().unwrap_or_default();
        let payload = unwrap_sns(m.body.as_deref().unwrap_or_default());
        let before = incoming.len();
        records::decode(payload.as_bytes(), sent_ms, id, &log_stream, &mut incoming);
        units.extend(std::iter::repeat_n(i, incoming.len() - before));
    }
    let n = event.records.len();
    let report = pipeline.process_units(&incoming, &units, n).await;
    crate::log_outcome("dedup", n, &report);
    let mut response = SqsBatchResponse::default();
    for u in crate::failed_units(&report, n) {
        response.add_failure(event.records[u].message_id.clone().unwrap_or_default());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_notifications_are_unwrapped_and_other_bodies_kept() {
        let n = r#"{"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"{\"event_id\":\"e1\"}","Timestamp":"2026-12-02T00:00:00.000Z"}"#;
        assert_eq!(unwrap_sns(n), r#"{"event_id":"e1"}"#);
        let plain = r#"{"event_id":"e1","TopicArn":"x"}"#;
        assert_eq!(unwrap_sns(plain), plain);
        assert_eq!(unwrap_sns("crash text"), "crash text");
    }
}
