//! Curated Parquet files: zstd, bounded row groups, page statistics and declared sort order, written
//! deterministically (the same rows give the same bytes).

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use bitacora_core::{Error, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::dedup::RowRef;

/// Writer settings of the curated zone.
/// `unique` names the columns with (nearly) one value per row: written without dictionary
/// encoding; those in `unprunable` also without min/max statistics (random ids and text blobs,
/// whose ranges never let a reader skip anything).
pub fn properties(
    row_group_rows: usize,
    zstd_level: i32,
    sorting: Vec<SortingColumn>,
    unique: &[&str],
    unprunable: &[&str],
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(zstd_level)
        .map_err(|e| Error::config("transform.zstd_level", e.to_string()))?;
    let mut builder = WriterProperties::builder();
    for c in unique {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    for c in unprunable {
        builder =
            builder.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None);
    }
    Ok(builder
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting).filter(|s| !s.is_empty()))
        .set_created_by(format!("bitacora {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// String bytes gathered into one batch at most (Arrow string arrays hold at most 2 GiB).
const GATHER_BYTES: usize = 512 << 20;

/// Splits `order` into the runs gathered one at a time: `rows` rows each, and fewer when their
/// strings would pass [`GATHER_BYTES`] (only measured when the input as a whole is that large).
pub fn gather_chunks<'o>(
    batches: &[RecordBatch],
    order: &'o [RowRef],
    rows: usize,
) -> Vec<&'o [RowRef]> {
    gather_chunks_within(batches, order, rows, GATHER_BYTES)
}

fn string_columns(b: &RecordBatch) -> Vec<&arrow::array::StringArray> {
    use arrow::array::AsArray;
    b.columns()
        .iter()
        .filter_map(|c| c.as_string_opt::<i32>())
        .collect()
}

fn gather_chunks_within<'o>(
    batches: &[RecordBatch],
    order: &'o [RowRef],
    rows: usize,
    limit: usize,
) -> Vec<&'o [RowRef]> {
    let total: usize = batches
        .iter()
        .flat_map(string_columns)
        .map(|a| a.value_data().len())
        .sum();
    if total <= limit {
        return order.chunks(rows).collect();
    }
    let cols: Vec<Vec<&arrow::array::StringArray>> = batches.iter().map(string_columns).collect();
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, &(b, r)) in order.iter().enumerate() {
        let size: usize = cols[b].iter().map(|a| a.value_length(r) as usize).sum();
        if i > start && (i - start >= rows || bytes + size > limit) {
            out.push(&order[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < order.len() {
        out.push(&order[start..]);
    }
    out
}

/// Writes the rows `order` of `batches`, projected to `schema`, as one Parquet file in memory.
/// Rows are gathered a row group at a time, so memory holds the input plus one row group.
pub fn write_rows(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    order: &[RowRef],
    props: WriterProperties,
    row_group_rows: usize,
) -> Result<Vec<u8>> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let projection: Vec<usize> = schema
        .fields()
        .iter()
        .map(|f| {
            batches
                .first()
                .and_then(|b| b.schema().index_of(f.name()).ok())
                .ok_or_else(|| {
                    Error::Invariant(format!("column {} missing from the work rows", f.name()))
                })
        })
        .collect::<Result<_>>()?;
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
        .map_err(|e| Error::external("start Parquet file", e))?;
    for chunk in gather_chunks(batches, order, row_group_rows.max(1)) {
        let gathered =
            interleave_record_batch(&refs, chunk).map_err(|e| Error::external("gather rows", e))?;
        let projected = gathered
            .project(&projection)
            .map_err(|e| Error::external("project rows", e))?;
        let batch = RecordBatch::try_new(schema.clone(), projected.columns().to_vec())
            .map_err(|e| Error::external("shape rows", e))?;
        writer
            .write(&batch)
            .map_err(|e| Error::external("write Parquet", e))?;
    }
    writer
        .into_inner()
        .map_err(|e| Error::external("finish Parquet file", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn large_rows_are_gathered_in_smaller_chunks() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let big = "x".repeat(1000);
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![big.as_str(); 10]))],
        )
        .unwrap();
        let order: Vec<RowRef> = (0..10).map(|r| (0, r)).collect();
        let batches = std::slice::from_ref(&b);
        // Under the limit: chunks of `rows`.
        let small: Vec<usize> = gather_chunks_within(batches, &order, 4, 1 << 20)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(small, vec![4, 4, 2]);
        // Over it: at most 2500 bytes of strings per chunk.
        let sized: Vec<usize> = gather_chunks_within(batches, &order, 4, 2500)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sized, vec![2, 2, 2, 2, 2]);
        assert_eq!(sized.iter().sum::<usize>(), 10);
    }
}
