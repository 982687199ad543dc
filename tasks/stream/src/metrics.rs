//! The service's counters and histograms, rendered in Prometheus' text format at `/metrics`.
//! Plain atomics: the hot path adds to a few counters per batch, never takes a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, secs: f64) {
        self.observe_n(secs, 1);
    }

    /// `n` observations of `secs` at once.
    pub fn observe_n(&self, secs: f64, n: u64) {
        if n == 0 {
            return;
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i].fetch_add(n, Relaxed);
            }
        }
        self.count.fetch_add(n, Relaxed);
        self.sum_us
            .fetch_add(((secs * 1e6) as u64).saturating_mul(n), Relaxed);
    }

    /// The buckets' upper bounds (seconds), their cumulative counts, and the count.
    pub fn snapshot(&self) -> (&'static [f64], Vec<u64>, u64) {
        let counts = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        (&BUCKETS, counts, self.count.load(Relaxed))
    }

    /// The `q` quantile (0..1) estimated from the buckets (their upper bound), `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count.load(Relaxed);
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            if self.counts[i].load(Relaxed) >= want {
                return Some(*b);
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i].load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Per route.
#[derive(Default)]
pub struct RouteMetrics {
    pub name: String,
    pub delivered: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub failed_sends: AtomicU64,
    /// Records neither delivered nor taken by the dead letters (their batch fails: resent).
    pub dead_letter_failures: AtomicU64,
    pub retried_records: AtomicU64,
    pub buffered: AtomicU64,
    pub latency: Histogram,
}

/// A labelled series: its name, help, the counter or gauge of one item, and its type.
type Series<T> = (
    &'static str,
    &'static str,
    fn(&T) -> &AtomicU64,
    &'static str,
);

/// Renders each series once, with one line per item labelled `label="…"`.
fn render_labelled<T>(
    out: &mut String,
    series: &[Series<T>],
    label: &str,
    items: &[Arc<T>],
    label_of: fn(&T) -> &str,
) {
    for (name, help, get, kind) in series {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for item in items {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{}\"}} {}",
                label_of(item),
                get(item).load(Relaxed)
            );
        }
    }
}

/// Per Kinesis shard.
#[derive(Default)]
pub struct ShardMetrics {
    pub shard: String,
    pub records_in: AtomicU64,
    /// `MillisBehindLatest` of the last GetRecords.
    pub millis_behind: AtomicU64,
    /// 1 while this instance holds the shard's lease.
    pub leased: AtomicU64,
    pub throttled: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    shards: Mutex<Vec<Arc<ShardMetrics>>>,
    pub records_in: AtomicU64,
    pub batches_in: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    pub unrouted: AtomicU64,
    pub rejected_batches_full: AtomicU64,
    pub failed_batches: AtomicU64,
    pub in_flight_records: AtomicU64,
    pub dedup_errors: AtomicU64,
    pub dedup_in_flight_waits: AtomicU64,
    pub dedup_commit_failures: AtomicU64,
    /// Claims renewed by batches delivering for longer than a third of claim_secs.
    pub dedup_renewals: AtomicU64,
    /// Receive → every route accepted (seconds).
    pub batch_latency: Histogram,
    routes: Mutex<Vec<Arc<RouteMetrics>>>,
    /// Delivered events by type and app version, the latest errors and alerts.
    pub live: crate::live::Live,
    /// Alert notifications sent (new episodes out of their cooldown).
    pub alerts_notified: AtomicU64,
    /// Alert notifications a notify route did not take.
    pub alert_notify_failures: AtomicU64,
    /// Groups whose episode is on, per rule.
    alerts_firing: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = routes.iter().find(|r| r.name == name) {
            return r.clone();
        }
        let r = Arc::new(RouteMetrics {
            name: name.to_string(),
            ..Default::default()
        });
        routes.push(r.clone());
        r
    }

    pub fn shard(&self, shard: &str) -> Arc<ShardMetrics> {
        let mut shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = shards.iter().find(|s| s.shard == shard) {
            return s.clone();
        }
        let s = Arc::new(ShardMetrics {
            shard: shard.to_string(),
            ..Default::default()
        });
        shards.push(s.clone());
        s
    }

    fn render_shards(&self, out: &mut String) {
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if shards.is_empty() {
            return;
        }
        let series: [Series<ShardMetrics>; 4] = [
            (
                "bitacora_stream_shard_records_in_total",
                "Records read from a Kinesis shard",
                |s| &s.records_in,
                "counter",
            ),
            (
                "bitacora_stream_shard_millis_behind_latest",
                "MillisBehindLatest of a shard's last GetRecords",
                |s| &s.millis_behind,
                "gauge",
            ),
            (
                "bitacora_stream_shard_leased",
                "1 while this instance holds the shard's lease",
                |s| &s.leased,
                "gauge",
            ),
            (
                "bitacora_stream_shard_throttled_total",
                "GetRecords calls throttled (ProvisionedThroughputExceeded)",
                |s| &s.throttled,
                "counter",
            ),
        ];
        render_labelled(out, &series, "shard", &shards, |s| &s.shard);
    }

    pub fn set_alert_firing(&self, rule: &str, groups: u64) {
        let mut firing = self
            .alerts_firing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        firing.insert(rule.to_string(), groups);
    }

    pub fn alerts_firing(&self) -> std::collections::BTreeMap<String, u64> {
        self.alerts_firing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn shards(&self) -> Vec<Arc<ShardMetrics>> {
        self.shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The live view's series: events by type, events and errors by app version, alerts.
    fn render_live(&self, out: &mut String) {
        let view = self.live.view();
        let types = view.event_types.iter().map(|(k, n)| (k.as_str(), *n));
        counters(
            out,
            "bitacora_stream_events_total",
            "Delivered events by event type",
            "event_type",
            types,
        );
        let versions = &view.app_versions;
        counters(
            out,
            "bitacora_stream_app_version_events_total",
            "Delivered events by app version",
            "app_version",
            versions.iter().map(|(v, c)| (v.as_str(), c.events)),
        );
        counters(
            out,
            "bitacora_stream_app_version_errors_total",
            "Delivered errors (level ERROR/FATAL, type crash/error) by app version",
            "app_version",
            versions.iter().map(|(v, c)| (v.as_str(), c.errors)),
        );
        let _ = writeln!(
            out,
            "# HELP bitacora_stream_alerts_notified_total Alert notifications sent.\n# TYPE bitacora_stream_alerts_notified_total counter\nbitacora_stream_alerts_notified_total {}",
            self.alerts_notified.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bitacora_stream_alert_notify_failures_total Alert notifications a notify route did not take.\n# TYPE bitacora_stream_alert_notify_failures_total counter\nbitacora_stream_alert_notify_failures_total {}",
            self.alert_notify_failures.load(Relaxed)
        );
        let firing = self.alerts_firing();
        if !firing.is_empty() {
            let _ = writeln!(
                out,
                "# HELP bitacora_stream_alert_firing Groups of a rule whose episode is on.\n# TYPE bitacora_stream_alert_firing gauge"
            );
            for (rule, n) in firing {
                let _ = writeln!(
                    out,
                    "bitacora_stream_alert_firing{{rule=\"{}\"}} {n}",
                    label(&rule)
                );
            }
        }
    }

    pub fn routes(&self) -> Vec<Arc<RouteMetrics>> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 12] = [
            (
                "bitacora_stream_records_in_total",
                "Records received",
                &self.records_in,
            ),
            (
                "bitacora_stream_batches_in_total",
                "Batches received",
                &self.batches_in,
            ),
            (
                "bitacora_stream_accepted_total",
                "New records handed to the routes",
                &self.accepted,
            ),
            (
                "bitacora_stream_duplicates_total",
                "Records dropped as duplicates (seen within the TTL)",
                &self.duplicates,
            ),
            (
                "bitacora_stream_quarantined_total",
                "Records that cannot be trusted, sent to the quarantine",
                &self.quarantined,
            ),
            (
                "bitacora_stream_unrouted_total",
                "New records no route matched",
                &self.unrouted,
            ),
            (
                "bitacora_stream_batches_refused_full_total",
                "Batches refused because the queue was full (429)",
                &self.rejected_batches_full,
            ),
            (
                "bitacora_stream_batches_failed_total",
                "Batches not acknowledged (the sender sends them again)",
                &self.failed_batches,
            ),
            (
                "bitacora_stream_dedup_errors_total",
                "Dedup store errors (retried)",
                &self.dedup_errors,
            ),
            (
                "bitacora_stream_dedup_in_flight_waits_total",
                "Waits for a copy another batch was delivering",
                &self.dedup_in_flight_waits,
            ),
            (
                "bitacora_stream_dedup_commit_failures_total",
                "Delivered records whose seen mark could not be written",
                &self.dedup_commit_failures,
            ),
            (
                "bitacora_stream_dedup_claim_renewals_total",
                "Claim renewals of batches delivering for longer than a third of claim_secs",
                &self.dedup_renewals,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name}{{source=\"{source}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP bitacora_stream_queue_records Records in flight (accepted, not yet acknowledged).\n# TYPE bitacora_stream_queue_records gauge\nbitacora_stream_queue_records {}",
            self.in_flight_records.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP bitacora_stream_batch_latency_seconds Receive to every route accepted.\n# TYPE bitacora_stream_batch_latency_seconds histogram"
        );
        self.batch_latency.render(
            &mut out,
            "bitacora_stream_batch_latency_seconds",
            &format!("source=\"{source}\""),
        );
        let routes = self.routes();
        let per_route: [Series<RouteMetrics>; 6] = [
            (
                "bitacora_stream_route_delivered_total",
                "Records a route's sink took",
                |r| &r.delivered,
                "counter",
            ),
            (
                "bitacora_stream_route_dead_lettered_total",
                "Records written to a route's dead letters",
                |r| &r.dead_lettered,
                "counter",
            ),
            (
                "bitacora_stream_route_dead_letter_failures_total",
                "Records the dead letters did not take either (their batch is refused and sent again)",
                |r| &r.dead_letter_failures,
                "counter",
            ),
            (
                "bitacora_stream_route_send_failures_total",
                "Failed sends to a route's sink (retried)",
                |r| &r.failed_sends,
                "counter",
            ),
            (
                "bitacora_stream_route_retried_records_total",
                "Records sent again to a route's sink",
                |r| &r.retried_records,
                "counter",
            ),
            (
                "bitacora_stream_route_buffered_records",
                "Records waiting in a route's buffer",
                |r| &r.buffered,
                "gauge",
            ),
        ];
        render_labelled(&mut out, &per_route, "route", &routes, |r| &r.name);
        let _ = writeln!(
            out,
            "# HELP bitacora_stream_route_latency_seconds Enqueue to delivered, per route.\n# TYPE bitacora_stream_route_latency_seconds histogram"
        );
        for r in &routes {
            r.latency.render(
                &mut out,
                "bitacora_stream_route_latency_seconds",
                &format!("route=\"{}\"", r.name),
            );
        }
        self.render_shards(&mut out);
        self.render_live(&mut out);
        out
    }
}

/// A counter with one line per `(label value, count)`.
fn counters<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label_name: &str,
    items: impl Iterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter");
    for (value, n) in items {
        let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {n}", label(value));
    }
}

/// A label value escaped as Prometheus' text format wants (`\\`, `\"`, `\n`).
fn label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}
