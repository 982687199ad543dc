//! The catalog trait and its model, after the AWS Glue Data Catalog: databases hold tables (columns,
//! partition keys, storage descriptor, parameters), tables hold partitions (values, location,
//! parameters). The local catalog and the Glue catalog are two implementations of [`Catalog`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A column: name and Hive type (`string`, `bigint`, `int`, `timestamp`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Where and how a table's data is stored (Glue's `StorageDescriptor`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageDescriptor {
    pub columns: Vec<Column>,
    /// URL of the table's root folder.
    pub location: String,
    pub input_format: String,
    pub output_format: String,
    pub serialization_library: String,
}

impl StorageDescriptor {
    /// Parquet storage, as Athena expects it.
    pub fn parquet(columns: Vec<Column>, location: String) -> Self {
        StorageDescriptor {
            columns,
            location,
            input_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat".into(),
            output_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat".into(),
            serialization_library: "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                .into(),
        }
    }
}

/// A table (Glue's `TableInput`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Table {
    pub database: String,
    pub name: String,
    pub description: String,
    /// `EXTERNAL_TABLE`.
    pub table_type: String,
    pub storage: StorageDescriptor,
    pub partition_keys: Vec<Column>,
    pub parameters: BTreeMap<String, String>,
}

/// A partition of a table (Glue's `PartitionInput`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Partition {
    /// Values of the partition keys, in order (`["2026-11-01"]`).
    pub values: Vec<String>,
    /// URL of the folder holding exactly this partition's files.
    pub location: String,
    /// `files`, `rows`, `bytes`, `run_id`, and the file list as JSON under `file_list`.
    pub parameters: BTreeMap<String, String>,
}

impl Partition {
    pub fn rows(&self) -> u64 {
        self.parameters
            .get("rows")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// What an idempotent write did.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// A metadata catalog of databases, tables and partitions.
pub trait Catalog: Send + Sync {
    /// `local` or `glue`.
    fn kind(&self) -> &'static str;
    /// Creates the database when missing.
    fn ensure_database(&self, name: &str) -> Result<Change>;
    fn get_table(&self, database: &str, name: &str) -> Result<Option<Table>>;
    /// Creates the table, or updates it when its definition differs.
    fn put_table(&self, table: &Table) -> Result<Change>;
    fn list_tables(&self, database: &str) -> Result<Vec<Table>>;
    /// Creates the partition, or updates it when it differs (never a crawler, never a repair).
    fn put_partition(&self, database: &str, table: &str, partition: &Partition) -> Result<Change>;
    fn get_partition(
        &self,
        database: &str,
        table: &str,
        values: &[String],
    ) -> Result<Option<Partition>>;
    /// Every partition of a table, ordered by values.
    fn list_partitions(&self, database: &str, table: &str) -> Result<Vec<Partition>>;

    /// The values of every partition of a table, ordered, without reading each partition where
    /// the backend can (the local catalog lists its documents' names): a query engine prunes on
    /// them first and reads only the partitions it needs ([`Catalog::get_partitions`]).
    fn list_partition_values(&self, database: &str, table: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .list_partitions(database, table)?
            .into_iter()
            .map(|p| p.values)
            .collect())
    }

    /// The partitions of these values that exist, in the given order, read together where the
    /// backend can (concurrent reads, or batched requests).
    fn get_partitions(
        &self,
        database: &str,
        table: &str,
        values: &[Vec<String>],
    ) -> Result<Vec<Partition>> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            if let Some(p) = self.get_partition(database, table, v)? {
                out.push(p);
            }
        }
        Ok(out)
    }
}
