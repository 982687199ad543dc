//! `bitacora-extract`: log source → raw zone for one UTC day.
//!
//! Selects the events whose `timestamp` lies in the day, whatever unit (file, time slice) they are
//! in, and writes them to `raw/dt=D/run=R/` as zstd-compressed NDJSON objects of bounded size,
//! envelope-encrypted unless `encryption.mode = "none"`. The run is published by its manifest;
//! re-running a day replaces the previous run atomically.

pub mod sources;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bitacora_core::config::{SourceKind, worker_count};
use bitacora_core::lake::{Lake, layout};
use bitacora_core::lease::Lease;
use bitacora_core::manifest::{FileEntry, Manifest, TableOutput};
use bitacora_core::parallel::fold_parallel;
use bitacora_core::raw::{RawCodec, RawWriter};
use bitacora_core::source::{LogSource, SourceUnit, UnitStats};
use bitacora_core::{Config, Day, Result, progress};
use serde::Serialize;

pub const STEP: &str = "extract";

/// Parameters of one extract run.
#[derive(Debug, Clone)]
pub struct ExtractParams {
    pub date: Day,
    /// Extract a day the source does not consider settled yet (CloudWatch: late events missed).
    pub force: bool,
}

impl ExtractParams {
    pub fn new(date: Day) -> Self {
        ExtractParams { date, force: false }
    }
}

/// The JSON report of `bitacora-extract`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    pub step: &'static str,
    pub status: &'static str,
    pub date: Day,
    pub run_id: String,
    /// The source read (`files:/var/log/app`).
    pub source: String,
    /// Units (files, slices) read.
    pub units: u64,
    /// Lines or events looked at, in every unit.
    pub scanned: u64,
    /// Events of the day written to the raw zone.
    pub selected: u64,
    /// Events of other days, ignored.
    pub outside_window: u64,
    /// Lines without a usable envelope `timestamp`: rejected and logged with file and line.
    pub malformed: u64,
    /// Source entries not read because they are not regular files (FIFOs, sockets, devices),
    /// each one logged.
    pub skipped: u64,
    /// Lines longer than `transform.max_record_bytes`: never held whole; their head is kept and
    /// quarantined as `oversize` by the transform.
    pub oversize: u64,
    pub objects: u64,
    /// Bytes stored in the raw zone (compressed, encrypted).
    pub raw_bytes: u64,
    /// Bytes of NDJSON before compression.
    pub plain_bytes: u64,
    pub encrypted: bool,
    /// URL of the run's folder.
    pub location: String,
    pub duration_ms: u64,
}

/// The log source of a configuration.
pub fn open_source(config: &Config) -> Result<Box<dyn LogSource>> {
    match config.source.kind {
        SourceKind::Files => Ok(Box::new(
            sources::files::FileSource::new(&config.source)?
                .with_max_record_bytes(config.transform.max_record_bytes),
        )),
        #[cfg(feature = "aws")]
        SourceKind::Cloudwatch => Ok(Box::new(sources::cloudwatch::CloudWatchSource::new(
            &config.source,
        )?)),
        #[cfg(not(feature = "aws"))]
        SourceKind::Cloudwatch => Err(bitacora_core::Error::config(
            "source.kind",
            "\"cloudwatch\" needs a build with the `aws` feature (cargo build --release --features aws)",
        )),
    }
}

/// Runs the extract for one day.
pub fn run(config: &Config, params: &ExtractParams) -> Result<ExtractReport> {
    let started = Instant::now();
    let source = open_source(config)?;
    let lake = Lake::from_config(config)?;
    let codec = RawCodec::from_config(config, true)?;
    let day = params.date;
    source.check_settled(day, params.force)?;
    let run_id = layout::new_run_id();
    // One extract of the day at a time (a second one is refused, naming this run).
    let lease = Lease::acquire(&lake, STEP, day, &run_id, config.lake.lease_ttl())?;
    // What this run replaces, read before the work: publishing fails if another run of the day
    // published in between (cloud lakes).
    let previous = Manifest::load_previous(&lake, STEP, day)?;
    let units = source.plan(day)?;
    tracing::info!(
        "extract {day}: {} unit(s) from {}",
        units.len(),
        source.describe()
    );

    let run_dir = layout::run_dir(layout::RAW, day, &run_id);
    let max_object = config.extract.max_object_bytes;
    let workers = worker_count(config.extract.workers);

    let next_object = AtomicU64::new(0);
    let plain_bytes = AtomicU64::new(0);
    let bar = progress::bar(units.len() as u64, "extract");
    let shared = Shared {
        lake: &lake,
        codec: &codec,
        run_dir: &run_dir,
        next_object: &next_object,
        plain_bytes: &plain_bytes,
    };
    // Each worker fills its own raw object, storing it whenever it reaches the size bound.
    let states = fold_parallel(
        units.iter().cloned(),
        workers,
        WorkerState::default,
        |st: &mut WorkerState, unit: SourceUnit| {
            let mut emit = |line: &[u8]| -> Result<()> {
                let w = match st.writer.as_mut() {
                    Some(w) => w,
                    None => st.writer.insert(shared.new_writer()?),
                };
                w.write_line(line)?;
                if w.plain_bytes() >= max_object
                    && let Some(full) = st.writer.take()
                {
                    st.files.push(shared.store(full)?);
                }
                Ok(())
            };
            let read = source.read(&unit, day, &mut emit)?;
            st.stats.add(&read);
            bar.inc(1);
            Ok(())
        },
        |st: &mut WorkerState| {
            if let Some(w) = st.writer.take() {
                st.files.push(shared.store(w)?);
            }
            Ok(())
        },
    );
    bar.finish_and_clear();

    let mut stats = UnitStats::default();
    let mut files = Vec::new();
    for st in states? {
        stats.add(&st.stats);
        files.extend(st.files);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if stats.selected == 0 {
        tracing::warn!(
            "extract {day}: no events of this day in {}",
            source.describe()
        );
    }

    let output = TableOutput::new(run_dir.clone(), files);
    let mut manifest = Manifest::new(STEP, day, &run_id);
    manifest.stats.insert("selected".into(), stats.selected);
    manifest.stats.insert("scanned".into(), stats.scanned);
    manifest
        .stats
        .insert("outside_window".into(), stats.outside_window);
    manifest.stats.insert("malformed".into(), stats.malformed);
    manifest.stats.insert("skipped".into(), stats.skipped);
    manifest.stats.insert("oversize".into(), stats.oversize);
    let report = ExtractReport {
        step: STEP,
        status: "ok",
        date: day,
        run_id: run_id.clone(),
        source: source.describe(),
        units: units.len() as u64,
        scanned: stats.scanned,
        selected: stats.selected,
        outside_window: stats.outside_window,
        malformed: stats.malformed,
        skipped: stats.skipped,
        oversize: stats.oversize,
        objects: output.files.len() as u64,
        raw_bytes: output.bytes,
        plain_bytes: plain_bytes.load(Ordering::Relaxed),
        encrypted: codec.extension().ends_with(".enc"),
        location: lake.url_of(&run_dir),
        duration_ms: 0,
    };
    manifest.outputs.insert(layout::RAW.into(), output);
    let keep: Vec<&str> = previous.run_id().into_iter().collect();
    manifest.publish(&lake, &keep, &previous, &lease)?;
    drop(lease);
    tracing::info!(
        "extract {day}: {} events of the day in {} object(s), {} outside the day, {} malformed line(s)",
        report.selected,
        report.objects,
        report.outside_window,
        report.malformed
    );
    Ok(ExtractReport {
        duration_ms: started.elapsed().as_millis() as u64,
        ..report
    })
}

#[derive(Default)]
struct WorkerState {
    stats: UnitStats,
    files: Vec<FileEntry>,
    writer: Option<RawWriter>,
}

struct Shared<'a> {
    lake: &'a Lake,
    codec: &'a RawCodec,
    run_dir: &'a str,
    next_object: &'a AtomicU64,
    plain_bytes: &'a AtomicU64,
}

impl Shared<'_> {
    /// A writer for the next object of the run (the path is bound into its encryption header).
    fn new_writer(&self) -> Result<RawWriter> {
        let n = self.next_object.fetch_add(1, Ordering::Relaxed);
        let path = format!("{}/part-{n:05}.{}", self.run_dir, self.codec.extension());
        self.codec.writer(&path)
    }

    fn store(&self, writer: RawWriter) -> Result<FileEntry> {
        let rows = writer.lines();
        self.plain_bytes
            .fetch_add(writer.plain_bytes(), Ordering::Relaxed);
        let path = writer.object().to_string();
        let bytes = writer.finish()?;
        let size = bytes.len() as u64;
        self.lake.put(&path, bytes)?;
        Ok(FileEntry {
            path,
            rows,
            bytes: size,
        })
    }
}
