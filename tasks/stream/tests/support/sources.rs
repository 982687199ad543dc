//! The one conformance suite of [`bitacora_stream::sources::StreamSource`]s, driven from outside
//! as a producer would: `send(lines)` hands a batch to the source (an HTTP POST, a Kinesis
//! PutRecords) and returns once the source acknowledged it; `delivered()` reads what the
//! service's file route `everything` holds after the service stopped.

use std::collections::BTreeMap;
use std::future::Future;

use super::{counts, message};

pub async fn run<S, SF>(send: S) -> Vec<String>
where
    S: Fn(Vec<String>) -> SF,
    SF: Future<Output = ()>,
{
    let mut sent = Vec::new();
    // Batches of various sizes, one record alone, copies across batches, text and a broken one.
    for (b, size) in [1usize, 7, 100, 250].iter().enumerate() {
        let lines: Vec<String> = (0..*size).map(|i| message(b * 1000 + i, "tap")).collect();
        sent.extend(lines.clone());
        send(lines).await;
    }
    send(vec![message(1000, "tap"), message(2000, "tap")]).await;
    send(vec![
        "plain text line".into(),
        r#"{"event_id":"q1","ts":"never"}"#.into(),
    ])
    .await;
    sent.push("plain text line".into());
    sent
}

/// Checks what the route holds against what [`run`] sent: every record exactly once (copies
/// across batches filtered), the text line kept, the broken record only in the quarantine.
pub fn check(rows: &[serde_json::Value], quarantine: &[serde_json::Value]) {
    let c: BTreeMap<String, usize> = counts(rows);
    assert_eq!(rows.len(), 1 + 7 + 100 + 250 + 1, "records on the route");
    assert!(c.values().all(|n| *n == 1), "a record twice");
    assert!(
        rows.iter()
            .any(|r| r["event_type"] == "text" && r["message"] == "plain text line")
    );
    assert_eq!(quarantine.len(), 1);
    assert_eq!(quarantine[0]["reason"], "unparsable_ts");
}
