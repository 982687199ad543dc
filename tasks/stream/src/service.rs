//! The service: builds the configured source, dedup store, routes and quarantine, serves until
//! asked to stop, then drains — stops taking input, lets in-flight batches finish (each route
//! delivers its buffer and flushes its sinks), and reports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bitacora_core::Config;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, owner_token};
use crate::server::{Server, bind};
use crate::sources::http::HttpSource;
use crate::sources::{SourceKind, StreamSource};
use crate::{Result, StreamConfig};

/// The JSON report printed when the service stops.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub status: &'static str,
    pub listen: String,
    pub uptime_secs: f64,
    pub records_in: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub failed_batches: u64,
    pub routes: Vec<RouteReport>,
}

#[derive(Debug, Serialize)]
pub struct RouteReport {
    pub name: String,
    pub delivered: u64,
    pub dead_lettered: u64,
}

/// Runs the service until `shutdown` turns true. `ready` receives the bound address once it
/// serves (tests bind port 0).
pub async fn run(
    config: &Config,
    stream: &StreamConfig,
    shutdown: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<Report> {
    let started = Instant::now();
    let instance = owner_token();
    let token = stream.auth_token()?;
    let listener = bind(stream.listen_addr()).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::Error::config("stream.listen", e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
    let (pipeline, workers) =
        Pipeline::build(config, stream, instance, metrics.clone(), true).await?;
    let pipeline = Arc::new(pipeline);
    let ingest = match stream.source.kind {
        SourceKind::Http => Some(Arc::new(HttpSource {
            token,
            max_body_bytes: stream.max_body_bytes,
            max_decoded_bytes: stream.max_decoded_bytes,
            queue_records: stream.queue_records,
            bodies: Arc::new(Semaphore::new(
                stream.max_buffered_bytes.min(Semaphore::MAX_PERMITS as u64) as usize,
            )),
            queue: Arc::new(Semaphore::new(
                stream.queue_records.min(Semaphore::MAX_PERMITS as u64) as usize,
            )),
            timeout: Duration::from_secs(stream.request_timeout_secs),
            log_stream: stream.source.default_log_stream(),
        })),
        SourceKind::Kinesis => None,
    };
    let source: Arc<dyn StreamSource> = match &ingest {
        Some(s) => s.clone(),
        None => kinesis_source(stream, &pipeline.instance).await?,
    };
    let server = Arc::new(Server {
        pipeline: pipeline.clone(),
        ingest,
        source_kind: source.kind(),
        stopping: shutdown.clone(),
    });
    if pipeline.alerts.is_some() {
        tokio::spawn(crate::alerts::run(Arc::downgrade(&pipeline)));
    }
    tracing::info!(
        "bitacora-stream listening on http://{addr} (source {}, dedup {})",
        source.kind(),
        stream.dedup.kind_name()
    );
    if let Some(tx) = ready {
        let _ = tx.send(addr);
    }
    let drain = Duration::from_secs(stream.drain_secs);
    // One budget for the whole drain (requests in flight, then the routes' buffers), counted
    // from the signal.
    let stopping = {
        let mut rx = shutdown.clone();
        tokio::spawn(async move {
            let _ = rx.wait_for(|stop| *stop).await;
            tokio::time::Instant::now()
        })
    };
    let (served, sourced) = tokio::join!(
        server.clone().serve(listener, shutdown.clone(), drain),
        source.clone().run(pipeline.clone(), shutdown)
    );
    served?;
    sourced?;
    tracing::info!("draining: delivering what the routes hold");
    drop(server);
    drop(source);
    drop(pipeline);
    let signalled = if stopping.is_finished() {
        stopping
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now())
    } else {
        // Stopped for another reason (the source ended): the budget starts now.
        stopping.abort();
        tokio::time::Instant::now()
    };
    let deadline = signalled + drain;
    for w in workers {
        if tokio::time::timeout_at(deadline, w).await.is_err() {
            tracing::warn!(
                "a route did not finish within stream.drain_secs: its unacknowledged batches are sent again by their senders"
            );
        }
    }
    let routes = metrics
        .routes()
        .iter()
        .map(|r| RouteReport {
            name: r.name.clone(),
            delivered: r.delivered.load(Relaxed),
            dead_lettered: r.dead_lettered.load(Relaxed),
        })
        .collect();
    Ok(Report {
        tool: "bitacora-stream",
        status: "ok",
        listen: addr.to_string(),
        uptime_secs: started.elapsed().as_secs_f64(),
        records_in: metrics.records_in.load(Relaxed),
        accepted: metrics.accepted.load(Relaxed),
        duplicates: metrics.duplicates.load(Relaxed),
        quarantined: metrics.quarantined.load(Relaxed),
        failed_batches: metrics.failed_batches.load(Relaxed),
        routes,
    })
}

/// The service running on the caller's runtime (the demo, the tests): [`Running::start`] returns
/// once it serves, [`Running::stop`] stops it as SIGTERM does and returns its report.
pub struct Running {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<Report>>,
}

impl Running {
    pub async fn start(config: Config, stream: StreamConfig) -> Result<Running> {
        let (stop, stopping) = watch::channel(false);
        let (ready, bound) = tokio::sync::oneshot::channel();
        let handle =
            tokio::spawn(async move { run(&config, &stream, stopping, Some(ready)).await });
        match bound.await {
            Ok(addr) => Ok(Running { addr, stop, handle }),
            // It stopped before serving: its error says why.
            Err(_) => Err(match handle.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => crate::Error::Unavailable("the service stopped before serving".into()),
                Err(e) => crate::Error::Unavailable(format!("the service's task: {e}")),
            }),
        }
    }

    /// Stops taking input, drains (within `stream.drain_secs`), returns the report.
    pub async fn stop(self) -> Result<Report> {
        let _ = self.stop.send(true);
        self.handle
            .await
            .map_err(|e| crate::Error::Unavailable(format!("the service's task: {e}")))?
    }
}

/// The Kinesis source of `[stream.source]` (builds with the `aws` feature).
#[cfg(feature = "aws")]
async fn kinesis_source(stream: &StreamConfig, instance: &str) -> Result<Arc<dyn StreamSource>> {
    let source =
        crate::sources::kinesis::KinesisSource::new(&stream.source, &stream.dedup.url, instance)
            .await?;
    Ok(Arc::new(source))
}

#[cfg(not(feature = "aws"))]
async fn kinesis_source(_: &StreamConfig, _: &str) -> Result<Arc<dyn StreamSource>> {
    Err(crate::Error::config(
        "stream.source.kind",
        "\"kinesis\" needs a build with the AWS backends: cargo build --release --features bitacora/aws",
    ))
}

/// Runs the service on its own runtime until SIGTERM or SIGINT, then drains (the binaries'
/// entry point: `bitacora-stream`, `bitacora stream`).
pub fn run_until_signal(config: &Config, stream: &StreamConfig) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Unavailable(format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: no new input; delivering what is in flight");
            let _ = tx.send(true);
        });
        run(config, stream, rx, None).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!(
            "cannot install signal handlers: SIGTERM stops the service without draining"
        );
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
