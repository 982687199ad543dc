//! The routed record of the streaming contract: a curated `events` row as one JSON object (the
//! same column names; `event_time` and `ingest_time` RFC 3339 UTC; `properties` a JSON object, or
//! `null` when the row has none; `dt` the event's UTC day), and the quarantined record beside it.
//! The stream service, the Lambda handlers and every sink write these, one object per line.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::model::{Event, Rejected};

/// RFC 3339 UTC with microseconds (`2026-11-18T10:00:00.123456Z`) of µs since the epoch.
/// Years 0 to 9999 are written by hand (this runs for every routed record); others by chrono.
pub fn rfc3339_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_else(|| us.to_string());
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
    std::str::from_utf8(&b).unwrap_or_default().to_owned()
}

/// The UTC day (`YYYY-MM-DD`) of µs since the epoch: the `dt` partition of the row.
pub fn day_of_micros(us: i64) -> String {
    let (y, m, d) = civil_from_days(us.div_euclid(1_000_000).div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return DateTime::from_timestamp_micros(us)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
    }
    let mut b = *b"0000-00-00";
    put_digits(&mut b[0..4], y as u32);
    put_digits(&mut b[5..7], m);
    put_digits(&mut b[8..10], d);
    std::str::from_utf8(&b).unwrap_or_default().to_owned()
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
    properties: Option<&'a RawValue>,
    dt: String,
}

/// Appends the routed JSON object of `event` (no newline) to `out`.
pub fn write_event(event: &Event<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    fn o<'b>(v: &'b Option<std::borrow::Cow<'_, str>>) -> Option<&'b str> {
        v.as_deref()
    }
    // The normaliser writes `properties` as one JSON object; it is embedded as it is.
    let properties = match event.properties.as_deref() {
        Some(p) => Some(serde_json::from_str::<&RawValue>(p)?),
        None => None,
    };
    let row = Row {
        event_id: &event.event_id,
        event_time: rfc3339_micros(event.event_time),
        ingest_time: event.ingest_time.map(rfc3339_micros),
        log_group: &event.log_group,
        log_stream: &event.log_stream,
        level: o(&event.level),
        event_type: o(&event.event_type),
        user_id: o(&event.user_id),
        session_id: o(&event.session_id),
        app_version: o(&event.app_version),
        platform: o(&event.platform),
        os_version: o(&event.os_version),
        device_model: o(&event.device_model),
        country: o(&event.country),
        latency_ms: event.latency_ms,
        status_code: event.status_code,
        error_code: o(&event.error_code),
        message: o(&event.message),
        properties,
        dt: day_of_micros(event.event_time),
    };
    serde_json::to_writer(out, &row)
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
