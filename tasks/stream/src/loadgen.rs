//! The load generator: `bitacora generate --stream --rate R --duration S --to
//! http://HOST:PORT|kinesis://STREAM`. Realistic app messages ([`bitacora_generate::LiveMessages`])
//! at a steady rate, in batches, with a share of redelivered copies. To HTTP: NDJSON requests; a
//! batch answered 429/503 (or lost) is sent again after a pause, as a producer should. To
//! Kinesis (builds with `aws`; the standard AWS environment): PutRecords of one record per
//! message, partition key = the message's hash, failed records sent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bitacora_generate::{LiveKind, LiveMessages};
use serde::Serialize;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LoadParams {
    /// `http://HOST:PORT` (the service; `/v1/logs` is added).
    pub to: String,
    /// Records per second.
    pub rate: u64,
    pub duration: Duration,
    /// Share of redelivered copies.
    pub duplicates: f64,
    pub seed: u64,
    /// Records per request (default: a tenth of a second's worth, 1..=1000).
    pub batch: Option<usize>,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub token: Option<String>,
    /// Build every request body before the clock starts (a benchmark measures the service,
    /// not the generator); memory: about 400 bytes per record.
    pub pregenerate: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct LoadReport {
    pub tool: &'static str,
    pub status: &'static str,
    pub to: String,
    pub sent: u64,
    pub new: u64,
    pub redelivered: u64,
    pub text: u64,
    pub malformed: u64,
    pub requests: u64,
    pub resent_requests: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    resent: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    quarantined: AtomicU64,
}

/// A batch as a target sends it.
enum Payload {
    Ndjson(String),
    #[cfg(feature = "aws")]
    Records(Vec<String>),
}

/// Where the generator sends.
enum Target {
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
    },
    #[cfg(feature = "aws")]
    Kinesis {
        client: aws_sdk_kinesis::Client,
        stream: String,
    },
}

impl Target {
    async fn new(p: &LoadParams) -> Result<Target> {
        let to = p.to.trim_end_matches('/');
        if let Some(stream) = to.strip_prefix("kinesis://") {
            return Self::kinesis(stream).await;
        }
        if !to.starts_with("http://") && !to.starts_with("https://") {
            return Err(Error::config(
                "--to",
                format!(
                    "expected http://HOST:PORT or kinesis://STREAM, got {:?}",
                    p.to
                ),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Unavailable(format!("http client: {e}")))?;
        Ok(Target::Http {
            client,
            url: format!("{to}/v1/logs"),
            token: p.token.clone(),
        })
    }

    #[cfg(feature = "aws")]
    async fn kinesis(stream: &str) -> Result<Target> {
        crate::sinks::aws::check_name("--to kinesis://STREAM", stream, 128, "_.-")?;
        let sdk = crate::sinks::aws::client::sdk_config(&format!("kinesis {stream}"), &None, &None)
            .await?;
        Ok(Target::Kinesis {
            client: aws_sdk_kinesis::Client::new(&sdk),
            stream: stream.to_string(),
        })
    }

    #[cfg(not(feature = "aws"))]
    async fn kinesis(_: &str) -> Result<Target> {
        Err(Error::config(
            "--to",
            "kinesis:// needs a build with the AWS backends: cargo build --release --features bitacora/aws",
        ))
    }

    /// A batch of messages as this target sends it. HTTP: NDJSON, one message per line — a
    /// message of several lines (a stack trace) goes as a CloudWatch envelope, so that it stays
    /// one record. Kinesis: one record per message.
    fn pack(&self, messages: Vec<String>, now_ms: i64) -> Payload {
        match self {
            Target::Http { .. } => {
                let mut body = String::with_capacity(messages.iter().map(|m| m.len() + 1).sum());
                for m in messages {
                    if m.contains(['\n', '\r']) {
                        body.push_str(
                            &serde_json::json!({"timestamp": now_ms, "message": m}).to_string(),
                        );
                    } else {
                        body.push_str(&m);
                    }
                    body.push('\n');
                }
                Payload::Ndjson(body)
            }
            #[cfg(feature = "aws")]
            Target::Kinesis { .. } => Payload::Records(messages),
        }
    }

    /// Sends one batch until it is taken (bounded tries); counts into `totals`.
    async fn send(&self, payload: &Payload, totals: &Totals) {
        match (self, payload) {
            (Target::Http { client, url, token }, Payload::Ndjson(body)) => {
                send_http(client, url, token, body, totals).await
            }
            #[cfg(feature = "aws")]
            (Target::Kinesis { client, stream }, Payload::Records(records)) => {
                send_kinesis(client, stream, records, totals).await
            }
            #[cfg(feature = "aws")]
            _ => tracing::error!("a batch packed for another target"),
        }
    }
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    token: &Option<String>,
    body: &str,
    totals: &Totals,
) {
    let mut tries = 0u32;
    loop {
        tries += 1;
        totals.requests.fetch_add(1, Relaxed);
        let mut req = client.post(url).body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let wait = match req.send().await {
            Ok(r) if r.status().is_success() => {
                if let Ok(v) = r.bytes().await.map_err(|e| e.to_string()).and_then(|b| {
                    serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
                }) {
                    let get = |k: &str| v[k].as_u64().unwrap_or(0);
                    totals.accepted.fetch_add(get("accepted"), Relaxed);
                    totals.duplicates.fetch_add(get("duplicates"), Relaxed);
                    totals.quarantined.fetch_add(get("quarantined"), Relaxed);
                }
                return;
            }
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_millis(200), |s| {
                    Duration::from_millis(s * 1000 / 4 + 50)
                }),
            Ok(r) => {
                tracing::error!(
                    "{url}: HTTP {}: batch dropped by the server's refusal",
                    r.status()
                );
                return;
            }
            Err(_) => Duration::from_millis(200),
        };
        if tries >= 50 {
            tracing::error!("{url}: gave up on a batch after {tries} tries");
            return;
        }
        totals.resent.fetch_add(1, Relaxed);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(feature = "aws")]
async fn send_kinesis(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[String],
    totals: &Totals,
) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut pending: Vec<PutRecordsRequestEntry> = records
        .iter()
        .filter_map(|l| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(l.as_bytes().to_vec()))
                .partition_key(crate::record::line_hash(l))
                .build()
                .ok()
        })
        .collect();
    let mut tries = 0u32;
    while !pending.is_empty() {
        tries += 1;
        totals.requests.fetch_add(1, Relaxed);
        let chunk: Vec<PutRecordsRequestEntry> = pending.drain(..pending.len().min(500)).collect();
        match client
            .put_records()
            .stream_name(stream)
            .set_records(Some(chunk.clone()))
            .send()
            .await
        {
            Ok(out) => {
                let mut again = Vec::new();
                for (entry, r) in chunk.into_iter().zip(out.records()) {
                    if r.error_code().is_some() {
                        again.push(entry);
                    } else {
                        totals.accepted.fetch_add(1, Relaxed);
                    }
                }
                if again.is_empty() {
                    continue;
                }
                totals.resent.fetch_add(1, Relaxed);
                pending.splice(0..0, again);
            }
            Err(e) => {
                tracing::warn!(
                    "kinesis {stream}: PutRecords: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e)
                );
                totals.resent.fetch_add(1, Relaxed);
                pending.splice(0..0, chunk);
            }
        }
        if tries >= 50 {
            tracing::error!(
                "kinesis {stream}: gave up on {} records after {tries} tries",
                pending.len()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100 << tries.min(4))).await;
    }
}

pub async fn run(p: &LoadParams) -> Result<LoadReport> {
    let target = Arc::new(Target::new(p).await?);
    if p.rate == 0 {
        return Err(Error::config(
            "--rate",
            "must be at least 1 record per second",
        ));
    }
    let batch = p.batch.unwrap_or((p.rate / 10) as usize).clamp(1, 1000);
    let totals = Arc::new(Totals::default());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let sem = Arc::new(tokio::sync::Semaphore::new(p.concurrency.max(1)));
    let mut messages = LiveMessages::new(p.seed, p.duplicates);
    let mut report = LoadReport {
        tool: "bitacora-generate",
        status: "ok",
        to: p.to.clone(),
        ..Default::default()
    };
    let total = (p.rate as f64 * p.duration.as_secs_f64()).round() as u64;
    let mut make_body = |report: &mut LoadReport, n: usize| {
        let mut batch = Vec::with_capacity(n);
        let now = crate::record::now_ms();
        for _ in 0..n {
            let (m, kind) = messages.next_message(now);
            match kind {
                LiveKind::New => report.new += 1,
                LiveKind::Redelivered => report.redelivered += 1,
                LiveKind::Text => report.text += 1,
                LiveKind::Malformed => report.malformed += 1,
            }
            batch.push(m);
        }
        target.pack(batch, now)
    };
    let mut ready: std::collections::VecDeque<Payload> = std::collections::VecDeque::new();
    if p.pregenerate {
        let mut made = 0u64;
        while made < total {
            let n = batch.min((total - made) as usize);
            ready.push_back(make_body(&mut report, n));
            made += n as u64;
        }
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while report.sent < total {
        // Pace: the k-th record is due at k / rate seconds.
        let due = started + Duration::from_secs_f64(report.sent as f64 / p.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let n = batch.min((total - report.sent) as usize);
        let body = match ready.pop_front() {
            Some(b) => b,
            None => make_body(&mut report, n),
        };
        report.sent += n as u64;
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let (target, totals, latencies) = (target.clone(), totals.clone(), latencies.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            target.send(&body, &totals).await;
            latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(t0.elapsed().as_secs_f64() * 1000.0);
        });
        while let Some(done) = tasks.try_join_next() {
            let _ = done;
        }
    }
    while tasks.join_next().await.is_some() {}
    report.seconds = started.elapsed().as_secs_f64();
    report.records_per_sec = report.sent as f64 / report.seconds.max(1e-9);
    report.requests = totals.requests.load(Relaxed);
    report.resent_requests = totals.resent.load(Relaxed);
    report.accepted = totals.accepted.load(Relaxed);
    report.duplicates = totals.duplicates.load(Relaxed);
    report.quarantined = totals.quarantined.load(Relaxed);
    let mut l = latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    l.sort_by(f64::total_cmp);
    let q = |f: f64| {
        l.get(((l.len() as f64 * f) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    report.request_p50_ms = q(0.5);
    report.request_p99_ms = q(0.99);
    Ok(report)
}
