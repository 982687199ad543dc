//! `bitacora-lambda-fanout`: a Kinesis event (the app's log stream, or a CloudWatch Logs
//! subscription) → normalise → dedup → the configured routes (SNS topics and SQS queues for the
//! consumers, Firehose, …).
//!
//! Each Kinesis record is a unit: it is delivered whole (every route that matches one of its
//! events took it) and its keys are marked seen, or it is reported in `batchItemFailures` by its
//! sequence number and its keys are released (so its copy sent again is new). Lambda resumes the
//! shard from the lowest sequence number reported; records after it that were delivered come
//! again and are duplicates. A record that cannot be read, or an event that cannot be trusted,
//! goes to the quarantine: it never fails the batch. Needs the event source mapping's
//! `FunctionResponseTypes: ["ReportBatchItemFailures"]`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use bitacora_stream::pipeline::Pipeline;
use bitacora_stream::sources::kinesis::records;

use crate::LambdaConfig;

/// Handles one invocation.
pub async fn handle(
    pipeline: &Pipeline,
    config: &LambdaConfig,
    event: &KinesisEvent,
) -> KinesisEventResponse {
    let mut incoming = Vec::new();
    let mut units = Vec::new();
    for (i, r) in event.records.iter().enumerate() {
        let log_stream = config.log_stream_of(r.event_source_arn.as_deref());
        let before = incoming.len();
        records::decode(
            &r.kinesis.data,
            r.kinesis.approximate_arrival_timestamp.timestamp_millis(),
            &r.kinesis.sequence_number,
            &log_stream,
            &mut incoming,
        );
        units.extend(std::iter::repeat_n(i, incoming.len() - before));
    }
    let n = event.records.len();
    let report = pipeline.process_units(&incoming, &units, n).await;
    crate::log_outcome("fanout", n, &report);
    let mut response = KinesisEventResponse::default();
    for u in crate::failed_units(&report, n) {
        response.add_failure(event.records[u].kinesis.sequence_number.clone());
    }
    response
}
