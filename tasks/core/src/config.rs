//! The configuration contract (TOML; environment variables override).
//!
//! Lookup order for the file: `--config PATH`, else `$BITACORA_CONFIG`, else `./bitacora.toml` when it
//! exists, else the embedded defaults. Any key can then be overridden from the environment as
//! `BITACORA_<SECTION>_<KEY>` (for example `BITACORA_LAKE_ROOT=file:///srv/lake`). Relative paths in a
//! file are relative to that file's folder; relative paths from the environment or the defaults are
//! relative to the working directory.
//!
//! Unknown sections or keys, wrong types and values that this build cannot serve are rejected with
//! [`Error::Config`] naming the dotted key (exit code 2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "BITACORA_CONFIG";
/// Prefix of the per-key environment overrides.
pub const ENV_PREFIX: &str = "BITACORA_";

const SECTIONS: &[&str] = &[
    "source",
    "lake",
    "encryption",
    "catalog",
    "query",
    "extract",
    "transform",
];

/// Sections owned by component crates (`[stream]`: the stream service and the Lambda handlers).
/// The file is shared, so every binary accepts them; each is parsed only by its owner, through
/// [`Config::component`], into the owner's own [`Component`] type.
const COMPONENT_SECTIONS: &[&str] = &["stream", "lambda"];

/// Keys whose values are local paths, resolved against the folder of the file that sets them.
const PATH_KEYS: &[(&str, &str)] = &[
    ("source", "path"),
    ("lake", "root"),
    ("encryption", "key_file"),
    ("transform", "spill_dir"),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub lake: LakeConfig,
    pub encryption: EncryptionConfig,
    pub catalog: CatalogConfig,
    pub query: QueryConfig,
    pub extract: ExtractConfig,
    pub transform: TransformConfig,
    /// The component sections as written, for their owners to parse ([`Config::component`]).
    #[serde(skip)]
    pub components: ComponentSections,
}

/// The sections of [`COMPONENT_SECTIONS`] as written, with what their owner needs to read them
/// the way the core sections are read: the file's folder (relative paths) and the environment
/// (`BITACORA_<SECTION>_<KEY>` overrides).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComponentSections {
    tables: std::collections::BTreeMap<String, toml::Table>,
    base: PathBuf,
    env: Vec<(String, String)>,
}

/// A configuration section owned by a component crate: its type, defaults and checks live with
/// the component (Vector's `config.rs` per component), not in this file.
pub trait Component: Serialize + serde::de::DeserializeOwned + Default {
    /// The section's name (`stream` for `[stream]`).
    const SECTION: &'static str;
    /// Dotted keys inside the section that hold local paths, resolved like the core ones
    /// (against the file's folder, or the working directory for environment values); `*`
    /// stands for every element of an array (`routes.*.sink.path`).
    const PATH_KEYS: &'static [&'static str] = &[];
    /// Rejects well-typed but unusable settings, naming the dotted key (`stream.…`).
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Embedded: NDJSON files shaped like CloudWatch `FilterLogEvents` events.
    Files,
    /// CloudWatch Logs (AWS backend).
    Cloudwatch,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// files: a directory read recursively (`*.jsonl`, `*.jsonl.gz`, `*.jsonl.zst`).
    pub path: PathBuf,
    /// The log group; for the file source it names the group the files stand for.
    pub log_group: String,
    /// cloudwatch: only streams whose name starts with this prefix.
    pub log_stream_prefix: Option<String>,
    /// cloudwatch: time slices of a day, fetched concurrently (`extract.workers` at a time).
    pub slices: u32,
    /// cloudwatch: events per `FilterLogEvents` page (at most 10000).
    pub page_size: u32,
    /// cloudwatch: `FilterLogEvents` calls per second across all slices (accounts are limited to
    /// a few per second per region).
    pub max_requests_per_second: f64,
    /// cloudwatch: attempts per call; throttling, 5xx and dropped connections are retried with
    /// exponential backoff and jitter, other errors are not.
    pub max_attempts: u32,
    /// cloudwatch: minutes after a day's end before it may be extracted (late ingestion); a day
    /// not settled yet is refused unless `--force`.
    pub settle_minutes: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Files,
            path: PathBuf::from("logs"),
            log_group: "/mobile/app".into(),
            log_stream_prefix: None,
            slices: 24,
            page_size: 10_000,
            max_requests_per_second: 5.0,
            max_attempts: 8,
            settle_minutes: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `file:///abs/path`, a plain local path, `s3://bucket/prefix` or `gs://bucket/prefix`.
    pub root: String,
    /// Cloud lakes: retries of a failed request (5xx, throttling, dropped connection), with
    /// exponential backoff and jitter.
    pub max_retries: usize,
    /// Cloud lakes: a request still failing after this many seconds of retries fails the step.
    pub retry_timeout_secs: u64,
    /// Cloud lakes: objects larger than this are uploaded in parts (at least 5 MiB).
    pub multipart_bytes: usize,
    /// Cloud lakes: how long a run's lease of its step and day lasts unless renewed (every third
    /// of it); a killed run's day can be run again after this long.
    pub lease_secs: u64,
}

impl LakeConfig {
    /// The lease time of runs on this lake (see [`crate::lease`]).
    pub fn lease_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs)
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: "lake".into(),
            max_retries: 10,
            retry_timeout_secs: 180,
            multipart_bytes: 16 << 20,
            lease_secs: crate::lease::DEFAULT_TTL.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionMode {
    /// Raw objects are only compressed.
    None,
    /// Client-side AES-256-GCM envelope encryption of every raw object.
    Envelope,
    /// S3 server-side encryption with a KMS key (AWS backend).
    SseKms,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    pub mode: EncryptionMode,
    /// envelope: the local master key (created with mode 0600 by `extract` when missing).
    pub key_file: Option<PathBuf>,
    /// envelope with KMS-wrapped data keys (takes precedence over `key_file`), or sse-kms.
    pub kms_key_id: Option<String>,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            mode: EncryptionMode::Envelope,
            key_file: Some(PathBuf::from("bitacora.key")),
            kms_key_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// Embedded: JSON documents in the lake, modelled on the Glue Data Catalog.
    Local,
    /// AWS Glue Data Catalog.
    Glue,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    pub kind: CatalogKind,
    pub database: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            kind: CatalogKind::Local,
            database: "bitacora".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueryEngineKind {
    Datafusion,
    Athena,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    pub engine: QueryEngineKind,
    pub workgroup: Option<String>,
    pub output_location: Option<String>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            engine: QueryEngineKind::Datafusion,
            workgroup: None,
            output_location: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Upper bound of one raw object, in bytes of uncompressed NDJSON.
    pub max_object_bytes: u64,
    /// Worker threads (0: one per core).
    pub workers: usize,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            max_object_bytes: 64 * 1024 * 1024,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// Target rows per curated Parquet file; also the unit of the bounded-memory dedup.
    pub rows_per_file: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level of the curated Parquet files.
    pub zstd_level: i32,
    /// Records larger than this (bytes of the raw envelope) are quarantined as `oversize`.
    pub max_record_bytes: usize,
    /// Where a day larger than `rows_per_file` is spilled while it is deduplicated (default: system temp).
    pub spill_dir: Option<PathBuf>,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Where the transform runs: `rust` (this process) or Apache Spark (`glue`, `emr-serverless`).
    /// With Spark the raw zone is written as gzip NDJSON (read natively by Spark and Athena) and
    /// must not be client-side encrypted (use `sse-kms`).
    pub engine: TransformEngine,
    /// glue: the name of the Glue job that runs `bitacora_transform.py`.
    pub glue_job: Option<String>,
    /// emr-serverless: the application that runs the job.
    pub emr_application_id: Option<String>,
    /// emr-serverless: the IAM role the job runs as.
    pub emr_execution_role: Option<String>,
    /// emr-serverless: `s3://…/bitacora_transform.py`, the job's entry point.
    pub script_location: Option<String>,
    /// glue, emr-serverless: seconds between two polls of a job run (grows to this from 2 s).
    pub poll_max_secs: u64,
}

/// The engine of the transform step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TransformEngine {
    #[default]
    Rust,
    Glue,
    EmrServerless,
}

impl TransformEngine {
    /// Whether the transform runs on Apache Spark (the raw zone must then be Spark-readable).
    pub fn is_spark(&self) -> bool {
        !matches!(self, TransformEngine::Rust)
    }
}

impl Default for TransformConfig {
    fn default() -> Self {
        TransformConfig {
            rows_per_file: 500_000,
            row_group_rows: 128 * 1024,
            zstd_level: 3,
            max_record_bytes: 256 * 1024,
            spill_dir: None,
            workers: 0,
            engine: TransformEngine::Rust,
            glue_job: None,
            emr_application_id: None,
            emr_execution_role: None,
            script_location: None,
            poll_max_secs: 30,
        }
    }
}

/// Number of worker threads for a `workers` setting (0: one per core).
pub fn worker_count(setting: usize) -> usize {
    if setting > 0 {
        setting
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    }
}

impl Config {
    /// Loads the configuration following the lookup order of the contract, then applies the
    /// environment overrides of the current process.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(explicit, &env)
    }

    /// Like [`Config::load`] with an explicit environment (for tests and embedding).
    pub fn load_with_env(explicit: Option<&Path>, env: &[(String, String)]) -> Result<Config> {
        let from_env = env
            .iter()
            .find(|(k, _)| k == CONFIG_ENV)
            .map(|(_, v)| PathBuf::from(v))
            .filter(|p| !p.as_os_str().is_empty());
        let path = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(p) => Some(p),
            None => {
                let local = PathBuf::from("bitacora.toml");
                local.exists().then_some(local)
            }
        };
        let (table, base) = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::ConfigFile {
                    path: p.clone(),
                    message: e.to_string(),
                })?;
                let t = parse_table(&text).map_err(|message| Error::ConfigFile {
                    path: p.clone(),
                    message,
                })?;
                let base = p
                    .parent()
                    .map(Path::to_path_buf)
                    .filter(|b| !b.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("."));
                (t, base)
            }
            None => (toml::Table::new(), PathBuf::from(".")),
        };
        Self::load_table(table, &base, env)
    }

    /// Loads a configuration document given as data (the Python module's `config=dict`) exactly
    /// like a file with that content in `base`: relative paths resolve against `base`, the
    /// environment overrides apply on top.
    pub fn load_table(
        mut table: toml::Table,
        base: &Path,
        env: &[(String, String)],
    ) -> Result<Config> {
        let components = ComponentSections::take(&mut table, &absolute(base), env)?;
        resolve_paths(&mut table, &absolute(base));
        let origins = apply_env(&mut table, env)?;
        let mut config = Self::finish(table).map_err(|e| from_env(e, &origins))?;
        config.components = components;
        Ok(config)
    }

    /// Parses the component section `T::SECTION` (absent: `T`'s defaults) with the rules of the
    /// core sections: unknown keys and wrong types are errors naming the dotted key and saying
    /// why, relative paths resolve against the file's folder, and `BITACORA_<SECTION>_<KEY>`
    /// variables override keys of any depth (`BITACORA_STREAM_DEDUP_TTL_SECS` sets
    /// `stream.dedup.ttl_secs`; arrays such as `stream.routes` are set in the file only).
    pub fn component<T: Component>(&self) -> Result<T> {
        self.components.parse::<T>()
    }

    /// Deserialises and validates a merged document, then resolves the remaining relative paths
    /// (defaults and environment values) against the working directory. Validation comes first:
    /// an empty path would otherwise resolve to the working directory itself.
    fn finish(table: toml::Table) -> Result<Config> {
        let mut config = Self::from_table(table)?;
        config.validate()?;
        config.resolve_defaults_against(&absolute(Path::new(".")));
        Ok(config)
    }

    /// Parses a TOML document (no environment overrides, relative paths against the working directory).
    pub fn from_toml_str(text: &str) -> Result<Config> {
        let mut table = parse_table(text).map_err(|message| Error::ConfigFile {
            path: PathBuf::from("<string>"),
            message,
        })?;
        let components = ComponentSections::take(&mut table, &absolute(Path::new(".")), &[])?;
        let mut config = Self::finish(table)?;
        config.components = components;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> Result<Config> {
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                let all: Vec<&str> = SECTIONS.iter().chain(COMPONENT_SECTIONS).copied().collect();
                return Err(Error::config(
                    key.escape_debug().to_string(),
                    format!("unknown section (expected one of {})", all.join(", ")),
                ));
            }
        }
        let value = toml::Value::Table(table);
        serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let key = e.path().to_string();
            let message = explain_serde_error(&value, &key, &e.inner().to_string());
            // A quoted key may hold a newline: the message stays on one line.
            let shown = if key == "." {
                "config".into()
            } else {
                key.escape_debug().to_string()
            };
            Error::config(shown, message)
        })
    }

    fn resolve_defaults_against(&mut self, base: &Path) {
        let join = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        self.source.path = join(&self.source.path);
        if let Some(k) = &self.encryption.key_file {
            self.encryption.key_file = Some(join(k));
        }
        if let Some(s) = &self.transform.spill_dir {
            self.transform.spill_dir = Some(join(s));
        }
        if !self.lake.root.contains("://") {
            self.lake.root = join(Path::new(&self.lake.root))
                .to_string_lossy()
                .into_owned();
        }
    }

    /// Rejects settings that are well-typed but unusable, naming the key.
    pub fn validate(&self) -> Result<()> {
        // Whether a backend exists in this build is decided by its factory (the step crates);
        // here only settings that no backend could use.
        self.validate_text()?;
        self.validate_numbers()?;
        if self.query.engine == QueryEngineKind::Athena
            && self.query.output_location.is_none()
            && self.query.workgroup.is_none()
        {
            return Err(Error::config(
                "query.output_location",
                "athena needs an s3:// output_location or a workgroup that has one",
            ));
        }
        if self.transform.engine.is_spark() && self.encryption.mode == EncryptionMode::Envelope {
            return Err(Error::config(
                "encryption.mode",
                "Spark (transform.engine) cannot read client-side encrypted raw objects: use \"sse-kms\" (or \"none\" for local tests)",
            ));
        }
        match self.encryption.mode {
            EncryptionMode::Envelope => {
                if self.encryption.key_file.is_none() && self.encryption.kms_key_id.is_none() {
                    return Err(Error::config(
                        "encryption.key_file",
                        "required when encryption.mode = \"envelope\" (or kms_key_id for KMS-wrapped data keys)",
                    ));
                }
            }
            EncryptionMode::SseKms => {
                if self.encryption.kms_key_id.is_none() {
                    return Err(Error::config(
                        "encryption.kms_key_id",
                        "required when encryption.mode = \"sse-kms\"",
                    ));
                }
                if !self.lake.root.trim().starts_with("s3://") {
                    return Err(Error::config(
                        "encryption.mode",
                        "\"sse-kms\" is server-side encryption of S3: it needs an s3:// lake.root",
                    ));
                }
            }
            EncryptionMode::None => {}
        }
        if self.catalog.database.is_empty()
            || !self
                .catalog
                .database
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(Error::config(
                "catalog.database",
                format!(
                    "{:?} is not a valid database name (lowercase letters, digits, _)",
                    self.catalog.database
                ),
            ));
        }
        Ok(())
    }

    /// Text and path settings: an empty one is never meant (an empty `lake.root` or `key_file`
    /// would be the working directory). Leave an optional key out to leave it unset.
    fn validate_text(&self) -> Result<()> {
        let paths = [
            ("source.path", Some(&self.source.path)),
            ("encryption.key_file", self.encryption.key_file.as_ref()),
            ("transform.spill_dir", self.transform.spill_dir.as_ref()),
        ];
        let texts = [
            ("lake.root", Some(&self.lake.root)),
            ("source.log_group", Some(&self.source.log_group)),
            (
                "source.log_stream_prefix",
                self.source.log_stream_prefix.as_ref(),
            ),
            ("encryption.kms_key_id", self.encryption.kms_key_id.as_ref()),
            ("query.workgroup", self.query.workgroup.as_ref()),
            ("query.output_location", self.query.output_location.as_ref()),
            ("transform.glue_job", self.transform.glue_job.as_ref()),
            (
                "transform.emr_application_id",
                self.transform.emr_application_id.as_ref(),
            ),
            (
                "transform.emr_execution_role",
                self.transform.emr_execution_role.as_ref(),
            ),
            (
                "transform.script_location",
                self.transform.script_location.as_ref(),
            ),
        ];
        let blank = paths
            .into_iter()
            .filter_map(|(k, p)| p.map(|p| (k, p.to_string_lossy().trim().is_empty())))
            .chain(
                texts
                    .into_iter()
                    .filter_map(|(k, t)| t.map(|t| (k, t.trim().is_empty()))),
            )
            .find(|(_, blank)| *blank);
        match blank {
            Some((key, _)) => Err(Error::config(key, "must not be empty")),
            None => Ok(()),
        }
    }

    /// Every numeric setting against the range it can be used in.
    fn validate_numbers(&self) -> Result<()> {
        let (s, l, e, t) = (&self.source, &self.lake, &self.extract, &self.transform);
        let rate = s.max_requests_per_second;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::config(
                "source.max_requests_per_second",
                format!("must be a number greater than 0, got {rate}"),
            ));
        }
        // (key, value, lowest, highest, why the bound)
        let ranges: [(&str, u64, u64, u64, &str); 16] = [
            (
                "source.slices",
                s.slices.into(),
                1,
                1440,
                " (slices of a minute at least)",
            ),
            (
                "source.page_size",
                s.page_size.into(),
                1,
                10_000,
                " (CloudWatch's limit)",
            ),
            ("source.max_attempts", s.max_attempts.into(), 1, 100, ""),
            (
                "source.settle_minutes",
                s.settle_minutes,
                0,
                20_160,
                " (14 days)",
            ),
            ("lake.max_retries", l.max_retries as u64, 0, 100, ""),
            ("lake.lease_secs", l.lease_secs, 15, 3_600, ""),
            (
                "lake.retry_timeout_secs",
                l.retry_timeout_secs,
                1,
                86_400,
                "",
            ),
            (
                "lake.multipart_bytes",
                l.multipart_bytes as u64,
                5 << 20,
                5 << 30,
                " (S3 parts are 5 MiB to 5 GiB)",
            ),
            (
                "extract.max_object_bytes",
                e.max_object_bytes,
                1,
                u64::MAX,
                "",
            ),
            (
                "extract.workers",
                e.workers as u64,
                0,
                1024,
                " (0: one per core)",
            ),
            (
                "transform.rows_per_file",
                t.rows_per_file as u64,
                1,
                u64::MAX,
                "",
            ),
            (
                "transform.row_group_rows",
                t.row_group_rows as u64,
                1,
                u64::MAX,
                "",
            ),
            (
                "transform.max_record_bytes",
                t.max_record_bytes as u64,
                1,
                u64::MAX,
                "",
            ),
            (
                "transform.workers",
                t.workers as u64,
                0,
                1024,
                " (0: one per core)",
            ),
            ("transform.poll_max_secs", t.poll_max_secs, 1, 3600, ""),
            (
                "transform.zstd_level",
                u64::try_from(t.zstd_level).unwrap_or(0),
                1,
                22,
                "",
            ),
        ];
        for (key, v, lo, hi, why) in ranges {
            if v < lo || v > hi {
                // zstd_level is the only signed one: report what was set.
                let got = if key == "transform.zstd_level" {
                    t.zstd_level.to_string()
                } else {
                    v.to_string()
                };
                let range = if hi == u64::MAX {
                    format!("at least {lo}")
                } else {
                    format!("between {lo} and {hi}")
                };
                return Err(Error::config(
                    key,
                    format!("must be {range}{why}, got {got}"),
                ));
            }
        }
        Ok(())
    }

    /// The configuration as a TOML document (used by `bitacora demo` to leave a config behind).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

fn parse_table(text: &str) -> std::result::Result<toml::Table, String> {
    text.parse::<toml::Table>().map_err(|e| {
        // toml's message spans several lines with a snippet: keep it on one line.
        e.to_string()
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with('|')
                    && !l
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '|' || c == ' ')
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn resolve_paths(table: &mut toml::Table, base: &Path) {
    for (section, key) in PATH_KEYS {
        let Some(toml::Value::Table(sec)) = table.get_mut(*section) else {
            continue;
        };
        let Some(toml::Value::String(s)) = sec.get_mut(*key) else {
            continue;
        };
        // A blank value is left for validation to reject (joined, it would name `base` itself).
        if s.contains("://") || s.trim().is_empty() {
            continue;
        }
        let p = Path::new(s.as_str());
        if p.is_relative() {
            *s = base.join(p).to_string_lossy().into_owned();
        }
    }
}

/// Explains a serde error of the document `doc` at the dotted `key` in words: what was expected
/// and the value found there (serde's own message names Rust types and sometimes omits the value).
fn explain_serde_error(doc: &toml::Value, key: &str, serde_message: &str) -> String {
    let first = serde_message.lines().next().unwrap_or_default().trim();
    // "unknown field `x`, expected `a` or `b`" / "..., expected one of `a`, `b`, `c`".
    if let Some(rest) = first.strip_prefix("unknown field `") {
        return match rest.split_once(", expected ") {
            Some((_, expected)) => format!("unknown key (expected {})", one_of(expected)),
            None => "unknown key".into(),
        };
    }
    if let Some(rest) = first.strip_prefix("unknown variant `") {
        return match rest.split_once("`, expected ") {
            Some((got, expected)) => {
                format!("unknown value {got:?} (expected {})", one_of(expected))
            }
            None => first.to_string(),
        };
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some((unexpected, expected)) = first
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        else {
            continue;
        };
        let found = lookup(doc, key);
        let got = match found {
            Some(v) => v.to_string(),
            None => unexpected.replace('`', ""),
        };
        let range_error = prefix == "invalid value: ";
        return format!(
            "expected {}, got {got}",
            expected_in_words(expected, range_error, found)
        );
    }
    first.to_string()
}

/// "`a` or `b`" / "one of `a`, `b`" → "one of a, b" (or just "a" for one name).
fn one_of(expected: &str) -> String {
    let list = expected.strip_prefix("one of ").unwrap_or(expected);
    let names: Vec<&str> = list
        .split(", ")
        .flat_map(|n| n.split(" or "))
        .map(|n| n.trim().trim_matches('`'))
        .filter(|n| !n.is_empty())
        .collect();
    match names.as_slice() {
        [one] => (*one).to_string(),
        _ => format!("one of {}", names.join(", ")),
    }
}

fn lookup<'a>(doc: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    // Dotted keys, with `[n]` for array elements (`routes[0].name`).
    key.split('.').try_fold(doc, |v, part| {
        let mut pieces = part.split('[');
        let mut v = v.get(pieces.next()?)?;
        for index in pieces {
            v = v.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
        Some(v)
    })
}

/// serde's name of the expected type, in the words of the configuration.
fn expected_in_words(expected: &str, range_error: bool, found: Option<&toml::Value>) -> String {
    let integer = |min: i128, max: i128| {
        if !range_error {
            return "an integer".to_string();
        }
        match found {
            Some(toml::Value::Integer(n)) if *n < 0 && min == 0 => {
                "a non-negative integer".to_string()
            }
            _ if min == 0 => format!("an integer of at most {max}"),
            _ => format!("an integer between {min} and {max}"),
        }
    };
    match expected {
        "u8" => integer(0, u8::MAX.into()),
        "u16" => integer(0, u16::MAX.into()),
        "u32" => integer(0, u32::MAX.into()),
        "u64" | "usize" => integer(0, i64::MAX.into()),
        "i8" => integer(i8::MIN.into(), i8::MAX.into()),
        "i16" => integer(i16::MIN.into(), i16::MAX.into()),
        "i32" => integer(i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => integer(i64::MIN.into(), i64::MAX.into()),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "string only" | "path string" | "a borrowed string" | "a character" => {
            "a string".into()
        }
        e if e.starts_with("struct ") => "a table".into(),
        e => e.to_string(),
    }
}

/// Applies `BITACORA_<SECTION>_<KEY>` variables, converted to the type of the key's default
/// (integers, floats, booleans; strings for the others). Returns which variable set which key.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut origins = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            continue;
        }
        let dotted = format!("{section}.{key}");
        let default = defaults.get(section).and_then(|s| s.get(key));
        let typed = typed_env_value(default, name, value, &dotted)?;
        let sec = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(sec) = sec {
            sec.insert(key.to_string(), typed);
        }
        origins.push((dotted, name.clone()));
    }
    Ok(origins)
}

/// Names the environment variable behind a configuration error about a key it set.
fn from_env(e: Error, origins: &[(String, String)]) -> Error {
    match e {
        Error::Config { key, message } => {
            let var = origins.iter().rev().find(|(k, _)| *k == key);
            match var {
                Some((_, name)) if !message.contains(name.as_str()) => Error::Config {
                    message: format!("{message} (from {name})"),
                    key,
                },
                _ => Error::Config { key, message },
            }
        }
        e => e,
    }
}

impl ComponentSections {
    /// Takes the component sections out of a document (the core sections stay), with the
    /// environment variables of their prefixes.
    fn take(table: &mut toml::Table, base: &Path, env: &[(String, String)]) -> Result<Self> {
        let mut tables = std::collections::BTreeMap::new();
        for name in COMPONENT_SECTIONS {
            match table.remove(*name) {
                None => {}
                Some(toml::Value::Table(t)) => {
                    tables.insert(name.to_string(), t);
                }
                Some(other) => {
                    return Err(Error::config(
                        *name,
                        format!("expected a table, got {other}"),
                    ));
                }
            }
        }
        let env = env
            .iter()
            .filter(|(k, _)| {
                COMPONENT_SECTIONS.iter().any(|s| {
                    k.strip_prefix(ENV_PREFIX).is_some_and(|rest| {
                        rest.to_ascii_lowercase()
                            .strip_prefix(s)
                            .is_some_and(|r| r.starts_with('_'))
                    })
                })
            })
            .cloned()
            .collect();
        Ok(ComponentSections {
            tables,
            base: base.to_path_buf(),
            env,
        })
    }

    fn parse<T: Component>(&self) -> Result<T> {
        let section = T::SECTION;
        let mut table = self.tables.get(section).cloned().unwrap_or_default();
        resolve_component_paths(&mut table, T::PATH_KEYS, &self.base);
        let defaults = toml::Table::try_from(T::default()).unwrap_or_default();
        let mut origins = Vec::new();
        let prefix = format!("{ENV_PREFIX}{}_", section.to_ascii_uppercase());
        for (name, value) in &self.env {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let path = env_key_path(&defaults, &rest.to_ascii_lowercase());
            let dotted = format!("{section}.{}", path.join("."));
            let default = path
                .iter()
                .try_fold(&toml::Value::Table(defaults.clone()), |v, k| v.get(k))
                .cloned();
            if let Some(toml::Value::Table(_)) = default {
                return Err(Error::config(
                    &dotted,
                    format!("is a table: set one of its keys (from {name})"),
                ));
            }
            let typed = typed_env_value(default.as_ref(), name, value, &dotted)?;
            insert_path(&mut table, &path, typed, &dotted)?;
            origins.push((dotted, name.clone()));
        }
        // Environment values are relative to the working directory.
        resolve_component_paths(&mut table, T::PATH_KEYS, &absolute(Path::new(".")));
        let value = toml::Value::Table(table);
        let parsed: T = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let key = e.path().to_string();
            let message = explain_serde_error(&value, &key, &e.inner().to_string());
            let shown = if key == "." {
                section.to_string()
            } else {
                format!("{section}.{}", key.escape_debug())
            };
            from_env(Error::config(shown, message), &origins)
        })?;
        parsed.validate().map_err(|e| from_env(e, &origins))?;
        Ok(parsed)
    }
}

/// The key path an environment variable's name (lowercased, after `BITACORA_<SECTION>_`) sets:
/// at each level the longest run of `_`-separated words that names a key of the defaults (a
/// table is descended into); what is left names a new key.
fn env_key_path(defaults: &toml::Table, rest: &str) -> Vec<String> {
    let words: Vec<&str> = rest.split('_').collect();
    let mut path = Vec::new();
    let mut table = Some(defaults);
    let mut i = 0;
    while i < words.len() {
        let found = table.and_then(|t| {
            (i + 1..=words.len())
                .rev()
                .map(|j| (j, words[i..j].join("_")))
                .find(|(_, k)| t.contains_key(k))
        });
        match found {
            Some((j, key)) if j < words.len() => {
                table = match table.and_then(|t| t.get(&key)) {
                    Some(toml::Value::Table(sub)) => Some(sub),
                    _ => None,
                };
                path.push(key);
                i = j;
                if table.is_none() {
                    // A leaf named before the end: the rest is part of an unknown key.
                    let last = path.pop().unwrap_or_default();
                    path.push(format!("{last}_{}", words[i..].join("_")));
                    return path;
                }
            }
            Some((_, key)) => {
                path.push(key);
                return path;
            }
            None => {
                path.push(words[i..].join("_"));
                return path;
            }
        }
    }
    path
}

/// An environment value converted to the type of its key's default (strings for keys without
/// one).
fn typed_env_value(
    default: Option<&toml::Value>,
    name: &str,
    value: &str,
    dotted: &str,
) -> Result<toml::Value> {
    let bad = |expected: &str| {
        Error::config(
            dotted,
            format!("expected {expected}, got {value:?} (from {name})"),
        )
    };
    let v = value.trim();
    Ok(match default {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(v.parse().map_err(|_| bad("an integer"))?)
        }
        Some(toml::Value::Float(_)) => toml::Value::Float(v.parse().map_err(|_| bad("a number"))?),
        Some(toml::Value::Boolean(_)) => match v.to_ascii_lowercase().as_str() {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        _ => toml::Value::String(value.to_string()),
    })
}

fn insert_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
    dotted: &str,
) -> Result<()> {
    let Some((last, parents)) = path.split_last() else {
        return Err(Error::config(dotted, "names no key"));
    };
    let mut t = table;
    for k in parents {
        let entry = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(sub) => sub,
            _ => return Err(Error::config(dotted, format!("{k} is not a table"))),
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Resolves the relative local paths at `keys` (dotted, `*` for array elements) against `base`.
fn resolve_component_paths(table: &mut toml::Table, keys: &[&str], base: &Path) {
    fn walk(v: &mut toml::Value, parts: &[&str], base: &Path) {
        let Some((first, rest)) = parts.split_first() else {
            if let toml::Value::String(s) = v
                && !s.contains("://")
                && !s.trim().is_empty()
                && Path::new(s.as_str()).is_relative()
            {
                *s = base.join(s.as_str()).to_string_lossy().into_owned();
            }
            return;
        };
        match (v, *first) {
            (toml::Value::Array(items), "*") => {
                for item in items {
                    walk(item, rest, base);
                }
            }
            (toml::Value::Table(t), key) => {
                if let Some(child) = t.get_mut(key) {
                    walk(child, rest, base);
                }
            }
            _ => {}
        }
    }
    let mut doc = toml::Value::Table(std::mem::take(table));
    for key in keys {
        let parts: Vec<&str> = key.split('.').collect();
        walk(&mut doc, &parts, base);
    }
    if let toml::Value::Table(t) = doc {
        *table = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded() {
        let c = Config::load_with_env(None, &env(&[])).unwrap();
        assert_eq!(c.source.kind, SourceKind::Files);
        assert_eq!(c.catalog.kind, CatalogKind::Local);
        assert_eq!(c.encryption.mode, EncryptionMode::Envelope);
        assert!(Path::new(&c.lake.root).is_absolute());
    }

    #[test]
    fn file_paths_are_relative_to_the_file_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.toml");
        std::fs::write(&p, "[source]\npath = \"logs\"\n[lake]\nroot = \"lake\"\n").unwrap();
        let c = Config::load_with_env(
            Some(&p),
            &env(&[
                ("BITACORA_TRANSFORM_ROWS_PER_FILE", "42"),
                ("BITACORA_CATALOG_DATABASE", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.source.path, dir.path().join("logs"));
        assert_eq!(c.lake.root, dir.path().join("lake").to_string_lossy());
        assert_eq!(c.transform.rows_per_file, 42);
        assert_eq!(c.catalog.database, "x");
    }

    #[test]
    fn bad_keys_are_named() {
        let e = Config::from_toml_str("[source]\npathh = \"x\"\n").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("source"), "{e}");
        assert!(e.to_string().contains("pathh"), "{e}");

        let e = Config::from_toml_str("[transform]\nrows_per_file = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("transform.rows_per_file"), "{e}");

        let e = Config::from_toml_str("[catalog]\nkind = \"hive\"\n").unwrap_err();
        assert!(e.to_string().contains("catalog.kind"), "{e}");

        let e = Config::from_toml_str("[nope]\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");

        let e = Config::load_with_env(None, &env(&[("BITACORA_TRANSFORM_ZSTD_LEVEL", "high")]))
            .unwrap_err();
        assert!(e.to_string().contains("transform.zstd_level"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    fn err(doc: &str) -> String {
        let e = Config::from_toml_str(doc).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        e.to_string()
    }

    fn env_err(pairs: &[(&str, &str)]) -> String {
        let e = Config::load_with_env(None, &env(pairs)).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        e.to_string()
    }

    #[test]
    fn empty_lake_root_and_paths_are_refused() {
        let e = err("[lake]\nroot = \"\"\n");
        assert_eq!(e, "bad configuration: lake.root: must not be empty");
        assert!(err("[lake]\nroot = \"  \"\n").contains("lake.root: must not be empty"));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.toml");
        std::fs::write(&p, "[lake]\nroot = \"\"\n[encryption]\nkey_file = \"k\"\n").unwrap();
        let e = Config::load_with_env(Some(&p), &env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("lake.root: must not be empty"),
            "{e}"
        );
        std::fs::write(&p, "[encryption]\nkey_file = \"\"\n").unwrap();
        let e = Config::load_with_env(Some(&p), &env(&[])).unwrap_err();
        assert!(
            e.to_string()
                .contains("encryption.key_file: must not be empty"),
            "{e}"
        );

        assert_eq!(
            env_err(&[("BITACORA_LAKE_ROOT", "")]),
            "bad configuration: lake.root: must not be empty (from BITACORA_LAKE_ROOT)"
        );
        for (var, key) in [
            ("BITACORA_SOURCE_PATH", "source.path"),
            ("BITACORA_TRANSFORM_SPILL_DIR", "transform.spill_dir"),
            ("BITACORA_QUERY_WORKGROUP", "query.workgroup"),
        ] {
            let e = env_err(&[(var, "")]);
            assert!(e.contains(&format!("{key}: must not be empty")), "{e}");
        }
    }

    #[test]
    fn errors_say_why_and_name_the_bad_key() {
        let cases = [
            (
                "[extract]\nworkerz = 1\n",
                "extract.workerz: unknown key (expected one of max_object_bytes, workers)",
            ),
            (
                "[extract]\nworkers = \"two\"\n",
                "extract.workers: expected an integer, got \"two\"",
            ),
            (
                "[extract]\nworkers = 2.5\n",
                "extract.workers: expected an integer, got 2.5",
            ),
            (
                "[extract]\nworkers = -1\n",
                "extract.workers: expected a non-negative integer, got -1",
            ),
            (
                "[source]\nslices = 5000000000\n",
                "source.slices: expected an integer of at most 4294967295, got 5000000000",
            ),
            (
                "[source]\nlog_group = true\n",
                "source.log_group: expected a string, got true",
            ),
            (
                "[source]\nmax_requests_per_second = \"fast\"\n",
                "source.max_requests_per_second: expected a number, got \"fast\"",
            ),
            (
                "[encryption]\nkey_file = 3\n",
                "encryption.key_file: expected a string, got 3",
            ),
            (
                "[catalog]\nkind = \"hive\"\n",
                "catalog.kind: unknown value \"hive\" (expected one of local, glue)",
            ),
            ("lake = 3\n", "lake: expected a table, got 3"),
            (
                "[nope]\n",
                "nope: unknown section (expected one of source, lake, encryption, catalog, query, extract, transform, stream, lambda)",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(err(doc), format!("bad configuration: {want}"), "{doc:?}");
        }
        let e = env_err(&[("BITACORA_EXTRACT_WORKERZ", "1")]);
        assert!(
            e.contains("extract.workerz: unknown key (expected one of"),
            "{e}"
        );
        assert!(e.ends_with("(from BITACORA_EXTRACT_WORKERZ)"), "{e}");
    }

    #[test]
    fn environment_values_take_the_type_of_their_key() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("BITACORA_SOURCE_MAX_REQUESTS_PER_SECOND", "2"),
                ("BITACORA_SOURCE_PAGE_SIZE", " 500 "),
                ("BITACORA_SOURCE_LOG_STREAM_PREFIX", "ios-"),
            ]),
        )
        .unwrap();
        assert_eq!(c.source.max_requests_per_second, 2.0);
        assert_eq!(c.source.page_size, 500);
        assert_eq!(c.source.log_stream_prefix.as_deref(), Some("ios-"));
        let c = Config::load_with_env(
            None,
            &env(&[("BITACORA_SOURCE_MAX_REQUESTS_PER_SECOND", "0.5")]),
        )
        .unwrap();
        assert_eq!(c.source.max_requests_per_second, 0.5);

        assert_eq!(
            env_err(&[("BITACORA_SOURCE_MAX_REQUESTS_PER_SECOND", "two")]),
            "bad configuration: source.max_requests_per_second: expected a number, got \"two\" (from BITACORA_SOURCE_MAX_REQUESTS_PER_SECOND)"
        );
        let e = env_err(&[("BITACORA_EXTRACT_WORKERS", "2.5")]);
        assert!(
            e.contains("extract.workers: expected an integer, got \"2.5\""),
            "{e}"
        );
        let e = env_err(&[("BITACORA_SOURCE_MAX_REQUESTS_PER_SECOND", "NaN")]);
        assert!(e.contains("source.max_requests_per_second: must be a number greater than 0, got NaN (from BITACORA_SOURCE_MAX_REQUESTS_PER_SECOND)"), "{e}");
        let e = env_err(&[("BITACORA_SOURCE_SLICES", "0")]);
        assert!(
            e.contains("source.slices: must be between 1 and 1440"),
            "{e}"
        );
        assert!(e.ends_with("(from BITACORA_SOURCE_SLICES)"), "{e}");
    }

    #[test]
    fn numeric_settings_out_of_range_are_refused() {
        let cases = [
            (
                "[source]\nslices = 0",
                "source.slices: must be between 1 and 1440 (slices of a minute at least), got 0",
            ),
            (
                "[source]\nslices = 1441",
                "source.slices: must be between 1 and 1440",
            ),
            (
                "[source]\npage_size = 0",
                "source.page_size: must be between 1 and 10000 (CloudWatch's limit), got 0",
            ),
            (
                "[source]\npage_size = 10001",
                "source.page_size: must be between 1 and 10000",
            ),
            (
                "[source]\nmax_requests_per_second = 0",
                "source.max_requests_per_second: must be a number greater than 0, got 0",
            ),
            (
                "[source]\nmax_requests_per_second = -2.5",
                "source.max_requests_per_second: must be a number greater than 0, got -2.5",
            ),
            (
                "[source]\nmax_requests_per_second = nan",
                "source.max_requests_per_second: must be a number greater than 0, got NaN",
            ),
            (
                "[source]\nmax_requests_per_second = inf",
                "source.max_requests_per_second: must be a number greater than 0, got inf",
            ),
            (
                "[source]\nmax_attempts = 0",
                "source.max_attempts: must be between 1 and 100, got 0",
            ),
            (
                "[source]\nsettle_minutes = 100000",
                "source.settle_minutes: must be between 0 and 20160",
            ),
            (
                "[lake]\nmax_retries = 1000",
                "lake.max_retries: must be between 0 and 100, got 1000",
            ),
            (
                "[lake]\nretry_timeout_secs = 0",
                "lake.retry_timeout_secs: must be between 1 and 86400, got 0",
            ),
            (
                "[lake]\nmultipart_bytes = 1000",
                "lake.multipart_bytes: must be between 5242880 and 5368709120",
            ),
            (
                "[extract]\nmax_object_bytes = 0",
                "extract.max_object_bytes: must be at least 1, got 0",
            ),
            (
                "[extract]\nworkers = 100000",
                "extract.workers: must be between 0 and 1024 (0: one per core), got 100000",
            ),
            (
                "[transform]\nrows_per_file = 0",
                "transform.rows_per_file: must be at least 1, got 0",
            ),
            (
                "[transform]\nrow_group_rows = 0",
                "transform.row_group_rows: must be at least 1",
            ),
            (
                "[transform]\nmax_record_bytes = 0",
                "transform.max_record_bytes: must be at least 1",
            ),
            (
                "[transform]\nworkers = 2000",
                "transform.workers: must be between 0 and 1024",
            ),
            (
                "[transform]\npoll_max_secs = 0",
                "transform.poll_max_secs: must be between 1 and 3600, got 0",
            ),
            (
                "[transform]\nzstd_level = 0",
                "transform.zstd_level: must be between 1 and 22, got 0",
            ),
            (
                "[transform]\nzstd_level = -3",
                "transform.zstd_level: must be between 1 and 22, got -3",
            ),
        ];
        for (doc, want) in cases {
            let e = err(doc);
            assert!(e.contains(want), "{doc:?}: {e}");
        }
        // The bounds themselves are usable.
        let c = Config::from_toml_str(
            "[source]\nslices = 1440\npage_size = 10000\nmax_attempts = 1\nmax_requests_per_second = 0.01\nsettle_minutes = 0\n\
             [lake]\nmax_retries = 0\nretry_timeout_secs = 1\nmultipart_bytes = 5242880\n\
             [extract]\nmax_object_bytes = 1\nworkers = 1024\n[transform]\nzstd_level = 22\npoll_max_secs = 3600\n",
        )
        .unwrap();
        assert_eq!(c.source.page_size, 10_000);
        Config::default().validate().unwrap();
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let e =
            Config::load_with_env(Some(Path::new("/nonexistent/b.toml")), &env(&[])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("/nonexistent/b.toml"));
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Stream {
        listen: String,
        queue_records: u64,
        token_file: Option<PathBuf>,
        dedup: Dedup,
        routes: Vec<Route>,
    }
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Dedup {
        ttl_secs: u64,
        url: String,
    }
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        name: String,
        path: PathBuf,
    }
    impl Component for Stream {
        const SECTION: &'static str = "stream";
        const PATH_KEYS: &'static [&'static str] = &["token_file", "routes.*.path"];
        fn validate(&self) -> Result<()> {
            if self.queue_records > 1_000 {
                return Err(Error::config(
                    "stream.queue_records",
                    "must be at most 1000",
                ));
            }
            Ok(())
        }
    }

    #[test]
    fn component_sections_are_parsed_by_their_owner_with_the_same_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(
            &file,
            "[lake]\nroot = \"lake\"\n[stream]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"tok\"\n\
             [stream.dedup]\nttl_secs = 5\n[[stream.routes]]\nname = \"a\"\npath = \"out/a\"\n",
        )
        .unwrap();
        // Batch binaries accept the shared file and ignore the section.
        let c = Config::load_with_env(Some(&file), &[]).unwrap();
        let s: Stream = c.component().unwrap();
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.dedup.ttl_secs, 5);
        assert_eq!(s.token_file, Some(dir.path().join("tok")));
        assert_eq!(s.routes[0].path, dir.path().join("out/a"));
        // Environment overrides reach nested keys, typed by the defaults.
        let c = Config::load_with_env(
            Some(&file),
            &env(&[
                ("BITACORA_STREAM_DEDUP_TTL_SECS", "7"),
                ("BITACORA_STREAM_DEDUP_URL", "redis://x"),
                ("BITACORA_STREAM_QUEUE_RECORDS", "9"),
                ("BITACORA_STREAM_TOKEN_FILE", "rel"),
            ]),
        )
        .unwrap();
        let s: Stream = c.component().unwrap();
        assert_eq!(
            (s.dedup.ttl_secs, s.dedup.url.as_str(), s.queue_records),
            (7, "redis://x", 9)
        );
        assert_eq!(s.token_file, Some(absolute(Path::new("rel"))));
        // Errors name the dotted key, say why, and the variable behind them.
        let e = Config::load_with_env(
            Some(&file),
            &env(&[("BITACORA_STREAM_DEDUP_TTL_SECS", "x")]),
        )
        .unwrap()
        .component::<Stream>()
        .unwrap_err()
        .to_string();
        assert!(e.contains("stream.dedup.ttl_secs: expected an integer, got \"x\" (from BITACORA_STREAM_DEDUP_TTL_SECS)"), "{e}");
        let e = Config::load_with_env(
            Some(&file),
            &env(&[("BITACORA_STREAM_QUEUE_RECORDS", "5000")]),
        )
        .unwrap()
        .component::<Stream>()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "stream.queue_records: must be at most 1000 (from BITACORA_STREAM_QUEUE_RECORDS)"
            ),
            "{e}"
        );
        let e = Config::from_toml_str("[stream.dedup]\nttl = 1\n")
            .unwrap()
            .component::<Stream>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stream.dedup.ttl: unknown key (expected one of ttl_secs, url)"),
            "{e}"
        );
        let e = Config::from_toml_str("[[stream.routes]]\nname = 3\npath = \"p\"\n")
            .unwrap()
            .component::<Stream>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stream.routes[0].name: expected a string, got 3"),
            "{e}"
        );
        // Absent: the owner's defaults.
        assert_eq!(
            Config::from_toml_str("")
                .unwrap()
                .component::<Stream>()
                .unwrap(),
            Stream::default()
        );
        // Still no unknown sections.
        let e = Config::from_toml_str("[streams]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown section") && e.contains("stream"), "{e}");
    }
}
