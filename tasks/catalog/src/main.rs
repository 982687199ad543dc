use std::process::ExitCode;

use bitacora_catalog::{CatalogParams, run};
use bitacora_core::Day;
use bitacora_core::cli::{self, CommonArgs};
use clap::Parser;

const TOOL: &str = "bitacora-catalog";

/// Registers/updates the tables and the partition dt=D in the catalog.
#[derive(Parser)]
#[command(name = TOOL, version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The UTC day to register (YYYY-MM-DD).
    #[arg(long, value_parser = cli::parse_day)]
    date: Day,
}

fn main() -> ExitCode {
    cli::init_logging();
    let args = match cli::parse_args::<Args>(TOOL) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let result = args
        .common
        .load_config()
        .and_then(|config| run(&config, &CatalogParams { date: args.date }));
    cli::finish(TOOL, result)
}
