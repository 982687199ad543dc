use std::process::ExitCode;

use bitacora_extract::{ExtractParams, run};

#[derive(Debug, Clone, clap::Args)]
struct Extra {
    /// Extract the day even if the source says it is not settled yet (CloudWatch: events ingested
    /// late are missed; re-run the day later to pick them up).
    #[arg(long)]
    force: bool,
}

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> ExitCode {
    bitacora_core::process::init();
    bitacora_core::cli::day_step_main_with(
        "bitacora-extract",
        "Log source → raw zone (encrypted) for the UTC day D.",
        |config, date, extra: Extra| {
            run(
                config,
                &ExtractParams {
                    date,
                    force: extra.force,
                },
            )
        },
    )
}
