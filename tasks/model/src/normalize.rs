//! The one normalisation of Bitácora: a CloudWatch-shaped envelope (or its JSON line) becomes a
//! curated [`Event`] or a [`Rejected`] record with its reason.
//!
//! The batch transform calls it for every raw record and the streaming service for every record it
//! receives; both therefore agree on columns, types and quarantine reasons. It never panics on input.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json;
use crate::model::{Envelope, Event, Marker, OversizeLine, Reason, Rejected, RejectedLine};
use crate::one_line;

/// Outcome of normalising one record.
pub type Normalized<'a> = std::result::Result<Event<'a>, Rejected<'a>>;

/// Normalises records of one log group.
#[derive(Debug, Clone)]
pub struct Normalizer {
    log_group: String,
    max_record_bytes: usize,
    /// Skips the fast scanner (tests compare both paths).
    serde_only: bool,
}

impl Normalizer {
    pub fn new(log_group: impl Into<String>, max_record_bytes: usize) -> Self {
        Normalizer {
            log_group: log_group.into(),
            max_record_bytes,
            serde_only: false,
        }
    }

    /// The same normaliser without the fast scanner: `serde_json` reads every line (the reference
    /// of the differential tests and the fuzz targets).
    #[doc(hidden)]
    pub fn serde_only(self) -> Self {
        Normalizer {
            serde_only: true,
            ..self
        }
    }

    /// The log group written into every row.
    pub fn log_group(&self) -> &str {
        &self.log_group
    }

    /// Normalises one envelope line (a CloudWatch event as JSON). `scratch` holds what had to be
    /// unescaped (the message, or one object member of it) so that the event's fields can borrow
    /// from it.
    pub fn normalize_line<'a>(&'a self, line: &'a str, scratch: &'a mut String) -> Normalized<'a> {
        // A source line the extract did not hold whole (never an envelope: it starts with `[`).
        if line.starts_with('[') {
            if let Some(o) = OversizeLine::parse(line) {
                return Err(self.oversize_line(o));
            }
            if let Some(r) = RejectedLine::parse(line) {
                return Err(self.rejected_line(r));
            }
        }
        if self.serde_only || line.len() > self.max_record_bytes {
            return self.normalize_line_serde(line, scratch);
        }
        // The common shape first: the message's members read where they lie in the line.
        // At most one object or array member (normally `props`), unescaped into `scratch` and
        // checked there. Its slot stays empty until then; a later member of the same key fills
        // it (the last one counts, as in serde_json's map — but every value must still be valid
        // JSON). A second one, or an unknown key, stops the walk: the other paths read that
        // message.
        let mut fields = MessageFields::default();
        let mut escaped: Option<(usize, &'a str)> = None;
        let parts = json::envelope_members(line, |key, value| {
            // Unknown keys are merged into `properties` from their JSON text: the other paths.
            let i = field_index(key)?;
            fields.known[i] = match value {
                json::Member::Json(t) => Some(Raw::Json(t)),
                json::Member::Str(t) => Some(Raw::Str(t)),
                json::Member::Escaped(t) => {
                    if escaped.replace((i, t)).is_some() {
                        return None;
                    }
                    None
                }
            };
            Some(())
        });
        if let Some(e) = parts {
            let Some((i, text)) = escaped else {
                return self.normalize_message(e, fields, line);
            };
            json::unescape_quotes(text, scratch);
            if json::is_value(scratch) {
                let scratch: &'a String = scratch;
                if fields.known[i].is_none() {
                    fields.known[i] = Some(Raw::Json(scratch.as_str()));
                }
                return self.normalize_message(e, fields, line);
            }
        }
        if let Some(e) = json::envelope(line, scratch) {
            let scratch: &'a String = scratch;
            return self.normalize_parts(
                e.timestamp,
                e.ingestion_time,
                e.message.unwrap_or(scratch.as_str()),
                Cow::Borrowed(e.log_stream_name),
                Cow::Borrowed(e.event_id),
                Cow::Borrowed(line),
            );
        }
        self.normalize_line_serde(line, scratch)
    }

    /// The event of an envelope whose message members were read by the fast path.
    fn normalize_message<'a>(
        &'a self,
        e: json::EnvelopeParts<'a, ()>,
        fields: MessageFields<'a>,
        line: &'a str,
    ) -> Normalized<'a> {
        let mut event = self.base_event(
            e.timestamp,
            e.ingestion_time,
            Cow::Borrowed(e.log_stream_name),
            Cow::Borrowed(e.event_id),
        );
        match apply_fields(&mut event, &fields) {
            Ok(()) => Ok(event),
            Err((reason, detail)) => Err(Self::reject_event(reason, detail, event, line)),
        }
    }

    /// [`Self::normalize_line`] through `serde_json` alone: the path of any line the fast scanner
    /// leaves (it decides and words every error).
    fn normalize_line_serde<'a>(
        &'a self,
        line: &'a str,
        scratch: &'a mut String,
    ) -> Normalized<'a> {
        if line.len() > self.max_record_bytes {
            // Still name the delivery when the envelope parses.
            let parts = serde_json::from_str::<Envelope<'a>>(line)
                .ok()
                .map(|e| (e.log_stream_name, e.event_id, e.timestamp));
            return Err(self.oversize(line, parts));
        }
        let envelope: Envelope<'a> = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                return Err(Rejected {
                    reason: Reason::BrokenEnvelope,
                    detail: one_line(&e.to_string()),
                    log_stream: None,
                    source_event_id: None,
                    source_timestamp: None,
                    raw: Cow::Borrowed(line),
                });
            }
        };
        let Envelope {
            timestamp,
            ingestion_time,
            message,
            log_stream_name,
            event_id,
        } = envelope;
        let message: &'a str = match message {
            Cow::Borrowed(m) => m,
            Cow::Owned(m) => {
                *scratch = m;
                let scratch: &'a String = scratch;
                scratch.as_str()
            }
        };
        self.normalize_parts(
            timestamp,
            ingestion_time,
            message,
            log_stream_name,
            event_id,
            Cow::Borrowed(line),
        )
    }

    /// Normalises an already decoded envelope (the streaming path).
    pub fn normalize_envelope<'a>(
        &'a self,
        envelope: &'a Envelope<'a>,
        raw: &'a str,
    ) -> Normalized<'a> {
        if raw.len() > self.max_record_bytes {
            let parts = (
                Cow::Borrowed(envelope.log_stream_name.as_ref()),
                Cow::Borrowed(envelope.event_id.as_ref()),
                envelope.timestamp,
            );
            return Err(self.oversize(raw, Some(parts)));
        }
        self.normalize_parts(
            envelope.timestamp,
            envelope.ingestion_time,
            &envelope.message,
            Cow::Borrowed(&envelope.log_stream_name),
            Cow::Borrowed(&envelope.event_id),
            Cow::Borrowed(raw),
        )
    }

    /// Reads a routed record sent back in (a fan-out queue's message, a Firehose record a route
    /// wrote: see [`crate::routed::looks_routed`]): it was normalised once, so it is read as it is
    /// ([`crate::routed::read_event`]), and written again it is the same text. One that is not
    /// a well-formed routed record is rejected with the field at fault; `received_ms` and
    /// `source_id` stand for its provenance then.
    pub fn read_routed<'a>(
        &'a self,
        raw: &'a str,
        log_stream: &'a str,
        source_id: &'a str,
        received_ms: i64,
    ) -> Normalized<'a> {
        if raw.len() > self.max_record_bytes {
            let parts = (
                Cow::Borrowed(log_stream),
                Cow::Borrowed(source_id),
                received_ms,
            );
            return Err(self.oversize(raw, Some(parts)));
        }
        crate::routed::read_event(raw).map_err(|(reason, detail)| Rejected {
            reason,
            detail,
            log_stream: Some(Cow::Borrowed(log_stream)),
            source_event_id: Some(Cow::Borrowed(source_id)),
            source_timestamp: Some(received_ms.saturating_mul(1000)),
            raw: Cow::Borrowed(raw),
        })
    }

    /// `parts`: the envelope's log stream, event id and timestamp, when known.
    fn oversize<'a>(
        &self,
        raw: &'a str,
        parts: Option<(Cow<'a, str>, Cow<'a, str>, i64)>,
    ) -> Rejected<'a> {
        let mut cut = self.max_record_bytes.min(raw.len());
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        let (log_stream, source_event_id, source_timestamp) = match parts {
            Some((stream, id, ts)) => (Some(stream), Some(id), Some(ts.saturating_mul(1000))),
            None => (None, None, None),
        };
        Rejected {
            reason: Reason::Oversize,
            detail: format!(
                "record is {} bytes, more than transform.max_record_bytes = {}; raw truncated",
                raw.len(),
                self.max_record_bytes
            ),
            log_stream,
            source_event_id,
            source_timestamp,
            raw: Cow::Borrowed(&raw[..cut]),
        }
    }

    /// The quarantine row of a line longer than `max_record_bytes` that the extract cut (see
    /// [`OversizeLine`]): its head, bounded here too, as the raw record.
    fn oversize_line<'a>(&self, o: OversizeLine<'a>) -> Rejected<'a> {
        let mut raw = o.head;
        let mut cut = self.max_record_bytes.min(raw.len());
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        match &mut raw {
            Cow::Borrowed(s) => *s = &s[..cut],
            Cow::Owned(s) => s.truncate(cut),
        }
        Rejected {
            reason: Reason::Oversize,
            detail: format!(
                "record is {} bytes, more than transform.max_record_bytes = {}; raw truncated ({} line {}, byte {})",
                o.bytes,
                o.limit,
                one_line(&o.source),
                o.line,
                o.offset
            ),
            log_stream: o.log_stream_name,
            source_event_id: o.event_id,
            source_timestamp: Some(o.timestamp.saturating_mul(1000)),
            raw,
        }
    }

    /// The quarantine row of a source line the extract found without a usable timestamp (see
    /// [`RejectedLine`]): `broken_envelope`, naming the file, line and why.
    fn rejected_line<'a>(&self, r: RejectedLine<'a>) -> Rejected<'a> {
        let mut raw = r.raw;
        if raw.len() > self.max_record_bytes {
            let mut cut = self.max_record_bytes;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            match &mut raw {
                Cow::Borrowed(s) => *s = &s[..cut],
                Cow::Owned(s) => s.truncate(cut),
            }
        }
        Rejected {
            reason: Reason::BrokenEnvelope,
            detail: format!(
                "no usable envelope timestamp ({}); {} line {}, byte {}; its day is that of the {}",
                one_line(&r.reason),
                one_line(&r.source),
                r.line,
                r.offset,
                one_line(&r.dated_by)
            ),
            log_stream: None,
            source_event_id: None,
            source_timestamp: None,
            raw,
        }
    }

    fn normalize_parts<'a>(
        &'a self,
        timestamp: i64,
        ingestion_time: Option<i64>,
        message: &'a str,
        log_stream: Cow<'a, str>,
        cw_event_id: Cow<'a, str>,
        raw: Cow<'a, str>,
    ) -> Normalized<'a> {
        let mut event = self.base_event(timestamp, ingestion_time, log_stream, cw_event_id);
        let trimmed = message.trim_start();
        if !trimmed.starts_with('{') {
            event.event_type = Some(Cow::Borrowed("text"));
            event.message = Some(Cow::Borrowed(message));
            return Ok(event);
        }
        let fast = (!self.serde_only)
            .then(|| MessageFields::scan(trimmed))
            .flatten();
        let fields: MessageFields<'a> = match fast.map_or_else(|| serde_json::from_str(trimmed), Ok)
        {
            Ok(f) => f,
            Err(e) => {
                let detail = format!("message is not a JSON object: {}", one_line(&e.to_string()));
                return Err(Self::reject_event(
                    Reason::MalformedJson,
                    detail,
                    event,
                    raw,
                ));
            }
        };
        match apply_fields(&mut event, &fields) {
            Ok(()) => Ok(event),
            Err((reason, detail)) => Err(Self::reject_event(reason, detail, event, raw)),
        }
    }

    /// An event with the envelope's fields, before the message is read.
    fn base_event<'a>(
        &'a self,
        timestamp: i64,
        ingestion_time: Option<i64>,
        log_stream: Cow<'a, str>,
        cw_event_id: Cow<'a, str>,
    ) -> Event<'a> {
        Event {
            event_id: cw_event_id.clone(),
            event_time: timestamp.saturating_mul(1000),
            ingest_time: ingestion_time.map(|t| t.saturating_mul(1000)),
            log_group: Cow::Borrowed(self.log_group.as_str()),
            log_stream,
            source_timestamp: timestamp,
            source_event_id: cw_event_id,
            ..Event::default()
        }
    }

    /// The quarantine row of a record whose message was rejected (`event`: its envelope).
    fn reject_event<'a>(
        reason: Reason,
        detail: String,
        event: Event<'a>,
        raw: impl Into<Cow<'a, str>>,
    ) -> Rejected<'a> {
        Rejected {
            reason,
            detail,
            log_stream: Some(event.log_stream),
            source_event_id: Some(event.source_event_id),
            source_timestamp: Some(event.source_timestamp.saturating_mul(1000)),
            raw: raw.into(),
        }
    }
}

/// The raw value of a message member: JSON text, or the content of a string without escapes
/// (read in place by the fast path).
#[derive(Clone, Copy)]
enum Raw<'a> {
    Json(&'a str),
    Str(&'a str),
}

impl fmt::Display for Raw<'_> {
    /// As JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Json(t) => f.write_str(t),
            Raw::Str(s) => write!(f, "\"{s}\""),
        }
    }
}

/// Core fields of an app message, kept as raw JSON text until typed one by one (so a wrong type
/// names its field).
#[derive(Default)]
struct MessageFields<'a> {
    known: [Option<Raw<'a>>; FIELD_COUNT],
    unknown: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> MessageFields<'a> {
    fn add(&mut self, key: Cow<'a, str>, value: &'a str) {
        match field_index(&key) {
            Some(i) => self.known[i] = Some(Raw::Json(value)),
            None => self.unknown.push((key, value)),
        }
    }

    /// The fast path: `None` leaves the message to `serde_json`.
    fn scan(text: &'a str) -> Option<Self> {
        let mut out = MessageFields::default();
        json::object_members(text, |k, v| {
            out.add(Cow::Borrowed(k), v);
            Some(())
        })?;
        Some(out)
    }
}

fn field_index(key: &str) -> Option<usize> {
    Some(match key {
        "event_id" => 0,
        "ts" => 1,
        "level" => 2,
        "event_type" => 3,
        "user_id" => 4,
        "session_id" => 5,
        "app_version" => 6,
        "platform" => 7,
        "os_version" => 8,
        "device_model" => 9,
        "country" => 10,
        "latency_ms" => 11,
        "status_code" => 12,
        "error_code" => 13,
        "props" => 14,
        _ => return None,
    })
}

/// Core fields of the message, numbered by [`field_index`].
const FIELD_COUNT: usize = 15;

impl<'de> serde::Deserialize<'de> for MessageFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

/// What reads a JSON object member by member: its key unescaped, its value as JSON text.
trait AddMember<'a>: Default {
    fn add(&mut self, key: Cow<'a, str>, value: &'a str);
}

impl<'a> AddMember<'a> for MessageFields<'a> {
    fn add(&mut self, key: Cow<'a, str>, value: &'a str) {
        MessageFields::add(self, key, value);
    }
}

/// `serde_json`'s reading of an object into any [`AddMember`], every member in order.
struct MembersVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: AddMember<'de>> Visitor<'de> for MembersVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = T::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value: &'de RawValue = map.next_value()?;
            out.add(key, value.get());
        }
        Ok(out)
    }
}

type FieldError = (Reason, String);

fn wrong_type(field: &str, expected: &str, raw: impl fmt::Display) -> FieldError {
    // On one line whatever the value's spacing (a detail is one line).
    let mut shown = one_line(&raw.to_string());
    if shown.len() > 60 {
        let mut cut = 57;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    (
        Reason::WrongType,
        format!("field {field}: expected {expected}, got {shown}"),
    )
}

fn str_field<'a>(field: &str, raw: Option<Raw<'a>>) -> Result<Option<Cow<'a, str>>, FieldError> {
    let text = match raw {
        None => return Ok(None),
        Some(Raw::Str(s)) => return Ok(Some(Cow::Borrowed(s))),
        Some(Raw::Json(t)) => t,
    };
    if text == "null" {
        return Ok(None);
    }
    if text.len() >= 2 && text.starts_with('"') {
        let inner = &text[1..text.len() - 1];
        if !inner.contains('\\') {
            return Ok(Some(Cow::Borrowed(inner)));
        }
        return serde_json::from_str::<String>(text)
            .map(|s| Some(Cow::Owned(s)))
            .map_err(|_| wrong_type(field, "a string", text));
    }
    Err(wrong_type(field, "a string", text))
}

fn int_field(field: &str, raw: Option<Raw<'_>>) -> Result<Option<i64>, FieldError> {
    let text = match raw {
        None => return Ok(None),
        Some(Raw::Json(t)) => t,
        Some(s @ Raw::Str(_)) => return Err(wrong_type(field, "an integer", s)),
    };
    if text == "null" {
        return Ok(None);
    }
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| wrong_type(field, "an integer", text))
}

fn apply_fields<'a>(event: &mut Event<'a>, m: &MessageFields<'a>) -> Result<(), FieldError> {
    let k = &m.known;
    if let Some(id) = str_field("event_id", k[0])?
        && !id.is_empty()
    {
        event.event_id = id;
    }
    if let Some(raw) = k[1] {
        let ts = str_field("ts", Some(raw)).map_err(|_| {
            (
                Reason::UnparsableTs,
                format!(
                    "field ts: expected an RFC 3339 string, got {}",
                    one_line(&raw.to_string())
                ),
            )
        })?;
        if let Some(ts) = ts {
            // The detail names the value only (not the parser's wording), so that every engine
            // (this one, the Spark transform) writes the same quarantine row.
            let parsed = chrono::DateTime::parse_from_rfc3339(&ts).map_err(|_| {
                (
                    Reason::UnparsableTs,
                    format!("field ts: {ts:?} is not an RFC 3339 timestamp"),
                )
            })?;
            event.event_time = parsed.timestamp_micros();
            event.own_time = true;
        }
    }
    event.level = str_field("level", k[2])?;
    event.event_type = str_field("event_type", k[3])?;
    event.user_id = str_field("user_id", k[4])?;
    event.session_id = str_field("session_id", k[5])?;
    event.app_version = str_field("app_version", k[6])?;
    event.platform = str_field("platform", k[7])?;
    event.os_version = str_field("os_version", k[8])?;
    event.device_model = str_field("device_model", k[9])?;
    event.country = str_field("country", k[10])?;
    event.latency_ms = int_field("latency_ms", k[11])?;
    event.status_code = match int_field("status_code", k[12])? {
        None => None,
        Some(v) => Some(i32::try_from(v).map_err(|_| {
            (
                Reason::WrongType,
                format!("field status_code: {v} does not fit a 32-bit integer"),
            )
        })?),
    };
    event.error_code = str_field("error_code", k[13])?;
    event.properties = properties(k[14], &m.unknown)?;
    Ok(())
}

/// `props` plus unknown keys as a JSON object: `props` text as sent when there are no unknown keys,
/// else a merged object with sorted keys (`props` wins on a clash; its last member of a key, the
/// first unknown one). Values keep their JSON text as sent, without whitespace: numbers keep their
/// digits (no float rounding) and nesting has no depth limit (nothing is parsed into values).
fn properties<'a>(
    props: Option<Raw<'a>>,
    unknown: &[(Cow<'a, str>, &'a str)],
) -> Result<Option<Cow<'a, str>>, FieldError> {
    let props = match props {
        None | Some(Raw::Json("null")) => None,
        Some(Raw::Json(t)) => Some(t),
        Some(s @ Raw::Str(_)) => return Err(wrong_type("props", "an object", s)),
    };
    // The common case: `props` alone, already a compact object (what apps send) — keep its text.
    if unknown.is_empty() {
        let Some(raw) = props else {
            return Ok(None);
        };
        if !raw.starts_with('{') {
            return Err(wrong_type("props", "an object", raw));
        }
        if !raw.bytes().any(|b| b.is_ascii_whitespace()) {
            return Ok(Some(Cow::Borrowed(raw)));
        }
    }
    // (key, from props, value): props first, so that a stable sort keeps them before unknown keys.
    let mut members: Vec<(Cow<'a, str>, bool, &'a str)> = Vec::new();
    if let Some(raw) = props
        && !props_members(raw, &mut members)
    {
        return Err(wrong_type("props", "an object", raw));
    }
    members.extend(unknown.iter().map(|(k, v)| (k.clone(), false, *v)));
    members.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(members.iter().map(|m| m.0.len() + m.2.len() + 4).sum());
    out.push('{');
    let mut i = 0;
    while i < members.len() {
        let key = &members[i].0;
        let same = members[i..].iter().take_while(|m| m.0 == *key).count();
        // The last props member of the key, else its first unknown one.
        let from_props = members[i..i + same].iter().filter(|m| m.1).count();
        let value = members[i + from_props.saturating_sub(1)].2;
        if out.len() > 1 {
            out.push(',');
        }
        push_json_str(&mut out, key);
        out.push(':');
        push_compact(&mut out, value);
        i += same;
    }
    out.push('}');
    Ok(Some(Cow::Owned(out)))
}

/// Appends the members of `props` to `members` (`false` when it is not an object): read in place
/// by the scanner, else by `serde_json` (escaped keys, nesting past the scanner's depth).
fn props_members<'a>(raw: &'a str, members: &mut Vec<(Cow<'a, str>, bool, &'a str)>) -> bool {
    if !raw.starts_with('{') {
        return false;
    }
    let scanned = json::object_members(raw, |k, v| {
        members.push((Cow::Borrowed(k), true, v));
        Some(())
    });
    if scanned.is_some() {
        return true;
    }
    members.clear();
    match serde_json::from_str::<Members<'a>>(raw) {
        Ok(m) => {
            members.extend(m.0.into_iter().map(|(k, v)| (k, true, v)));
            true
        }
        Err(_) => false,
    }
}

/// The members of a JSON object, in order and with duplicates, with their values' JSON text.
#[derive(Default)]
pub(crate) struct Members<'a>(pub(crate) Vec<(Cow<'a, str>, &'a str)>);

impl<'a> AddMember<'a> for Members<'a> {
    fn add(&mut self, key: Cow<'a, str>, value: &'a str) {
        self.0.push((key, value));
    }
}

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

/// `s` as a JSON string, escaped as `serde_json` writes it.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        if escape.is_empty() {
            // Writing to a `String` cannot fail.
            let _ = fmt::Write::write_fmt(out, format_args!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

/// Valid JSON text without its whitespace (outside strings).
fn push_compact(out: &mut String, json: &str) {
    if !json
        .bytes()
        .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(json);
        return;
    }
    let (mut in_str, mut escaped, mut from) = (false, false, 0);
    for (i, b) in json.bytes().enumerate() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
        } else if b == b'"' {
            in_str = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push_str(&json[from..i]);
            from = i + 1;
        }
    }
    out.push_str(&json[from..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> String {
        serde_json::json!({
            "timestamp": 1_761_998_400_000i64,
            "ingestionTime": 1_761_998_400_500i64,
            "message": message,
            "logStreamName": "ios/fleet-1",
            "eventId": "3741",
        })
        .to_string()
    }

    fn norm(l: &str) -> Result<Event<'static>, Rejected<'static>> {
        let n = Box::leak(Box::new(Normalizer::new("/mobile/app", 4096)));
        let l: &'static str = Box::leak(l.to_string().into_boxed_str());
        let scratch: &'static mut String = Box::leak(Box::default());
        n.normalize_line(l, scratch)
    }

    #[test]
    fn json_message_becomes_typed_event() {
        let msg = r#"{"event_id":"e-1","ts":"2026-11-01T12:00:00.250+01:00","level":"INFO","event_type":"api_call","user_id":"u1","session_id":"s1","app_version":"3.2.0","platform":"ios","os_version":"17.1","device_model":"iPhone15,2","country":"MX","latency_ms":120,"status_code":200,"error_code":null,"props":{"screen":"home","a":1},"experiment":"blue"}"#;
        let e = norm(&line(msg)).unwrap();
        assert_eq!(e.event_id, "e-1");
        assert_eq!(e.event_time, 1_793_530_800_250_000);
        assert_eq!(e.ingest_time, Some(1_761_998_400_500_000));
        assert_eq!(e.log_group, "/mobile/app");
        assert_eq!(e.log_stream, "ios/fleet-1");
        assert_eq!(e.event_type.as_deref(), Some("api_call"));
        assert_eq!(e.latency_ms, Some(120));
        assert_eq!(e.status_code, Some(200));
        assert_eq!(e.error_code, None);
        assert_eq!(e.message, None);
        assert_eq!(
            e.properties.as_deref(),
            Some(r#"{"a":1,"experiment":"blue","screen":"home"}"#)
        );
        assert_eq!(e.delivery_key(), (1_761_998_400_000, "3741"));
    }

    #[test]
    fn plain_text_becomes_text_row() {
        let e = norm(&line(
            "Fatal Exception: java.lang.NullPointerException\n\tat Foo",
        ))
        .unwrap();
        assert_eq!(e.event_type.as_deref(), Some("text"));
        assert_eq!(e.event_id, "3741");
        assert_eq!(e.event_time, 1_761_998_400_000_000);
        assert!(e.message.unwrap().starts_with("Fatal Exception"));
    }

    #[test]
    fn missing_event_id_falls_back_to_cloudwatch_id() {
        let e = norm(&line(r#"{"event_type":"tap"}"#)).unwrap();
        assert_eq!(e.event_id, "3741");
        assert_eq!(e.properties, None);
    }

    #[test]
    fn wrong_types_are_quarantined_naming_the_field() {
        let r = norm(&line(r#"{"event_id":"x","latency_ms":"12ms"}"#)).unwrap_err();
        assert_eq!(r.reason, Reason::WrongType);
        assert!(r.detail.contains("latency_ms"), "{}", r.detail);
        assert_eq!(r.source_event_id.as_deref(), Some("3741"));

        let r = norm(&line(r#"{"status_code":99999999999}"#)).unwrap_err();
        assert!(r.detail.contains("status_code"));
        let r = norm(&line(r#"{"user_id":42}"#)).unwrap_err();
        assert!(r.detail.contains("user_id"));
        let r = norm(&line(r#"{"props":[1]}"#)).unwrap_err();
        assert!(r.detail.contains("props"));
    }

    #[test]
    fn bad_ts_and_bad_json_and_bad_envelope() {
        let r = norm(&line(r#"{"ts":"yesterday"}"#)).unwrap_err();
        assert_eq!(r.reason, Reason::UnparsableTs);
        let r = norm(&line(r#"{"ts":1761998400}"#)).unwrap_err();
        assert_eq!(r.reason, Reason::UnparsableTs);
        let r = norm(&line(r#"{"event_id":"x","#)).unwrap_err();
        assert_eq!(r.reason, Reason::MalformedJson);
        let r = norm(r#"{"timestamp":"soon","message":"x"}"#).unwrap_err();
        assert_eq!(r.reason, Reason::BrokenEnvelope);
        assert_eq!(r.raw, r#"{"timestamp":"soon","message":"x"}"#);
        let r = norm("not json at all").unwrap_err();
        assert_eq!(r.reason, Reason::BrokenEnvelope);
    }

    #[test]
    fn oversize_is_quarantined_and_truncated() {
        let big = "é".repeat(5000);
        let r = norm(&line(&big)).unwrap_err();
        assert_eq!(r.reason, Reason::Oversize);
        assert!(r.raw.len() <= 4096);
        assert_eq!(r.source_event_id.as_deref(), Some("3741"));
        assert_eq!(r.log_stream.as_deref(), Some("ios/fleet-1"));
    }

    #[test]
    fn props_alone_are_kept_as_sent() {
        let e = norm(&line(r#"{"event_type":"tap","props":{"z":1,"a":[2]}}"#)).unwrap();
        assert_eq!(e.properties.as_deref(), Some(r#"{"z":1,"a":[2]}"#));
        let e = norm(&line(r#"{"event_type":"tap","props":{ "z": 1 }}"#)).unwrap();
        assert_eq!(e.properties.as_deref(), Some(r#"{"z":1}"#));
        let e = norm(&line(r#"{"event_type":"tap","props":null}"#)).unwrap();
        assert_eq!(e.properties, None);
        let r = norm(&line(r#"{"event_type":"tap","props":"x"}"#)).unwrap_err();
        assert_eq!(r.reason, Reason::WrongType);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let e = norm(&line(
            r#"{"event_type":"tap","device_model":"Pixel \"8\""}"#,
        ))
        .unwrap();
        assert_eq!(e.device_model.as_deref(), Some("Pixel \"8\""));
    }

    /// Unknown keys nested deeper than `serde_json`'s recursion limit (128) are kept, as sent.
    #[test]
    fn deeply_nested_unknown_keys_are_kept() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = norm(&line(&format!(r#"{{"event_type":"tap","x":{deep}}}"#))).unwrap();
        assert_eq!(
            e.properties.as_deref(),
            Some(format!(r#"{{"x":{deep}}}"#).as_str())
        );
        let obj = format!("{}1{}", r#"{"a":"#.repeat(150), "}".repeat(150));
        let e = norm(&line(&format!(r#"{{"props":{{"k":{obj}}},"y":{obj}}}"#))).unwrap();
        assert_eq!(
            e.properties.as_deref(),
            Some(format!(r#"{{"k":{obj},"y":{obj}}}"#).as_str())
        );
    }

    /// Numbers in `properties` keep their exact text, whatever the path that builds it.
    #[test]
    fn numbers_in_properties_keep_their_text() {
        let numbers = "12345678901234567890123,9007199254740993,-9223372036854775809,-0,1.0,0.1,2.50,1.5e300,1E400,-2.5E-7";
        // Merged with an unknown key, with whitespace, and alone: always the same digits.
        for (msg, want) in [
            (
                format!(r#"{{"props":{{"n":[{numbers}]}},"u":-0.0}}"#),
                format!(r#"{{"n":[{numbers}],"u":-0.0}}"#),
            ),
            (
                format!(
                    r#"{{"props":{{ "n" : [ {} ] }}}}"#,
                    numbers.replace(',', " , ")
                ),
                format!(r#"{{"n":[{numbers}]}}"#),
            ),
            (
                format!(r#"{{"props":{{"n":[{numbers}]}}}}"#),
                format!(r#"{{"n":[{numbers}]}}"#),
            ),
            (
                format!(r#"{{"big":9007199254740993,"n":[{numbers}]}}"#),
                format!(r#"{{"big":9007199254740993,"n":[{numbers}]}}"#),
            ),
        ] {
            let e = norm(&line(&msg)).unwrap();
            assert_eq!(e.properties.as_deref(), Some(want.as_str()), "{msg}");
        }
    }

    /// Merged `properties`: top-level keys sorted and merged (`props` wins, its last member of a
    /// key; else the first unknown one), values as sent without whitespace.
    #[test]
    fn merged_properties_keep_values_as_sent() {
        let e = norm(&line(
            r#"{"props":{"b":1,"a":{"y":[1, 2],"x":"\u00e9 \"q\""},"b":3},"a":"u","c":null,"c":2, "z" : { "k" : "v w" }}"#,
        ))
        .unwrap();
        assert_eq!(
            e.properties.as_deref(),
            Some(r#"{"a":{"y":[1,2],"x":"\u00e9 \"q\""},"b":3,"c":null,"z":{"k":"v w"}}"#)
        );
        // Escaped keys are written as serde_json writes them.
        let e = norm(&line(
            r#"{"props":{"t\u0061b\t":1,"q\"":2},"x\u0000":true}"#,
        ))
        .unwrap();
        assert_eq!(
            e.properties.as_deref(),
            Some(r#"{"q\"":2,"tab\t":1,"x\u0000":true}"#)
        );
        let e = norm(&line(r#"{"props":null,"u":1}"#)).unwrap();
        assert_eq!(e.properties.as_deref(), Some(r#"{"u":1}"#));
        let e = norm(&line(r#"{"props":{ }}"#)).unwrap();
        assert_eq!(e.properties.as_deref(), Some("{}"));
        let r = norm(&line(r#"{"props":[1],"u":1}"#)).unwrap_err();
        assert!(r.detail.contains("props"), "{}", r.detail);
    }

    /// A line the extract cut (longer than `max_record_bytes`) is an `oversize` row naming where
    /// it was, with its head, bounded, as raw.
    #[test]
    fn oversize_lines_of_the_extract_are_quarantined() {
        let head = format!(
            r#"{{"timestamp":1761998400000,"message":"{}"#,
            "é".repeat(3000)
        );
        let o = OversizeLine {
            timestamp: 1_761_998_400_000,
            log_stream_name: None,
            event_id: Some("e-9".into()),
            bytes: 3 << 30,
            limit: 262_144,
            source: "/logs/app.jsonl".into(),
            line: 7,
            offset: 123_456,
            head: head.as_str().into(),
        };
        let l = String::from_utf8(o.to_line().unwrap()).unwrap();
        let r = norm(&l).unwrap_err();
        assert_eq!(r.reason, Reason::Oversize);
        assert_eq!(
            r.detail,
            "record is 3221225472 bytes, more than transform.max_record_bytes = 262144; raw truncated (/logs/app.jsonl line 7, byte 123456)"
        );
        assert!(r.raw.len() <= 4096 && r.raw.len() > 4090 && head.starts_with(r.raw.as_ref()));
        assert_eq!(r.source_timestamp, Some(1_761_998_400_000_000));
        assert_eq!(
            (r.log_stream, r.source_event_id.as_deref()),
            (None, Some("e-9"))
        );
        // Anything else starting like it is no envelope.
        let r = norm(r#"["bitacora:oversize",{"timestamp":1}]"#).unwrap_err();
        assert_eq!(r.reason, Reason::BrokenEnvelope);
    }

    /// The fast scanner and `serde_json` agree on every input: same event, or same rejection.
    #[test]
    fn fast_path_agrees_with_serde_on_mutated_lines() {
        let fast = Normalizer::new("/mobile/app", 4096);
        let slow = Normalizer {
            serde_only: true,
            ..fast.clone()
        };
        let mut bases: Vec<String> = vec![
            line(r#"{"event_id":"e-1","ts":"2026-11-01T12:00:00.250Z","level":"INFO","event_type":"api_call","user_id":"u1","latency_ms":120,"status_code":200,"error_code":null,"props":{"screen":"home","n":[1,2.5e-3,true]},"x":-0.5}"#),
            line(r#"{"event_type":"tap","device_model":"Pixel \"8\" \u00e9\ud83d\ude00","props":null}"#),
            line("plain text with \"quotes\" and a tab\tand é"),
            r#" { "eventId" : "7", "logStreamName" : "s", "timestamp" : 12, "ingestionTime" : null, "message" : "{ \"a\" : [ ] , \"b\" : { } }" } "#.to_string(),
        ];
        bases.push(line(r#"{"ts":1,"latency_ms":1e3,"status_code":-7}"#));
        // Compact messages of known keys only: the path that reads them in place.
        bases.push(line(r#"{"event_id":"e-2","ts":"2026-11-01T12:00:00Z","event_type":"tap","latency_ms":-5,"status_code":200,"error_code":null,"props":{"a":[1,{"b":null}],"c":"d"}}"#));
        bases.push(line(
            r#"{"props":{"z":true},"user_id":"u","props":{"y":[]},"level":"INFO","props":null}"#,
        ));
        bases.push(line(
            r#"{"event_type":"tap","props":{"s":"x y"},"user_id":7,"latency_ms":"9"}"#,
        ));
        // Numbers kept as sent, merged or not; duplicate and escaped keys; nesting past the
        // scanner's depth (64) and past serde_json's recursion limit (128).
        bases.push(line(
            r#"{"props":{"n":12345678901234567890123,"m":-0,"f":[1.0,1E400,-2.5e-7],"n":9007199254740993},"u":{"v" : 1},"u":2,"t\u0061g":"x"}"#,
        ));
        bases.push(line(r#"{"event_type":"tap","props":{ "big" : 1e999 }}"#));
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        bases.push(line(&format!(
            r#"{{"event_type":"tap","props":{{"a":{}}},"x":{}}}"#,
            deep(100),
            deep(200)
        )));
        bases.push(line(&format!(
            r#"{{"event_type":"tap","props":{{"a":{}}}}}"#,
            deep(70)
        )));
        // A line of the extract for a cut one.
        bases.push(
            String::from_utf8(
                OversizeLine {
                    timestamp: 1,
                    log_stream_name: Some("s".into()),
                    event_id: None,
                    bytes: 9999,
                    limit: 4096,
                    source: "f".into(),
                    line: 2,
                    offset: 3,
                    head: r#"{"timestamp":1,"message":"é"#.into(),
                }
                .to_line()
                .unwrap(),
            )
            .unwrap(),
        );
        let specials = b"\"\\{}[],:0123-+.eEun tfl\t/a\xc3";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut compared = 0;
        for round in 0..60_000 {
            let mut b = bases[round % bases.len()].clone().into_bytes();
            for _ in 0..1 + next(3) {
                let at = next(b.len());
                match next(4) {
                    0 => b[at] = specials[next(specials.len())],
                    1 => {
                        b.remove(at);
                    }
                    2 => b.insert(at, specials[next(specials.len())]),
                    _ => {
                        let end = (at + next(12)).min(b.len());
                        let piece = b[at..end].to_vec();
                        b.splice(at..at, piece);
                    }
                }
            }
            let Ok(text) = String::from_utf8(b) else {
                continue;
            };
            let (mut s1, mut s2) = (String::new(), String::new());
            assert_eq!(
                fast.normalize_line(&text, &mut s1),
                slow.normalize_line(&text, &mut s2),
                "{text}"
            );
            compared += 1;
        }
        assert!(compared > 40_000);
    }
}
