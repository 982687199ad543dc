//! Arbitrary TOML text → Config::from_toml_str is Ok (and round-trips through to_toml) or an exit-code-2 error on one line.
//! The check is shared with tasks/core/tests/fuzz_regressions.rs (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_config(data));
