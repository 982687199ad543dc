//! `bitacora run`: every batch step for each day of a range, in order.

use bitacora_catalog::{CatalogParams, CatalogReport};
use bitacora_core::{Config, Day, Error, Result, progress};
use bitacora_extract::{ExtractParams, ExtractReport};
use bitacora_transform::{TransformParams, TransformReport};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DayReport {
    pub date: Day,
    pub extract: ExtractReport,
    pub transform: TransformReport,
    pub catalog: CatalogReport,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub status: &'static str,
    pub from: Day,
    pub to: Day,
    pub days: Vec<DayReport>,
}

/// Runs extract → transform → catalog for one day.
pub fn run_day(config: &Config, date: Day) -> Result<DayReport> {
    let extract = bitacora_extract::run(config, &ExtractParams::new(date))?;
    let transform = bitacora_transform::run(config, &TransformParams { date })?;
    let catalog = bitacora_catalog::run(config, &CatalogParams { date })?;
    Ok(DayReport {
        date,
        extract,
        transform,
        catalog,
    })
}

/// Runs every day of `[from, to]`; stops at the first failing day.
pub fn run_days(config: &Config, from: Day, to: Day) -> Result<RunReport> {
    if to < from {
        return Err(Error::Usage(format!("--to {to} is before --from {from}")));
    }
    let days = Day::range_inclusive(from, to);
    let bar = progress::bar(days.len() as u64, "days");
    let mut out = Vec::with_capacity(days.len());
    for day in days {
        bar.set_message(day.to_string());
        let report =
            run_day(config, day).inspect_err(|e| tracing::error!("day {day} failed: {e}"))?;
        out.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(RunReport {
        tool: "bitacora",
        status: "ok",
        from,
        to,
        days: out,
    })
}
