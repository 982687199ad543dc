//! The `bitacora-stream` binary as an operator runs it: SIGTERM drains and exits 0 with its
//! report; kill -9 mid-stream and a restart lose nothing (producers send unacknowledged batches
//! again, the Redis window filters what was delivered before the kill); a dedup Redis reached
//! over TLS.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

fn write_config(dir: &Path, redis: &str) -> std::path::PathBuf {
    let d = dir.display();
    let path = dir.join("bitacora.toml");
    std::fs::write(
        &path,
        format!(
            r#"[stream]
data_dir = "{d}/data"
[stream.dedup]
kind = "redis"
url = "{redis}"
claim_secs = 2
[[stream.routes]]
name = "files"
sink = {{ kind = "file", path = "{d}/out", max_age_secs = 3600 }}
"#
        ),
    )
    .unwrap();
    path
}

/// ElastiCache with in-transit encryption: a `rediss://` dedup URL, the server's certificate
/// checked against the roots `SSL_CERT_FILE` names (here the private CA that signed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_over_tls_filters_records_sent_again() {
    let redis = Redis::start_tls();
    assert!(redis.url().starts_with("rediss://"));
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &redis.url());
    let ca = redis.ca_file().display().to_string();
    let mut svc = StreamBinary::start(&config, free_port(), &[("SSL_CERT_FILE", &ca)]);
    let client = reqwest::Client::new();
    let lines: Vec<String> = (0..50).map(|i| message(i, "tap")).collect();
    let budget = Duration::from_secs(30);
    let first = post_until_ok(&client, &svc.url(), &lines, budget).await;
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(50), Some(0))
    );
    let again = post_until_ok(&client, &svc.url(), &lines, budget).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(50))
    );
    let (code, out) = svc.signal(libc::SIGTERM);
    assert_eq!(code, 0, "{out}");
    assert_eq!(jsonl(&tmp.path().join("out")).len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_closes_files_and_reports() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &redis.url());
    let mut svc = StreamBinary::start(&config, free_port(), &[]);
    let client = reqwest::Client::new();
    for b in 0..5 {
        let lines: Vec<String> = (0..40).map(|i| message(b * 40 + i, "tap")).collect();
        post_until_ok(&client, &svc.url(), &lines, Duration::from_secs(30)).await;
    }
    let (code, out) = svc.signal(libc::SIGTERM);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["accepted"], 200);
    assert_eq!(report["routes"][0]["delivered"], 200, "{report}");
    // The open part was closed under its final name.
    assert_eq!(jsonl(&tmp.path().join("out")).len(), 200);
    let open = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".open")
        })
        .count();
    assert_eq!(open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_and_restart_loses_nothing() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &redis.url());
    let port = free_port();
    let mut svc = StreamBinary::start(&config, port, &[]);
    let client = reqwest::Client::new();
    let url = svc.url();
    let batches: Vec<Vec<String>> = (0..30)
        .map(|b| (0..50).map(|i| message(b * 50 + i, "tap")).collect())
        .collect();
    // A producer sending every batch until it is acknowledged.
    let producer = {
        let client = client.clone();
        let url = url.clone();
        let batches = batches.clone();
        tokio::spawn(async move {
            for b in &batches {
                post_until_ok(&client, &url, b, Duration::from_secs(90)).await;
            }
        })
    };
    // Kill it once some batches went through, then start it again on the same port.
    let until = Instant::now() + Duration::from_secs(30);
    while jsonl_or_open_lines(&tmp.path().join("out")) < 500 {
        assert!(Instant::now() < until, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = svc.signal(libc::SIGKILL);
    assert_ne!(code, 0);
    let mut svc = StreamBinary::start(&config, port, &[]);
    tokio::time::timeout(Duration::from_secs(120), producer)
        .await
        .unwrap()
        .unwrap();
    let (code, out) = svc.signal(libc::SIGTERM);
    assert_eq!(code, 0, "{out}");
    let rows = jsonl(&tmp.path().join("out"));
    let c = counts(&rows);
    assert_eq!(c.len(), 1500, "every record at least once");
    // Copies only of what was in flight at the kill (one batch at most).
    let extra = rows.len() - c.len();
    assert!(extra <= 50, "{extra} copies");
}

/// Lines written so far, closed files and the open part alike.
fn jsonl_or_open_lines(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            std::fs::read(e.path())
                .map(|b| b.iter().filter(|c| **c == b'\n').count())
                .unwrap_or(0)
        })
        .sum()
}
