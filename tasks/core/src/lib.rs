//! Bitácora core: everything the pipeline steps share.
//!
//! * [`config`]: the TOML configuration contract with environment overrides.
//! * [`error`]: the error type every library crate returns, and its exit-code mapping.
//! * [`model`] and [`normalize`]: the CloudWatch-shaped envelope, the app message and the one
//!   normalisation that both the batch transform and the streaming service use.
//! * [`schema`]: the curated tables (`events`, `quarantine`) as Arrow schemas and Hive/Glue types.
//! * [`lake`]: the object-store backed data lake and its layout; [`manifest`]: atomic publication.
//! * [`crypto`]: client-side envelope encryption of raw objects (AES-256-GCM, chunked).
//! * [`source`] and [`catalog`]: backend traits, implemented by the step crates.
//! * [`cli`]: the command-line contract shared by every binary (one JSON report, exit codes 0/1/2).

#[cfg(feature = "aws")]
pub mod aws;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod date;
pub mod error;
mod json;
#[cfg(feature = "aws")]
pub mod kms;
pub mod lake;
pub mod lease;
pub mod lines;
pub mod manifest;
pub mod model;
pub mod normalize;
pub mod parallel;
pub mod process;
pub mod progress;
pub mod query;
pub mod raw;
pub mod runtime;
pub mod schema;
pub mod source;

pub use config::Config;
pub use date::Day;
pub use error::{Error, Result};
pub use process::Allocator;

/// Entry points into private parts of the crate for the fuzz targets of `tasks/fuzz` and their
/// replay test (`tests/fuzz_regressions.rs`). Not an API: it may change with the scanner.
#[doc(hidden)]
pub mod fuzzing {
    /// Whether the strict JSON scanner takes `text` for exactly one JSON value.
    pub fn json_is_value(text: &str) -> bool {
        crate::json::is_value(text)
    }

    /// The members (key, raw value) of a JSON object as the scanner reads them; `None`: the
    /// scanner leaves `text` to `serde_json`.
    pub fn json_object_members(text: &str) -> Option<Vec<(&str, &str)>> {
        let mut out = Vec::new();
        crate::json::object_members(text, |k, v| {
            out.push((k, v));
            Some(())
        })?;
        Some(out)
    }

    /// The members (key, raw value) of a JSON object as `serde_json` reads them (the reference of
    /// [`json_object_members`]); `Err` with serde_json's words when it is not one.
    pub fn json_object_members_serde(
        text: &str,
    ) -> Result<Vec<(std::borrow::Cow<'_, str>, &str)>, String> {
        serde_json::from_str::<crate::normalize::Members<'_>>(text)
            .map(|m| m.0)
            .map_err(|e| e.to_string())
    }

    /// An envelope line as the scanner reads it: (timestamp, ingestionTime, message,
    /// logStreamName, eventId); `None`: the scanner leaves the line to `serde_json`.
    pub fn json_envelope(line: &str) -> Option<(i64, Option<i64>, String, &str, &str)> {
        let mut scratch = String::new();
        let e = crate::json::envelope(line, &mut scratch)?;
        let message = e.message.map_or_else(|| scratch.clone(), str::to_string);
        Some((
            e.timestamp,
            e.ingestion_time,
            message,
            e.log_stream_name,
            e.event_id,
        ))
    }
}
