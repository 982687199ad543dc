//! The properties checked by the fuzz targets of issue #10, shared by `fuzz_targets/*.rs` (under
//! `cargo fuzz`) and by `tasks/core/tests/fuzz_regressions.rs`, which replays every file of
//! `corpus-regressions/<target>/` under plain `cargo test`. Each `check_*` takes one input as
//! bytes and panics when a property is broken. Only bitacora-core's public API is used, plus its
//! doc-hidden `fuzzing` module (the private JSON scanner).
//!
//! Included with `#[path]` (it is no crate), so it names nothing of the fuzz crate.

#![allow(dead_code)]

use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use bitacora_core::Config;
use bitacora_core::crypto::{DecryptingReader, KeyProvider, LocalKey};
use bitacora_core::raw::RawCodec;
use bitacora_model::fuzzing;
use bitacora_model::model::{
    Envelope, EnvelopeHead, Marker, OversizeLine, Reason, Rejected, RejectedLine,
};
use bitacora_model::normalize::{Normalized, Normalizer};
use bitacora_model::one_line;
use serde::de::IgnoredAny;

/// The targets, named as their folders in `corpus-regressions/`.
pub const TARGETS: &[&str] = &["normalize", "raw_object", "raw_tamper", "config"];

/// Runs the check of `target` on one input.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "normalize" => check_normalize(data),
        "raw_object" => check_raw_object(data),
        "raw_tamper" => check_raw_tamper(data),
        "config" => check_config(data),
        _ => panic!("unknown fuzz target {target}"),
    }
}

/// Panics unless `s` is one non-empty line.
fn one_line_text(what: &str, s: &str, input: &dyn fmt::Debug) {
    assert!(!s.trim().is_empty(), "{what} is empty, for {input:?}");
    assert!(
        !s.contains(['\n', '\r']),
        "{what} spans several lines: {s:?}, for {input:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// (1) The envelope scanner and the normaliser.

/// The `max_record_bytes` of the normalisers checked: the default, and a small one so that the
/// oversize paths are reached by short inputs.
const MAX_RECORD_BYTES: [usize; 2] = [262_144, 200];
const LOG_GROUP: &str = "/mobile/app";

fn normalizers() -> &'static [Normalizer; 2] {
    static N: OnceLock<[Normalizer; 2]> = OnceLock::new();
    N.get_or_init(|| MAX_RECORD_BYTES.map(|max| Normalizer::new(LOG_GROUP, max)))
}

/// An input line (UTF-8 only: the transform quarantines other bytes before normalising) is
/// checked as an envelope line, and again as the message of a well-formed envelope, so that the
/// fuzzer reaches the message reader without having to escape its text.
pub fn check_normalize(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_line(text);
    let wrapped = serde_json::json!({
        "timestamp": 1_793_577_600_123i64,
        "ingestionTime": 1_793_577_600_200i64,
        "message": text,
        "logStreamName": "ios/prod/pod-00",
        "eventId": "1",
    })
    .to_string();
    check_line(&wrapped);
}

/// The properties of one envelope line, for every normaliser of [`normalizers`].
pub fn check_line(line: &str) {
    for (n, max) in normalizers().iter().zip(MAX_RECORD_BYTES) {
        let mut scratch = String::new();
        let got = n.normalize_line(line, &mut scratch);
        check_outcome(n, max, line, &got);

        // Differential: the serde_json-only normaliser is the reference of the fast path.
        if let Some(reference) = serde_only(n) {
            let mut scratch2 = String::new();
            let want = reference.normalize_line(line, &mut scratch2);
            assert_eq!(
                got, want,
                "fast path and serde_json path disagree on {line:?}"
            );
        }

        // Differential through the public API: what the line path makes of a line must be what
        // the streaming path (`serde_json` envelope, then `normalize_envelope`) makes of it, and a
        // line that serde_json refuses is a broken envelope with serde_json's words.
        if is_marker(line) {
            continue;
        }
        match serde_json::from_str::<Envelope<'_>>(line) {
            Ok(envelope) => {
                let want = n.normalize_envelope(&envelope, line);
                assert_eq!(
                    got, want,
                    "normalize_line and normalize_envelope disagree on {line:?}"
                );
            }
            Err(e) => {
                let r = got.as_ref().expect_err(
                    "serde_json refuses the envelope but normalize_line made an event of it",
                );
                if line.len() > max {
                    assert_eq!(r.reason, Reason::Oversize, "{line:?}: {r:?}");
                    assert_eq!(
                        (r.log_stream.as_ref(), r.source_event_id.as_ref()),
                        (None, None),
                        "{line:?}"
                    );
                } else {
                    assert_eq!(r.reason, Reason::BrokenEnvelope, "{line:?}: {r:?}");
                    assert_eq!(r.detail, one_line(&e.to_string()), "{line:?}");
                }
            }
        }
    }
    check_scanner(line);
}

fn check_outcome(n: &Normalizer, max: usize, line: &str, got: &Normalized<'_>) {
    match got {
        Ok(e) => {
            assert_eq!(e.log_group, n.log_group(), "{line:?}");
            if let Some(p) = &e.properties {
                assert!(
                    serde_json::from_str::<IgnoredAny>(p).is_ok() || deeper_than_serde(p),
                    "properties are not JSON: {p:?}, for {line:?}"
                );
                assert!(p.starts_with('{'), "properties are no object: {p:?}");
            }
        }
        Err(r) => check_rejected(max, line, r),
    }
}

/// A line the extract writes instead of a source line ([`OversizeLine`], [`RejectedLine`]).
fn is_marker(line: &str) -> bool {
    OversizeLine::parse(line).is_some() || RejectedLine::parse(line).is_some()
}

fn check_rejected(max: usize, line: &str, r: &Rejected<'_>) {
    one_line_text("quarantine detail", &r.detail, &line);
    if let Some(rejected) = RejectedLine::parse(line) {
        // Its raw record is the source line it holds, bounded.
        assert_eq!(r.reason, Reason::BrokenEnvelope, "{line:?}");
        assert!(
            r.raw.len() <= max,
            "rejected-line raw of {} bytes",
            r.raw.len()
        );
        assert!(
            rejected.raw.starts_with(r.raw.as_ref()),
            "raw is not the rejected line's head"
        );
    } else if r.reason == Reason::Oversize {
        // Bounded (the head of an extract's oversize line, or the line itself, cut).
        assert!(r.raw.len() <= max, "oversize raw of {} bytes", r.raw.len());
        if OversizeLine::parse(line).is_none() {
            assert!(
                line.starts_with(r.raw.as_ref()),
                "raw is not the line's head"
            );
        }
    } else {
        assert_eq!(r.raw, line, "the raw record of a rejection is not the line");
    }
    if r.reason == Reason::BrokenEnvelope {
        assert_eq!(
            (&r.log_stream, &r.source_event_id, r.source_timestamp),
            (&None, &None, None),
            "{line:?}"
        );
    }
}

/// Whether `text` nests deeper than serde_json's recursion limit (its values are still kept).
fn deeper_than_serde(text: &str) -> bool {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max > 100
}

/// The strict scanner is never more lenient than serde_json, and reads what it reads.
fn check_scanner(line: &str) {
    let envelope = serde_json::from_str::<Envelope<'_>>(line);
    if let Some((timestamp, ingestion_time, message, stream, id)) = fuzzing::json_envelope(line) {
        let e = envelope.as_ref().unwrap_or_else(|e| {
            panic!("scanner read an envelope serde_json refuses ({e}): {line:?}")
        });
        assert_eq!(
            (timestamp, ingestion_time, message.as_str(), stream, id),
            (
                e.timestamp,
                e.ingestion_time,
                e.message.as_ref(),
                e.log_stream_name.as_ref(),
                e.event_id.as_ref()
            ),
            "scanner and serde_json read different envelopes from {line:?}"
        );
    }
    // The head of a line read by the extract: for every cut, what it reads is the envelope's.
    if let Ok(e) = &envelope {
        // Every cut of a short line; 96 cuts of a longer one, around and between its members.
        let mut cuts: Vec<usize> = if line.len() <= 96 {
            (0..=line.len()).collect()
        } else {
            let members = line.match_indices([',', ':', '}']).map(|(i, _)| i);
            (0..=32)
                .map(|i| line.len() * i / 32)
                .chain(members.flat_map(|i| [i, i + 1]))
                .take(96)
                .collect()
        };
        cuts.retain(|&c| c <= line.len());
        cuts.retain(|&c| line.is_char_boundary(c));
        for cut in cuts {
            let head = EnvelopeHead::read(&line[..cut]);
            let ok = head.timestamp.is_none_or(|t| t == e.timestamp)
                && head.log_stream_name.is_none_or(|s| s == e.log_stream_name)
                && head.event_id.is_none_or(|s| s == e.event_id);
            assert!(ok, "head {head:?} of {cut} bytes disagrees with {e:?}");
        }
    }
    for text in [
        Some(line),
        envelope.as_ref().ok().map(|e| e.message.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        check_json_text(text);
    }
}

/// `is_value` and `object_members` of the scanner against serde_json.
fn check_json_text(text: &str) {
    if fuzzing::json_is_value(text) {
        assert!(
            serde_json::from_str::<IgnoredAny>(text).is_ok(),
            "scanner takes {text:?} for a JSON value, serde_json does not"
        );
    }
    let trimmed = text.trim_start();
    if let Some(members) = fuzzing::json_object_members(trimmed) {
        let want = fuzzing::json_object_members_serde(trimmed).unwrap_or_else(|e| {
            panic!("scanner read members of {trimmed:?}, serde_json refuses it: {e}")
        });
        let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        assert_eq!(
            members, want,
            "scanner and serde_json read different members"
        );
    }
}

/// The normaliser without its fast scanner, when bitacora-core has a doc-hidden
/// `Normalizer::serde_only(self) -> Normalizer`. Method resolution prefers an inherent method to
/// this trait's method of the same name, so the differential check turns itself on as soon as
/// that method exists, without a change here; until then it is `None` (the `serde_only` flag of
/// normalize.rs is private to its module).
fn serde_only(n: &Normalizer) -> Option<Normalizer> {
    n.clone().serde_only().into_reference()
}

trait SerdeOnlyMissing {
    fn serde_only(self) -> NoReference;
}

impl SerdeOnlyMissing for Normalizer {
    fn serde_only(self) -> NoReference {
        NoReference
    }
}

struct NoReference;

trait IntoReference {
    fn into_reference(self) -> Option<Normalizer>;
}

impl IntoReference for Normalizer {
    fn into_reference(self) -> Option<Normalizer> {
        Some(self)
    }
}

impl IntoReference for NoReference {
    fn into_reference(self) -> Option<Normalizer> {
        None
    }
}

/// Whether the serde_json-only differential check runs (false until normalize.rs exposes it).
pub fn serde_only_available() -> bool {
    serde_only(&normalizers()[0]).is_some()
}

// ---------------------------------------------------------------------------------------------
// (2) The encrypted-object reader.

/// The fixed master key of the reference objects (a test key, never used for data).
pub const KEY_HEX: &str = "62697461636f72612d66757a7a2d6b65793a6e6f742d612d7365637265742121";
/// The lake path the reference objects were encrypted for (part of their authenticated header).
pub const OBJECT: &str = "raw/dt=2026-11-02/run=fuzz/part-00000.jsonl.zst.enc";
/// Valid encrypted objects made with [`KEY_HEX`] for [`OBJECT`] by `make_seeds` (run.sh seeds):
/// one of `RawCodec`'s writer (one chunk), one of 64-byte chunks (several chunks), and an empty
/// one. They are the only authentic objects: any other input that decrypts is a forgery.
pub const REFERENCES: [&[u8]; 3] = [
    include_bytes!("reference/one-chunk.jsonl.zst.enc"),
    include_bytes!("reference/chunked.jsonl.zst.enc"),
    include_bytes!("reference/empty.jsonl.zst.enc"),
];
/// The chunk size of `REFERENCES[1]`.
pub const SMALL_CHUNK: usize = 64;
/// Decoded bytes read at most from one input (a zstd or gzip bomb stops there).
const READ_LIMIT: u64 = 4 << 20;

/// The fixed key, loaded like a key file (written to a private temporary file, then removed).
pub fn fixed_key() -> Arc<LocalKey> {
    static KEY: OnceLock<Arc<LocalKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!(
            "bitacora-fuzz-{}-{:?}.key",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).expect("create the fuzz key file");
        writeln!(f, "{KEY_HEX}").expect("write the fuzz key file");
        drop(f);
        let key = LocalKey::load(&path).expect("load the fuzz key file");
        let _ = std::fs::remove_file(&path);
        Arc::new(key)
    })
    .clone()
}

fn keyed_codec() -> RawCodec {
    let key: Arc<dyn KeyProvider> = fixed_key();
    RawCodec::with_keys(Some(key))
}

/// What each reference decrypts to (the zstd stream) and decodes to (the NDJSON lines, or why
/// `RawCodec` cannot decode what its writer wrote).
struct Authentic {
    compressed: Vec<u8>,
    plain: Result<Vec<u8>, String>,
}

impl Authentic {
    /// The plaintext bytes known to be authentic.
    fn plain(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or_default()
    }
}

fn authentic() -> &'static [Authentic; 3] {
    static A: OnceLock<[Authentic; 3]> = OnceLock::new();
    A.get_or_init(|| {
        REFERENCES.map(|bytes| {
            let key = fixed_key();
            let mut compressed = Vec::new();
            DecryptingReader::new(bytes, key.as_ref(), OBJECT)
                .expect("a reference object's header (run.sh seeds rewrites them)")
                .read_to_end(&mut compressed)
                .expect("a reference object decrypts");
            let mut plain = Vec::new();
            let plain = keyed_codec()
                .decoder(bytes, OBJECT)
                .map_err(|e| e.to_string())
                .and_then(|mut r| r.read_to_end(&mut plain).map_err(|e| e.to_string()))
                .map(|_| plain);
            Authentic { compressed, plain }
        })
    })
}

/// How a reader ended: everything it returned, and its error.
fn drain(r: &mut dyn Read) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() as u64 >= READ_LIMIT {
                    return (out, None);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

/// A read error, wrapped as the transform wraps it, names the object once and is one line.
fn check_read_error(e: &io::Error, input: &dyn fmt::Debug) {
    let wrapped = bitacora_core::Error::Crypto {
        object: OBJECT.to_string(),
        message: e.to_string(),
    }
    .to_string();
    one_line_text("read error", &wrapped, input);
    assert_eq!(wrapped.matches(OBJECT).count(), 1, "{wrapped}");
    assert!(!e.to_string().trim().is_empty(), "empty read error");
}

/// A reader that failed stays failed: a second read neither panics nor returns bytes.
fn check_fused(r: &mut dyn Read, input: &dyn fmt::Debug) {
    let mut buf = [0u8; 4096];
    match r.read(&mut buf) {
        Err(_) => {}
        Ok(n) => assert!(
            n == 0,
            "a read after a read error returned {n} bytes, for {input:?}"
        ),
    }
}

/// An object that cannot be opened: a one-line error naming it.
fn check_open_error(e: &dyn fmt::Display, input: &Short<'_>) {
    let s = e.to_string();
    one_line_text("open error", &s, input);
    assert!(
        s.contains(OBJECT),
        "open error does not name the object: {s}"
    );
}

/// Arbitrary bytes as a raw object, decoded like the transform decodes one: with and without
/// the fixed key. Opening errors name the object; read errors, wrapped, name it once; a keyed
/// decode succeeds only for an authentic object, and whatever it returns before failing is a
/// prefix of an authentic plaintext.
pub fn check_raw_object(data: &[u8]) {
    let input = Short(data);
    for (keyed, codec) in [(false, RawCodec::with_keys(None)), (true, keyed_codec())] {
        match codec.decoder(data, OBJECT) {
            Err(e) => check_open_error(&e, &input),
            Ok(mut r) => {
                let (out, err) = drain(&mut r);
                if let Some(e) = &err {
                    check_read_error(e, &input);
                }
                if keyed {
                    check_keyed_output(data, &out, err.is_none());
                }
            }
        }
        // The transform's reading loop on the same decoder.
        if let Ok(mut r) = codec.decoder(data, OBJECT) {
            let mut block = Vec::new();
            let mut seen = 0u64;
            let _ = bitacora_core::lines::for_each_text_line(
                &mut r,
                &mut block,
                64 * 1024,
                |line| {
                    seen += line.map_or_else(|b| b.len(), |s| s.len()) as u64 + 1;
                    if seen > READ_LIMIT { Err(None) } else { Ok(()) }
                },
                Some,
            );
        }
    }
    check_decrypting_reader(data, None, false);
}

/// Output of a keyed decode of `data`: complete only for an authentic object, else a prefix of an
/// authentic plaintext.
fn check_keyed_output(data: &[u8], out: &[u8], complete: bool) {
    let a = authentic();
    if let Some(i) = REFERENCES.iter().position(|r| *r == data) {
        if let Err(e) = &a[i].plain {
            panic!("RawCodec cannot decode the reference object {i} its writer wrote: {e}");
        }
        assert!(complete, "reference object {i} does not decode");
        assert_eq!(
            out,
            a[i].plain(),
            "reference object {i} decodes to other bytes"
        );
        return;
    }
    assert!(
        !complete,
        "a tampered or forged encrypted object decoded without error ({} bytes out)",
        out.len()
    );
    assert!(
        a.iter().any(|a| a.plain().starts_with(out)),
        "a tampered encrypted object returned {} bytes that are no authentic plaintext",
        out.len()
    );
}

/// The decrypting reader alone: `new` errors name the object; the bytes returned before a read
/// error are authentic (a prefix of the reference `reference`, when given); with `retry`, a
/// failed reader stays failed (a read after the error returns no bytes and does not panic).
fn check_decrypting_reader(data: &[u8], reference: Option<usize>, retry: bool) {
    let input = Short(data);
    let key = fixed_key();
    let mut r = match DecryptingReader::new(data, key.as_ref(), OBJECT) {
        Err(e) => {
            let s = e.to_string();
            one_line_text("header error", &s, &input);
            assert!(
                s.contains(OBJECT),
                "header error does not name the object: {s}"
            );
            return;
        }
        Ok(r) => r,
    };
    let (out, err) = drain(&mut r);
    let a = authentic();
    let authentic_index = REFERENCES.iter().position(|r| *r == data);
    match (&err, authentic_index) {
        (None, Some(i)) => {
            assert_eq!(
                out, a[i].compressed,
                "reference {i} decrypts to other bytes"
            );
            return;
        }
        (None, None) => panic!(
            "a tampered or forged encrypted object decrypted without error ({} bytes out), for {input:?}",
            out.len()
        ),
        (Some(e), Some(i)) => panic!("reference object {i} fails to decrypt: {e}"),
        (Some(e), None) => check_read_error(e, &input),
    }
    let candidates: Vec<&Authentic> = match reference {
        Some(i) => vec![&a[i]],
        None => a.iter().collect(),
    };
    assert!(
        candidates.iter().any(|a| a.compressed.starts_with(&out)),
        "a tampered encrypted object returned {} decrypted bytes that are not authentic, for {input:?}",
        out.len()
    );
    if retry {
        check_fused(&mut r, &input);
    }
}

/// A mutation script applied to a reference object (first byte: which one in its low bits, and
/// bit 7 to read once more after the read error; then 4 bytes per mutation: operation, position
/// (u16 LE, modulo the length), value). A changed object fails to decrypt: nothing but authentic
/// plaintext comes out before the error, nor after it.
pub fn check_raw_tamper(data: &[u8]) {
    let Some((&which, script)) = data.split_first() else {
        return;
    };
    let i = usize::from(which & 0x7f) % REFERENCES.len();
    let object = tamper(REFERENCES[i], script);
    if object == REFERENCES[i] {
        return;
    }
    check_decrypting_reader(&object, Some(i), which & 0x80 != 0);
    let input = Short(&object);
    match keyed_codec().decoder(&object, OBJECT) {
        Err(e) => check_open_error(&e, &input),
        Ok(mut r) => {
            let (out, err) = drain(&mut r);
            let e = err.unwrap_or_else(|| {
                panic!(
                    "a tampered object decoded without error ({} bytes)",
                    out.len()
                )
            });
            check_read_error(&e, &input);
            assert!(
                authentic()[i].plain().starts_with(&out),
                "a tampered object returned {} bytes that are not its plaintext",
                out.len()
            );
        }
    }
}

/// Applies a mutation script (see [`check_raw_tamper`]).
pub fn tamper(reference: &[u8], script: &[u8]) -> Vec<u8> {
    let mut b = reference.to_vec();
    for m in script.chunks_exact(4) {
        let pos = usize::from(u16::from_le_bytes([m[1], m[2]])) % (b.len() + 1);
        let v = m[3];
        match m[0] % 7 {
            0 if pos < b.len() => b[pos] ^= v.max(1),
            1 if pos < b.len() => b[pos] = v,
            2 if pos < b.len() => {
                b.remove(pos);
            }
            3 => b.insert(pos, v),
            4 => b.truncate(pos),
            // Duplicate `v + 1` bytes at `pos` (a repeated chunk or header piece).
            5 => {
                let end = (pos + usize::from(v) + 1).min(b.len());
                let piece = b[pos..end].to_vec();
                b.splice(pos..pos, piece);
            }
            // Swap two chunks of the chunked reference: move `v + 1` bytes at `pos` to the end.
            6 => {
                let end = (pos + usize::from(v) + 1).min(b.len());
                let piece: Vec<u8> = b.drain(pos..end).collect();
                b.extend_from_slice(&piece);
            }
            _ => {}
        }
    }
    b
}

/// Bytes shown by their length and head in panic messages.
struct Short<'a>(&'a [u8]);

impl fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(48)];
        write!(
            f,
            "{} bytes {:?}…",
            self.0.len(),
            String::from_utf8_lossy(head)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// (3) The configuration loader.

/// Arbitrary TOML text: `Config::from_toml_str` is Ok, or an error of exit code 2 on one line;
/// an accepted configuration written back by `to_toml` loads again as the same configuration.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text) {
        Ok(config) => {
            let written = config.to_toml();
            match Config::from_toml_str(&written) {
                Ok(again) => assert_eq!(
                    again, config,
                    "to_toml does not round-trip: {written:?}, from {text:?}"
                ),
                Err(e) => panic!(
                    "to_toml wrote a configuration that does not load ({e}): {written:?}, from {text:?}"
                ),
            }
        }
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "exit code of {e:?}, for {text:?}");
            one_line_text("configuration error", &e.to_string(), &text);
        }
    }
}
