//! A DataFusion table over a catalog table, read the way the catalog describes it.
//!
//! When the table is registered only its partitions' values are known (one listing of the
//! catalog). A query's filters on `dt` choose the partitions it reads; only those are read from the
//! catalog (together), and only their files are looked up in the lake (existence and size, a HEAD
//! each, concurrently) — a one-day query over a year-long lake pays for one day. Each file's `dt`
//! is a partition value of the scan, so DataFusion knows it without reading it from the files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use bitacora_core::catalog::{Catalog, Partition, Table};
use bitacora_core::schema::PARTITION_COLUMN;
use bitacora_core::{Error, Result};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::helpers::{expr_applicable_for_cols, filter_partitioned_file};
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

type DfResult<T> = datafusion::error::Result<T>;

/// A day and its files.
type DayFiles = (String, Vec<ObjectMeta>);

/// A bitacora error carried through DataFusion (the engine unwraps it again).
/// The partition column as the scan gives it: `dt`, a non-null string.
fn dt_field() -> Field {
    Field::new(PARTITION_COLUMN, DataType::Utf8, false)
}

/// Whether a filter names `dt` alone (so choosing partitions applies it exactly).
fn on_dt_alone(filter: &Expr) -> bool {
    expr_applicable_for_cols(&[PARTITION_COLUMN], filter)
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One table of the catalog, partitioned by `dt`.
pub struct CatalogTable {
    catalog: Arc<dyn Catalog>,
    database: String,
    name: String,
    /// `"db"."table"`, for messages.
    full: String,
    /// The table's root folder (its storage location).
    location: String,
    /// The columns stored in the files.
    file_schema: SchemaRef,
    /// The file columns and `dt`.
    schema: SchemaRef,
    /// Every partition's `dt`, ordered.
    days: Vec<String>,
    /// The files of the days already looked up (a query may scan a table several times).
    resolved: Mutex<HashMap<String, Arc<Vec<ObjectMeta>>>>,
}

impl std::fmt::Debug for CatalogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogTable")
            .field("table", &self.full)
            .field("partitions", &self.days.len())
            .finish()
    }
}

impl CatalogTable {
    /// A table whose partitions have these values (one `dt` each, `YYYY-MM-DD`).
    pub fn new(
        catalog: Arc<dyn Catalog>,
        table: &Table,
        file_schema: SchemaRef,
        values: Vec<Vec<String>>,
    ) -> Result<Self> {
        let full = format!("{}.{}", table.database, table.name);
        let days = values
            .into_iter()
            .map(|v| match v.as_slice() {
                [dt] if !dt.is_empty() && dt.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                    Ok(dt.clone())
                }
                _ => Err(Error::Catalog(format!(
                    "{full}: bad partition value {v:?} (expected one {PARTITION_COLUMN}, YYYY-MM-DD)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(dt_field());
        Ok(CatalogTable {
            catalog,
            database: table.database.clone(),
            name: table.name.clone(),
            full,
            location: table.storage.location.clone(),
            file_schema,
            schema: Arc::new(Schema::new(fields)),
            days,
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// The days the filters that name only `dt` leave (all of them without such filters).
    fn prune(&self, filters: &[Expr]) -> DfResult<Vec<String>> {
        let on_dt: Vec<Expr> = filters.iter().filter(|f| on_dt_alone(f)).cloned().collect();
        if on_dt.is_empty() {
            return Ok(self.days.clone());
        }
        let schema =
            DFSchema::from_unqualified_fields(vec![dt_field()].into(), Default::default())?;
        let mut kept = Vec::new();
        for day in &self.days {
            let probe = PartitionedFile::new(day.clone(), 0)
                .with_partition_values(vec![ScalarValue::Utf8(Some(day.clone()))]);
            if filter_partitioned_file(probe, &on_dt, &schema)?.is_some() {
                kept.push(day.clone());
            }
        }
        Ok(kept)
    }

    /// The chosen partitions' documents, from the catalog (whose backends block: run aside).
    async fn partitions(&self, days: Vec<String>) -> DfResult<Vec<Partition>> {
        let catalog = self.catalog.clone();
        let (database, name) = (self.database.clone(), self.name.clone());
        let values: Vec<Vec<String>> = days.into_iter().map(|d| vec![d]).collect();
        tokio::task::spawn_blocking(move || catalog.get_partitions(&database, &name, &values))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(external)
    }

    /// The object store of the table's files: that of the table's location.
    fn store_url(&self) -> DfResult<ObjectStoreUrl> {
        Ok(ListingTableUrl::parse(&self.location)?.object_store())
    }

    /// The files of each day (in the order given): from the days looked up before, else read
    /// from the catalog and looked up in the lake, the days together.
    async fn day_files(
        &self,
        days: &[String],
        store: &Arc<dyn ObjectStore>,
        store_url: &ObjectStoreUrl,
        concurrency: usize,
    ) -> DfResult<Vec<Arc<Vec<ObjectMeta>>>> {
        let todo: Vec<String> = {
            let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            days.iter()
                .filter(|d| !resolved.contains_key(*d))
                .cloned()
                .collect()
        };
        if !todo.is_empty() {
            let partitions = self.partitions(todo.clone()).await?;
            for p in &partitions {
                if &ListingTableUrl::parse(&p.location)?.object_store() != store_url {
                    return Err(external(Error::Catalog(format!(
                        "{}: partition {:?} is at {}, outside the table's store ({})",
                        self.full,
                        p.values,
                        p.location,
                        store_url.as_str()
                    ))));
                }
            }
            // Up to `concurrency` lookups in flight in all: a few days at a time, each with its
            // share.
            const DAYS_AT_ONCE: usize = 8;
            let share = (concurrency / DAYS_AT_ONCE).max(1);
            let lookups: Vec<BoxFuture<'_, DfResult<DayFiles>>> = partitions
                .iter()
                .map(|p| {
                    async move {
                        let dt = p.values.first().cloned().unwrap_or_default();
                        Ok((dt, self.files(store, p, share).await?))
                    }
                    .boxed()
                })
                .collect();
            let found: Vec<DayFiles> = futures::stream::iter(lookups)
                .buffered(DAYS_AT_ONCE)
                .try_collect()
                .await?;
            let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            for (dt, metas) in found {
                resolved.insert(dt, Arc::new(metas));
            }
            // A day listed but without a document any more (removed meanwhile): no files.
            for d in todo {
                resolved.entry(d).or_default();
            }
        }
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        Ok(days
            .iter()
            .map(|d| resolved.get(d).cloned().unwrap_or_default())
            .collect())
    }

    /// The files of one partition, looked up in the lake: those of its file list (written by
    /// `bitacora-catalog`), each checked to exist — a query never answers from part of a
    /// partition — or, for partitions registered by other tools, the Parquet files of its folder.
    async fn files(
        &self,
        store: &Arc<dyn ObjectStore>,
        p: &Partition,
        concurrency: usize,
    ) -> DfResult<Vec<ObjectMeta>> {
        let dt = p.values.first().map_or("?", String::as_str);
        let folder = if p.location.ends_with('/') {
            p.location.clone()
        } else {
            format!("{}/", p.location)
        };
        let Some(list) = p.parameters.get("file_list") else {
            if p.parameters.get("files").is_some_and(|f| f == "0") {
                return Ok(Vec::new());
            }
            let url = ListingTableUrl::parse(&folder)?;
            // As DataFusion's listings do: no empty files, nothing under `_…` or `.…` (a
            // writer's temporary or metadata files).
            let prefix = url.prefix().clone();
            let mut found: Vec<ObjectMeta> = store
                .list(Some(&prefix))
                .try_filter(move |m| {
                    let hidden = m
                        .location
                        .prefix_match(&prefix)
                        .is_some_and(|mut parts| parts.any(|p| p.as_ref().starts_with(['_', '.'])));
                    futures::future::ready(
                        m.size > 0 && !hidden && m.location.as_ref().ends_with(".parquet"),
                    )
                })
                .try_collect()
                .await?;
            found.sort_by(|a, b| a.location.cmp(&b.location));
            return Ok(found);
        };
        let names: Vec<String> = serde_json::from_str(list).map_err(|_| {
            external(Error::Catalog(format!(
                "{}: partition dt={dt} has an unreadable file list",
                self.full
            )))
        })?;
        let urls = names
            .iter()
            .map(|n| ListingTableUrl::parse(format!("{folder}{n}")))
            .collect::<DfResult<Vec<_>>>()?;
        // Boxed futures over owned paths: the scan's future must be `Send` for any lifetime.
        let lookups: Vec<BoxFuture<'static, (usize, object_store::Result<ObjectMeta>)>> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let (store, path) = (Arc::clone(store), u.prefix().clone());
                async move { (i, store.head(&path).await) }.boxed()
            })
            .collect();
        let heads: Vec<(usize, object_store::Result<ObjectMeta>)> = futures::stream::iter(lookups)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut metas: Vec<Option<ObjectMeta>> = vec![None; urls.len()];
        for (i, r) in heads {
            match r {
                Ok(m) => metas[i] = Some(m),
                Err(object_store::Error::NotFound { .. }) => {
                    let run = p.parameters.get("run_id").map_or("?", String::as_str);
                    return Err(external(Error::Query(format!(
                        "{} dt={dt}: file {folder}{} of the catalog's partition is missing (transform run {run}); re-run `bitacora-transform --date {dt}` and `bitacora-catalog --date {dt}`",
                        self.full, names[i]
                    ))));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(metas.into_iter().flatten().collect())
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on `dt` alone are applied exactly, by choosing partitions; the others are given
    /// to the Parquet scan (row-group pruning) and applied again above it.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if on_dt_alone(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let empty = || -> DfResult<Arc<dyn ExecutionPlan>> {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            Ok(Arc::new(EmptyExec::new(schema)))
        };
        let days = self.prune(filters)?;
        if days.is_empty() {
            return empty();
        }
        let store_url = self.store_url()?;
        let store = state.runtime_env().object_store(&store_url)?;
        let concurrency = state
            .config_options()
            .execution
            .meta_fetch_concurrency
            .get();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let collect_statistics = state.config().collect_statistics();
        let metas = self
            .day_files(&days, &store, &store_url, concurrency)
            .await?;
        let mut files = Vec::new();
        for (day, metas) in days.iter().zip(metas) {
            let dt = ScalarValue::Utf8(Some(day.clone()));
            files.extend(metas.iter().map(|m| {
                PartitionedFile::new_from_meta(m.clone()).with_partition_values(vec![dt.clone()])
            }));
        }
        if files.is_empty() {
            return empty();
        }
        // Statistics (row counts, min/max) from the files' footers, as DataFusion's own listing
        // tables gather them; the footers are cached for the scan that follows.
        if collect_statistics {
            let (format, file_schema, store) = (&format, &self.file_schema, &store);
            files = futures::stream::iter(files)
                .map(|f| async move {
                    let stats = format
                        .infer_stats(state, store, file_schema.clone(), &f.object_meta)
                        .await?;
                    DfResult::Ok(f.with_statistics(Arc::new(stats)))
                })
                .buffered(concurrency)
                .try_collect()
                .await?;
        }
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let (groups, statistics) = datafusion_datasource::compute_all_files_statistics(
            groups,
            self.schema.clone(),
            collect_statistics,
            false,
        )?;
        let table_schema = TableSchemaBuilder::from(&self.file_schema)
            .with_table_partition_cols(vec![Arc::new(dt_field())])
            .build();
        let config = FileScanConfigBuilder::new(store_url, format.file_source(table_schema))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}
