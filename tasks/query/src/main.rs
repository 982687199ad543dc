use std::path::PathBuf;
use std::process::ExitCode;

use bitacora_core::cli::{self, CommonArgs};
use bitacora_core::{Day, Error, Result};
use bitacora_query::{Format, NAMED, render};
use clap::Parser;

const TOOL: &str = "bitacora-query";

/// Read-only SQL over the Bitácora tables (events, quarantine; partitioned by dt).
///
/// Examples:
///   bitacora-query "SELECT event_type, count(*) FROM events WHERE dt = '2026-11-01' GROUP BY 1"
///   bitacora-query --named daily_active_users --format csv
///   bitacora-query --list
///   bitacora-query --show p95_latency_by_platform --date 2026-11-01
#[derive(Parser)]
#[command(name = TOOL, version, about, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Read the SQL from a file.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["sql", "named", "show"])]
    file: Option<PathBuf>,
    /// Run a named stakeholder query (see --list).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["sql", "show"])]
    named: Option<String>,
    /// Print the SQL of a named query for the configured engine (query.engine), without running it.
    #[arg(long, value_name = "NAME", conflicts_with = "sql")]
    show: Option<String>,
    /// The day for a named query (default: every day; week_over_week: the latest day).
    #[arg(long, value_parser = cli::parse_day)]
    date: Option<Day>,
    /// List the named queries.
    #[arg(long)]
    list: bool,
    /// The SQL statement.
    sql: Option<String>,
}

fn run(args: &Args) -> Result<String> {
    if args.list {
        let rows: Vec<_> = NAMED
            .iter()
            .map(|q| serde_json::json!({"name": q.name, "description": q.description, "audience": q.audience}))
            .collect();
        return Ok(match args.format {
            Format::Json => format!("{}\n", serde_json::Value::Array(rows)),
            _ => NAMED
                .iter()
                .map(|q| format!("{:<24} {}  [{}]\n", q.name, q.description, q.audience))
                .collect(),
        });
    }
    if args.date.is_some() && args.named.is_none() && args.show.is_none() {
        return Err(Error::Usage(
            "--date goes with --named NAME or --show NAME".into(),
        ));
    }
    let config = args.common.load_config()?;
    if let Some(name) = &args.show {
        let sql = bitacora_query::named_sql(&config, name, args.date)?;
        return Ok(match args.format {
            Format::Json => format!(
                "{}\n",
                serde_json::json!({"name": name, "engine": config.query.engine, "sql": sql})
            ),
            _ => format!("{sql}\n"),
        });
    }
    let output = if let Some(name) = &args.named {
        bitacora_query::named(&config, name, args.date)?
    } else {
        let sql = match (&args.sql, &args.file) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => {
                std::fs::read_to_string(f).map_err(|e| Error::io("read SQL file", f, e))?
            }
            (None, None) => {
                return Err(Error::Usage(
                    "give a SQL statement, --file PATH, --named NAME, --show NAME or --list".into(),
                ));
            }
        };
        bitacora_query::query(&config, &sql)?
    };
    render(&output, args.format)
}

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> ExitCode {
    bitacora_core::process::init();
    cli::init_logging();
    let args = match cli::parse_args::<Args>(TOOL) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => cli::fail(TOOL, &e),
    }
}
