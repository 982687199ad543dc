//! `bitacora`: the umbrella command (`generate`, `run`, `demo`, `stream`).

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
    /// Write synthetic mobile-app logs for a day (file-source format, deterministic for a seed),
    /// or, with --stream, send them live to the stream service (the load generator).
    Generate {
        /// The UTC day (YYYY-MM-DD).
        #[arg(long, value_parser = cli::parse_day, required_unless_present = "stream")]
        date: Option<Day>,
        /// Records timestamped inside the day.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Output folder (created when missing).
        #[arg(long, required_unless_present = "stream")]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Log streams (one file each).
        #[arg(long, default_value_t = 8)]
        streams: usize,
        /// Send records live instead: --rate R --duration S --to http://HOST:PORT or kinesis://STREAM.
        #[arg(long, requires_all = ["to"])]
        stream: bool,
        /// --stream: records per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// --stream: seconds to send for.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// --stream: the service (http://HOST:PORT) or a Kinesis stream (kinesis://STREAM).
        #[arg(long)]
        to: Option<String>,
        /// --stream: share of redelivered copies (0..0.9).
        #[arg(long, default_value_t = 0.02)]
        duplicates: f64,
        /// --stream: records per request (default: a tenth of a second's worth, at most 1000).
        #[arg(long)]
        batch: Option<usize>,
        /// --stream: requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// --stream: file holding the service's bearer token (its first line).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// --stream: build every request before sending (benchmarks: the service is measured,
        /// not the generator; ~400 bytes of memory per record).
        #[arg(long)]
        pregenerate: bool,
    },
    /// Run the stream service in the foreground (as bitacora-stream does).
    Stream,
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
            stream,
            rate,
            duration,
            to,
            duplicates,
            batch,
            concurrency,
            token_file,
            pregenerate,
        } => {
            if stream {
                let token = match token_file.map(std::fs::read_to_string).transpose() {
                    Ok(t) => t.map(|t| t.lines().next().unwrap_or_default().trim().to_string()),
                    Err(e) => {
                        return cli::fail(
                            TOOL,
                            &bitacora_core::Error::Usage(format!("--token-file: {e}")),
                        );
                    }
                };
                if !(duration.is_finite() && duration > 0.0) {
                    return cli::fail(
                        TOOL,
                        &bitacora_core::Error::Usage(
                            "--duration must be a positive number of seconds".into(),
                        ),
                    );
                }
                let params = bitacora_stream::loadgen::LoadParams {
                    to: to.unwrap_or_default(),
                    rate,
                    duration: std::time::Duration::from_secs_f64(duration),
                    duplicates,
                    seed,
                    batch,
                    concurrency,
                    token,
                    pregenerate,
                };
                let result = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| bitacora_core::Error::external("tokio runtime", e))
                    .and_then(|rt| {
                        rt.block_on(bitacora_stream::loadgen::run(&params))
                            .map_err(stream_error)
                    });
                return cli::finish(TOOL, result);
            }
            let (Some(date), Some(out)) = (date, out) else {
                return cli::fail(
                    TOOL,
                    &bitacora_core::Error::Usage("--date and --out are required".into()),
                );
            };
            let mut params = GenerateParams::new(date, events, out, seed);
            params.streams = streams;
            cli::finish(TOOL, generate(&params))
        }
        Command::Stream => {
            let result = args.common.load_config().and_then(|config| {
                let stream: bitacora_stream::StreamConfig = config.component()?;
                bitacora_stream::service::run_until_signal(&config, &stream).map_err(stream_error)
            });
            cli::finish(TOOL, result)
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

/// A stream-service error in the command-line contract's terms.
fn stream_error(e: bitacora_stream::Error) -> bitacora_core::Error {
    match e {
        bitacora_stream::Error::Config { key, message } => {
            bitacora_core::Error::Config { key, message }
        }
        bitacora_stream::Error::Core(e) => e,
        e => bitacora_core::Error::external("stream", e),
    }
}
