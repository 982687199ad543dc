//! `kind = "file"`: `*.jsonl` files under `path`, one record per line.
//!
//! Records are appended to an open part named `.<name>.jsonl.open` (hidden, not `*.jsonl`) and
//! the part is renamed to `<name>.jsonl` when it reaches `max_bytes` or `max_age_secs`, or at
//! shutdown: a final name never shows a partial line. A part left open by a killed service is
//! closed by the next start (cut after its last complete line; lines sent were acknowledged only
//! after they were written whole). `fsync = true` also syncs every batch to disk, for machines
//! that may lose power (and the folder after each rename); without it, what was acknowledged
//! survives a crash of the service, not of the machine.
//!
//! An open part is locked (`flock`) while its instance writes it, so several instances may share
//! a folder: a start closes only the parts no live instance holds. A write or sync that fails
//! abandons the part (cut back to its last acknowledged line, closed) and the batch is sent again
//! into a new one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{BatchLimits, Sent, Sink};
use crate::record::SinkRecord;
use crate::{Error, Result};

const OPEN_SUFFIX: &str = ".jsonl.open";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    /// A part is closed once it holds this many bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// … or once it has been open this long.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// Sync every batch to disk before acknowledging it.
    #[serde(default)]
    pub fsync: bool,
}

fn default_max_bytes() -> u64 {
    64 << 20
}

fn default_max_age() -> u64 {
    60
}

impl FileSinkConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            path: path.into(),
            max_bytes: default_max_bytes(),
            max_age_secs: default_max_age(),
            fsync: false,
        }
    }

    pub fn validate(&self, key: &str) -> bitacora_core::Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(bitacora_core::Error::config(
                format!("{key}.path"),
                "must not be empty",
            ));
        }
        if self.max_bytes < 1024 || self.max_age_secs == 0 {
            return Err(bitacora_core::Error::config(
                format!("{key}.max_bytes"),
                "parts need max_bytes ≥ 1024 and max_age_secs ≥ 1",
            ));
        }
        Ok(())
    }
}

struct Part {
    file: File,
    open_path: PathBuf,
    final_path: PathBuf,
    bytes: u64,
    opened: Instant,
}

struct Inner {
    part: Option<Part>,
    seq: u64,
}

pub struct FileSink {
    config: FileSinkConfig,
    instance: String,
    inner: Arc<Mutex<Inner>>,
    /// The lines of a batch before their write, kept between batches: a fresh buffer each time
    /// costs page faults (zeroed pages) as large as the batch.
    spare: Arc<Mutex<Vec<u8>>>,
}

impl FileSink {
    /// Opens the sink: creates `path`, and closes the parts a killed service left open there.
    pub fn open(config: &FileSinkConfig, instance: &str) -> Result<Self> {
        let dir = &config.path;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create file sink folder", dir, e))?;
        recover(dir)?;
        Ok(FileSink {
            config: config.clone(),
            instance: instance.to_string(),
            inner: Arc::new(Mutex::new(Inner { part: None, seq: 0 })),
            spare: Default::default(),
        })
    }

    fn blocking<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&FileSinkConfig, &str, &mut Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let config = self.config.clone();
        let instance = self.instance.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut guard = inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                f(&config, &instance, &mut guard)
            })
            .await
            .map_err(|e| Error::Unavailable(format!("file sink task: {e}")))?
        }
    }
}

/// Closes parts left open: each is cut after its last newline and given its final name.
fn recover(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read file sink folder", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(OPEN_SUFFIX))
        else {
            continue;
        };
        let open_path = entry.path();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&open_path)
            .map_err(|e| Error::io("recover open part", &open_path, e))?;
        match f.try_lock() {
            Ok(()) => {}
            // A live instance sharing the folder is writing it.
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock open part", &open_path, e));
            }
        }
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .map_err(|e| Error::io("recover open part", &open_path, e))?;
        let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < data.len() {
            f.set_len(keep as u64)
                .map_err(|e| Error::io("recover open part", &open_path, e))?;
            tracing::warn!(
                "{}: cut {} bytes of a partial line left by a killed service (never acknowledged)",
                open_path.display(),
                data.len() - keep
            );
        }
        drop(f);
        if keep == 0 {
            let _ = std::fs::remove_file(&open_path);
            continue;
        }
        let final_path = dir.join(format!("{stem}.jsonl"));
        std::fs::rename(&open_path, &final_path)
            .map_err(|e| Error::io("close open part", &final_path, e))?;
        tracing::info!(
            "closed {} left open by a killed service",
            final_path.display()
        );
    }
    Ok(())
}

fn close(part: Part, fsync: bool) -> Result<()> {
    part.file
        .sync_all()
        .map_err(|e| Error::io("sync part", &part.open_path, e))?;
    // Renamed while still locked: no other instance's recovery can take it in between.
    std::fs::rename(&part.open_path, &part.final_path)
        .map_err(|e| Error::io("close part", &part.final_path, e))?;
    drop(part.file);
    if fsync && let Some(dir) = part.final_path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync folder", dir, e))?;
    }
    Ok(())
}

/// After a failed write or sync: cuts the part back to its acknowledged lines and closes it (if
/// even that fails, it stays hidden, and the next start cuts it after its last whole line).
fn abandon(mut part: Part, fsync: bool) {
    let cut = part
        .file
        .set_len(part.bytes)
        .and_then(|()| part.file.seek(SeekFrom::End(0)).map(|_| ()));
    match cut {
        Ok(()) if part.bytes > 0 => {
            if let Err(e) = close(part, fsync) {
                tracing::warn!("abandoning a part after a failed write: {e}");
            }
        }
        Ok(()) => {
            let _ = std::fs::remove_file(&part.open_path);
        }
        Err(e) => tracing::warn!(
            "{}: cannot cut it back after a failed write ({e}): the next start will",
            part.open_path.display()
        ),
    }
}

fn write_batch(
    config: &FileSinkConfig,
    instance: &str,
    inner: &mut Inner,
    lines: &[u8],
) -> Result<()> {
    if let Some(p) = &inner.part
        && (p.bytes >= config.max_bytes
            || p.opened.elapsed() >= Duration::from_secs(config.max_age_secs))
        && let Some(p) = inner.part.take()
    {
        close(p, config.fsync)?;
    }
    if inner.part.is_none() {
        inner.seq += 1;
        let stamp = chrono_stamp();
        let stem = format!("part-{stamp}-{instance}-{:06}", inner.seq);
        let open_path = config.path.join(format!(".{stem}{OPEN_SUFFIX}"));
        let final_path = config.path.join(format!("{stem}.jsonl"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&open_path)
            .map_err(|e| Error::io("open part", &open_path, e))?;
        file.try_lock()
            .map_err(|e| Error::io("lock part", &open_path, std::io::Error::other(e)))?;
        inner.part = Some(Part {
            file,
            open_path,
            final_path,
            bytes: 0,
            opened: Instant::now(),
        });
    }
    let Some(part) = inner.part.as_mut() else {
        return Err(Error::Unavailable("file sink: no open part".into()));
    };
    let total = lines.len();
    // One write of whole lines; on failure the part is abandoned (cut back to where it was)
    // and the batch is sent again into a new part.
    let written = part
        .file
        .write_all(lines)
        .map_err(|e| ("write", e))
        .and_then(|()| {
            if config.fsync {
                part.file.sync_data().map_err(|e| ("sync", e))
            } else {
                Ok(())
            }
        });
    if let Err((what, e)) = written {
        let open_path = part.open_path.display().to_string();
        if let Some(p) = inner.part.take() {
            abandon(p, config.fsync);
        }
        return Err(Error::sink(
            format!("file {}", config.path.display()),
            format!("{what} {open_path}: {e}"),
            true,
        ));
    }
    part.bytes += total as u64;
    Ok(())
}

/// `YYYYMMDDTHHMMSSmmmZ`, UTC, from the system clock.
fn chrono_stamp() -> String {
    let ms = crate::record::now_ms();
    let day = bitacora_model::routed::rfc3339_micros(ms * 1000);
    day.replace(['-', ':'], "")
        .replace('.', "")
        .chars()
        .take(18)
        .collect::<String>()
        + "Z"
}

#[async_trait]
impl Sink for FileSink {
    fn describe(&self) -> String {
        format!("file {}", self.config.path.display())
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_records: 100_000,
            max_bytes: 64 << 20,
        }
    }

    async fn send(&self, batch: &[SinkRecord]) -> Result<Sent> {
        // Each record and a newline, copied into one buffer (a vectored write of two slices a
        // line costs the kernel more than the copy).
        let mut lines = std::mem::take(
            &mut *self
                .spare
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        lines.clear();
        lines.reserve(batch.iter().map(|r| r.len() + 1).sum());
        for r in batch {
            lines.extend_from_slice(&r.json);
            lines.push(b'\n');
        }
        let spare = self.spare.clone();
        self.blocking(move |config, instance, inner| {
            let written = write_batch(config, instance, inner, &lines);
            // A batch far larger than usual does not keep its memory.
            if lines.capacity() <= 16 << 20 {
                *spare
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = lines;
            }
            written
        })
        .await?;
        Ok(Sent::all())
    }

    async fn tick(&self) -> Result<()> {
        self.blocking(|config, _, inner| {
            let old = inner
                .part
                .as_ref()
                .is_some_and(|p| p.opened.elapsed() >= Duration::from_secs(config.max_age_secs));
            match inner.part.take_if(|_| old) {
                Some(p) => close(p, config.fsync),
                None => Ok(()),
            }
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.blocking(|config, _, inner| match inner.part.take() {
            Some(p) => close(p, config.fsync),
            None => Ok(()),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(dir: &Path) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(&FileSinkConfig::new(dir.path()), "t").unwrap();
        let d = dir.path().to_path_buf();
        let read = move || {
            let d = d.clone();
            async move { lines_in(&d) }
        };
        crate::sinks::conformance::run(&sink, read).await;
    }

    #[tokio::test]
    async fn rotates_and_never_shows_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = FileSinkConfig::new(dir.path());
        c.max_bytes = 1024;
        let sink = FileSink::open(&c, "t").unwrap();
        let recs: Vec<SinkRecord> = (0..50)
            .map(|i| {
                SinkRecord::new(
                    format!("e{i}"),
                    format!("{{\"event_id\":\"e{i}\",\"pad\":\"{}\"}}", "x".repeat(100)),
                )
            })
            .collect();
        for chunk in recs.chunks(5) {
            sink.send(chunk).await.unwrap();
        }
        // Closed parts only under final names; the open one is hidden.
        let before = lines_in(dir.path()).len();
        assert!(before > 0 && before < 50, "{before}");
        sink.flush().await.unwrap();
        let all = lines_in(dir.path());
        assert_eq!(all.len(), 50);
        assert!(
            all.iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        let parts = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(parts > 3, "{parts} parts");
    }

    #[tokio::test]
    async fn a_start_leaves_the_open_part_of_a_live_instance_alone() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileSink::open(&FileSinkConfig::new(dir.path()), "a").unwrap();
        let rec = |i: u32| SinkRecord::new(format!("e{i}"), format!("{{\"n\":{i}}}"));
        a.send(&[rec(1)]).await.unwrap();
        // A second instance starts on the same folder while `a` writes its part.
        let b = FileSink::open(&FileSinkConfig::new(dir.path()), "b").unwrap();
        assert!(
            lines_in(dir.path()).is_empty(),
            "a's open part was closed by b's start"
        );
        a.send(&[rec(2)]).await.unwrap();
        b.send(&[rec(3)]).await.unwrap();
        a.flush().await.unwrap();
        b.flush().await.unwrap();
        let mut all = lines_in(dir.path());
        all.sort();
        assert_eq!(all, vec!["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        // Once `a` is gone without closing (killed), the next start does close its part.
        let c = FileSink::open(&FileSinkConfig::new(dir.path()), "a2").unwrap();
        c.send(&[rec(4)]).await.unwrap();
        drop(c);
        let _d = FileSink::open(&FileSinkConfig::new(dir.path()), "d").unwrap();
        assert_eq!(lines_in(dir.path()).len(), 4);
    }

    #[tokio::test]
    async fn a_part_left_open_is_closed_at_the_next_start_without_its_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".part-x-1.jsonl.open"),
            "{\"a\":1}\n{\"a\":2}\n{\"a\"",
        )
        .unwrap();
        std::fs::write(dir.path().join(".part-x-2.jsonl.open"), "{\"a").unwrap();
        let _sink = FileSink::open(&FileSinkConfig::new(dir.path()), "t").unwrap();
        assert_eq!(lines_in(dir.path()), vec!["{\"a\":1}", "{\"a\":2}"]);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["part-x-1.jsonl"]);
    }
}
