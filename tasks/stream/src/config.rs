//! The `[stream]` section: the service's own settings; each component's settings are its own
//! type, in its folder ([`crate::sources`], [`crate::dedup`], [`crate::routes`], [`crate::sinks`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use bitacora_core::config::Component;
use serde::{Deserialize, Serialize};

use crate::dedup::DedupConfig;
use crate::routes::RouteConfig;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// `[stream]` of the configuration file (DESIGN.md's streaming contract).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// HTTP address: `POST /v1/logs`, the dashboard, `/metrics`, `/healthz`.
    pub listen: String,
    /// Bearer token of `POST /v1/logs` (the file's first line); required when `listen` is not a
    /// loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<PathBuf>,
    /// Largest request body, as sent (compressed or not): larger ones get 413.
    pub max_body_bytes: u64,
    /// Largest body once decompressed (`Content-Encoding: gzip`): larger ones get 413.
    pub max_decoded_bytes: u64,
    /// Records in flight in the whole service (accepted, not yet acknowledged); when a batch does
    /// not fit, ingest answers 429 with `Retry-After`.
    pub queue_records: u64,
    /// A request's whole time budget (reading a slow client's body, dedup, delivery): past it the
    /// answer is 503 and the client sends the batch again.
    pub request_timeout_secs: u64,
    /// SIGTERM/SIGINT: how long in-flight batches may take to finish before the service exits.
    pub drain_secs: u64,
    /// Working folder of the default quarantine and dead-letter files.
    pub data_dir: PathBuf,
    pub source: SourceConfig,
    pub dedup: DedupConfig,
    /// Where records that cannot be trusted go (default: a file sink under
    /// `data_dir/quarantine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineConfig>,
    pub routes: Vec<RouteConfig>,
}

/// `[stream.quarantine]`: a sink for the rejected records (the batch transform's reasons).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuarantineConfig {
    pub sink: SinkConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            listen: "127.0.0.1:9880".into(),
            auth_token_file: None,
            max_body_bytes: 10 << 20,
            max_decoded_bytes: 64 << 20,
            queue_records: 200_000,
            request_timeout_secs: 30,
            drain_secs: 30,
            data_dir: PathBuf::from("bitacora-stream"),
            source: SourceConfig::default(),
            dedup: DedupConfig::default(),
            quarantine: None,
            routes: Vec::new(),
        }
    }
}

impl Component for StreamConfig {
    const SECTION: &'static str = "stream";
    const PATH_KEYS: &'static [&'static str] = &[
        "auth_token_file",
        "data_dir",
        "quarantine.sink.path",
        "routes.*.sink.path",
        "routes.*.dead_letter.path",
        "routes.*.pii.key_file",
    ];

    fn validate(&self) -> bitacora_core::Result<()> {
        use bitacora_core::Error;
        let addr: SocketAddr = self.listen.trim().parse().map_err(|_| {
            Error::config(
                "stream.listen",
                format!(
                    "expected HOST:PORT with an IP address, got {:?}",
                    self.listen
                ),
            )
        })?;
        if !addr.ip().is_loopback() && self.auth_token_file.is_none() {
            return Err(Error::config(
                "stream.auth_token_file",
                format!(
                    "required when stream.listen ({addr}) is not a loopback address: ingest would be open to the network"
                ),
            ));
        }
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("stream.max_body_bytes", self.max_body_bytes, 1024, 1 << 30),
            (
                "stream.max_decoded_bytes",
                self.max_decoded_bytes,
                1024,
                4 << 30,
            ),
            ("stream.queue_records", self.queue_records, 1, 100_000_000),
            (
                "stream.request_timeout_secs",
                self.request_timeout_secs,
                1,
                3600,
            ),
            ("stream.drain_secs", self.drain_secs, 1, 3600),
        ];
        for (key, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(Error::config(
                    key,
                    format!("must be between {lo} and {hi}, got {v}"),
                ));
            }
        }
        self.dedup.validate()?;
        self.source.validate()?;
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            r.validate(i)?;
            if !names.insert(r.name.as_str()) {
                return Err(Error::config(
                    format!("stream.routes[{i}].name"),
                    format!("{:?} names two routes: route names must be unique", r.name),
                ));
            }
        }
        if let Some(q) = &self.quarantine {
            q.sink.validate("stream.quarantine.sink")?;
        }
        Ok(())
    }
}

impl StreamConfig {
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .trim()
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9880)))
    }

    /// The bearer token ingest requires, read from `auth_token_file` (its first line).
    pub fn auth_token(&self) -> crate::Result<Option<String>> {
        let Some(path) = &self.auth_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::io("read stream.auth_token_file", path, e))?;
        let token = text.lines().next().unwrap_or_default().trim().to_string();
        if token.len() < 16 {
            return Err(crate::Error::config(
                "stream.auth_token_file",
                format!(
                    "{}: the token (its first line) must have at least 16 characters (make one: openssl rand -hex 32)",
                    path.display()
                ),
            ));
        }
        Ok(Some(token))
    }

    /// The quarantine sink: the configured one, else `data_dir/quarantine` files.
    pub fn quarantine_sink(&self) -> SinkConfig {
        match &self.quarantine {
            Some(q) => q.sink.clone(),
            None => SinkConfig::file(self.data_dir.join("quarantine")),
        }
    }
}
