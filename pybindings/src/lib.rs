//! The native part of the Python package `bitacora` (`bitacora._bitacora`).
//!
//! Each function runs one step of the batch pipeline with the GIL released and returns the step's
//! JSON report, exactly as the binary prints it (the typed Python layer turns it into a dict).
//! `query` returns a `pyarrow.Table` built from Arrow's C stream interface, without copying rows.
//! Errors become the exceptions of `bitacora.errors`, chosen by what failed.
//!
//! Fork safety: nothing here holds a tokio runtime or an SDK client across calls; the core creates
//! them lazily per process (`bitacora_core::runtime`), so a child forked after import starts fresh.

use std::path::PathBuf;

use bitacora_core::{Config, Day, Error, Result};
use bitacora_model::one_line;
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyRecordBatch, PyTable};
use serde::Serialize;

/// Where the configuration comes from: a file, a document (JSON text of a dict), or the lookup
/// order of the binaries (`BITACORA_CONFIG`, `./bitacora.toml`, defaults).
fn load_config(
    path: Option<PathBuf>,
    doc: Option<String>,
    env: &[(String, String)],
) -> Result<Config> {
    match (path, doc) {
        (Some(_), Some(_)) => Err(Error::Usage(
            "give the configuration as a path or as a dict, not both".into(),
        )),
        (Some(p), None) => Config::load_with_env(Some(&p), env),
        (None, Some(text)) => {
            let table: toml::Table =
                serde_json::from_str(&text).map_err(|e| Error::ConfigFile {
                    path: PathBuf::from("<dict>"),
                    message: one_line(&e.to_string()),
                })?;
            Config::load_table(table, &PathBuf::from("."), env)
        }
        (None, None) => Config::load_with_env(None, env),
    }
}

fn parse_day(s: &str) -> Result<Day> {
    s.parse()
}

fn to_json<T: Serialize>(report: &T) -> Result<String> {
    serde_json::to_string(report).map_err(|e| Error::external("encode report", e))
}

/// The `bitacora.errors` class for an error: by what failed, so that callers can catch
/// configuration mistakes apart from storage or query failures.
fn error_class(e: &Error) -> &'static str {
    match e {
        Error::Config { .. } | Error::ConfigFile { .. } | Error::Usage(_) => "ConfigError",
        Error::Source { .. } => "SourceError",
        Error::Io { .. }
        | Error::Storage { .. }
        | Error::Crypto { .. }
        | Error::Key { .. }
        | Error::Metadata { .. }
        | Error::NotFound(_) => "StorageError",
        Error::Catalog(_) => "CatalogError",
        Error::Query(_) => "QueryError",
        // The steps wrap what fails in CloudWatch Logs, Glue's catalog and Athena as source,
        // catalog and query errors; the AWS errors left are the lake's (S3, KMS) and Spark jobs'.
        Error::Aws { service, .. } if matches!(*service, "s3" | "kms") => "StorageError",
        Error::Aws { .. } => "BitacoraError",
        Error::Invariant(_) | Error::Busy(_) | Error::External { .. } => "BitacoraError",
    }
}

/// Raises the `bitacora.errors` exception of `e`, with the one-line message of the binaries and
/// its machine-readable kind (the `error_kind` of their JSON reports).
fn py_error(py: Python<'_>, e: Error) -> PyErr {
    let message = one_line(&e.to_string());
    let raised = py
        .import("bitacora.errors")
        .and_then(|m| m.getattr(error_class(&e)))
        .and_then(|class| class.call1((message, e.kind())));
    match raised {
        Ok(exception) => PyErr::from_value(exception),
        Err(import_failed) => import_failed,
    }
}

/// The process environment, read while the GIL is held (Python code changes it through
/// `os.environ` under the GIL); variables that are not UTF-8 cannot be settings and are skipped.
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Runs `work` with the GIL released and maps its error. Signals (Ctrl-C, Airflow's SIGTERM) are
/// handled by Python when the step returns.
fn detached<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T> + Send) -> PyResult<T> {
    py.detach(work).map_err(|e| py_error(py, e))
}

/// Runs `work` on the configuration; loading it is part of the work (the GIL released).
fn with_config<T: Send>(
    py: Python<'_>,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
    work: impl FnOnce(&Config) -> Result<T> + Send,
) -> PyResult<T> {
    let env = environment();
    detached(py, move || {
        work(&load_config(config_path, config_doc, &env)?)
    })
}

/// A step for one day: the step's report as JSON.
fn day_step<R: Serialize>(
    py: Python<'_>,
    date: &str,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
    step: impl FnOnce(&Config, Day) -> Result<R> + Send,
) -> PyResult<String> {
    let date = date.to_owned();
    with_config(py, config_path, config_doc, move |config| {
        to_json(&step(config, parse_day(&date)?)?)
    })
}

#[pyfunction]
#[pyo3(signature = (date, *, config_path=None, config_doc=None, force=false))]
fn extract(
    py: Python<'_>,
    date: &str,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
    force: bool,
) -> PyResult<String> {
    day_step(py, date, config_path, config_doc, |config, date| {
        let params = bitacora_extract::ExtractParams { date, force };
        bitacora_extract::run(config, &params)
    })
}

#[pyfunction]
#[pyo3(signature = (date, *, config_path=None, config_doc=None))]
fn transform(
    py: Python<'_>,
    date: &str,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
) -> PyResult<String> {
    day_step(py, date, config_path, config_doc, |config, date| {
        bitacora_transform::run(config, &bitacora_transform::TransformParams { date })
    })
}

#[pyfunction]
#[pyo3(signature = (date, *, config_path=None, config_doc=None))]
fn catalog(
    py: Python<'_>,
    date: &str,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
) -> PyResult<String> {
    day_step(py, date, config_path, config_doc, |config, date| {
        bitacora_catalog::run(config, &bitacora_catalog::CatalogParams { date })
    })
}

#[pyfunction]
#[pyo3(signature = (start, end, *, config_path=None, config_doc=None))]
fn run(
    py: Python<'_>,
    start: &str,
    end: &str,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
) -> PyResult<String> {
    let (start, end) = (start.to_owned(), end.to_owned());
    with_config(py, config_path, config_doc, move |config| {
        let report = bitacora::pipeline::run_days(config, parse_day(&start)?, parse_day(&end)?)?;
        to_json(&report)
    })
}

#[pyfunction]
#[pyo3(signature = (date, events, out, *, seed=42, streams=8))]
fn generate(
    py: Python<'_>,
    date: &str,
    events: u64,
    out: PathBuf,
    seed: u64,
    streams: usize,
) -> PyResult<String> {
    let date = date.to_owned();
    detached(py, move || {
        let mut params =
            bitacora_generate::GenerateParams::new(parse_day(&date)?, events, out, seed);
        params.streams = streams;
        to_json(&bitacora_generate::generate(&params)?)
    })
}

/// The result of a query as a `pyarrow.Table` (Arrow C stream; pyarrow >= 14).
fn arrow_table(
    py: Python<'_>,
    out: bitacora_core::query::QueryOutput,
) -> PyResult<Bound<'_, PyAny>> {
    PyTable::try_new(out.batches, out.schema)?.into_pyarrow(py)
}

#[pyfunction]
#[pyo3(signature = (sql, *, config_path=None, config_doc=None))]
fn query<'py>(
    py: Python<'py>,
    sql: &str,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let sql = sql.to_owned();
    let out = with_config(py, config_path, config_doc, move |config| {
        bitacora_query::query(config, &sql)
    })?;
    arrow_table(py, out)
}

#[pyfunction]
#[pyo3(signature = (name, date=None, *, config_path=None, config_doc=None))]
fn named_query<'py>(
    py: Python<'py>,
    name: &str,
    date: Option<&str>,
    config_path: Option<PathBuf>,
    config_doc: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let (name, date) = (name.to_owned(), date.map(str::to_owned));
    let out = with_config(py, config_path, config_doc, move |config| {
        let date = date.as_deref().map(parse_day).transpose()?;
        bitacora_query::named(config, &name, date)
    })?;
    arrow_table(py, out)
}

/// The transform's normalisation of raw-zone lines (a string array, e.g. one Spark `mapInArrow`
/// batch): `(events, quarantine)` as two `pyarrow.RecordBatch`es (events with their delivery
/// provenance, `_source_timestamp` and `_source_event_id`, for the dedup).
#[pyfunction]
#[pyo3(signature = (lines, log_group, max_record_bytes))]
fn normalize_lines<'py>(
    py: Python<'py>,
    lines: PyArray,
    log_group: &str,
    max_record_bytes: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (array, _) = lines.into_inner();
    let log_group = log_group.to_owned();
    let (events, quarantine) = detached(py, move || {
        bitacora_transform::normalize_lines(&log_group, max_record_bytes, array.as_ref())
    })?;
    Ok((
        PyRecordBatch::new(events).into_pyarrow(py)?,
        PyRecordBatch::new(quarantine).into_pyarrow(py)?,
    ))
}

/// The named queries: name, description and audience of each (JSON list).
#[pyfunction]
fn named_queries() -> PyResult<String> {
    serde_json::to_string(bitacora_query::NAMED)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

#[pymodule]
fn _bitacora(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The steps log on stderr like the binaries (BITACORA_LOG sets the filter; warnings by default).
    bitacora_core::cli::init_logging_at("warn");
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(extract, m)?)?;
    m.add_function(wrap_pyfunction!(transform, m)?)?;
    m.add_function(wrap_pyfunction!(catalog, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(query, m)?)?;
    m.add_function(wrap_pyfunction!(named_query, m)?)?;
    m.add_function(wrap_pyfunction!(named_queries, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_lines, m)?)?;
    Ok(())
}
