//! Sinks: where a route delivers. Each takes batches within its [`BatchLimits`] and says, per
//! record, what it did not take ([`Sent`]): records to send again, and records it refuses for
//! good (those go to the route's dead letters at once).

pub mod aws;
pub mod file;
pub mod http;
pub mod opensearch;

#[doc(hidden)]
pub mod conformance;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::record::SinkRecord;

/// The most a sink takes in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// What a sink did not take of a batch (indices into it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// Not taken this time (throttled, a 5xx, a timeout): send again.
    pub retry: Vec<usize>,
    /// Refused for good (a mapping error, a record too large): dead letters, with the reason.
    pub rejected: Vec<(usize, String)>,
}

impl Sent {
    pub fn all() -> Self {
        Sent::default()
    }

    pub fn is_complete(&self) -> bool {
        self.retry.is_empty() && self.rejected.is_empty()
    }
}

#[async_trait]
pub trait Sink: Send + Sync {
    /// What it writes to, for logs (`file /srv/out`, `opensearch http://…/logs`).
    fn describe(&self) -> String;
    fn limits(&self) -> BatchLimits;
    /// Sends a batch (within [`Sink::limits`]). `Err`: nothing was taken; a retryable error is
    /// sent again, another goes to the dead letters.
    async fn send(&self, batch: &[SinkRecord]) -> Result<Sent>;
    /// Makes what was sent final (the file sink closes its open part under its final name).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Called when the route has been idle a second (the file sink closes a part past its age).
    async fn tick(&self) -> Result<()> {
        Ok(())
    }
}

/// A route's `sink` (and `dead_letter`, and `[stream.quarantine] sink`): `kind` and the keys of
/// that kind, named after the service's own API (`topic_arn`, `queue_url`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    File(file::FileSinkConfig),
    Http(http::HttpSinkConfig),
    Opensearch(opensearch::OpenSearchSinkConfig),
    Sqs(aws::sqs::SqsSinkConfig),
    Sns(aws::sns::SnsSinkConfig),
    Firehose(aws::firehose::FirehoseSinkConfig),
    Kinesis(aws::kinesis::KinesisSinkConfig),
}

impl SinkConfig {
    /// A file sink under `path` with the default rotation.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        SinkConfig::File(file::FileSinkConfig::new(path))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Http(_) => "http",
            SinkConfig::Opensearch(_) => "opensearch",
            SinkConfig::Sqs(_) => "sqs",
            SinkConfig::Sns(_) => "sns",
            SinkConfig::Firehose(_) => "firehose",
            SinkConfig::Kinesis(_) => "kinesis",
        }
    }

    /// `key`: where it is set (`stream.routes[2].sink`).
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        match self {
            SinkConfig::File(c) => c.validate(key),
            SinkConfig::Http(c) => c.validate(key),
            SinkConfig::Opensearch(c) => c.validate(key),
            SinkConfig::Sqs(c) => c.validate(key),
            SinkConfig::Sns(c) => c.validate(key),
            SinkConfig::Firehose(c) => c.validate(key),
            SinkConfig::Kinesis(c) => c.validate(key),
        }
    }

    /// The sink; `instance` makes its names unique to this service instance.
    pub async fn build(&self, instance: &str) -> Result<Arc<dyn Sink>> {
        Ok(match self {
            SinkConfig::File(c) => Arc::new(file::FileSink::open(c, instance)?),
            SinkConfig::Http(c) => Arc::new(http::HttpSink::new(c)?),
            SinkConfig::Opensearch(c) => Arc::new(opensearch::OpenSearchSink::new(c)?),
            #[cfg(feature = "aws")]
            SinkConfig::Sqs(c) => Arc::new(aws::sqs::SqsSink::new(c).await?),
            #[cfg(feature = "aws")]
            SinkConfig::Sns(c) => Arc::new(aws::sns::SnsSink::new(c).await?),
            #[cfg(feature = "aws")]
            SinkConfig::Firehose(c) => Arc::new(aws::firehose::FirehoseSink::new(c).await?),
            #[cfg(feature = "aws")]
            SinkConfig::Kinesis(c) => Arc::new(aws::kinesis::KinesisSink::new(c).await?),
            #[cfg(not(feature = "aws"))]
            SinkConfig::Sqs(_)
            | SinkConfig::Sns(_)
            | SinkConfig::Firehose(_)
            | SinkConfig::Kinesis(_) => {
                return Err(aws::not_built(self.kind()));
            }
        })
    }
}

/// The HTTP client of the HTTP-based sinks: rustls, connection reuse, a request timeout.
pub(crate) fn http_client(timeout_secs: u64) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| crate::Error::sink("http client", e.to_string(), false))
}

/// Checks what every HTTP-based sink is given: an http(s) URL at `{key}.{field}`, valid headers,
/// and usable batch and timeout bounds.
pub(crate) fn validate_http(
    key: &str,
    field: &str,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    (timeout_secs, max_records, max_bytes): (u64, usize, usize),
) -> bitacora_core::Result<()> {
    let ok = url::Url::parse(url)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
    if !ok {
        return Err(bitacora_core::Error::config(
            format!("{key}.{field}"),
            format!("expected an http:// or https:// URL, got {url:?}"),
        ));
    }
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(bitacora_core::Error::config(
                format!("{key}.headers.{name}"),
                "not a valid HTTP header",
            ));
        }
    }
    if max_records == 0 || max_bytes < 1024 || timeout_secs == 0 {
        return Err(bitacora_core::Error::config(
            format!("{key}.max_records"),
            "max_records ≥ 1, max_bytes ≥ 1024 and timeout_secs ≥ 1",
        ));
    }
    Ok(())
}

/// POSTs an NDJSON body with the sink's extra headers; a failure to get an answer is retryable.
pub(crate) async fn post_ndjson(
    client: &reqwest::Client,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
    sink: &str,
) -> Result<reqwest::Response> {
    let mut req = client
        .post(url)
        .header("content-type", "application/x-ndjson");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(body)
        .send()
        .await
        .map_err(|e| crate::Error::sink(sink, e.to_string(), true))
}

/// Whether an HTTP status means "send again" (throttling, server errors, timeouts).
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}
