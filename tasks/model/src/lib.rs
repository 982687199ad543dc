//! Bitácora's record model and its one normalisation, without I/O.
//!
//! * [`model`]: the CloudWatch-shaped envelope, the normalised [`model::Event`] and the
//!   [`model::Rejected`] record with its quarantine [`model::Reason`].
//! * [`normalize`]: envelope (or app message) → event or rejected record, the same for the batch
//!   transform, the stream service and the Lambda handlers.
//!
//! The crate links only `serde`, `serde_json` and `chrono`, so that a Lambda binary built on it
//! stays small and starts fast; the lake, encryption and manifests live in `bitacora-core`.

mod json;
pub mod model;
pub mod normalize;
pub mod routed;

/// `s` on one line: runs of whitespace (newlines included) become one space. Every error detail
/// and quarantine reason of Bitácora is written through it, so that a log line is one record.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Entry points into private parts of the crate for the fuzz targets of `tasks/fuzz` and their
/// replay test (`bitacora-core`'s `tests/fuzz_regressions.rs`). Not an API: it may change with
/// the scanner.
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
