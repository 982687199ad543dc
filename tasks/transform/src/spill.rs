//! Buckets of rows between the two passes of the transform. A day that fits one output file stays
//! in memory; a larger day is hash-partitioned by dedup key into buckets spilled to Arrow IPC files
//! in a private temporary folder, so memory stays bounded as the day grows. A killed run's folder
//! is removed by the next transform that spills into the same base folder.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use bitacora_core::{Error, Result};

/// zstd level of the spill files.
const SPILL_ZSTD_LEVEL: i32 = 1;

/// Free bytes of the file system holding `path` (for the current user), `None` when unknown.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is valid for writes of one statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fails, naming the folder, when `base` has less free space than a spill of `need` bytes.
pub fn check_free_space(base: &Path, need: u64) -> Result<()> {
    let Some(free) = free_bytes(base) else {
        return Ok(());
    };
    if free >= need {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(Error::io(
        "spill into",
        base,
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "{:.2} GiB free, the day needs about {:.2} GiB to spill (its raw zone's size, with a margin): free space there or set transform.spill_dir to a larger disk",
                gib(free),
                gib(need)
            ),
        ),
    ))
}

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
        // Locked under another name first: a `.owner.lock` that exists is always held by its
        // run while it lives (another transform's clean-up never sees it unlocked).
        let taking = dir.path().join(".owner.lock.new");
        let owner = private_file(&taking)?;
        owner
            .try_lock()
            .map_err(|e| Error::io("lock spill folder", &taking, std::io::Error::other(e)))?;
        let lock_path = dir.path().join(OWNER_LOCK);
        std::fs::rename(&taking, &lock_path)
            .map_err(|e| Error::io("lock spill folder", &lock_path, e))?;
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
                        // zstd at level 1: a large day's spill stays about the size of its raw
                        // zone (uncompressed it was five times larger) for a few percent of CPU.
                        let opts = IpcWriteOptions::default()
                            .try_with_compression(Some(CompressionType::ZSTD))
                            .and_then(|o| o.try_with_compression_level(Some(SPILL_ZSTD_LEVEL)))
                            .map_err(|e| Error::external("spill options", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_free_space_is_a_clear_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|f| f > 0));
        check_free_space(dir.path(), 1).unwrap();
        let e = check_free_space(dir.path(), u64::MAX / 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(
            e.contains("GiB free") && e.contains("transform.spill_dir"),
            "{e}"
        );
    }

    #[test]
    fn spill_files_are_compressed_and_read_back() {
        use arrow::array::{ArrayRef, StringArray};
        use std::sync::Arc;
        let base = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(base.path()).unwrap();
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..20_000).map(|i| format!("{{\"event_type\":\"tap\",\"n\":{}}}", i % 50)),
        ));
        let batch = RecordBatch::try_from_iter([("t", text)]).unwrap();
        let plain = batch.get_array_memory_size();
        let mut b = Bucket::spill(dir.path(), "b.arrow", batch.schema());
        b.push(batch.clone()).unwrap();
        b.push(batch.clone()).unwrap();
        let Bucket::Spill { path, writer, .. } = &mut b else {
            unreachable!()
        };
        writer.as_mut().unwrap().finish().unwrap();
        let on_disk = std::fs::metadata(&*path).unwrap().len() as usize;
        assert!(
            on_disk * 4 < 2 * plain,
            "{on_disk} bytes for {} in memory",
            2 * plain
        );
        let path = path.clone();
        // Read back whole.
        let f = File::open(&path).unwrap();
        let back: Vec<RecordBatch> = FileReader::try_new(f, None)
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![batch.clone(), batch]);
    }
}
