//! Mutations of a valid encrypted object (fixed key) → decryption fails, no plaintext of the tampered object comes out.
//! The check is shared with tasks/core/tests/fuzz_regressions.rs (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_raw_tamper(data));
