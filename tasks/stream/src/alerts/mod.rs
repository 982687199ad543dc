//! Alert rules (`[[stream.alerts]]`) over sliding windows of the delivered events: an app
//! version's error rate, crashes per minute, the p95 API latency of a platform, an event type
//! going silent. Each rule watches its groups (`group_by`) on their own; an episode (the value
//! above the threshold, then back) notifies once, and not again within the cooldown.
//!
//! The [`Engine`] is fed once per delivered round and evaluated once a second by the service
//! ([`run`]); its clock is the caller's (seconds), so the tests drive it through time. A
//! notification is an event of its own (`event_type = "alert"`), delivered to the rule's
//! `notify` routes (their PII policy, retries and dead letters apply) and listed on the
//! dashboard.

pub mod config;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bitacora_model::model::Event;

pub use config::{AlertConfig, AlertKind, Severity};

use crate::live::{AlertNote, MAX_LABELS, OTHER};
use crate::pipeline::Pipeline;
use crate::routes::{Ticket, matcher};

/// Latency histogram bounds (ms) of the `latency_p95` windows; a p95 is reported as the upper
/// bound of its bucket.
const LATENCY_MS: [f64; 16] = [
    10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0,
    2000.0, 5000.0, 10000.0,
];
/// Buckets per window: a window is kept at this resolution (a 60 s window in 1 s steps).
const STEPS: u64 = 60;

#[derive(Clone, Default)]
struct Bucket {
    /// The bucket's first second; a bucket of an older step is stale.
    start: u64,
    events: u64,
    hits: u64,
    latency: Vec<u32>,
}

/// One group's counts in a round, before they are added to its window.
struct RoundCounts<'e> {
    /// The `group_by` field's value (`(none)` if the event has none; empty without `group_by`).
    value: Cow<'e, str>,
    events: u64,
    hits: u64,
    /// Per [`LATENCY_MS`] bucket, and one past the last bound (`latency_p95` only).
    latency: Vec<u32>,
}

/// One group's window, state and last notification.
struct Group {
    buckets: Vec<Bucket>,
    /// Whether an episode is on.
    firing: bool,
    /// Whether the episode on was notified.
    notified: bool,
    last_notified: Option<u64>,
    last_seen: Option<u64>,
}

struct Rule {
    config: AlertConfig,
    step: u64,
    groups: Mutex<HashMap<String, Group>>,
}

/// What one evaluation found for a rule and group: an episode that began or ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub rule: String,
    pub kind: AlertKind,
    pub severity: Severity,
    /// `field=value` of the group, empty for a rule without `group_by`.
    pub group: String,
    pub firing: bool,
    /// A new episode out of its cooldown: the rule's routes are notified.
    pub notify: bool,
    pub value: f64,
    /// The window held too few events to say (`min_events`): `value` means nothing.
    pub no_data: bool,
    pub threshold: f64,
    /// Events in the window.
    pub events: u64,
    pub window_secs: u64,
    /// The routes to notify.
    pub routes: Vec<String>,
}

impl Transition {
    /// One line for people: what crossed what.
    pub fn summary(&self) -> String {
        let of = if self.group.is_empty() {
            String::new()
        } else {
            format!(" of {}", self.group)
        };
        let w = self.window_secs;
        let (value, threshold) = match self.kind {
            AlertKind::ErrorRate => (
                format!("error rate{of} {:.1}%", self.value * 100.0),
                format!("{:.1}%", self.threshold * 100.0),
            ),
            AlertKind::Count => (
                format!("{} matching events{of}", self.value),
                format!("{}", self.threshold),
            ),
            AlertKind::LatencyP95 => (
                format!("p95 latency{of} {} ms", self.value),
                format!("{} ms", self.threshold),
            ),
            AlertKind::Silence => {
                return match self.firing {
                    true => format!(
                        "{}: no event{of} for {} s (window {w} s)",
                        self.rule, self.value
                    ),
                    false => format!("{}: events{of} again", self.rule),
                };
            }
        };
        match self.firing {
            true => format!(
                "{}: {value} over {w} s is above {threshold} ({} events)",
                self.rule, self.events
            ),
            false if self.no_data => format!(
                "{}: too few events{of} over {w} s to say ({}): ended",
                self.rule, self.events
            ),
            false => format!(
                "{}: {value} over {w} s is back at or below {threshold}",
                self.rule
            ),
        }
    }
}

/// The rules and their windows.
pub struct Engine {
    rules: Vec<Rule>,
}

impl Engine {
    pub fn new(rules: &[AlertConfig]) -> Self {
        Engine {
            rules: rules
                .iter()
                .map(|c| Rule {
                    step: c.window_secs.div_ceil(STEPS).max(1),
                    config: c.clone(),
                    groups: Mutex::new(HashMap::new()),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Counts delivered events at second `now`: each rule's groups are tallied first (a round
    /// has few distinct groups), then added to the windows under the rule's lock, one label each,
    /// in order of first appearance (so that the cap keeps the groups it would keep counting
    /// record by record).
    pub fn observe<'e, 'a: 'e>(&self, now: u64, events: impl IntoIterator<Item = &'e Event<'a>>) {
        let events: Vec<&Event<'_>> = events.into_iter().collect();
        let mut label = String::new();
        for rule in &self.rules {
            let c = &rule.config;
            let mut tally: Vec<RoundCounts<'_>> = Vec::new();
            // Values are the senders': hashed with this process's seed.
            let mut index: HashMap<Cow<'_, str>, usize, bitacora_core::hash::Seeded> =
                HashMap::with_hasher(bitacora_core::hash::Seeded::random());
            for e in &events {
                if !matcher::matches(&c.matches, e) {
                    continue;
                }
                let value = match &c.group_by {
                    Some(f) => matcher::field(e, f).unwrap_or(Cow::Borrowed("(none)")),
                    None => Cow::Borrowed(""),
                };
                let i = match index.get(&value) {
                    Some(&i) => i,
                    None => {
                        tally.push(RoundCounts {
                            value: value.clone(),
                            events: 0,
                            hits: 0,
                            latency: Vec::new(),
                        });
                        index.insert(value, tally.len() - 1);
                        tally.len() - 1
                    }
                };
                let t = &mut tally[i];
                t.events += 1;
                let hit = match c.kind {
                    AlertKind::ErrorRate => match &c.errors {
                        Some(m) => matcher::matches(m, e),
                        None => crate::live::is_error(e),
                    },
                    _ => true,
                };
                t.hits += u64::from(hit);
                if c.kind == AlertKind::LatencyP95
                    && let Some(ms) = e.latency_ms
                {
                    if t.latency.is_empty() {
                        t.latency = vec![0; LATENCY_MS.len() + 1];
                    }
                    let i = LATENCY_MS
                        .iter()
                        .position(|bound| ms as f64 <= *bound)
                        .unwrap_or(LATENCY_MS.len());
                    t.latency[i] += 1;
                }
            }
            if tally.is_empty() {
                continue;
            }
            let slots = c.window_secs.div_ceil(rule.step) as usize;
            let start = now - now % rule.step;
            let mut groups = rule
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for t in tally {
                label.clear();
                if let Some(f) = &c.group_by {
                    let _ = write!(label, "{f}={}", t.value);
                    if !groups.contains_key(&label) && groups.len() >= MAX_LABELS {
                        label.clear();
                        let _ = write!(label, "{f}={OTHER}");
                    }
                }
                if !groups.contains_key(&label) {
                    groups.insert(
                        label.clone(),
                        Group {
                            buckets: vec![Bucket::default(); slots],
                            firing: false,
                            notified: false,
                            last_notified: None,
                            last_seen: None,
                        },
                    );
                }
                let Some(g) = groups.get_mut(&label) else {
                    continue;
                };
                g.last_seen = Some(now);
                let b = &mut g.buckets[((now / rule.step) % slots as u64) as usize];
                if b.start != start || b.events == 0 {
                    *b = Bucket {
                        start,
                        ..Default::default()
                    };
                }
                b.events += t.events;
                b.hits += t.hits;
                if !t.latency.is_empty() {
                    if b.latency.is_empty() {
                        b.latency = vec![0; LATENCY_MS.len() + 1];
                    }
                    for (into, n) in b.latency.iter_mut().zip(&t.latency) {
                        *into += n;
                    }
                }
            }
        }
    }

    /// Evaluates every rule and group at second `now`: the episodes that began or ended.
    pub fn evaluate(&self, now: u64) -> Vec<Transition> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let c = &rule.config;
            let mut groups = rule
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let threshold = c.threshold.unwrap_or(0.0);
            for (label, g) in groups.iter_mut() {
                // The window: the buckets that began after now - window (at the step's
                // resolution, the current one included).
                let oldest = (now - now % rule.step + rule.step).saturating_sub(c.window_secs);
                let live = g
                    .buckets
                    .iter()
                    .filter(|b| b.events > 0 && b.start >= oldest);
                let (mut events, mut hits) = (0u64, 0u64);
                let mut latency = vec![0u64; LATENCY_MS.len() + 1];
                for b in live {
                    events += b.events;
                    hits += b.hits;
                    for (acc, n) in latency.iter_mut().zip(&b.latency) {
                        *acc += u64::from(*n);
                    }
                }
                let value = match c.kind {
                    AlertKind::ErrorRate => {
                        (events >= c.min_events.max(1)).then(|| hits as f64 / events as f64)
                    }
                    AlertKind::Count => Some(events as f64),
                    AlertKind::LatencyP95 => {
                        let n: u64 = latency.iter().sum();
                        (n >= c.min_events.max(1)).then(|| p95(&latency, n))
                    }
                    AlertKind::Silence => g.last_seen.map(|s| now.saturating_sub(s) as f64),
                };
                let above = match c.kind {
                    AlertKind::Silence => value.is_some_and(|quiet| quiet >= c.window_secs as f64),
                    _ => value.is_some_and(|v| v > threshold),
                };
                let cooled = g
                    .last_notified
                    .is_none_or(|t| now.saturating_sub(t) >= c.cooldown_secs);
                let (firing, notify) = match (g.firing, above) {
                    // A new episode: notified unless the last notification is too recent.
                    (false, true) => (true, cooled),
                    // Back: resolved (never notified).
                    (true, false) => (false, false),
                    // Still on, begun within the cooldown and not notified: notified once the
                    // cooldown is over (a long outage is not kept quiet by an earlier blip).
                    (true, true) if !g.notified && cooled => (true, true),
                    _ => continue,
                };
                g.firing = firing;
                if notify {
                    g.last_notified = Some(now);
                }
                g.notified = firing && (notify || g.notified);
                out.push(Transition {
                    rule: c.name.clone(),
                    kind: c.kind,
                    severity: c.severity,
                    group: label.clone(),
                    firing,
                    notify,
                    value: value.unwrap_or(0.0),
                    no_data: value.is_none(),
                    threshold,
                    events,
                    window_secs: c.window_secs,
                    routes: c.notify.clone(),
                });
            }
            // Groups gone quiet and not firing are dropped (new values get their place under
            // MAX_LABELS); a silence rule keeps its groups: their quiet is what it watches.
            if c.kind != AlertKind::Silence {
                groups.retain(|_, g| {
                    g.firing || g.last_seen.is_some_and(|s| s + c.window_secs > now)
                });
            }
        }
        out
    }

    /// Groups whose episode is on, per rule.
    pub fn firing(&self) -> Vec<(String, usize)> {
        self.rules
            .iter()
            .map(|r| {
                let groups = r
                    .groups
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (
                    r.config.name.clone(),
                    groups.values().filter(|g| g.firing).count(),
                )
            })
            .collect()
    }
}

/// The p95 of a latency histogram holding `n` values, interpolated within its bucket (as
/// Prometheus' `histogram_quantile`); past the last bound: the last bound.
fn p95(counts: &[u64], n: u64) -> f64 {
    let want = n as f64 * 0.95;
    let (mut below, mut lower) = (0u64, 0.0);
    for (i, c) in counts.iter().enumerate() {
        let Some(&upper) = LATENCY_MS.get(i) else {
            break;
        };
        if (below + c) as f64 >= want {
            let f = if *c == 0 {
                1.0
            } else {
                (want - below as f64) / *c as f64
            };
            return lower + (upper - lower) * f;
        }
        below += c;
        lower = upper;
    }
    LATENCY_MS[LATENCY_MS.len() - 1]
}

/// The alert's own event: `event_type = "alert"`, `level` by severity, the summary as its
/// message, the numbers in `properties`.
pub fn alert_event(t: &Transition, now_ms: i64, log_group: &str) -> Event<'static> {
    use std::borrow::Cow;
    let (field, value) = t.group.split_once('=').unwrap_or(("", ""));
    let properties = serde_json::json!({
        "rule": t.rule,
        "kind": t.kind.name(),
        "severity": t.severity.name(),
        "group": t.group,
        "value": t.value,
        "threshold": t.threshold,
        "events": t.events,
        "window_secs": t.window_secs,
    });
    let own = |s: &str| Some(Cow::Owned(s.to_string()));
    Event {
        event_id: Cow::Owned(format!("alert-{}-{}-{now_ms}", t.rule, t.group)),
        event_time: now_ms * 1000,
        ingest_time: Some(now_ms * 1000),
        log_group: Cow::Owned(log_group.to_string()),
        log_stream: Cow::Borrowed("bitacora-alerts"),
        level: own(t.severity.level()),
        event_type: own("alert"),
        app_version: (field == "app_version").then(|| Cow::Owned(value.to_string())),
        platform: (field == "platform").then(|| Cow::Owned(value.to_string())),
        error_code: own(&t.rule),
        message: Some(Cow::Owned(t.summary())),
        properties: Some(Cow::Owned(properties.to_string())),
        ..Default::default()
    }
}

/// Evaluates the pipeline's rules once a second until the pipeline is dropped: lists each
/// transition on the dashboard and delivers each notification to its routes.
pub async fn run(pipeline: Weak<Pipeline>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = Arc::new(tokio::sync::Semaphore::new(NOTIFYING));
    loop {
        tick.tick().await;
        let Some(p) = pipeline.upgrade() else { return };
        let Some(engine) = &p.alerts else { return };
        let now_ms = crate::record::now_ms();
        for t in engine.evaluate((now_ms / 1000) as u64) {
            let summary = t.summary();
            match (t.firing, t.notify) {
                (true, true) => tracing::warn!("alert {}: {summary}", t.severity.name()),
                (true, false) => {
                    tracing::info!("alert (cooling down, not notified yet): {summary}")
                }
                (false, _) => tracing::info!("alert resolved: {summary}"),
            }
            p.metrics.live.note_alert(AlertNote {
                time_ms: now_ms,
                rule: t.rule.clone(),
                severity: t.severity.name().into(),
                group: t.group.clone(),
                state: if t.firing { "firing" } else { "resolved" },
                notified: t.notify,
                value: t.value,
                threshold: t.threshold,
                summary,
            });
            if t.notify {
                p.metrics.alerts_notified.fetch_add(1, Relaxed);
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let p = p.clone();
                        tokio::spawn(async move {
                            notify(p, t, now_ms).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        tracing::error!(
                            "alert {}: {NOTIFYING} notifications are still being delivered: this one is dropped",
                            t.rule
                        );
                        p.metrics.alert_notify_failures.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        for (rule, n) in engine.firing() {
            p.metrics.set_alert_firing(&rule, n as u64);
        }
    }
}

/// Notifications being delivered at once, at most; past it a notification is dropped and
/// counted (a route that cannot keep up must not pile up tasks).
const NOTIFYING: usize = 64;

/// Delivers one notification to its routes; a route that cannot take it is logged and counted
/// once (the route's own retries and dead letters apply first).
async fn notify(p: Arc<Pipeline>, t: Transition, now_ms: i64) {
    let event = alert_event(&t, now_ms, p.normalizer.log_group());
    let ticket = Ticket::new();
    let mut refused = false;
    for name in &t.routes {
        let Some(route) = p.routes.iter().find(|r| &r.name == name) else {
            continue;
        };
        let sent = match route.render(&event) {
            Ok(record) => route.enqueue(record, ticket.done()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::error!("alert {}: route {name}: {e}", t.rule);
            refused = true;
        }
    }
    if !ticket.wait().await || refused {
        tracing::error!(
            "alert {}: a notify route did not take the alert ({})",
            t.rule,
            t.routes.join(", ")
        );
        p.metrics.alert_notify_failures.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn rule(text: &str) -> AlertConfig {
        let c: AlertConfig = toml::from_str(text).unwrap();
        c.validate(0, &["oncall"]).unwrap();
        c
    }

    fn event(kind: &str, version: &str, level: &str, latency: Option<i64>) -> Event<'static> {
        Event {
            event_type: Some(Cow::Owned(kind.into())),
            app_version: Some(Cow::Owned(version.into())),
            platform: Some(Cow::Borrowed("ios")),
            level: Some(Cow::Owned(level.into())),
            latency_ms: latency,
            ..Default::default()
        }
    }

    /// Drives `engine` second by second: `traffic(s)` is what second `s` delivers; returns the
    /// seconds at which it notified, and at which an episode began or ended.
    fn drive(
        engine: &Engine,
        seconds: std::ops::Range<u64>,
        traffic: impl Fn(u64) -> Vec<Event<'static>>,
    ) -> (Vec<u64>, Vec<(u64, bool)>) {
        let (mut notified, mut changes) = (Vec::new(), Vec::new());
        for s in seconds {
            engine.observe(s, &traffic(s));
            for t in engine.evaluate(s) {
                if t.notify {
                    notified.push(s);
                }
                changes.push((s, t.firing));
            }
        }
        (notified, changes)
    }

    /// 50 events a second of version 3.2.0, `bad` of them errors.
    fn errors_per_second(bad: usize) -> Vec<Event<'static>> {
        (0..50)
            .map(|i| {
                event(
                    "api_call",
                    "3.2.0",
                    if i < bad { "ERROR" } else { "INFO" },
                    None,
                )
            })
            .collect()
    }

    #[test]
    fn an_error_rate_episode_notifies_once_and_a_new_one_within_the_cooldown_does_not() {
        let engine = Engine::new(&[rule(
            "name = \"errors\"\nkind = \"error_rate\"\ngroup_by = \"app_version\"\nthreshold = 0.05\nwindow_secs = 10\ncooldown_secs = 60\nnotify = [\"oncall\"]\n",
        )]);
        // Healthy (2%), bad (20%) from 20 s, healthy from 40 s, bad again from 60 s (within
        // the cooldown of the first notification at ~21 s + 60), healthy from 70 s, bad again
        // from 100 s (out of the cooldown).
        let bad = |s: u64| matches!(s, 20..40 | 60..70 | 100..120);
        let (notified, changes) = drive(&engine, 0..130, |s| {
            errors_per_second(if bad(s) { 10 } else { 1 })
        });
        assert_eq!(notified.len(), 2, "{notified:?} {changes:?}");
        assert!((20..25).contains(&notified[0]), "{notified:?}");
        assert!((100..105).contains(&notified[1]), "{notified:?}");
        // Three episodes, each begun and ended once: no flapping inside one.
        let begun: Vec<_> = changes.iter().filter(|c| c.1).map(|c| c.0).collect();
        let ended: Vec<_> = changes.iter().filter(|c| !c.1).map(|c| c.0).collect();
        assert_eq!(begun.len(), 3, "{changes:?}");
        assert_eq!(ended.len(), 3, "{changes:?}");
        assert!(begun.iter().zip(&ended).all(|(b, e)| b < e));
    }

    #[test]
    fn an_episode_begun_within_the_cooldown_is_notified_when_the_cooldown_ends() {
        let engine = Engine::new(&[rule(
            "name = \"errors\"\nkind = \"error_rate\"\nthreshold = 0.05\nwindow_secs = 5\ncooldown_secs = 30\nnotify = [\"oncall\"]\n",
        )]);
        // A blip at 0..3 s (notified), then a long outage from 15 s: quiet until the cooldown
        // of the first notification ends, then notified once.
        let (notified, changes) = drive(&engine, 0..120, |s| {
            errors_per_second(if !(3..15).contains(&s) { 20 } else { 0 })
        });
        assert_eq!(notified.len(), 2, "{changes:?}");
        assert_eq!(notified[1], notified[0] + 30, "{notified:?}");
        assert!(
            changes.iter().all(|c| c.0 < 10 || c.1),
            "no resolve during the outage: {changes:?}"
        );
    }

    #[test]
    fn quiet_groups_make_room_for_new_ones() {
        let engine = Engine::new(&[rule(
            "name = \"errors\"\nkind = \"error_rate\"\ngroup_by = \"app_version\"\nthreshold = 0.5\nwindow_secs = 10\nmin_events = 1\nnotify = [\"oncall\"]\n",
        )]);
        let versions: Vec<_> = (0..MAX_LABELS)
            .map(|i| event("tap", &format!("1.{i}"), "INFO", None))
            .collect();
        engine.observe(0, &versions);
        engine.evaluate(0);
        // Later the old versions are quiet (dropped at an evaluation): a new one is its own group.
        assert!(engine.evaluate(15).is_empty());
        engine.observe(20, &[event("tap", "2.0", "ERROR", None)]);
        let fired = engine.evaluate(20);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].group, "app_version=2.0");
    }

    #[test]
    fn groups_are_watched_on_their_own() {
        let engine = Engine::new(&[rule(
            "name = \"errors\"\nkind = \"error_rate\"\ngroup_by = \"app_version\"\nthreshold = 0.1\nwindow_secs = 5\nnotify = [\"oncall\"]\n",
        )]);
        let mut batch = errors_per_second(25);
        batch.extend((0..50).map(|_| event("api_call", "3.1.1", "INFO", None)));
        engine.observe(100, &batch);
        let fired = engine.evaluate(100);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].group, "app_version=3.2.0");
        assert!((fired[0].value - 0.5).abs() < 1e-9);
        assert!(
            fired[0]
                .summary()
                .contains("error rate of app_version=3.2.0 50.0%"),
            "{}",
            fired[0].summary()
        );
        let ev = alert_event(&fired[0], 100_000, "/mobile/app");
        assert_eq!(ev.event_type.as_deref(), Some("alert"));
        assert_eq!(ev.app_version.as_deref(), Some("3.2.0"));
        assert_eq!(ev.level.as_deref(), Some("WARN"));
    }

    #[test]
    fn too_few_events_say_nothing() {
        let engine = Engine::new(&[rule(
            "name = \"errors\"\nkind = \"error_rate\"\nthreshold = 0.05\nmin_events = 20\nnotify = [\"oncall\"]\n",
        )]);
        engine.observe(5, &errors_per_second(50)[..19]);
        assert!(engine.evaluate(5).is_empty());
        engine.observe(6, &errors_per_second(50)[..1]);
        assert_eq!(engine.evaluate(6).len(), 1);
    }

    #[test]
    fn crashes_per_minute_cross_and_recross() {
        let engine = Engine::new(&[rule(
            "name = \"crashes\"\nkind = \"count\"\nthreshold = 30\nwindow_secs = 60\ncooldown_secs = 0\nmatch = { event_type = \"crash\" }\nnotify = [\"oncall\"]\n",
        )]);
        // One crash a second is 60 a minute (above 30); none for a minute brings it back.
        let (notified, changes) = drive(&engine, 0..400, |s| {
            let crashing = matches!(s, 0..100 | 200..300);
            let mut v = vec![event("tap", "1", "INFO", None); 5];
            if crashing {
                v.push(event("crash", "1", "ERROR", None));
            }
            v
        });
        assert_eq!(notified.len(), 2, "{changes:?}");
        assert!((30..33).contains(&notified[0]), "{notified:?}");
        assert!((230..233).contains(&notified[1]), "{notified:?}");
        let ended: Vec<_> = changes.iter().filter(|c| !c.1).map(|c| c.0).collect();
        assert_eq!(ended.len(), 2, "{changes:?}");
        assert!((128..133).contains(&ended[0]), "{ended:?}");
    }

    #[test]
    fn p95_latency_by_platform() {
        let engine = Engine::new(&[rule(
            "name = \"slow\"\nkind = \"latency_p95\"\ngroup_by = \"platform\"\nthreshold = 500\nwindow_secs = 10\nmatch = { event_type = \"api_call\" }\nnotify = [\"oncall\"]\n",
        )]);
        // 100 calls a second; from 20 s on, 10 of them take 2 s (p95 2000 ms).
        let (notified, changes) = drive(&engine, 0..60, |s| {
            (0..100)
                .map(|i| {
                    let slow = (20..40).contains(&s) && i < 10;
                    event("api_call", "1", "INFO", Some(if slow { 2000 } else { 120 }))
                })
                .collect()
        });
        assert_eq!(notified.len(), 1, "{changes:?}");
        // 10% of a second's calls are slow: the window's share passes 5% on its sixth second.
        assert!((24..27).contains(&notified[0]), "{notified:?}");
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!((40..52).contains(&changes[1].0), "{changes:?}");
    }

    #[test]
    fn an_event_type_going_silent() {
        let engine = Engine::new(&[rule(
            "name = \"no purchases\"\nkind = \"silence\"\ngroup_by = \"event_type\"\nwindow_secs = 30\ncooldown_secs = 0\nmatch = { event_type = [\"purchase\", \"signup\"] }\nnotify = [\"oncall\"]\n",
        )]);
        // Nothing is said about a type never seen (signup); purchases stop at 50 s, resume at
        // 120 s.
        let (notified, changes) = drive(&engine, 0..200, |s| {
            let mut v = vec![event("tap", "1", "INFO", None)];
            if !(50..120).contains(&s) {
                v.push(event("purchase", "1", "INFO", None));
            }
            v
        });
        assert_eq!(notified, [79], "{changes:?}");
        assert_eq!(changes, [(79, true), (120, false)]);
    }
}
