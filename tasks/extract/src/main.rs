use std::process::ExitCode;

use bitacora_extract::{ExtractParams, run};

fn main() -> ExitCode {
    bitacora_core::cli::day_step_main(
        "bitacora-extract",
        "Log source → raw zone (encrypted) for the UTC day D.",
        |config, date| run(config, &ExtractParams { date }),
    )
}
