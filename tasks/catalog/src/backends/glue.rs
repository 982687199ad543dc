//! The AWS Glue Data Catalog (feature `aws`): `[catalog] kind = "glue"`.
//!
//! Databases and tables are created when missing and updated when their definition differs;
//! partitions are registered explicitly from the transform manifest (`CreatePartition`, or
//! `UpdatePartition` when the day is re-run) — never `MSCK REPAIR`, never a crawler. Tables carry
//! the Parquet SerDe and the parameters Athena needs; a partition's storage descriptor is the
//! table's with the partition's own location.

use std::collections::BTreeMap;

use aws_sdk_glue::Client;
use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{
    Column as GlueColumn, DatabaseInput, PartitionInput, PartitionValueList, SerDeInfo,
    StorageDescriptor as GlueSd, TableInput,
};
use bitacora_core::aws::{sdk_config, sdk_error};
use bitacora_core::catalog::{Catalog, Change, Column, Partition, StorageDescriptor, Table};
use bitacora_core::runtime::block_on;
use bitacora_core::{Error, Result};

#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: Client,
}

impl GlueCatalog {
    pub fn new() -> Self {
        GlueCatalog {
            client: Client::new(&sdk_config()),
        }
    }
}

impl Default for GlueCatalog {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an SDK error is Glue's "not found".
fn not_found<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("EntityNotFoundException")
}

fn glue_err<E: std::error::Error + 'static>(operation: &'static str, e: E) -> Error {
    Error::Catalog(sdk_error("glue", operation, e).to_string())
}

fn to_glue_columns(cols: &[Column]) -> Result<Vec<GlueColumn>> {
    cols.iter()
        .map(|c| {
            GlueColumn::builder()
                .name(&c.name)
                .r#type(&c.data_type)
                .set_comment(c.comment.clone())
                .build()
                .map_err(|e| glue_err("build column", e))
        })
        .collect()
}

fn from_glue_columns(cols: &[GlueColumn]) -> Vec<Column> {
    cols.iter()
        .map(|c| Column {
            name: c.name().to_string(),
            data_type: c.r#type().unwrap_or_default().to_string(),
            comment: c.comment().map(str::to_string),
        })
        .collect()
}

fn to_glue_sd(sd: &StorageDescriptor, location: &str) -> Result<GlueSd> {
    Ok(GlueSd::builder()
        .set_columns(Some(to_glue_columns(&sd.columns)?))
        .location(location)
        .input_format(&sd.input_format)
        .output_format(&sd.output_format)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(&sd.serialization_library)
                .parameters("serialization.format", "1")
                .build(),
        )
        .build())
}

fn from_glue_sd(sd: Option<&GlueSd>) -> StorageDescriptor {
    StorageDescriptor {
        columns: sd
            .map(|s| from_glue_columns(s.columns()))
            .unwrap_or_default(),
        location: sd.and_then(|s| s.location()).unwrap_or_default().into(),
        input_format: sd.and_then(|s| s.input_format()).unwrap_or_default().into(),
        output_format: sd
            .and_then(|s| s.output_format())
            .unwrap_or_default()
            .into(),
        serialization_library: sd
            .and_then(|s| s.serde_info())
            .and_then(|i| i.serialization_library())
            .unwrap_or_default()
            .into(),
    }
}

fn params(p: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    p.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn from_glue_table(database: &str, t: &aws_sdk_glue::types::Table) -> Table {
    Table {
        database: database.to_string(),
        name: t.name().to_string(),
        description: t.description().unwrap_or_default().to_string(),
        table_type: t.table_type().unwrap_or_default().to_string(),
        storage: from_glue_sd(t.storage_descriptor()),
        partition_keys: from_glue_columns(t.partition_keys()),
        parameters: params(t.parameters()),
    }
}

fn from_glue_partition(p: &aws_sdk_glue::types::Partition) -> Partition {
    Partition {
        values: p.values().to_vec(),
        location: p
            .storage_descriptor()
            .and_then(|s| s.location())
            .unwrap_or_default()
            .to_string(),
        parameters: params(p.parameters()),
    }
}

fn table_input(t: &Table) -> Result<TableInput> {
    TableInput::builder()
        .name(&t.name)
        .description(&t.description)
        .table_type(&t.table_type)
        .storage_descriptor(to_glue_sd(&t.storage, &t.storage.location)?)
        .set_partition_keys(Some(to_glue_columns(&t.partition_keys)?))
        .set_parameters(Some(t.parameters.clone().into_iter().collect()))
        .build()
        .map_err(|e| glue_err("build table", e))
}

impl Catalog for GlueCatalog {
    fn kind(&self) -> &'static str {
        "glue"
    }

    fn ensure_database(&self, name: &str) -> Result<Change> {
        match block_on(self.client.get_database().name(name).send()) {
            Ok(_) => Ok(Change::Unchanged),
            Err(e) if e.as_service_error().is_some_and(not_found) => {
                let input = DatabaseInput::builder()
                    .name(name)
                    .description("Bitácora: curated mobile-app logs")
                    .build()
                    .map_err(|e| glue_err("build database", e))?;
                block_on(self.client.create_database().database_input(input).send())
                    .map_err(|e| glue_err("CreateDatabase", e))?;
                Ok(Change::Created)
            }
            Err(e) => Err(glue_err("GetDatabase", e)),
        }
    }

    fn get_table(&self, database: &str, name: &str) -> Result<Option<Table>> {
        match block_on(
            self.client
                .get_table()
                .database_name(database)
                .name(name)
                .send(),
        ) {
            Ok(out) => Ok(out.table().map(|t| from_glue_table(database, t))),
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(None),
            Err(e) => Err(glue_err("GetTable", e)),
        }
    }

    fn put_table(&self, table: &Table) -> Result<Change> {
        match self.get_table(&table.database, &table.name)? {
            None => {
                block_on(
                    self.client
                        .create_table()
                        .database_name(&table.database)
                        .table_input(table_input(table)?)
                        .send(),
                )
                .map_err(|e| glue_err("CreateTable", e))?;
                Ok(Change::Created)
            }
            Some(current) if &current == table => Ok(Change::Unchanged),
            Some(_) => {
                block_on(
                    self.client
                        .update_table()
                        .database_name(&table.database)
                        .table_input(table_input(table)?)
                        .send(),
                )
                .map_err(|e| glue_err("UpdateTable", e))?;
                Ok(Change::Updated)
            }
        }
    }

    fn list_tables(&self, database: &str) -> Result<Vec<Table>> {
        let mut tables = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = block_on(
                self.client
                    .get_tables()
                    .database_name(database)
                    .set_next_token(token.take())
                    .send(),
            );
            let out = match out {
                Ok(o) => o,
                Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(Vec::new()),
                Err(e) => return Err(glue_err("GetTables", e)),
            };
            tables.extend(
                out.table_list()
                    .iter()
                    .map(|t| from_glue_table(database, t)),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tables)
    }

    fn put_partition(&self, database: &str, table: &str, partition: &Partition) -> Result<Change> {
        let def = self.get_table(database, table)?.ok_or_else(|| {
            Error::Catalog(format!(
                "table {database}.{table} does not exist in Glue: register it first"
            ))
        })?;
        let input = PartitionInput::builder()
            .set_values(Some(partition.values.clone()))
            .storage_descriptor(to_glue_sd(&def.storage, &partition.location)?)
            .set_parameters(Some(partition.parameters.clone().into_iter().collect()))
            .build();
        match self.get_partition(database, table, &partition.values)? {
            None => {
                block_on(
                    self.client
                        .create_partition()
                        .database_name(database)
                        .table_name(table)
                        .partition_input(input)
                        .send(),
                )
                .map_err(|e| glue_err("CreatePartition", e))?;
                Ok(Change::Created)
            }
            Some(current) if &current == partition => Ok(Change::Unchanged),
            Some(_) => {
                block_on(
                    self.client
                        .update_partition()
                        .database_name(database)
                        .table_name(table)
                        .set_partition_value_list(Some(partition.values.clone()))
                        .partition_input(input)
                        .send(),
                )
                .map_err(|e| glue_err("UpdatePartition", e))?;
                Ok(Change::Updated)
            }
        }
    }

    fn get_partition(
        &self,
        database: &str,
        table: &str,
        values: &[String],
    ) -> Result<Option<Partition>> {
        match block_on(
            self.client
                .get_partition()
                .database_name(database)
                .table_name(table)
                .set_partition_values(Some(values.to_vec()))
                .send(),
        ) {
            Ok(out) => Ok(out.partition().map(from_glue_partition)),
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(None),
            Err(e) => Err(glue_err("GetPartition", e)),
        }
    }

    /// `GetPartitions` without the partitions' column schemas (the table's own): the values.
    fn list_partition_values(&self, database: &str, table: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .partitions(database, table, true)?
            .into_iter()
            .map(|p| p.values)
            .collect())
    }

    /// `BatchGetPartition`, 1,000 partitions a request (Glue's limit). Keys Glue leaves
    /// unprocessed (throttling) are asked again; those still unprocessed after a few attempts are
    /// asked one by one (`GetPartition`, which tells a missing partition from a throttled one).
    fn get_partitions(
        &self,
        database: &str,
        table: &str,
        values: &[Vec<String>],
    ) -> Result<Vec<Partition>> {
        const BATCH: usize = 1000;
        const ATTEMPTS: u32 = 3;
        let mut found: BTreeMap<Vec<String>, Partition> = BTreeMap::new();
        for chunk in values.chunks(BATCH) {
            let mut pending: Vec<Vec<String>> = chunk.to_vec();
            for attempt in 1..=ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                if attempt > 1 {
                    std::thread::sleep(std::time::Duration::from_millis(100 << attempt));
                }
                let keys = pending
                    .iter()
                    .map(|v| {
                        PartitionValueList::builder()
                            .set_values(Some(v.clone()))
                            .build()
                            .map_err(|e| glue_err("BatchGetPartition", e))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let out = block_on(
                    self.client
                        .batch_get_partition()
                        .database_name(database)
                        .table_name(table)
                        .set_partitions_to_get(Some(keys))
                        .send(),
                )
                .map_err(|e| glue_err("BatchGetPartition", e))?;
                for p in out.partitions() {
                    let p = from_glue_partition(p);
                    found.insert(p.values.clone(), p);
                }
                pending = out
                    .unprocessed_keys()
                    .iter()
                    .map(|k| k.values().to_vec())
                    .collect();
            }
            for v in pending {
                if let Some(p) = self.get_partition(database, table, &v)? {
                    found.insert(v, p);
                }
            }
        }
        Ok(values.iter().filter_map(|v| found.remove(v)).collect())
    }

    fn list_partitions(&self, database: &str, table: &str) -> Result<Vec<Partition>> {
        self.partitions(database, table, false)
    }
}

impl GlueCatalog {
    /// Every partition of a table (`GetPartitions`, every page), ordered by values; without
    /// their column schemas when `values_only`.
    fn partitions(&self, database: &str, table: &str, values_only: bool) -> Result<Vec<Partition>> {
        let mut parts = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = block_on(
                self.client
                    .get_partitions()
                    .database_name(database)
                    .table_name(table)
                    .exclude_column_schema(values_only)
                    .set_next_token(token.take())
                    .send(),
            );
            let out = match out {
                Ok(o) => o,
                Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(Vec::new()),
                Err(e) => return Err(glue_err("GetPartitions", e)),
            };
            parts.extend(out.partitions().iter().map(from_glue_partition));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        parts.sort_by(|a, b| a.values.cmp(&b.values));
        Ok(parts)
    }
}
