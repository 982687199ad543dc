//! UTC calendar days, the unit of work of the batch pipeline.

use std::fmt;
use std::str::FromStr;

use chrono::{Days, NaiveDate};

use crate::error::{Error, Result};

const MS_PER_DAY: i64 = 86_400_000;

/// A UTC day `D`; the batch steps process the half-open window `[D 00:00Z, D+1 00:00Z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(NaiveDate);

impl Day {
    pub fn new(date: NaiveDate) -> Self {
        Day(date)
    }

    pub fn date(&self) -> NaiveDate {
        self.0
    }

    /// Start of the day in milliseconds since the Unix epoch (inclusive).
    pub fn start_ms(&self) -> i64 {
        self.0
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_default()
    }

    /// End of the day in milliseconds since the Unix epoch (exclusive).
    pub fn end_ms(&self) -> i64 {
        self.start_ms() + MS_PER_DAY
    }

    /// Whether a CloudWatch `timestamp` (ms) falls in this day.
    pub fn contains_ms(&self, ts_ms: i64) -> bool {
        ts_ms >= self.start_ms() && ts_ms < self.end_ms()
    }

    pub fn succ(&self) -> Day {
        Day(self.0.checked_add_days(Days::new(1)).unwrap_or(self.0))
    }

    pub fn pred(&self) -> Day {
        Day(self.0.checked_sub_days(Days::new(1)).unwrap_or(self.0))
    }

    pub fn add_days(&self, n: i64) -> Day {
        let d = if n >= 0 {
            self.0.checked_add_days(Days::new(n as u64))
        } else {
            self.0.checked_sub_days(Days::new(n.unsigned_abs()))
        };
        Day(d.unwrap_or(self.0))
    }

    /// Today in UTC.
    pub fn today() -> Day {
        Day(chrono::Utc::now().date_naive())
    }

    /// Every day of the inclusive range `[from, to]`.
    pub fn range_inclusive(from: Day, to: Day) -> Vec<Day> {
        let mut out = Vec::new();
        let mut d = from;
        while d <= to {
            out.push(d);
            d = d.succ();
        }
        out
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl FromStr for Day {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Day)
            .map_err(|_| Error::Usage(format!("invalid date {s:?}: expected YYYY-MM-DD")))
    }
}

impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_half_open() {
        let d: Day = "2026-11-01".parse().unwrap();
        assert_eq!(d.start_ms(), 1_793_491_200_000);
        assert!(d.contains_ms(d.start_ms()));
        assert!(!d.contains_ms(d.end_ms()));
        assert!(d.contains_ms(d.end_ms() - 1));
        assert_eq!(d.succ().to_string(), "2026-11-02");
    }

    #[test]
    fn rejects_bad_dates() {
        assert!("2026-13-01".parse::<Day>().is_err());
        assert!("yesterday".parse::<Day>().is_err());
    }
}
