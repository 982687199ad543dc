//! Arbitrary bytes as a raw object (plain, gzip, encrypted with the fixed key) → an error naming the object, never a panic, never forged plaintext.
//! The check is shared with tasks/core/tests/fuzz_regressions.rs (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_raw_object(data));
