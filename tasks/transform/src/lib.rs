//! `bitacora-transform`: raw zone → curated Parquet partition `dt=D` (+ quarantine).
//!
//! Two passes with bounded memory:
//! 1. every raw object of the day's published extract is decrypted, decompressed and parsed in
//!    parallel; each record is normalised (the shared [`bitacora_model::normalize`]) into an event, or a
//!    quarantine row with its reason; events are hash-partitioned by dedup key into buckets, kept in
//!    memory when there are no more buckets than workers and spilled to disk otherwise;
//! 2. each bucket is deduplicated (earliest `(timestamp, eventId)` delivery kept), ordered by
//!    `(event_type, event_time, event_id)` and written as one zstd Parquet file.
//!
//! The run checks `events + quarantine + duplicates = read` (and `read` = what the extract
//! published) before publishing it atomically with its manifest.

mod batch;
mod dedup;
mod output;
mod rows;
#[cfg(feature = "aws")]
mod spark;
mod spill;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use bitacora_core::config::{TransformEngine, worker_count};
use bitacora_core::lake::{Lake, layout};
use bitacora_core::lease::Lease;
use bitacora_core::manifest::{FileEntry, Manifest, Previous, TableOutput};
use bitacora_core::parallel::fold_parallel;
use bitacora_core::raw::RawCodec;
use bitacora_core::schema::{EVENTS_TABLE, QUARANTINE_TABLE, events_schema, quarantine_schema};
use bitacora_core::{Config, Day, Error, Result, progress};
use bitacora_model::model::{Reason, Rejected};
use bitacora_model::normalize::Normalizer;
use parquet::file::metadata::SortingColumn;
use serde::Serialize;

use batch::{EventBuilder, QuarantineBuilder, work_schema};
use spill::{Bucket, SpillDir};

pub use rows::normalize_lines;

pub const STEP: &str = "transform";

/// Days of at least twice this many records are written as several files in parallel.
const PARALLEL_SPLIT_ROWS: u64 = 500_000;
/// Decoded bytes of a raw object parsed at a time.
const DECODE_BLOCK: usize = 4 << 20;

/// Columns with (nearly) one value per row, or, like user ids, too many distinct values per row
/// group for a dictionary: dictionary encoding would only cost time (for user ids on the generated
/// day also 1.8% in size, as their dictionary overflowed and fell back part-way).
const EVENTS_UNIQUE: &[&str] = &[
    "event_id",
    "event_time",
    "ingest_time",
    "user_id",
    "session_id",
    "message",
    "properties",
];
/// Columns whose min/max never prune a row group (random ids, text): no statistics.
const EVENTS_UNPRUNABLE: &[&str] = &["event_id", "user_id", "session_id", "message", "properties"];
const QUARANTINE_UNIQUE: &[&str] = &["detail", "source_event_id", "source_timestamp", "raw"];
const QUARANTINE_UNPRUNABLE: &[&str] = &["detail", "source_event_id", "raw"];

/// Parameters of one transform run.
#[derive(Debug, Clone)]
pub struct TransformParams {
    pub date: Day,
}

/// The JSON report of `bitacora-transform`.
#[derive(Debug, Clone, Serialize)]
pub struct TransformReport {
    pub step: &'static str,
    pub status: &'static str,
    pub date: Day,
    pub run_id: String,
    /// The extract run this transform read.
    pub raw_run_id: String,
    pub raw_objects: u64,
    /// Records read from the raw zone.
    pub read: u64,
    /// Rows written to `events`.
    pub events: u64,
    /// Rows written to `quarantine`.
    pub quarantine: u64,
    /// Later deliveries of an event already kept.
    pub duplicates: u64,
    /// `events + quarantine + duplicates = read`; the step fails when it does not hold.
    pub invariant: String,
    pub quarantine_reasons: BTreeMap<String, u64>,
    pub files: u64,
    pub bytes: u64,
    /// Dedup buckets (one per events file).
    pub buckets: u64,
    /// Whether the buckets were spilled to disk (more buckets than workers).
    pub spilled: bool,
    pub events_location: String,
    pub quarantine_location: String,
    /// The Spark job run that transformed the day (`transform.engine = "glue"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spark_job_run: Option<String>,
    pub duration_ms: u64,
}

/// Runs the transform for one day.
pub fn run(config: &Config, params: &TransformParams) -> Result<TransformReport> {
    let started = Instant::now();
    let day = params.date;
    match config.transform.engine {
        TransformEngine::Rust => {}
        #[cfg(feature = "aws")]
        TransformEngine::Glue | TransformEngine::EmrServerless => {
            return spark::run_spark(config, params);
        }
        #[cfg(not(feature = "aws"))]
        TransformEngine::Glue | TransformEngine::EmrServerless => {
            return Err(Error::config(
                "transform.engine",
                "Spark engines need a build with the `aws` feature (cargo build --release --features aws)",
            ));
        }
    }
    let lake = Lake::from_config(config)?;
    // The raw zone's compression is read from each object, so a Spark-mode (gzip) raw zone works too.
    let codec = RawCodec::from_config(config, false)?;
    let Start {
        run_id,
        lease,
        raw,
        raw_out,
        previous,
    } = start(config, &lake, day)?;
    let expected = raw_out.rows;
    let tc = &config.transform;
    // Buckets bound memory (at most `rows_per_file` rows each) and are written in parallel; a day
    // of a few hundred thousand rows is split too, so that both cores write. The split depends only
    // on the input, so the output files do not depend on the machine.
    let by_size = expected.div_ceil(tc.rows_per_file as u64).max(1);
    let buckets_n = by_size.max((expected / PARALLEL_SPLIT_ROWS).min(4)) as usize;
    let workers = worker_count(tc.workers);
    // Pass 2 holds one bucket per worker at a time: when every bucket gets its own worker, the
    // whole day is in memory then anyway, so spilling would only add disk I/O.
    let spill = buckets_n > workers;
    let normalizer = Normalizer::new(config.source.log_group.clone(), tc.max_record_bytes);

    // Pass 1: parse, normalise, partition.
    let spill_base = tc.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let spill_dir = if spill {
        std::fs::create_dir_all(&spill_base)
            .map_err(|e| Error::io("create spill folder", &spill_base, e))?;
        // The compressed spill is about the size of the raw zone: ask for that and a margin.
        spill::check_free_space(&spill_base, raw_out.bytes + raw_out.bytes / 2 + (64 << 20))?;
        Some(SpillDir::create(&spill_base)?)
    } else {
        // Killed runs' folders go whether or not this run spills.
        spill::remove_stale(&spill_base);
        None
    };
    let schema = work_schema();
    let buckets: Vec<Mutex<Bucket>> = (0..buckets_n)
        .map(|i| {
            Mutex::new(match &spill_dir {
                Some(d) => Bucket::spill(d.path(), &format!("bucket-{i:05}.arrow"), schema.clone()),
                None => Bucket::memory(),
            })
        })
        .collect();
    // The quarantine spills too: a large day's rejected records (with their raw lines) would
    // otherwise stay in memory through both passes, and memory would grow with the day.
    let quarantine = Mutex::new(match &spill_dir {
        Some(d) => Bucket::spill(d.path(), "quarantine.arrow", quarantine_schema()),
        None => Bucket::memory(),
    });
    // Rows per builder before it is flushed to its bucket: bounded in total across buckets.
    let flush_rows = (262_144 / buckets_n).clamp(2_048, 65_536);
    let bar = progress::bar(raw_out.files.len() as u64, "transform");
    let parser = Parser {
        lake: &lake,
        codec: &codec,
        normalizer: &normalizer,
        buckets: &buckets,
        quarantine: &quarantine,
        flush_rows,
    };
    let states = fold_parallel(
        raw_out.files.iter(),
        workers,
        || ParseState::new(buckets_n, flush_rows),
        |st: &mut ParseState, entry: &FileEntry| {
            parser.parse_object(st, entry)?;
            bar.inc(1);
            Ok(())
        },
        |st: &mut ParseState| parser.flush(st),
    );
    bar.finish_and_clear();
    let read: u64 = states?.iter().map(|st| st.read).sum();
    tracing::debug!(
        "transform {day}: pass 1 (parse, normalise, partition) {:?}",
        started.elapsed()
    );

    // Pass 2: dedup and write each bucket.
    let events_dir = layout::run_dir(EVENTS_TABLE, day, &run_id);
    let quarantine_dir = layout::run_dir(QUARANTINE_TABLE, day, &run_id);
    let events_schema = events_schema();
    let sorting = sorting_columns(&events_schema);
    let written = fold_parallel(
        0..buckets_n,
        workers,
        Vec::new,
        |out: &mut Vec<(FileEntry, u64)>, i: usize| {
            let batches = buckets[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()?;
            let input: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            if input == 0 {
                return Ok(());
            }
            let t0 = Instant::now();
            let order = dedup::dedup_and_order(&batches)?;
            tracing::debug!(
                "bucket {i}: dedup and order {input} rows in {:?}",
                t0.elapsed()
            );
            let props = output::properties(
                tc.row_group_rows,
                tc.zstd_level,
                sorting.clone(),
                EVENTS_UNIQUE,
                EVENTS_UNPRUNABLE,
            )?;
            let bytes =
                output::write_rows(&events_schema, &batches, &order, props, tc.row_group_rows)?;
            drop(batches);
            tracing::debug!("bucket {i}: written at {:?}", t0.elapsed());
            let path = format!("{events_dir}/part-{i:05}.parquet");
            let size = bytes.len() as u64;
            lake.put(&path, bytes)?;
            let rows = order.len() as u64;
            out.push((
                FileEntry {
                    path,
                    rows,
                    bytes: size,
                },
                input - rows,
            ));
            Ok(())
        },
        |_| Ok(()),
    )?;
    let mut event_files = Vec::new();
    let mut duplicates = 0u64;
    for (f, d) in written.into_iter().flatten() {
        duplicates += d;
        event_files.push(f);
    }
    event_files.sort_by(|a, b| a.path.cmp(&b.path));
    tracing::debug!(
        "transform {day}: pass 2 (dedup, order, write) done at {:?}",
        started.elapsed()
    );

    // Quarantine: one file, in a stable order.
    let q_batches = quarantine
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()?;
    drop(spill_dir);
    let (q_files, reasons) = write_quarantine(&lake, &quarantine_dir, &q_batches, tc)?;

    let events = event_files.iter().map(|f| f.rows).sum::<u64>();
    let quarantined = q_files.iter().map(|f| f.rows).sum::<u64>();
    if events + quarantined + duplicates != read {
        return Err(Error::Invariant(format!(
            "events + quarantine + duplicates != read for {day}: {events} + {quarantined} + {duplicates} != {read}"
        )));
    }
    if read != expected {
        return Err(Error::Invariant(format!(
            "read {read} records for {day}, but the extract run {} published {expected}: the raw zone is incomplete; re-run the extract",
            raw.run_id
        )));
    }

    let report = publish_run(
        config,
        &lake,
        &raw,
        &previous,
        &lease,
        Outcome {
            run_id,
            events: TableOutput::new(events_dir, event_files),
            quarantine: TableOutput::new(quarantine_dir, q_files),
            read,
            duplicates,
            quarantine_reasons: reasons,
            buckets: buckets_n as u64,
            spilled: spill,
            spark_job_run: None,
        },
        started,
    )?;
    tracing::info!(
        "transform {day}: read {read} = {events} events + {quarantined} quarantined + {duplicates} duplicates",
    );
    Ok(report)
}

/// A transform run of a day (either engine), once it may start.
pub(crate) struct Start {
    pub run_id: String,
    /// The transform's lease of the day, recording the extract run it reads.
    pub lease: Lease,
    /// The published extract run of the day and its raw objects.
    pub raw: Manifest,
    pub raw_out: TableOutput,
    /// The transform run it replaces (read under the lease).
    pub previous: Previous,
}

/// Takes the transform's lease of `day` (a second transform of the day is refused), then reads
/// the published extract run and records it in the lease, so that no extract publication removes
/// it while this run reads it.
pub(crate) fn start(config: &Config, lake: &Lake, day: Day) -> Result<Start> {
    let run_id = layout::new_run_id();
    let mut lease = Lease::acquire(lake, STEP, day, &run_id, config.lake.lease_ttl())?;
    let raw = Manifest::load(lake, "extract", day)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no raw zone for {day} in {}: run `bitacora-extract --date {day}` first",
            lake.root()
        ))
    })?;
    lease.record_read("extract", &raw.run_id)?;
    let raw_out = raw.outputs.get(layout::RAW).cloned().unwrap_or_default();
    // What this run replaces: publishing fails if another run of the day published in between
    // (cloud lakes; the lease already keeps runs apart).
    let previous = Manifest::load_previous(lake, STEP, day)?;
    Ok(Start {
        run_id,
        lease,
        raw,
        raw_out,
        previous,
    })
}

/// What a transform run (Rust or Spark) wrote, before it is published.
pub(crate) struct Outcome {
    pub run_id: String,
    pub events: TableOutput,
    pub quarantine: TableOutput,
    pub read: u64,
    pub duplicates: u64,
    pub quarantine_reasons: BTreeMap<String, u64>,
    pub buckets: u64,
    pub spilled: bool,
    pub spark_job_run: Option<String>,
}

/// Publishes a transform run of the day of `raw` (the extract manifest it read): its counters,
/// input and outputs in the manifest, keeping the run it replaces and any run the catalog still
/// serves for the day — a query must never find its partition's files gone because the catalog
/// step has not run yet. Returns the run's report.
pub(crate) fn publish_run(
    config: &Config,
    lake: &Lake,
    raw: &Manifest,
    previous: &Previous,
    lease: &Lease,
    out: Outcome,
    started: Instant,
) -> Result<TransformReport> {
    let day = raw.date;
    let (read, duplicates) = (out.read, out.duplicates);
    let (events, quarantined) = (out.events.rows, out.quarantine.rows);
    let mut report = TransformReport {
        step: STEP,
        status: "ok",
        date: day,
        run_id: out.run_id.clone(),
        raw_run_id: raw.run_id.clone(),
        raw_objects: raw
            .outputs
            .get(layout::RAW)
            .map_or(0, |o| o.files.len() as u64),
        read,
        events,
        quarantine: quarantined,
        duplicates,
        invariant: format!("{events} + {quarantined} + {duplicates} = {read}"),
        quarantine_reasons: out.quarantine_reasons,
        files: (out.events.files.len() + out.quarantine.files.len()) as u64,
        bytes: out.events.bytes + out.quarantine.bytes,
        buckets: out.buckets,
        spilled: out.spilled,
        events_location: lake.url_of(&out.events.location),
        quarantine_location: lake.url_of(&out.quarantine.location),
        spark_job_run: out.spark_job_run,
        duration_ms: 0,
    };
    let mut manifest = Manifest::new(STEP, day, &out.run_id);
    for (k, v) in [
        ("read", read),
        ("events", events),
        ("quarantine", quarantined),
        ("duplicates", duplicates),
    ] {
        manifest.stats.insert(k.into(), v);
    }
    manifest.inputs.insert("extract".into(), raw.run_id.clone());
    manifest.outputs.insert(EVENTS_TABLE.into(), out.events);
    manifest
        .outputs
        .insert(QUARANTINE_TABLE.into(), out.quarantine);
    let mut keep: Vec<String> = previous.run_id().map(str::to_string).into_iter().collect();
    keep.extend(cataloged_runs(config, lake, day)?);
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    manifest.publish(lake, &keep, previous, lease)?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The runs of `day` that the catalog's partitions point at. A table or partition not registered
/// yet means none; any other catalog error fails the step (deleting a served run would be worse).
pub(crate) fn cataloged_runs(config: &Config, lake: &Lake, day: Day) -> Result<Vec<String>> {
    let catalog = bitacora_catalog::open(config, lake)?;
    let db = &config.catalog.database;
    let mut runs = Vec::new();
    for table in [EVENTS_TABLE, QUARANTINE_TABLE] {
        if catalog.get_table(db, table)?.is_none() {
            continue;
        }
        if let Some(p) = catalog.get_partition(db, table, &[day.to_string()])?
            && let Some(run) = p.parameters.get("run_id")
        {
            runs.push(run.clone());
        }
    }
    Ok(runs)
}

fn sorting_columns(schema: &arrow::datatypes::Schema) -> Vec<SortingColumn> {
    ["event_type", "event_time", "event_id"]
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: true,
        })
        .collect()
}

/// What a pass-1 worker accumulates: one builder per bucket, the quarantine, the count read.
struct ParseState {
    builders: Vec<EventBuilder>,
    quarantine: QuarantineBuilder,
    read: u64,
    /// Decoded bytes of the current raw object (a block at a time).
    block: Vec<u8>,
    scratch: String,
}

impl ParseState {
    fn new(buckets: usize, flush_rows: usize) -> Self {
        ParseState {
            builders: (0..buckets)
                .map(|_| EventBuilder::new(flush_rows))
                .collect(),
            quarantine: QuarantineBuilder::default(),
            read: 0,
            block: Vec::new(),
            scratch: String::new(),
        }
    }
}

/// Pass 1: raw objects → normalised rows in their dedup bucket, or quarantine rows.
struct Parser<'a> {
    lake: &'a Lake,
    codec: &'a RawCodec,
    normalizer: &'a Normalizer,
    buckets: &'a [Mutex<Bucket>],
    quarantine: &'a Mutex<Bucket>,
    flush_rows: usize,
}

impl Parser<'_> {
    fn parse_object(&self, st: &mut ParseState, entry: &FileEntry) -> Result<()> {
        let object = self.lake.get(&entry.path)?;
        let name = entry.path.as_str();
        let mut decoder = self.codec.decoder(&object, name)?;
        // The object is decoded a block at a time and its lines are parsed where they lie.
        let mut block = std::mem::take(&mut st.block);
        let mut in_object = 0u64;
        let parsed = bitacora_core::lines::for_each_text_line(
            &mut decoder,
            &mut block,
            DECODE_BLOCK,
            |line| {
                in_object += 1;
                self.parse_line(st, line)
            },
            |e| Error::Crypto {
                object: name.to_string(),
                message: e.to_string(),
            },
        );
        st.block = block;
        parsed?;
        if in_object != entry.rows {
            return Err(Error::Invariant(format!(
                "raw object {name} holds {in_object} records, its manifest says {}",
                entry.rows
            )));
        }
        Ok(())
    }

    /// Normalises one raw record into its bucket's builder, or the quarantine (`Err`: the bytes
    /// of a record that is not UTF-8).
    fn parse_line(
        &self,
        st: &mut ParseState,
        line: std::result::Result<&str, &[u8]>,
    ) -> Result<()> {
        let n = self.buckets.len();
        let log_group = self.normalizer.log_group();
        st.read += 1;
        let line = match line {
            Ok(line) => line,
            Err(bytes) => {
                let rejected = Rejected {
                    reason: Reason::BrokenEnvelope,
                    detail: "record is not valid UTF-8".into(),
                    log_stream: None,
                    source_event_id: None,
                    source_timestamp: None,
                    raw: String::from_utf8_lossy(bytes),
                };
                st.quarantine.append(&rejected, log_group);
                return self.flush_quarantine(st, false);
            }
        };
        match self.normalizer.normalize_line(line, &mut st.scratch) {
            Ok(event) => {
                let b = if n == 1 {
                    0
                } else {
                    (xxhash_rust::xxh3::xxh3_64(event.event_id.as_bytes()) % n as u64) as usize
                };
                st.builders[b].append(&event);
                if st.builders[b].full(self.flush_rows) {
                    let batch = st.builders[b].finish()?;
                    self.buckets[b]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(batch)?;
                }
                Ok(())
            }
            Err(rejected) => {
                st.quarantine.append(&rejected, log_group);
                self.flush_quarantine(st, false)
            }
        }
    }

    /// Hands the worker's quarantine rows over when there are enough of them (or all: `all`).
    fn flush_quarantine(&self, st: &mut ParseState, all: bool) -> Result<()> {
        if st.quarantine.full(self.flush_rows) || (all && !st.quarantine.is_empty()) {
            let batch = st.quarantine.finish()?;
            self.quarantine
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(batch)?;
        }
        Ok(())
    }

    /// Hands the worker's last rows to their buckets.
    fn flush(&self, st: &mut ParseState) -> Result<()> {
        for (b, builder) in st.builders.iter_mut().enumerate() {
            if !builder.is_empty() {
                let batch = builder.finish()?;
                self.buckets[b]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(batch)?;
            }
        }
        self.flush_quarantine(st, true)
    }
}

fn write_quarantine(
    lake: &Lake,
    dir: &str,
    batches: &[RecordBatch],
    tc: &bitacora_core::config::TransformConfig,
) -> Result<(Vec<FileEntry>, BTreeMap<String, u64>)> {
    let mut reasons = BTreeMap::new();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if total == 0 {
        return Ok((Vec::new(), reasons));
    }
    let schema = quarantine_schema();
    // Ordered across the batches as they are (concatenating them could pass Arrow's 2 GiB limit
    // of a string column when many records are large).
    struct Keys<'a> {
        reason: &'a arrow::array::StringArray,
        detail: &'a arrow::array::StringArray,
        id: &'a arrow::array::StringArray,
        ts: &'a arrow::array::TimestampMicrosecondArray,
        raw: &'a arrow::array::StringArray,
    }
    let keys: Vec<Keys<'_>> = batches
        .iter()
        .map(|b| {
            let col = |name: &str| {
                b.column_by_name(name)
                    .ok_or_else(|| Error::Invariant(format!("quarantine column {name} missing")))
            };
            Ok(Keys {
                reason: col("reason")?.as_string::<i32>(),
                detail: col("detail")?.as_string::<i32>(),
                id: col("source_event_id")?.as_string::<i32>(),
                ts: col("source_timestamp")?.as_primitive(),
                raw: col("raw")?.as_string::<i32>(),
            })
        })
        .collect::<Result<_>>()?;
    for k in &keys {
        for v in k.reason.iter().flatten() {
            *reasons.entry(v.to_string()).or_insert(0) += 1;
        }
    }
    fn opt_str(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
        (!a.is_null(i)).then(|| a.value(i))
    }
    let mut order: Vec<(usize, usize)> = keys
        .iter()
        .enumerate()
        .flat_map(|(bi, k)| (0..k.raw.len()).map(move |ri| (bi, ri)))
        .collect();
    order.sort_by(|&(ba, ra), &(bb, rb)| {
        let (x, y) = (&keys[ba], &keys[bb]);
        let ts = |k: &Keys<'_>, i: usize| (!k.ts.is_null(i)).then(|| k.ts.value(i));
        ts(x, ra)
            .cmp(&ts(y, rb))
            .then_with(|| opt_str(x.id, ra).cmp(&opt_str(y.id, rb)))
            .then_with(|| opt_str(x.raw, ra).cmp(&opt_str(y.raw, rb)))
            .then_with(|| opt_str(x.reason, ra).cmp(&opt_str(y.reason, rb)))
            .then_with(|| opt_str(x.detail, ra).cmp(&opt_str(y.detail, rb)))
    });
    let props = output::properties(
        tc.row_group_rows,
        tc.zstd_level,
        Vec::new(),
        QUARANTINE_UNIQUE,
        QUARANTINE_UNPRUNABLE,
    )?;
    let bytes = output::write_rows(&schema, batches, &order, props, tc.row_group_rows)?;
    let path = format!("{dir}/part-00000.parquet");
    let size = bytes.len() as u64;
    lake.put(&path, bytes)?;
    Ok((
        vec![FileEntry {
            path,
            rows: total as u64,
            bytes: size,
        }],
        reasons,
    ))
}
