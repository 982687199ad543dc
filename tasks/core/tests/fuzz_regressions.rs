//! Replays the fuzz regression corpus (`tasks/fuzz/corpus-regressions/<target>/`) through the
//! same checks as the `cargo fuzz` targets (`tasks/fuzz/checks.rs`), on stable Rust: every seed,
//! interesting input and minimised crash found so far stays a test. A failing file is listed by
//! name with its panic message; files named `bug-*` are inputs of bugs reported but not fixed yet
//! (they fail until the bug is fixed). Fuzzing itself: `tasks/fuzz/run.sh`.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../fuzz/corpus-regressions/{target}"))
}

fn replay(target: &str) {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: {} files", dir.display(), files.len());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| checks::check(target, &data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            failed.push(format!("{target}/{name}: {message}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of corpus-regressions/{target} fail (replay one with `cargo fuzz run {target} PATH` in tasks/fuzz):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn normalize() {
    // The fast-path/serde_json differential runs once normalize.rs has `Normalizer::serde_only`.
    eprintln!(
        "serde_json-only differential: {}",
        if checks::serde_only_available() {
            "on"
        } else {
            "off (no Normalizer::serde_only)"
        }
    );
    replay("normalize");
}

#[test]
fn raw_object() {
    replay("raw_object");
}

#[test]
fn raw_tamper() {
    replay("raw_tamper");
}

#[test]
fn config() {
    replay("config");
}

/// The reference objects of the encrypted-object targets are there and decode with the fixed
/// key (the empty one, which `RawCodec` cannot decode yet, is `raw_object/bug-empty-object-*`).
#[test]
fn reference_objects_decode() {
    for (i, r) in checks::REFERENCES.iter().enumerate() {
        assert!(
            !r.is_empty(),
            "reference {i} is empty: run tasks/fuzz/run.sh seeds"
        );
    }
    for r in &checks::REFERENCES[..2] {
        checks::check_raw_object(r);
    }
}
