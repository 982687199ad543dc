//! Amazon Athena (feature `aws`): `[query] engine = "athena"`, with `workgroup` and/or
//! `output_location`.
//!
//! A statement is started with a client request token (a retried start never runs the query
//! twice), polled with backoff until it reaches a terminal state, and its result pages are read
//! to the end and typed from Athena's column metadata into Arrow, so every `--format` works as with
//! DataFusion. A failed query reports Athena's own reason.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanBuilder, PrimitiveBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Field, Float64Type, Int32Type, Int64Type, Schema,
    SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use aws_sdk_athena::Client;
use aws_sdk_athena::types::{
    ColumnInfo, QueryExecutionContext, QueryExecutionState, ResultConfiguration, Row,
};
use bitacora_core::aws::{sdk_config, sdk_error};
use bitacora_core::query::{QueryEngine, QueryOutput};
use bitacora_core::runtime::block_on;
use bitacora_core::{Error, Result};

/// Longest wait between two polls of a running query.
const MAX_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AthenaEngine {
    client: Client,
    database: String,
    workgroup: Option<String>,
    output_location: Option<String>,
    /// Give up on a query that has not finished after this long.
    timeout: Duration,
}

impl AthenaEngine {
    pub fn new(
        database: &str,
        workgroup: Option<String>,
        output_location: Option<String>,
    ) -> AthenaEngine {
        AthenaEngine {
            client: Client::new(&sdk_config()),
            database: database.to_string(),
            workgroup,
            output_location,
            timeout: Duration::from_secs(30 * 60),
        }
    }

    fn start(&self, sql: &str) -> Result<String> {
        let token = {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(|e| Error::Query(format!("no randomness: {e}")))?;
            hex::encode(b)
        };
        let mut req = self
            .client
            .start_query_execution()
            .query_string(sql)
            .client_request_token(token)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .database(&self.database)
                    .build(),
            )
            .set_work_group(self.workgroup.clone());
        if let Some(out) = &self.output_location {
            req = req
                .result_configuration(ResultConfiguration::builder().output_location(out).build());
        }
        let out = block_on(req.send())
            .map_err(|e| Error::Query(sdk_error("athena", "StartQueryExecution", e).to_string()))?;
        out.query_execution_id()
            .map(str::to_string)
            .ok_or_else(|| Error::Query("Athena returned no query execution id".into()))
    }

    /// Polls until the query ends; the error carries Athena's reason.
    fn wait(&self, id: &str) -> Result<()> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let out = block_on(
                self.client
                    .get_query_execution()
                    .query_execution_id(id)
                    .send(),
            )
            .map_err(|e| Error::Query(sdk_error("athena", "GetQueryExecution", e).to_string()))?;
            let status = out.query_execution().and_then(|q| q.status());
            match status.and_then(|s| s.state()) {
                Some(QueryExecutionState::Succeeded) => return Ok(()),
                Some(state @ (QueryExecutionState::Failed | QueryExecutionState::Cancelled)) => {
                    let reason = status
                        .and_then(|s| s.state_change_reason())
                        .unwrap_or("no reason given");
                    return Err(Error::Query(format!(
                        "athena query {id} {}: {reason}",
                        state.as_str().to_lowercase()
                    )));
                }
                _ => {}
            }
            if started.elapsed() > self.timeout {
                let _ = block_on(
                    self.client
                        .stop_query_execution()
                        .query_execution_id(id)
                        .send(),
                );
                return Err(Error::Query(format!(
                    "athena query {id} did not finish in {:?}; stopped",
                    self.timeout
                )));
            }
            std::thread::sleep(delay);
            delay = (delay * 3 / 2).min(MAX_POLL);
        }
    }

    /// Every result page, typed by the column metadata.
    fn results(&self, id: &str) -> Result<QueryOutput> {
        let mut token: Option<String> = None;
        let mut columns: Option<Vec<ColumnInfo>> = None;
        let mut rows: Vec<Row> = Vec::new();
        let mut first = true;
        loop {
            let out = block_on(
                self.client
                    .get_query_results()
                    .query_execution_id(id)
                    .set_next_token(token.take())
                    .send(),
            )
            .map_err(|e| Error::Query(sdk_error("athena", "GetQueryResults", e).to_string()))?;
            let Some(set) = out.result_set() else { break };
            if columns.is_none() {
                columns = set.result_set_metadata().map(|m| m.column_info().to_vec());
            }
            let mut page = set.rows().to_vec();
            // The first row of a SELECT's first page repeats the column names.
            if first
                && let (Some(cols), Some(head)) = (&columns, page.first())
                && is_header(head, cols)
            {
                page.remove(0);
            }
            first = false;
            rows.extend(page);
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        to_arrow(&columns.unwrap_or_default(), &rows)
    }
}

fn is_header(row: &Row, cols: &[ColumnInfo]) -> bool {
    row.data().len() == cols.len()
        && row
            .data()
            .iter()
            .zip(cols)
            .all(|(d, c)| d.var_char_value() == Some(c.name()))
}

/// Arrow type of an Athena (Trino) column type.
fn arrow_type(athena: &str) -> DataType {
    match athena.to_ascii_lowercase().as_str() {
        "bigint" => DataType::Int64,
        "integer" | "int" | "smallint" | "tinyint" => DataType::Int32,
        "double" | "float" | "real" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        // varchar, char, decimal (kept exact as text), arrays, maps, rows, json...
        _ => DataType::Utf8,
    }
}

fn bad_value(col: &str, value: &str, ty: &str) -> Error {
    Error::Query(format!(
        "athena returned {value:?} in column {col}, which is not a {ty}"
    ))
}

fn parse_timestamp(v: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// A column of Athena's text values parsed into Arrow type `T`; a value that does not parse is an
/// error naming the column.
fn primitive<'v, T: ArrowPrimitiveType>(
    values: impl Iterator<Item = Option<&'v str>>,
    parse: impl Fn(&str) -> Option<T::Native>,
    name: &str,
    ty: &str,
) -> Result<ArrayRef> {
    let mut b = PrimitiveBuilder::<T>::new();
    for v in values {
        b.append_option(
            v.map(|v| parse(v).ok_or_else(|| bad_value(name, v, ty)))
                .transpose()?,
        );
    }
    Ok(Arc::new(b.finish()))
}

fn to_arrow(cols: &[ColumnInfo], rows: &[Row]) -> Result<QueryOutput> {
    let fields: Vec<Field> = cols
        .iter()
        .map(|c| Field::new(c.name(), arrow_type(c.r#type()), true))
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        let values = rows
            .iter()
            .map(|r| r.data().get(i).and_then(|d| d.var_char_value()));
        let name = c.name();
        let array: ArrayRef = match arrow_type(c.r#type()) {
            DataType::Int64 => primitive::<Int64Type>(values, |v| v.parse().ok(), name, "bigint")?,
            DataType::Int32 => primitive::<Int32Type>(values, |v| v.parse().ok(), name, "integer")?,
            DataType::Float64 => {
                primitive::<Float64Type>(values, |v| v.parse().ok(), name, "double")?
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                for v in values {
                    b.append_option(
                        v.map(|v| v.parse().map_err(|_| bad_value(name, v, "boolean")))
                            .transpose()?,
                    );
                }
                Arc::new(b.finish())
            }
            DataType::Date32 => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                let days = |v: &str| {
                    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .ok()
                        .map(|d| (d - epoch).num_days() as i32)
                };
                primitive::<Date32Type>(values, days, name, "date")?
            }
            DataType::Timestamp(..) => {
                primitive::<TimestampMicrosecondType>(values, parse_timestamp, name, "timestamp")?
            }
            _ => {
                let mut b = StringBuilder::new();
                for v in values {
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    let batches = if cols.is_empty() {
        Vec::new()
    } else {
        vec![
            RecordBatch::try_new(schema.clone(), arrays)
                .map_err(|e| Error::Query(format!("athena results: {e}")))?,
        ]
    };
    Ok(QueryOutput { schema, batches })
}

/// Whether `sql` only reads: one `SELECT`/`WITH`/`VALUES` query, `SHOW`, `DESCRIBE`, or `EXPLAIN`
/// of one of those. Athena runs what the workgroup's IAM allows; this keeps `bitacora-query`
/// read-only on every engine. `EXPLAIN ANALYZE` is refused: Trino runs the statement it explains.
/// The statement is read as Trino lexes it (comments, quoted strings and identifiers, any case and
/// spacing), so neither can hide a keyword.
fn read_only(sql: &str) -> Result<()> {
    statement_reads_only(sql).map_err(|why| {
        Error::Query(format!(
            "refused: bitacora-query is read-only, only one SELECT/WITH/SHOW/DESCRIBE/EXPLAIN statement is allowed ({why})"
        ))
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A keyword or unquoted identifier, upper-cased.
    Word(String),
    /// A quoted string, quoted identifier or number: never a keyword.
    Literal,
    Punct(char),
}

/// Trino's lexing, as far as the guard needs it: `--` and `/* */` comments are skipped, `'…'`
/// strings and `"…"` identifiers (doubled quotes inside) are one token.
fn tokens(sql: &str) -> std::result::Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '-' if sql[i..].starts_with("--") => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if sql[i..].starts_with("/*") => {
                let end = sql[i + 2..]
                    .find("*/")
                    .ok_or_else(|| "unterminated comment".to_string())?;
                let resume = i + 2 + end + 2;
                while chars.peek().is_some_and(|(j, _)| *j < resume) {
                    chars.next();
                }
            }
            '\'' | '"' | '`' => {
                let quote = c;
                loop {
                    match chars.next() {
                        Some((_, c)) if c == quote => {
                            if chars.peek().is_some_and(|(_, n)| *n == quote) {
                                chars.next();
                            } else {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err(format!("unterminated {quote}")),
                    }
                }
                out.push(Token::Literal);
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some((_, n)) = chars.peek() {
                    if !(n.is_alphanumeric() || *n == '_') {
                        break;
                    }
                    word.push(*n);
                    chars.next();
                }
                if c.is_ascii_digit() {
                    out.push(Token::Literal);
                } else {
                    out.push(Token::Word(word.to_uppercase()));
                }
            }
            c => out.push(Token::Punct(c)),
        }
    }
    Ok(out)
}

fn statement_reads_only(sql: &str) -> std::result::Result<(), String> {
    let mut toks = tokens(sql)?;
    if toks.last() == Some(&Token::Punct(';')) {
        toks.pop();
    }
    if toks.contains(&Token::Punct(';')) {
        return Err("got several statements".into());
    }
    reads_only(&toks)
}

/// Whether the statement in `toks` only reads.
fn reads_only(toks: &[Token]) -> std::result::Result<(), String> {
    fn word(t: Option<&Token>) -> Option<&str> {
        match t {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }
    // A parenthesised query.
    let open = toks.iter().take_while(|t| **t == Token::Punct('(')).count();
    let first = word(toks.get(open));
    match first {
        Some("SELECT" | "WITH" | "VALUES") => Ok(()),
        Some("SHOW" | "DESCRIBE") if open == 0 => Ok(()),
        Some("EXPLAIN") if open == 0 => {
            let rest = &toks[1..];
            match rest.first() {
                Some(Token::Word(w)) if w == "ANALYZE" => {
                    Err("EXPLAIN ANALYZE runs the statement it explains".into())
                }
                // EXPLAIN (TYPE …, FORMAT …) statement; or EXPLAIN (query).
                Some(Token::Punct('(')) if matches!(word(rest.get(1)), Some("TYPE" | "FORMAT")) => {
                    let close = rest
                        .iter()
                        .position(|t| *t == Token::Punct(')'))
                        .ok_or_else(|| "unclosed EXPLAIN options".to_string())?;
                    reads_only(&rest[close + 1..])
                }
                _ => reads_only(rest),
            }
        }
        Some(w) => Err(format!("got {w:?}")),
        None => Err("got no statement".into()),
    }
}

impl QueryEngine for AthenaEngine {
    fn kind(&self) -> &'static str {
        "athena"
    }

    fn query(&self, sql: &str) -> Result<QueryOutput> {
        read_only(sql)?;
        let id = self.start(sql)?;
        tracing::info!("athena query {id} started");
        self.wait(&id)?;
        self.results(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reading_statements_pass() {
        for ok in [
            "SELECT 1",
            " with x as (select 1) select * from x;",
            "SHOW TABLES",
            "(SELECT 1)",
        ] {
            assert!(read_only(ok).is_ok(), "{ok}");
        }
        for bad in [
            "DROP TABLE events",
            "INSERT INTO events SELECT 1",
            "SELECT 1; DROP TABLE x",
            "MSCK REPAIR TABLE events",
            "CREATE TABLE x AS SELECT 1",
        ] {
            assert!(read_only(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explain_analyze_is_refused_however_written() {
        for ok in [
            "EXPLAIN SELECT * FROM events",
            "explain (type distributed) select 1",
            "EXPLAIN (FORMAT JSON, TYPE IO) WITH x AS (SELECT 1) SELECT * FROM x;",
            "EXPLAIN (SELECT 1)",
            "/* dashboard */ SELECT 1",
            "-- daily\nSELECT ';' AS \"a;b\" FROM events -- done",
            "SELECT 'EXPLAIN ANALYZE DELETE FROM events' AS q",
        ] {
            assert!(read_only(ok).is_ok(), "{ok}: {:?}", read_only(ok));
        }
        for bad in [
            "EXPLAIN ANALYZE INSERT INTO events SELECT * FROM events",
            "EXPLAIN ANALYZE SELECT 1",
            "explain   analyze delete from events",
            "Explain\n\tAnalyze VERBOSE DELETE FROM events",
            "/* */ EXPLAIN ANALYZE DELETE FROM events",
            "EXPLAIN /* x */ ANALYZE DELETE FROM events",
            "EXPLAIN -- x\nANALYZE DELETE FROM events",
            "EXPLAIN/**/ANALYZE DELETE FROM events",
            "EXPLAIN (TYPE DISTRIBUTED) ANALYZE DELETE FROM events",
            "EXPLAIN (TYPE DISTRIBUTED) EXPLAIN ANALYZE DELETE FROM events",
            "EXPLAIN EXPLAIN ANALYZE DELETE FROM events",
            "EXPLAIN INSERT INTO events SELECT 1",
            "EXPLAIN (TYPE IO",
            "ANALYZE events",
            "/* unterminated SELECT 1",
            "SELECT 1 /* ; */; DROP TABLE x",
            "SELECT ''; DROP TABLE x",
            "(SHOW TABLES)",
            "-- SELECT 1\nDROP TABLE events",
            "",
            ";",
        ] {
            assert!(read_only(bad).is_err(), "{bad}");
        }
        let e = read_only("explain analyze delete from events").unwrap_err();
        assert!(e.to_string().contains("read-only"), "{e}");
        assert!(
            e.to_string().contains("EXPLAIN ANALYZE runs the statement"),
            "{e}"
        );
    }

    #[test]
    fn timestamps_and_types() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.500"), Some(1_500_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(arrow_type("BIGINT"), DataType::Int64);
        assert_eq!(arrow_type("decimal"), DataType::Utf8);
    }
}
