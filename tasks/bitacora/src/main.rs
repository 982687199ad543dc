//! `bitacora`: the umbrella command (`generate`, `run`, `demo`).

mod demo;
use bitacora::pipeline;

use std::path::PathBuf;
use std::process::ExitCode;

use bitacora_core::Day;
use bitacora_core::cli::{self, CommonArgs};
use bitacora_generate::{GenerateParams, generate};
use clap::{Parser, Subcommand};

const TOOL: &str = "bitacora";

/// Bitácora: the log platform of a mobile-app company.
#[derive(Parser)]
#[command(name = TOOL, version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write synthetic mobile-app logs for a day (file-source format, deterministic for a seed).
    Generate {
        /// The UTC day (YYYY-MM-DD).
        #[arg(long, value_parser = cli::parse_day)]
        date: Day,
        /// Records timestamped inside the day.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Output folder (created when missing).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Log streams (one file each).
        #[arg(long, default_value_t = 8)]
        streams: usize,
    },
    /// Run every batch step (extract, transform, catalog) for each day of [FROM, TO].
    Run {
        #[arg(long, value_parser = cli::parse_day)]
        from: Day,
        #[arg(long, value_parser = cli::parse_day)]
        to: Day,
    },
    /// Generate two weeks of logs and run the whole batch pipeline on the embedded defaults.
    Demo(demo::DemoArgs),
}

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> ExitCode {
    bitacora_core::process::init();
    let args = match cli::parse_args::<Args>(TOOL) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // The demo tells its own story; the steps' logs are there with BITACORA_LOG=info.
    cli::init_logging_at(if matches!(args.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    match args.command {
        Command::Generate {
            date,
            events,
            out,
            seed,
            streams,
        } => {
            let mut params = GenerateParams::new(date, events, out, seed);
            params.streams = streams;
            cli::finish(TOOL, generate(&params))
        }
        Command::Run { from, to } => {
            let result = args
                .common
                .load_config()
                .and_then(|config| pipeline::run_days(&config, from, to));
            cli::finish(TOOL, result)
        }
        Command::Demo(demo) => match demo::run(&demo) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => cli::fail(TOOL, &e),
        },
    }
}
