use std::process::ExitCode;

use bitacora_core::Day;
use bitacora_core::cli::{self, CommonArgs};
use bitacora_extract::{ExtractParams, run};
use clap::Parser;

const TOOL: &str = "bitacora-extract";

/// Log source → raw zone (encrypted) for the UTC day D.
#[derive(Parser)]
#[command(name = TOOL, version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The UTC day to extract (YYYY-MM-DD).
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
        .and_then(|config| run(&config, &ExtractParams { date: args.date }));
    cli::finish(TOOL, result)
}
