//! The live dashboard: the page at `/` (one self-contained HTML file, charts drawn as SVG by
//! its own script: nothing fetched from elsewhere), the snapshot it reads (`GET /api/live`), and
//! the server-sent events that push a snapshot every second (`GET /api/live/events`).
//!
//! A snapshot holds counters and cumulative histograms only; the page turns the difference of
//! two snapshots into rates and windowed percentiles, so any number of viewers costs the
//! service one snapshot per viewer per second and nothing on the hot path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde::Serialize;
use tokio::sync::watch;

use crate::live::LiveView;
use crate::metrics::{Histogram, Metrics};

/// The page (`assets/dashboard.html`).
pub const PAGE: &str = include_str!("../assets/dashboard.html");

/// Counters of the whole service.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub records_in: u64,
    pub batches_in: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub unrouted: u64,
    pub failed_batches: u64,
    pub refused_full: u64,
    pub in_flight: u64,
    pub dedup_errors: u64,
}

/// A cumulative histogram: upper bounds (seconds), counts at or below each, the count.
#[derive(Debug, Serialize)]
pub struct HistogramView {
    pub bounds_secs: &'static [f64],
    pub cumulative: Vec<u64>,
    pub count: u64,
}

impl From<&Histogram> for HistogramView {
    fn from(h: &Histogram) -> Self {
        let (bounds_secs, cumulative, count) = h.snapshot();
        HistogramView {
            bounds_secs,
            cumulative,
            count,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RouteView {
    pub name: String,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub dead_letter_failures: u64,
    pub failed_sends: u64,
    pub retried: u64,
    pub buffered: u64,
    pub latency: HistogramView,
}

#[derive(Debug, Serialize)]
pub struct ShardView {
    pub shard: String,
    pub records_in: u64,
    pub millis_behind: u64,
    pub leased: bool,
    pub throttled: u64,
}

/// What `/api/live` answers.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub time_ms: i64,
    pub source: &'static str,
    pub totals: Totals,
    pub latency: HistogramView,
    pub routes: Vec<RouteView>,
    pub shards: Vec<ShardView>,
    pub alerts_notified: u64,
    pub alerts_firing: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub live: LiveView,
}

impl Snapshot {
    pub fn of(m: &Metrics, source: &'static str) -> Snapshot {
        let routes = m
            .routes()
            .iter()
            .map(|r| RouteView {
                name: r.name.clone(),
                delivered: r.delivered.load(Relaxed),
                dead_lettered: r.dead_lettered.load(Relaxed),
                dead_letter_failures: r.dead_letter_failures.load(Relaxed),
                failed_sends: r.failed_sends.load(Relaxed),
                retried: r.retried_records.load(Relaxed),
                buffered: r.buffered.load(Relaxed),
                latency: (&r.latency).into(),
            })
            .collect();
        let shards = m
            .shards()
            .iter()
            .map(|s| ShardView {
                shard: s.shard.clone(),
                records_in: s.records_in.load(Relaxed),
                millis_behind: s.millis_behind.load(Relaxed),
                leased: s.leased.load(Relaxed) == 1,
                throttled: s.throttled.load(Relaxed),
            })
            .collect();
        Snapshot {
            time_ms: crate::record::now_ms(),
            source,
            totals: Totals {
                records_in: m.records_in.load(Relaxed),
                batches_in: m.batches_in.load(Relaxed),
                accepted: m.accepted.load(Relaxed),
                duplicates: m.duplicates.load(Relaxed),
                quarantined: m.quarantined.load(Relaxed),
                unrouted: m.unrouted.load(Relaxed),
                failed_batches: m.failed_batches.load(Relaxed),
                refused_full: m.rejected_batches_full.load(Relaxed),
                in_flight: m.in_flight_records.load(Relaxed),
                dedup_errors: m.dedup_errors.load(Relaxed),
            },
            latency: (&m.batch_latency).into(),
            routes,
            shards,
            alerts_notified: m.alerts_notified.load(Relaxed),
            alerts_firing: m.alerts_firing(),
            live: m.live.view(),
        }
    }

    pub fn to_json(&self) -> String {
        // A snapshot is plain data: it always serialises.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The event stream of `/api/live/events`: a snapshot at once, then one a second, until the
/// service stops (the stream then ends, so the drain does not wait for its viewers).
pub struct LiveEvents {
    metrics: Arc<Metrics>,
    source: &'static str,
    tick: tokio::time::Interval,
    stopping: watch::Receiver<bool>,
}

impl LiveEvents {
    pub fn new(
        metrics: Arc<Metrics>,
        source: &'static str,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        LiveEvents {
            metrics,
            source,
            tick,
            stopping,
        }
    }
}

impl Body for LiveEvents {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if *this.stopping.borrow() {
            return Poll::Ready(None);
        }
        match this.tick.poll_tick(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                let json = Snapshot::of(&this.metrics, this.source).to_json();
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
                    "event: snapshot\ndata: {json}\n\n"
                ))))))
            }
        }
    }
}
