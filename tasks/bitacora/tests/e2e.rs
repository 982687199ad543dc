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
    assert_eq!(m.outputs["raw"].rows, 1);
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

/// Kills a step at several moments of a re-run: the previous partition stays readable with the same
/// answers, and the next run repairs everything.
#[test]
fn killed_runs_leave_the_previous_partition_and_the_next_run_repairs() {
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
    let mut killed = 0;
    for (step, delays) in [
        ("bitacora-extract", [40u64, 150, 400]),
        ("bitacora-transform", [40, 150, 400]),
    ] {
        for delay in delays {
            let mut child = Command::new(bin(step))
                .args(["--config", cfg, "--date", DAY])
                .env("BITACORA_LOG", "off")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            child.wait().unwrap();
            assert_eq!(
                count(&env),
                before,
                "readable after killing {step} at {delay} ms"
            );
        }
    }
    assert!(
        killed >= 3,
        "the steps finished before being killed: make the day larger"
    );
    for step in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"] {
        let out = run_bin(step, &["--config", cfg, "--date", DAY], &env);
        assert_eq!(out.status.code(), Some(0), "{step} after kills");
    }
    assert_eq!(count(&env), before);
    assert_eq!(env.curated_bytes(day()), bytes);
    // Orphans of the killed runs are gone: the live run and the one before it remain.
    let lake = env.lake();
    for table in ["raw", "events"] {
        assert!(lake.list_dirs(&format!("{table}/dt={DAY}")).unwrap().len() <= 2);
    }
}
