//! What the live dashboard shows beyond the service's counters: events by type, events and
//! errors by app version, the latest errors and alerts. Fed once per delivered round (one lock
//! per round, not per record); read by `/metrics`, `/api/live` and its event stream.
//!
//! Labels come from the records, so their number is capped: past [`MAX_LABELS`] distinct values
//! of a field, new ones are counted under [`OTHER`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use bitacora_model::model::Event;
use serde::Serialize;

/// Distinct values kept per field.
pub const MAX_LABELS: usize = 64;
/// The label of the values past [`MAX_LABELS`].
pub const OTHER: &str = "(other)";
/// Latest errors and alerts kept.
pub const LATEST: usize = 20;

/// Events and errors of one app version.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct VersionCounts {
    pub events: u64,
    pub errors: u64,
}

/// One of the latest errors, as the dashboard lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecentError {
    /// Event time, ms since the epoch.
    pub event_time_ms: i64,
    pub app_version: String,
    pub platform: String,
    pub event_type: String,
    pub level: String,
    pub error_code: String,
    /// The message's text, at most 200 characters.
    pub message: String,
}

/// An alert as the dashboard lists it (the alert's event carries the same fields).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertNote {
    pub time_ms: i64,
    pub rule: String,
    pub severity: String,
    /// The group the rule watches (`app_version=3.2.0`), empty when it watches everything.
    pub group: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    /// Whether a notification was sent (a new episode out of its cooldown).
    pub notified: bool,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
}

#[derive(Default)]
struct Inner {
    event_types: BTreeMap<String, u64>,
    app_versions: BTreeMap<String, VersionCounts>,
    errors: VecDeque<RecentError>,
    alerts: VecDeque<AlertNote>,
}

/// The aggregates (see the module's documentation).
#[derive(Default)]
pub struct Live {
    inner: Mutex<Inner>,
}

/// What the dashboard reads of [`Live`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveView {
    pub event_types: BTreeMap<String, u64>,
    pub app_versions: BTreeMap<String, VersionCounts>,
    pub latest_errors: Vec<RecentError>,
    pub latest_alerts: Vec<AlertNote>,
}

/// Whether the dashboard counts an event as an error: level `ERROR` or `FATAL`, or event type
/// `crash` or `error`.
pub fn is_error(e: &Event<'_>) -> bool {
    let level = e.level.as_deref().unwrap_or_default();
    level.eq_ignore_ascii_case("ERROR")
        || level.eq_ignore_ascii_case("FATAL")
        || matches!(e.event_type.as_deref(), Some("crash" | "error"))
}

/// The map's entry for `label`, or [`OTHER`]'s once the map is full.
/// Two lookups for a label already counted (the hot path), a third when it is new.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, label: &str) -> &'m mut V {
    if map.contains_key(label) {
        return map.get_mut(label).expect("checked above");
    }
    let key = if map.len() < MAX_LABELS { label } else { OTHER };
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Counts of a round's labels (events, errors), in order of first appearance.
struct Tally<'e> {
    counts: Vec<(&'e str, u64, u64)>,
    index: std::collections::HashMap<&'e str, usize, bitacora_core::hash::Seeded>,
}

impl Default for Tally<'_> {
    fn default() -> Self {
        Tally {
            counts: Vec::new(),
            // Labels are the senders': hashed with this process's seed.
            index: std::collections::HashMap::with_hasher(bitacora_core::hash::Seeded::random()),
        }
    }
}

impl<'e> Tally<'e> {
    fn add(&mut self, label: &'e str, error: bool) {
        let i = *self.index.entry(label).or_insert_with(|| {
            self.counts.push((label, 0, 0));
            self.counts.len() - 1
        });
        self.counts[i].1 += 1;
        self.counts[i].2 += u64::from(error);
    }
}

fn text(v: &Option<std::borrow::Cow<'_, str>>) -> String {
    v.as_deref().unwrap_or_default().to_string()
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts delivered events: tallied here first (a round has few distinct labels), then
    /// added to the aggregates under the lock, label by label in order of first appearance (so
    /// that the cap keeps the labels it would keep counting record by record).
    pub fn observe<'e, 'a: 'e>(&self, events: impl IntoIterator<Item = &'e Event<'a>>) {
        let mut types = Tally::default();
        let mut versions = Tally::default();
        // Only the latest LATEST errors are kept: the others are counted, not copied.
        let mut errors: std::collections::VecDeque<&Event<'a>> = Default::default();
        for e in events {
            types.add(e.event_type.as_deref().unwrap_or("(none)"), false);
            let error = is_error(e);
            versions.add(e.app_version.as_deref().unwrap_or("(none)"), error);
            if error {
                if errors.len() == LATEST {
                    errors.pop_front();
                }
                errors.push_back(e);
            }
        }
        if types.counts.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (label, n, _) in types.counts {
            *entry(&mut inner.event_types, label) += n;
        }
        for (label, n, errs) in versions.counts {
            let v = entry(&mut inner.app_versions, label);
            v.events += n;
            v.errors += errs;
        }
        for e in errors {
            if inner.errors.len() == LATEST {
                inner.errors.pop_front();
            }
            let message = e
                .message
                .as_deref()
                .or(e.error_code.as_deref())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            inner.errors.push_back(RecentError {
                event_time_ms: e.event_time.div_euclid(1000),
                app_version: text(&e.app_version),
                platform: text(&e.platform),
                event_type: text(&e.event_type),
                level: text(&e.level),
                error_code: text(&e.error_code),
                message,
            });
        }
    }

    /// Lists an alert (fired or resolved).
    pub fn note_alert(&self, note: AlertNote) {
        let mut inner = self.lock();
        if inner.alerts.len() == LATEST {
            inner.alerts.pop_front();
        }
        inner.alerts.push_back(note);
    }

    /// A copy of the aggregates, latest first in the lists.
    pub fn view(&self) -> LiveView {
        let inner = self.lock();
        LiveView {
            event_types: inner.event_types.clone(),
            app_versions: inner.app_versions.clone(),
            latest_errors: inner.errors.iter().rev().cloned().collect(),
            latest_alerts: inner.alerts.iter().rev().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn event(kind: &str, version: &str, level: &str) -> Event<'static> {
        Event {
            event_type: Some(Cow::Owned(kind.into())),
            app_version: Some(Cow::Owned(version.into())),
            level: Some(Cow::Owned(level.into())),
            ..Default::default()
        }
    }

    #[test]
    fn counts_events_by_type_and_errors_by_version_latest_first() {
        let live = Live::default();
        let batch = [
            event("api_call", "3.2.0", "INFO"),
            event("error", "3.2.0", "ERROR"),
            event("screen_view", "3.1.1", "error"),
            event("tap", "3.1.1", "INFO"),
        ];
        live.observe(&batch);
        live.observe(&batch[..1]);
        let v = live.view();
        assert_eq!(v.event_types["api_call"], 2);
        assert_eq!(v.event_types["error"], 1);
        assert_eq!(
            v.app_versions["3.2.0"],
            VersionCounts {
                events: 3,
                errors: 1
            }
        );
        assert_eq!(
            v.app_versions["3.1.1"],
            VersionCounts {
                events: 2,
                errors: 1
            }
        );
        let kinds: Vec<_> = v
            .latest_errors
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(kinds, ["screen_view", "error"]);
    }

    #[test]
    fn labels_past_the_cap_are_counted_as_other_and_lists_keep_the_latest() {
        let live = Live::default();
        let mut many: Vec<_> = (0..MAX_LABELS + 10)
            .map(|i| event(&format!("t{i}"), "1", "ERROR"))
            .collect();
        // Labels seen again in the same round: a kept one is counted under its name, one past
        // the cap under OTHER (the first labels to appear are the ones kept).
        many.push(event("t0", "1", "INFO"));
        many.push(event(&format!("t{}", MAX_LABELS + 2), "1", "INFO"));
        many.push(event(&format!("t{}", MAX_LABELS + 9), "1", "ERROR"));
        live.observe(&many);
        let v = live.view();
        assert_eq!(v.event_types.len(), MAX_LABELS + 1);
        assert_eq!(v.event_types["t0"], 2);
        assert_eq!(v.event_types[&format!("t{}", MAX_LABELS - 1)], 1);
        assert!(!v.event_types.contains_key(&format!("t{MAX_LABELS}")));
        assert_eq!(v.event_types[OTHER], 12);
        assert_eq!(v.event_types.values().sum::<u64>(), many.len() as u64);
        assert_eq!(
            v.app_versions["1"],
            VersionCounts {
                events: many.len() as u64,
                errors: many.len() as u64 - 2
            }
        );
        assert_eq!(v.latest_errors.len(), LATEST);
        assert_eq!(
            v.latest_errors[0].event_type,
            format!("t{}", MAX_LABELS + 9)
        );
        assert_eq!(
            v.latest_errors[1].event_type,
            format!("t{}", MAX_LABELS + 9)
        );
        assert_eq!(
            v.latest_errors[2].event_type,
            format!("t{}", MAX_LABELS + 8)
        );
    }
}
