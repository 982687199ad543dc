//! The Kinesis source against `kinesis-local` (npm; models SHARD_END and ChildShards) and a
//! private Redis for leases, checkpoints and the dedup window: a shard split and a merge
//! mid-stream (children read only after their parents; nothing skipped, nothing repeated), two
//! instances sharing a stream (shards split between them, taken over when one stops), CloudWatch
//! Logs subscription payloads, throttled and expired reads (a fault-injecting proxy), and the
//! Redis lease store's conformance suite.
#![cfg(feature = "aws")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use support::*;

/// `kinesis-local` on free ports, stopped (process group and all) when dropped.
struct KinesisLocal {
    port: u16,
    child: Child,
}

fn kinesis_local_dir() -> PathBuf {
    let dir = std::env::var_os("BITACORA_KINESIS_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/bitacora/node/node_modules/kinesis-local")
        });
    assert!(
        dir.join("main.js").exists(),
        "kinesis-local not found in {} (tests/run.sh installs it: npm install --prefix ~/.cache/bitacora/node kinesis-local@0.6.2)",
        dir.display()
    );
    dir
}

impl KinesisLocal {
    fn start() -> KinesisLocal {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new("node")
            .arg("main.js")
            .current_dir(kinesis_local_dir())
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", free_port().to_string())
            .env("LOG_LEVEL", "ERROR")
            .env("CREATE_STREAM_DURATION", "100ms")
            .env("UPDATE_SHARD_COUNT_DURATION", "100ms")
            .env("SPLIT_SHARD_DURATION", "100ms")
            .env("MERGE_SHARDS_DURATION", "100ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("node (Node.js) must be installed");
        let k = KinesisLocal { port, child };
        wait_listening(port, "kinesis-local", Duration::from_secs(30));
        k
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> aws_sdk_kinesis::Client {
        let creds = aws_sdk_kinesis::config::Credentials::new("test", "test", None, None, "test");
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(creds)
            .build();
        aws_sdk_kinesis::Client::from_conf(conf)
    }
}

impl Drop for KinesisLocal {
    fn drop(&mut self) {
        // SAFETY: killpg(2) on the process group of our own child.
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The credentials the service's SDK reads from the environment (the same in every test).
fn aws_env() {
    for (k, v) in AWS_TEST_ENV {
        // SAFETY: every test of this binary sets the same values before reading them.
        unsafe { std::env::set_var(k, v) };
    }
}

async fn wait_active(k: &aws_sdk_kinesis::Client, stream: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let s = k
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        let status = s.stream_description_summary().unwrap().stream_status();
        if status.as_str() == "ACTIVE" {
            return;
        }
        assert!(
            Instant::now() < until,
            "{stream} not ACTIVE in 20 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create(k: &aws_sdk_kinesis::Client, stream: &str, shards: i32) {
    k.create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(k, stream).await;
}

/// Puts app messages `ev-{batch}-{i}` with partition key = user id.
async fn put(k: &aws_sdk_kinesis::Client, stream: &str, batch: usize, n: usize) {
    let entries: Vec<PutRecordsRequestEntry> = (0..n)
        .map(|i| {
            let user = format!("user-{}", i % 20);
            let msg = serde_json::json!({
                "event_id": format!("ev-{batch}-{i}"),
                "ts": "2026-11-18T10:00:00.000Z",
                "level": "INFO",
                "event_type": "tap",
                "user_id": user,
                "props": {"batch": batch, "i": i},
            });
            PutRecordsRequestEntry::builder()
                .data(Blob::new(msg.to_string()))
                .partition_key(user)
                .build()
                .unwrap()
        })
        .collect();
    for chunk in entries.chunks(500) {
        let out = k
            .put_records()
            .stream_name(stream)
            .set_records(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count().unwrap_or(0), 0);
    }
}

fn config(d: &Path, k: &KinesisLocal, stream: &str, redis: &Redis, out: &str) -> String {
    format!(
        r#"data_dir = "{d}/data-{out}"
drain_secs = 10
[stream.source]
kind = "kinesis"
stream_name = "{stream}"
endpoint_url = "{url}"
lease_secs = 2
idle_ms = 200
shard_sync_secs = 1
[stream.dedup]
kind = "redis"
url = "{redis}"
claim_secs = 3
[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{d}/{out}", max_age_secs = 1 }}
"#,
        d = d.display(),
        url = k.url(),
        redis = redis.url(),
    )
}

/// Waits until the closed files under `dirs` hold `want` distinct records; returns them.
async fn wait_rows(dirs: &[PathBuf], want: usize, budget: Duration) -> Vec<serde_json::Value> {
    let until = Instant::now() + budget;
    loop {
        let rows: Vec<serde_json::Value> = dirs.iter().flat_map(|d| jsonl(d)).collect();
        if counts(&rows).len() >= want {
            return rows;
        }
        assert!(
            Instant::now() < until,
            "{} of {want} records after {budget:?}",
            counts(&rows).len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn batch_of(r: &serde_json::Value) -> u64 {
    r["properties"]["batch"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_a_merge_mid_stream_read_children_after_parents() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let redis = Redis::start();
    let k = kl.client();
    create(&k, "logs", 2).await;
    put(&k, "logs", 1, 200).await;
    let svc = Svc::start(&config(tmp.path(), &kl, "logs", &redis, "out")).await;
    let out = [tmp.path().join("out")];
    wait_rows(&out, 200, Duration::from_secs(30)).await;

    // Split shard 0 in two halves of its hash range, then write to the children.
    let shards = k.list_shards().stream_name("logs").send().await.unwrap();
    let s0 = shards.shards()[0].clone();
    let range = s0.hash_key_range().unwrap();
    let lo: u128 = range.starting_hash_key().parse().unwrap();
    let hi: u128 = range.ending_hash_key().parse().unwrap();
    k.split_shard()
        .stream_name("logs")
        .shard_to_split(s0.shard_id())
        .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
        .send()
        .await
        .unwrap();
    wait_active(&k, "logs").await;
    put(&k, "logs", 2, 200).await;
    wait_rows(&out, 400, Duration::from_secs(30)).await;

    // Merge the two children back, then write again.
    let shards = k.list_shards().stream_name("logs").send().await.unwrap();
    let children: Vec<_> = shards
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some(s0.shard_id()))
        .cloned()
        .collect();
    assert_eq!(children.len(), 2, "{shards:?}");
    k.merge_shards()
        .stream_name("logs")
        .shard_to_merge(children[0].shard_id())
        .adjacent_shard_to_merge(children[1].shard_id())
        .send()
        .await
        .unwrap();
    wait_active(&k, "logs").await;
    put(&k, "logs", 3, 200).await;
    let rows = wait_rows(&out, 600, Duration::from_secs(40)).await;
    let m = svc.metrics().await;
    svc.stop().await;

    // Nothing skipped, nothing twice.
    let c = counts(&jsonl(&out[0]));
    assert_eq!(c.len(), 600);
    assert!(c.values().all(|n| *n == 1), "a record twice");
    // One key stays on one shard lineage: its records arrive batch by batch, which holds only
    // if every child was read after its parents were read to their end.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let user = r["user_id"].as_str().unwrap().to_string();
        let b = batch_of(r);
        let prev = last.insert(user.clone(), b).unwrap_or(0);
        assert!(prev <= b, "{user}: batch {b} arrived after batch {prev}");
    }
    // Five shards read (2 + 2 children + 1 merged), the closed ones checkpointed at their end.
    let seen = m
        .lines()
        .filter(|l| l.starts_with("bitacora_stream_shard_records_in_total{"))
        .count();
    assert_eq!(seen, 5, "{m}");
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ended: Vec<Option<String>> = redis::cmd("MGET")
        .arg(format!(
            "bitacora:kinesis:{{logs}}:checkpoint:{}",
            s0.shard_id()
        ))
        .arg(format!(
            "bitacora:kinesis:{{logs}}:checkpoint:{}",
            children[0].shard_id()
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        ended,
        vec![Some("SHARD_END".into()), Some("SHARD_END".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_shards_and_one_takes_over_when_the_other_stops() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let redis = Redis::start();
    let k = kl.client();
    create(&k, "shared", 4).await;
    let a = Svc::start(&config(tmp.path(), &kl, "shared", &redis, "a")).await;
    let b = Svc::start(&config(tmp.path(), &kl, "shared", &redis, "b")).await;
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    // Both heartbeat: within a few lease periods each holds half the shards.
    let leased = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("bitacora_stream_shard_leased{") && l.ends_with(" 1"))
            .count()
    };
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (ma, mb) = (a.metrics().await, b.metrics().await);
        if leased(&ma) == 2 && leased(&mb) == 2 {
            break;
        }
        assert!(
            Instant::now() < until,
            "shards not shared 2/2: a {} b {}",
            leased(&ma),
            leased(&mb)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    put(&k, "shared", 1, 400).await;
    let rows = wait_rows(&dirs, 400, Duration::from_secs(30)).await;
    assert!(!jsonl(&dirs[0]).is_empty() && !jsonl(&dirs[1]).is_empty());
    assert!(counts(&rows).values().all(|n| *n == 1));

    // b stops (drains, checkpoints, gives its leases back): a reads every shard.
    b.stop().await;
    put(&k, "shared", 2, 400).await;
    let rows = wait_rows(&dirs, 800, Duration::from_secs(30)).await;
    assert!(leased(&a.metrics().await) == 4);
    a.stop().await;
    let c = counts(&rows);
    assert_eq!(c.len(), 800);
    assert!(c.values().all(|n| *n == 1), "a record twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_payloads_are_read_and_control_messages_skipped() {
    use std::io::Write;
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let redis = Redis::start();
    let k = kl.client();
    create(&k, "cwl", 1).await;
    let gzip = |s: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let events: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "id": format!("3700{i}"),
                "timestamp": 1763460000000i64 + i,
                "message": serde_json::json!({"ts": "2025-11-18T10:00:00Z", "level": "ERROR", "event_type": "crash", "user_id": "u1"}).to_string(),
            })
        })
        .collect();
    let data = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/app/prod", "logStream": "ios-7", "subscriptionFilters": ["to-kinesis"], "logEvents": events}).to_string();
    let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
    for (payload, key) in [
        (gzip(control), "c"),
        (gzip(&data), "d"),
        (b"\x1f\x8bbroken".to_vec(), "x"),
    ] {
        k.put_record()
            .stream_name("cwl")
            .partition_key(key)
            .data(Blob::new(payload))
            .send()
            .await
            .unwrap();
    }
    let svc = Svc::start(&config(tmp.path(), &kl, "cwl", &redis, "out")).await;
    let rows = wait_rows(&[tmp.path().join("out")], 5, Duration::from_secs(30)).await;
    svc.stop().await;
    // The quarantine's part is closed at shutdown.
    let q = jsonl(&tmp.path().join("data-out/quarantine"));
    assert_eq!(rows.len(), 5, "the control message is not a record");
    assert!(rows.iter().all(|r| r["log_stream"] == "ios-7"));
    assert!(rows.iter().all(|r| r["event_type"] == "crash"));
    // No event_id in the messages: the CloudWatch event id is the dedup key.
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["37000", "37001", "37002", "37003", "37004"]);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["reason"], "broken_envelope");
    assert!(
        q[0]["detail"].as_str().unwrap().contains("gzip"),
        "{}",
        q[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leases_pass_the_conformance_suite() {
    let redis = Redis::start();
    let url = redis.url();
    let n = std::sync::atomic::AtomicUsize::new(0);
    bitacora_stream::sources::kinesis::leases::conformance(|lease| {
        // A fresh store: its own key prefix.
        let prefix = format!("t{}:", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let url = url.clone();
        async move {
            std::sync::Arc::new(
                bitacora_stream::sources::kinesis::leases::RedisLeases::connect(
                    &url, prefix, lease,
                )
                .await
                .unwrap(),
            )
                as std::sync::Arc<dyn bitacora_stream::sources::kinesis::leases::LeaseStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_puts_to_kinesis_and_the_service_reads_it() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let redis = Redis::start();
    let k = kl.client();
    create(&k, "gen", 2).await;
    // The generator reads the standard AWS environment (this test's endpoint).
    // SAFETY: the other tests of this binary give their endpoint in their configuration.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL", kl.url()) };
    let report = bitacora_stream::loadgen::run(&bitacora_stream::loadgen::LoadParams {
        to: "kinesis://gen".into(),
        rate: 2000,
        duration: Duration::from_millis(500),
        duplicates: 0.1,
        seed: 3,
        batch: Some(100),
        concurrency: 2,
        token: None,
        pregenerate: false,
    })
    .await
    .unwrap();
    assert_eq!(report.sent, 1000);
    assert_eq!(report.accepted, 1000, "every record put: {report:?}");
    let svc = Svc::start(&config(tmp.path(), &kl, "gen", &redis, "out")).await;
    let want = (report.new + report.text) as usize;
    let rows = wait_rows(&[tmp.path().join("out")], want, Duration::from_secs(30)).await;
    let m = svc.metrics().await;
    svc.stop().await;
    assert_eq!(rows.len(), want, "copies filtered");
    assert_eq!(
        metric(&m, "bitacora_stream_duplicates_total{source=\"kinesis\"}"),
        report.redelivered as f64
    );
    assert_eq!(
        metric(&m, "bitacora_stream_quarantined_total{source=\"kinesis\"}"),
        report.malformed as f64
    );
}

/// Distinct event ids in the closed and open parts of a file route (a killed service leaves its
/// part open; the next start closes it).
fn ids_anywhere(dir: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(id) = v["event_id"].as_str()
            {
                *m.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_and_a_restart_deliver_every_record_filtering_what_was_delivered() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let redis = Redis::start();
    let k = kl.client();
    create(&k, "crash", 2).await;
    put(&k, "crash", 1, 600).await;
    // Slow reading (20 records per call, 5 calls/s per shard): the kill lands mid-stream.
    let body = config(tmp.path(), &kl, "crash", &redis, "out")
        .replace("lease_secs = 2", "lease_secs = 2\nmax_records = 20");
    let path = tmp.path().join("bitacora.toml");
    std::fs::write(&path, format!("[stream]\n{body}")).unwrap();
    let out = tmp.path().join("out");
    let mut first = StreamBinary::start(&path, free_port(), AWS_TEST_ENV);
    let until = Instant::now() + Duration::from_secs(30);
    while ids_anywhere(&out).len() < 100 {
        assert!(Instant::now() < until, "nothing read in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.signal(libc::SIGKILL);
    // The killed instance's claims on its batch in flight last claim_secs (3 s here): the new
    // instance's reader of that shard waits for them, then delivers those records itself.
    let before = ids_anywhere(&out).len();
    assert!(
        before < 600,
        "the kill came too late to test anything: {before}"
    );
    // The restart resumes from the checkpoints: what was delivered before the kill is filtered.
    let _second = StreamBinary::start(&path, free_port(), AWS_TEST_ENV);
    put(&k, "crash", 2, 200).await;
    let rows = wait_rows(std::slice::from_ref(&out), 800, Duration::from_secs(60)).await;
    let c = counts(&rows);
    assert_eq!(c.len(), 800, "every record, at least once");
    let twice = c.values().filter(|n| **n > 1).count();
    // At most the batches in flight at the kill (one per shard, 20 records each) come twice.
    assert!(
        twice <= 40,
        "{twice} records twice: the checkpoints and the dedup window should filter what was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_stream_loses_nothing() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let mut redis = Redis::start();
    let k = kl.client();
    create(&k, "flaky", 2).await;
    let body = config(tmp.path(), &kl, "flaky", &redis, "out")
        .replace("lease_secs = 2", "lease_secs = 2\nmax_records = 20");
    let svc = Svc::start(&body).await;
    put(&k, "flaky", 1, 400).await;
    let out = [tmp.path().join("out")];
    wait_rows(&out, 50, Duration::from_secs(30)).await;
    // Redis goes away for two seconds and comes back empty (it keeps nothing on disk): its
    // leases, checkpoints and dedup keys are gone with it.
    redis.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    put(&k, "flaky", 2, 100).await;
    let rows = wait_rows(&out, 500, Duration::from_secs(60)).await;
    svc.stop().await;
    // Every record at least once; what was delivered before the restart may come again (the
    // checkpoints were lost with Redis), never nothing.
    assert_eq!(counts(&rows).len(), 500);
}

/// A proxy in front of kinesis-local that answers some calls with an AWS error instead of
/// forwarding them: `fault(operation, n)` (n counts that operation's calls from 1) returns the
/// error's `__type`, or `None` to forward. Counts every operation it saw.
struct FaultProxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultProxy {
    fn start<F>(upstream: String, fault: F) -> FaultProxy
    where
        F: Fn(&str, usize) -> Option<&'static str> + Send + Sync + 'static,
    {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let counts = seen.clone();
        let fault = Arc::new(fault);
        let client = reqwest::Client::new();
        let (addr, stop_tx) = serve_on_thread(move |req| {
            let (client, upstream, counts, fault) = (
                client.clone(),
                upstream.clone(),
                counts.clone(),
                fault.clone(),
            );
            async move { proxy_one(req, &client, &upstream, &counts, &*fault).await }
        });
        FaultProxy {
            port: addr.port(),
            seen,
            stop: Some(stop_tx),
        }
    }

    fn seen(&self, op: &str) -> usize {
        self.seen.lock().unwrap().get(op).copied().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn proxy_one(
    req: hyper::Request<hyper::body::Incoming>,
    client: &reqwest::Client,
    upstream: &str,
    counts: &std::sync::Mutex<BTreeMap<String, usize>>,
    fault: &(dyn Fn(&str, usize) -> Option<&'static str> + Send + Sync),
) -> StandInResponse {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // `X-Amz-Target: Kinesis_20131202.GetRecords`
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_string();
    let n = {
        let mut c = counts.lock().unwrap();
        let n = c.entry(op.clone()).or_default();
        *n += 1;
        *n
    };
    let reply = |status: u16, ctype: String, body: bytes::Bytes| {
        let mut r = hyper::Response::new(http_body_util::Full::new(body));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", ctype.parse().unwrap());
        r
    };
    if let Some(error) = fault(&op, n) {
        let text = serde_json::json!({"__type": error, "message": format!("injected by the test ({op} #{n})")});
        return reply(
            400,
            "application/x-amz-json-1.1".into(),
            text.to_string().into(),
        );
    }
    let mut fwd = client.request(
        reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap(),
        format!(
            "{upstream}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        ),
    );
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            fwd = fwd.header(k.as_str(), v.as_bytes());
        }
    }
    match fwd.body(body).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/x-amz-json-1.1")
                .to_string();
            let body = r.bytes().await.unwrap_or_default();
            reply(status, ctype, body)
        }
        Err(e) => reply(502, "text/plain".into(), e.to_string().into()),
    }
}

/// Sum of a metric's series over every label set.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_expired_reads_back_off_and_lose_nothing() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let kl = KinesisLocal::start();
    let redis = Redis::start();
    let k = kl.client();
    create(&k, "faults", 1).await;
    put(&k, "faults", 0, 300).await;
    // GetRecords: calls 2–9 throttled (more than the SDK's own 3 attempts, so the reader's
    // backoff is reached), call 12 answered "iterator expired".
    let proxy = FaultProxy::start(kl.url(), |op, n| match (op, n) {
        ("GetRecords", 2..=9) => Some("ProvisionedThroughputExceededException"),
        ("GetRecords", 12) => Some("ExpiredIteratorException"),
        _ => None,
    });
    let conf = config(tmp.path(), &kl, "faults", &redis, "out").replace(
        &format!("endpoint_url = \"{}\"", kl.url()),
        &format!(
            "endpoint_url = \"http://127.0.0.1:{}\"\nmax_records = 50",
            proxy.port
        ),
    );
    let svc = Svc::start(&conf).await;
    let first = wait_rows(&[tmp.path().join("out")], 300, Duration::from_secs(60)).await;
    // More records after the expired iterator: read from the checkpoint on, nothing skipped.
    put(&k, "faults", 1, 200).await;
    let rows = wait_rows(&[tmp.path().join("out")], 500, Duration::from_secs(60)).await;
    let m = svc.metrics().await;
    svc.stop().await;
    assert!(first.len() >= 300);
    let c = counts(&rows);
    assert_eq!(c.len(), 500, "every record delivered");
    assert!(
        c.values().all(|n| *n == 1),
        "re-read records are duplicates, filtered: {:?}",
        c.iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        metric_sum(&m, "bitacora_stream_shard_throttled_total") >= 1.0,
        "throttled reads counted"
    );
    assert!(proxy.seen("GetRecords") >= 13, "{:?}", proxy.seen);
    // The expired iterator is replaced by a new one (from the checkpoint): one for the start,
    // at least one after the expiry.
    assert!(
        proxy.seen("GetShardIterator") >= 2,
        "{:?}",
        proxy.seen.lock().unwrap()
    );
}
