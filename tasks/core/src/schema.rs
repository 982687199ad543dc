//! The curated tables of the lake: their columns as Arrow fields and as Hive/Glue types.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the partition column of every curated table (`YYYY-MM-DD`).
pub const PARTITION_COLUMN: &str = "dt";
pub const EVENTS_TABLE: &str = "events";
pub const QUARANTINE_TABLE: &str = "quarantine";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `bitacora.events`, without the partition column.
pub fn events_schema() -> SchemaRef {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("event_id", false),
        Field::new("event_time", ts(), false),
        Field::new("ingest_time", ts(), true),
        s("log_group", false),
        s("log_stream", false),
        s("level", true),
        s("event_type", true),
        s("user_id", true),
        s("session_id", true),
        s("app_version", true),
        s("platform", true),
        s("os_version", true),
        s("device_model", true),
        s("country", true),
        Field::new("latency_ms", DataType::Int64, true),
        Field::new("status_code", DataType::Int32, true),
        s("error_code", true),
        s("message", true),
        s("properties", true),
    ]))
}

/// `bitacora.quarantine`, without the partition column.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("log_group", DataType::Utf8, false),
        Field::new("log_stream", DataType::Utf8, true),
        Field::new("source_event_id", DataType::Utf8, true),
        Field::new("source_timestamp", ts(), true),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// The schema of a curated table by name.
pub fn table_schema(table: &str) -> Option<SchemaRef> {
    match table {
        EVENTS_TABLE => Some(events_schema()),
        QUARANTINE_TABLE => Some(quarantine_schema()),
        _ => None,
    }
}

/// The Hive type Glue and Athena use for an Arrow type of our schemas.
pub fn hive_type(dt: &DataType) -> &'static str {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Int64 => "bigint",
        DataType::Int32 => "int",
        DataType::Boolean => "boolean",
        DataType::Float64 => "double",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "string",
    }
}

/// The Arrow type for a Hive type of our catalog.
pub fn arrow_type(hive: &str) -> Option<DataType> {
    Some(match hive {
        "string" => DataType::Utf8,
        "bigint" => DataType::Int64,
        "int" => DataType::Int32,
        "boolean" => DataType::Boolean,
        "double" => DataType::Float64,
        "timestamp" => ts(),
        _ => return None,
    })
}
