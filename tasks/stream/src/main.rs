//! `bitacora-stream --config F`: the stream service in the foreground. SIGTERM/SIGINT: stop
//! taking input, deliver what is in flight, exit 0 with one JSON report on stdout.

use std::process::ExitCode;

use bitacora_stream::StreamConfig;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

/// HTTP (or Kinesis) ingest → normalise → dedup → routes to sinks, at least once.
#[derive(Debug, Parser)]
#[command(name = "bitacora-stream", version)]
struct Args {
    #[command(flatten)]
    common: bitacora_core::cli::CommonArgs,
}

const TOOL: &str = "bitacora-stream";

fn to_core(e: bitacora_stream::Error) -> bitacora_core::Error {
    match e {
        bitacora_stream::Error::Config { key, message } => {
            bitacora_core::Error::Config { key, message }
        }
        bitacora_stream::Error::Core(e) => e,
        e => bitacora_core::Error::external("stream", e),
    }
}

fn main() -> ExitCode {
    bitacora_core::process::init();
    let args: Args = match bitacora_core::cli::parse_args(TOOL) {
        Ok(a) => a,
        Err(code) => return code,
    };
    bitacora_core::cli::init_logging();
    let config = match args.common.load_config() {
        Ok(c) => c,
        Err(e) => return bitacora_core::cli::fail(TOOL, &e),
    };
    let stream: StreamConfig = match config.component() {
        Ok(s) => s,
        Err(e) => return bitacora_core::cli::fail(TOOL, &e),
    };
    let result = bitacora_stream::service::run_until_signal(&config, &stream);
    bitacora_core::cli::finish(TOOL, result.map_err(to_core))
}
