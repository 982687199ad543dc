use std::process::ExitCode;

use bitacora_catalog::{CatalogParams, run};

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> ExitCode {
    bitacora_core::process::init();
    bitacora_core::cli::day_step_main(
        "bitacora-catalog",
        "Registers/updates the tables and the partition dt=D in the catalog.",
        |config, date| run(config, &CatalogParams { date }),
    )
}
