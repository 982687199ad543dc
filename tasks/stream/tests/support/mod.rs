//! Shared helpers of the stream service's tests: the service in-process on a free port, a
//! private Redis server, a scripted HTTP peer, and readers of file-sink output.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitacora_stream::StreamConfig;
use bitacora_stream::service::Report;
pub use bitacora_stream::testing::*;

/// The service running in this process.
pub struct Svc {
    pub addr: SocketAddr,
    running: bitacora_stream::service::Running,
}

impl Svc {
    /// Starts the service with the `[stream]`-level TOML `body` (`listen` is set to a free port).
    pub async fn start(body: &str) -> Svc {
        let text = format!("[stream]\nlisten = \"127.0.0.1:0\"\n{body}");
        let config = bitacora_core::Config::from_toml_str(&text).unwrap();
        let stream: StreamConfig = config.component().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let running = tokio::time::timeout(
            Duration::from_secs(20),
            bitacora_stream::service::Running::start(config, stream),
        )
        .await
        .expect("service did not start in 20 s")
        .expect("service failed to start");
        Svc {
            addr: running.addr,
            running,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops it (as SIGTERM does) and returns its report.
    pub async fn stop(self) -> Report {
        tokio::time::timeout(Duration::from_secs(60), self.running.stop())
            .await
            .expect("service did not stop in 60 s")
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of a metric line (`name{labels}` exactly) in a Prometheus text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} not in metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// POSTs NDJSON lines; returns (status, body).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    lines: &[String],
) -> (u16, serde_json::Value) {
    let body = lines.join("\n") + "\n";
    let r = client.post(url).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, v)
}

/// POSTs until a 200 (as a producer does after 429/503 or a lost connection), bounded in time.
pub async fn post_until_ok(
    client: &reqwest::Client,
    url: &str,
    lines: &[String],
    budget: Duration,
) -> serde_json::Value {
    let until = Instant::now() + budget;
    let body = lines.join("\n") + "\n";
    let mut last = String::new();
    while Instant::now() < until {
        match client.post(url).body(body.clone()).send().await {
            Ok(r) if r.status().as_u16() == 200 => return r.json().await.unwrap(),
            Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no 200 within {budget:?}: {last}");
}

/// Sends the request `make` builds until it is answered `status`, or `budget` passes; returns
/// the last answer (the caller asserts on it).
pub async fn send_until_status(
    make: impl Fn() -> reqwest::RequestBuilder,
    status: u16,
    budget: Duration,
) -> reqwest::Response {
    let until = Instant::now() + budget;
    loop {
        let r = make().send().await.unwrap();
        if r.status().as_u16() == status || Instant::now() > until {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The credentials and region the AWS SDK reads from the environment in these tests.
pub const AWS_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The `bitacora-stream` binary on `port`, in its own process group (killed with SIGKILL,
/// group and all, when dropped); started once it listens.
pub struct StreamBinary {
    child: Option<Child>,
    pub port: u16,
}

impl StreamBinary {
    pub fn start(config: &Path, port: u16, env: &[(&str, &str)]) -> StreamBinary {
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_bitacora-stream"))
            .arg("--config")
            .arg(config)
            .env("BITACORA_STREAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("BITACORA_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap();
        let s = StreamBinary {
            child: Some(child),
            port,
        };
        wait_listening(port, "bitacora-stream", Duration::from_secs(20));
        s
    }

    /// The ingest URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/logs", self.port)
    }

    /// Sends `sig` and waits (60 s at most) for the exit: its code and what it printed.
    pub fn signal(&mut self, sig: libc::c_int) -> (i32, String) {
        use std::io::Read;
        let mut child = self.child.take().expect("the binary was already stopped");
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

impl Drop for StreamBinary {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: the child leads its own process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

pub mod sources;
