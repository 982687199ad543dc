//! The data lake: an [`ObjectStore`] under a root URL, and the layout of the zones in it.
//!
//! ```text
//! <root>/raw/dt=D/run=R/part-00000.jsonl.zst.enc      raw zone (encrypted NDJSON), one folder per run
//! <root>/events/dt=D/run=R/part-00000.parquet         curated zone
//! <root>/quarantine/dt=D/run=R/part-00000.parquet
//! <root>/_manifests/{extract,transform}/dt=D.json     the published run of each step and day
//! <root>/_catalog/...                                 the local catalog
//! ```
//!
//! A run writes into its own `run=R` folder and is published by writing the manifest last, so
//! readers see the previous run or the new one, never a mix. Folders of older runs are removed after
//! a publication (the run being replaced is kept until the next one, so that a catalog still
//! pointing at it stays readable).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use url::Url;

use crate::config::{Config, EncryptionMode, LakeConfig};
use crate::date::Day;
use crate::error::{Error, Result};
use crate::runtime::block_on;

/// S3's smallest part of a multipart upload (but the last).
const MIN_PART: usize = 5 << 20;

/// An object of the lake, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub path: String,
    pub size: u64,
}

/// The lake: an object store and the root it is mounted at.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// The store of the whole bucket (cloud lakes), for engines that address objects by full URL.
    bucket: Option<Arc<dyn ObjectStore>>,
    root: Url,
    /// Cloud lakes: objects larger than this go up as multipart uploads.
    multipart_bytes: usize,
}

impl Lake {
    /// Opens the lake of a configuration: `[lake] root`, with server-side KMS encryption of every
    /// object when `encryption.mode = "sse-kms"`.
    pub fn from_config(config: &Config) -> Result<Lake> {
        let sse_kms = match config.encryption.mode {
            EncryptionMode::SseKms => config.encryption.kms_key_id.as_deref(),
            _ => None,
        };
        Self::open_with(&config.lake, sse_kms)
    }

    /// Opens the lake of `[lake] root`, creating a local root folder when needed.
    pub fn open(cfg: &LakeConfig) -> Result<Lake> {
        Self::open_with(cfg, None)
    }

    fn open_with(cfg: &LakeConfig, sse_kms: Option<&str>) -> Result<Lake> {
        let root = cfg.root.trim();
        let url = if root.contains("://") {
            Url::parse(root)
                .map_err(|e| Error::config("lake.root", format!("{root:?} is not a URL: {e}")))?
        } else {
            let abs = std::path::absolute(root).map_err(|e| Error::io("resolve", root, e))?;
            Url::from_directory_path(&abs)
                .map_err(|_| Error::config("lake.root", format!("{root:?} is not a usable path")))?
        };
        match url.scheme() {
            "file" => {
                let dir = url.to_file_path().map_err(|_| {
                    Error::config("lake.root", format!("{root:?}: file URLs must be absolute"))
                })?;
                check_local_root(&dir)?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| Error::Storage {
                        action: "open",
                        location: dir.display().to_string(),
                        source: e,
                    })?
                    .with_automatic_cleanup(true);
                let mut root = Url::from_directory_path(&dir)
                    .map_err(|_| Error::config("lake.root", format!("{root:?} is not usable")))?;
                if !root.path().ends_with('/') {
                    root.set_path(&format!("{}/", root.path()));
                }
                Ok(Lake {
                    store: Arc::new(store),
                    bucket: None,
                    root,
                    multipart_bytes: usize::MAX,
                })
            }
            "s3" | "gs" => {
                let (bucket, store) = cloud::open(&url, cfg, sse_kms)?;
                let mut root = url.clone();
                if !root.path().ends_with('/') {
                    root.set_path(&format!("{}/", root.path()));
                }
                Ok(Lake {
                    store,
                    bucket: Some(bucket),
                    root,
                    multipart_bytes: cfg.multipart_bytes.max(MIN_PART),
                })
            }
            other => Err(Error::config(
                "lake.root",
                format!("unsupported scheme {other}:// (expected file://, s3:// or gs://)"),
            )),
        }
    }

    /// A lake over any store, as a cloud lake (conditional writes, leases as objects): for
    /// tests that inject faults into the store.
    #[cfg(test)]
    pub(crate) fn over_store(store: Arc<dyn ObjectStore>, root: &str) -> Lake {
        Lake {
            bucket: Some(store.clone()),
            store,
            root: Url::parse(root).expect("a test lake root is a URL"),
            multipart_bytes: usize::MAX,
        }
    }

    /// The root URL, ending with `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The absolute URL of a path of the lake (for query engines).
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}{}", self.root, rel.trim_start_matches('/'))
    }

    /// The local folder of a `file://` lake.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        self.root.to_file_path().ok()
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// For cloud lakes, the URL of the bucket (`s3://bucket`) and its store, where objects are
    /// addressed by their full key (query engines register it); `None` for local lakes.
    pub fn bucket_store(&self) -> Option<(Url, Arc<dyn ObjectStore>)> {
        let bucket = self.bucket.clone()?;
        let mut url = self.root.clone();
        url.set_path("/");
        Some((url, bucket))
    }

    /// Writes an object atomically (readers see the old object or the new one). Large objects
    /// of cloud lakes go up as multipart uploads (parts uploaded concurrently, completed at once).
    pub fn put(&self, rel: &str, bytes: impl Into<Bytes>) -> Result<()> {
        let path = ObjPath::from(rel);
        let bytes: Bytes = bytes.into();
        let fail = |e| Error::Storage {
            action: "write",
            location: self.url_of(rel),
            source: e,
        };
        if self.bucket.is_some() && bytes.len() > self.multipart_bytes {
            // Parts of half the threshold (at least S3's minimum), uploaded concurrently.
            let part = (self.multipart_bytes / 2).max(MIN_PART);
            return block_on(async {
                let upload = self.store.put_multipart(&path).await?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, part);
                w.put(bytes);
                w.finish().await
            })
            .map(|_| ())
            .map_err(fail);
        }
        block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(fail)
    }

    pub fn get(&self, rel: &str) -> Result<Bytes> {
        let path = ObjPath::from(rel);
        block_on(async { self.store.get(&path).await?.bytes().await }).map_err(|e| Error::Storage {
            action: "read",
            location: self.url_of(rel),
            source: e,
        })
    }

    /// Whether writes can be made conditional on the current version of an object (cloud lakes).
    pub fn supports_conditional_writes(&self) -> bool {
        self.bucket.is_some()
    }

    /// Reads an object with its version (`None` when it does not exist).
    pub fn get_versioned(&self, rel: &str) -> Result<Option<(Bytes, UpdateVersion)>> {
        let path = ObjPath::from(rel);
        let got = block_on(async {
            let r = self.store.get(&path).await?;
            let version = UpdateVersion {
                e_tag: r.meta.e_tag.clone(),
                version: r.meta.version.clone(),
            };
            Ok::<_, object_store::Error>((r.bytes().await?, version))
        });
        match got {
            Ok(v) => Ok(Some(v)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::Storage {
                action: "read",
                location: self.url_of(rel),
                source: e,
            }),
        }
    }

    /// Writes an object only if it is still as expected: absent (`None`), or at `Some(version)`.
    /// `Ok(false)` when someone else changed it first.
    pub fn put_if(
        &self,
        rel: &str,
        bytes: impl Into<Bytes>,
        expected: Option<UpdateVersion>,
    ) -> Result<bool> {
        self.put_if_version(rel, bytes, expected)
            .map(|v| v.is_some())
    }

    /// [`Lake::put_if`] that returns the version written (`None` when someone else changed the
    /// object first), for the next conditional write of the same object.
    pub fn put_if_version(
        &self,
        rel: &str,
        bytes: impl Into<Bytes>,
        expected: Option<UpdateVersion>,
    ) -> Result<Option<UpdateVersion>> {
        let path = ObjPath::from(rel);
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match block_on(
            self.store
                .put_opts(&path, PutPayload::from(bytes.into()), opts),
        ) {
            Ok(r) => Ok(Some(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(Error::Storage {
                action: "write",
                location: self.url_of(rel),
                source: e,
            }),
        }
    }

    /// Reads the bytes `range` of an object.
    pub fn get_range(&self, rel: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = ObjPath::from(rel);
        block_on(self.store.get_range(&path, range)).map_err(|e| Error::Storage {
            action: "read",
            location: self.url_of(rel),
            source: e,
        })
    }

    /// Reads an object, `None` when it does not exist.
    pub fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.get(rel) {
            Ok(b) => Ok(Some(b)),
            Err(Error::Storage {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object under a prefix (recursively), sorted by path.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let p = ObjPath::from(prefix);
        let mut out: Vec<ObjectInfo> = block_on(
            self.store
                .list(Some(&p))
                .map_ok(|m| ObjectInfo {
                    path: m.location.to_string(),
                    size: m.size,
                })
                .try_collect(),
        )
        .map_err(|e| Error::Storage {
            action: "list",
            location: self.url_of(prefix),
            source: e,
        })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The immediate sub-folders of a folder (names only).
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let p = ObjPath::from(prefix);
        let res =
            block_on(self.store.list_with_delimiter(Some(&p))).map_err(|e| Error::Storage {
                action: "list",
                location: self.url_of(prefix),
                source: e,
            })?;
        let mut dirs: Vec<String> = res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Reads objects concurrently (16 at a time), in the order given, `None` for those that do not
    /// exist.
    pub fn get_many(&self, paths: &[String]) -> Result<Vec<Option<Bytes>>> {
        use futures::StreamExt;
        let read = |rel: &str| {
            let path = ObjPath::from(rel);
            async move {
                match self.store.get(&path).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        let results: Vec<std::result::Result<Option<Bytes>, object_store::Error>> = block_on(
            futures::stream::iter(paths.iter())
                .map(|rel| read(rel))
                .buffered(16)
                .collect(),
        );
        results
            .into_iter()
            .zip(paths)
            .map(|(r, rel)| {
                r.map_err(|e| Error::Storage {
                    action: "read",
                    location: self.url_of(rel),
                    source: e,
                })
            })
            .collect()
    }

    pub fn delete(&self, rel: &str) -> Result<()> {
        let path = ObjPath::from(rel);
        match block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Storage {
                action: "delete",
                location: self.url_of(rel),
                source: e,
            }),
        }
    }

    /// Deletes every object under a folder.
    pub fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let objects = self.list(prefix)?;
        for o in &objects {
            self.delete(&o.path)?;
        }
        if let Some(dir) = self.local_dir() {
            // Local stores leave empty folders behind.
            let _ = std::fs::remove_dir_all(dir.join(prefix));
        }
        Ok(objects.len())
    }
}

/// A local lake root must be a folder this process can write: created when missing, refused
/// (exit 2, naming `lake.root`) when it is a file or read-only.
fn check_local_root(dir: &std::path::Path) -> Result<()> {
    let bad = |why: String| Error::config("lake.root", format!("{}: {why}", dir.display()));
    // Without a trailing `/`, which would make a file look absent.
    let plain: std::path::PathBuf = dir.components().collect();
    if plain.exists() && !plain.is_dir() {
        return Err(bad("is not a folder".into()));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| bad(format!("cannot create the lake folder ({e})")))?;
    // Writable? (permissions, read-only mounts): a probe file, removed at once.
    let probe = dir.join(format!(".bitacora-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| bad(format!("the lake folder is not writable ({e})")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Paths of the lake layout.
pub mod layout {
    use super::*;

    pub const RAW: &str = "raw";

    /// The folder of a table's partition: `events/dt=2026-11-01`.
    pub fn partition_dir(table: &str, day: Day) -> String {
        format!("{table}/dt={day}")
    }

    /// The folder of one run of a partition: `events/dt=2026-11-01/run=R`.
    pub fn run_dir(table: &str, day: Day, run_id: &str) -> String {
        format!("{table}/dt={day}/run={run_id}")
    }

    /// The folder of the leases of a day (see [`crate::lease`]).
    pub fn lease_dir(day: Day) -> String {
        format!("_leases/dt={day}")
    }

    /// The lease of one step and day.
    pub fn lease(step: &str, day: Day) -> String {
        format!("_leases/dt={day}/{step}.json")
    }

    /// The manifest a step publishes for a day.
    pub fn manifest(step: &str, day: Day) -> String {
        format!("_manifests/{step}/dt={day}.json")
    }

    /// A new run id: sortable UTC time and a random suffix.
    pub fn new_run_id() -> String {
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
            hex::encode(r)
        )
    }
}

/// Object stores of cloud lakes (feature `aws`).
#[cfg(feature = "aws")]
mod cloud {
    use std::sync::Arc;

    use std::time::Duration;

    use object_store::aws::AmazonS3Builder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    use object_store::prefix::PrefixStore;
    use object_store::{BackoffConfig, ObjectStore, RetryConfig};
    use url::Url;

    use crate::aws::{SdkCredentials, endpoint_override, sdk_config};
    use crate::config::LakeConfig;
    use crate::error::{Error, Result};

    /// The stores of an `s3://bucket/prefix` or `gs://bucket/prefix` root: the bucket's, and the
    /// same scoped to the prefix.
    pub fn open(
        url: &Url,
        cfg: &LakeConfig,
        sse_kms: Option<&str>,
    ) -> Result<(Arc<dyn ObjectStore>, Arc<dyn ObjectStore>)> {
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: cfg.max_retries,
            retry_timeout: Duration::from_secs(cfg.retry_timeout_secs),
        };
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Error::config("lake.root", format!("{url}: no bucket")))?;
        let prefix = url.path().trim_matches('/').to_string();
        let fail = |e: object_store::Error| Error::Storage {
            action: "open",
            location: url.to_string(),
            source: e,
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" => {
                // The standard AWS environment, as for the SDK clients: region, endpoint
                // (AWS_ENDPOINT_URL, path-style), and the SDK's credentials chain.
                let sdk = sdk_config();
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry);
                if let Some(region) = sdk.region() {
                    b = b.with_region(region.as_ref());
                }
                if let Some(endpoint) = endpoint_override() {
                    b = b
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                if let Some(creds) = sdk.credentials_provider() {
                    b = b.with_credentials(Arc::new(SdkCredentials(creds)));
                }
                if let Some(key) = sse_kms {
                    b = b.with_sse_kms_encryption(key).with_bucket_key(true);
                }
                Arc::new(b.build().map_err(fail)?)
            }
            "gs" => {
                if sse_kms.is_some() {
                    return Err(Error::config(
                        "encryption.mode",
                        "\"sse-kms\" applies to s3:// lakes; gs:// buckets use their default (CMEK) encryption",
                    ));
                }
                Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(bucket)
                        .with_retry(retry)
                        .build()
                        .map_err(fail)?,
                )
            }
            other => {
                return Err(Error::config(
                    "lake.root",
                    format!("unsupported scheme {other}://"),
                ));
            }
        };
        let scoped: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store.clone()
        } else {
            Arc::new(PrefixStore::new(store.clone(), prefix.as_str()))
        };
        Ok((store, scoped))
    }
}

#[cfg(not(feature = "aws"))]
mod cloud {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use url::Url;

    use crate::error::{Error, Result};

    pub fn open(
        url: &Url,
        _cfg: &crate::config::LakeConfig,
        _sse_kms: Option<&str>,
    ) -> Result<(Arc<dyn ObjectStore>, Arc<dyn ObjectStore>)> {
        Err(Error::config(
            "lake.root",
            format!(
                "{}:// lakes need a build with the `aws` feature (cargo build --release --features aws); use a local path or file://",
                url.scheme()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_lake_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().join("lake").to_string_lossy().into_owned(),
            ..LakeConfig::default()
        })
        .unwrap();
        assert!(lake.root().as_str().starts_with("file:///"));
        assert!(lake.root().as_str().ends_with("/lake/"));
        lake.put("a/dt=1/run=x/f1", Bytes::from_static(b"one"))
            .unwrap();
        lake.put("a/dt=1/run=y/f2", Bytes::from_static(b"two"))
            .unwrap();
        assert_eq!(
            lake.get("a/dt=1/run=x/f1").unwrap(),
            Bytes::from_static(b"one")
        );
        assert_eq!(lake.get_opt("nope").unwrap(), None);
        assert_eq!(lake.list("a").unwrap().len(), 2);
        assert_eq!(lake.list_dirs("a/dt=1").unwrap(), vec!["run=x", "run=y"]);
        lake.delete_prefix("a/dt=1/run=x").unwrap();
        assert_eq!(lake.list_dirs("a/dt=1").unwrap(), vec!["run=y"]);
    }

    #[test]
    fn local_roots_that_are_files_or_read_only_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let open = |root: &std::path::Path| {
            Lake::open(&LakeConfig {
                root: root.to_string_lossy().into_owned(),
                ..LakeConfig::default()
            })
        };
        let e = open(&file).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("lake.root"), "{e}");
        assert!(e.to_string().contains("is not a folder"), "{e}");
        let e = open(&file.join("below")).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        // Root ignores permissions: only check read-only folders as an ordinary user.
        if unsafe { libc::geteuid() } != 0 {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.path().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            let e = open(&ro).unwrap_err();
            assert!(e.to_string().contains("not writable"), "{e}");
        }
    }

    #[test]
    fn unsupported_roots_are_config_errors() {
        let e = Lake::open(&LakeConfig {
            root: "ftp://x/y".into(),
            ..LakeConfig::default()
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("lake.root"));
    }
}
