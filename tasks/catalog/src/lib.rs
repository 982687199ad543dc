//! `bitacora-catalog`: registers the curated tables and the day's partitions in the catalog.
//!
//! Tables are created when missing and updated when their definition changes; the partition `dt=D`
//! of each table is created, or updated to the location of the latest published transform run.
//! Never a crawler, never a repair: the transform manifest says exactly what to register.

pub mod backends;

use std::collections::BTreeMap;
use std::time::Instant;

use bitacora_core::catalog::{Catalog, Change, Column, Partition, StorageDescriptor, Table};
use bitacora_core::config::CatalogKind;
use bitacora_core::lake::{Lake, layout};
use bitacora_core::lease::Lease;
use bitacora_core::manifest::Manifest;
use bitacora_core::schema::{
    EVENTS_TABLE, PARTITION_COLUMN, QUARANTINE_TABLE, hive_type, table_schema,
};
use bitacora_core::{Config, Day, Error, Result};
use serde::Serialize;

pub use backends::local::LocalCatalog;

pub const STEP: &str = "catalog";

/// The catalog of a configuration.
pub fn open(config: &Config, lake: &Lake) -> Result<Box<dyn Catalog>> {
    match config.catalog.kind {
        CatalogKind::Local => Ok(Box::new(LocalCatalog::new(lake.clone()))),
        #[cfg(feature = "aws")]
        CatalogKind::Glue => Ok(Box::new(backends::glue::GlueCatalog::new())),
        #[cfg(not(feature = "aws"))]
        CatalogKind::Glue => Err(Error::config(
            "catalog.kind",
            "\"glue\" needs a build with the `aws` feature (cargo build --release --features aws)",
        )),
    }
}

/// The definition of a curated table.
pub fn table_definition(database: &str, name: &str, lake: &Lake) -> Result<Table> {
    let schema =
        table_schema(name).ok_or_else(|| Error::Catalog(format!("unknown table {name}")))?;
    let columns = schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: hive_type(f.data_type()).into(),
            comment: None,
        })
        .collect();
    let mut parameters = BTreeMap::new();
    parameters.insert("classification".into(), "parquet".into());
    parameters.insert("EXTERNAL".into(), "TRUE".into());
    parameters.insert("parquet.compression".into(), "ZSTD".into());
    Ok(Table {
        database: database.into(),
        name: name.into(),
        description: match name {
            EVENTS_TABLE => {
                "Normalised, deduplicated mobile-app events, one partition per UTC day".into()
            }
            _ => "Records that could not be trusted, with the reason".into(),
        },
        table_type: "EXTERNAL_TABLE".into(),
        storage: StorageDescriptor::parquet(columns, lake.url_of(&format!("{name}/"))),
        partition_keys: vec![Column {
            name: PARTITION_COLUMN.into(),
            data_type: "string".into(),
            comment: Some("UTC day, YYYY-MM-DD".into()),
        }],
        parameters,
    })
}

/// Parameters of one catalog run.
#[derive(Debug, Clone)]
pub struct CatalogParams {
    pub date: Day,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableChange {
    pub table: String,
    pub change: Change,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionChange {
    pub table: String,
    pub dt: Day,
    pub change: Change,
    pub location: String,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// The JSON report of `bitacora-catalog`.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogReport {
    pub step: &'static str,
    pub status: &'static str,
    pub date: Day,
    pub catalog: &'static str,
    pub database: String,
    pub database_change: Change,
    pub tables: Vec<TableChange>,
    pub partitions: Vec<PartitionChange>,
    /// The transform run now registered.
    pub run_id: String,
    pub duration_ms: u64,
}

/// Fails unless every file the transform run published for `table` is in the lake with the size
/// its manifest gives (one listing of the run folder): a partition is never registered over files
/// that are gone or were replaced.
fn verify_files(lake: &Lake, manifest: &Manifest, table: &str) -> Result<()> {
    let Some(out) = manifest.outputs.get(table) else {
        return Ok(());
    };
    if out.files.is_empty() {
        return Ok(());
    }
    let present: BTreeMap<String, u64> = lake
        .list(&out.location)?
        .into_iter()
        .map(|o| (o.path, o.size))
        .collect();
    for f in &out.files {
        let problem = match present.get(&f.path) {
            None => "is missing".to_string(),
            Some(&size) if size != f.bytes => {
                format!("has {size} bytes, the manifest says {}", f.bytes)
            }
            Some(_) => continue,
        };
        return Err(Error::Metadata {
            what: "curated file",
            location: lake.url_of(&f.path),
            message: format!(
                "{problem} ({table} dt={}, transform run {}, {} rows): not registered — re-run `bitacora-transform --date {}`",
                manifest.date, manifest.run_id, f.rows, manifest.date
            ),
        });
    }
    Ok(())
}

/// Registers the tables and the partitions of the day's published transform run.
pub fn run(config: &Config, params: &CatalogParams) -> Result<CatalogReport> {
    let started = Instant::now();
    let day = params.date;
    let lake = Lake::from_config(config)?;
    // One catalog run of the day at a time; the transform run it registers is recorded in the
    // lease, so that no transform publication removes it meanwhile.
    let mut lease = Lease::acquire(
        &lake,
        STEP,
        day,
        &layout::new_run_id(),
        config.lake.lease_ttl(),
    )?;
    let manifest = Manifest::load(&lake, "transform", day)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no curated partition for {day} in {}: run `bitacora-transform --date {day}` first",
            lake.root()
        ))
    })?;
    lease.record_read("transform", &manifest.run_id)?;
    for name in [EVENTS_TABLE, QUARANTINE_TABLE] {
        verify_files(&lake, &manifest, name)?;
    }
    // Still ours (cloud leases expire): the files just verified are kept while it is.
    lease.check()?;
    let catalog = open(config, &lake)?;
    let db = &config.catalog.database;
    let database_change = catalog.ensure_database(db)?;
    let mut tables = Vec::new();
    let mut partitions = Vec::new();
    for name in [EVENTS_TABLE, QUARANTINE_TABLE] {
        let def = table_definition(db, name, &lake)?;
        tables.push(TableChange {
            table: name.into(),
            change: catalog.put_table(&def)?,
        });
        let out = manifest.outputs.get(name).cloned().unwrap_or_default();
        let file_list: Vec<&str> = out
            .files
            .iter()
            .map(|f| f.path.rsplit('/').next().unwrap_or(&f.path))
            .collect();
        let mut parameters = BTreeMap::new();
        parameters.insert("files".into(), out.files.len().to_string());
        parameters.insert("rows".into(), out.rows.to_string());
        parameters.insert("bytes".into(), out.bytes.to_string());
        parameters.insert("run_id".into(), manifest.run_id.clone());
        parameters.insert(
            "file_list".into(),
            serde_json::to_string(&file_list)
                .map_err(|e| Error::external("encode file list", e))?,
        );
        let location = lake.url_of(&format!("{}/", out.location));
        let partition = Partition {
            values: vec![day.to_string()],
            location: location.clone(),
            parameters,
        };
        let change = catalog.put_partition(db, name, &partition)?;
        partitions.push(PartitionChange {
            table: name.into(),
            dt: day,
            change,
            location,
            files: out.files.len() as u64,
            rows: out.rows,
            bytes: out.bytes,
        });
    }
    drop(lease);
    tracing::info!(
        "catalog {day}: {db}.events dt={day} {:?}, {} rows",
        partitions[0].change,
        partitions[0].rows
    );
    Ok(CatalogReport {
        step: STEP,
        status: "ok",
        date: day,
        catalog: catalog.kind(),
        database: db.clone(),
        database_change,
        tables,
        partitions,
        run_id: manifest.run_id,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
