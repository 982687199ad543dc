//! The `[stream]` section: the service's own settings; each component's settings are its own
//! type, in its folder ([`crate::sources`], [`crate::dedup`], [`crate::routes`], [`crate::sinks`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use bitacora_core::config::Component;
use serde::{Deserialize, Serialize};

use crate::alerts::AlertConfig;
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
    /// Request bodies held at once while they are received and read, in bytes as sent (each
    /// counts its `Content-Length`, else `max_body_bytes`); a request that does not fit gets 429
    /// with `Retry-After` before its body is read.
    pub max_buffered_bytes: u64,
    /// Records in flight in the whole service (accepted, not yet acknowledged); when a batch does
    /// not fit, ingest answers 429 with `Retry-After`.
    pub queue_records: u64,
    /// Time to receive a request's body (408 past it), and again to deliver the batch (503 past
    /// it: the client sends it again; the batch itself still runs to its end).
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
    /// `[[stream.alerts]]`: rules over sliding windows of the delivered events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertConfig>,
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
            max_buffered_bytes: 256 << 20,
            queue_records: 200_000,
            request_timeout_secs: 30,
            drain_secs: 30,
            data_dir: PathBuf::from("bitacora-stream"),
            source: SourceConfig::default(),
            dedup: DedupConfig::default(),
            quarantine: None,
            routes: Vec::new(),
            alerts: Vec::new(),
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
        let ranges: [(&str, u64, u64, u64); 6] = [
            ("stream.max_body_bytes", self.max_body_bytes, 1024, 1 << 30),
            (
                "stream.max_decoded_bytes",
                self.max_decoded_bytes,
                1024,
                4 << 30,
            ),
            (
                "stream.max_buffered_bytes",
                self.max_buffered_bytes,
                self.max_body_bytes,
                1 << 40,
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
        if self.source.kind == crate::sources::SourceKind::Kinesis
            && self.source.redis_url.is_none()
            && self.dedup.kind != crate::dedup::DedupKind::Redis
        {
            return Err(Error::config(
                "stream.source.redis_url",
                "kind = \"kinesis\" keeps its shard leases and checkpoints in Redis: set stream.source.redis_url, or use stream.dedup.kind = \"redis\" (its url is used)",
            ));
        }
        // One Redis for the dedup and the Kinesis leases: a record's id must never name a lease
        // or a checkpoint (nor the other way round).
        if self.source.kind == crate::sources::SourceKind::Kinesis
            && self.dedup.kind == crate::dedup::DedupKind::Redis
            && self
                .source
                .redis_url
                .as_ref()
                .is_none_or(|u| *u == self.dedup.url)
            && (self.dedup.key_prefix.starts_with(&self.source.key_prefix)
                || self.source.key_prefix.starts_with(&self.dedup.key_prefix))
        {
            return Err(Error::config(
                "stream.dedup.key_prefix",
                format!(
                    "{:?} and stream.source.key_prefix {:?} overlap in one Redis: a record's id could name a shard lease or checkpoint; give them prefixes neither of which starts the other",
                    self.dedup.key_prefix, self.source.key_prefix
                ),
            ));
        }
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
        if names.contains("quarantine") {
            return Err(Error::config(
                "stream.routes.name",
                "\"quarantine\" is the quarantine's own route (its metrics, its dead letters): name the route otherwise",
            ));
        }
        let route_names: Vec<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
        let mut rules = std::collections::BTreeSet::new();
        for (i, a) in self.alerts.iter().enumerate() {
            a.validate(i, &route_names)?;
            if !rules.insert(a.name.as_str()) {
                return Err(Error::config(
                    format!("stream.alerts[{i}].name"),
                    format!("{:?} names two rules: rule names must be unique", a.name),
                ));
            }
        }
        if let Some(q) = &self.quarantine {
            q.sink.validate("stream.quarantine.sink")?;
        }
        // Two file sinks writing one folder would take each other's parts for their own.
        let mut folders: std::collections::BTreeMap<PathBuf, String> = Default::default();
        for (key, sink) in self.all_sinks() {
            if let SinkConfig::File(f) = &sink {
                let path = f.path.components().collect::<PathBuf>();
                if let Some(first) = folders.get(&path) {
                    return Err(Error::config(
                        format!("{key}.path"),
                        format!(
                            "{} is also the folder of {first}: give each file sink its own folder",
                            f.path.display()
                        ),
                    ));
                }
                folders.insert(path, key);
            }
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

    /// Every sink the service opens, with the key it is set at (defaults included).
    fn all_sinks(&self) -> Vec<(String, SinkConfig)> {
        let mut all = vec![
            ("stream.quarantine.sink".to_string(), self.quarantine_sink()),
            (
                "stream.quarantine (its dead letters)".to_string(),
                SinkConfig::file(self.dead_letter_dir("quarantine")),
            ),
        ];
        for (i, r) in self.routes.iter().enumerate() {
            all.push((format!("stream.routes[{i}].sink"), r.sink.clone()));
            all.push(match &r.dead_letter {
                Some(d) => (format!("stream.routes[{i}].dead_letter"), d.clone()),
                None => (
                    format!("stream.routes[{i}].dead_letter (default)"),
                    SinkConfig::file(self.dead_letter_dir(&r.name)),
                ),
            });
        }
        all
    }

    /// The default dead-letter folder of a route.
    pub fn dead_letter_dir(&self, route: &str) -> PathBuf {
        self.data_dir.join("dead-letter").join(route)
    }

    /// The quarantine sink: the configured one, else `data_dir/quarantine` files.
    pub fn quarantine_sink(&self) -> SinkConfig {
        match &self.quarantine {
            Some(q) => q.sink.clone(),
            None => SinkConfig::file(self.data_dir.join("quarantine")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StreamConfig;
    use bitacora_core::config::Component;

    #[test]
    fn dedup_and_lease_prefixes_that_overlap_in_one_redis_are_refused() {
        let conf = |dedup: &str, source: &str| -> StreamConfig {
            toml::from_str(&format!(
                "[source]\nkind = \"kinesis\"\nstream_name = \"s\"\nkey_prefix = \"{source}\"\n[dedup]\nkind = \"redis\"\nkey_prefix = \"{dedup}\"\n"
            ))
            .unwrap()
        };
        assert!(
            conf("bitacora:seen:", "bitacora:kinesis:")
                .validate()
                .is_ok()
        );
        for (d, s) in [("bitacora:", "bitacora:kinesis:"), ("k:", "k:")] {
            let e = conf(d, s).validate().unwrap_err().to_string();
            assert!(e.contains("stream.dedup.key_prefix"), "{e}");
        }
        // Two Redis servers: no overlap possible.
        let mut apart = conf("k:", "k:");
        apart.source.redis_url = Some("redis://127.0.0.1:6380/0".into());
        assert!(apart.validate().is_ok());
    }
}
