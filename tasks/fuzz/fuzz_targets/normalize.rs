//! Any line → the normaliser (and the strict JSON scanner) never panics, rejects on one line, agrees with serde_json.
//! The check is shared with tasks/core/tests/fuzz_regressions.rs (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_normalize(data));
