//! Buckets of rows between the two passes of the transform. A day that fits one output file stays
//! in memory; a larger day is hash-partitioned by dedup key into buckets spilled to Arrow IPC files
//! in a private temporary folder, so memory stays bounded as the day grows. A killed run's folder
//! is removed by the next transform that spills into the same base folder.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use bitacora_core::{Error, Result};

/// Spill folders are named `bitacora-spill-*` under the configured base folder.
const SPILL_PREFIX: &str = "bitacora-spill-";
/// The file a run holds locked in its spill folder while it works: a folder whose lock is free
/// belongs to a run that is gone.
const OWNER_LOCK: &str = ".owner.lock";
/// A folder without an owner lock (a run killed between creating it and locking) is stale once
/// this old.
const UNLOCKED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// A run's private spill folder (0700, its files 0600: they hold decrypted rows), removed when
/// dropped; while it exists its owner lock is held.
pub struct SpillDir {
    dir: tempfile::TempDir,
    _owner: File,
}

impl SpillDir {
    /// Creates a private spill folder under `base`, after removing the stale ones that killed
    /// runs left there.
    pub fn create(base: &Path) -> Result<SpillDir> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(base).map_err(|e| Error::io("create spill folder", base, e))?;
        remove_stale(base);
        let dir = tempfile::Builder::new()
            .prefix(SPILL_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)
            .map_err(|e| Error::io("create spill folder", base, e))?;
        let lock_path = dir.path().join(OWNER_LOCK);
        let owner = private_file(&lock_path)?;
        owner
            .try_lock()
            .map_err(|e| Error::io("lock spill folder", &lock_path, std::io::Error::other(e)))?;
        Ok(SpillDir { dir, _owner: owner })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Creates (truncates) a file readable by its owner only.
fn private_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create spill file", path, e))
}

/// Removes the spill folders under `base` whose run is gone (their owner lock is free), naming
/// each in the log. Folders of live runs are left alone; failures are logged, not fatal.
pub fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_spill = name.to_str().is_some_and(|n| n.starts_with(SPILL_PREFIX));
        if !is_spill || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let stale = match File::open(dir.join(OWNER_LOCK)) {
            Ok(f) => match f.try_lock() {
                Ok(()) => true,
                Err(std::fs::TryLockError::WouldBlock) => false,
                Err(std::fs::TryLockError::Error(_)) => false,
            },
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > UNLOCKED_GRACE),
        };
        if stale {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::warn!(
                    "removed {}: spill folder of a transform that was killed",
                    dir.display()
                ),
                Err(e) => tracing::warn!("cannot remove stale spill folder {}: {e}", dir.display()),
            }
        }
    }
}

pub enum Bucket {
    Memory(Vec<RecordBatch>),
    Spill {
        path: PathBuf,
        writer: Option<Box<FileWriter<BufWriter<File>>>>,
        schema: SchemaRef,
    },
}

impl Bucket {
    pub fn memory() -> Self {
        Bucket::Memory(Vec::new())
    }

    pub fn spill(dir: &Path, name: &str, schema: SchemaRef) -> Self {
        Bucket::Spill {
            path: dir.join(name),
            writer: None,
            schema,
        }
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Bucket::Memory(v) => {
                v.push(batch);
                Ok(())
            }
            Bucket::Spill {
                path,
                writer,
                schema,
            } => {
                let w = match writer {
                    Some(w) => w,
                    None => {
                        let f = private_file(path)?;
                        // Uncompressed: spill files live for seconds, mostly in the page cache, and
                        // compressing them cost more CPU than the I/O it saved.
                        let opts = IpcWriteOptions::default();
                        let w = FileWriter::try_new_with_options(
                            BufWriter::with_capacity(1 << 20, f),
                            schema,
                            opts,
                        )
                        .map_err(|e| Error::external(format!("spill to {}", path.display()), e))?;
                        writer.insert(Box::new(w))
                    }
                };
                w.write(&batch)
                    .map_err(|e| Error::external(format!("spill to {}", path.display()), e))
            }
        }
    }

    /// Every batch of the bucket (read back from disk when spilled; the file is then removed).
    pub fn drain(&mut self) -> Result<Vec<RecordBatch>> {
        match self {
            Bucket::Memory(v) => Ok(std::mem::take(v)),
            Bucket::Spill { path, writer, .. } => {
                let Some(mut w) = writer.take() else {
                    return Ok(Vec::new());
                };
                w.finish()
                    .map_err(|e| Error::external(format!("spill to {}", path.display()), e))?;
                drop(w);
                let f = File::open(&*path).map_err(|e| Error::io("read spill file", &*path, e))?;
                let reader =
                    FileReader::try_new(std::io::BufReader::with_capacity(1 << 20, f), None)
                        .map_err(|e| {
                            Error::external(format!("read spill {}", path.display()), e)
                        })?;
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::external(format!("read spill {}", path.display()), e))?;
                let _ = std::fs::remove_file(&*path);
                Ok(batches)
            }
        }
    }
}
