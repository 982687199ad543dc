//! The transform on Apache Spark (feature `aws`): AWS Glue (`transform.engine = "glue"`) or EMR
//! Serverless (`"emr-serverless"`).
//!
//! The step starts a run of the Glue job `transform.glue_job`, or a job of the EMR Serverless
//! application `transform.emr_application_id` with `transform.script_location` as entry point —
//! both run `tasks/transform/spark/bitacora_transform.py` — with the day's raw run and this run's
//! output folders as arguments, polls it with backoff to a terminal state, then reads the row counts from
//! the footers of the Parquet files the job wrote and publishes them with a manifest, exactly as the
//! Rust transform does — so the catalog step, queries and re-runs work the same way.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use aws_sdk_glue::Client;
use aws_sdk_glue::types::JobRunState;
use bitacora_core::aws::{sdk_config, sdk_error};
use bitacora_core::config::TransformEngine;
use bitacora_core::lake::{Lake, layout};
use bitacora_core::manifest::{FileEntry, TableOutput};
use bitacora_core::runtime::block_on;
use bitacora_core::schema::{EVENTS_TABLE, QUARANTINE_TABLE};
use bitacora_core::{Config, Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::{Outcome, Start, TransformParams, TransformReport, publish_run, start};

/// Where the Spark job runs.
enum Backend {
    Glue {
        client: Client,
        job: String,
    },
    EmrServerless {
        client: aws_sdk_emrserverless::Client,
        application: String,
        role: String,
        script: String,
    },
}

fn required(key: &'static str, value: &Option<String>, why: &str) -> Result<String> {
    value
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::config(key, format!("required when {why}")))
}

impl Backend {
    fn from_config(config: &Config) -> Result<Backend> {
        let tc = &config.transform;
        Ok(match tc.engine {
            TransformEngine::EmrServerless => {
                let why = "transform.engine = \"emr-serverless\"";
                Backend::EmrServerless {
                    client: aws_sdk_emrserverless::Client::new(&sdk_config()),
                    application: required(
                        "transform.emr_application_id",
                        &tc.emr_application_id,
                        why,
                    )?,
                    role: required("transform.emr_execution_role", &tc.emr_execution_role, why)?,
                    script: required("transform.script_location", &tc.script_location, why)?,
                }
            }
            _ => Backend::Glue {
                client: Client::new(&sdk_config()),
                job: required(
                    "transform.glue_job",
                    &tc.glue_job,
                    "transform.engine = \"glue\" (the Glue job running bitacora_transform.py)",
                )?,
            },
        })
    }

    fn describe(&self) -> String {
        match self {
            Backend::Glue { job, .. } => format!("Glue job {job}"),
            Backend::EmrServerless { application, .. } => {
                format!("EMR Serverless application {application}")
            }
        }
    }

    /// Starts the job with `args` (`--name value` pairs); returns the run id.
    fn start(&self, args: &[(String, String)]) -> Result<String> {
        match self {
            Backend::Glue { client, job } => {
                let map: HashMap<String, String> = args.iter().cloned().collect();
                let out = block_on(
                    client
                        .start_job_run()
                        .job_name(job)
                        .set_arguments(Some(map))
                        .send(),
                )
                .map_err(|e| sdk_error("glue", "StartJobRun", e))?;
                out.job_run_id()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Aws {
                        service: "glue",
                        operation: "StartJobRun",
                        message: "no job run id returned".into(),
                    })
            }
            Backend::EmrServerless {
                client,
                application,
                role,
                script,
            } => {
                use aws_sdk_emrserverless::types::{JobDriver, SparkSubmit};
                let flat: Vec<String> = args
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect();
                let submit = SparkSubmit::builder()
                    .entry_point(script)
                    .set_entry_point_arguments(Some(flat))
                    .build()
                    .map_err(|e| sdk_error("emr-serverless", "StartJobRun", e))?;
                let token = args
                    .iter()
                    .find(|(k, _)| k == "--events")
                    .map(|(_, v)| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(v.as_bytes())))
                    .unwrap_or_default();
                let out = block_on(
                    client
                        .start_job_run()
                        .application_id(application)
                        .execution_role_arn(role)
                        .client_token(token)
                        .name("bitacora-transform")
                        .job_driver(JobDriver::SparkSubmit(submit))
                        .send(),
                )
                .map_err(|e| sdk_error("emr-serverless", "StartJobRun", e))?;
                Ok(out.job_run_id().to_string())
            }
        }
    }

    /// `Ok(true)` when the run succeeded, `Ok(false)` while it runs, the reason when it failed.
    fn poll(&self, run: &str) -> Result<bool> {
        match self {
            Backend::Glue { client, job } => {
                let out = block_on(client.get_job_run().job_name(job).run_id(run).send())
                    .map_err(|e| sdk_error("glue", "GetJobRun", e))?;
                let jr = out.job_run();
                match jr.and_then(|r| r.job_run_state()) {
                    Some(JobRunState::Succeeded) => Ok(true),
                    Some(
                        state @ (JobRunState::Failed
                        | JobRunState::Error
                        | JobRunState::Timeout
                        | JobRunState::Stopped
                        | JobRunState::Expired),
                    ) => Err(Error::Aws {
                        service: "glue",
                        operation: "JobRun",
                        message: format!(
                            "job {job} run {run} {}: {}",
                            state.as_str(),
                            jr.and_then(|r| r.error_message())
                                .unwrap_or("no error message")
                        ),
                    }),
                    _ => Ok(false),
                }
            }
            Backend::EmrServerless {
                client,
                application,
                ..
            } => {
                use aws_sdk_emrserverless::types::JobRunState as S;
                let out = block_on(
                    client
                        .get_job_run()
                        .application_id(application)
                        .job_run_id(run)
                        .send(),
                )
                .map_err(|e| sdk_error("emr-serverless", "GetJobRun", e))?;
                let jr = out.job_run();
                match jr.map(|r| r.state()) {
                    Some(S::Success) => Ok(true),
                    Some(state @ (S::Failed | S::Cancelled)) => Err(Error::Aws {
                        service: "emr-serverless",
                        operation: "JobRun",
                        message: format!(
                            "application {application} run {run} {}: {}",
                            state.as_str(),
                            jr.map(|r| r.state_details())
                                .filter(|d| !d.is_empty())
                                .unwrap_or("no details")
                        ),
                    }),
                    _ => Ok(false),
                }
            }
        }
    }
}

pub fn run_spark(config: &Config, params: &TransformParams) -> Result<TransformReport> {
    let started = Instant::now();
    let day = params.date;
    let tc = &config.transform;
    let backend = Backend::from_config(config)?;
    let lake = Lake::from_config(config)?;
    let Start {
        run_id,
        lease,
        raw,
        raw_out,
        previous,
    } = start(config, &lake, day)?;
    if raw_out.files.iter().any(|f| !f.path.ends_with(".jsonl.gz")) {
        return Err(Error::config(
            "transform.engine",
            format!(
                "the raw run {} of {day} was not written for Spark (gzip NDJSON): re-run the extract with this configuration",
                raw.run_id
            ),
        ));
    }
    let events_dir = layout::run_dir(EVENTS_TABLE, day, &run_id);
    let quarantine_dir = layout::run_dir(QUARANTINE_TABLE, day, &run_id);
    let arguments: Vec<(String, String)> = [
        ("--raw", lake.url_of(&raw_out.location)),
        ("--events", lake.url_of(&events_dir)),
        ("--quarantine", lake.url_of(&quarantine_dir)),
        ("--log-group", config.source.log_group.clone()),
        ("--max-record-bytes", tc.max_record_bytes.to_string()),
        ("--date", day.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let job_run = backend.start(&arguments)?;
    let job = backend.describe();
    tracing::info!("transform {day}: {job} run {job_run} started");
    let max_delay = Duration::from_secs(tc.poll_max_secs.max(1));
    let mut delay = Duration::from_secs(2).min(max_delay);
    while !backend.poll(&job_run)? {
        std::thread::sleep(delay);
        delay = (delay * 2).min(max_delay);
    }

    // What the job wrote, counted from the Parquet footers.
    let events_files = parquet_files(&lake, &events_dir)?;
    let quarantine_files = parquet_files(&lake, &quarantine_dir)?;
    let events: u64 = events_files.iter().map(|f| f.rows).sum();
    let quarantined: u64 = quarantine_files.iter().map(|f| f.rows).sum();
    // The job's own counts, checked against the raw manifest and the files' footers: the
    // identity `events + quarantine + duplicates = read` is checked, not used to derive a figure.
    let counts = job_counts(&lake, &events_dir)?;
    let read = raw_out.rows;
    let fail = |what: String| {
        Err(Error::Invariant(format!(
            "{job} run {job_run} for {day}: {what}; nothing was published"
        )))
    };
    if counts.read != read {
        return fail(format!(
            "the job read {} records, the extract run {} published {read}",
            counts.read, raw.run_id
        ));
    }
    if (counts.events, counts.quarantine) != (events, quarantined) {
        return fail(format!(
            "the job reports {} events and {} quarantined, its files hold {events} and {quarantined}",
            counts.events, counts.quarantine
        ));
    }
    if events + quarantined + counts.duplicates != read {
        return fail(format!(
            "events + quarantine + duplicates != read: {events} + {quarantined} + {} != {read}",
            counts.duplicates
        ));
    }
    let duplicates = counts.duplicates;
    let mut reasons = BTreeMap::new();
    for f in &quarantine_files {
        let bytes = lake.get(&f.path)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::external(format!("read {}", lake.url_of(&f.path)), e))?;
        for batch in reader {
            let batch =
                batch.map_err(|e| Error::external(format!("read {}", lake.url_of(&f.path)), e))?;
            if let Some(col) = batch.column_by_name("reason") {
                for v in col.as_string::<i32>().iter().flatten() {
                    *reasons.entry(v.to_string()).or_insert(0) += 1;
                }
            }
        }
    }

    publish_run(
        config,
        &lake,
        &raw,
        &previous,
        &lease,
        Outcome {
            run_id,
            events: TableOutput::new(events_dir, events_files),
            quarantine: TableOutput::new(quarantine_dir, quarantine_files),
            read,
            duplicates,
            quarantine_reasons: reasons,
            buckets: 0,
            spilled: false,
            spark_job_run: Some(job_run),
        },
        started,
    )
}

/// The Parquet files under `dir` (Spark's `_SUCCESS` and the like are skipped), with the row
/// counts of their footers.
/// What the Spark job counted (`_bitacora_counts.json`, written by the script in its events folder).
#[derive(Debug, serde::Deserialize)]
struct JobCounts {
    read: u64,
    events: u64,
    quarantine: u64,
    duplicates: u64,
}

fn job_counts(lake: &Lake, events_dir: &str) -> Result<JobCounts> {
    let path = format!("{events_dir}/_bitacora_counts.json");
    let bad = |m: String| Error::Metadata {
        what: "Spark job counts",
        location: lake.url_of(&path),
        message: m,
    };
    let bytes = lake.get_opt(&path)?.ok_or_else(|| {
        bad("missing: the job did not finish its work (or is an older script)".into())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("unreadable ({e})")))
}

fn parquet_files(lake: &Lake, dir: &str) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    for obj in lake.list(dir)? {
        if !obj.path.ends_with(".parquet") {
            continue;
        }
        let bad = |m: String| Error::Metadata {
            what: "Parquet file",
            location: lake.url_of(&obj.path),
            message: m,
        };
        if obj.size < 12 {
            return Err(bad("too short to be Parquet".into()));
        }
        let tail = lake.get_range(&obj.path, obj.size - 8..obj.size)?;
        if &tail[4..] != b"PAR1" {
            return Err(bad("no Parquet footer".into()));
        }
        let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
        if len + 8 > obj.size {
            return Err(bad("footer longer than the file".into()));
        }
        let footer = lake.get_range(&obj.path, obj.size - 8 - len..obj.size - 8)?;
        let meta = ParquetMetaDataReader::decode_metadata(&footer)
            .map_err(|e| bad(format!("unreadable footer: {e}")))?;
        out.push(FileEntry {
            path: obj.path.clone(),
            rows: meta.file_metadata().num_rows().max(0) as u64,
            bytes: obj.size,
        });
    }
    Ok(out)
}
