//! The stream service end to end, in-process, against real peers: a private Redis server,
//! scripted HTTP receivers, file sinks on disk.

mod support;

use std::time::Duration;

use support::*;

fn dir_toml(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_dedups_quarantines_routes_and_answers_with_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
[stream.dedup]
kind = "memory"
[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{d}/all" }}
[[stream.routes]]
name = "oncall"
match = {{ level = ["ERROR"], event_type = ["crash", "error"] }}
sink = {{ kind = "file", path = "{d}/oncall" }}
[[stream.routes]]
name = "marketing"
match = {{ event_type = ["purchase", "signup"] }}
pii = {{ hash = ["user_id"], drop = ["session_id"] }}
sink = {{ kind = "file", path = "{d}/marketing" }}
"#
    ))
    .await;
    let client = reqwest::Client::new();
    let types = ["screen_view", "purchase", "crash", "signup", "tap"];
    let mut lines: Vec<String> = (0..100)
        .map(|i| message(i, types[i % types.len()]))
        .collect();
    // Redelivered copies inside the batch, a broken record, a text line, an envelope.
    lines.push(message(3, types[3]));
    lines.push(message(7, types[2]));
    lines.push(r#"{"event_id":"bad-ts","ts":"yesterday","event_type":"tap"}"#.into());
    lines.push(r#"{"event_id": "broken", "#.into());
    lines.push("FATAL EXCEPTION: main java.lang.NullPointerException".into());
    lines.push(
        serde_json::json!({"timestamp": 1763460000000i64, "message": message(1000, "tap"), "logStreamName": "ios-1", "eventId": "cw-1"})
            .to_string(),
    );
    let (status, body) = post(&client, &svc.url("/v1/logs"), &lines).await;
    assert_eq!(status, 200, "{body}");
    // 100 + the text line + the envelope are new; 2 copies; 2 quarantined.
    assert_eq!(
        body,
        serde_json::json!({"accepted": 102, "duplicates": 2, "quarantined": 2})
    );
    // The same batch again: everything it holds was delivered before.
    let (status, again) = post(&client, &svc.url("/v1/logs"), &lines).await;
    assert_eq!(status, 200);
    assert_eq!(
        again,
        serde_json::json!({"accepted": 0, "duplicates": 104, "quarantined": 2})
    );
    let m = svc.metrics().await;
    assert_eq!(
        metric(&m, "bitacora_stream_records_in_total{source=\"http\"}"),
        212.0
    );
    assert_eq!(
        metric(
            &m,
            "bitacora_stream_route_delivered_total{route=\"everything\"}"
        ),
        102.0
    );
    let report = svc.stop().await;
    assert_eq!(
        (report.accepted, report.duplicates, report.quarantined),
        (102, 106, 4)
    );

    let all = jsonl(&tmp.path().join("all"));
    assert_eq!(all.len(), 102, "each new record once");
    assert!(counts(&all).values().all(|n| *n == 1));
    let text = all.iter().find(|r| r["event_type"] == "text").unwrap();
    assert_eq!(
        text["message"],
        "FATAL EXCEPTION: main java.lang.NullPointerException"
    );
    let env = all.iter().find(|r| r["event_id"] == "ev-1000").unwrap();
    assert_eq!(env["log_stream"], "ios-1");
    assert_eq!(env["event_time"], "2026-11-18T10:00:00.000000Z");
    assert!(env["ingest_time"].is_string(), "{env}");
    let one = all.iter().find(|r| r["event_id"] == "ev-1").unwrap();
    assert_eq!(one["event_time"], "2026-11-18T10:00:00.000000Z");
    assert_eq!(one["properties"], serde_json::json!({"i": 1}));
    assert_eq!(one["dt"], "2026-11-18");

    let oncall = jsonl(&tmp.path().join("oncall"));
    assert_eq!(oncall.len(), 20);
    assert!(
        oncall
            .iter()
            .all(|r| r["event_type"] == "crash" && r["level"] == "ERROR")
    );

    let marketing = jsonl(&tmp.path().join("marketing"));
    assert_eq!(marketing.len(), 40);
    for r in &marketing {
        assert!(r["event_type"] == "purchase" || r["event_type"] == "signup");
        assert_eq!(r["session_id"], serde_json::Value::Null);
        let h = r["user_id"].as_str().unwrap();
        assert_eq!(h.len(), 32, "hashed: {h}");
        assert!(!h.starts_with("user-"));
    }
    // Same user, same hash (the marketing tool can count users).
    let by_user: std::collections::BTreeSet<&str> = marketing
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert!(by_user.len() <= 17);

    let q = jsonl(&tmp.path().join("data/quarantine"));
    assert_eq!(q.len(), 4, "every copy of a bad record is kept");
    let reasons: std::collections::BTreeSet<&str> =
        q.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["malformed_json", "unparsable_ts"].into_iter().collect()
    );
    assert!(
        q.iter()
            .any(|r| r["raw"].as_str().unwrap().contains("yesterday"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_contract_401_413_429_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    std::fs::write(
        tmp.path().join("token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    // A receiver that holds every request until released: the route's buffer and the queue fill.
    let gate = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g, a) = (gate.clone(), arrived.clone());
    let peer = Peer::start(move |_| {
        a.store(true, std::sync::atomic::Ordering::SeqCst);
        while !g.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        (200, String::new())
    })
    .await;
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
auth_token_file = "{d}/token"
max_body_bytes = 4096
queue_records = 10
[[stream.routes]]
name = "hook"
sink = {{ kind = "http", url = "{}" }}
batch = {{ linger_ms = 0 }}
"#,
        peer.url("/hook")
    ))
    .await;
    let client = reqwest::Client::new();
    let url = svc.url("/v1/logs");
    let auth = "Bearer 0123456789abcdef0123456789abcdef";
    // 401 without (or with a wrong) token.
    let r = client
        .post(&url)
        .body(message(1, "tap"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client
        .post(&url)
        .header("authorization", "Bearer nope")
        .body(message(1, "tap"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // 413 over max_body_bytes (declared, or streamed).
    let big = "x".repeat(5000);
    let r = client
        .post(&url)
        .header("authorization", auth)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // gzip, decoded: one batch of 6 held by the receiver...
    let lines: Vec<String> = (0..6).map(|i| message(i, "tap")).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, (lines.join("\n") + "\n").as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let first = {
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            client
                .post(&url)
                .header("authorization", auth)
                .header("content-encoding", "gzip")
                .body(gz)
                .send()
                .await
                .unwrap()
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !arrived.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < until,
            "the first batch never reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... so a second batch of 6 does not fit the queue of 10: 429 with Retry-After.
    let second: Vec<String> = (10..16).map(|i| message(i, "tap")).collect();
    let r = send_until_status(
        || {
            client
                .post(&url)
                .header("authorization", auth)
                .body(second.join("\n"))
        },
        429,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    gate.store(true, std::sync::atomic::Ordering::SeqCst);
    let first = first.await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap()["accepted"],
        6
    );
    // A batch larger than the whole queue can never fit: 413, not an endless 429.
    let many: Vec<String> = (20..40).map(|i| message(i, "tap")).collect();
    let r = client
        .post(&url)
        .header("authorization", auth)
        .body(many.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    svc.stop().await;
    let got: usize = peer
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.lines().count())
        .sum();
    assert_eq!(got, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_are_bounded_before_they_are_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
max_body_bytes = 2048
max_buffered_bytes = 3000
[[stream.routes]]
name = "files"
sink = {{ kind = "file", path = "{d}/files" }}
"#
    ))
    .await;
    let addr = svc.url("").trim_start_matches("http://").to_string();
    let line = message(1, "tap") + "\n";
    let body = format!("{line:<2000}");
    // A slow client: headers of a 2000-byte body, then nothing yet.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Another 2000-byte body does not fit beside it: 429 with Retry-After, its body unread.
    let client = reqwest::Client::new();
    let r = send_until_status(
        || client.post(svc.url("/v1/logs")).body(body.clone()),
        429,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let text = r.text().await.unwrap();
    assert!(text.contains("stream.max_buffered_bytes"), "{text}");
    // The slow body arrives: taken; then there is room again.
    slow.write_all(body.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let r = client
        .post(svc.url("/v1/logs"))
        .body(message(2, "tap"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let report = svc.stop().await;
    assert_eq!(report.accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_route_retries_then_dead_letters_while_others_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let down = Peer::start(|_| (503, "maintenance".into())).await;
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
[[stream.routes]]
name = "files"
sink = {{ kind = "file", path = "{d}/files" }}
[[stream.routes]]
name = "hook"
sink = {{ kind = "http", url = "{}" }}
retry = {{ max_attempts = 3, initial_backoff_ms = 10, max_backoff_ms = 50 }}
batch = {{ linger_ms = 5 }}
"#,
        down.url("/hook")
    ))
    .await;
    let client = reqwest::Client::new();
    let lines: Vec<String> = (0..30).map(|i| message(i, "purchase")).collect();
    let (status, body) = post(&client, &svc.url("/v1/logs"), &lines).await;
    assert_eq!(status, 200, "dead-lettered counts as accepted: {body}");
    let m = svc.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bitacora_stream_route_dead_lettered_total{route=\"hook\"}"
        ),
        30.0
    );
    assert_eq!(
        metric(&m, "bitacora_stream_route_delivered_total{route=\"files\"}"),
        30.0
    );
    assert!(
        metric(
            &m,
            "bitacora_stream_route_send_failures_total{route=\"hook\"}"
        ) >= 3.0
    );
    svc.stop().await;
    assert_eq!(
        down.bodies.lock().unwrap().len(),
        3,
        "three attempts, then dead letters"
    );
    assert_eq!(jsonl(&tmp.path().join("files")).len(), 30);
    let dead = jsonl(&tmp.path().join("data/dead-letter/hook"));
    assert_eq!(dead.len(), 30);
    assert_eq!(dead[0]["route"], "hook");
    assert_eq!(dead[0]["attempts"], 3);
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("503"),
        "{}",
        dead[0]
    );
    assert!(
        dead[0]["record"]["event_id"]
            .as_str()
            .unwrap()
            .starts_with("ev-")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dedup_passes_the_conformance_suite() {
    let redis = Redis::start();
    let url = redis.url();
    let n = std::sync::atomic::AtomicUsize::new(0);
    bitacora_stream::dedup::conformance::run(|ttl, claim| {
        let prefix = format!("t{}:", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let url = url.clone();
        async move {
            std::sync::Arc::new(
                bitacora_stream::dedup::RedisDedup::connect(&url, &prefix, ttl, claim)
                    .await
                    .unwrap(),
            ) as std::sync::Arc<dyn bitacora_stream::dedup::DedupStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dedup_reads_keys_marked_by_the_earlier_protocol_as_seen() {
    let redis = Redis::start();
    // The earlier version marked a delivered key with `=` (one SET per record at commit).
    redis_cli(redis.port, &["set", "legacy:old", "="]);
    let d = redis_dedup(&redis.url(), "legacy:", 60, 60).await;
    use bitacora_stream::dedup::{Claim, DedupStore};
    assert_eq!(
        d.claim("a", &["old".into(), "new".into()]).await.unwrap(),
        vec![Claim::Duplicate, Claim::New]
    );
}

/// A Redis dedup store at `url` under `prefix`, with a window and a claim of these seconds.
async fn redis_dedup(
    url: &str,
    prefix: &str,
    ttl_secs: u64,
    claim_secs: u64,
) -> bitacora_stream::dedup::RedisDedup {
    bitacora_stream::dedup::RedisDedup::connect(
        url,
        prefix,
        Duration::from_secs(ttl_secs),
        Duration::from_secs(claim_secs),
    )
    .await
    .unwrap()
}

/// Claims 1,000 new ids (`ev-<from>`…) of the window from 2026-11-18T10:00Z, timed.
async fn claim_new_ids(d: &bitacora_stream::dedup::RedisDedup, owner: &str, from: usize) {
    use bitacora_stream::dedup::{DedupStore, Key};
    let ids: Vec<String> = (from..from + 1000).map(|i| format!("ev-{i}")).collect();
    let keys: Vec<Key<'_>> = ids
        .iter()
        .map(|id| Key::timed(id, 1_794_996_000_000_000))
        .collect();
    d.claim(owner, &keys).await.unwrap();
}

/// `redis-cli -p PORT ARGS…`'s output.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dedup_files_timed_keys_in_window_hashes_that_expire() {
    use bitacora_stream::dedup::{Claim, DedupStore, Key};
    let redis = Redis::start();
    let d = redis_dedup(&redis.url(), "lay:", 60, 30).await;
    // 1,000 records of one ten-second window (from 2026-11-18T10:00Z: window 179499600), with
    // times of their own.
    let ids: Vec<String> = (0..1000).map(|i| format!("ev-{i}")).collect();
    let keys: Vec<Key<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Key::timed(id, 1_794_996_000_000_000 + i as i64 * 1000))
        .collect();
    assert!(
        d.claim("a", &keys)
            .await
            .unwrap()
            .iter()
            .all(|c| *c == Claim::New)
    );
    d.commit("a", &keys).await.unwrap();
    let names = redis_cli(redis.port, &["--scan", "--pattern", "lay:*"]);
    let mut buckets: Vec<&str> = names.lines().filter(|n| *n != "lay:#b:a").collect();
    buckets.sort();
    assert!(
        buckets.len() == 8,
        "one hash per shard of the window, and nothing else: {buckets:?}"
    );
    let mut fields = 0;
    for b in &buckets {
        assert!(b.starts_with("lay:#w179499600:"), "{b}");
        assert_eq!(redis_cli(redis.port, &["type", b]).trim(), "hash");
        let pttl: i64 = redis_cli(redis.port, &["pttl", b]).trim().parse().unwrap();
        assert!((1..=60_000).contains(&pttl), "{b} expires in {pttl} ms");
        fields += redis_cli(redis.port, &["hlen", b])
            .trim()
            .parse::<usize>()
            .unwrap();
    }
    assert_eq!(fields, 1000);
    assert_eq!(
        d.claim("b", &keys[..3]).await.unwrap(),
        vec![Claim::Duplicate; 3]
    );
    // A later claim into the window extends its hashes; one by an instance with a shorter
    // window does not shorten them.
    let pttls = || -> Vec<i64> {
        buckets
            .iter()
            .map(|b| redis_cli(redis.port, &["pttl", b]).trim().parse().unwrap())
            .collect()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let short = redis_dedup(&redis.url(), "lay:", 5, 5).await;
    claim_new_ids(&short, "s", 1000).await;
    assert!(
        pttls().iter().all(|t| (50_000..59_000).contains(t)),
        "not shortened to 5 s nor extended past 60 s: {:?}",
        pttls()
    );
    claim_new_ids(&d, "f", 2000).await;
    assert!(
        pttls().iter().all(|t| *t > 59_000),
        "extended to 60 s from the latest claim: {:?}",
        pttls()
    );
    // A hash left without an expiry (as by an instance killed half-way) gets one from the next
    // claim into it.
    assert_eq!(redis_cli(redis.port, &["persist", buckets[0]]).trim(), "1");
    claim_new_ids(&d, "g", 3000).await;
    assert!(pttls().iter().all(|t| *t > 59_000), "{:?}", pttls());
    // A record stamped on arrival whose id is named like a window's hash is a key of its own
    // (`##w…`), not a clash with the hash (which Redis would refuse as WRONGTYPE).
    let clash = buckets[0].strip_prefix("lay:").unwrap();
    let odd = [Key::untimed(clash), Key::untimed("#x")];
    assert_eq!(d.claim("c", &odd).await.unwrap(), vec![Claim::New; 2]);
    d.commit("c", &odd).await.unwrap();
    assert_eq!(d.claim("e", &odd).await.unwrap(), vec![Claim::Duplicate; 2]);
    assert_eq!(
        redis_cli(redis.port, &["type", &format!("lay:#{clash}")]).trim(),
        "string"
    );
    assert_eq!(redis_cli(redis.port, &["type", "lay:##x"]).trim(), "string");
    assert_eq!(redis_cli(redis.port, &["type", buckets[0]]).trim(), "hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_redis_window() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let conf = |name: &str| {
        format!(
            r#"data_dir = "{d}/{name}"
[stream.dedup]
kind = "redis"
url = "{}"
[[stream.routes]]
name = "files"
sink = {{ kind = "file", path = "{d}/out-{name}" }}
"#,
            redis.url()
        )
    };
    let a = Svc::start(&conf("a")).await;
    let b = Svc::start(&conf("b")).await;
    let client = reqwest::Client::new();
    let lines: Vec<String> = (0..200).map(|i| message(i, "tap")).collect();
    let (_, ra) = post(&client, &a.url("/v1/logs"), &lines[..150]).await;
    let (_, rb) = post(&client, &b.url("/v1/logs"), &lines[50..]).await;
    assert_eq!(ra["accepted"], 150);
    assert_eq!(
        (rb["accepted"].as_u64(), rb["duplicates"].as_u64()),
        (Some(50), Some(100))
    );
    a.stop().await;
    b.stop().await;
    let mut all = jsonl(&tmp.path().join("out-a"));
    all.extend(jsonl(&tmp.path().join("out-b")));
    let c = counts(&all);
    assert_eq!(c.len(), 200);
    assert!(c.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_mid_stream_loses_nothing() {
    let mut redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
[stream.dedup]
kind = "redis"
url = "{}"
claim_secs = 3
[[stream.routes]]
name = "files"
sink = {{ kind = "file", path = "{d}/out" }}
"#,
        redis.url()
    ))
    .await;
    let client = reqwest::Client::new();
    let url = svc.url("/v1/logs");
    let batches: Vec<Vec<String>> = (0..30)
        .map(|b| (0..50).map(|i| message(b * 50 + i, "tap")).collect())
        .collect();
    for (i, batch) in batches.iter().enumerate() {
        if i == 10 {
            // Redis down longer than claim_secs: the batch is held back, then refused (503) —
            // nothing passes unchecked.
            redis.stop();
            let (status, body) = post(&client, &url, batch).await;
            assert_eq!(status, 503, "{body}");
            // Back a second later, while the producer keeps sending the batch.
            let mut r = std::mem::replace(&mut redis, Redis::placeholder());
            let restarter = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                r.restart();
                r
            });
            post_until_ok(&client, &url, batch, Duration::from_secs(60)).await;
            redis = restarter.join().unwrap();
            continue;
        }
        post_until_ok(&client, &url, batch, Duration::from_secs(60)).await;
    }
    let m = svc.metrics().await;
    assert!(metric(&m, "bitacora_stream_dedup_errors_total{source=\"http\"}") > 0.0);
    svc.stop().await;
    let c = counts(&jsonl(&tmp.path().join("out")));
    assert_eq!(c.len(), 1500, "every record delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_is_not_a_duplicate_until_its_first_copy_was_delivered() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let (arrived, gate) = (
        std::sync::Arc::new(AtomicBool::new(false)),
        std::sync::Arc::new(AtomicBool::new(false)),
    );
    let (a2, g2) = (arrived.clone(), gate.clone());
    let slow = Peer::start(move |_| {
        a2.store(true, SeqCst);
        while !g2.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        (200, String::new())
    })
    .await;
    let conf = |name: &str, sink: String| {
        format!(
            "data_dir = \"{d}/{name}\"\n[stream.dedup]\nkind = \"redis\"\nurl = \"{}\"\nclaim_secs = 30\n[[stream.routes]]\nname = \"r\"\nsink = {sink}\nbatch = {{ linger_ms = 0 }}\n",
            redis.url()
        )
    };
    let a = Svc::start(&conf(
        "a",
        format!("{{ kind = \"http\", url = \"{}\" }}", slow.url("/")),
    ))
    .await;
    let b = Svc::start(&conf(
        "b",
        format!("{{ kind = \"file\", path = \"{d}/out-b\" }}"),
    ))
    .await;
    let lines: Vec<String> = (0..20).map(|i| message(i, "tap")).collect();
    let client = reqwest::Client::new();
    let first = tokio::spawn({
        let (c, u, l) = (client.clone(), a.url("/v1/logs"), lines.clone());
        async move { post(&c, &u, &l).await }
    });
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !arrived.load(SeqCst) {
        assert!(
            std::time::Instant::now() < until,
            "the first copy never reached its sink"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The same records at the other instance while the first copy is being delivered: they wait
    // (a mark at claim time would answer "duplicates" for records nobody has received yet).
    let second = tokio::spawn({
        let (c, u, l) = (client.clone(), b.url("/v1/logs"), lines.clone());
        async move { post(&c, &u, &l).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !second.is_finished(),
        "answered before the first copy was delivered"
    );
    gate.store(true, SeqCst);
    let (s1, r1) = first.await.unwrap();
    let (s2, r2) = second.await.unwrap();
    assert_eq!((s1, r1["accepted"].as_u64()), (200, Some(20)));
    assert_eq!(
        (s2, r2["accepted"].as_u64(), r2["duplicates"].as_u64()),
        (200, Some(0), Some(20)),
        "{r2}"
    );
    let m = b.metrics().await;
    assert!(
        metric(
            &m,
            "bitacora_stream_dedup_in_flight_waits_total{source=\"http\"}"
        ) >= 1.0
    );
    a.stop().await;
    b.stop().await;
    assert!(jsonl(&tmp.path().join("out-b")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_passes_the_source_conformance_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let svc = Svc::start(&format!(
        "data_dir = \"{d}/data\"\n[[stream.routes]]\nname = \"everything\"\nsink = {{ kind = \"file\", path = \"{d}/all\" }}\n"
    ))
    .await;
    let client = reqwest::Client::new();
    let url = svc.url("/v1/logs");
    support::sources::run(|lines| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            post_until_ok(&client, &url, &lines, Duration::from_secs(30)).await;
        }
    })
    .await;
    svc.stop().await;
    support::sources::check(
        &jsonl(&tmp.path().join("all")),
        &jsonl(&tmp.path().join("data/quarantine")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivers_its_new_records_before_waiting_for_copies_in_flight_elsewhere() {
    use bitacora_stream::dedup::{DedupStore, Key};
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let svc = Svc::start(&format!(
        "data_dir = \"{d}/data\"\n[stream.dedup]\nkind = \"redis\"\nurl = \"{}\"\nclaim_secs = 30\n[[stream.routes]]\nname = \"r\"\nsink = {{ kind = \"file\", path = \"{d}/out\" }}\n",
        redis.url()
    ))
    .await;
    // Another batch (elsewhere) holds a claim on ev-1 and has not delivered it yet.
    let other = redis_dedup(&redis.url(), "bitacora:seen:", 60, 30).await;
    // The key the service gives ev-1: its id and its own time (testing::message's ts).
    let ev1 = [Key::timed("ev-1", 1_794_996_000_000_000)];
    other.claim("elsewhere", &ev1).await.unwrap();
    let client = reqwest::Client::new();
    let lines = vec![message(1, "tap"), message(2, "tap")];
    let answer = tokio::spawn({
        let (c, u) = (client.clone(), svc.url("/v1/logs"));
        async move { post(&c, &u, &lines).await }
    });
    // ev-2 is delivered (and visible once the part closes) while ev-1 waits: no batch waits
    // for another while holding claims of its own undelivered.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = svc.metrics().await;
        if metric(&m, "bitacora_stream_route_delivered_total{route=\"r\"}") == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "ev-2 not delivered while ev-1 was in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!answer.is_finished());
    other.commit("elsewhere", &ev1).await.unwrap();
    let (status, body) = answer.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"accepted": 1, "duplicates": 1, "quarantined": 0})
    );
    svc.stop().await;
    let rows = jsonl(&tmp.path().join("out"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["event_id"], "ev-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_that_fail_too_refuse_the_batch_and_keep_other_routes_flowing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let down = Peer::start(|_| (503, "maintenance".into())).await;
    let dead_ok = Arc::new(AtomicBool::new(false));
    let flag = dead_ok.clone();
    let dead = Peer::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            (200, "ok".into())
        } else {
            (500, "dead letters down too".into())
        }
    })
    .await;
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
request_timeout_secs = 10
[[stream.routes]]
name = "files"
sink = {{ kind = "file", path = "{d}/files" }}
[[stream.routes]]
name = "hook"
sink = {{ kind = "http", url = "{}" }}
dead_letter = {{ kind = "http", url = "{}" }}
retry = {{ max_attempts = 2, initial_backoff_ms = 10, max_backoff_ms = 20 }}
batch = {{ linger_ms = 50 }}
"#,
        down.url("/hook"),
        dead.url("/dead")
    ))
    .await;
    let client = reqwest::Client::new();
    let lines: Vec<String> = (0..20).map(|i| message(i, "purchase")).collect();
    let started = std::time::Instant::now();
    let (status, body) = post(&client, &svc.url("/v1/logs"), &lines).await;
    assert_eq!(
        status, 503,
        "neither the sink nor its dead letters took it: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded, not stalled"
    );
    let m = svc.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bitacora_stream_route_dead_letter_failures_total{route=\"hook\"}"
        ),
        20.0
    );
    // The route is not stalled: another batch goes through the other route meanwhile (and is
    // refused as a whole, since it matches the failing route too).
    let more: Vec<String> = (100..110).map(|i| message(i, "purchase")).collect();
    let (status, _) = post(&client, &svc.url("/v1/logs"), &more).await;
    assert_eq!(status, 503);
    assert_eq!(
        dead.bodies.lock().unwrap().len(),
        4,
        "2 attempts × 2 batches"
    );
    // The dead letters come back: the resent batch is dead-lettered and acknowledged, and the
    // first attempt's records are not duplicates (their claims were released).
    dead_ok.store(true, Ordering::SeqCst);
    let v = post_until_ok(
        &client,
        &svc.url("/v1/logs"),
        &lines,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(v["accepted"], 20, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    let m = svc.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bitacora_stream_route_dead_lettered_total{route=\"hook\"}"
        ),
        20.0
    );
    svc.stop().await;
    let last = dead.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1.lines().count(), 20, "one dead-letter batch of 20");
    assert!(last.1.contains("\"route\":\"hook\""), "{}", last.1);
    // Files got every record at least once (at-least-once: the refused tries wrote them too).
    let files = counts(&jsonl(&tmp.path().join("files")));
    assert_eq!(files.len(), 30, "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_slower_than_claim_secs_keeps_its_claims() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    // The hook takes 2.5 s per batch; claims last 1 s unless renewed.
    let slow = Peer::start(|_| {
        std::thread::sleep(Duration::from_millis(2500));
        (200, "ok".into())
    })
    .await;
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
[stream.dedup]
kind = "memory"
claim_secs = 1
[[stream.routes]]
name = "hook"
sink = {{ kind = "http", url = "{}" }}
"#,
        slow.url("/hook")
    ))
    .await;
    let client = reqwest::Client::new();
    let lines: Vec<String> = (0..10).map(|i| message(i, "purchase")).collect();
    let first = {
        let (client, url, lines) = (client.clone(), svc.url("/v1/logs"), lines.clone());
        tokio::spawn(async move { post(&client, &url, &lines).await })
    };
    // A copy arrives while the first is being delivered, after its first claim would expire.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // It waits for the first (a 503 after claim_secs of waiting: the producer sends it again).
    let copy = post_until_ok(
        &client,
        &svc.url("/v1/logs"),
        &lines,
        Duration::from_secs(10),
    )
    .await;
    let (first_status, first) = first.await.unwrap();
    assert_eq!(first_status, 200, "{first}");
    assert_eq!(first["accepted"], 10);
    assert_eq!(
        copy["duplicates"], 10,
        "the copy waited for the first: {copy}"
    );
    let m = svc.metrics().await;
    assert!(
        metric(
            &m,
            "bitacora_stream_dedup_claim_renewals_total{source=\"http\"}"
        ) >= 1.0
    );
    svc.stop().await;
    assert_eq!(slow.bodies.lock().unwrap().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_sends_realistic_records_with_redelivered_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_toml(tmp.path());
    let svc = Svc::start(&format!(
        r#"data_dir = "{d}/data"
[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{d}/all" }}
"#
    ))
    .await;
    let report = bitacora_stream::loadgen::run(&bitacora_stream::loadgen::LoadParams {
        to: svc.url(""),
        rate: 4000,
        duration: Duration::from_millis(500),
        duplicates: 0.1,
        seed: 7,
        batch: Some(100),
        concurrency: 4,
        token: None,
        pregenerate: false,
    })
    .await
    .unwrap();
    svc.stop().await;
    assert_eq!(report.sent, 2000);
    assert_eq!(
        report.new + report.redelivered + report.text + report.malformed,
        2000
    );
    assert!(report.redelivered > 100, "{report:?}");
    // The service's answers add up to what was sent: copies are duplicates, broken ones
    // quarantined, the rest delivered once.
    assert_eq!(report.accepted, report.new + report.text, "{report:?}");
    assert_eq!(report.duplicates, report.redelivered, "{report:?}");
    assert_eq!(report.quarantined, report.malformed, "{report:?}");
    let rows = jsonl(&tmp.path().join("all"));
    assert_eq!(rows.len() as u64, report.accepted);
    assert!(counts(&rows).values().all(|n| *n == 1));
}
