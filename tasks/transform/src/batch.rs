//! Arrow builders for the curated rows: normalised events and quarantined records.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bitacora_core::schema::{events_schema, quarantine_schema};
use bitacora_core::{Error, Result};
use bitacora_model::model::{Event, Rejected};

/// Bytes of string data after which a builder hands its rows over, whatever their number: Arrow
/// string arrays hold at most 2 GiB, and a batch of large messages would reach that long before
/// its row count.
pub const FLUSH_BYTES: usize = 256 << 20;

/// Hidden columns carried through the dedup, dropped before writing.
pub const SRC_TS: &str = "_source_timestamp";
pub const SRC_ID: &str = "_source_event_id";

/// `events` columns followed by the delivery provenance used by the dedup rule.
pub fn work_schema() -> SchemaRef {
    let mut fields: Vec<Field> = events_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(SRC_TS, DataType::Int64, false));
    fields.push(Field::new(SRC_ID, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

fn ts_builder(cap: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC")
}

/// Builds `events` rows (plus the hidden provenance columns).
pub struct EventBuilder {
    schema: SchemaRef,
    strings: Vec<StringBuilder>,
    event_time: TimestampMicrosecondBuilder,
    ingest_time: TimestampMicrosecondBuilder,
    latency_ms: Int64Builder,
    status_code: Int32Builder,
    src_ts: Int64Builder,
    /// Rows a batch is expected to hold (the buffers' capacity).
    cap: usize,
    len: usize,
    bytes: usize,
}

// Index of each string column in `strings`.
const S_EVENT_ID: usize = 0;
const S_LOG_GROUP: usize = 1;
const S_LOG_STREAM: usize = 2;
const S_LEVEL: usize = 3;
const S_EVENT_TYPE: usize = 4;
const S_USER: usize = 5;
const S_SESSION: usize = 6;
const S_APP_VERSION: usize = 7;
const S_PLATFORM: usize = 8;
const S_OS: usize = 9;
const S_DEVICE: usize = 10;
const S_COUNTRY: usize = 11;
const S_ERROR_CODE: usize = 12;
const S_MESSAGE: usize = 13;
const S_PROPERTIES: usize = 14;
const S_SRC_ID: usize = 15;
const STRINGS: usize = 16;
/// Starting capacity, in bytes per row, of each string column (by index above); later batches
/// reserve what the previous one used.
const STRING_BYTES: [usize; STRINGS] = [40, 16, 24, 8, 16, 16, 24, 8, 8, 8, 16, 4, 8, 16, 48, 64];
/// The most a string column reserves up front for its next batch (more grows as needed). What is
/// reserved and not written is address space only: memory pages are committed as they are written.
const MAX_RESERVE: usize = 64 << 20;

impl EventBuilder {
    /// A builder for batches of about `cap` rows. Its buffers are sized for that many rows from
    /// the start, and after each [`Self::finish`] for what the last batch needed, so that they
    /// rarely grow by copying (every reallocation touches fresh memory and copies what was built).
    pub fn new(cap: usize) -> Self {
        EventBuilder {
            schema: work_schema(),
            strings: STRING_BYTES
                .iter()
                .map(|&per_row| StringBuilder::with_capacity(cap, cap * per_row))
                .collect(),
            event_time: ts_builder(cap),
            ingest_time: ts_builder(cap),
            latency_ms: Int64Builder::with_capacity(cap),
            status_code: Int32Builder::with_capacity(cap),
            src_ts: Int64Builder::with_capacity(cap),
            cap,
            len: 0,
            bytes: 0,
        }
    }

    /// Whether the builder should hand its rows over: `rows` reached, or [`FLUSH_BYTES`].
    pub fn full(&self, rows: usize) -> bool {
        self.len >= rows || self.bytes >= FLUSH_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, e: &Event<'_>) {
        let s = &mut self.strings;
        s[S_EVENT_ID].append_value(&e.event_id);
        s[S_LOG_GROUP].append_value(&e.log_group);
        s[S_LOG_STREAM].append_value(&e.log_stream);
        s[S_LEVEL].append_option(e.level.as_deref());
        s[S_EVENT_TYPE].append_option(e.event_type.as_deref());
        s[S_USER].append_option(e.user_id.as_deref());
        s[S_SESSION].append_option(e.session_id.as_deref());
        s[S_APP_VERSION].append_option(e.app_version.as_deref());
        s[S_PLATFORM].append_option(e.platform.as_deref());
        s[S_OS].append_option(e.os_version.as_deref());
        s[S_DEVICE].append_option(e.device_model.as_deref());
        s[S_COUNTRY].append_option(e.country.as_deref());
        s[S_ERROR_CODE].append_option(e.error_code.as_deref());
        s[S_MESSAGE].append_option(e.message.as_deref());
        s[S_PROPERTIES].append_option(e.properties.as_deref());
        s[S_SRC_ID].append_value(&e.source_event_id);
        self.event_time.append_value(e.event_time);
        self.ingest_time.append_option(e.ingest_time);
        self.latency_ms.append_option(e.latency_ms);
        self.status_code.append_option(e.status_code);
        self.src_ts.append_value(e.source_timestamp);
        self.len += 1;
        self.bytes += e.event_id.len()
            + e.log_stream.len()
            + e.message.as_deref().map_or(0, str::len)
            + e.properties.as_deref().map_or(0, str::len)
            + e.source_event_id.len()
            + 256;
    }

    /// The rows built so far, in [`work_schema`] order; the builder is left empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let rows = self.len.max(self.cap);
        let s: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| {
                let array = b.finish();
                // Arrow's builders start over empty: reserve what this batch used, scaled to a
                // full batch, plus an eighth.
                let used = array.value_data().len() * rows / self.len.max(1);
                *b = StringBuilder::with_capacity(rows, (used + used / 8).min(MAX_RESERVE));
                Arc::new(array) as ArrayRef
            })
            .collect();
        let take = |i: usize| s[i].clone();
        let finish_ts =
            |b: &mut TimestampMicrosecondBuilder| std::mem::replace(b, ts_builder(rows)).finish();
        let event_time = finish_ts(&mut self.event_time);
        let ingest_time = finish_ts(&mut self.ingest_time);
        let latency_ms =
            std::mem::replace(&mut self.latency_ms, Int64Builder::with_capacity(rows)).finish();
        let status_code =
            std::mem::replace(&mut self.status_code, Int32Builder::with_capacity(rows)).finish();
        let src_ts =
            std::mem::replace(&mut self.src_ts, Int64Builder::with_capacity(rows)).finish();
        let columns: Vec<ArrayRef> = vec![
            take(S_EVENT_ID),
            Arc::new(event_time),
            Arc::new(ingest_time),
            take(S_LOG_GROUP),
            take(S_LOG_STREAM),
            take(S_LEVEL),
            take(S_EVENT_TYPE),
            take(S_USER),
            take(S_SESSION),
            take(S_APP_VERSION),
            take(S_PLATFORM),
            take(S_OS),
            take(S_DEVICE),
            take(S_COUNTRY),
            Arc::new(latency_ms),
            Arc::new(status_code),
            take(S_ERROR_CODE),
            take(S_MESSAGE),
            take(S_PROPERTIES),
            Arc::new(src_ts),
            take(S_SRC_ID),
        ];
        self.len = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::external("build events batch", e))
    }
}

/// Builds `quarantine` rows.
pub struct QuarantineBuilder {
    reason: StringBuilder,
    detail: StringBuilder,
    log_group: StringBuilder,
    log_stream: StringBuilder,
    source_event_id: StringBuilder,
    source_timestamp: TimestampMicrosecondBuilder,
    raw: StringBuilder,
    len: usize,
    bytes: usize,
}

impl Default for QuarantineBuilder {
    fn default() -> Self {
        QuarantineBuilder {
            reason: StringBuilder::new(),
            detail: StringBuilder::new(),
            log_group: StringBuilder::new(),
            log_stream: StringBuilder::new(),
            source_event_id: StringBuilder::new(),
            source_timestamp: ts_builder(0),
            raw: StringBuilder::new(),
            len: 0,
            bytes: 0,
        }
    }
}

impl QuarantineBuilder {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the builder should hand its rows over: `rows` reached, or [`FLUSH_BYTES`].
    pub fn full(&self, rows: usize) -> bool {
        self.len >= rows || self.bytes >= FLUSH_BYTES
    }

    pub fn append(&mut self, r: &Rejected<'_>, log_group: &str) {
        self.reason.append_value(r.reason.as_str());
        self.detail.append_value(&r.detail);
        self.log_group.append_value(log_group);
        self.log_stream.append_option(r.log_stream.as_deref());
        self.source_event_id
            .append_option(r.source_event_id.as_deref());
        self.source_timestamp.append_option(r.source_timestamp);
        self.raw.append_value(&r.raw);
        self.len += 1;
        self.bytes += r.raw.len() + r.detail.len() + 256;
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        self.len = 0;
        self.bytes = 0;
        RecordBatch::try_new(
            quarantine_schema(),
            vec![
                Arc::new(self.reason.finish()),
                Arc::new(self.detail.finish()),
                Arc::new(self.log_group.finish()),
                Arc::new(self.log_stream.finish()),
                Arc::new(self.source_event_id.finish()),
                Arc::new(self.source_timestamp.finish()),
                Arc::new(self.raw.finish()),
            ],
        )
        .map_err(|e| Error::external("build quarantine batch", e))
    }
}
