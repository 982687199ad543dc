//! The handler binaries, driven through a Lambda Runtime API stand-in with events shaped as AWS
//! sends them: per-record results, dedup across invocations and cold starts (a real Redis), a
//! route that cannot deliver → partial batch failures, malformed records → quarantined.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// The handler binaries: cargo's, or those of `BITACORA_LAMBDA_BIN_DIR` (to measure the
/// release bootstraps' cold starts: the tests print them).
fn bin(name: &str, built: &'static str) -> String {
    match std::env::var("BITACORA_LAMBDA_BIN_DIR") {
        Ok(dir) => format!("{dir}/{name}"),
        Err(_) => built.to_string(),
    }
}
fn fanout_bin() -> String {
    bin(
        "bitacora-lambda-fanout",
        env!("CARGO_BIN_EXE_bitacora-lambda-fanout"),
    )
}
fn dedup_bin() -> String {
    bin(
        "bitacora-lambda-dedup",
        env!("CARGO_BIN_EXE_bitacora-lambda-dedup"),
    )
}
fn transform_bin() -> String {
    bin(
        "bitacora-lambda-transform",
        env!("CARGO_BIN_EXE_bitacora-lambda-transform"),
    )
}

/// A webhook that refuses (503) while `down` is set.
fn webhook(down: Arc<AtomicBool>) -> Peer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(Peer::start(move |_| {
        if down.load(Ordering::SeqCst) {
            (503, "down".into())
        } else {
            (200, "{}".into())
        }
    }))
}

/// Routes: every event to files, purchases to the webhook (two quick attempts, no dead
/// letters: what it refuses fails its record); dedup in `redis` under `prefix`.
fn write_config(dir: &Path, redis: &str, prefix: &str, hook: &str) -> std::path::PathBuf {
    let path = dir.join("bitacora.toml");
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            r#"
[source]
log_group = "/mobile/app"

[stream]
data_dir = "{d}/data"

[stream.dedup]
kind = "redis"
url = "{redis}"
key_prefix = "{prefix}"
claim_secs = 5

[stream.quarantine]
sink = {{ kind = "file", path = "{d}/quarantine" }}

[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{d}/everything" }}

[[stream.routes]]
name = "marketing"
match = {{ event_type = ["purchase"] }}
sink = {{ kind = "http", url = "{hook}" }}
retry = {{ max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 5 }}
"#
        ),
    )
    .unwrap();
    path
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

fn ids(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn fanout_reports_the_records_not_delivered_and_dedups_across_invocations_and_cold_starts() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let hook = webhook(down.clone());
    let config = write_config(dir.path(), &redis.url(), "fanout:", &hook.url("/hook"));
    let control = gzip(&json!({"messageType": "CONTROL_MESSAGE", "logEvents": []}).to_string());
    let batch: Vec<Vec<u8>> = vec![
        message(1, "app_open").into_bytes(),
        message(2, "purchase").into_bytes(),
        subscription(&[
            message(3, "crash"),
            "java.lang.NullPointerException at Foo.bar".into(),
        ]),
        br#"{"event_id":"bad-ts","ts":"yesterday"}"#.to_vec(),
        message(1, "app_open").into_bytes(),
        control,
        b"\x1f\x8bnot really gzip".to_vec(),
    ];
    let api = RuntimeApi::start();
    let handler = Handler::start(&fanout_bin(), &api, &config, &[]);
    let ready = api.ready_at().duration_since(handler.started);
    println!("fanout cold start (process start → first poll): {ready:?}");

    // The webhook is down: only the purchase's record fails; the rest is delivered, the
    // malformed ones are quarantined, the copy of ev-1 is a duplicate.
    let r = api.response(&kinesis_event(&batch, 0));
    assert_eq!(failures(&r), vec![seq(0, 1)], "{}", handler.log_text());
    let everything = all_lines(&dir.path().join("everything"));
    let mut want = vec!["ev-1", "ev-2", "ev-3", "cw-1"];
    want.sort();
    assert_eq!(ids(&everything), want);
    let text = everything.iter().find(|e| e["event_id"] == "cw-1").unwrap();
    assert_eq!(text["event_type"], "text");
    assert_eq!(text["log_stream"], "ios-1");
    let quarantine = all_lines(&dir.path().join("quarantine"));
    let reasons: Vec<&str> = quarantine
        .iter()
        .map(|q| q["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["unparsable_ts", "broken_envelope"],
        "{quarantine:?}"
    );

    // Lambda resumes from the failed record: what was delivered is a duplicate now, the
    // purchase goes through once the webhook is back.
    down.store(false, Ordering::SeqCst);
    let r = api.response(&kinesis_event(&batch[1..], 1));
    assert_eq!(failures(&r), Vec::<String>::new(), "{}", handler.log_text());
    let everything = all_lines(&dir.path().join("everything"));
    // ev-2 twice: once when its record failed (the file route had taken it), once now.
    let mut want = vec!["ev-1", "ev-2", "ev-2", "ev-3", "cw-1"];
    want.sort();
    assert_eq!(ids(&everything), want);
    let delivered: Vec<_> = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].contains(r#""event_id":"ev-2""#));

    // A new execution environment (cold start) sees the same keys in Redis.
    drop(handler);
    let api2 = RuntimeApi::start();
    let handler = Handler::start(&fanout_bin(), &api2, &config, &[]);
    let r = api2.response(&kinesis_event(&batch[..3], 0));
    assert_eq!(failures(&r), Vec::<String>::new(), "{}", handler.log_text());
    assert_eq!(
        all_lines(&dir.path().join("everything")).len(),
        everything.len()
    );
    assert!(
        handler.log_text().contains("0 accepted, 4 duplicates"),
        "{}",
        handler.log_text()
    );
}

#[test]
fn fanout_fails_the_whole_batch_while_redis_is_down_and_recovers() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = webhook(Arc::new(AtomicBool::new(false)));
    let config = write_config(dir.path(), &redis.url(), "down:", &hook.url("/hook"));
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("claim_secs = 5", "claim_secs = 1"),
    )
    .unwrap();
    let api = RuntimeApi::start();
    let _handler = Handler::start(&fanout_bin(), &api, &config, &[]);
    api.ready_at();
    redis.stop();
    let batch = vec![
        message(1, "app_open").into_bytes(),
        message(2, "app_open").into_bytes(),
    ];
    // Nothing passes the dedup unchecked: every record is reported, none delivered.
    let r = api.response(&kinesis_event(&batch, 0));
    assert_eq!(failures(&r), vec![seq(0, 0), seq(0, 1)]);
    assert!(all_lines(&dir.path().join("everything")).is_empty());
    redis.restart();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = api.response(&kinesis_event(&batch, 0));
        if failures(&r).is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "still failing after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        ids(&all_lines(&dir.path().join("everything"))),
        vec!["ev-1", "ev-2"]
    );
}

#[test]
fn dedup_reads_fan_out_messages_and_reports_the_ones_not_delivered() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let hook = webhook(down.clone());
    let config = write_config(dir.path(), &redis.url(), "dedup:", &hook.url("/hook"));
    // A routed record, as the fan-out's SNS route publishes it.
    let normalizer = bitacora_model::normalize::Normalizer::new("/mobile/app", 1 << 20);
    let msg = message(10, "purchase");
    let envelope = json!({"timestamp": 1764633600000i64, "message": msg, "logStreamName": "ios-7", "eventId": "cw-9"}).to_string();
    let mut scratch = String::new();
    let event = normalizer.normalize_line(&envelope, &mut scratch).unwrap();
    let mut routed = Vec::new();
    bitacora_model::routed::write_event(&event, &mut routed).unwrap();
    let routed = String::from_utf8(routed).unwrap();
    let bodies = vec![
        sns_notification(&routed),
        message(11, "signup"),
        r#"{"event_id":"slow","ts":"2026-12-01T00:00:00Z","latency_ms":"slow"}"#.to_string(),
        sns_notification(&message(12, "purchase")),
    ];
    let api = RuntimeApi::start();
    let handler = Handler::start(&dedup_bin(), &api, &config, &[]);
    let r = api.response(&sqs_event(&bodies, 0));
    assert_eq!(failures(&r), vec!["m-0", "m-3"], "{}", handler.log_text());
    let quarantine = all_lines(&dir.path().join("quarantine"));
    assert_eq!(quarantine.len(), 1);
    assert_eq!(quarantine[0]["reason"], "wrong_type");

    down.store(false, Ordering::SeqCst);
    // SQS sends the two failed messages again, and m-1 once more (a redelivery).
    let again = vec![bodies[0].clone(), bodies[3].clone(), bodies[1].clone()];
    let r = api.response(&sqs_event(&again, 10));
    assert_eq!(failures(&r), Vec::<String>::new(), "{}", handler.log_text());
    assert!(
        handler.log_text().contains("2 accepted, 1 duplicates"),
        "{}",
        handler.log_text()
    );
    let everything = all_lines(&dir.path().join("everything"));
    assert_eq!(
        ids(&everything),
        vec!["ev-10", "ev-10", "ev-11", "ev-12", "ev-12"]
    );
    // The routed record went through as it was (not normalised twice): same text.
    let files = std::fs::read_dir(dir.path().join("everything"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(files.lines().any(|l| l == routed), "{files}");
    // The webhook took each purchase once (the signup is not its).
    let delivered: Vec<Value> = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == 200)
        .flat_map(|(_, b)| {
            b.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect();
    assert_eq!(ids(&delivered), vec!["ev-10", "ev-12"]);
}

#[test]
fn transform_answers_every_record_in_order_within_the_response_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitacora.toml");
    std::fs::write(&config, "[source]\nlog_group = \"/mobile/app\"\n").unwrap();
    let api = RuntimeApi::start();
    let handler = Handler::start(&transform_bin(), &api, &config, &[]);
    let ready = api.ready_at().duration_since(handler.started);
    println!("transform cold start (process start → first poll): {ready:?}");
    let control = gzip(&json!({"messageType": "CONTROL_MESSAGE", "logEvents": []}).to_string());
    let app = message(1, "purchase");
    let datas = vec![
        app.clone().into_bytes(),
        Vec::new(),
        control,
        br#"{"event_id":"x","ts":"not a time"}"#.to_vec(),
        subscription(&[message(2, "crash"), message(3, "app_open")]),
        b"plain crash text\n  at Foo.bar(Foo.java:1)".to_vec(),
    ];
    let r = api.response(&firehose_event(&datas));
    let records = r["records"].as_array().unwrap();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|x| {
            (
                x["recordId"].as_str().unwrap(),
                x["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("r-0", "Ok"),
            ("r-1", "Dropped"),
            ("r-2", "Dropped"),
            ("r-3", "ProcessingFailed"),
            ("r-4", "Ok"),
            ("r-5", "Ok"),
        ]
    );
    let data = |i: usize| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(records[i]["data"].as_str().unwrap())
            .unwrap();
        String::from_utf8(b).unwrap()
    };
    let line = data(0);
    let row: Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(
        (row["event_id"].as_str(), row["dt"].as_str()),
        (Some("ev-1"), Some("2026-11-18"))
    );
    assert_eq!(data(4).lines().count(), 2);
    let text: Value = serde_json::from_str(data(5).trim_end()).unwrap();
    assert_eq!(text["event_type"], "text");
    assert!(
        handler.log_text().contains("record r-3: unparsable_ts"),
        "{}",
        handler.log_text()
    );

    // Its own output through again: the same lines (a routed record passes as it is).
    let r = api.response(&firehose_event(&[line.trim_end().as_bytes().to_vec()]));
    assert_eq!(r["records"][0]["result"], "Ok");
    assert_eq!(r["records"][0]["data"], records[0]["data"]);
}

#[test]
fn transform_keeps_its_response_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitacora.toml");
    std::fs::write(&config, "[lambda]\ntransform_max_response_bytes = 4096\n").unwrap();
    let api = RuntimeApi::start();
    let _handler = Handler::start(&transform_bin(), &api, &config, &[]);
    let datas: Vec<Vec<u8>> = (0..20)
        .map(|i| message(i, "app_open").into_bytes())
        .collect();
    let (kind, r) = api.invoke(&firehose_event(&datas));
    assert_eq!(kind, "response");
    assert!(r.to_string().len() <= 4096, "{} bytes", r.to_string().len());
    let results: Vec<&str> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["result"].as_str().unwrap())
        .collect();
    assert_eq!(results.len(), 20);
    let ok = results.iter().take_while(|r| **r == "Ok").count();
    assert!(ok >= 3, "{results:?}");
    assert!(
        results[ok..].iter().all(|r| *r == "ProcessingFailed"),
        "{results:?}"
    );
}

#[test]
fn a_bad_setting_stops_the_cold_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitacora.toml");
    std::fs::write(&config, "[stream.dedup]\nkind = \"redis\"\nttl_secs = 0\n").unwrap();
    let api = RuntimeApi::start();
    let mut handler = Handler::start(&fanout_bin(), &api, &config, &[]);
    let status = handler.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let log = handler.log_text();
    assert!(log.contains("stream.dedup.ttl_secs"), "{log}");
}
