//! The raw-zone object codec: NDJSON envelope lines, zstd-compressed, then envelope-encrypted when
//! `encryption.mode = "envelope"`. Objects are bounded in size by the extract, so a reader or writer
//! holds at most one object and one encryption chunk.

use std::io::{self, Read, Write};
use std::sync::Arc;

use crate::config::{Config, EncryptionMode};
use crate::crypto::{DecryptingReader, EncryptingWriter, KeyProvider, LocalKey, is_encrypted};
use crate::error::{Error, Result};

/// A fast zstd level: the raw zone is written once a day and read once, so it favours throughput
/// over ratio (about 4.3:1 on generated app logs, against 4.6:1 at level -1 and 7:1 at level 1,
/// which costs ~20% more extract time).
const ZSTD_LEVEL: i32 = -4;
/// Plaintext bytes per zstd frame. Lines are gathered and compressed a block at a time (one frame
/// each, concatenated: any zstd reader reads the object as one stream), which avoids the copies and
/// window bookkeeping of line-by-line streaming compression.
const BLOCK: usize = 1 << 20;

/// Encodes and decodes raw objects according to the encryption settings.
#[derive(Clone)]
pub struct RawCodec {
    keys: Option<Arc<dyn KeyProvider>>,
    /// gzip instead of zstd: what Spark and Athena read natively (`transform.engine` = Spark).
    gzip: bool,
}

impl std::fmt::Debug for RawCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawCodec")
            .field("encrypted", &self.keys.is_some())
            .finish()
    }
}

impl RawCodec {
    /// The codec of a configuration. `create_key`: create the local key file when missing (extract).
    pub fn from_config(config: &Config, create_key: bool) -> Result<RawCodec> {
        let mut codec = Self::keys_from_config(config, create_key)?;
        codec.gzip = config.transform.engine.is_spark();
        if codec.gzip && codec.keys.is_some() {
            return Err(Error::config(
                "encryption.mode",
                "Spark (transform.engine) cannot read client-side encrypted raw objects: use \"sse-kms\"",
            ));
        }
        Ok(codec)
    }

    fn keys_from_config(config: &Config, create_key: bool) -> Result<RawCodec> {
        match config.encryption.mode {
            EncryptionMode::None => Ok(RawCodec {
                keys: None,
                gzip: false,
            }),
            EncryptionMode::Envelope => {
                if let Some(kms_key) = &config.encryption.kms_key_id {
                    return kms_codec(kms_key);
                }
                let path = config.encryption.key_file.as_deref().ok_or_else(|| {
                    Error::config(
                        "encryption.key_file",
                        "required when encryption.mode = \"envelope\"",
                    )
                })?;
                let key = if create_key {
                    let (key, created) = LocalKey::load_or_create(path)?;
                    if created {
                        tracing::info!(
                            "created a new encryption key {} (mode 0600): keep it safe, the raw zone cannot be read without it",
                            path.display()
                        );
                    }
                    key
                } else {
                    LocalKey::load(path)?
                };
                Ok(RawCodec {
                    keys: Some(Arc::new(key)),
                    gzip: false,
                })
            }
            // The object store encrypts every object server side (see `Lake`); objects are plain
            // zstd NDJSON, which Spark and Athena read natively.
            EncryptionMode::SseKms => Ok(RawCodec {
                keys: None,
                gzip: false,
            }),
        }
    }

    /// A codec with an explicit key provider (None: compression only).
    pub fn with_keys(keys: Option<Arc<dyn KeyProvider>>) -> RawCodec {
        RawCodec { keys, gzip: false }
    }

    /// A gzip codec without client-side encryption (the Spark-readable raw zone).
    pub fn gzip() -> RawCodec {
        RawCodec {
            keys: None,
            gzip: true,
        }
    }

    /// File extension of raw objects.
    pub fn extension(&self) -> &'static str {
        if self.gzip {
            "jsonl.gz"
        } else if self.keys.is_some() {
            "jsonl.zst.enc"
        } else {
            "jsonl.zst"
        }
    }

    /// A writer for the object at `object` (its path in the lake).
    pub fn writer(&self, object: &str) -> Result<RawWriter> {
        let inner = match &self.keys {
            Some(k) => Sink::Encrypted(Box::new(EncryptingWriter::new(
                Vec::new(),
                k.as_ref(),
                object,
            )?)),
            None => Sink::Plain(Vec::new()),
        };
        let compressor = if self.gzip {
            Frames::Gzip(Box::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )))
        } else {
            Frames::Zstd(
                zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| Error::external("start zstd", e))?,
            )
        };
        Ok(RawWriter {
            sink: inner,
            compressor,
            block: Vec::with_capacity(BLOCK + 64 * 1024),
            frame: Vec::new(),
            object: object.to_string(),
            lines: 0,
            plain_bytes: 0,
        })
    }

    /// The decompressed (and decrypted) content of the object at `object`, as a byte stream.
    pub fn decoder<'a>(&self, bytes: &'a [u8], object: &str) -> Result<Box<dyn Read + 'a>> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            if self.keys.is_some() {
                return Err(Error::Crypto {
                    object: object.into(),
                    message: "object is not encrypted but encryption.mode = \"envelope\"".into(),
                });
            }
            return Ok(Box::new(flate2::read::MultiGzDecoder::new(bytes)));
        }
        let encrypted = is_encrypted(bytes);
        let compressed: Box<dyn Read + 'a> = match (&self.keys, encrypted) {
            (Some(k), true) => Box::new(DecryptingReader::new(bytes, k.as_ref(), object)?),
            (None, false) => Box::new(bytes),
            (Some(_), false) => {
                return Err(Error::Crypto {
                    object: object.into(),
                    message: "object is not encrypted but encryption.mode = \"envelope\"".into(),
                });
            }
            (None, true) => {
                return Err(Error::Crypto {
                    object: object.into(),
                    message: "object is encrypted but encryption.mode = \"none\" (set encryption.key_file)".into(),
                });
            }
        };
        let decoder = zstd::stream::read::Decoder::new(compressed)
            .map_err(|e| Error::external(format!("decompress {object}"), e))?;
        Ok(Box::new(decoder))
    }
}

#[cfg(feature = "aws")]
fn kms_codec(key_id: &str) -> Result<RawCodec> {
    Ok(RawCodec {
        keys: Some(Arc::new(crate::kms::KmsKey::new(key_id))),
        gzip: false,
    })
}

#[cfg(not(feature = "aws"))]
fn kms_codec(_key_id: &str) -> Result<RawCodec> {
    Err(Error::config(
        "encryption.kms_key_id",
        "KMS-wrapped data keys need a build with the `aws` feature (cargo build --release --features aws)",
    ))
}

/// How blocks of lines are compressed: zstd frames into the sink, or one gzip stream.
enum Frames {
    Zstd(zstd::bulk::Compressor<'static>),
    Gzip(Box<flate2::write::GzEncoder<Vec<u8>>>),
}

enum Sink {
    Plain(Vec<u8>),
    Encrypted(Box<EncryptingWriter<Vec<u8>>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(v) => v.write(buf),
            Sink::Encrypted(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(v) => v.flush(),
            Sink::Encrypted(w) => w.flush(),
        }
    }
}

/// Accumulates one raw object.
pub struct RawWriter {
    sink: Sink,
    compressor: Frames,
    /// Plaintext lines not compressed yet.
    block: Vec<u8>,
    /// Reused output buffer of the compressor.
    frame: Vec<u8>,
    object: String,
    lines: u64,
    plain_bytes: u64,
}

impl RawWriter {
    /// Appends one NDJSON line (without its newline).
    pub fn write_line(&mut self, line: &[u8]) -> Result<()> {
        self.block.extend_from_slice(line);
        self.block.push(b'\n');
        self.lines += 1;
        self.plain_bytes += line.len() as u64 + 1;
        if self.block.len() >= BLOCK {
            self.compress_block()?;
        }
        Ok(())
    }

    /// Compresses the gathered lines as one zstd frame and hands it to the sink.
    fn compress_block(&mut self) -> Result<()> {
        // An object without lines still gets one (empty) frame: zstd readers refuse an empty
        // stream.
        if self.block.is_empty() && self.lines > 0 {
            return Ok(());
        }
        match &mut self.compressor {
            Frames::Zstd(c) => {
                self.frame.clear();
                self.frame
                    .reserve(zstd::zstd_safe::compress_bound(self.block.len()));
                c.compress_to_buffer(&self.block, &mut self.frame)
                    .map_err(|e| Error::external(format!("compress {}", self.object), e))?;
                self.sink
                    .write_all(&self.frame)
                    .map_err(|e| Error::external(format!("encode {}", self.object), e))?;
            }
            Frames::Gzip(gz) => gz
                .write_all(&self.block)
                .map_err(|e| Error::external(format!("compress {}", self.object), e))?,
        }
        self.block.clear();
        Ok(())
    }

    /// The object's path in the lake.
    pub fn object(&self) -> &str {
        &self.object
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Uncompressed bytes written so far.
    pub fn plain_bytes(&self) -> u64 {
        self.plain_bytes
    }

    /// The finished object.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.compress_block()?;
        if let Frames::Gzip(gz) = self.compressor {
            return gz
                .finish()
                .map_err(|e| Error::external(format!("compress {}", self.object), e));
        }
        match self.sink {
            Sink::Plain(v) => Ok(v),
            Sink::Encrypted(w) => w
                .finish()
                .map_err(|e| Error::external("encrypt raw object", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_plain_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let key: Arc<dyn KeyProvider> =
            Arc::new(LocalKey::load_or_create(&dir.path().join("k")).unwrap().0);
        for codec in [
            RawCodec::with_keys(None),
            RawCodec::with_keys(Some(key.clone())),
            RawCodec::gzip(),
        ] {
            let mut w = codec.writer("o").unwrap();
            w.write_line(b"{\"a\":1}").unwrap();
            w.write_line(b"{\"b\":2}").unwrap();
            let bytes = w.finish().unwrap();
            let mut text = String::new();
            codec
                .decoder(&bytes, "o")
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
        }
        let plain = RawCodec::with_keys(None)
            .writer("o")
            .unwrap()
            .finish()
            .unwrap();
        assert!(RawCodec::with_keys(Some(key)).decoder(&plain, "o").is_err());
    }

    #[test]
    fn a_tampered_object_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let key: Arc<dyn KeyProvider> =
            Arc::new(LocalKey::load_or_create(&dir.path().join("k")).unwrap().0);
        let codec = RawCodec::with_keys(Some(key));
        let object = "raw/dt=2026-11-02/run=r1/part-00000.jsonl.zst.enc";
        let mut w = codec.writer(object).unwrap();
        for i in 0..1000 {
            w.write_line(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        }
        let mut bytes = w.finish().unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x10;
        let mut decoder = codec.decoder(&bytes, object).unwrap();
        let read = decoder.read_to_end(&mut Vec::new()).unwrap_err();
        // What the transform does with a raw object's read errors.
        let e = Error::Crypto {
            object: object.to_string(),
            message: read.to_string(),
        }
        .to_string();
        assert_eq!(e.matches(object).count(), 1, "{e}");
        assert!(e.starts_with(&format!("encryption: {object}: ")), "{e}");
        assert!(e.contains("authentication failed"), "{e}");
    }
}
