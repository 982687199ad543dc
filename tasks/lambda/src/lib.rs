//! The AWS Lambda handlers of the real-time path, on the stream service's own crates: the same
//! payload decoding ([`bitacora_stream::sources::kinesis::records`]), normalisation
//! ([`bitacora_model::normalize`]), dedup, routes and sinks ([`bitacora_stream::pipeline`]) as
//! `bitacora-stream`, whichever runs them.
//!
//! * [`fanout`]: a Kinesis event → normalise → dedup → the configured routes; records not
//!   delivered are reported in `batchItemFailures` (Lambda resumes from the lowest).
//! * [`dedup`]: an SQS event (a fan-out queue; SNS notifications unwrapped) → dedup → normalise →
//!   routes; messages not delivered are reported in `batchItemFailures`.
//! * [`transform`]: a Kinesis Data Firehose data-transformation function: each record `Ok` with
//!   the routed JSON lines, `Dropped`, or `ProcessingFailed` (Firehose writes it to its error
//!   prefix), in order, within Firehose's response limit.
//!
//! Configuration is read once per cold start ([`Handlers::cold_start`]): `BITACORA_CONFIG` (a file
//! shipped with the function), else `./bitacora.toml`, else the defaults, with the environment
//! overrides of every Bitácora binary (`BITACORA_STREAM_DEDUP_URL`, …). Its clients (Redis, the
//! AWS SDK's) are created then and reused by every invocation.

pub mod config;
pub mod dedup;
pub mod fanout;
pub mod transform;

use std::sync::Arc;

use bitacora_core::Config;
use bitacora_model::normalize::Normalizer;
use bitacora_stream::StreamConfig;
use bitacora_stream::metrics::Metrics;
use bitacora_stream::pipeline::{Pipeline, UnitsReport, owner_token};

pub use config::LambdaConfig;

/// What a handler can fail with at its cold start (an invocation itself never fails: it reports
/// what it could not deliver).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] bitacora_core::Error),
    #[error(transparent)]
    Stream(#[from] bitacora_stream::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a handler builds once per cold start.
pub struct Handlers {
    pub config: Config,
    pub lambda: LambdaConfig,
    /// The routes, dedup store and quarantine of `[stream]` (the fan-out and dedup handlers).
    pub pipeline: Option<Arc<Pipeline>>,
    /// The batch transform's normaliser for this configuration (the Firehose transform's).
    pub normalizer: Normalizer,
    pub metrics: Arc<Metrics>,
}

/// Which parts a handler needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Dedup, routes, quarantine: the fan-out and dedup handlers.
    Pipeline,
    /// The normaliser only: the Firehose transform.
    Normalizer,
}

impl Handlers {
    /// Reads the configuration (see the crate's documentation) and builds what `needs` asks for.
    pub async fn cold_start(needs: Needs) -> Result<Self> {
        let config = Config::load(None)?;
        Self::from_config(config, needs).await
    }

    /// [`Handlers::cold_start`] with a configuration already read.
    pub async fn from_config(config: Config, needs: Needs) -> Result<Self> {
        let lambda: LambdaConfig = config.component()?;
        let metrics = Arc::new(Metrics::default());
        let pipeline = match needs {
            Needs::Normalizer => None,
            Needs::Pipeline => {
                let mut stream: StreamConfig = config.component()?;
                stream.data_dir = config::writable_data_dir(&stream.data_dir);
                config::check_stream(&stream)?;
                // No dead letters by default: what a route cannot deliver is reported failed
                // and the event source sends it again (or to its own on-failure destination).
                let (mut pipeline, _workers) =
                    Pipeline::build(&config, &stream, owner_token(), metrics.clone(), false)
                        .await?;
                pipeline.alerts = None;
                pipeline.dedup_patience = pipeline
                    .dedup_patience
                    .min(std::time::Duration::from_secs(lambda.dedup_wait_secs));
                Some(Arc::new(pipeline))
            }
        };
        let normalizer = Normalizer::new(
            config.source.log_group.clone(),
            config.transform.max_record_bytes,
        );
        Ok(Handlers {
            config,
            lambda,
            pipeline,
            normalizer,
            metrics,
        })
    }
}

/// The units (event records) that failed, in their order: every one when the whole batch
/// failed (the dedup store unavailable past its patience).
pub(crate) fn failed_units(report: &bitacora_stream::Result<UnitsReport>, n: usize) -> Vec<usize> {
    match report {
        Ok(r) => r.failed_units().collect(),
        Err(e) => {
            tracing::warn!("the whole batch of {n} records failed: {e}");
            (0..n).collect()
        }
    }
}

/// Logs what an invocation came to, one line.
pub(crate) fn log_outcome(what: &str, n: usize, report: &bitacora_stream::Result<UnitsReport>) {
    if let Ok(r) = report {
        let failed = r.failed_units().count();
        let o = r.outcome;
        tracing::info!(
            "{what}: {n} records: {} accepted, {} duplicates, {} quarantined, {failed} failed",
            o.accepted,
            o.duplicates,
            o.quarantined
        );
        if let Some(why) = r.failed.iter().flatten().next() {
            tracing::warn!("{what}: {failed} records not delivered: {why}");
        }
    }
}

/// A handler binary's `main`: logging (plain lines on stderr, which Lambda sends to CloudWatch
/// Logs), one cold start (configuration read, clients created), then the Runtime API loop,
/// each invocation's event handed to `handler` with what the cold start built. A cold start that
/// fails logs one line naming the setting at fault and exits (Lambda reports the init error).
pub fn serve<E, R, F, Fut>(
    tool: &str,
    needs: Needs,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(Arc<Handlers>, E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    bitacora_core::process::init();
    bitacora_core::cli::init_logging_plain();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let handlers = match Handlers::cold_start(needs).await {
            Ok(h) => Arc::new(h),
            Err(e) => {
                tracing::error!("{tool}: {e}");
                return Err(e.into());
            }
        };
        tracing::info!("{tool}: ready after {:?}", started.elapsed());
        let handler = Arc::new(handler);
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<E>| {
                let handlers = handlers.clone();
                let handler = handler.clone();
                async move { Ok::<R, lambda_runtime::Error>(handler(handlers, event.payload).await) }
            },
        ))
        .await
    })
}

/// The pipeline of a handler built with [`Needs::Pipeline`].
pub fn pipeline_of(h: &Handlers) -> &Pipeline {
    h.pipeline
        .as_deref()
        .expect("a handler built with Needs::Pipeline has a pipeline")
}
