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
