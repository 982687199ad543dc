//! Writes the reference encrypted objects (reference/, made with the fixed key of checks.rs) and
//! the binary seed files of corpus-regressions/raw_object, raw_tamper and config. Run by
//! `run.sh seeds`; the files it writes are committed (encryption is randomised: a new run
//! writes other, equally valid, bytes).

#[path = "checks.rs"]
mod checks;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bitacora_core::crypto::{EncryptingWriter, KeyProvider};
use bitacora_core::raw::RawCodec;

/// Lines of `bitacora generate` (seed 7, 2026-11-02), plain text and a wrongly typed field.
const LINES: &[&str] = &[
    r#"{"timestamp":1793577636987,"ingestionTime":1793577637967,"message":"{\"event_id\":\"680fb31e-ec31-4a6d-a5c3-966729953e88\",\"ts\":\"2026-11-02T00:00:36.073Z\",\"level\":\"INFO\",\"event_type\":\"screen_view\",\"user_id\":\"u-0000011\",\"platform\":\"ios\",\"latency_ms\":null,\"status_code\":null,\"error_code\":null,\"props\":{\"screen\":\"home\"}}","logStreamName":"ios/prod/pod-00","eventId":"1"}"#,
    r#"{"timestamp":1793597630834,"ingestionTime":1793597631325,"message":"Fatal Exception: java.lang.IllegalStateException\n\tat com.shop.app.ui.ProductFragment.onResume(ProductFragment.kt:371)","logStreamName":"ios/prod/pod-00","eventId":"2"}"#,
    r#"{"timestamp":1793577600123,"ingestionTime":1793577600200,"message":"{\"event_id\":\"e1\",\"ts\":\"2026-11-02T00:00:00Z\",\"event_type\":\"tap\",\"latency_ms\":\"12ms\"}","logStreamName":"s","eventId":"3"}"#,
];

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let key: Arc<dyn KeyProvider> = checks::fixed_key();
    let write = |rel: &str, bytes: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        println!("wrote {} ({} bytes)", p.display(), bytes.len());
    };

    // One chunk, as the extract writes raw objects.
    let codec = RawCodec::with_keys(Some(key.clone()));
    let mut w = codec.writer(checks::OBJECT).unwrap();
    for l in LINES {
        w.write_line(l.as_bytes()).unwrap();
    }
    let one_chunk = w.finish().unwrap();
    write("reference/one-chunk.jsonl.zst.enc", &one_chunk);

    // The same zstd stream in 64-byte chunks: reordered, dropped and repeated chunks.
    let mut plain = Vec::new();
    for l in LINES {
        plain.extend_from_slice(l.as_bytes());
        plain.push(b'\n');
    }
    let compressed = zstd::bulk::compress(&plain, 3).unwrap();
    let mut w = EncryptingWriter::with_chunk(
        Vec::new(),
        key.as_ref(),
        checks::OBJECT,
        checks::SMALL_CHUNK,
    )
    .unwrap();
    w.write_all(&compressed).unwrap();
    let chunked = w.finish().unwrap();
    write("reference/chunked.jsonl.zst.enc", &chunked);

    // raw_object: both references, a plain zstd and a gzip object, an empty encrypted one.
    let c = "corpus-regressions/raw_object";
    write(&format!("{c}/seed-one-chunk.enc"), &one_chunk);
    write(&format!("{c}/seed-chunked.enc"), &chunked);
    let mut w = RawCodec::with_keys(None).writer(checks::OBJECT).unwrap();
    for l in LINES {
        w.write_line(l.as_bytes()).unwrap();
    }
    write(&format!("{c}/seed-plain.zst"), &w.finish().unwrap());
    let mut w = RawCodec::gzip().writer(checks::OBJECT).unwrap();
    for l in LINES {
        w.write_line(l.as_bytes()).unwrap();
    }
    write(&format!("{c}/seed-plain.gz"), &w.finish().unwrap());
    let empty = codec.writer(checks::OBJECT).unwrap().finish().unwrap();
    write("reference/empty.jsonl.zst.enc", &empty);
    write(&format!("{c}/bug-empty-object-does-not-decode.enc"), &empty);

    // raw_tamper: each reference unchanged, and a few classic tamperings.
    let t = "corpus-regressions/raw_tamper";
    write(&format!("{t}/seed-unchanged-0"), &[0]);
    write(&format!("{t}/seed-unchanged-1"), &[1]);
    let at = |op: u8, pos: u16, v: u8| {
        let p = pos.to_le_bytes();
        [op, p[0], p[1], v]
    };
    let script = |which: u8, ops: &[[u8; 4]]| {
        let mut s = vec![which];
        for op in ops {
            s.extend_from_slice(op);
        }
        s
    };
    let last = (one_chunk.len() - 1) as u16;
    write(
        &format!("{t}/seed-flip-tag"),
        &script(0, &[at(0, last, 0x10)]),
    );
    write(
        &format!("{t}/seed-flip-header"),
        &script(0, &[at(0, 20, 0x01)]),
    );
    write(
        &format!("{t}/seed-truncate-last-chunk"),
        &script(1, &[at(4, (chunked.len() - 30) as u16, 0)]),
    );
    write(
        &format!("{t}/seed-append-byte"),
        &script(1, &[at(3, chunked.len() as u16, b'x')]),
    );
    write(
        &format!("{t}/seed-move-chunk"),
        &script(1, &[at(6, (chunked.len() - 200) as u16, 83)]),
    );

    // config: the defaults as written by to_toml.
    let defaults = bitacora_core::Config::from_toml_str("").unwrap().to_toml();
    write(
        "corpus-regressions/config/seed-defaults.toml",
        defaults.as_bytes(),
    );
}
