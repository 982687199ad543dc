//! Errors of the stream service's components.

/// Result of the stream crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting cannot be used (exit code 2).
    #[error("bad configuration: {key}: {message}")]
    Config { key: String, message: String },
    /// The dedup store failed (it is retried: records are held back, never passed unchecked).
    #[error("dedup store {store}: {message}")]
    Dedup {
        store: &'static str,
        message: String,
    },
    /// A sink failed to take a batch; `retryable` tells whether sending again may succeed.
    #[error("sink {sink}: {message}")]
    Sink {
        sink: String,
        message: String,
        retryable: bool,
    },
    /// Local file I/O, naming the path.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The service is shutting down or a component stopped: the batch was not taken.
    #[error("{0}")]
    Unavailable(String),
    /// Errors of the shared crates (configuration loading).
    #[error(transparent)]
    Core(#[from] bitacora_core::Error),
}

impl Error {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn io(
        action: &'static str,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn sink(sink: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Error::Sink {
            sink: sink.into(),
            message: bitacora_model::one_line(&message.into()),
            retryable,
        }
    }

    /// Whether trying again may succeed: a sink that said so, local I/O (a full disk, a
    /// folder being remounted), the dedup store, a component busy or restarting. A refusal for
    /// good (configuration, a sink that rejects the batch itself) is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sink { retryable, .. } => *retryable,
            Error::Io { .. } | Error::Dedup { .. } | Error::Unavailable(_) => true,
            Error::Config { .. } | Error::Core(_) => false,
        }
    }

    /// Exit code of the command-line contract: 2 for bad configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } => 2,
            Error::Core(e) => e.exit_code(),
            _ => 1,
        }
    }
}
