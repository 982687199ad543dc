//! Output formats of `bitacora-query`: `table` (aligned text), `csv` (with header), `json` (one
//! JSON array of row objects).

use std::str::FromStr;

use arrow::array::RecordBatch;
use bitacora_core::query::QueryOutput;
use bitacora_core::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(Error::Usage(format!(
                "unknown format {other:?} (table, csv, json)"
            ))),
        }
    }
}

fn err(what: &str) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
    move |e| Error::external(format!("format {what}"), e)
}

/// Renders query rows.
pub fn render(output: &QueryOutput, format: Format) -> Result<String> {
    let batches: Vec<&RecordBatch> = output.batches.iter().filter(|b| b.num_rows() > 0).collect();
    match format {
        Format::Table => {
            if batches.is_empty() {
                let header = output
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(" | ");
                return Ok(format!("{header}\n(0 rows)\n"));
            }
            let owned: Vec<RecordBatch> = batches.into_iter().cloned().collect();
            let text = arrow::util::pretty::pretty_format_batches(&owned).map_err(err("table"))?;
            Ok(format!("{text}\n"))
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(output.schema.clone()))
                        .map_err(err("csv"))?;
                }
                for b in batches {
                    w.write(b).map_err(err("csv"))?;
                }
            }
            String::from_utf8(buf).map_err(|e| Error::external("format csv", e))
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                // Every column in every row object, null or not (what a consumer indexes by name).
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut buf);
                w.write_batches(&batches).map_err(err("json"))?;
                w.finish().map_err(err("json"))?;
            }
            let mut text = String::from_utf8(buf).map_err(|e| Error::external("format json", e))?;
            if text.trim().is_empty() {
                text = "[]".into();
            }
            text.push('\n');
            Ok(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn output(levels: Vec<Option<&str>>, counts: Vec<i64>) -> QueryOutput {
        let schema = Arc::new(Schema::new(vec![
            Field::new("level", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(levels)),
                Arc::new(Int64Array::from(counts)),
            ],
        )
        .expect("batch");
        QueryOutput {
            schema,
            batches: vec![batch],
        }
    }

    #[test]
    fn json_rows_carry_every_column_nulls_included() {
        let text = render(&output(vec![Some("ERROR"), None], vec![3, 4]), Format::Json).unwrap();
        let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            rows,
            serde_json::json!([{"level": "ERROR", "n": 3}, {"level": null, "n": 4}])
        );
    }

    #[test]
    fn empty_results_keep_their_shape() {
        let empty = output(vec![], vec![]);
        assert_eq!(render(&empty, Format::Json).unwrap(), "[]\n");
        assert_eq!(render(&empty, Format::Csv).unwrap(), "level,n\n");
        assert_eq!(
            render(&empty, Format::Table).unwrap(),
            "level | n\n(0 rows)\n"
        );
    }
}
