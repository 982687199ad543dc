//! The query-engine trait: SQL over the catalog's tables, results as Arrow.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;

/// The rows of a query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A read-only SQL engine over the catalog (`datafusion`, `athena`).
pub trait QueryEngine: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Runs one read-only statement. Statements that write or drop are refused.
    fn query(&self, sql: &str) -> Result<QueryOutput>;
}
