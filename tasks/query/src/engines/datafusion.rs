//! The embedded engine: Apache DataFusion over the catalog's Parquet partitions.
//!
//! Each catalog table is a [`CatalogTable`]: registering it lists its partitions' values only; a
//! query's filter on `dt` chooses the partitions, and only those are read from the catalog and
//! looked up in the lake.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use bitacora_core::catalog::{Catalog, Table};
use bitacora_core::lake::Lake;
use bitacora_core::query::{QueryEngine, QueryOutput};
use bitacora_core::runtime::block_on;
use bitacora_core::schema::{PARTITION_COLUMN, arrow_type};
use bitacora_core::{Error, Result};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};

use super::catalog_table::CatalogTable;

/// DataFusion over the tables of one catalog database.
pub struct DataFusionEngine {
    ctx: SessionContext,
}

impl std::fmt::Debug for DataFusionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFusionEngine").finish()
    }
}

fn df(context: &str) -> impl Fn(DataFusionError) -> Error + '_ {
    move |e| Error::Query(format!("{context}: {e}"))
}

/// A bitacora error that travelled through DataFusion (raised by a table's scan), as it was
/// raised; any other error back.
fn ours(e: DataFusionError) -> std::result::Result<Error, DataFusionError> {
    match e {
        DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(ours) => Ok(*ours),
            Err(inner) => Err(DataFusionError::External(inner)),
        },
        DataFusionError::Context(context, inner) => {
            ours(*inner).map_err(|inner| DataFusionError::Context(context, Box::new(inner)))
        }
        other => Err(other),
    }
}

/// A DataFusion error as the one line a user reads.
fn query_error(e: DataFusionError) -> Error {
    let e = match ours(e) {
        Ok(ours) => return ours,
        Err(e) => e,
    };
    let msg = e.to_string();
    if msg.contains("not supported")
        && (msg.contains("DDL") || msg.contains("DML") || msg.contains("Statement"))
    {
        Error::Query(format!(
            "refused: bitacora-query is read-only, statements that write or drop are not allowed ({})",
            msg.lines().next().unwrap_or_default()
        ))
    } else {
        Error::Query(msg.lines().next().unwrap_or_default().to_string())
    }
}

/// The Arrow schema of a catalog table, without its partition keys.
pub fn data_schema(table: &Table) -> Result<SchemaRef> {
    let fields = table
        .storage
        .columns
        .iter()
        .map(|c| {
            arrow_type(&c.data_type)
                .map(|t| Field::new(&c.name, t, true))
                .ok_or_else(|| {
                    Error::Catalog(format!(
                        "{}.{}: column {} has unsupported type {}",
                        table.database, table.name, c.name, c.data_type
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

impl DataFusionEngine {
    /// Registers every table of `database` (as `database.table`, and as `table` alone).
    pub fn new(catalog: Arc<dyn Catalog>, database: &str, lake: &Lake) -> Result<Self> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema("datafusion", database)
            .with_information_schema(true)
            .with_target_partitions(bitacora_core::config::worker_count(0));
        let ctx = SessionContext::new_with_config(config);
        if let Some((bucket, store)) = lake.bucket_store() {
            ctx.register_object_store(&bucket, store);
        }
        let df_catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Query("DataFusion has no default catalog".into()))?;
        df_catalog
            .register_schema(database, Arc::new(MemorySchemaProvider::new()))
            .map_err(df("register schema"))?;
        for table in catalog.list_tables(database)? {
            if !matches!(table.partition_keys.as_slice(), [k] if k.name == PARTITION_COLUMN) {
                // Not one of ours (another tool's table in the same database): left out, so
                // that it cannot make every query fail.
                tracing::warn!(
                    "{database}.{}: not partitioned by {PARTITION_COLUMN} alone; not queryable here",
                    table.name
                );
                continue;
            }
            let values = catalog.list_partition_values(database, &table.name)?;
            let provider =
                CatalogTable::new(catalog.clone(), &table, data_schema(&table)?, values)?;
            let full = format!("{}.{}", quote(&table.database), quote(&table.name));
            ctx.register_table(full.as_str(), Arc::new(provider))
                .map_err(df("register table"))?;
        }
        Ok(DataFusionEngine { ctx })
    }

    /// The DataFusion session (for callers that want DataFrames).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl QueryEngine for DataFusionEngine {
    fn kind(&self) -> &'static str {
        "datafusion"
    }

    fn query(&self, sql: &str) -> Result<QueryOutput> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        block_on(async {
            let frame = self
                .ctx
                .sql_with_options(sql, options)
                .await
                .map_err(query_error)?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await.map_err(|e| match ours(e) {
                Ok(ours) => ours,
                Err(e) => Error::Query(e.to_string()),
            })?;
            Ok(QueryOutput { schema, batches })
        })
    }
}
