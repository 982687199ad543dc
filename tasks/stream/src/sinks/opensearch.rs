//! `kind = "opensearch"`: `_bulk` indexing with `_id = event_id`, so a record delivered again
//! overwrites its document instead of adding a second one. Item failures are read one by one
//! (OpenSearch answers 200 with `"errors": true` when some items failed): a 429 or 5xx item is
//! sent again, any other failed item is refused (dead letters, with OpenSearch's reason).
//! `index` may contain `{dt}`, replaced by the record's day (`bitacora-events-{dt}` gives daily
//! indices for an ISM policy).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{BatchLimits, Sent, Sink, http_client, post_ndjson, retryable_status, validate_http};
use crate::record::SinkRecord;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchSinkConfig {
    /// `http(s)://host:port` of the cluster.
    pub endpoint: String,
    pub index: String,
    /// Extra request headers (`Authorization` for basic auth, say).
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
    30
}
fn default_max_records() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    5 << 20
}

impl OpenSearchSinkConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        validate_http(
            key,
            "endpoint",
            &self.endpoint,
            &self.headers,
            (self.timeout_secs, self.max_records, self.max_bytes),
        )?;
        let name = self.index.replace("{dt}", "2026-01-01");
        let valid = !name.is_empty()
            && !name.starts_with(['_', '-', '+'])
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            return Err(bitacora_core::Error::config(
                format!("{key}.index"),
                format!(
                    "{:?} is not a valid index name (lowercase letters, digits, - _ . and {{dt}})",
                    self.index
                ),
            ));
        }
        Ok(())
    }
}

pub struct OpenSearchSink {
    config: OpenSearchSinkConfig,
    client: reqwest::Client,
    url: String,
}

impl OpenSearchSink {
    pub fn new(config: &OpenSearchSinkConfig) -> Result<Self> {
        Ok(OpenSearchSink {
            config: config.clone(),
            client: http_client(config.timeout_secs)?,
            url: format!("{}/_bulk", config.endpoint.trim_end_matches('/')),
        })
    }

    fn index_of(&self, r: &SinkRecord) -> String {
        if !self.config.index.contains("{dt}") {
            return self.config.index.clone();
        }
        #[derive(Deserialize)]
        struct Dt<'a> {
            #[serde(borrow, default)]
            dt: Option<std::borrow::Cow<'a, str>>,
        }
        let dt = serde_json::from_slice::<Dt<'_>>(&r.json)
            .ok()
            .and_then(|d| d.dt.map(|s| s.into_owned()))
            .unwrap_or_else(|| "undated".into());
        self.config.index.replace("{dt}", &dt)
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BTreeMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[async_trait]
impl Sink for OpenSearchSink {
    fn describe(&self) -> String {
        format!("opensearch {}/{}", self.config.endpoint, self.config.index)
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
        let mut body = Vec::with_capacity(batch.iter().map(|r| r.len() + 96).sum());
        for r in batch {
            let action = serde_json::json!({"index": {"_index": self.index_of(r), "_id": &*r.id}});
            serde_json::to_writer(&mut body, &action)
                .map_err(|e| Error::sink(self.describe(), e.to_string(), false))?;
            body.push(b'\n');
            body.extend_from_slice(&r.json);
            body.push(b'\n');
        }
        let name = self.describe();
        let resp = post_ndjson(&self.client, &self.url, &self.config.headers, body, &name).await?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| Error::sink(&name, e.to_string(), true))?;
        if !(200..300).contains(&status) {
            let detail = format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            );
            if retryable_status(status) {
                return Err(Error::sink(&name, detail, true));
            }
            return Ok(Sent {
                retry: Vec::new(),
                rejected: (0..batch.len()).map(|i| (i, detail.clone())).collect(),
            });
        }
        let parsed: BulkResponse = serde_json::from_str(&text).map_err(|e| {
            Error::sink(
                &name,
                format!(
                    "unreadable _bulk response ({e}): {}",
                    text.chars().take(200).collect::<String>()
                ),
                true,
            )
        })?;
        if parsed.items.len() != batch.len() {
            // Without one answer per item nothing can be assumed taken: send again (ids make it
            // idempotent).
            return Err(Error::sink(
                &name,
                format!(
                    "_bulk answered {} items for {} records",
                    parsed.items.len(),
                    batch.len()
                ),
                true,
            ));
        }
        let mut sent = Sent::all();
        if !parsed.errors {
            return Ok(sent);
        }
        for (i, item) in parsed.items.iter().enumerate() {
            let Some(item) = item.values().next() else {
                sent.retry.push(i);
                continue;
            };
            if (200..300).contains(&item.status) {
                continue;
            }
            if retryable_status(item.status) {
                sent.retry.push(i);
            } else {
                let why = item
                    .error
                    .as_ref()
                    .map(|e| bitacora_model::one_line(&e.to_string()))
                    .unwrap_or_default();
                sent.rejected
                    .push((i, format!("status {}: {why}", item.status)));
            }
        }
        Ok(sent)
    }
}
