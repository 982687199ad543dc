//! Client-side envelope encryption of raw objects (AES-256-GCM).
//!
//! Every object gets a fresh 256-bit data key, wrapped by a [`KeyProvider`] (the local master key
//! file here; KMS in the AWS backend). The payload is encrypted in chunks with a STREAM-like
//! construction, so memory does not grow with the object:
//!
//! ```text
//! "BTCENV01" | u32 header length | header JSON (alg, chunk size, key provider, key id, wrapped key, nonce prefix)
//! repeated:  u32 (chunk length | LAST bit) | AES-256-GCM(chunk) with nonce = prefix(7) ‖ counter(4, BE) ‖ last(1)
//! ```
//!
//! The header is the associated data of every chunk and the last-chunk flag is part of the nonce,
//! so a changed header, reordered, dropped, truncated or appended chunk fails authentication.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// First bytes of every encrypted object.
pub const MAGIC: &[u8; 8] = b"BTCENV01";
/// Plaintext bytes per encrypted chunk.
pub const DEFAULT_CHUNK: usize = 1 << 20;
const LAST_BIT: u32 = 1 << 31;
const TAG: usize = 16;
const WRAP_AAD: &[u8] = b"bitacora-data-key-v1";

/// Wraps and unwraps per-object data keys.
pub trait KeyProvider: Send + Sync {
    /// Name recorded in object headers (`local`, `kms`).
    fn provider(&self) -> &'static str;
    /// Identifies the master key, so that a wrong key is reported as such.
    fn key_id(&self) -> &str;
    /// A fresh data key for the object at `object`, and its wrapped form stored in the header.
    fn new_data_key(&self, object: &str) -> Result<([u8; 32], String)>;
    /// The data key of `object` from its wrapped form.
    fn unwrap(&self, wrapped: &str, object: &str) -> Result<[u8; 32]>;
}

/// How to make a key file by hand, quoted by the errors about one.
const MAKE_KEY: &str = "openssl rand -hex 32 > PATH; chmod 600 PATH";

/// A 256-bit master key kept in a local file, created with mode 0600: 64 hexadecimal characters
/// (what `extract` writes; a trailing newline or spaces are fine) or exactly 32 raw bytes. Like an
/// ssh private key, a file that its group or others may read is refused.
pub struct LocalKey {
    path: PathBuf,
    cipher: Aes256Gcm,
    id: String,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey")
            .field("path", &self.path)
            .field("id", &self.id)
            .finish()
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Crypto {
        object: "-".into(),
        message: format!("no system randomness: {e}"),
    })?;
    Ok(b)
}

impl LocalKey {
    /// Loads the key file; errors name the file and say how to fix it.
    pub fn load(path: &Path) -> Result<LocalKey> {
        let key_error = |message: String| Error::Key {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| {
            key_error(if e.kind() == io::ErrorKind::NotFound {
                "not found (it is created by the first extract; set encryption.key_file)".into()
            } else {
                e.to_string()
            })
        })?;
        check_private(&file, path)?;
        // A key file is 64 characters and a newline: anything much larger is not one.
        let mut bytes = Vec::new();
        file.take(4096)
            .read_to_end(&mut bytes)
            .map_err(|e| key_error(e.to_string()))?;
        let key = parse_key(&bytes).map_err(|found| {
            key_error(format!(
                "not a key: {found}; expected 64 hexadecimal characters (a trailing newline is fine) or exactly 32 raw bytes; make one with `{}`",
                MAKE_KEY.replace("PATH", &path.display().to_string())
            ))
        })?;
        Ok(Self::from_bytes(path, key))
    }

    /// Loads the key file, creating a new random key (mode 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<(LocalKey, bool)> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create folder", parent, e))?;
        }
        let key: [u8; 32] = random()?;
        // Written to a private temporary file, then linked into place in one step: a concurrent
        // first run never reads a half-written key, and the first link wins.
        let suffix: [u8; 6] = random()?;
        let tmp = path.with_extension(format!("tmp-{}", hex::encode(suffix)));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts.open(&tmp).and_then(|mut f| {
            f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write key file", &tmp, e));
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok((Self::from_bytes(path, key), true)),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((Self::load(path)?, false)),
            Err(e) => Err(Error::io("create key file", path, e)),
        }
    }

    fn from_bytes(path: &Path, key: [u8; 32]) -> LocalKey {
        let mut h = Sha256::new();
        h.update(b"bitacora-key-id");
        h.update(key);
        let id = hex::encode(&h.finalize()[..8]);
        LocalKey {
            path: path.to_path_buf(),
            cipher: Aes256Gcm::new(&key.into()),
            id,
        }
    }
}

/// Refuses a key file that its group or others may use, as ssh does for private keys.
#[cfg(unix)]
fn check_private(file: &std::fs::File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| Error::Key {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::Key {
            path: path.to_path_buf(),
            message: format!(
                "permissions {mode:04o} are too open: a master key must be readable by its owner only (run `chmod 600 {}`)",
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &std::fs::File, _path: &Path) -> Result<()> {
    Ok(())
}

/// The key in a key file's bytes, or what was found instead.
fn parse_key(bytes: &[u8]) -> std::result::Result<[u8; 32], String> {
    let is_hex = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_hexdigit);
    // Exactly 32 bytes are a raw key, unless they are all hexadecimal digits: then they are most
    // likely a 128-bit key in hex (random raw bytes are all hex digits with probability ~1e-34).
    if bytes.len() == 32 && !is_hex(bytes) {
        let mut key = [0u8; 32];
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err("the file is empty".into());
    }
    if !is_hex(text) {
        return Err(format!(
            "{} bytes that are neither 64 hexadecimal characters nor 32 raw bytes",
            bytes.len()
        ));
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key)
        .map_err(|_| format!("{} hexadecimal characters", text.len()))?;
    Ok(key)
}

impl KeyProvider for LocalKey {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn key_id(&self) -> &str {
        &self.id
    }

    fn new_data_key(&self, _object: &str) -> Result<([u8; 32], String)> {
        let data_key: [u8; 32] = random()?;
        Ok((data_key, self.wrap(&data_key)?))
    }

    fn unwrap(&self, wrapped: &str, object: &str) -> Result<[u8; 32]> {
        self.unwrap_key(wrapped, object)
    }
}

impl LocalKey {
    fn wrap(&self, data_key: &[u8; 32]) -> Result<String> {
        let nonce: [u8; 12] = random()?;
        let mut buf = data_key.to_vec();
        self.cipher
            .encrypt_in_place(&nonce.into(), WRAP_AAD, &mut buf)
            .map_err(|_| Error::Crypto {
                object: "-".into(),
                message: "cannot wrap data key".into(),
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(B64.encode(out))
    }

    fn unwrap_key(&self, wrapped: &str, object: &str) -> Result<[u8; 32]> {
        let bad = |m: &str| Error::Crypto {
            object: object.to_string(),
            message: m.to_string(),
        };
        let raw = B64
            .decode(wrapped)
            .map_err(|_| bad("corrupt wrapped data key"))?;
        if raw.len() != 12 + 32 + TAG {
            return Err(bad("corrupt wrapped data key"));
        }
        let nonce: [u8; 12] = raw[..12]
            .try_into()
            .map_err(|_| bad("corrupt wrapped data key"))?;
        let mut buf = raw[12..].to_vec();
        self.cipher
            .decrypt_in_place(&nonce.into(), WRAP_AAD, &mut buf)
            .map_err(|_| {
                bad(&format!(
                    "cannot unwrap the data key with {} (wrong key?)",
                    self.path.display()
                ))
            })?;
        buf.try_into().map_err(|_| bad("corrupt data key"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    alg: String,
    /// The object's path in the lake: part of the authenticated header, so an object moved or
    /// swapped to another path (another day, another run) fails to decrypt.
    object: String,
    chunk: usize,
    provider: String,
    key_id: String,
    wrapped_key: String,
    nonce_prefix: String,
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = last as u8;
    n
}

/// Encrypts everything written to it into `inner`, chunk by chunk. Call [`EncryptingWriter::finish`].
pub struct EncryptingWriter<W: Write> {
    inner: W,
    cipher: Aes256Gcm,
    header: Vec<u8>,
    prefix: [u8; 7],
    counter: u32,
    chunk: usize,
    buf: Vec<u8>,
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts the encrypted stream of the object at `object` (its path in the lake).
    pub fn new(inner: W, keys: &dyn KeyProvider, object: &str) -> Result<Self> {
        Self::with_chunk(inner, keys, object, DEFAULT_CHUNK)
    }

    /// Starts an encrypted stream with an explicit chunk size (tests use small chunks).
    pub fn with_chunk(
        inner: W,
        keys: &dyn KeyProvider,
        object: &str,
        chunk: usize,
    ) -> Result<Self> {
        let (data_key, wrapped_key) = keys.new_data_key(object)?;
        let prefix: [u8; 7] = random()?;
        let header = serde_json::to_vec(&Header {
            alg: "AES-256-GCM".into(),
            object: object.into(),
            chunk,
            provider: keys.provider().into(),
            key_id: keys.key_id().into(),
            wrapped_key,
            nonce_prefix: hex::encode(prefix),
        })
        .map_err(|e| Error::external("encode encryption header", e))?;
        let mut w = EncryptingWriter {
            inner,
            cipher: Aes256Gcm::new(&data_key.into()),
            header,
            prefix,
            counter: 0,
            chunk: chunk.max(1),
            buf: Vec::with_capacity(chunk.max(1) + TAG),
        };
        w.inner
            .write_all(MAGIC)
            .map_err(|e| Error::io("write", "<object>", e))?;
        w.inner
            .write_all(&(w.header.len() as u32).to_le_bytes())
            .and_then(|_| w.inner.write_all(&w.header))
            .map_err(|e| Error::io("write", "<object>", e))?;
        Ok(w)
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(&self.prefix, self.counter, last);
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("object too large for one encrypted stream"))?;
        self.cipher
            .encrypt_in_place(&n.into(), &self.header, &mut self.buf)
            .map_err(|_| io::Error::other("encryption failed"))?;
        let mut len = self.buf.len() as u32;
        if last {
            len |= LAST_BIT;
        }
        self.inner.write_all(&len.to_le_bytes())?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Seals the last chunk and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            let room = self.chunk - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk {
                self.seal(false)?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether an object starts with the encrypted-object magic.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Decrypts an object produced by [`EncryptingWriter`], chunk by chunk. Errors of
/// [`DecryptingReader::new`] name the object; read errors give the reason only (see `fail`).
pub struct DecryptingReader<R: Read> {
    inner: R,
    cipher: Aes256Gcm,
    header: Vec<u8>,
    prefix: [u8; 7],
    counter: u32,
    chunk: usize,
    plain: Vec<u8>,
    pos: usize,
    done: bool,
    /// Set by the first error: every later read fails the same way (no byte of a chunk that did
    /// not authenticate is ever returned, whatever the caller does after an error).
    broken: Option<(io::ErrorKind, String)>,
}

impl<R: Read> DecryptingReader<R> {
    /// Reads and checks the header of the object at `object` (its path in the lake, also used in
    /// errors).
    pub fn new(mut inner: R, keys: &dyn KeyProvider, object: &str) -> Result<Self> {
        let bad = |m: String| Error::Crypto {
            object: object.to_string(),
            message: m,
        };
        let mut magic = [0u8; 8];
        inner
            .read_exact(&mut magic)
            .map_err(|_| bad("not an encrypted Bitácora object (too short)".into()))?;
        if &magic != MAGIC {
            return Err(bad("not an encrypted Bitácora object (bad magic)".into()));
        }
        let mut len = [0u8; 4];
        inner
            .read_exact(&mut len)
            .map_err(|_| bad("truncated header".into()))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > 64 * 1024 {
            return Err(bad("corrupt header".into()));
        }
        let mut header = vec![0u8; len];
        inner
            .read_exact(&mut header)
            .map_err(|_| bad("truncated header".into()))?;
        let h: Header =
            serde_json::from_slice(&header).map_err(|e| bad(format!("corrupt header: {e}")))?;
        if h.alg != "AES-256-GCM" {
            return Err(bad(format!("unsupported algorithm {:?}", h.alg)));
        }
        if h.object != object {
            return Err(bad(format!(
                "was encrypted as {:?}: objects cannot be moved or swapped",
                h.object
            )));
        }
        if h.provider != keys.provider() || h.key_id != keys.key_id() {
            return Err(bad(format!(
                "encrypted with {:?} key {:?}, but the configured key is {} key {} (wrong key)",
                h.provider,
                h.key_id,
                keys.provider(),
                keys.key_id()
            )));
        }
        let data_key = keys.unwrap(&h.wrapped_key, object)?;
        let prefix: [u8; 7] = hex::decode(&h.nonce_prefix)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("corrupt header nonce".into()))?;
        if h.chunk == 0 || h.chunk > 64 << 20 {
            return Err(bad("corrupt header chunk size".into()));
        }
        Ok(DecryptingReader {
            inner,
            cipher: Aes256Gcm::new(&data_key.into()),
            header,
            prefix,
            counter: 0,
            chunk: h.chunk,
            plain: Vec::new(),
            pos: 0,
            done: false,
            broken: None,
        })
    }

    /// A read error. It carries the reason only: the reader's caller names the object (the
    /// transform wraps it as [`Error::Crypto`] with the object's path), so the message says
    /// `encryption: <object>: <reason>` once.
    fn fail(&self, m: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, m.to_string())
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut len = [0u8; 4];
        if let Err(e) = self.inner.read_exact(&mut len) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                self.fail("truncated object (last chunk missing)")
            } else {
                e
            });
        }
        let raw = u32::from_le_bytes(len);
        let last = raw & LAST_BIT != 0;
        let len = (raw & !LAST_BIT) as usize;
        if len < TAG || len > self.chunk + TAG {
            return Err(self.fail("corrupt chunk length"));
        }
        self.plain.clear();
        let got = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut self.plain)
            .map_err(|_| self.fail("truncated chunk"))?;
        if got != len {
            return Err(self.fail("truncated chunk"));
        }
        let n = nonce(&self.prefix, self.counter, last);
        self.counter = self.counter.wrapping_add(1);
        let mut buf = std::mem::take(&mut self.plain);
        let ok = self
            .cipher
            .decrypt_in_place(&n.into(), &self.header, &mut buf)
            .is_ok();
        self.plain = buf;
        if !ok {
            return Err(self.fail("authentication failed (wrong key, or the object was altered)"));
        }
        self.pos = 0;
        if last {
            self.done = true;
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(self.fail("data after the last chunk"));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, message)) = &self.broken {
            return Err(io::Error::new(*kind, message.clone()));
        }
        while self.pos == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            if let Err(e) = self.next_chunk() {
                self.plain.clear();
                self.pos = 0;
                self.broken = Some((e.kind(), e.to_string()));
                return Err(e);
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str) -> LocalKey {
        LocalKey::load_or_create(&dir.join(name)).unwrap().0
    }

    fn encrypt(keys: &LocalKey, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = EncryptingWriter::with_chunk(Vec::new(), keys, "obj", chunk).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn decrypt(keys: &LocalKey, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = DecryptingReader::new(data, keys, "obj").map_err(io::Error::other)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn roundtrip_across_chunks_and_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "k");
        let data: Vec<u8> = b"secret user_id=u-123 ".repeat(1000);
        for chunk in [1, 7, 100, 1 << 20] {
            let ct = encrypt(&k, &data, chunk);
            assert!(!ct.windows(11).any(|w| w == b"user_id=u-1"));
            assert_eq!(decrypt(&k, &ct).unwrap(), data);
        }
        assert_eq!(decrypt(&k, &encrypt(&k, b"", 16)).unwrap(), b"");
    }

    /// After an error, reads keep failing: never a byte of the chunk that did not authenticate,
    /// never a panic (found by the raw_tamper fuzz target).
    #[test]
    fn reads_after_an_error_fail_again() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "k");
        let data: Vec<u8> = b"0123456789".repeat(300);
        let mut ct = encrypt(&k, &data, 100);
        let at = ct.len() / 2;
        ct[at] ^= 1;
        let mut r = DecryptingReader::new(&ct[..], &k, "obj").unwrap();
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        let first = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("a tampered object read to its end"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert!(data.starts_with(&out), "only authenticated bytes came out");
        for _ in 0..3 {
            let again = r.read(&mut buf).unwrap_err();
            assert_eq!(again.to_string(), first.to_string());
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/k");
        let (a, created) = LocalKey::load_or_create(&p).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = LocalKey::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.key_id(), b.key_id());
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let results: Vec<(String, bool)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let (k, created) = LocalKey::load_or_create(&p).unwrap();
                        (k.key_id().to_string(), created)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.1).count(), 1);
        assert!(results.iter().all(|r| r.0 == results[0].0));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary files left"
        );
    }

    #[test]
    fn wrong_key_and_tampering_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "k");
        let other = key(dir.path(), "other");
        let ct = encrypt(&k, &b"hello world".repeat(100), 64);
        let e = DecryptingReader::new(&ct[..], &other, "obj").err().unwrap();
        assert!(e.to_string().contains("wrong key"), "{e}");

        let mut flipped = ct.clone();
        let n = flipped.len();
        flipped[n - 20] ^= 1;
        let e = decrypt(&k, &flipped).unwrap_err();
        assert!(e.to_string().contains("authentication failed"), "{e}");

        let e = DecryptingReader::new(&ct[..], &k, "raw/elsewhere")
            .err()
            .unwrap();
        assert!(e.to_string().contains("moved or swapped"), "{e}");

        let truncated = &ct[..ct.len() - 90];
        assert!(decrypt(&k, truncated).is_err());
        let mut appended = ct.clone();
        appended.extend_from_slice(b"x");
        assert!(decrypt(&k, &appended).is_err());
    }

    /// Writes a key file readable by its owner only.
    fn write_private(path: &Path, bytes: &[u8]) {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(path).unwrap().write_all(bytes).unwrap();
    }

    #[test]
    fn bad_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_private(&p, b"not hex");
        let e = LocalKey::load(&p).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()));
        let e = LocalKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("not found"));
    }

    #[test]
    fn raw_and_hex_keys_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        // A raw key whose last byte is a newline: 32 bytes are taken as they are.
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0xa5;
        }
        raw[31] = b'\n';
        let ids: Vec<String> = [
            raw.to_vec(),
            hex::encode(raw).into_bytes(),
            format!("{}\n", hex::encode(raw)).into_bytes(),
            format!("{}  \r\n", hex::encode_upper(raw)).into_bytes(),
        ]
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let p = dir.path().join(format!("k{i}"));
            write_private(&p, bytes);
            LocalKey::load(&p).unwrap().key_id().to_string()
        })
        .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

        // The key written by the first extract loads back.
        let (created, _) = LocalKey::load_or_create(&dir.path().join("new")).unwrap();
        let loaded = LocalKey::load(&dir.path().join("new")).unwrap();
        assert_eq!(created.key_id(), loaded.key_id());
    }

    #[test]
    fn a_file_that_is_not_a_key_says_what_a_key_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let fix = format!(
            "make one with `openssl rand -hex 32 > {0}; chmod 600 {0}`",
            p.display()
        );
        for (bytes, found) in [
            (b"".to_vec(), "the file is empty".to_string()),
            (b"\n".to_vec(), "the file is empty".to_string()),
            (
                "ab".repeat(31).into_bytes(),
                "62 hexadecimal characters".into(),
            ),
            // 32 hexadecimal characters: a 128-bit key in hex, not 32 raw bytes.
            (
                "ab".repeat(16).into_bytes(),
                "32 hexadecimal characters".into(),
            ),
            (
                b"not a key at all".to_vec(),
                "16 bytes that are neither 64 hexadecimal characters nor 32 raw bytes".into(),
            ),
            (vec![0xff; 33], "33 bytes that are neither".into()),
        ] {
            write_private(&p, &bytes);
            let e = LocalKey::load(&p).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("encryption key {}: not a key: ", p.display())),
                "{e}"
            );
            assert!(e.contains(&found), "{e}");
            assert!(
                e.contains("expected 64 hexadecimal characters (a trailing newline is fine) or exactly 32 raw bytes"),
                "{e}"
            );
            assert!(e.ends_with(&fix), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let (k, _) = LocalKey::load_or_create(&p).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = LocalKey::load(&p).unwrap_err();
            assert!(matches!(e, Error::Key { .. }), "{e:?}");
            assert_eq!(
                e.to_string(),
                format!(
                    "encryption key {0}: permissions {mode:04o} are too open: a master key must be readable by its owner only (run `chmod 600 {0}`)",
                    p.display()
                )
            );
            // Also when extract would otherwise reuse it.
            assert!(LocalKey::load_or_create(&p).is_err());
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(LocalKey::load(&p).unwrap().key_id(), k.key_id());
        }
    }

    #[test]
    fn tampering_names_the_object_once() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "k");
        let object = "raw/dt=2026-11-02/part-0.jsonl.zst.enc";
        let mut w = EncryptingWriter::with_chunk(Vec::new(), &k, object, 64).unwrap();
        w.write_all(&b"hello world".repeat(100)).unwrap();
        let mut ct = w.finish().unwrap();
        let n = ct.len();
        ct[n - 20] ^= 1;
        let mut r = DecryptingReader::new(&ct[..], &k, object).unwrap();
        let io = r.read_to_end(&mut Vec::new()).unwrap_err();
        // As the transform reports a failed read of a raw object.
        let e = Error::Crypto {
            object: object.into(),
            message: io.to_string(),
        }
        .to_string();
        assert_eq!(e.matches(object).count(), 1, "{e}");
        assert_eq!(e.matches("encryption").count(), 1, "{e}");
        assert_eq!(
            e,
            format!(
                "encryption: {object}: authentication failed (wrong key, or the object was altered)"
            )
        );
    }
}
