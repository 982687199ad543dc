//! The `bitacora-stream` binary as an operator runs it: SIGTERM drains and exits 0 with its
//! report; kill -9 mid-stream and a restart lose nothing (producers send unacknowledged batches
//! again, the Redis window filters what was delivered before the kill).

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

struct Service {
    child: Option<Child>,
    port: u16,
}

impl Service {
    fn start(config: &Path, port: u16) -> Service {
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_bitacora-stream"))
            .arg("--config")
            .arg(config)
            .env("BITACORA_STREAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("BITACORA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap();
        let s = Service {
            child: Some(child),
            port,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "bitacora-stream did not listen on {port} in 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/logs", self.port)
    }

    fn signal(&mut self, sig: libc::c_int) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < until,
                "bitacora-stream did not exit in 60 s after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        (status.code().unwrap_or(-1), out)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: the child leads its own process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_closes_files_and_reports() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &redis.url());
    let mut svc = Service::start(&config, free_port());
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
    let mut svc = Service::start(&config, port);
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
    let mut svc = Service::start(&config, port);
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
