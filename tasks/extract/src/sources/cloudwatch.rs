//! The CloudWatch Logs source (feature `aws`): `FilterLogEvents` over the day, split into time
//! slices that the extract reads concurrently.
//!
//! Traps handled, each with a test against a local endpoint:
//! * pagination ends only when `nextToken` is absent: an empty page with a token is not the end;
//! * a token seen twice in one slice fails the slice instead of looping forever;
//! * calls are paced by one shared rate cap (`source.max_requests_per_second`), because accounts
//!   are limited to a few `FilterLogEvents` per second;
//! * throttling, 5xx and dropped connections are retried by the SDK's standard retry strategy
//!   (exponential backoff with jitter, `source.max_attempts` attempts); other errors fail at once;
//! * events are ingested late: a day is refused until its end plus `source.settle_minutes` has
//!   passed, unless forced; re-running a day later picks up late events (the run replaces the
//!   previous one, so nothing is duplicated).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use bitacora_core::aws::{sdk_config, sdk_error};
use bitacora_core::config::SourceConfig;
use bitacora_core::runtime::block_on;
use bitacora_core::source::{Emit, LogSource, SourceUnit, UnitStats};
use bitacora_core::{Day, Error, Result};
use bitacora_model::model::Envelope;

pub struct CloudWatchSource {
    client: Client,
    log_group: String,
    stream_prefix: Option<String>,
    slices: u32,
    page_size: i32,
    settle: Duration,
    pace: Pace,
}

impl CloudWatchSource {
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        let sdk = sdk_config();
        let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .build();
        Ok(CloudWatchSource {
            client: Client::from_conf(conf),
            log_group: cfg.log_group.clone(),
            stream_prefix: cfg.log_stream_prefix.clone().filter(|p| !p.is_empty()),
            slices: cfg.slices,
            page_size: cfg.page_size.min(10_000) as i32,
            settle: Duration::from_secs(cfg.settle_minutes * 60),
            pace: Pace::new(cfg.max_requests_per_second),
        })
    }

    /// The slice `[start, end)` (ms) of a unit id `slice:START-END`.
    fn bounds(unit: &SourceUnit) -> Result<(i64, i64)> {
        let bad = || Error::Invariant(format!("not a CloudWatch slice: {}", unit.id));
        let (a, b) = unit
            .id
            .strip_prefix("slice:")
            .and_then(|r| r.split_once('-'))
            .ok_or_else(bad)?;
        Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
    }
}

impl LogSource for CloudWatchSource {
    fn kind(&self) -> &'static str {
        "cloudwatch"
    }

    fn describe(&self) -> String {
        match &self.stream_prefix {
            Some(p) => format!("cloudwatch:{} (streams {p}*)", self.log_group),
            None => format!("cloudwatch:{}", self.log_group),
        }
    }

    fn check_settled(&self, day: Day, force: bool) -> Result<()> {
        let settled_at = day.end_ms() + self.settle.as_millis() as i64;
        let now = chrono::Utc::now().timestamp_millis();
        if now < settled_at && !force {
            let at = chrono::DateTime::from_timestamp_millis(settled_at)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "{day} is not settled in CloudWatch Logs until {at} (day end + source.settle_minutes): events ingested late would be missed; run again after that, or pass --force and re-run the day later"
            )));
        }
        Ok(())
    }

    fn plan(&self, day: Day) -> Result<Vec<SourceUnit>> {
        let (start, end) = (day.start_ms(), day.end_ms());
        let n = self.slices as i64;
        Ok((0..n)
            .map(|i| {
                let a = start + (end - start) * i / n;
                let b = start + (end - start) * (i + 1) / n;
                SourceUnit {
                    id: format!("slice:{a}-{b}"),
                    size_hint: 0,
                }
            })
            .collect())
    }

    fn read(&self, unit: &SourceUnit, day: Day, emit: &mut Emit<'_>) -> Result<UnitStats> {
        let (start, end) = Self::bounds(unit)?;
        let mut stats = UnitStats::default();
        let mut token: Option<String> = None;
        let mut seen: HashSet<String> = HashSet::new();
        let mut line = Vec::with_capacity(1024);
        loop {
            self.pace.wait();
            // FilterLogEvents' end time is inclusive: ask for [start, end - 1].
            let page = block_on(
                self.client
                    .filter_log_events()
                    .log_group_name(&self.log_group)
                    .set_log_stream_name_prefix(self.stream_prefix.clone())
                    .start_time(start)
                    .end_time(end - 1)
                    .limit(self.page_size)
                    .set_next_token(token.take())
                    .send(),
            )
            .map_err(|e| Error::Source {
                unit: format!("{} {}", self.log_group, unit.id),
                message: sdk_error("logs", "FilterLogEvents", e).to_string(),
            })?;
            for ev in page.events() {
                stats.scanned += 1;
                let (Some(ts), Some(message), Some(stream), Some(id)) = (
                    ev.timestamp(),
                    ev.message(),
                    ev.log_stream_name(),
                    ev.event_id(),
                ) else {
                    stats.malformed += 1;
                    tracing::warn!(
                        "rejected an event of {} {} without timestamp, message, stream or id",
                        self.log_group,
                        unit.id
                    );
                    continue;
                };
                if !day.contains_ms(ts) {
                    stats.outside_window += 1;
                    continue;
                }
                let envelope = Envelope {
                    timestamp: ts,
                    ingestion_time: ev.ingestion_time(),
                    message: message.into(),
                    log_stream_name: stream.into(),
                    event_id: id.into(),
                };
                line.clear();
                serde_json::to_writer(&mut line, &envelope)
                    .map_err(|e| Error::external("encode envelope", e))?;
                stats.selected += 1;
                emit(&line)?;
            }
            match page.next_token() {
                // Only the absence of a token ends the slice: empty pages with one are common.
                None => break,
                Some(t) => {
                    if !seen.insert(t.to_string()) {
                        return Err(Error::Source {
                            unit: format!("{} {}", self.log_group, unit.id),
                            message: "FilterLogEvents returned the same nextToken twice; stopping instead of looping (re-run the day)".into(),
                        });
                    }
                    token = Some(t.to_string());
                }
            }
        }
        Ok(stats)
    }
}

/// A rate cap shared by every slice: calls are given evenly spaced start times.
struct Pace {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    fn new(per_second: f64) -> Self {
        Pace {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: Mutex::new(None),
        }
    }

    fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_spaces_calls_evenly() {
        let pace = Pace::new(50.0);
        let t0 = Instant::now();
        for _ in 0..6 {
            pace.wait();
        }
        // Five intervals of 20 ms after the first call.
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
    }
}
