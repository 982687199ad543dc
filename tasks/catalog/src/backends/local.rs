//! The embedded catalog: Glue-shaped JSON documents stored in the lake under `_catalog/`.
//!
//! ```text
//! _catalog/<db>/database.json
//! _catalog/<db>/<table>/table.json
//! _catalog/<db>/<table>/partitions/dt=2026-11-01.json
//! ```
//! Every document is written atomically; writes are compare-then-put, so re-registering the same
//! definition is a no-op.

use bitacora_core::catalog::{Catalog, Change, Partition, Table};
use bitacora_core::lake::Lake;
use bitacora_core::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct LocalCatalog {
    lake: Lake,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
struct Database {
    name: String,
    description: String,
}

impl LocalCatalog {
    pub fn new(lake: Lake) -> Self {
        LocalCatalog { lake }
    }

    fn read<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let Some(bytes) = self.lake.get_opt(path)? else {
            return Ok(None);
        };
        self.decode(path, &bytes).map(Some)
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::Catalog(format!(
                "catalog document {}: unreadable: {e}",
                self.lake.url_of(path)
            ))
        })
    }

    fn upsert<T: Serialize + DeserializeOwned + PartialEq>(
        &self,
        path: &str,
        value: &T,
    ) -> Result<Change> {
        let existing: Option<T> = self.read(path)?;
        if existing.as_ref() == Some(value) {
            return Ok(Change::Unchanged);
        }
        let body = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::external("encode catalog document", e))?;
        self.lake.put(path, body)?;
        Ok(if existing.is_some() {
            Change::Updated
        } else {
            Change::Created
        })
    }

    fn table_path(db: &str, table: &str) -> String {
        format!("_catalog/{db}/{table}/table.json")
    }

    fn partition_name(table: &Table, values: &[String]) -> String {
        table
            .partition_keys
            .iter()
            .zip(values)
            .map(|(k, v)| format!("{}={v}", k.name))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn require_table(&self, db: &str, name: &str) -> Result<Table> {
        self.get_table(db, name)?
            .ok_or_else(|| Error::Catalog(format!("table {db}.{name} does not exist")))
    }
}

impl Catalog for LocalCatalog {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn ensure_database(&self, name: &str) -> Result<Change> {
        let path = format!("_catalog/{name}/database.json");
        if self.read::<Database>(&path)?.is_some() {
            return Ok(Change::Unchanged);
        }
        self.upsert(
            &path,
            &Database {
                name: name.into(),
                description: "Bitácora: mobile-app logs".into(),
            },
        )
    }

    fn get_table(&self, database: &str, name: &str) -> Result<Option<Table>> {
        self.read(&Self::table_path(database, name))
    }

    fn put_table(&self, table: &Table) -> Result<Change> {
        if self
            .read::<Database>(&format!("_catalog/{}/database.json", table.database))?
            .is_none()
        {
            return Err(Error::Catalog(format!(
                "database {} does not exist",
                table.database
            )));
        }
        self.upsert(&Self::table_path(&table.database, &table.name), table)
    }

    fn list_tables(&self, database: &str) -> Result<Vec<Table>> {
        let mut out = Vec::new();
        for dir in self.lake.list_dirs(&format!("_catalog/{database}"))? {
            if let Some(t) = self.get_table(database, &dir)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn put_partition(&self, database: &str, table: &str, partition: &Partition) -> Result<Change> {
        let t = self.require_table(database, table)?;
        if partition.values.len() != t.partition_keys.len() {
            return Err(Error::Catalog(format!(
                "partition {:?} of {database}.{table}: expected {} value(s)",
                partition.values,
                t.partition_keys.len()
            )));
        }
        let name = Self::partition_name(&t, &partition.values);
        self.upsert(
            &format!("_catalog/{database}/{table}/partitions/{name}.json"),
            partition,
        )
    }

    fn get_partition(
        &self,
        database: &str,
        table: &str,
        values: &[String],
    ) -> Result<Option<Partition>> {
        let t = self.require_table(database, table)?;
        let name = Self::partition_name(&t, values);
        self.read(&format!(
            "_catalog/{database}/{table}/partitions/{name}.json"
        ))
    }

    /// One listing of the table's partition documents, whose names hold the values
    /// (`dt=2026-11-01.json`): no document is read.
    fn list_partition_values(&self, database: &str, table: &str) -> Result<Vec<Vec<String>>> {
        let dir = format!("_catalog/{database}/{table}/partitions/");
        let mut out = Vec::new();
        for o in self.lake.list(&dir)? {
            let Some(name) = o
                .path
                .strip_prefix(&dir)
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let values = name
                .split('/')
                .map(|kv| kv.split_once('=').map(|(_, v)| v.to_string()))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    Error::Catalog(format!(
                        "catalog document {}: not named key=value.json",
                        self.lake.url_of(&o.path)
                    ))
                })?;
            out.push(values);
        }
        out.sort();
        Ok(out)
    }

    /// The documents of the given partitions, read concurrently.
    fn get_partitions(
        &self,
        database: &str,
        table: &str,
        values: &[Vec<String>],
    ) -> Result<Vec<Partition>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.require_table(database, table)?;
        let paths: Vec<String> = values
            .iter()
            .map(|v| {
                format!(
                    "_catalog/{database}/{table}/partitions/{}.json",
                    Self::partition_name(&t, v)
                )
            })
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for (bytes, path) in self.lake.get_many(&paths)?.into_iter().zip(&paths) {
            if let Some(bytes) = bytes {
                out.push(self.decode(path, &bytes)?);
            }
        }
        Ok(out)
    }

    fn list_partitions(&self, database: &str, table: &str) -> Result<Vec<Partition>> {
        let mut out: Vec<Partition> = Vec::new();
        for o in self
            .lake
            .list(&format!("_catalog/{database}/{table}/partitions"))?
        {
            if o.path.ends_with(".json")
                && let Some(p) = self.read::<Partition>(&o.path)?
            {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.values.cmp(&b.values));
        Ok(out)
    }
}
