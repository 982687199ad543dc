//! A route's PII policy: fields dropped, and fields replaced by a keyed hash (HMAC-SHA256, so
//! that a third party can count and join users without learning their ids, and cannot reverse
//! the hash by trying ids without the key).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use bitacora_model::model::Event;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Fields a policy can drop.
pub const DROPPABLE: &[&str] = &[
    "user_id",
    "session_id",
    "device_model",
    "os_version",
    "country",
    "app_version",
    "message",
    "properties",
    "log_stream",
];
/// Fields a policy can hash.
pub const HASHABLE: &[&str] = &["user_id", "session_id", "device_model"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    #[serde(default)]
    pub hash: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
    /// The hash key (its first line, at least 32 characters). Default: `data_dir/pii.key`,
    /// created once with a random key — keep it, or hashes change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl PiiConfig {
    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        for f in &self.hash {
            if !HASHABLE.contains(&f.as_str()) {
                return Err(bitacora_core::Error::config(
                    format!("{key}.hash"),
                    format!(
                        "cannot hash {f:?} (expected one of {})",
                        HASHABLE.join(", ")
                    ),
                ));
            }
        }
        for f in &self.drop {
            if !DROPPABLE.contains(&f.as_str()) {
                return Err(bitacora_core::Error::config(
                    format!("{key}.drop"),
                    format!(
                        "cannot drop {f:?} (expected one of {})",
                        DROPPABLE.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A policy ready to apply.
#[derive(Clone)]
pub struct Pii {
    hash: Vec<String>,
    drop: Vec<String>,
    key: Vec<u8>,
}

impl Pii {
    pub fn new(config: &PiiConfig, data_dir: &Path) -> crate::Result<Self> {
        let key = if config.hash.is_empty() {
            Vec::new()
        } else {
            load_or_create_key(
                config
                    .key_file
                    .clone()
                    .unwrap_or_else(|| data_dir.join("pii.key")),
            )?
        };
        Ok(Pii {
            hash: config.hash.clone(),
            drop: config.drop.clone(),
            key,
        })
    }

    /// The event as this route sends it.
    pub fn apply<'a>(&self, event: &Event<'a>) -> Event<'a> {
        let mut e = event.clone();
        for f in &self.drop {
            match f.as_str() {
                "user_id" => e.user_id = None,
                "session_id" => e.session_id = None,
                "device_model" => e.device_model = None,
                "os_version" => e.os_version = None,
                "country" => e.country = None,
                "app_version" => e.app_version = None,
                "message" => e.message = None,
                "properties" => e.properties = None,
                "log_stream" => e.log_stream = Cow::Borrowed(""),
                _ => {}
            }
        }
        for f in &self.hash {
            let slot = match f.as_str() {
                "user_id" => &mut e.user_id,
                "session_id" => &mut e.session_id,
                "device_model" => &mut e.device_model,
                _ => continue,
            };
            if let Some(v) = slot.as_deref() {
                *slot = Some(Cow::Owned(self.hash_value(v)));
            }
        }
        e
    }

    /// HMAC-SHA256 of `v` under the key, as 32 hex characters (128 bits).
    pub fn hash_value(&self, v: &str) -> String {
        hex::encode(&hmac_sha256(&self.key, v.as_bytes())[..16])
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn load_or_create_key(path: PathBuf) -> crate::Result<Vec<u8>> {
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.lines().next().unwrap_or_default().trim().to_string();
            if key.len() < 32 {
                return Err(crate::Error::config(
                    "stream.routes.pii.key_file",
                    format!(
                        "{}: the key (its first line) must have at least 32 characters (openssl rand -hex 32)",
                        path.display()
                    ),
                ));
            }
            Ok(key.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw)
                .map_err(|e| crate::Error::Unavailable(format!("random key: {e}")))?;
            let key = hex::encode(raw);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("create", dir, e))?;
            }
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(format!("{key}\n").as_bytes())
                        .map_err(|e| crate::Error::io("write PII key", &path, e))?;
                    tracing::warn!(
                        "created the PII hash key {} (keep it: hashes change with it)",
                        path.display()
                    );
                    Ok(key.into_bytes())
                }
                // Another instance created it first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(crate::Error::io("create PII key", &path, e)),
            }
        }
        Err(e) => Err(crate::Error::io("read PII key", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn drops_and_hashes_with_a_kept_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = PiiConfig {
            hash: vec!["user_id".into()],
            drop: vec!["session_id".into()],
            key_file: None,
        };
        let p = Pii::new(&c, dir.path()).unwrap();
        let e = Event {
            user_id: Some(Cow::Borrowed("u1")),
            session_id: Some(Cow::Borrowed("s1")),
            ..Default::default()
        };
        let out = p.apply(&e);
        assert_eq!(out.session_id, None);
        let h = out.user_id.unwrap().into_owned();
        assert_eq!(h.len(), 32);
        assert_ne!(h, "u1");
        // The key is kept: the same id hashes the same after a restart.
        let again = Pii::new(&c, dir.path()).unwrap();
        assert_eq!(again.hash_value("u1"), h);
        assert!(
            PiiConfig {
                hash: vec!["email".into()],
                ..Default::default()
            }
            .validate("k")
            .is_err()
        );
    }
}
