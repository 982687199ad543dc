//! Hostile input through the library steps (issue #10, bounded resources): special files in the
//! source folder, a line without end, JSON deeper than serde_json's recursion limit and numbers
//! wider than a float. Nothing hangs, memory stays bounded, and every record is accounted for.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use bitacora_catalog::CatalogParams;
use bitacora_core::config::EncryptionMode;
use bitacora_core::{Config, Day};
use bitacora_extract::{ExtractParams, ExtractReport};
use bitacora_transform::TransformParams;
use serde_json::Value;

const DAY: &str = "2026-11-02";

fn day() -> Day {
    DAY.parse().unwrap()
}

fn config(dir: &Path) -> Config {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let mut config = Config::default();
    config.source.path = dir.join("logs");
    config.lake.root = dir.join("lake").display().to_string();
    config.encryption.mode = EncryptionMode::None;
    config.transform.spill_dir = Some(dir.join("spill"));
    config.validate().unwrap();
    config
}

fn json(config: &Config, sql: &str) -> Vec<Value> {
    let out = bitacora_query::query(config, sql).unwrap();
    let text = bitacora_query::render(&out, bitacora_query::Format::Json).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn envelope(ts: i64, message: &str, id: &str) -> String {
    serde_json::json!({"timestamp": ts, "ingestionTime": ts + 1, "message": message, "logStreamName": "s", "eventId": id})
        .to_string()
}

/// The extract of the day, on another thread: a blocked extract fails the test instead of
/// hanging it.
fn extract(config: &Config) -> ExtractReport {
    let (tx, rx) = mpsc::channel();
    let config = config.clone();
    std::thread::spawn(move || {
        let _ = tx.send(bitacora_extract::run(&config, &ExtractParams::new(day())));
    });
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the extract did not finish")
        .unwrap()
}

#[cfg(unix)]
#[test]
fn hostile_sources_are_bounded_and_every_record_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let logs = dir.path().join("logs");
    let ts = day().start_ms() + 1_000;

    // Special files named like logs: skipped, not waited for nor read forever.
    let status = std::process::Command::new("mkfifo")
        .arg(logs.join("pipe.jsonl"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", logs.join("zero.jsonl")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(logs.join("sock.jsonl")).unwrap();
    // A link to a regular file is read.
    let elsewhere = dir.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, envelope(ts, "linked", "l1") + "\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, logs.join("link.jsonl")).unwrap();

    // A line of 64 MiB between two normal ones.
    let big = logs.join("big.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    let first = envelope(ts, "before", "b1");
    writeln!(f, "{first}").unwrap();
    let (start, end) = (
        format!("{{\"timestamp\":{ts},\"message\":\""),
        "\",\"logStreamName\":\"s\",\"eventId\":\"b2\"}",
    );
    f.write_all(start.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        f.write_all(&chunk).unwrap();
    }
    writeln!(f, "{end}").unwrap();
    writeln!(f, "{}", envelope(ts, "after", "b3")).unwrap();
    drop(f);

    // Deep unknown keys and wide numbers.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let numbers =
        "12345678901234567890123,9007199254740993,-9223372036854775809,-0,1.0,1.5e300,1E400";
    let messages = [
        (
            "m1",
            format!(r#"{{"event_id":"m1","event_type":"tap","x":{deep}}}"#),
            format!(r#"{{"x":{deep}}}"#),
        ),
        (
            "m2",
            format!(r#"{{"event_id":"m2","props":{{"n":[{numbers}]}},"big":9007199254740993}}"#),
            format!(r#"{{"big":9007199254740993,"n":[{numbers}]}}"#),
        ),
        (
            "m3",
            r#"{"event_id":"m3","props":{ "n" : 12345678901234567890123 }}"#.to_string(),
            r#"{"n":12345678901234567890123}"#.to_string(),
        ),
    ];
    let text: String = messages
        .iter()
        .map(|(id, m, _)| envelope(ts, m, id) + "\n")
        .collect();
    std::fs::write(logs.join("app.jsonl"), text).unwrap();

    let e = extract(&config);
    // link 1 + big 3 + app 3; the special files are no units' lines.
    assert_eq!((e.scanned, e.selected, e.malformed), (7, 7, 0), "{e:?}");

    let t = bitacora_transform::run(&config, &TransformParams { date: day() }).unwrap();
    assert_eq!((t.read, t.events, t.quarantine, t.duplicates), (7, 6, 1, 0));
    assert_eq!(t.events + t.quarantine + t.duplicates, t.read);
    bitacora_catalog::run(&config, &CatalogParams { date: day() }).unwrap();

    let q = json(
        &config,
        "SELECT reason, detail, length(raw) AS n, raw, source_event_id FROM quarantine",
    );
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["reason"], "oversize");
    let detail = q[0]["detail"].as_str().unwrap();
    let want = format!(
        "record is {} bytes, more than transform.max_record_bytes = 262144; raw truncated ({} line 2, byte {})",
        start.len() + (64 << 20) + end.len(),
        big.display(),
        first.len() + 1
    );
    assert_eq!(detail, want);
    assert_eq!(q[0]["n"], 262_144);
    assert!(
        q[0]["raw"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{start}aaaa"))
    );

    for (id, _, props) in &messages {
        let rows = json(
            &config,
            &format!("SELECT properties FROM events WHERE event_id = '{id}'"),
        );
        assert_eq!(rows.len(), 1, "{id}");
        assert_eq!(rows[0]["properties"].as_str(), Some(props.as_str()), "{id}");
    }
    let rows = json(
        &config,
        "SELECT event_id FROM events WHERE message IS NOT NULL ORDER BY event_id",
    );
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b1", "b3", "l1"]);
}
