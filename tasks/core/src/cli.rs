//! The command-line contract shared by every binary: `--config`, human output on stderr, exactly
//! one JSON object on stdout, exit codes 0 (success), 1 (failure), 2 (bad usage or configuration).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result, one_line};

/// Options every step binary accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (default: $BITACORA_CONFIG, else ./bitacora.toml, else embedded defaults).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

impl CommonArgs {
    pub fn load_config(&self) -> Result<Config> {
        Config::load(self.config.as_deref())
    }
}

/// Parses the command line; on bad usage prints the reason and a JSON error, and exits with 2.
pub fn parse_args<A: Parser>(tool: &str) -> std::result::Result<A, ExitCode> {
    A::try_parse().map_err(|e| usage_error(tool, e))
}

/// `--help` and `--version` exit 0; any other clap error is bad usage (exit 2, JSON error).
fn usage_error(tool: &str, e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
    if matches!(e.kind(), DisplayHelp | DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let reason = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("error: bad usage")
        .trim_start_matches("error:")
        .trim()
        .to_string();
    let _ = e.print();
    fail(tool, &Error::Usage(reason))
}

/// The arguments of a step binary: `--config PATH --date D`.
#[derive(Debug, Clone, clap::Args)]
pub struct DayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The UTC day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    pub date: crate::Day,
}

/// The whole `main` of a step binary: parse `--config` and `--date`, run the step, print its
/// report (or the error) and return the exit code of the contract.
pub fn day_step_main<R: Serialize>(
    tool: &'static str,
    about: &'static str,
    run: impl FnOnce(&Config, crate::Day) -> Result<R>,
) -> ExitCode {
    day_step_main_with::<NoArgs, R>(tool, about, |config, date, _| run(config, date))
}

/// No arguments beyond `--config` and `--date`.
#[derive(Debug, Clone, clap::Args)]
pub struct NoArgs {}

/// [`day_step_main`] for a step with arguments of its own (`X`, for example `--force`).
pub fn day_step_main_with<X: clap::Args + clap::FromArgMatches, R: Serialize>(
    tool: &'static str,
    about: &'static str,
    run: impl FnOnce(&Config, crate::Day, X) -> Result<R>,
) -> ExitCode {
    use clap::{Args, FromArgMatches};
    init_logging();
    // The about text is set after the arguments: their doc comments would otherwise replace it.
    let command = X::augment_args(DayArgs::augment_args(clap::Command::new(tool)))
        .about(about)
        .version(env!("CARGO_PKG_VERSION"));
    let parsed = command
        .try_get_matches()
        .and_then(|m| Ok((DayArgs::from_arg_matches(&m)?, X::from_arg_matches(&m)?)));
    let (args, extra) = match parsed {
        Ok(a) => a,
        Err(e) => return usage_error(tool, e),
    };
    let result = args
        .common
        .load_config()
        .and_then(|config| run(&config, args.date, extra));
    finish(tool, result)
}

/// Sets up logging on stderr (`BITACORA_LOG` sets the filter, default `info`).
pub fn init_logging() {
    init_logging_at("info");
}

/// Sets up logging on stderr with a default filter for when `BITACORA_LOG` is not set.
pub fn init_logging_at(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("BITACORA_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Sets up logging on stderr without colours, one line an event (AWS Lambda: stderr goes to
/// CloudWatch Logs as it is).
pub fn init_logging_plain() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BITACORA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Prints the report of a finished step and returns the exit code of the contract.
pub fn finish<T: Serialize>(tool: &str, result: Result<T>) -> ExitCode {
    match result {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(tool, &Error::external("encode report", e)),
        },
        Err(e) => fail(tool, &e),
    }
}

/// Reports an error: one line on stderr, one JSON object on stdout; returns exit code 1 or 2.
pub fn fail(tool: &str, e: &Error) -> ExitCode {
    let message = one_line(&e.to_string());
    eprintln!("{tool}: error: {message}");
    let json = serde_json::json!({
        "tool": tool,
        "status": "error",
        "error_kind": e.kind(),
        "error": message,
    });
    println!("{json}");
    ExitCode::from(e.exit_code())
}

/// clap value parser for `--date`, `--from`, `--to`.
pub fn parse_day(s: &str) -> std::result::Result<crate::Day, String> {
    s.parse().map_err(|e: Error| e.to_string())
}
