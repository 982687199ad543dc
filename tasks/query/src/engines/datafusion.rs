//! The embedded engine: Apache DataFusion over the catalog's Parquet partitions.
//!
//! Each partition of a catalog table is a Parquet listing of its location (the folder of one
//! published run); the table is the `UNION ALL` of its partitions, each adding its `dt` as a
//! constant, so that a filter on `dt` removes whole partitions at planning time.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bitacora_core::catalog::{Catalog, Table};
use bitacora_core::lake::Lake;
use bitacora_core::query::{QueryEngine, QueryOutput};
use bitacora_core::runtime::block_on;
use bitacora_core::schema::{PARTITION_COLUMN, arrow_type};
use bitacora_core::{Error, Result};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};

const PARTS_SCHEMA: &str = "_partitions";

/// DataFusion over the tables of one catalog database.
pub struct DataFusionEngine {
    ctx: SessionContext,
}

impl std::fmt::Debug for DataFusionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFusionEngine").finish()
    }
}

fn df(context: &str) -> impl Fn(datafusion::error::DataFusionError) -> Error + '_ {
    move |e| Error::Query(format!("{context}: {e}"))
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
    pub fn new(catalog: &dyn Catalog, database: &str, lake: &Lake) -> Result<Self> {
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
        df_catalog
            .register_schema(PARTS_SCHEMA, Arc::new(MemorySchemaProvider::new()))
            .map_err(df("register schema"))?;
        let engine = DataFusionEngine { ctx };
        for table in catalog.list_tables(database)? {
            let partitions = catalog.list_partitions(database, &table.name)?;
            engine.register_table(lake, &table, &partitions)?;
        }
        Ok(engine)
    }

    /// The files of a partition, as the catalog lists them (`file_list`, written by
    /// `bitacora-catalog`), checked to exist: a query never answers from part of a partition.
    /// `None` for partitions without a file list (registered by other tools): their folder is listed.
    fn partition_files(
        lake: &Lake,
        full: &str,
        p: &bitacora_core::catalog::Partition,
    ) -> Result<Option<Vec<ListingTableUrl>>> {
        let Some(list) = p.parameters.get("file_list") else {
            return Ok(None);
        };
        let Ok(names) = serde_json::from_str::<Vec<String>>(list) else {
            return Err(Error::Catalog(format!(
                "{full}: partition {:?} has an unreadable file list",
                p.values
            )));
        };
        let base = if p.location.ends_with('/') {
            p.location.clone()
        } else {
            format!("{}/", p.location)
        };
        let urls: Vec<String> = names.iter().map(|n| format!("{base}{n}")).collect();
        if let Some(rel) = urls
            .iter()
            .map(|u| lake.relative(u))
            .collect::<Option<Vec<String>>>()
            && let Some(first) = lake.missing(&rel)?.first()
        {
            let dt = p.values.first().map_or("?", String::as_str);
            let run = p.parameters.get("run_id").map_or("?", String::as_str);
            return Err(Error::Query(format!(
                "{full} dt={dt}: file {} of the catalog's partition is missing (transform run {run}); re-run `bitacora-transform --date {dt}` and `bitacora-catalog --date {dt}`",
                lake.url_of(first)
            )));
        }
        urls.iter()
            .map(|u| ListingTableUrl::parse(u).map_err(df("partition file")))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn register_table(
        &self,
        lake: &Lake,
        table: &Table,
        partitions: &[bitacora_core::catalog::Partition],
    ) -> Result<()> {
        let schema = data_schema(table)?;
        let full = format!("{}.{}", quote(&table.database), quote(&table.name));
        // A partition without files (a day with nothing quarantined) has no folder to list.
        let partitions: Vec<_> = partitions
            .iter()
            .filter(|p| p.parameters.get("files").is_none_or(|f| f != "0"))
            .collect();
        if partitions.is_empty() {
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
            let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])
                .map_err(df("empty table"))?;
            self.ctx
                .register_table(full.as_str(), Arc::new(empty))
                .map_err(df("register table"))?;
            return Ok(());
        }
        let mut branches = Vec::with_capacity(partitions.len());
        for p in &partitions {
            let Some(dt) = p.values.first() else { continue };
            if !dt.chars().all(|c| c.is_ascii_digit() || c == '-') {
                return Err(Error::Catalog(format!(
                    "{full}: bad partition value {dt:?}"
                )));
            }
            let urls = match Self::partition_files(lake, &full, p)? {
                Some(files) => files,
                None => {
                    vec![ListingTableUrl::parse(&p.location).map_err(df("partition location"))?]
                }
            };
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema.clone());
            let listing = ListingTable::try_new(config).map_err(df("partition table"))?;
            let name = format!("{}__{}", table.name, dt.replace('-', "_"));
            self.ctx
                .register_table(
                    format!("{PARTS_SCHEMA}.{}", quote(&name)).as_str(),
                    Arc::new(listing),
                )
                .map_err(df("register partition"))?;
            branches.push(format!(
                "SELECT *, '{dt}' AS {PARTITION_COLUMN} FROM {PARTS_SCHEMA}.{}",
                quote(&name)
            ));
        }
        let view = format!("CREATE VIEW {full} AS {}", branches.join(" UNION ALL "));
        block_on(async { self.ctx.sql(&view).await?.collect().await })
            .map_err(df("register table view"))?;
        Ok(())
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
            let frame = self.ctx.sql_with_options(sql, options).await.map_err(|e| {
                let msg = e.to_string();
                if msg.contains("not supported") && (msg.contains("DDL") || msg.contains("DML") || msg.contains("Statement")) {
                    Error::Query(format!(
                        "refused: bitacora-query is read-only, statements that write or drop are not allowed ({})",
                        msg.lines().next().unwrap_or_default()
                    ))
                } else {
                    Error::Query(msg.lines().next().unwrap_or_default().to_string())
                }
            })?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame
                .collect()
                .await
                .map_err(|e| Error::Query(e.to_string()))?;
            Ok(QueryOutput { schema, batches })
        })
    }
}
