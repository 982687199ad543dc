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
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: "lake".into(),
            max_retries: 10,
            retry_timeout_secs: 180,
            multipart_bytes: 16 << 20,
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
        resolve_paths(&mut table, &absolute(base));
        apply_env(&mut table, env)?;
        let mut config = Self::from_table(table)?;
        config.resolve_defaults_against(&absolute(Path::new(".")));
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document (no environment overrides, relative paths against the working directory).
    pub fn from_toml_str(text: &str) -> Result<Config> {
        let table = parse_table(text).map_err(|message| Error::ConfigFile {
            path: PathBuf::from("<string>"),
            message,
        })?;
        let mut config = Self::from_table(table)?;
        config.resolve_defaults_against(&absolute(Path::new(".")));
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> Result<Config> {
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                return Err(Error::config(
                    key.clone(),
                    format!("unknown section (expected one of {})", SECTIONS.join(", ")),
                ));
            }
        }
        let value = toml::Value::Table(table);
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().to_string();
            let message = message
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            Error::config(if key == "." { "config".into() } else { key }, message)
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
        if self.source.kind == SourceKind::Cloudwatch && self.source.log_group.trim().is_empty() {
            return Err(Error::config(
                "source.log_group",
                "required when source.kind = \"cloudwatch\"",
            ));
        }
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
        let positive = [
            (
                "extract.max_object_bytes",
                self.extract.max_object_bytes as usize,
            ),
            ("transform.rows_per_file", self.transform.rows_per_file),
            ("transform.row_group_rows", self.transform.row_group_rows),
            (
                "transform.max_record_bytes",
                self.transform.max_record_bytes,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(Error::config(key, "must be greater than 0"));
            }
        }
        if !(1..=22).contains(&self.transform.zstd_level) {
            return Err(Error::config(
                "transform.zstd_level",
                "must be between 1 and 22",
            ));
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
            .lines()
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
        if s.contains("://") {
            continue;
        }
        let p = Path::new(s.as_str());
        if p.is_relative() {
            *s = base.join(p).to_string_lossy().into_owned();
        }
    }
}

/// Applies `BITACORA_<SECTION>_<KEY>` variables. Values are typed by the key's current default:
/// integers for numeric keys, strings otherwise.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<()> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
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
        let numeric = matches!(
            defaults.get(section).and_then(|s| s.get(key)),
            Some(toml::Value::Integer(_))
        );
        let typed = if numeric {
            let n: i64 = value.trim().parse().map_err(|_| {
                Error::config(
                    format!("{section}.{key}"),
                    format!("{name}={value:?} is not an integer"),
                )
            })?;
            toml::Value::Integer(n)
        } else {
            toml::Value::String(value.clone())
        };
        let sec = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(sec) = sec {
            sec.insert(key.to_string(), typed);
        }
    }
    Ok(())
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

    #[test]
    fn missing_file_is_a_config_error() {
        let e =
            Config::load_with_env(Some(Path::new("/nonexistent/b.toml")), &env(&[])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("/nonexistent/b.toml"));
    }
}
