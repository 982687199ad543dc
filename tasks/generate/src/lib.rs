//! `bitacora generate`: deterministic synthetic mobile-app logs in the file-source format
//! (NDJSON lines shaped like CloudWatch `FilterLogEvents` events).
//!
//! For a day `D` it writes, per log stream, one file under `OUT/<platform>/prod/<YYYY>/<MM>/<DD>/`
//! (`.jsonl` or `.jsonl.gz`, alternating) holding exactly `events` records timestamped inside `D` in
//! total, plus about one hour of records on each side of the day. Among the records of the day, about
//! 2% are retried deliveries (the same app event again, a later timestamp, a new CloudWatch `eventId`),
//! 3% plain-text messages and 0.5% messages with a wrongly typed core field. The same seed gives the
//! same files, byte for byte.

mod rng;
mod vocab;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use bitacora_core::{Day, Error, Result};
use serde::Serialize;

use rng::Rng;

/// Parameters of `bitacora generate`.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub date: Day,
    /// Records timestamped inside the day (duplicates, plain text and malformed included).
    pub events: u64,
    pub out: PathBuf,
    pub seed: u64,
    /// Number of log streams (files).
    pub streams: usize,
}

impl GenerateParams {
    pub fn new(date: Day, events: u64, out: impl Into<PathBuf>, seed: u64) -> Self {
        GenerateParams {
            date,
            events,
            out: out.into(),
            seed,
            streams: 8,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GenerateReport {
    pub tool: &'static str,
    pub status: &'static str,
    pub date: String,
    pub out: String,
    pub seed: u64,
    pub files: Vec<String>,
    /// All records written, inside and outside the day.
    pub records: u64,
    /// Records timestamped inside the day: what `extract --date D` selects.
    pub in_day: u64,
    /// Records in the hour before and after the day.
    pub outside_window: u64,
    /// Retried deliveries inside the day (dropped by dedup).
    pub duplicates: u64,
    /// Plain-text messages inside the day.
    pub plain_text: u64,
    /// Messages with a wrongly typed core field or bad `ts` inside the day (quarantined).
    pub malformed: u64,
    /// Distinct app events inside the day (what `events` will hold).
    pub distinct: u64,
    pub bytes: u64,
}

impl GenerateReport {
    fn add(&mut self, s: &StreamReport) {
        self.files.push(s.file.clone());
        self.records += s.records;
        self.in_day += s.in_day;
        self.outside_window += s.outside;
        self.duplicates += s.duplicates;
        self.plain_text += s.plain_text;
        self.malformed += s.malformed;
        self.bytes += s.bytes;
    }
}

#[derive(Debug, Default)]
struct StreamReport {
    file: String,
    records: u64,
    in_day: u64,
    outside: u64,
    duplicates: u64,
    plain_text: u64,
    malformed: u64,
    bytes: u64,
}

/// Writes the day's files. Idempotent: the same parameters rewrite the same bytes.
pub fn generate(params: &GenerateParams) -> Result<GenerateReport> {
    if params.streams == 0 {
        return Err(Error::Usage("--streams must be at least 1".into()));
    }
    std::fs::create_dir_all(&params.out).map_err(|e| Error::io("create folder", &params.out, e))?;
    let n = params.streams as u64;
    let per_stream: Vec<u64> = (0..n)
        .map(|i| params.events / n + u64::from(i < params.events % n))
        .collect();
    let workers = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(2);
    let mut results: Vec<Option<Result<StreamReport>>> =
        (0..params.streams).map(|_| None).collect();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for w in 0..workers {
            let per_stream = &per_stream;
            handles.push(s.spawn(move || {
                let mut out = Vec::new();
                for i in (w..params.streams).step_by(workers) {
                    out.push((i, write_stream(params, i, per_stream[i])));
                }
                out
            }));
        }
        for h in handles {
            if let Ok(done) = h.join() {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
        }
    });
    let mut report = GenerateReport {
        tool: "bitacora-generate",
        status: "ok",
        date: params.date.to_string(),
        out: params.out.display().to_string(),
        seed: params.seed,
        ..Default::default()
    };
    for r in results {
        let r = r.ok_or_else(|| Error::Source {
            unit: params.out.display().to_string(),
            message: "a generator thread panicked".into(),
        })??;
        report.add(&r);
    }
    report.distinct = report.in_day - report.duplicates;
    Ok(report)
}

/// The platform, name and file of stream `i`.
fn stream_identity(params: &GenerateParams, i: usize) -> (&'static str, String, PathBuf) {
    let platform = if i.is_multiple_of(2) {
        "ios"
    } else {
        "android"
    };
    let name = format!("{platform}/prod/pod-{i:02}");
    let d = params.date.date();
    let ext = if i % 2 == 1 { "jsonl.gz" } else { "jsonl" };
    let file = params
        .out
        .join(platform)
        .join("prod")
        .join(d.format("%Y").to_string())
        .join(d.format("%m").to_string())
        .join(d.format("%d").to_string())
        .join(format!("pod-{i:02}.{ext}"));
    (platform, name, file)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    timestamp: i64,
    ingestion_time: i64,
    message: &'a str,
    log_stream_name: &'a str,
    event_id: &'a str,
}

#[derive(Serialize, Clone)]
struct Message {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    ts: String,
    level: &'static str,
    event_type: &'static str,
    user_id: String,
    session_id: String,
    app_version: &'static str,
    platform: &'static str,
    os_version: &'static str,
    device_model: &'static str,
    country: &'static str,
    latency_ms: Option<i64>,
    status_code: Option<i32>,
    error_code: Option<&'static str>,
    props: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    experiment: Option<&'static str>,
}

enum Out {
    Plain(BufWriter<File>),
    Gz(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

impl Out {
    fn w(&mut self) -> &mut dyn Write {
        match self {
            Out::Plain(w) => w,
            Out::Gz(w) => w,
        }
    }
    fn finish(self) -> std::io::Result<()> {
        match self {
            Out::Plain(mut w) => w.flush(),
            Out::Gz(w) => (*w).finish()?.flush(),
        }
    }
}

fn write_stream(params: &GenerateParams, i: usize, in_day: u64) -> Result<StreamReport> {
    let (platform, stream, path) = stream_identity(params, i);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))?;
    }
    let file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    let buf = BufWriter::with_capacity(1 << 20, file);
    let mut out = if path.extension().is_some_and(|e| e == "gz") {
        Out::Gz(Box::new(flate2::write::GzEncoder::new(
            buf,
            flate2::Compression::fast(),
        )))
    } else {
        Out::Plain(buf)
    };
    let day_seed = params.seed ^ (params.date.start_ms() as u64).rotate_left(17);
    let mut rng = Rng::new(day_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1));
    // A user base several times the day's events: a skewed few are very active, many are not.
    let users = (params.events / 4).clamp(50, 20_000_000);
    let mut report = StreamReport {
        file: path.display().to_string(),
        ..Default::default()
    };
    let hour = 3_600_000i64;
    let start = params.date.start_ms();
    let edge = (in_day / 24).max(1);
    let segments = [
        (start - hour, start, edge, false),
        (start, start + 24 * hour, in_day, true),
        (start + 24 * hour, start + 25 * hour, edge, false),
    ];
    let mut ctx = StreamCtx {
        rng: &mut rng,
        platform,
        users,
    };
    let mut line = Vec::with_capacity(1024);
    for (from, to, count, inside) in segments {
        if count == 0 {
            continue;
        }
        // Recent JSON messages of this segment, candidates for a retried delivery.
        let mut recent: VecDeque<String> = VecDeque::with_capacity(64);
        let step = (to - from) as f64 / count as f64;
        for k in 0..count {
            let ts = from + (k as f64 * step) as i64 + ctx.rng.below((step as u64).max(1)) as i64;
            let ts = ts.min(to - 1);
            let roll = ctx.rng.unit();
            let (message, kind) = if roll < 0.02 && !recent.is_empty() {
                let pick = ctx.rng.below(recent.len() as u64) as usize;
                (recent[pick].clone(), Kind::Duplicate)
            } else if roll < 0.05 {
                (vocab::plain_text(ctx.rng, ts), Kind::Text)
            } else if roll < 0.055 {
                (ctx.malformed_message(ts), Kind::Malformed)
            } else {
                let m = ctx.event(ts);
                let text =
                    serde_json::to_string(&m).map_err(|e| Error::external("encode message", e))?;
                // Only events with an app event_id can be recognised as retried deliveries.
                if m.event_id.is_some() {
                    if recent.len() == 64 {
                        recent.pop_front();
                    }
                    recent.push_back(text.clone());
                }
                (text, Kind::Good)
            };
            let event_id = ctx.rng.cloudwatch_id();
            let env = Envelope {
                timestamp: ts,
                ingestion_time: ts + 200 + ctx.rng.below(2_800) as i64,
                message: &message,
                log_stream_name: &stream,
                event_id: &event_id,
            };
            line.clear();
            serde_json::to_writer(&mut line, &env)
                .map_err(|e| Error::external("encode event", e))?;
            line.push(b'\n');
            out.w()
                .write_all(&line)
                .map_err(|e| Error::io("write", &path, e))?;
            report.records += 1;
            report.bytes += line.len() as u64;
            if inside {
                report.in_day += 1;
                match kind {
                    Kind::Duplicate => report.duplicates += 1,
                    Kind::Text => report.plain_text += 1,
                    Kind::Malformed => report.malformed += 1,
                    Kind::Good => {}
                }
            } else {
                report.outside += 1;
            }
        }
    }
    out.finish().map_err(|e| Error::io("write", &path, e))?;
    Ok(report)
}

#[derive(Clone, Copy)]
enum Kind {
    Good,
    Duplicate,
    Text,
    Malformed,
}

struct StreamCtx<'a> {
    rng: &'a mut Rng,
    platform: &'static str,
    users: u64,
}

impl StreamCtx<'_> {
    fn event(&mut self, ts: i64) -> Message {
        let r = &mut *self.rng;
        let x = r.unit();
        let user = ((x * x * x) * self.users as f64) as u64;
        let event_type = vocab::pick(r, vocab::EVENT_TYPES);
        let app_version = vocab::pick(r, vocab::APP_VERSIONS);
        let (os_version, device_model) = if self.platform == "ios" {
            (
                vocab::pick(r, vocab::IOS_VERSIONS),
                vocab::pick(r, vocab::IOS_DEVICES),
            )
        } else {
            (
                vocab::pick(r, vocab::ANDROID_VERSIONS),
                vocab::pick(r, vocab::ANDROID_DEVICES),
            )
        };
        // 3.2.0 shipped a bug: more errors, slower calls.
        let buggy = app_version == "3.2.0";
        let mut latency_ms = None;
        let mut status_code = None;
        let mut error_code = None;
        let mut level = "INFO";
        let mut props = serde_json::Map::new();
        let event_type = match event_type {
            "api_call" => {
                let base = if self.platform == "android" {
                    140.0
                } else {
                    110.0
                };
                let slow = if buggy { 1.4 } else { 1.0 };
                let l = (base * slow * (r.normal() * 0.6).exp()) as i64 + 5;
                latency_ms = Some(l);
                let fail = r.unit() < if buggy { 0.09 } else { 0.03 };
                if fail {
                    let (code, err) = vocab::pick(r, vocab::HTTP_FAILURES);
                    status_code = Some(code);
                    error_code = Some(err);
                    level = "WARN";
                } else {
                    status_code = Some(200);
                }
                props.insert("endpoint".into(), vocab::pick(r, vocab::ENDPOINTS).into());
                "api_call"
            }
            "error" => {
                level = "ERROR";
                error_code = Some(vocab::pick(r, vocab::ERROR_CODES));
                props.insert("screen".into(), vocab::pick(r, vocab::SCREENS).into());
                "error"
            }
            "purchase" => {
                props.insert("amount_cents".into(), (99 + r.below(9_900) as i64).into());
                props.insert("currency".into(), "USD".into());
                "purchase"
            }
            other => {
                if buggy && other == "screen_view" && r.unit() < 0.04 {
                    level = "ERROR";
                    error_code = Some("RENDER_TIMEOUT");
                }
                props.insert("screen".into(), vocab::pick(r, vocab::SCREENS).into());
                other
            }
        };
        let client_delay = r.below(2_000) as i64;
        let event_id = if r.unit() < 0.01 {
            None
        } else {
            Some(r.uuid())
        };
        Message {
            event_id,
            ts: rfc3339(ts - client_delay),
            level,
            event_type,
            user_id: format!("u-{user:07}"),
            session_id: format!("s-{user:07}-{}", (ts / 1_800_000) % 1000),
            app_version,
            platform: self.platform,
            os_version,
            device_model,
            country: vocab::pick(r, vocab::COUNTRIES),
            latency_ms,
            status_code,
            error_code,
            props,
            experiment: (r.unit() < 0.05).then_some("checkout_b"),
        }
    }

    /// A message with a wrongly typed core field (or an unparsable `ts`).
    fn malformed_message(&mut self, ts: i64) -> String {
        let m = self.event(ts);
        let mut v = serde_json::to_value(&m).unwrap_or_default();
        let which = self.rng.below(5);
        if let Some(obj) = v.as_object_mut() {
            match which {
                0 => obj.insert("latency_ms".into(), "120ms".into()),
                1 => obj.insert("status_code".into(), "200".into()),
                2 => obj.insert("user_id".into(), 1234567.into()),
                3 => obj.insert("ts".into(), "yesterday at 5".into()),
                _ => obj.insert("props".into(), serde_json::json!(["not", "an", "object"])),
            };
        }
        v.to_string()
    }
}

/// What a live message is (the load generator counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKind {
    /// A new app event.
    New,
    /// A copy of a recent event, sent again (a producer's retry).
    Redelivered,
    /// A plain-text line (crash traces, library output).
    Text,
    /// An event with a wrongly typed core field (quarantined downstream).
    Malformed,
}

/// Endless app messages as the apps' backends send them live (`bitacora generate --stream`): the
/// same realistic events as the files of `generate`, timestamped by the caller, with a share
/// `duplicates` of redelivered copies, 3% plain text and 0.5% malformed messages.
pub struct LiveMessages {
    rng: Rng,
    users: u64,
    duplicates: f64,
    recent: VecDeque<String>,
    n: u64,
}

impl LiveMessages {
    pub fn new(seed: u64, duplicates: f64) -> Self {
        LiveMessages {
            rng: Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5157),
            users: 200_000,
            duplicates: duplicates.clamp(0.0, 0.9),
            recent: VecDeque::with_capacity(256),
            n: 0,
        }
    }

    /// The next message, timestamped `ts_ms` (ms since the epoch).
    pub fn next_message(&mut self, ts_ms: i64) -> (String, LiveKind) {
        self.n += 1;
        let roll = self.rng.unit();
        if roll < self.duplicates && !self.recent.is_empty() {
            let pick = self.rng.below(self.recent.len() as u64) as usize;
            return (self.recent[pick].clone(), LiveKind::Redelivered);
        }
        let rest = (roll - self.duplicates) / (1.0 - self.duplicates).max(1e-9);
        let platform = if self.n.is_multiple_of(2) {
            "ios"
        } else {
            "android"
        };
        let mut ctx = StreamCtx {
            rng: &mut self.rng,
            platform,
            users: self.users,
        };
        if rest < 0.03 {
            return (vocab::plain_text(ctx.rng, ts_ms), LiveKind::Text);
        }
        if rest < 0.035 {
            return (ctx.malformed_message(ts_ms), LiveKind::Malformed);
        }
        let mut m = ctx.event(ts_ms);
        // Live producers always send an id (the dedup key).
        if m.event_id.is_none() {
            m.event_id = Some(ctx.rng.uuid());
        }
        let text = serde_json::to_string(&m).unwrap_or_default();
        if self.recent.len() == 256 {
            self.recent.pop_front();
        }
        self.recent.push_back(text.clone());
        (text, LiveKind::New)
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_counts_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let day: Day = "2026-11-01".parse().unwrap();
        let a = generate(&GenerateParams::new(day, 5_000, dir.path().join("a"), 7)).unwrap();
        let b = generate(&GenerateParams::new(day, 5_000, dir.path().join("b"), 7)).unwrap();
        assert_eq!(a.in_day, 5_000);
        assert!(a.outside_window > 300);
        assert!(a.duplicates > 50 && a.duplicates < 200, "{}", a.duplicates);
        assert!(a.plain_text > 100 && a.plain_text < 250, "{}", a.plain_text);
        assert!(a.malformed > 5 && a.malformed < 60, "{}", a.malformed);
        assert_eq!(a.files.len(), 8);
        for (fa, fb) in a.files.iter().zip(&b.files) {
            assert_eq!(std::fs::read(fa).unwrap(), std::fs::read(fb).unwrap());
        }
        assert!(a.files.iter().any(|f| f.ends_with(".jsonl.gz")));
        let c = generate(&GenerateParams::new(day, 5_000, dir.path().join("c"), 8)).unwrap();
        assert_ne!(
            std::fs::read(&a.files[0]).unwrap(),
            std::fs::read(&c.files[0]).unwrap()
        );
    }
}
