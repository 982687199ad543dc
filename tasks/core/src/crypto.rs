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

/// A 256-bit master key kept in a local file (64 hex characters), created with mode 0600.
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
    /// Loads the key file; errors name the file.
    pub fn load(path: &Path) -> Result<LocalKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Key {
            path: path.to_path_buf(),
            message: if e.kind() == io::ErrorKind::NotFound {
                "not found (it is created by the first extract; set encryption.key_file)".into()
            } else {
                e.to_string()
            },
        })?;
        let bytes = hex::decode(text.trim()).map_err(|_| Error::Key {
            path: path.to_path_buf(),
            message: "not a key: expected 64 hexadecimal characters".into(),
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| Error::Key {
            path: path.to_path_buf(),
            message: "not a key: expected 32 bytes (64 hexadecimal characters)".into(),
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

/// Decrypts an object produced by [`EncryptingWriter`], chunk by chunk.
pub struct DecryptingReader<R: Read> {
    inner: R,
    object: String,
    cipher: Aes256Gcm,
    header: Vec<u8>,
    prefix: [u8; 7],
    counter: u32,
    chunk: usize,
    plain: Vec<u8>,
    pos: usize,
    done: bool,
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
            return Err(bad(format!("unsupported algorithm {}", h.alg)));
        }
        if h.object != object {
            return Err(bad(format!(
                "was encrypted as {}: objects cannot be moved or swapped",
                h.object
            )));
        }
        if h.provider != keys.provider() || h.key_id != keys.key_id() {
            return Err(bad(format!(
                "encrypted with {} key {}, but the configured key is {} key {} (wrong key)",
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
            object: object.to_string(),
            cipher: Aes256Gcm::new(&data_key.into()),
            header,
            prefix,
            counter: 0,
            chunk: h.chunk,
            plain: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    fn fail(&self, m: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("encryption: {}: {m}", self.object),
        )
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
        while self.pos == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
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

    #[test]
    fn bad_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "not hex").unwrap();
        let e = LocalKey::load(&p).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()));
        let e = LocalKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("not found"));
    }
}
