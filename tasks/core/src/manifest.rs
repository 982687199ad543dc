//! Manifests: the last object a step writes for a day, naming the run and the files it published.
//!
//! Writing the manifest is the atomic publication of a run. A run killed before that point leaves
//! the previous manifest, hence the previous run, in place; its own folder is an orphan that the
//! next run removes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::date::Day;
use crate::error::{Error, Result};
use crate::lake::{Lake, layout};
use crate::lease::{self, Lease};

/// One published file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the lake root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What a run published for one table (or zone) of a day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct TableOutput {
    /// The run folder, relative to the lake root.
    pub location: String,
    pub files: Vec<FileEntry>,
    pub rows: u64,
    pub bytes: u64,
}

impl TableOutput {
    pub fn new(location: String, files: Vec<FileEntry>) -> Self {
        let rows = files.iter().map(|f| f.rows).sum();
        let bytes = files.iter().map(|f| f.bytes).sum();
        TableOutput {
            location,
            files,
            rows,
            bytes,
        }
    }
}

/// What a run found published when it started, and how its own publication must find it.
#[derive(Debug, Clone)]
pub struct Previous {
    pub manifest: Option<Manifest>,
    expect: Expect,
}

impl Previous {
    /// The run id of the replaced manifest, if any.
    pub fn run_id(&self) -> Option<&str> {
        self.manifest.as_ref().map(|m| m.run_id.as_str())
    }
}

#[derive(Debug, Clone)]
enum Expect {
    /// Local lakes: overwrite (one machine; see the README).
    Any,
    /// No manifest yet: create it only if still absent.
    Absent,
    /// Replace it only if still at this version.
    Version(object_store::UpdateVersion),
}

/// The manifest of one step for one day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub step: String,
    pub date: Day,
    pub run_id: String,
    pub created_at: String,
    /// Runs of earlier steps this run read (`extract` → its run id).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Output per table (`raw` for extract; `events` and `quarantine` for transform).
    pub outputs: BTreeMap<String, TableOutput>,
    /// The step's counters, for the next step's checks.
    pub stats: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn new(step: &str, date: Day, run_id: &str) -> Self {
        Manifest {
            step: step.into(),
            date,
            run_id: run_id.into(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            stats: BTreeMap::new(),
        }
    }

    /// Reads the published manifest of a step and day, `None` when there is none.
    pub fn load(lake: &Lake, step: &str, date: Day) -> Result<Option<Manifest>> {
        let path = layout::manifest(step, date);
        let Some(bytes) = lake.get_opt(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Metadata {
                what: "manifest",
                location: lake.url_of(&path),
                message: format!("unreadable ({e}); re-run the {step} step for {date}"),
            })
    }

    /// The published manifest that a new run replaces, read when the run starts (under the run's
    /// lease). An unreadable (corrupt) manifest is replaced, with a warning, instead of blocking
    /// every future run of the day; a failure to read it (a transient S3 error) fails the run: it
    /// must never fall back to an unconditional publication.
    pub fn load_previous(lake: &Lake, step: &str, date: Day) -> Result<Previous> {
        let path = layout::manifest(step, date);
        let unreadable = |e: serde_json::Error| {
            tracing::warn!(
                "manifest {} unreadable ({e}): it will be replaced",
                lake.url_of(&path)
            )
        };
        if lake.supports_conditional_writes() {
            return Ok(match lake.get_versioned(&path)? {
                None => Previous {
                    manifest: None,
                    expect: Expect::Absent,
                },
                Some((bytes, version)) => Previous {
                    manifest: serde_json::from_slice(&bytes).map_err(unreadable).ok(),
                    expect: Expect::Version(version),
                },
            });
        }
        Ok(Previous {
            manifest: match lake.get_opt(&path)? {
                Some(bytes) => serde_json::from_slice(&bytes).map_err(unreadable).ok(),
                None => None,
            },
            expect: Expect::Any,
        })
    }

    /// Publishes this manifest in place of `previous`, under the run's `lease` of the step and day
    /// (checked first: a run that lost it publishes nothing) — on cloud lakes also only if no other
    /// run of the step published for the day since `previous` was read (S3 conditional writes): the
    /// later of two runs fails cleanly and removes its own files. Then removes the run folders of
    /// its tables for this day except its own, `keep` (the run it replaces, runs a catalog still
    /// serves) and any run a live lease of the day reads. Orphans of killed runs go with them.
    pub fn publish(
        &self,
        lake: &Lake,
        keep: &[&str],
        previous: &Previous,
        lease: &Lease,
    ) -> Result<()> {
        lease.check()?;
        let body =
            serde_json::to_vec_pretty(self).map_err(|e| Error::external("encode manifest", e))?;
        let path = layout::manifest(&self.step, self.date);
        let published = match &previous.expect {
            Expect::Any => {
                lake.put(&path, body)?;
                true
            }
            Expect::Absent => lake.put_if(&path, body, None)?,
            Expect::Version(v) => lake.put_if(&path, body, Some(v.clone()))?,
        };
        if !published {
            for out in self.outputs.values() {
                let _ = lake.delete_prefix(&out.location);
            }
            return Err(Error::Metadata {
                what: "manifest",
                location: lake.url_of(&path),
                message: format!(
                    "another run of {} for {} was published while run {} was working; this run's files were removed — re-run the step if needed",
                    self.step, self.date, self.run_id
                ),
            });
        }
        let read = lease::live_reads(lake, self.date)?;
        for table in self.outputs.keys() {
            let dir = layout::partition_dir(table, self.date);
            for run in lake.list_dirs(&dir)? {
                let Some(id) = run.strip_prefix("run=") else {
                    continue;
                };
                if id != self.run_id && !keep.contains(&id) && !read.iter().any(|r| r == id) {
                    lake.delete_prefix(&format!("{dir}/{run}"))?;
                }
            }
        }
        Ok(())
    }
}
