//! The log-source trait: where the batch extract reads a day's events from.
//!
//! A source splits a day into independent units (files, time slices) so that the extract can read
//! them in parallel, and emits each event in the window as one envelope line: a CloudWatch
//! `FilterLogEvents` event as JSON.

use serde::Serialize;

use crate::date::Day;
use crate::error::Result;

/// An independent piece of a day's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUnit {
    /// What the unit is (a file path, a time slice), used in errors and progress.
    pub id: String,
    /// Approximate size in bytes, for progress and scheduling (largest first).
    pub size_hint: u64,
}

/// Counters of one unit (summed into the extract report).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UnitStats {
    /// Lines or events looked at.
    pub scanned: u64,
    /// Events whose `timestamp` lies in the day (emitted).
    pub selected: u64,
    /// Events of other days (ignored).
    pub outside_window: u64,
    /// Lines that are not events and have no usable `timestamp` (rejected, each one logged).
    pub malformed: u64,
    /// Lines longer than `transform.max_record_bytes`, not held whole (also counted as selected,
    /// outside the window or malformed, by the timestamp of their head).
    pub oversize: u64,
    /// Units not read because they are not regular files (FIFOs, sockets, devices), each one logged.
    pub skipped: u64,
}

impl UnitStats {
    pub fn add(&mut self, o: &UnitStats) {
        self.scanned += o.scanned;
        self.selected += o.selected;
        self.outside_window += o.outside_window;
        self.malformed += o.malformed;
        self.oversize += o.oversize;
        self.skipped += o.skipped;
    }
}

/// Callback receiving each selected envelope line.
pub type Emit<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// A log source backend (`files`, `cloudwatch`).
pub trait LogSource: Send + Sync {
    /// `files` or `cloudwatch`.
    fn kind(&self) -> &'static str;
    /// Human description (the folder, the log group).
    fn describe(&self) -> String;
    /// Refuses a day that the source cannot give completely yet (CloudWatch: late ingestion),
    /// unless `force`.
    fn check_settled(&self, _day: Day, _force: bool) -> Result<()> {
        Ok(())
    }
    /// Splits the day into units.
    fn plan(&self, day: Day) -> Result<Vec<SourceUnit>>;
    /// Reads one unit, emitting the day's events. An unreadable unit is an error naming it.
    fn read(&self, unit: &SourceUnit, day: Day, emit: &mut Emit<'_>) -> Result<UnitStats>;
}
