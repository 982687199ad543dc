//! A Lambda Runtime API stand-in (the interface Lambda gives a `provided.al2023` bootstrap) and
//! the handler binaries driven through it, with event JSON shaped as AWS sends it.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
pub use bitacora_stream::testing::*;
use bitacora_stream::testing::{StandInResponse, serve_on_thread};
use serde_json::{Value, json};

const API: &str = "/2018-06-01/runtime";

#[derive(Default)]
struct State {
    queue: Mutex<VecDeque<(String, String)>>,
    results: Mutex<HashMap<String, (String, String)>>,
    init_error: Mutex<Option<String>>,
    /// When the handler first asked for an invocation (its cold start is over).
    first_poll: Mutex<Option<Instant>>,
}

/// The Runtime API on a free loopback port: `/next` hands out queued events, `/response` and
/// `/error` are kept by request id, `/init/error` is kept.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    state: Arc<State>,
    seq: AtomicU64,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let state = Arc::new(State::default());
        let st = state.clone();
        let (addr, stop) = serve_on_thread(move |req: hyper::Request<hyper::body::Incoming>| {
            let st = st.clone();
            async move { answer(&st, req).await }
        });
        RuntimeApi {
            addr,
            state,
            seq: AtomicU64::new(0),
            _stop: stop,
        }
    }

    /// Invokes the function with `event`; returns `("response" | "error", body)`.
    pub fn invoke(&self, event: &Value) -> (String, Value) {
        let id = format!("req-{}", self.seq.fetch_add(1, Ordering::Relaxed));
        self.state
            .queue
            .lock()
            .unwrap()
            .push_back((id.clone(), event.to_string()));
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((kind, body)) = self.state.results.lock().unwrap().remove(&id) {
                let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
                return (kind, v);
            }
            if let Some(e) = self.state.init_error.lock().unwrap().clone() {
                panic!("the handler failed its cold start: {e}");
            }
            assert!(Instant::now() < until, "no answer to {id} in 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Invokes and expects a response (not an error).
    pub fn response(&self, event: &Value) -> Value {
        let (kind, body) = self.invoke(event);
        assert_eq!(kind, "response", "{body}");
        body
    }

    /// When the handler first asked for work, waiting up to 30 s.
    pub fn ready_at(&self) -> Instant {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = *self.state.first_poll.lock().unwrap() {
                return t;
            }
            if let Some(e) = self.state.init_error.lock().unwrap().clone() {
                panic!("the handler failed its cold start: {e}");
            }
            assert!(Instant::now() < until, "the handler never polled in 30 s");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

async fn answer(st: &State, req: hyper::Request<hyper::body::Incoming>) -> StandInResponse {
    use http_body_util::BodyExt;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let reply = |status: u16, body: String| {
        let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r
    };
    if method == hyper::Method::GET && path == format!("{API}/invocation/next") {
        st.first_poll
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        // Long poll, bounded: Lambda holds it until an event comes.
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            let next = st.queue.lock().unwrap().pop_front();
            if let Some((id, body)) = next {
                let deadline = bitacora_stream::record::now_ms() + 60_000;
                let mut r = reply(200, body);
                let h = r.headers_mut();
                h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                h.insert(
                    "lambda-runtime-deadline-ms",
                    deadline.to_string().parse().unwrap(),
                );
                h.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:bitacora"
                        .parse()
                        .unwrap(),
                );
                h.insert(
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793".parse().unwrap(),
                );
                return r;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        return reply(500, "no event".into());
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    if method == hyper::Method::POST && path == format!("{API}/init/error") {
        *st.init_error.lock().unwrap() = Some(body);
        return reply(202, "{}".into());
    }
    if method == hyper::Method::POST
        && let Some(rest) = path.strip_prefix(&format!("{API}/invocation/"))
        && let Some((id, kind)) = rest.split_once('/')
    {
        st.results
            .lock()
            .unwrap()
            .insert(id.to_string(), (kind.to_string(), body));
        return reply(202, "{}".into());
    }
    reply(404, format!("{method} {path}"))
}

/// A handler binary running against a [`RuntimeApi`], killed (process group and all) when
/// dropped.
pub struct Handler {
    child: Child,
    pub log: PathBuf,
    pub started: Instant,
}

impl Handler {
    /// Starts `bin` (a `CARGO_BIN_EXE_…` path) with `BITACORA_CONFIG=config`.
    pub fn start(bin: &str, api: &RuntimeApi, config: &Path, env: &[(&str, &str)]) -> Handler {
        use std::os::unix::process::CommandExt;
        let log = config.with_extension(format!("{}.log", api.addr.port()));
        let err = std::fs::File::create(&log).unwrap();
        let started = Instant::now();
        let child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bitacora")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bitacora")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/02/[$LATEST]abc")
            .env("AWS_REGION", "us-east-1")
            .env("BITACORA_CONFIG", config)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        Handler {
            child,
            log,
            started,
        }
    }

    /// Waits for the process to exit on its own (up to `budget`).
    pub fn wait_exit(&mut self, budget: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + budget;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < until, "still running after {budget:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signals the process group this handle started.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn gzip(s: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// A Kinesis event as Lambda sends it (`data` per record; sequence numbers `seq-<n>`).
pub fn kinesis_event(datas: &[Vec<u8>], first_seq: u64) -> Value {
    let records: Vec<Value> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let seq = format!("4959{:020}", first_seq + i as u64);
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("p{i}"),
                    "sequenceNumber": seq,
                    "data": b64(d),
                    "approximateArrivalTimestamp": 1764633600.123,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/bitacora-fanout",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/mobile-logs",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The sequence number [`kinesis_event`] gives record `i` of a batch starting at `first_seq`.
pub fn seq(first_seq: u64, i: usize) -> String {
    format!("4959{:020}", first_seq + i as u64)
}

/// An SQS event as Lambda sends it (message ids `m-<n>`).
pub fn sqs_event(bodies: &[String], first_id: u64) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m-{}", first_id + i as u64),
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": b,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764633600123",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1764633600200",
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fanout-analytics",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// An SNS notification as an SQS queue subscribed without raw message delivery holds it.
pub fn sns_notification(message: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:analytics",
        "Message": message,
        "Timestamp": "2026-12-02T00:00:00.123Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    })
    .to_string()
}

/// A Kinesis Data Firehose transformation event (record ids `r-<n>`).
pub fn firehose_event(datas: &[Vec<u8>]) -> Value {
    let records: Vec<Value> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({
                "recordId": format!("r-{i}"),
                "approximateArrivalTimestamp": 1764633600123i64,
                "data": b64(d),
            })
        })
        .collect();
    json!({
        "invocationId": "invocation-1",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/to-opensearch",
        "region": "us-east-1",
        "records": records,
    })
}

/// A CloudWatch Logs subscription payload (gzip JSON) of `messages`.
pub fn subscription(messages: &[String]) -> Vec<u8> {
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("cw-{i}"), "timestamp": 1764633600000i64 + i as i64, "message": m}))
        .collect();
    gzip(
        &json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/mobile/app",
            "logStream": "ios-1",
            "subscriptionFilters": ["to-kinesis"],
            "logEvents": events,
        })
        .to_string(),
    )
}

/// Every line of the `*.jsonl` files under `dir`, closed or still open (a handler's file parts
/// stay open between invocations; what they hold was acknowledged).
pub fn all_lines(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<Value>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p, out);
            } else if name.ends_with(".jsonl") || name.ends_with(".jsonl.open") {
                for l in std::fs::read_to_string(&p).unwrap().lines() {
                    out.push(serde_json::from_str(l).unwrap());
                }
            }
        }
    }
    walk(dir, &mut out);
    out
}
