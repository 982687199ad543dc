//! The record model: the CloudWatch-shaped envelope read from a log source, and the normalised
//! event and quarantine rows of the curated zone.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One log event as returned by CloudWatch `FilterLogEvents` (and as written by the file source).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    /// When the event happened, in ms since the epoch (selects the day).
    pub timestamp: i64,
    /// When CloudWatch ingested it, in ms since the epoch.
    #[serde(default)]
    pub ingestion_time: Option<i64>,
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub log_stream_name: Cow<'a, str>,
    /// CloudWatch's id of this delivery (a retried delivery gets a new one).
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
}

/// A normalised row of `bitacora.events`. String fields borrow from the input where they can.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Event<'a> {
    /// Dedup key: the app's `event_id`, else CloudWatch's `eventId`.
    pub event_id: Cow<'a, str>,
    /// Microseconds since the epoch (UTC): the message's `ts`, else the CloudWatch timestamp.
    pub event_time: i64,
    /// Microseconds since the epoch (UTC): CloudWatch's `ingestionTime`.
    pub ingest_time: Option<i64>,
    pub log_group: Cow<'a, str>,
    pub log_stream: Cow<'a, str>,
    pub level: Option<Cow<'a, str>>,
    /// `text` for plain-text messages.
    pub event_type: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub app_version: Option<Cow<'a, str>>,
    pub platform: Option<Cow<'a, str>>,
    pub os_version: Option<Cow<'a, str>>,
    pub device_model: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
    pub latency_ms: Option<i64>,
    pub status_code: Option<i32>,
    pub error_code: Option<Cow<'a, str>>,
    /// The text of plain-text messages.
    pub message: Option<Cow<'a, str>>,
    /// JSON object: `props` plus the message's unknown keys.
    pub properties: Option<Cow<'a, str>>,
    /// Delivery provenance, used to pick the kept copy among duplicates: `(timestamp, eventId)`.
    #[serde(skip)]
    pub source_timestamp: i64,
    #[serde(skip)]
    pub source_event_id: Cow<'a, str>,
    /// `event_time` is the record's own — its message's `ts` (set by the normaliser), or an
    /// envelope timestamp its sender gave (set by callers that know, such as the stream
    /// service for CloudWatch envelopes) — rather than the time it arrived: every copy of the
    /// record carries the same. Never set for a routed record read back (it does not say).
    #[serde(skip)]
    pub own_time: bool,
}

impl Event<'_> {
    /// Orders deliveries of the same event: the kept copy is the smallest `(timestamp, eventId)`.
    pub fn delivery_key(&self) -> (i64, &str) {
        (self.source_timestamp, &self.source_event_id)
    }
}

/// Why a record was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The line is not a CloudWatch-shaped event (not JSON, missing or mistyped envelope field).
    BrokenEnvelope,
    /// The message starts like a JSON object but does not parse.
    MalformedJson,
    /// The message's `ts` is not an RFC 3339 timestamp.
    UnparsableTs,
    /// A core field of the message has the wrong type (for example `latency_ms: "12ms"`).
    WrongType,
    /// The record is larger than `transform.max_record_bytes`.
    Oversize,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::BrokenEnvelope => "broken_envelope",
            Reason::MalformedJson => "malformed_json",
            Reason::UnparsableTs => "unparsable_ts",
            Reason::WrongType => "wrong_type",
            Reason::Oversize => "oversize",
        }
    }
}

/// A record that cannot be trusted, destined for `bitacora.quarantine`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejected<'a> {
    pub reason: Reason,
    /// One line naming the field or problem.
    pub detail: String,
    pub log_stream: Option<Cow<'a, str>>,
    pub source_event_id: Option<Cow<'a, str>>,
    /// Microseconds since the epoch, when the envelope had a timestamp.
    pub source_timestamp: Option<i64>,
    /// The raw record (truncated to `max_record_bytes` for oversize records).
    pub raw: Cow<'a, str>,
}

/// What can be read of an envelope from the first bytes of its line (the rest unseen): its
/// members up to the first one that is cut or unusual. A field named twice before the cut is
/// unusable (`serde_json` rejects the whole line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvelopeHead<'a> {
    pub timestamp: Option<i64>,
    pub log_stream_name: Option<&'a str>,
    pub event_id: Option<&'a str>,
}

impl<'a> EnvelopeHead<'a> {
    /// Reads the head of an envelope line (members with escaped keys stop the reading).
    pub fn read(head: &'a str) -> Self {
        crate::json::envelope_head(head)
    }
}

/// What the extract writes to the raw zone for a source line longer than
/// `transform.max_record_bytes`, which it does not hold whole: the line's head, its length and
/// where it was. The transform quarantines it as `oversize`, with the head as its raw record.
///
/// Its line is the JSON array `["bitacora:oversize",{...}]`: not an object, so no source line the
/// extract passes on (an envelope is an object) can be mistaken for one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OversizeLine<'a> {
    /// The envelope's `timestamp`, read from the head (it selected the day).
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_stream_name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Cow<'a, str>>,
    /// Length of the line in bytes (without its newline).
    pub bytes: u64,
    /// The bound it exceeded (`transform.max_record_bytes` of the extract).
    pub limit: u64,
    /// Where it was: the source unit (file), its line number (from 1) and the byte offset of its
    /// start in the unit's (decompressed) text.
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    pub line: u64,
    pub offset: u64,
    /// The line's first `limit` bytes at most (cut at a character boundary; invalid UTF-8
    /// replaced).
    #[serde(borrow)]
    pub head: Cow<'a, str>,
}

impl<'a> Marker<'a> for OversizeLine<'a> {
    const TAG: &'static str = "bitacora:oversize";
}

/// A line the extract writes to the raw zone instead of a source line it could not pass on whole
/// ([`OversizeLine`], [`RejectedLine`]): the JSON array `["<TAG>",{...}]` — not an object, so no
/// source line the extract passes on (an envelope is an object) can be taken for one.
pub trait Marker<'a>: Sized + Serialize + Deserialize<'a> {
    /// Its tag, the array's first element.
    const TAG: &'static str;

    /// Its raw-zone line (without newline).
    fn to_line(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&(Self::TAG, self))
    }

    /// Reads a raw-zone line written by [`Marker::to_line`]; `None` for any other line.
    fn parse(line: &'a str) -> Option<Self> {
        let tagged = line
            .strip_prefix("[\"")
            .and_then(|l| l.strip_prefix(Self::TAG))
            .is_some_and(|l| l.starts_with("\","));
        if !tagged {
            return None;
        }
        serde_json::from_str::<(serde::de::IgnoredAny, Self)>(line)
            .ok()
            .map(|(_, o)| o)
    }
}

/// What the extract writes to the raw zone for a source line without a usable envelope
/// `timestamp` (not JSON, not an object, no integer `timestamp` anywhere readable): the line as it
/// was, where it was and why. Such a line cannot say its day: it is given the day of the dated line
/// before it in the same file (log files are written in time order), or, before any, the day the
/// file was last modified — so every one is kept exactly once, in one day's raw zone. The
/// transform quarantines it as `broken_envelope`, with the line as its raw record.
///
/// Its line is the JSON array `["bitacora:rejected",{...}]` (see [`OversizeLine`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedLine<'a> {
    /// The source unit (file), the line's number (from 1) and the byte offset of its start.
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    pub line: u64,
    pub offset: u64,
    /// Why it has no usable timestamp (the JSON parser's words).
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    /// How its day was chosen: `line before` or `file modified`.
    #[serde(borrow)]
    pub dated_by: Cow<'a, str>,
    /// The line (invalid UTF-8 replaced).
    #[serde(borrow)]
    pub raw: Cow<'a, str>,
}

impl<'a> Marker<'a> for RejectedLine<'a> {
    const TAG: &'static str = "bitacora:rejected";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_lines_round_trip_and_are_no_envelopes() {
        let r = RejectedLine {
            source: "/logs/a.jsonl".into(),
            line: 3,
            offset: 99,
            reason: "expected value at line 1 column 1".into(),
            dated_by: "line before".into(),
            raw: "panic at \"x\"\u{0}".into(),
        };
        let line = String::from_utf8(r.to_line().unwrap()).unwrap();
        assert_eq!(RejectedLine::parse(&line), Some(r));
        assert!(serde_json::from_str::<Envelope<'_>>(&line).is_err());
        assert_eq!(OversizeLine::parse(&line), None);
        assert_eq!(RejectedLine::parse(r#"["bitacora:rejected",{}]"#), None);
    }

    #[test]
    fn oversize_lines_round_trip_and_are_no_envelopes() {
        let o = OversizeLine {
            timestamp: 1_793_577_600_123,
            log_stream_name: Some("s".into()),
            event_id: None,
            bytes: 1 << 30,
            limit: 262_144,
            source: "/logs/a \"b\".jsonl".into(),
            line: 7,
            offset: 1234,
            head: "{\"timestamp\":1793577600123,\"message\":\"aaé".into(),
        };
        let line = String::from_utf8(o.to_line().unwrap()).unwrap();
        assert!(line.starts_with("[\"bitacora:oversize\","), "{line}");
        assert_eq!(OversizeLine::parse(&line), Some(o));
        assert!(serde_json::from_str::<Envelope<'_>>(&line).is_err());
        assert_eq!(OversizeLine::parse(r#"{"timestamp":1}"#), None);
        assert_eq!(
            OversizeLine::parse(r#"["bitacora:oversize",{"timestamp":1}]"#),
            None
        );
    }
}
