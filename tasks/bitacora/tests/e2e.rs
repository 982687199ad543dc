//! End-to-end tests of the batch pipeline on the embedded defaults: generated days through every
//! step, through the libraries and through the binaries (CLI contract, kill and re-run).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use bitacora_catalog::CatalogParams;
use bitacora_core::catalog::Change;
use bitacora_core::config::EncryptionMode;
use bitacora_core::lake::Lake;
use bitacora_core::manifest::Manifest;
use bitacora_core::{Config, Day};
use bitacora_extract::ExtractParams;
use bitacora_generate::{GenerateParams, GenerateReport, generate};
use bitacora_transform::TransformParams;
use serde_json::Value;

const DAY: &str = "2026-11-02";

fn day() -> Day {
    DAY.parse().unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    config: Config,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let mut config = Config::default();
        config.source.path = dir.path().join("logs");
        config.lake.root = dir.path().join("lake").display().to_string();
        config.encryption.mode = EncryptionMode::Envelope;
        config.encryption.key_file = Some(dir.path().join("lake.key"));
        config.transform.spill_dir = Some(dir.path().join("spill"));
        config.validate().unwrap();
        Env { dir, config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn generate(&self, date: Day, events: u64, seed: u64) -> GenerateReport {
        generate(&GenerateParams::new(
            date,
            events,
            self.path().join("logs"),
            seed,
        ))
        .unwrap()
    }

    fn write_config(&self) -> PathBuf {
        let p = self.path().join("bitacora.toml");
        std::fs::write(&p, self.config.to_toml()).unwrap();
        p
    }

    fn lake(&self) -> Lake {
        Lake::open(&self.config.lake).unwrap()
    }

    fn run_all(
        &self,
        date: Day,
    ) -> (
        bitacora_extract::ExtractReport,
        bitacora_transform::TransformReport,
    ) {
        let e = bitacora_extract::run(&self.config, &ExtractParams::new(date)).unwrap();
        let t = bitacora_transform::run(&self.config, &TransformParams { date }).unwrap();
        bitacora_catalog::run(&self.config, &CatalogParams { date }).unwrap();
        (e, t)
    }

    fn scalar(&self, sql: &str) -> i64 {
        let out = bitacora_query::query(&self.config, sql).unwrap();
        let b = out
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .expect("one row");
        let c = b.column(0);
        assert!(!c.is_null(0), "{sql} returned NULL");
        c.as_primitive::<Int64Type>().value(0)
    }

    fn json(&self, sql: &str) -> Vec<Value> {
        let out = bitacora_query::query(&self.config, sql).unwrap();
        let text = bitacora_query::render(&out, bitacora_query::Format::Json).unwrap();
        serde_json::from_str::<Vec<Value>>(&text).unwrap()
    }

    fn curated_bytes(&self, date: Day) -> Vec<(String, Vec<u8>)> {
        let lake = self.lake();
        let m = Manifest::load(&lake, "transform", date).unwrap().unwrap();
        let mut out = Vec::new();
        for (table, o) in &m.outputs {
            for (i, f) in o.files.iter().enumerate() {
                out.push((format!("{table}/{i}"), lake.get(&f.path).unwrap().to_vec()));
            }
        }
        out
    }
}

fn envelope(ts: i64, ingest: i64, message: &str, stream: &str, id: &str) -> String {
    serde_json::json!({"timestamp": ts, "ingestionTime": ingest, "message": message, "logStreamName": stream, "eventId": id})
        .to_string()
}

#[test]
fn generated_day_through_every_step() {
    let env = Env::new();
    let g = env.generate(day(), 20_000, 7);
    // A neighbouring day's file too: its edge hour overlaps ours and must be counted once.
    let (e, t) = env.run_all(day());

    assert_eq!(
        e.selected, g.in_day,
        "extract selects exactly the day's records"
    );
    assert_eq!(e.outside_window, g.outside_window);
    assert_eq!(e.malformed, 0);
    assert!(e.encrypted);

    assert_eq!(t.read, g.in_day);
    assert_eq!(t.events + t.quarantine + t.duplicates, t.read);
    assert_eq!(
        t.duplicates, g.duplicates,
        "every retried delivery is dropped"
    );
    assert_eq!(
        t.quarantine, g.malformed,
        "every malformed record is quarantined"
    );
    assert_eq!(t.events, g.in_day - g.duplicates - g.malformed);
    assert_eq!(t.buckets, 1);

    assert_eq!(
        env.scalar(&format!("SELECT count(*) FROM events WHERE dt = '{DAY}'")),
        t.events as i64
    );
    assert_eq!(
        env.scalar("SELECT count(DISTINCT event_id) FROM bitacora.events"),
        t.events as i64
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE event_type = 'text' AND message IS NOT NULL AND user_id IS NULL"),
        g.plain_text as i64
    );
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM events WHERE event_type <> 'text' AND message IS NOT NULL"
        ),
        0
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM quarantine"),
        g.malformed as i64
    );
    let reasons =
        env.json("SELECT reason, count(*) AS n FROM quarantine GROUP BY reason ORDER BY reason");
    let names: Vec<&str> = reasons
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["unparsable_ts", "wrong_type"]);
    assert_eq!(
        t.quarantine_reasons.values().sum::<u64>(),
        g.malformed,
        "report reasons add up"
    );
    let detail = env.json("SELECT detail, raw FROM quarantine WHERE reason = 'wrong_type' LIMIT 1");
    assert!(detail[0]["detail"].as_str().unwrap().starts_with("field "));
    assert!(detail[0]["raw"].as_str().unwrap().contains("\"eventId\""));
    // Events of the hours either side never reach the partition.
    let d = day();
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM events WHERE ingest_time < TIMESTAMP '{DAY}T00:00:00Z' - INTERVAL '10 seconds' OR ingest_time >= TIMESTAMP '{}T00:00:10Z'",
            d.succ()
        )),
        0
    );
    // Typed columns.
    assert!(
        env.scalar("SELECT count(*) FROM events WHERE latency_ms > 0 AND status_code = 200") > 0
    );
    assert!(env.scalar("SELECT count(*) FROM events WHERE properties LIKE '%\"screen\":%'") > 0);
}

#[test]
fn dedup_keeps_the_earliest_delivery() {
    let env = Env::new();
    let t0 = day().start_ms() + 3_600_000;
    let msg =
        r#"{"event_id":"dup-1","ts":"2026-11-02T01:00:00Z","event_type":"tap","user_id":"u1"}"#;
    let no_id = r#"{"event_type":"tap","user_id":"u2"}"#;
    let lines = [
        envelope(t0 + 5_000, 1, msg, "s/b", "300"),
        envelope(t0, 2, msg, "s/a", "200"),
        envelope(t0, 3, msg, "s/c", "100"), // same timestamp, smaller eventId: this one is kept
        envelope(t0 + 9_000, 4, msg, "s/a", "050"),
        // Without an app event_id, CloudWatch's eventId is the key: two different events.
        envelope(t0, 5, no_id, "s/a", "400"),
        envelope(t0 + 1, 6, no_id, "s/a", "401"),
        // The day's edges.
        envelope(day().start_ms() - 1, 7, "before", "s/a", "500"),
        envelope(day().start_ms(), 8, "first", "s/a", "501"),
        envelope(day().end_ms() - 1, 9, "last", "s/a", "502"),
        envelope(day().end_ms(), 10, "after", "s/a", "503"),
    ];
    std::fs::write(env.path().join("logs/a.jsonl"), lines.join("\n")).unwrap();
    let (e, t) = env.run_all(day());
    assert_eq!(e.selected, 8);
    assert_eq!(e.outside_window, 2);
    assert_eq!((t.read, t.events, t.duplicates, t.quarantine), (8, 5, 3, 0));
    let kept = env.json("SELECT log_stream, ingest_time FROM events WHERE event_id = 'dup-1'");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["log_stream"], "s/c");
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE user_id = 'u2'"),
        2
    );
    let texts =
        env.json("SELECT message FROM events WHERE event_type = 'text' ORDER BY event_time");
    let texts: Vec<&str> = texts
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["first", "last"]);
    // Nothing was quarantined: the table is empty, not broken.
    assert_eq!(env.scalar("SELECT count(*) FROM quarantine"), 0);
}

#[test]
fn reruns_are_idempotent_and_byte_identical() {
    let env = Env::new();
    env.generate(day(), 8_000, 3);
    let (_, t1) = env.run_all(day());
    let bytes1 = env.curated_bytes(day());
    let answers1 = env.json("SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1");

    let (_, t2) = env.run_all(day());
    assert_ne!(t1.run_id, t2.run_id);
    assert_eq!(
        (t1.events, t1.quarantine, t1.duplicates),
        (t2.events, t2.quarantine, t2.duplicates)
    );
    assert_eq!(
        env.curated_bytes(day()),
        bytes1,
        "curated Parquet is byte-identical"
    );
    assert_eq!(
        env.json("SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1"),
        answers1
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        t1.events as i64,
        "no duplicate rows"
    );

    // Catalog again with nothing new: nothing changes.
    let c = bitacora_catalog::run(&env.config, &CatalogParams { date: day() }).unwrap();
    assert!(c.partitions.iter().all(|p| p.change == Change::Unchanged));
    assert_eq!(c.database_change, Change::Unchanged);

    // Only the live run and the one it replaced stay in the lake.
    let lake = env.lake();
    for table in ["raw", "events", "quarantine"] {
        let runs = lake.list_dirs(&format!("{table}/dt={DAY}")).unwrap();
        assert!(runs.len() <= 2, "{table}: {runs:?}");
    }
    env.run_all(day());
    let runs = |lake: &Lake| lake.list_dirs(&format!("events/dt={DAY}")).unwrap().len();
    assert_eq!(runs(&lake), 2);

    // Transform re-run twice before the catalog step: the run the catalog serves stays readable.
    for _ in 0..2 {
        bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap();
        assert_eq!(env.scalar("SELECT count(*) FROM events"), t1.events as i64);
    }
    assert_eq!(runs(&lake), 3, "live, replaced and cataloged runs");
    bitacora_catalog::run(&env.config, &CatalogParams { date: day() }).unwrap();
    assert_eq!(env.scalar("SELECT count(*) FROM events"), t1.events as i64);
    bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap();
    assert_eq!(runs(&lake), 2);
}

#[test]
fn spilled_day_gives_the_same_answers() {
    let env = Env::new();
    let g = env.generate(day(), 12_000, 11);
    let (_, t) = env.run_all(day());
    let answers = env.json("SELECT event_type, count(*) AS n, count(DISTINCT user_id) AS u FROM events GROUP BY 1 ORDER BY 1");
    let ids = env.scalar("SELECT sum(length(event_id)) FROM events");

    let mut small = Env::new();
    std::fs::remove_dir_all(small.path().join("logs")).unwrap();
    small.generate(day(), 12_000, 11);
    small.config.transform.rows_per_file = 2_500;
    small.config.transform.row_group_rows = 1_000;
    small.config.transform.workers = 2;
    let (_, ts) = small.run_all(day());
    assert!(
        ts.buckets >= 4,
        "the day was split into buckets: {}",
        ts.buckets
    );
    assert!(ts.files > 4);
    assert!(ts.spilled, "more buckets than workers go to disk");
    assert_eq!(
        (ts.events, ts.duplicates, ts.quarantine),
        (t.events, t.duplicates, t.quarantine)
    );
    assert_eq!(ts.duplicates, g.duplicates);
    assert_eq!(small.json("SELECT event_type, count(*) AS n, count(DISTINCT user_id) AS u FROM events GROUP BY 1 ORDER BY 1"), answers);
    assert_eq!(
        small.scalar("SELECT sum(length(event_id)) FROM events"),
        ids
    );
    assert_eq!(
        std::fs::read_dir(small.path().join("spill"))
            .unwrap()
            .count(),
        0,
        "spill files are removed"
    );
}

#[test]
fn raw_zone_holds_no_plaintext() {
    let env = Env::new();
    env.generate(day(), 3_000, 5);
    let (e, _) = env.run_all(day());
    assert!(e.objects >= 1);
    let lake_dir = env.path().join("lake/raw");
    let mut checked = 0;
    for entry in walk(&lake_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            bytes.starts_with(b"BTCENV01"),
            "{} is not encrypted",
            entry.display()
        );
        for needle in [
            "u-00",
            "screen_view",
            "event_type",
            "logStreamName",
            "ios/prod",
            "Exception",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} contains {needle:?}",
                entry.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 1);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn wrong_or_missing_key_fails_clearly() {
    let env = Env::new();
    env.generate(day(), 2_000, 5);
    bitacora_extract::run(&env.config, &ExtractParams::new(day())).unwrap();
    let key = env.path().join("lake.key");
    let mode = std::fs::metadata(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
    let good = std::fs::read(&key).unwrap();

    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let e = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap_err();
    assert!(e.to_string().contains("wrong key"), "{e}");
    assert!(
        e.to_string().contains("raw/dt=2026-11-02"),
        "names the object: {e}"
    );

    std::fs::remove_file(&key).unwrap();
    let e = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap_err();
    assert!(e.to_string().contains("lake.key"), "{e}");
    assert!(e.to_string().contains("not found"), "{e}");

    std::fs::write(&key, good).unwrap();
    // A key others may read is refused, naming the fix.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let e = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap();

    // An object copied over another day's object (same key, valid ciphertext) is refused.
    let other = day().pred();
    env.generate(other, 500, 6);
    bitacora_extract::run(&env.config, &ExtractParams::new(other)).unwrap();
    let lake = env.lake();
    let ours = Manifest::load(&lake, "extract", day()).unwrap().unwrap();
    let theirs = Manifest::load(&lake, "extract", other).unwrap().unwrap();
    let target = &ours.outputs["raw"].files[0].path;
    lake.put(
        target,
        lake.get(&theirs.outputs["raw"].files[0].path).unwrap(),
    )
    .unwrap();
    let e = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap_err();
    assert!(e.to_string().contains("moved or swapped"), "{e}");
    assert!(e.to_string().contains(target.as_str()), "{e}");
}

#[test]
fn bad_source_files_fail_naming_the_file_and_bad_lines_are_counted() {
    let env = Env::new();
    let logs = env.path().join("logs");
    let ok = envelope(day().start_ms() + 10, 1, "hello", "s", "1");
    std::fs::write(
        logs.join("good.jsonl"),
        format!("{ok}\nnot json\n{{\"timestamp\":\"x\"}}\n\n"),
    )
    .unwrap();
    let e = bitacora_extract::run(&env.config, &ExtractParams::new(day())).unwrap();
    assert_eq!((e.selected, e.malformed), (1, 2));

    // A file that cannot be opened (tests run as root, so a dangling link stands in for a
    // permission problem): the step fails naming it.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/nonexistent/bitacora", logs.join("gone.jsonl")).unwrap();
        let err = bitacora_extract::run(&env.config, &ExtractParams::new(day())).unwrap_err();
        assert!(err.to_string().contains("gone.jsonl"), "{err}");
        std::fs::remove_file(logs.join("gone.jsonl")).unwrap();
    }

    std::fs::write(
        logs.join("broken.jsonl.gz"),
        b"\x1f\x8b\x08\x00garbage-not-gzip",
    )
    .unwrap();
    let err = bitacora_extract::run(&env.config, &ExtractParams::new(day())).unwrap_err();
    assert!(err.to_string().contains("broken.jsonl.gz"), "{err}");
    assert_eq!(err.exit_code(), 1);
    // The previous raw run is still the published one.
    let m = Manifest::load(&env.lake(), "extract", day())
        .unwrap()
        .unwrap();
    // The good line and the two kept for quarantine.
    assert_eq!(m.outputs["raw"].rows, 3);
}

/// Lines without a usable timestamp are kept (encrypted in the raw zone) and become quarantine
/// rows naming file, line and why, once, in the day of the dated line before them (else of the
/// file's modification); a broken line whose timestamp can be read takes the same way (quarantine,
/// `broken_envelope`) whether it is written compactly or with spaces.
#[test]
fn rejected_lines_are_kept_for_quarantine_whatever_their_spacing() {
    let env = Env::new();
    let logs = env.path().join("logs");
    let d = day().start_ms();
    let set_mtime = |path: &Path, ms: i64| {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
            .unwrap();
    };
    let a = [
        "not json, before any dated line".to_string(),
        envelope(d + 10, 1, "hello", "s", "1"),
        format!(r#"{{"timestamp": {}, "message": broken}}"#, d + 20),
        format!(r#"{{"timestamp":{},"message":broken}}"#, d + 30),
        "panic: index out of range".to_string(),
        envelope(d + 86_400_000 + 5, 1, "tomorrow", "s", "2"),
        "garbage after tomorrow's line".to_string(),
    ];
    std::fs::write(logs.join("a.jsonl"), a.join("\n")).unwrap();
    set_mtime(&logs.join("a.jsonl"), d + 43_200_000);
    std::fs::write(logs.join("b.jsonl"), "lonely garbage\n").unwrap();
    set_mtime(&logs.join("b.jsonl"), d - 43_200_000);

    let (e, t) = env.run_all(day());
    assert_eq!((e.selected, e.malformed, e.outside_window), (3, 2, 3));
    assert_eq!((t.read, t.events, t.quarantine), (5, 1, 4));
    let rows = env.json("SELECT reason, detail, raw FROM quarantine ORDER BY raw");
    let reasons: Vec<&str> = rows.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, vec!["broken_envelope"; 4]);
    let raws: Vec<&str> = rows.iter().map(|r| r["raw"].as_str().unwrap()).collect();
    assert_eq!(
        raws,
        vec![a[0].as_str(), a[4].as_str(), a[2].as_str(), a[3].as_str()]
    );
    let detail = |raw: &str| {
        rows.iter()
            .find(|r| r["raw"] == raw)
            .and_then(|r| r["detail"].as_str())
            .unwrap()
            .to_string()
    };
    let first = detail(&a[0]);
    assert!(first.contains("a.jsonl line 1, byte 0"), "{first}");
    assert!(first.contains("file's last modification"), "{first}");
    let fifth = detail(&a[4]);
    assert!(fifth.contains("a.jsonl line 5"), "{fifth}");
    assert!(fifth.contains("dated line before it"), "{fifth}");
    // The next day keeps the line after its own dated line; the day before keeps b's.
    let next = bitacora_extract::run(&env.config, &ExtractParams::new(day().succ())).unwrap();
    assert_eq!((next.selected, next.malformed), (1, 1));
    let prev = bitacora_extract::run(&env.config, &ExtractParams::new(day().pred())).unwrap();
    assert_eq!((prev.selected, prev.malformed), (0, 1));
}

#[test]
fn named_queries_answer_the_stakeholders() {
    let env = Env::new();
    let days = [day().add_days(-8), day().add_days(-1), day()];
    for d in days {
        env.generate(d, 6_000, 1);
        env.run_all(d);
    }
    for q in bitacora_query::NAMED {
        let out = bitacora_query::named(&env.config, q.name, None).unwrap();
        assert!(out.num_rows() > 0, "{} returned no rows", q.name);
    }
    let dau = env.json(
        &bitacora_query::named::find("daily_active_users")
            .unwrap()
            .sql(Some(day()), None),
    );
    assert_eq!(dau.len(), 1);
    assert_eq!(
        dau[0]["active_users"].as_i64().unwrap(),
        env.scalar(&format!(
            "SELECT count(DISTINCT user_id) FROM events WHERE dt = '{DAY}'"
        ))
    );
    let rates = env.json(
        &bitacora_query::named::find("error_rate_by_version")
            .unwrap()
            .sql(None, None),
    );
    assert_eq!(
        rates[0]["app_version"], "3.2.0",
        "the buggy release leads: {rates:?}"
    );
    let p95 = env.json(
        &bitacora_query::named::find("p95_latency_by_platform")
            .unwrap()
            .sql(None, None),
    );
    let by: std::collections::HashMap<&str, f64> = p95
        .iter()
        .map(|r| {
            (
                r["platform"].as_str().unwrap(),
                r["p95_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(by["android"] > by["ios"]);
    let wow = env.json(
        &bitacora_query::named::find("week_over_week")
            .unwrap()
            .sql(Some(day()), None),
    );
    assert_eq!(wow.len(), 4);
    assert_eq!(wow[0]["metric"], "events");
    let this_week = env.scalar(&format!(
        "SELECT count(*) FROM events WHERE dt > '{}'",
        day().add_days(-7)
    ));
    assert_eq!(wow[0]["this_week"].as_i64().unwrap(), this_week);
    let top = env.json(
        &bitacora_query::named::find("top_error_codes")
            .unwrap()
            .sql(Some(day()), None),
    );
    assert!(top.len() <= 10 && !top.is_empty());
}

#[test]
fn partitions_are_pruned_and_queries_are_read_only() {
    let env = Env::new();
    let other = day().pred();
    for d in [other, day()] {
        env.generate(d, 2_000, 9);
        env.run_all(d);
    }
    // Break the other day's files: a query filtered on our day must not touch them.
    let lake = env.lake();
    let m = Manifest::load(&lake, "transform", other).unwrap().unwrap();
    for f in &m.outputs["events"].files {
        lake.put(&f.path, b"not parquet".to_vec()).unwrap();
    }
    assert!(env.scalar(&format!("SELECT count(*) FROM events WHERE dt = '{DAY}'")) > 0);
    assert!(
        bitacora_query::query(
            &env.config,
            "SELECT count(*) FROM events WHERE user_id IS NOT NULL"
        )
        .is_err()
    );
    // Nor look its files up, nor read its catalog document: a query of one day pays for one day
    // however long the lake is.
    lake.delete(&m.outputs["events"].files[0].path).unwrap();
    let n = env.scalar(&format!("SELECT count(*) FROM events WHERE dt = '{DAY}'"));
    assert!(n > 0);
    let doc = format!("_catalog/bitacora/events/partitions/dt={other}.json");
    assert!(lake.get_opt(&doc).unwrap().is_some(), "{doc}");
    lake.put(&doc, b"{ not json".to_vec()).unwrap();
    assert_eq!(
        env.scalar(&format!("SELECT count(*) FROM events WHERE dt = '{DAY}'")),
        n
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT count(*) FROM events WHERE dt >= '{DAY}' AND dt < '9999-01-01'"
        )),
        n
    );
    let e = bitacora_query::query(&env.config, "SELECT count(*) FROM events").unwrap_err();
    assert!(
        e.to_string().contains(&doc) && e.to_string().contains("unreadable"),
        "{e}"
    );

    for sql in [
        "DROP TABLE events",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO events SELECT * FROM events",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "CREATE VIEW v AS SELECT 1",
    ] {
        let e = bitacora_query::query(&env.config, sql).unwrap_err();
        assert!(e.to_string().contains("read-only"), "{sql}: {e}");
    }
}

// ---------------------------------------------------------------- binaries

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first",
        p.display()
    );
    p
}

fn run_bin(name: &str, args: &[&str], env: &Env) -> Output {
    Command::new(bin(name))
        .args(args)
        .env("BITACORA_LOG", "warn")
        .env_remove("BITACORA_CONFIG")
        .current_dir(env.path())
        .output()
        .unwrap()
}

fn one_json(out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one JSON line on stdout, got {stdout:?}"
    );
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn cli_contract() {
    let env = Env::new();
    env.generate(day(), 1_000, 2);
    let cfg = env.write_config();
    let cfg = cfg.to_str().unwrap();

    for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
        let out = run_bin(step, &["--config", cfg, "--date", DAY], &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = one_json(&out);
        assert_eq!(report["status"], "ok");
        assert_eq!(report["date"], DAY);
    }
    let out = run_bin(
        "bitacora-query",
        &[
            "--config",
            cfg,
            "--format",
            "json",
            "SELECT count(*) AS n FROM events",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["n"].as_i64().unwrap() > 900);

    let out = run_bin(
        "bitacora-query",
        &[
            "--config",
            cfg,
            "--format",
            "csv",
            "--named",
            "daily_active_users",
        ],
        &env,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("dt,active_users,events,sessions\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2);
    let out = run_bin(
        "bitacora-query",
        &["--config", cfg, "--named", "top_error_codes", "--date", DAY],
        &env,
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("| error_code")
    );
    let out = run_bin("bitacora-query", &["--list", "--format", "json"], &env);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), bitacora_query::NAMED.len());

    // Failure: exit 1, one JSON error object, a one-line reason on stderr.
    let out = run_bin(
        "bitacora-transform",
        &["--config", cfg, "--date", "2020-01-01"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = one_json(&out);
    assert_eq!(err["status"], "error");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("bitacora-extract --date 2020-01-01")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error:")).count(),
        1,
        "{stderr}"
    );
    let out = run_bin(
        "bitacora-query",
        &["--config", cfg, "DROP TABLE events"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        one_json(&out)["error"]
            .as_str()
            .unwrap()
            .contains("read-only")
    );

    // Bad usage and bad configuration: exit 2, naming what is wrong.
    let out = run_bin("bitacora-extract", &["--config", cfg], &env);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(one_json(&out)["error_kind"], "usage");
    let out = run_bin(
        "bitacora-extract",
        &["--config", cfg, "--date", "2026-02-30"],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    let bad = env.path().join("bad.toml");
    std::fs::write(&bad, "[transform]\nrows_per_file = \"lots\"\n").unwrap();
    let out = run_bin(
        "bitacora-transform",
        &["--config", bad.to_str().unwrap(), "--date", DAY],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("transform.rows_per_file"));
    let out = Command::new(bin("bitacora-catalog"))
        .args(["--config", cfg, "--date", DAY])
        .env("BITACORA_CATALOG_KIND", "hive")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("catalog.kind"));
    let out = run_bin(
        "bitacora-query",
        &["--config", "/nonexistent.toml", "SELECT 1"],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Kills each step at many moments of a re-run, spread over the step's own measured duration
/// (with jitter, so that no single lucky timing decides): after every kill the previous partition
/// stays readable with the same answers, and the next runs repair everything, byte for byte.
#[test]
fn killed_runs_leave_the_previous_partition_and_the_next_run_repairs() {
    const KILLS_PER_STEP: u64 = 8;
    let env = Env::new();
    env.generate(day(), 150_000, 4);
    let cfg = env.write_config();
    let cfg = cfg.to_str().unwrap();
    for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
        let out = run_bin(step, &["--config", cfg, "--date", DAY], &env);
        assert_eq!(out.status.code(), Some(0), "{step}");
    }
    let count = |env: &Env| env.scalar(&format!("SELECT count(*) FROM events WHERE dt = '{DAY}'"));
    let before = count(&env);
    let bytes = env.curated_bytes(day());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill points seeded with {seed}");
    let mut rng = Rng(seed | 1);
    for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
        // The step's own duration: the fastest of three clean re-runs (which change no answer),
        // so that one slow first run (cold page cache, a busy CPU) does not put the kill points
        // after the step's end. The kills are spread over its first 80 %.
        let took = (0..3)
            .map(|_| {
                let t0 = std::time::Instant::now();
                let out = run_bin(step, &["--config", cfg, "--date", DAY], &env);
                assert_eq!(out.status.code(), Some(0), "{step}");
                t0.elapsed().as_micros() as u64
            })
            .min()
            .unwrap_or(0);
        let span = took * 4 / 5;
        let mut killed = 0;
        for k in 0..KILLS_PER_STEP {
            // Slot k of the span, at a random point inside it.
            let at = span * k / KILLS_PER_STEP + rng.below(span / KILLS_PER_STEP + 1);
            let mut child = Command::new(bin(step))
                .args(["--config", cfg, "--date", DAY])
                .env("BITACORA_LOG", "off")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_micros(at));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            child.wait().unwrap();
            assert_eq!(
                count(&env),
                before,
                "readable after killing {step} at {at} us of {took} (seed {seed})"
            );
            assert_published_files_exist(&env);
        }
        assert!(
            killed >= KILLS_PER_STEP / 2,
            "{step} finished before most kills ({killed} of {KILLS_PER_STEP}; took {took} us)"
        );
    }
    for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
        let out = run_bin(step, &["--config", cfg, "--date", DAY], &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{step} after kills (seed {seed}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(&env), before);
    assert_eq!(env.curated_bytes(day()), bytes);
    // Orphans of the killed runs are gone: the live run and the one before it remain.
    let lake = env.lake();
    for table in ["raw", "events"] {
        assert!(lake.list_dirs(&format!("{table}/dt={DAY}")).unwrap().len() <= 2);
    }
}

/// A small deterministic generator for the randomised tests (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Property: on random days with random duplicate patterns, the copy kept of every event is its
/// earliest delivery by `(timestamp, eventId)`, `events + quarantine + duplicates = read`, and the
/// curated files do not depend on the order of the input files, the number of workers or whether
/// the day was spilled.
#[test]
fn dedup_property_on_random_days() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut rng = Rng(0x5eed_0b17_ac0a_0001);
    let t0 = day().start_ms();
    for case in 0..10 {
        let mut lines: Vec<String> = Vec::new();
        // Dedup key -> (timestamp, eventId, log_stream) of the earliest copy.
        let mut earliest: BTreeMap<String, (i64, String, String)> = BTreeMap::new();
        let mut bad = 0u64;
        let mut next_cw = 0u64;
        let n_events = 20 + rng.below(250);
        for e in 0..n_events {
            let copies = if rng.below(3) == 0 {
                2 + rng.below(4)
            } else {
                1
            };
            let with_id = rng.below(5) != 0;
            let broken = rng.below(25) == 0;
            let base = t0 + rng.below(86_400_000 - 10_000) as i64;
            let cw_shared = format!("{:012}", 900_000_000_000 + e);
            for c in 0..copies {
                let stream = format!("s/{e}/{c}");
                let (ts, cw, msg) = if broken {
                    (
                        base,
                        format!("{next_cw:012}"),
                        format!(r#"{{"event_id":"bad-{e}","ts":"not a time","event_type":"tap"}}"#),
                    )
                } else if with_id {
                    // Redeliveries of one app event: own CloudWatch ids, times that may tie.
                    next_cw += 1 + rng.below(3);
                    (
                        base + 1_000 * rng.below(3) as i64,
                        format!("{next_cw:012}"),
                        format!(
                            r#"{{"event_id":"ev-{e}","ts":"2026-11-02T00:00:00Z","event_type":"tap","user_id":"u{e}"}}"#
                        ),
                    )
                } else {
                    // Without an app id, CloudWatch's eventId is the key: copies share it and
                    // differ in time.
                    (
                        base + c as i64 * 7,
                        cw_shared.clone(),
                        format!(r#"{{"event_type":"tap","user_id":"n{e}"}}"#),
                    )
                };
                next_cw += 1;
                lines.push(envelope(ts, ts + 5, &msg, &stream, &cw));
                if broken {
                    bad += 1;
                    continue;
                }
                let key = if with_id {
                    format!("ev-{e}")
                } else {
                    cw.clone()
                };
                let cand = (ts, cw.clone(), stream.clone());
                let slot = earliest.entry(key).or_insert_with(|| cand.clone());
                if (cand.0, &cand.1) < (slot.0, &slot.1) {
                    *slot = cand;
                }
            }
        }
        // Shuffle the deliveries and cut them into 1..=4 files.
        for i in (1..lines.len()).rev() {
            lines.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let n_files = 1 + rng.below(4) as usize;
        let files: Vec<Vec<String>> = (0..n_files)
            .map(|f| lines.iter().skip(f).step_by(n_files).cloned().collect())
            .collect();
        let read = lines.len() as u64;
        let kept: BTreeSet<String> = earliest.values().map(|(_, _, s)| s.clone()).collect();

        let mut outputs = Vec::new();
        for (workers, rows_per_file, reversed) in
            [(1, 500_000, false), (2, 37, false), (2, 500_000, true)]
        {
            let mut env = Env::new();
            env.config.extract.workers = workers;
            env.config.transform.workers = workers;
            env.config.transform.rows_per_file = rows_per_file;
            for (i, f) in files.iter().enumerate() {
                // The same contents under other names: the order files are found in changes.
                let name = if reversed { n_files - i } else { i };
                std::fs::write(env.path().join(format!("logs/f{name}.jsonl")), f.join("\n"))
                    .unwrap();
            }
            let (_, t) = env.run_all(day());
            let what = format!("case {case}, workers {workers}, rows_per_file {rows_per_file}");
            assert_eq!(t.read, read, "{what}");
            assert_eq!(t.quarantine, bad, "{what}");
            assert_eq!(t.events, earliest.len() as u64, "{what}");
            assert_eq!(t.events + t.quarantine + t.duplicates, t.read, "{what}");
            let streams: BTreeSet<String> = env
                .json("SELECT log_stream FROM events")
                .iter()
                .map(|r| r["log_stream"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                streams, kept,
                "{what}: the earliest copy of each event is kept"
            );
            // Files depend on rows_per_file (one per bucket); their rows must not.
            let rows = env.json("SELECT * FROM events ORDER BY event_id");
            let quarantine = env.json("SELECT * FROM quarantine ORDER BY raw");
            outputs.push((rows_per_file, env.curated_bytes(day()), rows, quarantine));
        }
        let (first, rest) = outputs.split_first().unwrap();
        for other in rest {
            assert_eq!(
                first.2, other.2,
                "case {case}: events rows differ between runs"
            );
            assert_eq!(first.3, other.3, "case {case}: quarantine rows differ");
            if other.0 == first.0 {
                assert!(first.1 == other.1, "case {case}: the curated files differ");
            }
        }
    }
}

// ---------------------------------------------------------------- concurrent and killed runs

/// Starts `n` copies of a step binary for the day at once and waits for them all.
fn run_together(step: &str, n: usize, cfg: &str, env: &Env) -> Vec<Output> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(bin(step))
                .args(["--config", cfg, "--date", DAY])
                .env("BITACORA_LOG", "warn")
                .env_remove("BITACORA_CONFIG")
                .current_dir(env.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Every file the published transform manifest names exists with its size.
fn assert_published_files_exist(env: &Env) {
    let lake = env.lake();
    for step in ["extract", "transform"] {
        let m = Manifest::load(&lake, step, day()).unwrap().unwrap();
        for out in m.outputs.values() {
            let present = lake.list(&out.location).unwrap();
            for f in &out.files {
                let o = present.iter().find(|o| o.path == f.path);
                let o = o.unwrap_or_else(|| panic!("{step} run {}: {} is gone", m.run_id, f.path));
                assert_eq!(o.size, f.bytes, "{}", f.path);
            }
        }
    }
}

/// Concurrent runs of the same step and day (a manual re-run next to a backfill): one runs, the
/// others are refused with exit 1 naming the run that holds the day, and the published partition
/// stays one complete run with the same answers.
#[test]
fn concurrent_runs_of_a_step_and_day_keep_one_complete_run() {
    let env = Env::new();
    env.generate(day(), 80_000, 9);
    let cfg = env.write_config();
    let cfg = cfg.to_str().unwrap();
    for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
        let out = run_bin(step, &["--config", cfg, "--date", DAY], &env);
        assert_eq!(out.status.code(), Some(0), "{step}");
    }
    let count = |env: &Env| env.scalar(&format!("SELECT count(*) FROM events WHERE dt = '{DAY}'"));
    let before = count(&env);
    let bytes = env.curated_bytes(day());
    let mut refused = 0;
    for round in 0..2 {
        for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
            for out in run_together(step, 3, cfg, &env) {
                let stderr = String::from_utf8_lossy(&out.stderr);
                match out.status.code() {
                    Some(0) => assert_eq!(one_json(&out)["status"], "ok"),
                    Some(1) => {
                        assert!(
                            stderr.contains("is already running: run "),
                            "{step} round {round}: refused without naming the holder: {stderr}"
                        );
                        assert_eq!(one_json(&out)["error_kind"], "busy", "{stderr}");
                        refused += 1;
                    }
                    other => panic!("{step}: exit {other:?}: {stderr}"),
                }
            }
            assert_published_files_exist(&env);
            assert_eq!(count(&env), before, "{step} round {round}");
        }
    }
    assert!(
        refused >= 3,
        "the runs never overlapped ({refused} refused)"
    );
    assert_eq!(env.curated_bytes(day()), bytes);
}

/// A publication never removes a run folder that a live lease reads: an extract published twice
/// while a transform reads the first run, a transform published twice while a catalog registers.
#[test]
fn publications_keep_the_runs_that_live_leases_read() {
    use bitacora_core::lease::{DEFAULT_TTL, Lease};
    let env = Env::new();
    env.generate(day(), 2_000, 3);
    let (e1, t1) = env.run_all(day());
    let lake = env.lake();
    let mut reader = Lease::acquire(&lake, "transform", day(), "reader", DEFAULT_TTL).unwrap();
    reader.record_read("extract", &e1.run_id).unwrap();
    let mut registrar = Lease::acquire(&lake, "catalog", day(), "registrar", DEFAULT_TTL).unwrap();
    registrar.record_read("transform", &t1.run_id).unwrap();
    // The transform lease is held: a transform of the day is refused...
    let e = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap_err();
    assert_eq!(e.kind(), "busy", "{e}");
    // ... extracts are not, and two publications later the run being read is still there.
    for _ in 0..2 {
        bitacora_extract::run(&env.config, &ExtractParams::new(day())).unwrap();
    }
    let raw_runs = lake.list_dirs(&format!("raw/dt={DAY}")).unwrap();
    assert!(
        raw_runs.contains(&format!("run={}", e1.run_id)),
        "{raw_runs:?}"
    );
    drop(reader);
    drop(registrar);
    // Transforms published twice while a catalog lease reads t1: t1 stays.
    let mut registrar = Lease::acquire(&lake, "catalog", day(), "registrar", DEFAULT_TTL).unwrap();
    registrar.record_read("transform", &t1.run_id).unwrap();
    for _ in 0..2 {
        bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap();
    }
    let runs = lake.list_dirs(&format!("events/dt={DAY}")).unwrap();
    assert!(runs.contains(&format!("run={}", t1.run_id)), "{runs:?}");
    drop(registrar);
    // Released: the next publication cleans up (its own run, the one it replaces, and the
    // one the catalog serves, which is t1 here).
    let t = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap();
    let runs = lake.list_dirs(&format!("events/dt={DAY}")).unwrap();
    assert!(
        runs.len() <= 3 && runs.contains(&format!("run={}", t.run_id)),
        "{runs:?}"
    );
}

/// The catalog registers only files that exist with their manifest's size, and a query over a
/// registered partition whose file disappeared fails naming it instead of answering from the rest.
#[test]
fn missing_curated_files_fail_the_catalog_and_queries_naming_the_file() {
    let env = Env::new();
    env.generate(day(), 2_000, 5);
    env.run_all(day());
    let lake = env.lake();
    let m = Manifest::load(&lake, "transform", day()).unwrap().unwrap();
    let file = m.outputs["events"].files[0].path.clone();
    let saved = lake.get(&file).unwrap();
    lake.delete(&file).unwrap();

    let e = bitacora_query::query(&env.config, "SELECT count(*) FROM events").unwrap_err();
    assert!(e.to_string().contains(&file), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    let e = bitacora_catalog::run(&env.config, &CatalogParams { date: day() }).unwrap_err();
    assert!(
        e.to_string().contains(&file) && e.to_string().contains("is missing"),
        "{e}"
    );
    // Replaced by something else: the size tells.
    lake.put(&file, saved.slice(..saved.len() - 1)).unwrap();
    let e = bitacora_catalog::run(&env.config, &CatalogParams { date: day() }).unwrap_err();
    assert!(e.to_string().contains("the manifest says"), "{e}");
    lake.put(&file, saved).unwrap();
    bitacora_catalog::run(&env.config, &CatalogParams { date: day() }).unwrap();
    assert!(env.scalar("SELECT count(*) FROM events") > 1_000);
}

/// Spill folders are private (0700, files 0600: they hold decrypted rows), and the folders that
/// killed runs left behind are removed by the next transform; a live run's folder is not.
#[test]
fn spill_folders_are_private_and_killed_runs_folders_are_removed() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new();
    env.config.transform.rows_per_file = 200;
    env.generate(day(), 3_000, 6);
    let spill = env.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    // A killed run's folder: its owner lock is free.
    let stale = spill.join("bitacora-spill-killed");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(".owner.lock"), b"").unwrap();
    std::fs::write(stale.join("bucket-00000.arrow"), b"decrypted rows").unwrap();
    // A live run's folder: its lock is held (by this process, as a running transform would).
    let live = spill.join("bitacora-spill-live");
    std::fs::create_dir(&live).unwrap();
    let lock = std::fs::File::create(live.join(".owner.lock")).unwrap();
    lock.lock().unwrap();

    // Watch the run's own folder while it spills.
    let watched = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (spill, watched, stop) = (spill.clone(), watched.clone(), stop.clone());
        let (live, stale) = (live.clone(), stale.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for d in std::fs::read_dir(&spill).unwrap().flatten() {
                    let p = d.path();
                    if p == live || p == stale {
                        continue;
                    }
                    for f in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                        if let Ok(m) = f.metadata() {
                            let dir_mode = std::fs::metadata(&p).map(|m| m.permissions().mode());
                            watched.lock().unwrap().push((
                                dir_mode.unwrap_or(0) & 0o777,
                                m.permissions().mode() & 0o777,
                            ));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    bitacora_extract::run(&env.config, &ExtractParams::new(day())).unwrap();
    let t = bitacora_transform::run(&env.config, &TransformParams { date: day() }).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(t.spilled);
    assert!(!stale.exists(), "a killed run's spill folder is removed");
    assert!(live.exists(), "a live run's spill folder is left alone");
    let seen = watched.lock().unwrap();
    assert!(!seen.is_empty(), "the spill folder was never seen");
    for (dir, file) in seen.iter() {
        assert_eq!((*dir, *file), (0o700, 0o600), "spill folder / file modes");
    }
    drop(lock);
}

#[test]
fn the_demo_runs_the_batch_half_then_the_stream_service_with_its_dashboard() {
    let env = Env::new();
    let demo = env.path().join("demo");
    let mut child = Command::new(bin("bitacora"))
        .args(["demo", "--dir"])
        .arg(&demo)
        .args([
            "--days",
            "2",
            "--events-per-day",
            "3000",
            "--stream-secs",
            "3",
        ])
        .args(["--stream-rate", "1000", "--listen", "127.0.0.1:0"])
        .env_remove("BITACORA_CONFIG")
        .current_dir(env.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("the demo did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("== Error rate by app version"), "{stdout}");
    assert!(
        stdout.contains("Live dashboard: http://127.0.0.1:"),
        "{stdout}"
    );
    // Every route received its share, and the files are where the demo says.
    let delivered = |route: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("route {route} ")))
            .unwrap_or_else(|| panic!("no line for route {route}: {stdout}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let everything = delivered("everything");
    assert!(everything > 1000, "{stdout}");
    assert!(delivered("oncall") > 0 && delivered("oncall") < everything);
    assert!(delivered("marketing") > 0 && delivered("marketing") < everything);
    let lines: usize = std::fs::read_dir(demo.join("stream").join("everything"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert_eq!(lines as u64, everything);
    assert!(demo.join("stream.toml").exists());
}
