//! `kind = "http"`: a webhook. Each batch is one `POST` of NDJSON (one record per line) to
//! `url`; a 2xx takes it, a 408/429/5xx or a connection failure is sent again, any other status
//! is a refusal (dead letters).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{BatchLimits, Sent, Sink, http_client, post_ndjson, retryable_status, validate_http};
use crate::record::SinkRecord;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub url: String,
    /// Extra request headers (an `Authorization` for the receiver, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_timeout() -> u64 {
    10
}
fn default_max_records() -> usize {
    500
}
fn default_max_bytes() -> usize {
    4 << 20
}

impl HttpSinkConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        validate_http(
            key,
            "url",
            &self.url,
            &self.headers,
            (self.timeout_secs, self.max_records, self.max_bytes),
        )
    }
}

pub struct HttpSink {
    config: HttpSinkConfig,
    client: reqwest::Client,
}

impl HttpSink {
    pub fn new(config: &HttpSinkConfig) -> Result<Self> {
        Ok(HttpSink {
            config: config.clone(),
            client: http_client(config.timeout_secs)?,
        })
    }
}

#[async_trait]
impl Sink for HttpSink {
    fn describe(&self) -> String {
        format!("http {}", self.config.url)
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_records: self.config.max_records,
            max_bytes: self.config.max_bytes,
        }
    }

    async fn send(&self, batch: &[SinkRecord]) -> Result<Sent> {
        if batch.is_empty() {
            return Ok(Sent::all());
        }
        let mut body = Vec::with_capacity(batch.iter().map(|r| r.len() + 1).sum());
        for r in batch {
            body.extend_from_slice(&r.json);
            body.push(b'\n');
        }
        let name = self.describe();
        let resp = post_ndjson(
            &self.client,
            &self.config.url,
            &self.config.headers,
            body,
            &name,
        )
        .await?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Sent::all());
        }
        let text = resp.text().await.unwrap_or_default();
        let detail = format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
        if retryable_status(status) {
            return Err(Error::sink(&name, detail, true));
        }
        Ok(Sent {
            retry: Vec::new(),
            rejected: (0..batch.len()).map(|i| (i, detail.clone())).collect(),
        })
    }
}
