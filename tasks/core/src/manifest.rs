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

    /// The published manifest that a new run replaces. An unreadable one is replaced too (with a
    /// warning) instead of blocking every future run of the day.
    pub fn load_previous(lake: &Lake, step: &str, date: Day) -> Option<Manifest> {
        Self::load(lake, step, date).unwrap_or_else(|e| {
            tracing::warn!("{e}: it will be replaced");
            None
        })
    }

    /// Publishes this manifest (atomically replacing the previous one), then removes the run
    /// folders of its tables for this day except its own and `keep` (the run it replaces, runs a
    /// catalog still serves). Orphans of killed runs go with them.
    pub fn publish(&self, lake: &Lake, keep: &[&str]) -> Result<()> {
        let body =
            serde_json::to_vec_pretty(self).map_err(|e| Error::external("encode manifest", e))?;
        lake.put(&layout::manifest(&self.step, self.date), body)?;
        for table in self.outputs.keys() {
            let dir = layout::partition_dir(table, self.date);
            for run in lake.list_dirs(&dir)? {
                let Some(id) = run.strip_prefix("run=") else {
                    continue;
                };
                if id != self.run_id && !keep.contains(&id) {
                    lake.delete_prefix(&format!("{dir}/{run}"))?;
                }
            }
        }
        Ok(())
    }
}
