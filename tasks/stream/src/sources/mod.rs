//! Sources: where records come from (`[stream.source] kind`).
//!
//! * `http` (the embedded default): `POST /v1/logs` on the service's port ([`http`]).
//! * `kinesis`: every shard of `stream_name`, with shard leases and checkpoints in Redis, shared
//!   by every instance reading the stream ([`kinesis`]; built with the `aws` feature).

pub mod http;
pub mod kinesis;

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
    /// kinesis: where a shard without a checkpoint begins (a child shard of a reshard always
    /// begins at its start, so nothing written to it before its parents finished is skipped).
    pub start: StartPosition,
    /// The `log_stream` of app messages that come without an envelope (default: `http`, or the
    /// Kinesis stream's name); an HTTP request's `X-Log-Stream` header overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
    /// kinesis: the Redis of the shard leases and checkpoints (default: `stream.dedup.url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// kinesis: prefix of the lease, checkpoint and instance keys (the stream's name follows,
    /// as a Redis Cluster hash tag).
    pub key_prefix: String,
    /// kinesis: a lease lasts this long unless renewed; a dead instance's shards are taken over
    /// after it.
    pub lease_secs: u64,
    /// kinesis: records per GetRecords call (at most 10000).
    pub max_records: u32,
    /// kinesis: wait after a GetRecords that returned nothing.
    pub idle_ms: u64,
    /// kinesis: how often the shard list is read again (and at once after a shard ends).
    pub shard_sync_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
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
            log_stream: None,
            redis_url: None,
            key_prefix: "bitacora:kinesis:".into(),
            lease_secs: 30,
            max_records: 1000,
            idle_ms: 1000,
            shard_sync_secs: 30,
            region: None,
            endpoint_url: None,
        }
    }
}

impl SourceConfig {
    pub fn validate(&self) -> bitacora_core::Result<()> {
        use bitacora_core::Error;
        if self.kind == SourceKind::Kinesis {
            let Some(name) = &self.stream_name else {
                return Err(Error::config(
                    "stream.source.stream_name",
                    "kind = \"kinesis\" needs the stream's name",
                ));
            };
            crate::sinks::aws::check_name("stream.source.stream_name", name, 128, "_.-")?;
            crate::sinks::aws::validate_common("stream.source", &self.region, &self.endpoint_url)?;
            if let Some(u) = &self.redis_url
                && !u.starts_with("redis://")
                && !u.starts_with("rediss://")
            {
                return Err(Error::config(
                    "stream.source.redis_url",
                    format!("expected redis://HOST:PORT/DB or rediss://…, got {u:?}"),
                ));
            }
            let ranges: [(&str, u64, u64, u64); 4] = [
                ("stream.source.lease_secs", self.lease_secs, 1, 3600),
                (
                    "stream.source.max_records",
                    self.max_records as u64,
                    1,
                    10_000,
                ),
                ("stream.source.idle_ms", self.idle_ms, 200, 60_000),
                (
                    "stream.source.shard_sync_secs",
                    self.shard_sync_secs,
                    1,
                    3600,
                ),
            ];
            for (key, v, lo, hi) in ranges {
                if v < lo || v > hi {
                    return Err(Error::config(
                        key,
                        format!("must be between {lo} and {hi}, got {v}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `log_stream` of app messages without an envelope.
    pub fn default_log_stream(&self) -> String {
        match (&self.log_stream, self.kind, &self.stream_name) {
            (Some(s), _, _) => s.clone(),
            (None, SourceKind::Kinesis, Some(name)) => name.clone(),
            _ => "http".into(),
        }
    }
}
