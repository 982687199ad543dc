//! `bitacora-query`: read-only SQL over the catalog's tables (`bitacora.events`,
//! `bitacora.quarantine`), on the configured engine, with the stakeholders' named queries.

pub mod engines;
pub mod format;
pub mod named;

use std::sync::Arc;

use bitacora_core::catalog::Catalog;
use bitacora_core::config::QueryEngineKind;
use bitacora_core::lake::Lake;
use bitacora_core::query::{QueryEngine, QueryOutput};
use bitacora_core::schema::EVENTS_TABLE;
use bitacora_core::{Config, Day, Result};

pub use engines::datafusion::DataFusionEngine;
pub use format::{Format, render};
pub use named::{NAMED, NamedQuery};

/// The query engine of a configuration, over its catalog.
pub fn open(config: &Config) -> Result<Box<dyn QueryEngine>> {
    let lake = Lake::from_config(config)?;
    let catalog = bitacora_catalog::open(config, &lake)?;
    open_with(config, &lake, catalog.into())
}

fn open_with(
    config: &Config,
    lake: &Lake,
    catalog: Arc<dyn Catalog>,
) -> Result<Box<dyn QueryEngine>> {
    match config.query.engine {
        QueryEngineKind::Datafusion => Ok(Box::new(DataFusionEngine::new(
            catalog,
            &config.catalog.database,
            lake,
        )?)),
        #[cfg(feature = "aws")]
        QueryEngineKind::Athena => Ok(Box::new(engines::athena::AthenaEngine::new(
            &config.catalog.database,
            config.query.workgroup.clone(),
            config.query.output_location.clone(),
        ))),
        #[cfg(not(feature = "aws"))]
        QueryEngineKind::Athena => Err(bitacora_core::Error::config(
            "query.engine",
            "\"athena\" needs a build with the `aws` feature (cargo build --release --features aws)",
        )),
    }
}

/// The latest day registered for `events`.
fn latest_in(catalog: &dyn Catalog, database: &str) -> Result<Option<Day>> {
    if catalog.get_table(database, EVENTS_TABLE)?.is_none() {
        return Ok(None);
    }
    Ok(catalog
        .list_partition_values(database, EVENTS_TABLE)?
        .last()
        .and_then(|v| v.first())
        .and_then(|v| v.parse().ok()))
}

/// Runs SQL on the configured engine.
pub fn query(config: &Config, sql: &str) -> Result<QueryOutput> {
    open(config)?.query(sql)
}

/// Runs a named query for a day (or every day). The lake and catalog are opened once, and the
/// latest day is looked up only for a query that needs a reference day and was given none.
pub fn named(config: &Config, name: &str, date: Option<Day>) -> Result<QueryOutput> {
    let q = named::find(name)?;
    let lake = Lake::from_config(config)?;
    let catalog: Arc<dyn Catalog> = bitacora_catalog::open(config, &lake)?.into();
    let latest = if q.needs_latest(date) {
        latest_in(catalog.as_ref(), &config.catalog.database)?
    } else {
        None
    };
    open_with(config, &lake, catalog)?.query(&q.sql_for(config.query.engine, date, latest))
}

/// The SQL a named query runs for a day (or every day) on the configured engine
/// (`bitacora-query --show NAME`). Only a query that needs a reference day and was given none
/// opens the catalog (for the latest day).
pub fn named_sql(config: &Config, name: &str, date: Option<Day>) -> Result<String> {
    let q = named::find(name)?;
    let latest = if q.needs_latest(date) {
        let lake = Lake::from_config(config)?;
        let catalog = bitacora_catalog::open(config, &lake)?;
        latest_in(catalog.as_ref(), &config.catalog.database)?
    } else {
        None
    };
    Ok(q.sql_for(config.query.engine, date, latest))
}
