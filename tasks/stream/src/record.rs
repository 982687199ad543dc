//! What flows through the service: lines from a source, envelopes, and the routed records sinks
//! receive.

use std::borrow::Cow;

use bitacora_model::model::{Envelope, Reason, Rejected};
use bitacora_model::normalize::{Normalized, Normalizer};
use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_128;

/// One record as a sink receives it: the routed JSON object (DESIGN.md's routed record, no
/// newline) and its id (the dedup key: OpenSearch's `_id`, Kinesis's partition key).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub id: std::sync::Arc<str>,
    pub json: Bytes,
}

impl SinkRecord {
    pub fn new(id: impl Into<std::sync::Arc<str>>, json: impl Into<Bytes>) -> Self {
        SinkRecord {
            id: id.into(),
            json: json.into(),
        }
    }

    /// Its size as sinks count it (the JSON text).
    pub fn len(&self) -> usize {
        self.json.len()
    }

    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }
}

/// A record read by a source, before normalisation: a CloudWatch-shaped envelope. Sources turn
/// what they receive into these with [`envelope_of_line`] (HTTP lines, Kinesis records) or from a
/// CloudWatch Logs subscription payload's `logEvents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub timestamp_ms: i64,
    /// `timestamp_ms` is the record's own (a CloudWatch envelope's `timestamp`, which every copy
    /// carries), not the time it arrived.
    pub own_timestamp: bool,
    pub ingestion_ms: i64,
    /// The envelope's message; `None`: the record is the message itself (an app message or a
    /// text line: [`Incoming::message`] is then `raw`, kept once).
    pub message: Option<String>,
    pub log_stream: String,
    pub event_id: String,
    /// The record as it arrived (the quarantine's `raw`).
    pub raw: String,
    /// Set when the source could not read the record at all (a broken Kinesis payload): it goes
    /// to the quarantine as `broken_envelope` with this detail.
    pub broken: Option<String>,
    /// The record is a routed record sent back in (a fan-out queue's message, a Firehose record
    /// a route wrote): it is read as it is, not normalised again.
    pub routed: bool,
}

impl Incoming {
    /// A record the source could not read: quarantined with `detail`, `raw` kept.
    pub fn broken(received_ms: i64, id: &str, detail: String, raw: String) -> Self {
        Incoming {
            timestamp_ms: received_ms,
            own_timestamp: false,
            ingestion_ms: received_ms,
            message: Some(String::new()),
            log_stream: String::new(),
            event_id: id.to_string(),
            raw,
            broken: Some(detail),
            routed: false,
        }
    }

    /// The record's event, or why it cannot be trusted: the batch transform's normalisation of
    /// its envelope (`envelope`: [`Incoming::envelope`]), a routed record read back, or the
    /// source's reason it could not be read.
    pub fn normalize<'a>(
        &'a self,
        envelope: &'a Envelope<'a>,
        normalizer: &'a Normalizer,
    ) -> Normalized<'a> {
        if let Some(detail) = &self.broken {
            return Err(Rejected {
                reason: Reason::BrokenEnvelope,
                detail: detail.clone(),
                log_stream: None,
                source_event_id: Some(Cow::Borrowed(&self.event_id)),
                source_timestamp: None,
                raw: Cow::Borrowed(&self.raw),
            });
        }
        if self.routed {
            return normalizer.read_routed(
                &self.raw,
                &self.log_stream,
                &self.event_id,
                self.ingestion_ms,
            );
        }
        normalizer
            .normalize_envelope(envelope, &self.raw)
            .map(|mut event| {
                // An envelope's own timestamp is the event time of a message without `ts`.
                event.own_time |= self.own_timestamp;
                event
            })
    }

    /// The message the normaliser reads.
    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or(&self.raw)
    }

    pub fn envelope(&self) -> Envelope<'_> {
        Envelope {
            timestamp: self.timestamp_ms,
            ingestion_time: Some(self.ingestion_ms),
            message: Cow::Borrowed(self.message()),
            log_stream_name: Cow::Borrowed(&self.log_stream),
            event_id: Cow::Borrowed(&self.event_id),
        }
    }
}

/// Reads one received line: a CloudWatch envelope (a JSON object with an integer `timestamp` and
/// a string `message`) is taken as it is; anything else is an app message (a JSON object or any
/// text) received now on `log_stream`, whose CloudWatch-like `eventId` is a hash of the line —
/// the dedup key of a message without an `event_id` of its own — or a routed record sent back
/// in, read as it is.
pub fn envelope_of_line(line: &str, received_ms: i64, log_stream: &str) -> Incoming {
    static TIMESTAMP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"timestamp\""));
    static MESSAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"message\""));
    if line.trim_start().starts_with('{')
        && TIMESTAMP.find(line.as_bytes()).is_some()
        && MESSAGE.find(line.as_bytes()).is_some()
        && let Ok(e) = serde_json::from_str::<LooseEnvelope<'_>>(line)
    {
        return Incoming {
            timestamp_ms: e.timestamp,
            own_timestamp: true,
            ingestion_ms: e.ingestion_time.unwrap_or(received_ms),
            message: Some(e.message.into_owned()),
            log_stream: e
                .log_stream_name
                .map_or_else(|| log_stream.to_string(), Cow::into_owned),
            event_id: e.event_id.map_or_else(|| line_hash(line), Cow::into_owned),
            raw: line.to_string(),
            broken: None,
            routed: false,
        };
    }
    Incoming {
        timestamp_ms: received_ms,
        own_timestamp: false,
        ingestion_ms: received_ms,
        message: None,
        log_stream: log_stream.to_string(),
        event_id: line_hash(line),
        raw: line.to_string(),
        broken: None,
        routed: bitacora_model::routed::looks_routed(line),
    }
}

/// A CloudWatch envelope as producers send it (`ingestionTime`, `logStreamName` and `eventId`
/// optional); other keys are ignored.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LooseEnvelope<'a> {
    timestamp: i64,
    #[serde(default)]
    ingestion_time: Option<i64>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(default, borrow)]
    log_stream_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event_id: Option<Cow<'a, str>>,
}

/// The dedup key of a record without ids: `h:` and 128 bits of XXH3 of its text.
pub fn line_hash(line: &str) -> String {
    let mut hex = [0u8; 32];
    // 16 bytes always fit 32 hex digits.
    let _ = hex::encode_to_slice(xxh3_128(line.as_bytes()).to_be_bytes(), &mut hex);
    let mut id = String::with_capacity(34);
    id.push_str("h:");
    id.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    id
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_kept_and_messages_wrapped() {
        let e = envelope_of_line(
            r#"{"timestamp":5,"message":"hi","logStreamName":"s","eventId":"c1"}"#,
            9,
            "http",
        );
        assert_eq!((e.timestamp_ms, e.ingestion_ms), (5, 9));
        assert_eq!(
            (e.message(), e.log_stream.as_str(), e.event_id.as_str()),
            ("hi", "s", "c1")
        );
        // An app message that merely has a timestamp key is a message.
        let line = r#"{"event_id":"a","timestamp":"x","message":"m"}"#;
        let m = envelope_of_line(line, 9, "http");
        assert_eq!(
            (m.timestamp_ms, m.message(), m.log_stream.as_str()),
            (9, line, "http")
        );
        assert_eq!(m.event_id, line_hash(line));
        let t = envelope_of_line("plain text crash", 9, "http");
        assert_eq!(t.message(), "plain text crash");
        assert_ne!(line_hash("a"), line_hash("b"));
        let h = xxh3_128(b"some line");
        assert_eq!(line_hash("some line"), format!("h:{h:032x}"));
    }
}
