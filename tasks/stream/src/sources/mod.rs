//! Sources: where records come from (`[stream.source] kind`).
//!
//! * `http` (the embedded default): `POST /v1/logs` on the service's port ([`http`]).
//! * `kinesis`: every shard of `stream_name`, with shard leases and checkpoints (next step of
//!   the stream service's issue; not in this build yet).

pub mod http;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::pipeline::Pipeline;

/// A source feeds batches to the pipeline until shutdown, and acknowledges (answers, or
/// checkpoints) a batch only once [`Pipeline::process`] accepted it.
#[async_trait]
pub trait StreamSource: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Runs until `shutdown` turns true; returns once its in-flight batches are finished.
    async fn run(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()>;
}

/// `[stream.source]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// kinesis: the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// kinesis: where a shard without a checkpoint begins.
    pub start: StartPosition,
    /// http: the `log_stream` of app messages sent without an envelope (a request's
    /// `X-Log-Stream` header overrides it).
    pub log_stream: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Http,
    Kinesis,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    TrimHorizon,
    Latest,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Http,
            stream_name: None,
            start: StartPosition::TrimHorizon,
            log_stream: "http".into(),
        }
    }
}

impl SourceConfig {
    pub fn validate(&self) -> bitacora_core::Result<()> {
        if self.kind == SourceKind::Kinesis {
            return Err(bitacora_core::Error::config(
                "stream.source.kind",
                "\"kinesis\" is not in this build yet (the stream service's Kinesis source is being built); use \"http\"",
            ));
        }
        Ok(())
    }
}
