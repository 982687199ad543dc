//! What a Kinesis record holds, detected per record: a CloudWatch Logs subscription payload (gzip
//! JSON; `DATA_MESSAGE` gives its `logEvents`, `CONTROL_MESSAGE` is skipped), NDJSON (every line
//! an object: each an app message or a CloudWatch envelope), or one message (a JSON object, a
//! CloudWatch envelope, or text — newlines included). A record
//! that cannot be read (broken gzip, a payload that is not one) goes to the quarantine, named.

use std::borrow::Cow;
use std::io::Read;

use serde::Deserialize;

use crate::record::{Incoming, envelope_of_line};

/// The most a subscription payload may decompress to (a Kinesis record is at most 1 MiB).
const MAX_DECODED: u64 = 64 << 20;

/// What one Kinesis record came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decoded {
    /// Records appended (log events, lines, or one quarantined record).
    pub records: usize,
    /// A subscription's CONTROL_MESSAGE (its reachability check): nothing to deliver.
    pub control: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription<'a> {
    #[serde(borrow)]
    message_type: Cow<'a, str>,
    #[serde(default, borrow)]
    log_group: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    log_stream: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    timestamp: i64,
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// Reads one Kinesis record (`data`, arrived at `arrival_ms`, sequence number `seq`) into `out`;
/// app messages without an envelope get `log_stream`.
pub fn decode(
    data: &[u8],
    arrival_ms: i64,
    seq: &str,
    log_stream: &str,
    out: &mut Vec<Incoming>,
) -> Decoded {
    if data.starts_with(&[0x1f, 0x8b]) {
        return decode_subscription(data, arrival_ms, seq, out);
    }
    let text = String::from_utf8_lossy(data);
    let before = out.len();
    let lines = || {
        text.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.trim().is_empty())
    };
    // NDJSON (every line an object) is several records; any other text is one message, its
    // newlines included (a stack trace stays one record).
    if text.contains('\n') && lines().all(|l| l.trim_start().starts_with('{')) {
        out.extend(lines().map(|l| envelope_of_line(l, arrival_ms, log_stream)));
    } else if !text.trim().is_empty() {
        out.push(envelope_of_line(
            text.trim_end_matches(['\n', '\r']),
            arrival_ms,
            log_stream,
        ));
    }
    Decoded {
        records: out.len() - before,
        control: false,
    }
}

fn decode_subscription(
    data: &[u8],
    arrival_ms: i64,
    seq: &str,
    out: &mut Vec<Incoming>,
) -> Decoded {
    let mut text = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(data)
        .take(MAX_DECODED + 1)
        .read_to_end(&mut text);
    let broken = |detail: String, raw: String, out: &mut Vec<Incoming>| {
        out.push(Incoming::broken(arrival_ms, seq, detail, raw));
        Decoded {
            records: 1,
            control: false,
        }
    };
    let hex = || {
        data.iter()
            .take(64)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    if let Err(e) = read {
        return broken(format!("kinesis record {seq}: gzip: {e}"), hex(), out);
    }
    if text.len() as u64 > MAX_DECODED {
        return broken(
            format!("kinesis record {seq}: decompresses to more than {MAX_DECODED} bytes"),
            hex(),
            out,
        );
    }
    let text = String::from_utf8_lossy(&text);
    let payload: Subscription<'_> = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => {
            return broken(
                format!(
                    "kinesis record {seq}: gzip but not a CloudWatch Logs subscription payload: {e}"
                ),
                text.chars().take(4096).collect(),
                out,
            );
        }
    };
    match payload.message_type.as_ref() {
        "CONTROL_MESSAGE" => Decoded {
            records: 0,
            control: true,
        },
        "DATA_MESSAGE" => {
            let stream = payload.log_stream.as_deref().unwrap_or("kinesis");
            let group = payload.log_group.as_deref().unwrap_or_default();
            for e in &payload.log_events {
                // The envelope as the extract step would have read it from CloudWatch.
                let raw = serde_json::json!({
                    "timestamp": e.timestamp,
                    "message": e.message,
                    "logStreamName": stream,
                    "logGroupName": group,
                    "eventId": e.id,
                })
                .to_string();
                out.push(Incoming {
                    timestamp_ms: e.timestamp,
                    own_timestamp: true,
                    ingestion_ms: arrival_ms,
                    message: Some(e.message.to_string()),
                    log_stream: stream.to_string(),
                    event_id: e.id.to_string(),
                    raw,
                    broken: None,
                    routed: false,
                });
            }
            Decoded {
                records: payload.log_events.len(),
                control: false,
            }
        }
        other => broken(
            format!(
                "kinesis record {seq}: subscription messageType {other:?} (expected DATA_MESSAGE or CONTROL_MESSAGE)"
            ),
            text.chars().take(4096).collect(),
            out,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(s: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_subscription_payloads() {
        let payload = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/app/prod","logStream":"ios-1","subscriptionFilters":["to-kinesis"],"logEvents":[{"id":"3695","timestamp":1763460000123,"message":"{\"event_id\":\"e1\",\"ts\":\"2025-11-18T10:00:00Z\"}"},{"id":"3696","timestamp":1763460000200,"message":"plain crash text"}]}"#;
        let mut out = Vec::new();
        let d = decode(&gzip(payload), 9, "s1", "kin", &mut out);
        assert_eq!(
            d,
            Decoded {
                records: 2,
                control: false
            }
        );
        assert_eq!(out[0].event_id, "3695");
        assert_eq!(out[0].log_stream, "ios-1");
        assert_eq!(
            (out[0].timestamp_ms, out[0].ingestion_ms),
            (1763460000123, 9)
        );
        assert!(out[0].message().contains("\"event_id\":\"e1\""));
        assert_eq!(out[1].message(), "plain crash text");
        assert!(out[1].raw.contains("\"eventId\":\"3696\""));

        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        let mut out = Vec::new();
        assert_eq!(
            decode(&gzip(control), 9, "s2", "kin", &mut out),
            Decoded {
                records: 0,
                control: true
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn reads_app_messages_envelopes_and_ndjson() {
        let mut out = Vec::new();
        let data =
            "{\"event_id\":\"a\"}\n{\"timestamp\":5,\"message\":\"m\",\"eventId\":\"c9\"}\n\n";
        let d = decode(data.as_bytes(), 9, "s", "mobile-logs", &mut out);
        assert_eq!(d.records, 2);
        assert_eq!(out[0].log_stream, "mobile-logs");
        assert_eq!((out[1].event_id.as_str(), out[1].timestamp_ms), ("c9", 5));
        assert!(out.iter().all(|r| r.broken.is_none()));
        // Text of several lines is one message.
        let trace = "Fatal Exception: boom\n\tat a.b(C.kt:1)\n\tat d.e(F.kt:2)\n";
        let mut out = Vec::new();
        assert_eq!(decode(trace.as_bytes(), 9, "s", "k", &mut out).records, 1);
        assert_eq!(out[0].message(), trace.trim_end());
        let mut out = Vec::new();
        assert_eq!(
            decode(b"{\"event_id\":\"one\"}", 9, "s", "k", &mut out).records,
            1
        );
        assert_eq!(decode(b" \n", 9, "s", "k", &mut out).records, 0);
    }

    #[test]
    fn unreadable_records_are_quarantined_by_name() {
        for (data, needle) in [
            (vec![0x1f, 0x8b, 1, 2, 3], "gzip"),
            (
                gzip("not json"),
                "not a CloudWatch Logs subscription payload",
            ),
            (gzip(r#"{"messageType":"OTHER","logEvents":[]}"#), "OTHER"),
        ] {
            let mut out = Vec::new();
            assert_eq!(decode(&data, 9, "seq-7", "k", &mut out).records, 1);
            let why = out[0].broken.as_deref().unwrap();
            assert!(why.contains("seq-7") && why.contains(needle), "{why}");
        }
    }
}
