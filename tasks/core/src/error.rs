//! The error type of the Bitácora libraries.
//!
//! Every variant carries the context a user needs to act: the configuration key, the file or object,
//! the record. [`Error::exit_code`] maps errors onto the command-line contract (2 for bad usage or
//! configuration, 1 for everything else).

use std::path::PathBuf;

/// Boxed error used as the `source` of variants that wrap foreign error types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout Bitácora.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, unknown or invalid. `key` is the dotted TOML key.
    #[error("bad configuration: {key}: {message}")]
    Config { key: String, message: String },

    /// The configuration file could not be read or parsed.
    #[error("bad configuration file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },

    /// Invalid command-line parameters (for example a malformed date).
    #[error("bad usage: {0}")]
    Usage(String),

    /// A local file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A log-source unit (file, time slice) could not be read.
    #[error("log source: cannot read {unit}: {message}")]
    Source { unit: String, message: String },

    /// The object store failed on an object of the lake.
    #[error("lake: {action} {location}: {source}")]
    Storage {
        action: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },

    /// Encryption or decryption of an object failed (wrong key, tampering, truncation).
    #[error("encryption: {object}: {message}")]
    Crypto { object: String, message: String },

    /// The encryption key could not be loaded or created.
    #[error("encryption key {path}: {message}")]
    Key { path: PathBuf, message: String },

    /// A manifest or catalog document is missing or unreadable.
    #[error("{what} {location}: {message}")]
    Metadata {
        what: &'static str,
        location: String,
        message: String,
    },

    /// A required input does not exist yet (for example no raw zone for the day).
    #[error("{0}")]
    NotFound(String),

    /// Another run of the same step and day holds its lease (or took it over): this run did nothing.
    #[error("{0}")]
    Busy(String),

    /// The data written would break an invariant of the pipeline.
    #[error("invariant violated: {0}")]
    Invariant(String),

    /// The catalog backend failed.
    #[error("catalog: {0}")]
    Catalog(String),

    /// The query engine failed or refused a statement.
    #[error("query: {0}")]
    Query(String),

    /// An AWS service call failed (after the SDK's retries): service, operation and AWS's message.
    #[error("aws {service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// A foreign library failed while doing `context`.
    #[error("{context}: {source}")]
    External {
        context: String,
        #[source]
        source: BoxError,
    },
}

pub use bitacora_model::one_line;

impl Error {
    /// Exit code of the command-line contract: 2 for bad usage or configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } | Error::ConfigFile { .. } | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Short machine-readable kind, used in JSON error reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } | Error::ConfigFile { .. } => "config",
            Error::Usage(_) => "usage",
            Error::Io { .. } => "io",
            Error::Source { .. } => "source",
            Error::Storage { .. } => "storage",
            Error::Crypto { .. } | Error::Key { .. } => "encryption",
            Error::Metadata { .. } | Error::NotFound(_) => "metadata",
            Error::Busy(_) => "busy",
            Error::Invariant(_) => "invariant",
            Error::Catalog(_) => "catalog",
            Error::Query(_) => "query",
            Error::Aws { .. } => "aws",
            Error::External { .. } => "external",
        }
    }

    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn external(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::External {
            context: context.into(),
            source: source.into(),
        }
    }
}
