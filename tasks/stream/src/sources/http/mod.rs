//! `kind = "http"`: `POST /v1/logs` (DESIGN.md's HTTP ingest API).
//!
//! The body is NDJSON (optionally `Content-Encoding: gzip`); each line is an app message (a JSON
//! object, or any text) or a CloudWatch envelope. The answer is `200 {"accepted", "duplicates",
//! "quarantined"}` only after every matching route accepted the batch; `429` with `Retry-After`
//! when the service's queue (`stream.queue_records`) has no room for the batch; `413` over
//! `max_body_bytes` (or `max_decoded_bytes` once decompressed); `401` without the bearer token
//! when one is set; `503` with `Retry-After` when the batch could not be delivered in
//! `request_timeout_secs` (send it again: nothing of it counts as delivered).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;

use super::StreamSource;
use crate::Result;
use crate::pipeline::Pipeline;
use crate::record::{envelope_of_line, now_ms};
use bitacora_core::lines::line_ranges;

pub type Body = Full<Bytes>;

pub struct HttpSource {
    pub token: Option<String>,
    pub max_body_bytes: u64,
    pub max_decoded_bytes: u64,
    pub queue_records: u64,
    /// Body bytes being received (`stream.max_buffered_bytes`).
    pub bodies: Arc<Semaphore>,
    pub queue: Arc<Semaphore>,
    pub timeout: Duration,
    pub log_stream: String,
}

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, serde_json::json!({"error": message.into()}))
}

fn retry_later(status: StatusCode, message: impl Into<String>, secs: u64) -> Response<Body> {
    let mut r = error(status, message);
    r.headers_mut().insert(
        "retry-after",
        hyper::header::HeaderValue::from_str(&secs.to_string())
            .unwrap_or(hyper::header::HeaderValue::from_static("1")),
    );
    r
}

/// Compares in time independent of where the first difference is.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl HttpSource {
    /// Serves one `POST /v1/logs`.
    pub async fn ingest(
        &self,
        pipeline: &Arc<Pipeline>,
        req: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        if let Some(token) = &self.token {
            let given = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    // The scheme is case-insensitive (RFC 9110 §11.1).
                    let (scheme, rest) = v.split_at_checked(7)?;
                    scheme.eq_ignore_ascii_case("bearer ").then_some(rest)
                })
                .unwrap_or_default();
            if !same_token(given.trim().as_bytes(), token.as_bytes()) {
                let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                r.headers_mut().insert(
                    "www-authenticate",
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
        }
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body larger than stream.max_body_bytes = {}",
                    self.max_body_bytes
                ),
            );
        }
        let gzip = match req
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("gzip") => true,
            Some(v) if v.eq_ignore_ascii_case("identity") => false,
            Some(v) => {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("content-encoding {v:?}: send gzip or nothing"),
                );
            }
        };
        let log_stream = req
            .headers()
            .get("x-log-stream")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| self.log_stream.clone(), str::to_string);
        // Bodies held at once are bounded before one is read: many connections sending large
        // bodies get 429, memory does not grow with them. Held until the records are queued.
        let weight = declared.unwrap_or(self.max_body_bytes).max(1);
        let Ok(body_permit) = u32::try_from(weight).map_err(|_| ()).and_then(|w| {
            self.bodies
                .clone()
                .try_acquire_many_owned(w)
                .map_err(|_| ())
        }) else {
            pipeline.metrics.rejected_batches_full.fetch_add(1, Relaxed);
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too many request bodies being received (stream.max_buffered_bytes): send this batch again later",
                1,
            );
        };
        // A slow client gets the request's time budget for its body, not more.
        let limited = Limited::new(req.into_body(), self.max_body_bytes as usize);
        let body = match tokio::time::timeout(self.timeout, limited.collect()).await {
            Err(_) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body not received in stream.request_timeout_secs",
                );
            }
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "body larger than stream.max_body_bytes = {}",
                            self.max_body_bytes
                        ),
                    );
                }
                return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"));
            }
            Ok(Ok(b)) => b.to_bytes(),
        };
        let text = if gzip {
            // Decompressing is CPU work: off the runtime's threads, so other requests go on.
            let limit = self.max_decoded_bytes;
            let decoded = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&body[..])
                    .take(limit + 1)
                    .read_to_end(&mut out)
                    .map(|_| out)
            })
            .await;
            let out = match decoded {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("gzip body: {e}")),
                Err(e) => {
                    return retry_later(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("decompressing the body: {e}"),
                        1,
                    );
                }
            };
            if out.len() as u64 > self.max_decoded_bytes {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "decompressed body larger than stream.max_decoded_bytes = {}",
                        self.max_decoded_bytes
                    ),
                );
            }
            bytes::Bytes::from(out)
        } else {
            body
        };
        let received = now_ms();
        // One UTF-8 check of the whole body (the usual case); line by line, with
        // replacement characters, only for a body that is not valid UTF-8.
        // Sized by the body's lines at once (a record is a few hundred bytes to move), at most
        // one more than a batch may hold (a body of blank lines reserves nothing much).
        let lines = memchr::memchr_iter(b'\n', &text).count() + 1;
        let mut records =
            Vec::with_capacity(lines.min(self.queue_records.saturating_add(1) as usize));
        match std::str::from_utf8(&text) {
            Ok(text) => records.extend(
                line_ranges(text.as_bytes())
                    .map(|r| &text[r])
                    .map(|l| l.strip_suffix('\r').unwrap_or(l))
                    .filter(|l| !l.bytes().all(|b| b.is_ascii_whitespace()))
                    .map(|l| envelope_of_line(l, received, &log_stream)),
            ),
            Err(_) => records.extend(
                line_ranges(&text)
                    .map(|r| &text[r])
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                    .map(|l| envelope_of_line(&String::from_utf8_lossy(l), received, &log_stream)),
            ),
        }
        let n = records.len() as u64;
        if n == 0 {
            return json_response(
                StatusCode::OK,
                serde_json::json!({"accepted": 0, "duplicates": 0, "quarantined": 0}),
            );
        }
        if n > self.queue_records {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{n} records in one batch, more than stream.queue_records = {}: send smaller batches",
                    self.queue_records
                ),
            );
        }
        let Ok(permit) = self.queue.clone().try_acquire_many_owned(n as u32) else {
            pipeline.metrics.rejected_batches_full.fetch_add(1, Relaxed);
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "queue full: send this batch again later",
                1,
            );
        };
        // The batch runs as its own task: a client that hangs up or times out does not cut it
        // off half-way (its claims held, its records half handed over); it finishes, and a
        // copy the client sends again is then a duplicate.
        drop(body_permit);
        let p = pipeline.clone();
        let (tx, answer) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            p.metrics.in_flight_records.fetch_add(n, Relaxed);
            p.process_answering(&records, tx).await;
            p.metrics.in_flight_records.fetch_sub(n, Relaxed);
            drop(permit);
        });
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(Ok(o))) => {
                json_response(StatusCode::OK, serde_json::to_value(o).unwrap_or_default())
            }
            Ok(Ok(Err(e))) => retry_later(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), 2),
            Ok(Err(_)) => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the batch's task stopped before answering",
                2,
            ),
            Err(_) => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "not delivered to every route within stream.request_timeout_secs: send it again (what was delivered meanwhile is then a duplicate)",
                2,
            ),
        }
    }
}

#[async_trait]
impl StreamSource for HttpSource {
    fn kind(&self) -> &'static str {
        "http"
    }

    /// Requests arrive through the service's HTTP server ([`crate::server`]), which calls
    /// [`HttpSource::ingest`]; this only waits for shutdown (the server drains the requests).
    async fn run(
        self: Arc<Self>,
        _pipeline: Arc<Pipeline>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        Ok(())
    }
}
