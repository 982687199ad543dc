//! The service's HTTP port: `POST /v1/logs` (when the source is `http`), `/metrics`
//! (Prometheus), `/healthz`, and `/` (a page pointing at them; the live dashboard comes with the
//! next issue). HTTP/1.1 with a header-read timeout against slow clients; on shutdown it stops
//! accepting and lets the requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::pipeline::Pipeline;
use crate::sources::http::{Body, HttpSource, json_response};
use crate::{Error, Result};

pub struct Server {
    pub pipeline: Arc<Pipeline>,
    pub ingest: Option<Arc<HttpSource>>,
    pub source_kind: &'static str,
}

impl Server {
    async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::POST, "/v1/logs") => match &self.ingest {
                Some(s) => s.ingest(&self.pipeline, req).await,
                None => json_response(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "the source is not http: POST /v1/logs is off"}),
                ),
            },
            (_, "/v1/logs") => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "POST NDJSON here"}),
            ),
            (&Method::GET, "/healthz") => {
                json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/metrics") => {
                let mut r = Response::new(Full::new(Bytes::from(
                    self.pipeline.metrics.render(self.source_kind),
                )));
                r.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            (&Method::GET, "/") => {
                let mut r = Response::new(Full::new(Bytes::from_static(INDEX.as_bytes())));
                r.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": format!("no {path}")}),
            ),
        }
    }

    /// Serves on `listener` until `shutdown` turns true, then waits up to `drain` for the
    /// requests in flight.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        drain: Duration,
    ) -> Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let (stream, _peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            let svc = service_fn(move |req| {
                let me = me.clone();
                async move { Ok::<_, Infallible>(me.handle(req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection: {e}");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still in flight after {drain:?}: stopping anyway (their senders send them again)"
            );
        }
        Ok(())
    }
}

/// Binds the service's port, naming the setting when it cannot.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config("stream.listen", format!("cannot listen on {addr}: {e}")))
}

const INDEX: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bitacora-stream</title></head>
<body><h1>bitacora-stream</h1>
<p>Ingest: <code>POST /v1/logs</code> (NDJSON). Metrics: <a href="/metrics">/metrics</a>. Health: <a href="/healthz">/healthz</a>.</p>
</body></html>
"#;
