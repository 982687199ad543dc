//! The transform's normalisation of raw-zone lines into Arrow rows, for an engine that runs it
//! elsewhere: the Spark job calls it through the Python module (`bitacora.normalize_lines`, inside
//! `mapInArrow`), so that the Rust and Spark transforms share one normaliser.

use arrow::array::{Array, AsArray, RecordBatch};
use bitacora_core::{Error, Result};
use bitacora_model::normalize::Normalizer;

use crate::batch::{EventBuilder, QuarantineBuilder};

/// Normalises `lines` (a string array: one raw-zone NDJSON line each) exactly as the transform's
/// first pass does: the events, with the delivery provenance the dedup orders by
/// ([`crate::batch::work_schema`]: `_source_timestamp`, `_source_event_id`), and the quarantine
/// rows (`bitacora.quarantine`'s columns, without `dt`). A null line counts as an empty one.
pub fn normalize_lines(
    log_group: &str,
    max_record_bytes: usize,
    lines: &dyn Array,
) -> Result<(RecordBatch, RecordBatch)> {
    let normalizer = Normalizer::new(log_group.to_string(), max_record_bytes);
    let mut events = EventBuilder::new(lines.len());
    let mut quarantine = QuarantineBuilder::default();
    let mut scratch = String::new();
    let mut each =
        |line: Option<&str>| match normalizer.normalize_line(line.unwrap_or(""), &mut scratch) {
            Ok(e) => events.append(&e),
            Err(r) => quarantine.append(&r, normalizer.log_group()),
        };
    if let Some(a) = lines.as_string_opt::<i32>() {
        a.iter().for_each(&mut each);
    } else if let Some(a) = lines.as_string_opt::<i64>() {
        a.iter().for_each(&mut each);
    } else if let Some(a) = lines.as_string_view_opt() {
        a.iter().for_each(&mut each);
    } else {
        return Err(Error::Usage(format!(
            "normalize_lines: expected an array of strings, got {}",
            lines.data_type()
        )));
    }
    Ok((events.finish()?, quarantine.finish()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn lines_become_events_and_quarantine_rows() {
        let ok = r#"{"timestamp":1793577600123,"message":"{\"event_id\":\"e1\",\"ts\":\"2026-11-02T00:00:00Z\",\"event_type\":\"tap\"}","logStreamName":"s","eventId":"9"}"#;
        let lines = StringArray::from(vec![Some(ok), Some("not json"), None, Some(ok)]);
        let (events, quarantine) = normalize_lines("/g", 262_144, &lines).unwrap();
        assert_eq!((events.num_rows(), quarantine.num_rows()), (2, 2));
        assert_eq!(events.schema(), crate::batch::work_schema());
        let ids = events
            .column_by_name("event_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "e1");
        let reasons = quarantine
            .column_by_name("reason")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(reasons.value(0), "broken_envelope");
        let e = normalize_lines("/g", 10, &arrow::array::Int64Array::from(vec![1])).unwrap_err();
        assert!(
            e.to_string().contains("expected an array of strings"),
            "{e}"
        );
    }
}
