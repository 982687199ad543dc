//! The routed record of the streaming contract: a curated `events` row as one JSON object (the
//! same column names; `event_time` and `ingest_time` RFC 3339 UTC; `properties` a JSON object, or
//! `null` when the row has none; `dt` the event's UTC day), and the quarantined record beside it.
//! The stream service, the Lambda handlers and every sink write these, one object per line.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use crate::model::{Event, Reason, Rejected};

/// RFC 3339 UTC with microseconds (`2026-11-18T10:00:00.123456Z`) of µs since the epoch.
/// Years 0 to 9999 are written by hand (this runs for every routed record); others by chrono.
pub fn rfc3339_micros(us: i64) -> String {
    let mut b = Vec::with_capacity(27);
    push_rfc3339_micros(&mut b, us);
    String::from_utf8(b).unwrap_or_default()
}

/// Appends [`rfc3339_micros`] of `us` to `out`.
pub fn push_rfc3339_micros(out: &mut Vec<u8>, us: i64) {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        let text = DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_else(|| us.to_string());
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let sod = secs.rem_euclid(86_400) as u32;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut b[0..4], y as u32);
    put_digits(&mut b[5..7], m);
    put_digits(&mut b[8..10], d);
    put_digits(&mut b[11..13], sod / 3600);
    put_digits(&mut b[14..16], sod / 60 % 60);
    put_digits(&mut b[17..19], sod % 60);
    put_digits(&mut b[20..26], frac);
    out.extend_from_slice(&b);
}

/// The UTC day (`YYYY-MM-DD`) of µs since the epoch: the `dt` partition of the row.
pub fn day_of_micros(us: i64) -> String {
    let mut b = Vec::with_capacity(10);
    push_day_of_micros(&mut b, us);
    String::from_utf8(b).unwrap_or_default()
}

/// Appends [`day_of_micros`] of `us` to `out`.
pub fn push_day_of_micros(out: &mut Vec<u8>, us: i64) {
    let (y, m, d) = civil_from_days(us.div_euclid(1_000_000).div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        let text = DateTime::from_timestamp_micros(us)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut b = *b"0000-00-00";
    put_digits(&mut b[0..4], y as u32);
    put_digits(&mut b[5..7], m);
    put_digits(&mut b[8..10], d);
    out.extend_from_slice(&b);
}

/// Writes `v` in decimal into `out`, zero-padded to its length.
fn put_digits(out: &mut [u8], mut v: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends the routed JSON object of `event` (no newline) to `out`: the columns in the order of
/// `bitacora.events`, written by hand (this runs for every routed record; the test module checks
/// it byte for byte against `serde_json`). `properties` must be the JSON text of an object, as
/// the [`Normalizer`](crate::normalize::Normalizer) writes it: it is embedded as it is.
pub fn write_event(event: &Event<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let props = event.properties.as_deref();
    out.reserve(
        200 + event.event_id.len()
            + event.log_group.len()
            + event.log_stream.len()
            + event.message.as_deref().map_or(0, str::len)
            + props.map_or(0, str::len),
    );
    out.extend_from_slice(b"{\"event_id\":");
    json_str(out, &event.event_id);
    out.extend_from_slice(b",\"event_time\":\"");
    push_rfc3339_micros(out, event.event_time);
    out.extend_from_slice(b"\",\"ingest_time\":");
    match event.ingest_time {
        Some(t) => {
            out.push(b'"');
            push_rfc3339_micros(out, t);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"log_group\":");
    json_str(out, &event.log_group);
    out.extend_from_slice(b",\"log_stream\":");
    json_str(out, &event.log_stream);
    let fields: [(&[u8], &Option<std::borrow::Cow<'_, str>>); 9] = [
        (b",\"level\":", &event.level),
        (b",\"event_type\":", &event.event_type),
        (b",\"user_id\":", &event.user_id),
        (b",\"session_id\":", &event.session_id),
        (b",\"app_version\":", &event.app_version),
        (b",\"platform\":", &event.platform),
        (b",\"os_version\":", &event.os_version),
        (b",\"device_model\":", &event.device_model),
        (b",\"country\":", &event.country),
    ];
    for (key, v) in fields {
        out.extend_from_slice(key);
        opt_str(out, v.as_deref());
    }
    out.extend_from_slice(b",\"latency_ms\":");
    match event.latency_ms {
        Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status_code\":");
    match event.status_code {
        Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"error_code\":");
    opt_str(out, event.error_code.as_deref());
    out.extend_from_slice(b",\"message\":");
    opt_str(out, event.message.as_deref());
    out.extend_from_slice(b",\"properties\":");
    match props {
        Some(p) => out.extend_from_slice(p.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"dt\":\"");
    push_day_of_micros(out, event.event_time);
    out.extend_from_slice(b"\"}");
    Ok(())
}

/// Whether `text` looks like a routed record (a JSON object with the routed columns
/// `event_time`, `ingest_time` and `log_group`): one of the service's own outputs sent back in
/// (a fan-out queue, a Firehose stream fed by a route). Read it with [`read_event`].
pub fn looks_routed(text: &str) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Searched with SIMD: the stream service asks this of every line it receives.
    static KEYS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
        [
            Finder::new(b"\"event_time\""),
            Finder::new(b"\"ingest_time\""),
            Finder::new(b"\"log_group\""),
        ]
    });
    text.trim_start().starts_with('{') && KEYS.iter().all(|k| k.find(text.as_bytes()).is_some())
}

/// A routed record as read back (the inverse of [`write_event`]).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutedIn<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    event_time: Cow<'a, str>,
    #[serde(default, borrow)]
    ingest_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    log_group: Cow<'a, str>,
    #[serde(default, borrow)]
    log_stream: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    app_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    platform: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    os_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    device_model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    country: Option<Cow<'a, str>>,
    #[serde(default)]
    latency_ms: Option<i64>,
    #[serde(default)]
    status_code: Option<i32>,
    #[serde(default, borrow)]
    error_code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    properties: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    dt: Option<Cow<'a, str>>,
}

/// Reads a routed record (as [`write_event`] writes it) back into its event: writing it again
/// gives the same text. `Err`: why it is not one (`field event_time: …`, a wrong type, an
/// unknown column), with the quarantine reason.
pub fn read_event(text: &str) -> Result<Event<'_>, (Reason, String)> {
    let r: RoutedIn<'_> = serde_json::from_str(text.trim()).map_err(|e| {
        (
            Reason::WrongType,
            crate::one_line(&format!("not a routed record: {e}")),
        )
    })?;
    let time = |field: &str, v: &str| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.timestamp_micros())
            .map_err(|_| {
                (
                    Reason::UnparsableTs,
                    format!("field {field}: {v:?} is not an RFC 3339 timestamp"),
                )
            })
    };
    let event_time = time("event_time", &r.event_time)?;
    let ingest_time = r
        .ingest_time
        .as_deref()
        .map(|t| time("ingest_time", t))
        .transpose()?;
    let properties = match r.properties.map(|p| p.get()) {
        None | Some("null") => None,
        Some(p) if p.starts_with('{') => Some(Cow::Borrowed(p)),
        Some(p) => {
            return Err((
                Reason::WrongType,
                format!(
                    "field properties: expected a JSON object, got {}",
                    crate::one_line(&p.chars().take(80).collect::<String>())
                ),
            ));
        }
    };
    Ok(Event {
        source_timestamp: event_time.div_euclid(1000),
        source_event_id: r.event_id.clone(),
        event_id: r.event_id,
        event_time,
        ingest_time,
        log_group: r.log_group,
        log_stream: r.log_stream.unwrap_or_default(),
        level: r.level,
        event_type: r.event_type,
        user_id: r.user_id,
        session_id: r.session_id,
        app_version: r.app_version,
        platform: r.platform,
        os_version: r.os_version,
        device_model: r.device_model,
        country: r.country,
        latency_ms: r.latency_ms,
        status_code: r.status_code,
        error_code: r.error_code,
        message: r.message,
        properties,
        // Not known to be the record's own: the routed record does not say whether its time
        // came from the message or from its arrival upstream (a copy routed again after a
        // resend would carry another).
        own_time: false,
    })
}

fn opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `s` as a JSON string, escaped as `serde_json` escapes it (`\"`, `\\`, the short escapes of
/// `\b \t \n \f \r`, `\u00xx` for other control characters; everything else as it is).
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    loop {
        // The plain run up to the next byte to escape, copied at once.
        let i = start + crate::json::plain_len(&b[start..]);
        out.extend_from_slice(&b[start..i]);
        let Some(&c) = b.get(i) else {
            break;
        };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 0xf) as usize],
            ]),
        }
        start = i + 1;
    }
    out.push(b'"');
}

#[derive(Serialize)]
struct QuarantineRow<'a> {
    reason: &'a str,
    detail: &'a str,
    log_group: &'a str,
    log_stream: Option<&'a str>,
    source_event_id: Option<&'a str>,
    source_timestamp: Option<String>,
    raw: &'a str,
    dt: String,
}

/// Appends the quarantine JSON object of `rejected` (the columns of `bitacora.quarantine`; `dt`
/// is the day of its source timestamp, else of `received_us`) to `out`.
pub fn write_rejected(
    rejected: &Rejected<'_>,
    log_group: &str,
    received_us: i64,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let row = QuarantineRow {
        reason: rejected.reason.as_str(),
        detail: &rejected.detail,
        log_group,
        log_stream: rejected.log_stream.as_deref(),
        source_event_id: rejected.source_event_id.as_deref(),
        source_timestamp: rejected.source_timestamp.map(rfc3339_micros),
        raw: &rejected.raw,
        dt: day_of_micros(rejected.source_timestamp.unwrap_or(received_us)),
    };
    serde_json::to_writer(out, &row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Normalizer;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let specials = [
            "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{1}", "\u{1f}", "ñ", "/",
        ];
        let mut cases = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "é".repeat(9),
        ];
        // Each special byte at each position of strings around the eight-byte steps.
        for len in [1, 7, 8, 9, 15, 16, 17, 40] {
            for at in 0..len {
                for sp in specials {
                    let mut t: String = "a".repeat(at);
                    t.push_str(sp);
                    t.push_str(&"b".repeat(len - at));
                    cases.push(t);
                }
            }
        }
        for t in cases {
            let mut out = Vec::new();
            json_str(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
    }

    /// The routed record as `serde_json` writes it: the reference of the hand-written writer.
    #[derive(Serialize)]
    struct Row<'a> {
        event_id: &'a str,
        event_time: String,
        ingest_time: Option<String>,
        log_group: &'a str,
        log_stream: &'a str,
        level: Option<&'a str>,
        event_type: Option<&'a str>,
        user_id: Option<&'a str>,
        session_id: Option<&'a str>,
        app_version: Option<&'a str>,
        platform: Option<&'a str>,
        os_version: Option<&'a str>,
        device_model: Option<&'a str>,
        country: Option<&'a str>,
        latency_ms: Option<i64>,
        status_code: Option<i32>,
        error_code: Option<&'a str>,
        message: Option<&'a str>,
        properties: Option<&'a serde_json::value::RawValue>,
        dt: String,
    }

    fn reference(event: &Event<'_>) -> Vec<u8> {
        let o = |v: &'_ Option<std::borrow::Cow<'_, str>>| v.as_deref().map(str::to_owned);
        let (level, event_type, user_id, session_id, app_version) = (
            o(&event.level),
            o(&event.event_type),
            o(&event.user_id),
            o(&event.session_id),
            o(&event.app_version),
        );
        let (platform, os_version, device_model, country, error_code, message) = (
            o(&event.platform),
            o(&event.os_version),
            o(&event.device_model),
            o(&event.country),
            o(&event.error_code),
            o(&event.message),
        );
        let row = Row {
            event_id: &event.event_id,
            event_time: rfc3339_micros(event.event_time),
            ingest_time: event.ingest_time.map(rfc3339_micros),
            log_group: &event.log_group,
            log_stream: &event.log_stream,
            level: level.as_deref(),
            event_type: event_type.as_deref(),
            user_id: user_id.as_deref(),
            session_id: session_id.as_deref(),
            app_version: app_version.as_deref(),
            platform: platform.as_deref(),
            os_version: os_version.as_deref(),
            device_model: device_model.as_deref(),
            country: country.as_deref(),
            latency_ms: event.latency_ms,
            status_code: event.status_code,
            error_code: error_code.as_deref(),
            message: message.as_deref(),
            properties: event
                .properties
                .as_deref()
                .map(|p| serde_json::from_str(p).unwrap()),
            dt: day_of_micros(event.event_time),
        };
        serde_json::to_vec(&row).unwrap()
    }

    #[test]
    fn the_hand_written_writer_matches_serde_json_byte_for_byte() {
        let n = Normalizer::new("/mobile/app", 1 << 20);
        // Strings with every kind of character JSON escapes, and some it does not.
        let odd: Vec<String> = (0u8..0x80)
            .map(|c| format!("a{}b", c as char))
            .chain([
                "ñandú \u{2028} 日本 🚀".to_string(),
                "\\\"\\".into(),
                String::new(),
            ])
            .collect();
        let mut checked = 0;
        for (i, s) in odd.iter().enumerate() {
            let msg = serde_json::json!({
                "event_id": s, "ts": "2026-11-18T10:00:00.123456Z", "level": s, "event_type": s,
                "user_id": s, "session_id": s, "app_version": s, "platform": s, "os_version": s,
                "device_model": s, "country": s, "latency_ms": i as i64 - 40, "status_code": i,
                "error_code": s, "props": {"k": s, "n": 0}, "extra": [i],
            })
            .to_string()
            .replace(r#""n":0"#, r#""n":123456789012345678901"#);
            let line = serde_json::json!({
                "timestamp": 1763460000123i64 + i as i64, "ingestionTime": 1763460001000i64,
                "message": msg, "logStreamName": s, "eventId": format!("cw{i}"),
            })
            .to_string();
            let mut scratch = String::new();
            let e = n.normalize_line(&line, &mut scratch).unwrap();
            let mut out = Vec::new();
            write_event(&e, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, String::from_utf8(reference(&e)).unwrap());
            // Read back, it is the same event, and written again the same text.
            assert!(looks_routed(&text));
            let back = read_event(&text).unwrap();
            assert_eq!(
                (
                    &back.event_id,
                    back.event_time,
                    &back.properties,
                    &back.user_id
                ),
                (&e.event_id, e.event_time, &e.properties, &e.user_id)
            );
            let mut again = Vec::new();
            write_event(&back, &mut again).unwrap();
            assert_eq!(String::from_utf8(again).unwrap(), text);
            checked += 1;
        }
        // Plain text messages (nulls everywhere), and a row without ingest time.
        let mut scratch = String::new();
        let mut e = n
            .normalize_line(
                r#"{"timestamp":-5,"message":"crash\n\u0001 \"x\"","logStreamName":"s","eventId":"c"}"#,
                &mut scratch,
            )
            .unwrap();
        e.ingest_time = None;
        let mut out = Vec::new();
        write_event(&e, &mut out).unwrap();
        assert_eq!(out, reference(&e));
        assert_eq!(checked, odd.len());
    }

    #[test]
    fn records_that_are_not_routed_ones_are_refused_naming_the_field() {
        let n = Normalizer::new("/g", 1 << 20);
        let mut scratch = String::new();
        let e = n
            .normalize_line(
                r#"{"timestamp":5,"message":"crash","logStreamName":"s","eventId":"c"}"#,
                &mut scratch,
            )
            .unwrap();
        let mut out = Vec::new();
        write_event(&e, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let back = read_event(&text).unwrap();
        assert_eq!(back.message.as_deref(), Some("crash"));
        assert_eq!(back.ingest_time, e.ingest_time);
        let bad_time = text.replace("1970-01-01T00:00:00.005000Z", "yesterday");
        assert_eq!(
            read_event(&bad_time).unwrap_err(),
            (
                Reason::UnparsableTs,
                r#"field event_time: "yesterday" is not an RFC 3339 timestamp"#.to_string()
            )
        );
        let bad_type = text.replace(r#""latency_ms":null"#, r#""latency_ms":"slow""#);
        assert!(
            read_event(&bad_type)
                .unwrap_err()
                .1
                .contains("not a routed record")
        );
        let bad_props = text.replace(r#""properties":null"#, r#""properties":[1]"#);
        assert!(
            read_event(&bad_props)
                .unwrap_err()
                .1
                .contains("field properties")
        );
        let unknown = text.replace(r#""dt":"#, r#""extra":1,"dt":"#);
        assert!(
            read_event(&unknown)
                .unwrap_err()
                .1
                .contains("unknown field `extra`")
        );
        // An app message is not a routed record.
        assert!(!looks_routed(
            r#"{"event_id":"a","ts":"2026-01-01T00:00:00Z"}"#
        ));
    }

    #[test]
    fn hand_written_dates_match_chrono() {
        let chrono_rfc = |us: i64| {
            DateTime::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
                .unwrap()
        };
        let chrono_day = |us: i64| {
            DateTime::from_timestamp_micros(us)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap()
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = vec![
            0,
            -1,
            1,
            951_782_400_000_000,     // 2000-02-29
            4_107_542_399_999_999,   // 2100-02-28T23:59:59.999999
            -62_135_596_800_000_000, // 0001-01-01
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
            253_402_300_800_000_000, // 10000-01-01: chrono's path
            -62_167_219_200_000_001, // before year 0: chrono's path
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x % 500_000_000_000_000_000) as i64 - 150_000_000_000_000_000);
        }
        for us in values {
            assert_eq!(rfc3339_micros(us), chrono_rfc(us), "{us}");
            assert_eq!(day_of_micros(us), chrono_day(us), "{us}");
        }
    }

    #[test]
    fn an_event_becomes_the_curated_row_as_json() {
        let n = Normalizer::new("/mobile/app", 1 << 20);
        let line = r#"{"timestamp":1763460000123,"ingestionTime":1763460001000,"message":"{\"event_id\":\"e1\",\"ts\":\"2025-11-18T10:00:00.5Z\",\"level\":\"INFO\",\"event_type\":\"purchase\",\"user_id\":\"u1\",\"latency_ms\":12,\"props\":{\"amount\":123456789012345678901}}","logStreamName":"ios","eventId":"cw1"}"#;
        let mut scratch = String::new();
        let e = n.normalize_line(line, &mut scratch).unwrap();
        let mut out = Vec::new();
        write_event(&e, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event_id"], "e1");
        assert_eq!(v["event_time"], "2025-11-18T10:00:00.500000Z");
        assert_eq!(v["ingest_time"], "2025-11-18T10:00:01.000000Z");
        assert_eq!(v["log_stream"], "ios");
        assert_eq!(v["latency_ms"], 12);
        assert_eq!(v["status_code"], serde_json::Value::Null);
        assert_eq!(v["dt"], "2025-11-18");
        // properties is an object, its numbers exact.
        assert!(
            text.contains(r#""properties":{"amount":123456789012345678901}"#),
            "{text}"
        );
    }

    #[test]
    fn a_rejected_record_keeps_its_reason_and_raw_text() {
        let n = Normalizer::new("/mobile/app", 1 << 20);
        let line = r#"{"timestamp":1763460000123,"message":"{\"ts\":\"yesterday\"}","logStreamName":"ios","eventId":"cw1"}"#;
        let mut scratch = String::new();
        let r = n.normalize_line(line, &mut scratch).unwrap_err();
        let mut out = Vec::new();
        write_rejected(&r, n.log_group(), 0, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["reason"], "unparsable_ts");
        assert_eq!(v["raw"], line);
        assert_eq!(v["dt"], "2025-11-18");
    }
}
