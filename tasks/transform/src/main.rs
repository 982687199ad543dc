use std::process::ExitCode;

use bitacora_transform::{TransformParams, run};

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> ExitCode {
    bitacora_core::process::init();
    bitacora_core::cli::day_step_main(
        "bitacora-transform",
        "Raw zone → curated Parquet partition dt=D (+ quarantine) for the UTC day D.",
        |config, date| run(config, &TransformParams { date }),
    )
}
