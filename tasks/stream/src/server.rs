//! The service's HTTP port: `POST /v1/logs` (when the source is `http`), `/metrics`
//! (Prometheus), `/healthz`, and the live dashboard ([`crate::dashboard`]: `/`, `/api/live`,
//! `/api/live/events`). HTTP/1.1 with a header-read timeout against slow clients; on shutdown it stops
//! accepting and lets the requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::dashboard::{LiveEvents, PAGE, Snapshot};
use crate::pipeline::Pipeline;
use crate::sources::http::{HttpSource, json_response};
use crate::{Error, Result};

pub struct Server {
    pub pipeline: Arc<Pipeline>,
    pub ingest: Option<Arc<HttpSource>>,
    pub source_kind: &'static str,
    /// Turns true when the service stops (the dashboard's event streams end).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// A response's body: whole, or a stream (the dashboard's events).
type Body = BoxBody<Bytes, Infallible>;

fn with_type(body: Body, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn whole(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

impl Server {
    async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let metrics = &self.pipeline.metrics;
        match (req.method(), path.as_str()) {
            (&Method::POST, "/v1/logs") => match &self.ingest {
                Some(s) => s.ingest(&self.pipeline, req).await.map(BodyExt::boxed),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "the source is not http: POST /v1/logs is off"}),
                )
                .map(BodyExt::boxed),
            },
            (_, "/v1/logs") => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "POST NDJSON here"}),
            )
            .map(BodyExt::boxed),
            (&Method::GET, "/healthz") => {
                json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
                    .map(BodyExt::boxed)
            }
            (&Method::GET, "/metrics") => with_type(
                whole(metrics.render(self.source_kind)),
                "text/plain; version=0.0.4",
            ),
            (&Method::GET, "/" | "/index.html") => {
                with_type(whole(PAGE), "text/html; charset=utf-8")
            }
            (&Method::GET, "/favicon.ico") => {
                let mut r = Response::new(whole(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            (&Method::GET, "/api/live") => with_type(
                whole(Snapshot::of(metrics, self.source_kind).to_json()),
                "application/json",
            ),
            (&Method::GET, "/api/live/events") => {
                let events =
                    LiveEvents::new(metrics.clone(), self.source_kind, self.stopping.clone());
                let mut r = with_type(events.boxed(), "text/event-stream");
                r.headers_mut().insert(
                    "cache-control",
                    hyper::header::HeaderValue::from_static("no-store"),
                );
                r
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": format!("no {path}")}),
            )
            .map(BodyExt::boxed),
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
