//! The embedded log source: a folder of NDJSON files shaped like CloudWatch `FilterLogEvents`
//! events, read recursively (`*.jsonl`, `*.jsonl.gz`, `*.jsonl.zst`).
//!
//! Only regular files are read (symbolic links followed to decide): a FIFO, socket, device or
//! folder with such a name is skipped, logged and counted (`skipped`). Lines are held up to
//! `transform.max_record_bytes` (see [`FileSource::with_max_record_bytes`]): a longer one is read
//! through without being buffered, and goes on as an [`OversizeLine`] (its head, length and
//! place) when its head gives it a timestamp of the day, for the transform to quarantine it as
//! `oversize`.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bitacora_core::config::{SourceConfig, TransformConfig};
use bitacora_core::lines::Line;
use bitacora_core::source::{Emit, LogSource, SourceUnit, UnitStats};
use bitacora_core::{Day, Error, Result};
use bitacora_model::model::{EnvelopeHead, Marker, OversizeLine, RejectedLine};

/// Bytes of a file looked at a time.
const READ_BLOCK: usize = 4 << 20;

/// Lines without a usable `timestamp` are logged individually up to this many per file (and
/// oversize lines, separately).
const LOGGED_MALFORMED: u64 = 5;

#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
    /// Longest line held whole (`transform.max_record_bytes`).
    max_line: usize,
}

#[derive(serde::Deserialize)]
struct Timestamp {
    timestamp: i64,
}

impl FileSource {
    /// A source reading `cfg.path`, holding lines up to the default `transform.max_record_bytes`.
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        if !cfg.path.is_dir() {
            return Err(Error::config(
                "source.path",
                format!("{} is not a folder", cfg.path.display()),
            ));
        }
        Ok(FileSource {
            root: cfg.path.clone(),
            max_line: TransformConfig::default().max_record_bytes,
        })
    }

    /// Lines longer than `max` bytes (`transform.max_record_bytes`) are not held whole: their
    /// first `max` bytes go on as an [`OversizeLine`].
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_line = max.max(1);
        self
    }

    fn walk(dir: &Path, out: &mut Vec<SourceUnit>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::Source {
            unit: dir.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::Source {
                unit: dir.display().to_string(),
                message: e.to_string(),
            })?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| Error::Source {
                unit: path.display().to_string(),
                message: e.to_string(),
            })?;
            if ft.is_dir() {
                Self::walk(&path, out)?;
            } else if is_log_file(&path) {
                // Whatever it is (a link, a FIFO): `read` looks at what it is when it reads it.
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                out.push(SourceUnit {
                    id: path.display().to_string(),
                    size_hint: size,
                });
            }
        }
        Ok(())
    }
}

/// The envelope's `timestamp` when the line starts with it, as CloudWatch exports and
/// `bitacora generate` write it (`{"timestamp":1793577600123,...`). Other shapes take the full parse.
/// A record selected this way is still fully validated by the transform (quarantined if broken).
fn fast_timestamp(line: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"{\"timestamp\":";
    let rest = line.strip_prefix(KEY)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 || !matches!(rest.get(digits), Some(b',') | Some(b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn is_log_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".jsonl.zst")
}

/// What a file that is not a regular file is, for the log.
fn kind(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() || ft.is_block_device() {
            return "a device";
        }
    }
    if ft.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// The reader of an open file, decompressed by its name.
fn reader(f: File, path: &Path) -> std::io::Result<Box<dyn Read>> {
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        )))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(f)?)
    } else {
        Box::new(f)
    })
}

/// The text of a line's head: its longest valid UTF-8 prefix when only its last character is cut,
/// else with invalid bytes replaced.
fn head_text(head: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(head) {
        Ok(text) => Cow::Borrowed(text),
        Err(e) if e.error_len().is_none() => {
            // Valid up to there by the error's definition.
            Cow::Borrowed(std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => String::from_utf8_lossy(head),
    }
}

/// Reading one unit for one day: what its lines add up to so far.
struct Reading<'r, 'e> {
    unit: &'r SourceUnit,
    day: Day,
    /// `transform.max_record_bytes`: longer lines are not held whole.
    max_line: usize,
    /// The timestamp of the last dated line read (it dates the lines without one after it).
    last_dated: Option<i64>,
    /// When the file was last modified (ms since the epoch): dates undated lines before any.
    modified_ms: i64,
    stats: UnitStats,
    emit: &'r mut Emit<'e>,
}

impl Reading<'_, '_> {
    /// A line with a timestamp: selected when it is of the day.
    fn dated(&mut self, ts: i64, line: &[u8]) -> Result<()> {
        self.last_dated = Some(ts);
        if self.day.contains_ms(ts) {
            self.stats.selected += 1;
            (self.emit)(line)
        } else {
            self.stats.outside_window += 1;
            Ok(())
        }
    }

    /// A line longer than `max_line` (`head`: its first `max_line` bytes): dated by its head when
    /// it can be, and handed on as an [`OversizeLine`] for the transform to quarantine.
    fn long_line(&mut self, (head, len): (&[u8], u64), (number, offset): (u64, u64)) -> Result<()> {
        self.stats.scanned += 1;
        self.stats.oversize += 1;
        let text = head_text(head);
        let envelope = EnvelopeHead::read(&text);
        let Some(ts) = fast_timestamp(head).or(envelope.timestamp) else {
            let reason = format!(
                "a line of {len} bytes, more than transform.max_record_bytes = {}, without a usable timestamp in its first {} bytes",
                self.max_line,
                head.len()
            );
            return self.reject((number, offset), reason, text);
        };
        if self.day.contains_ms(ts) && self.stats.oversize <= LOGGED_MALFORMED {
            tracing::warn!(
                "{}:{number}: a line of {len} bytes, more than transform.max_record_bytes = {}: its first bytes go on, to be quarantined as oversize",
                self.unit.id,
                self.max_line
            );
        }
        let marker = OversizeLine {
            timestamp: ts,
            log_stream_name: envelope.log_stream_name.map(Cow::Borrowed),
            event_id: envelope.event_id.map(Cow::Borrowed),
            bytes: len,
            limit: self.max_line as u64,
            source: Cow::Borrowed(&self.unit.id),
            line: number,
            offset,
            head: Cow::Borrowed(&text),
        };
        let line = marker.to_line().map_err(|e| self.fail(number, e))?;
        self.dated(ts, &line)
    }

    /// A line without a usable timestamp: kept, as a [`RejectedLine`], in the raw zone of the day
    /// it is given (the dated line's before it, else the file's modification day), so that the
    /// transform quarantines it; counted as `malformed` there, and as `outside_window` elsewhere.
    fn reject(
        &mut self,
        (number, offset): (u64, u64),
        reason: String,
        raw: Cow<'_, str>,
    ) -> Result<()> {
        let (owner_ms, dated_by) = match self.last_dated {
            Some(ts) => (ts, "dated line before it"),
            None => (self.modified_ms, "file's last modification"),
        };
        if !self.day.contains_ms(owner_ms) {
            self.stats.outside_window += 1;
            return Ok(());
        }
        self.stats.malformed += 1;
        if self.stats.malformed <= LOGGED_MALFORMED {
            tracing::warn!(
                "{}:{number}: no usable timestamp ({reason}): kept for the quarantine of {} as broken_envelope",
                self.unit.id,
                self.day
            );
        }
        let marker = RejectedLine {
            source: Cow::Borrowed(&self.unit.id),
            line: number,
            offset,
            reason: Cow::Owned(reason),
            dated_by: Cow::Borrowed(dated_by),
            raw,
        };
        let line = marker.to_line().map_err(|e| self.fail(number, e))?;
        (self.emit)(&line)
    }

    fn fail(&self, number: u64, e: impl std::fmt::Display) -> Error {
        Error::Source {
            unit: self.unit.id.clone(),
            message: format!("line {number}: {e}"),
        }
    }
}

impl FileSource {
    /// Skips a unit that is not a regular file: logged, counted.
    fn skip(unit: &SourceUnit, ft: std::fs::FileType) -> UnitStats {
        tracing::warn!("skipped {}: {}, not a regular file", unit.id, kind(ft));
        UnitStats {
            skipped: 1,
            ..UnitStats::default()
        }
    }
}

impl LogSource for FileSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn describe(&self) -> String {
        format!("files:{}", self.root.display())
    }

    fn plan(&self, _day: Day) -> Result<Vec<SourceUnit>> {
        let mut units = Vec::new();
        Self::walk(&self.root, &mut units)?;
        // Largest first, so that workers finish together; ties by path for a stable order.
        units.sort_by(|a, b| b.size_hint.cmp(&a.size_hint).then(a.id.cmp(&b.id)));
        Ok(units)
    }

    fn read(&self, unit: &SourceUnit, day: Day, emit: &mut Emit<'_>) -> Result<UnitStats> {
        let path = Path::new(&unit.id);
        let fail = |e: std::io::Error| Error::Source {
            unit: unit.id.clone(),
            message: e.to_string(),
        };
        // What the name is now, links followed (opening a FIFO would wait for a writer; reading
        // a device might never end). A dangling link fails naming the file.
        let ft = std::fs::metadata(path).map_err(fail)?.file_type();
        if !ft.is_file() {
            return Ok(Self::skip(unit, ft));
        }
        let file = File::open(path).map_err(fail)?;
        // Replaced between the look and the open.
        let ft = file.metadata().map_err(fail)?.file_type();
        if !ft.is_file() {
            return Ok(Self::skip(unit, ft));
        }
        // Lines without a usable timestamp take the day of the dated line before them; before any,
        // the day the file was last modified.
        let modified_ms = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(
                || chrono::Utc::now().timestamp_millis(),
                |d| d.as_millis() as i64,
            );
        let mut reader = reader(file, path).map_err(fail)?;
        let mut r = Reading {
            unit,
            day,
            max_line: self.max_line,
            last_dated: None,
            modified_ms,
            stats: UnitStats::default(),
            emit,
        };
        let number = std::cell::Cell::new(0u64);
        let mut offset = 0u64;
        let mut block = Vec::new();
        bitacora_core::lines::for_each_bounded_line(
            &mut reader,
            &mut block,
            READ_BLOCK,
            self.max_line,
            |line| {
                number.set(number.get() + 1);
                let number = number.get();
                let at = offset;
                let mut line = match line {
                    Line::Whole(line) => {
                        offset += line.len() as u64 + 1;
                        line
                    }
                    Line::Long { head, len } => {
                        offset += len + 1;
                        return r.long_line((head, len), (number, at));
                    }
                };
                while let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                r.stats.scanned += 1;
                let parsed = match fast_timestamp(line) {
                    Some(ts) => Ok(ts),
                    None => serde_json::from_slice::<Timestamp>(line).map(|t| t.timestamp),
                };
                // A broken line whose timestamp can still be read, however it is spaced, goes on
                // like one written compactly: the transform quarantines it.
                let parsed = parsed.or_else(|e| {
                    std::str::from_utf8(line)
                        .ok()
                        .and_then(|t| EnvelopeHead::read(t).timestamp)
                        .ok_or(e)
                });
                match parsed {
                    Ok(ts) => r.dated(ts, line),
                    Err(e) => r.reject((number, at), e.to_string(), String::from_utf8_lossy(line)),
                }
            },
            |e| Error::Source {
                unit: unit.id.clone(),
                message: format!("{e} (after line {})", number.get()),
            },
        )?;
        let stats = r.stats;
        if stats.malformed > LOGGED_MALFORMED {
            tracing::warn!(
                "{} more line(s) of {} without a usable timestamp kept for quarantine",
                stats.malformed - LOGGED_MALFORMED,
                unit.id
            );
        }
        if stats.oversize > LOGGED_MALFORMED {
            tracing::warn!(
                "{} line(s) of {} in all longer than transform.max_record_bytes = {}",
                stats.oversize,
                unit.id,
                self.max_line
            );
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const DAY: &str = "2026-11-02";

    fn day() -> Day {
        DAY.parse().unwrap()
    }

    fn envelope(ts: i64, message: &str, id: &str) -> String {
        serde_json::json!({"timestamp": ts, "message": message, "logStreamName": "s", "eventId": id})
            .to_string()
    }

    /// Plans and reads every unit of `dir` with lines up to `max` bytes, on another thread (a
    /// blocked read must not hang the test): the emitted lines, the summed stats and the warnings.
    fn extract_with(dir: &Path, max: usize) -> (Vec<Vec<u8>>, UnitStats, Vec<String>) {
        let cfg = SourceConfig {
            path: dir.to_path_buf(),
            ..SourceConfig::default()
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let logs = Logs::default();
            let out = tracing::subscriber::with_default(logs.clone(), || {
                let source = FileSource::new(&cfg).unwrap().with_max_record_bytes(max);
                let mut lines = Vec::new();
                let mut stats = UnitStats::default();
                for unit in source.plan(day()).unwrap() {
                    let mut emit = |l: &[u8]| {
                        lines.push(l.to_vec());
                        Ok(())
                    };
                    stats.add(&source.read(&unit, day(), &mut emit).unwrap());
                }
                (lines, stats)
            });
            let _ = tx.send((out.0, out.1, logs.0.lock().unwrap().clone()));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the extract of the folder did not finish")
    }

    fn extract(dir: &Path) -> (Vec<Vec<u8>>, UnitStats) {
        let (lines, stats, _) = extract_with(dir, TransformConfig::default().max_record_bytes);
        (lines, stats)
    }

    /// Collects the messages of events (a minimal subscriber).
    #[derive(Clone, Default)]
    struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl tracing::Subscriber for Logs {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[cfg(unix)]
    #[test]
    fn fifos_sockets_and_devices_are_skipped_and_links_to_files_read() {
        let dir = tempfile::tempdir().unwrap();
        let ts = day().start_ms() + 5;
        std::fs::write(
            dir.path().join("real.jsonl"),
            format!("{}\n", envelope(ts, "a", "1")),
        )
        .unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target.jsonl");
        std::fs::write(&target, format!("{}\n", envelope(ts, "b", "2"))).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link.jsonl")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe.jsonl"))
            .status()
            .unwrap();
        assert!(status.success());
        let _socket =
            std::os::unix::net::UnixListener::bind(dir.path().join("sock.jsonl")).unwrap();
        std::fs::create_dir(elsewhere.path().join("dir.jsonl")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("dir.jsonl"),
            dir.path().join("dirlink.jsonl"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.jsonl.gz")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("pipe.jsonl"),
            dir.path().join("pipelink.jsonl"),
        )
        .unwrap();
        let (lines, stats, logs) = extract_with(dir.path(), 1 << 10);
        let mut lines: Vec<String> = lines
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        lines.sort();
        assert_eq!(lines, [envelope(ts, "a", "1"), envelope(ts, "b", "2")]);
        assert_eq!((stats.scanned, stats.selected, stats.skipped), (2, 2, 5));
        for (name, what) in [
            ("pipe.jsonl", "a FIFO"),
            ("pipelink.jsonl", "a FIFO"),
            ("sock.jsonl", "a socket"),
            ("dirlink.jsonl", "a folder"),
            ("zero.jsonl.gz", "a device"),
        ] {
            let want = format!("{name}: {what}, not a regular file");
            assert!(
                logs.iter()
                    .any(|l| l.starts_with("skipped ") && l.ends_with(&want)),
                "{want}: {logs:?}"
            );
        }
    }

    /// A line of 64 MiB (no newline) between normal lines: the normal lines are extracted, and the
    /// long one goes on as its head, length and place.
    #[test]
    fn a_huge_line_is_not_buffered_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ts = day().start_ms() + 5;
        let path = dir.path().join("big.jsonl");
        let mut f = std::io::BufWriter::new(File::create(&path).unwrap());
        use std::io::Write;
        let first = envelope(ts, "before", "1");
        writeln!(f, "{first}").unwrap();
        let start = format!("{{\"timestamp\":{ts},\"message\":\"");
        write!(f, "{start}").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
        let end = "\",\"logStreamName\":\"s\",\"eventId\":\"2\"}";
        writeln!(f, "{end}").unwrap();
        writeln!(f, "{}", envelope(ts, "after", "3")).unwrap();
        f.flush().unwrap();
        drop(f);
        let (lines, stats) = extract(dir.path());
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], first.as_bytes());
        assert_eq!(lines[2], envelope(ts, "after", "3").as_bytes());
        assert!(lines[1].len() < 2 << 20, "{} bytes went on", lines[1].len());
        assert_eq!((stats.scanned, stats.selected, stats.oversize), (3, 3, 1));
        let marker = std::str::from_utf8(&lines[1]).unwrap();
        let o = OversizeLine::parse(marker).unwrap();
        let max = TransformConfig::default().max_record_bytes;
        assert_eq!(o.timestamp, ts);
        assert_eq!(o.bytes, (start.len() + (64 << 20) + end.len()) as u64);
        assert_eq!(o.limit, max as u64);
        assert_eq!((o.line, o.offset), (2, first.len() as u64 + 1));
        assert_eq!(o.source, path.display().to_string());
        assert_eq!(o.head.len(), max);
        assert!(o.head.starts_with(&start));
        assert_eq!((o.log_stream_name, o.event_id), (None, None));
    }

    /// Long lines get their day from their head, wherever the timestamp is in it; without one they
    /// are kept for quarantine in the day of the dated line before them, logged.
    #[test]
    fn long_lines_take_their_timestamp_from_their_head() {
        let dir = tempfile::tempdir().unwrap();
        let ts = day().start_ms() + 5;
        let long = "é".repeat(600);
        let lines = [
            // CloudWatch's key order: the envelope fields before the message are known.
            format!(
                r#"{{"logStreamName":"s1","eventId":"e1","timestamp":{ts},"message":"{long}"}}"#
            ),
            format!(r#"{{"message":"{long}","timestamp":{ts}}}"#),
            format!("{long}\r"),
            format!(r#"{{"timestamp":{},"message":"{long}"}}"#, ts - 86_400_000),
            envelope(ts, "short", "4"),
        ];
        std::fs::write(dir.path().join("a.jsonl"), lines.join("\n")).unwrap();
        let (out, stats, logs) = extract_with(dir.path(), 1000);
        assert_eq!(
            (
                stats.scanned,
                stats.selected,
                stats.outside_window,
                stats.malformed,
                stats.oversize
            ),
            (5, 2, 1, 2, 4)
        );
        assert_eq!(out.len(), 4);
        let o = OversizeLine::parse(std::str::from_utf8(&out[0]).unwrap()).unwrap();
        assert_eq!((o.timestamp, o.line, o.offset), (ts, 1, 0));
        assert_eq!(
            (o.log_stream_name.as_deref(), o.event_id.as_deref()),
            (Some("s1"), Some("e1"))
        );
        assert_eq!(o.bytes, lines[0].len() as u64);
        // Cut at a character boundary.
        assert!(
            o.head.len() <= 1000 && o.head.len() > 995,
            "{}",
            o.head.len()
        );
        assert!(lines[0].starts_with(o.head.as_ref()));
        // The two without a timestamp in their head: kept, bounded, in the day of line 1.
        for (k, n) in [(1, 2u64), (2, 3)] {
            let r = RejectedLine::parse(std::str::from_utf8(&out[k]).unwrap()).unwrap();
            assert_eq!(r.line, n);
            assert!(
                r.reason.contains("without a usable timestamp"),
                "{}",
                r.reason
            );
            assert_eq!(r.dated_by, "dated line before it");
            assert!(r.raw.len() <= 1000 && lines[k].starts_with(r.raw.as_ref()));
        }
        assert_eq!(out[3], envelope(ts, "short", "4").as_bytes());
        assert!(
            logs.iter()
                .any(|l| l.contains("a.jsonl:1: a line of 1")
                    && l.contains("quarantined as oversize")),
            "{logs:?}"
        );
        assert!(
            logs.iter()
                .any(|l| l.contains("a.jsonl:2: no usable timestamp (a line of")),
            "{logs:?}"
        );
    }

    #[test]
    fn fast_timestamp_only_takes_the_leading_key() {
        assert_eq!(
            fast_timestamp(br#"{"timestamp":1793577600123,"message":"x"}"#),
            Some(1793577600123)
        );
        assert_eq!(fast_timestamp(br#"{"timestamp":17}"#), Some(17));
        assert_eq!(fast_timestamp(br#"{"timestamp":"17","message":"x"}"#), None);
        assert_eq!(fast_timestamp(br#"{"timestamp":17.5,"message":"x"}"#), None);
        assert_eq!(
            fast_timestamp(br#"{"message":"{\"timestamp\":1}","timestamp":5}"#),
            None
        );
        assert_eq!(fast_timestamp(br#"{"timestamp":-5,"message":"x"}"#), None);
    }
}
