//! Routes: `[[stream.routes]]`. Each has a `match` on event fields, an optional PII policy, a
//! sink, and its own bounded buffer, batching (`max_records`, `max_bytes`, `linger_ms`, within
//! the sink's limits), retries with exponential backoff and jitter, and a dead-letter sink after
//! `retry.max_attempts`. A slow or failing route fills only its own buffer; once that is full,
//! the batches that feed it wait (back-pressure reaches the source, memory does not grow).
//!
//! Every record handed to a route carries a [`Done`] of its batch's [`Ticket`]: the batch is
//! acknowledged once every one of them was delivered or dead-lettered.

pub mod matcher;
pub mod pii;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bitacora_model::model::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::metrics::RouteMetrics;
use crate::record::SinkRecord;
use crate::sinks::{Sink, SinkConfig};
use crate::{Error, Result};
use matcher::MatchConfig;
use pii::{Pii, PiiConfig};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Event fields and the values they may take; absent: every event.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<PiiConfig>,
    pub sink: SinkConfig,
    /// Where records go after `retry.max_attempts` (default in the service: files under
    /// `data_dir/dead-letter/<route>`; in a Lambda handler: none, the records are reported
    /// failed and their event source sends them again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<SinkConfig>,
    /// Records the route holds before the batches feeding it wait.
    #[serde(default = "default_buffer")]
    pub buffer_records: usize,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_buffer() -> usize {
    20_000
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_records: usize,
    pub max_bytes: usize,
    /// How long a batch waits for more records before it is sent. 0: it takes what is queued
    /// and goes (batches grow with the load by themselves; a producer waiting for its answer
    /// is not kept waiting).
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: 1000,
            max_bytes: 4 << 20,
            linger_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Sends of a record before it goes to the dead letters.
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 8,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `n + 1` (n ≥ 1): exponential, capped, with jitter in [½, 1].
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .initial_backoff_ms
            .saturating_mul(1u64 << (n.saturating_sub(1)).min(20))
            .min(self.max_backoff_ms)
            .max(1);
        let jitter = getrandom::u64().unwrap_or(0) % (exp / 2 + 1);
        Duration::from_millis(exp - jitter)
    }
}

impl RouteConfig {
    pub fn validate(&self, i: usize) -> bitacora_core::Result<()> {
        use bitacora_core::Error;
        let key = format!("stream.routes[{i}]");
        let ok_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(Error::config(
                format!("{key}.name"),
                format!("{:?}: a route name is letters, digits, - and _", self.name),
            ));
        }
        matcher::validate(&self.matches, &format!("{key}.match"))?;
        if let Some(p) = &self.pii {
            p.validate(&format!("{key}.pii"))?;
        }
        self.sink.validate(&format!("{key}.sink"))?;
        if let Some(d) = &self.dead_letter {
            d.validate(&format!("{key}.dead_letter"))?;
        }
        let b = &self.batch;
        if self.buffer_records == 0
            || b.max_records == 0
            || b.max_bytes < 1024
            || b.linger_ms > 60_000
        {
            return Err(Error::config(
                format!("{key}.batch"),
                "buffer_records ≥ 1, batch.max_records ≥ 1, batch.max_bytes ≥ 1024, batch.linger_ms ≤ 60000",
            ));
        }
        let r = &self.retry;
        if r.max_attempts == 0
            || r.initial_backoff_ms == 0
            || r.max_backoff_ms < r.initial_backoff_ms
        {
            return Err(Error::config(
                format!("{key}.retry"),
                "max_attempts ≥ 1 and 1 ≤ initial_backoff_ms ≤ max_backoff_ms",
            ));
        }
        Ok(())
    }
}

/// The acknowledgement of one batch across every route it was handed to.
#[derive(Clone)]
pub struct Ticket(Arc<TicketInner>);

struct TicketInner {
    remaining: AtomicUsize,
    failed: AtomicBool,
    notify: Notify,
}

impl Default for Ticket {
    fn default() -> Self {
        Ticket::new()
    }
}

impl Ticket {
    pub fn new() -> Self {
        Ticket(Arc::new(TicketInner {
            remaining: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            notify: Notify::new(),
        }))
    }

    /// One more record to wait for.
    pub fn done(&self) -> Done {
        self.0.remaining.fetch_add(1, Ordering::AcqRel);
        Done {
            ticket: self.0.clone(),
            ok: false,
        }
    }

    /// Waits until every [`Done`] was completed or dropped; `true` if all were completed.
    pub async fn wait(&self) -> bool {
        loop {
            let notified = self.0.notify.notified();
            if self.0.remaining.load(Ordering::Acquire) == 0 {
                return !self.0.failed.load(Ordering::Acquire);
            }
            notified.await;
        }
    }
}

/// One record's part of a [`Ticket`]: [`Done::complete`] when delivered (or dead-lettered);
/// dropped without it (a route stopped), the batch fails and is not acknowledged.
pub struct Done {
    ticket: Arc<TicketInner>,
    ok: bool,
}

impl Done {
    pub fn complete(mut self) {
        self.ok = true;
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if !self.ok {
            self.ticket.failed.store(true, Ordering::Release);
        }
        if self.ticket.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ticket.notify.notify_waiters();
            self.ticket.notify.notify_one();
        }
    }
}

pub struct RouteItem {
    pub record: SinkRecord,
    pub done: Done,
    pub enqueued: Instant,
}

/// Records handed to a route together (a batch's records for it), holding their room in its
/// buffer until the worker has taken the last of them.
struct Chunk {
    items: std::vec::IntoIter<RouteItem>,
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// A running route: its matcher and policy, and the sender into its buffer.
pub struct Route {
    pub name: String,
    matches: MatchConfig,
    pii: Option<Pii>,
    tx: mpsc::UnboundedSender<Chunk>,
    /// Room in the buffer, in records (`buffer_records`).
    room: Arc<tokio::sync::Semaphore>,
    capacity: u32,
    metrics: Arc<RouteMetrics>,
}

impl Route {
    pub fn wants(&self, e: &Event<'_>) -> bool {
        matcher::matches(&self.matches, e)
    }

    /// The routed record of `e` as this route sends it (its PII policy applied).
    pub fn render(&self, e: &Event<'_>) -> Result<SinkRecord> {
        self.render_with(e, &mut Vec::new())
    }

    /// [`Route::render`], written in `scratch` first (kept by the caller from record to
    /// record): the record then takes one allocation of its exact size.
    pub fn render_with(&self, e: &Event<'_>, scratch: &mut Vec<u8>) -> Result<SinkRecord> {
        scratch.clear();
        let json = scratch;
        let write = |e: &Event<'_>, json: &mut Vec<u8>| {
            bitacora_model::routed::write_event(e, json).map_err(|err| {
                Error::Unavailable(format!(
                    "event {}: cannot write its routed record: {err}",
                    e.event_id
                ))
            })
        };
        match &self.pii {
            Some(p) => write(&p.apply(e), json)?,
            None => write(e, json)?,
        }
        Ok(SinkRecord::new(
            &*e.event_id,
            bytes::Bytes::copy_from_slice(json),
        ))
    }

    /// Hands a record to the route, waiting while its buffer is full.
    pub async fn enqueue(&self, record: SinkRecord, done: Done) -> Result<()> {
        self.enqueue_all(vec![(record, done)]).await
    }

    /// The most records to hand over at once: rendered records wait in the caller until
    /// then, so at most this many are held beyond the route's buffer.
    pub fn chunk_records(&self) -> usize {
        (self.capacity as usize).min(1024)
    }

    /// Hands records to the route at once, waiting until its buffer has room for them (a
    /// batch larger than the whole buffer waits for it to be empty; callers hand over at most
    /// [`Route::chunk_records`] at a time).
    pub async fn enqueue_all(&self, records: Vec<(SinkRecord, Done)>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let stopped = || Error::Unavailable(format!("route {} stopped", self.name));
        let n = records.len() as u64;
        // Waiting for room counts as time in the route, and as records buffered.
        let enqueued = Instant::now();
        self.metrics.buffered.fetch_add(n, Ordering::Relaxed);
        let want = u32::try_from(records.len()).unwrap_or(u32::MAX);
        let Ok(room) = self
            .room
            .clone()
            .acquire_many_owned(want.min(self.capacity))
            .await
        else {
            self.metrics.buffered.fetch_sub(n, Ordering::Relaxed);
            return Err(stopped());
        };
        let items: Vec<RouteItem> = records
            .into_iter()
            .map(|(record, done)| RouteItem {
                record,
                done,
                enqueued,
            })
            .collect();
        self.tx
            .send(Chunk {
                items: items.into_iter(),
                _room: room,
            })
            .map_err(|_| {
                self.metrics.buffered.fetch_sub(n, Ordering::Relaxed);
                stopped()
            })
    }
}

/// What a route worker needs.
pub struct RouteParts {
    pub name: String,
    pub matches: MatchConfig,
    pub pii: Option<Pii>,
    pub sink: Arc<dyn Sink>,
    /// `None`: records the sink did not take after `retry.max_attempts` fail their batch.
    pub dead_letter: Option<Arc<dyn Sink>>,
    pub buffer_records: usize,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub metrics: Arc<RouteMetrics>,
}

impl RouteParts {
    /// Builds a configured route's sinks and policy; `default_dead_letters`: a route without
    /// `dead_letter` gets files under `data_dir/dead-letter/<route>` (else none).
    pub async fn from_config(
        c: &RouteConfig,
        data_dir: &Path,
        default_dead_letters: bool,
        instance: &str,
        metrics: Arc<RouteMetrics>,
    ) -> Result<Self> {
        let sink = c.sink.build(instance).await?;
        let dead = match &c.dead_letter {
            Some(d) => Some(d.clone()),
            None if default_dead_letters => {
                Some(SinkConfig::file(data_dir.join("dead-letter").join(&c.name)))
            }
            None => None,
        };
        let dead_letter = match dead {
            Some(d) => Some(d.build(instance).await?),
            None => None,
        };
        Ok(RouteParts {
            name: c.name.clone(),
            matches: c.matches.clone(),
            pii: c.pii.as_ref().map(|p| Pii::new(p, data_dir)).transpose()?,
            sink,
            dead_letter,
            buffer_records: c.buffer_records,
            batch: c.batch.clone(),
            retry: c.retry.clone(),
            metrics,
        })
    }

    /// Starts the route's worker; it stops once every [`Route`] handle is dropped and its
    /// buffer is delivered, then flushes its sinks.
    pub fn spawn(self) -> (Route, tokio::task::JoinHandle<()>) {
        // The channel holds chunks; the records in them are bounded by `room`.
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = u32::try_from(
            self.buffer_records
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        )
        .unwrap_or(u32::MAX);
        let route = Route {
            name: self.name.clone(),
            matches: self.matches.clone(),
            pii: self.pii.clone(),
            tx,
            room: Arc::new(tokio::sync::Semaphore::new(capacity as usize)),
            capacity,
            metrics: self.metrics.clone(),
        };
        let handle = tokio::spawn(worker(self, rx));
        (route, handle)
    }
}

async fn worker(p: RouteParts, mut rx: mpsc::UnboundedReceiver<Chunk>) {
    let limits = p.sink.limits();
    let max_records = p.batch.max_records.min(limits.max_records).max(1);
    let max_bytes = p.batch.max_bytes.min(limits.max_bytes).max(1);
    let linger = Duration::from_millis(p.batch.linger_ms);
    // Chunks received, in order; the front one is partly taken.
    let mut queue: std::collections::VecDeque<Chunk> = std::collections::VecDeque::new();
    let mut closed = false;
    loop {
        if queue.is_empty() {
            if closed {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(Some(c)) => queue.push_back(c),
                Ok(None) => closed = true,
                Err(_) => {
                    for s in std::iter::once(&p.sink).chain(&p.dead_letter) {
                        if let Err(e) = s.tick().await {
                            tracing::warn!("route {}: {e}", p.name);
                        }
                    }
                }
            }
            continue;
        }
        // Everything already waiting goes into this batch (group commit: under load batches
        // grow by themselves); then, with a linger, wait that long for more.
        let deadline = tokio::time::Instant::now() + linger;
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut full = false;
        loop {
            while !closed && let Ok(c) = rx.try_recv() {
                queue.push_back(c);
            }
            while batch.len() < max_records
                && let Some(front) = queue.front_mut()
            {
                let Some(next) = front.items.as_slice().first() else {
                    queue.pop_front();
                    continue;
                };
                // A record larger than max_bytes goes alone: the sink rejects it.
                if !batch.is_empty() && bytes + next.record.len() > max_bytes {
                    full = true;
                    break;
                }
                bytes += next.record.len();
                batch.extend(front.items.next());
            }
            if full
                || batch.len() >= max_records
                || closed
                || linger.is_zero()
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            tokio::select! {
                biased;
                c = rx.recv() => match c {
                    Some(c) => queue.push_back(c),
                    None => closed = true,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Finished chunks give their room back before the batch is delivered.
        while queue.front().is_some_and(|c| c.items.len() == 0) {
            queue.pop_front();
        }
        p.metrics
            .buffered
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        deliver(&p, batch).await;
    }
    let dead = p.dead_letter.iter().map(|s| ("dead letters", s));
    for (what, s) in std::iter::once(("sink", &p.sink)).chain(dead) {
        if let Err(e) = s.flush().await {
            tracing::error!("route {}: flushing its {what}: {e}", p.name);
        }
    }
}

/// Sends a batch until the sink took each record, resending only what it did not take; after
/// `max_attempts` (or a refusal) records go to the dead letters.
async fn deliver(p: &RouteParts, batch: Vec<RouteItem>) {
    // The records apart from their acknowledgements: sent as they are, attempt after attempt.
    let (mut records, mut pending): (Vec<SinkRecord>, Vec<(Done, Instant)>) = batch
        .into_iter()
        .map(|i| (i.record, (i.done, i.enqueued)))
        .unzip();
    let item = |record, (done, enqueued)| RouteItem {
        record,
        done,
        enqueued,
    };
    let mut dead: Vec<(RouteItem, String, u32)> = Vec::new();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        let mut retry_idx: Vec<usize> = Vec::new();
        let mut last_error = String::new();
        match p.sink.send(&records).await {
            Ok(sent) => {
                let mut state = vec![0u8; pending.len()]; // 0 delivered, 1 retry, 2 rejected
                for i in &sent.retry {
                    if let Some(s) = state.get_mut(*i) {
                        *s = 1;
                    }
                }
                let mut reasons = std::collections::HashMap::new();
                for (i, why) in sent.rejected {
                    if let Some(s) = state.get_mut(i) {
                        *s = 2;
                        reasons.insert(i, why);
                    }
                }
                let mut keep = Vec::new();
                let mut keep_records = Vec::new();
                let mut delivered = Vec::with_capacity(pending.len());
                let all = std::mem::take(&mut records)
                    .into_iter()
                    .zip(std::mem::take(&mut pending));
                for (i, (record, (done, enqueued))) in all.enumerate() {
                    match state[i] {
                        0 => {
                            delivered.push(enqueued);
                            done.complete();
                        }
                        1 => {
                            keep_records.push(record);
                            keep.push((done, enqueued));
                        }
                        _ => dead.push((
                            item(record, (done, enqueued)),
                            reasons.remove(&i).unwrap_or_default(),
                            attempt,
                        )),
                    }
                }
                p.metrics
                    .delivered
                    .fetch_add(delivered.len() as u64, Ordering::Relaxed);
                observe_latency(p, delivered);
                retry_idx.extend(0..keep.len());
                pending = keep;
                records = keep_records;
                if !pending.is_empty() {
                    last_error = format!(
                        "{} records not taken (throttled or failed items)",
                        pending.len()
                    );
                }
            }
            Err(e) if e.is_retryable() => {
                p.metrics.failed_sends.fetch_add(1, Ordering::Relaxed);
                last_error = e.to_string();
                retry_idx.extend(0..pending.len());
            }
            Err(e) => {
                p.metrics.failed_sends.fetch_add(1, Ordering::Relaxed);
                let why = e.to_string();
                dead.extend(
                    records
                        .drain(..)
                        .zip(pending.drain(..))
                        .map(|(r, m)| (item(r, m), why.clone(), attempt)),
                );
            }
        }
        if pending.is_empty() {
            break;
        }
        if attempt >= p.retry.max_attempts {
            tracing::warn!(
                "route {}: {} records to the dead letters after {attempt} attempts: {last_error}",
                p.name,
                pending.len()
            );
            dead.extend(
                records
                    .drain(..)
                    .zip(pending.drain(..))
                    .map(|(r, m)| (item(r, m), last_error.clone(), attempt)),
            );
            break;
        }
        tracing::debug!(
            "route {}: attempt {attempt}: {last_error}; retrying {}",
            p.name,
            retry_idx.len()
        );
        p.metrics
            .retried_records
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        tokio::time::sleep(p.retry.backoff(attempt)).await;
    }
    if !dead.is_empty() {
        dead_letter(p, dead).await;
    }
}

/// Adds delivered records' times in the route to its latency histogram: one clock reading,
/// and one observation per run of records handed over together (they share their `enqueued`).
fn observe_latency(p: &RouteParts, enqueued: impl IntoIterator<Item = Instant>) {
    let now = Instant::now();
    let mut run: Option<(Instant, u64)> = None;
    for t in enqueued {
        match &mut run {
            Some((at, n)) if *at == t => *n += 1,
            _ => {
                if let Some((at, n)) = run.replace((t, 1)) {
                    p.metrics.latency.observe_n((now - at).as_secs_f64(), n);
                }
            }
        }
    }
    if let Some((at, n)) = run {
        p.metrics.latency.observe_n((now - at).as_secs_f64(), n);
    }
}

/// Writes records to the route's dead letters, each wrapped with its route, reason and attempts,
/// in batches within the dead-letter sink's limits, resending only what it did not take — up to
/// `retry.max_attempts` times. What it still has not taken then is not acknowledged: its batch
/// fails (the sender gets a 503 and sends it again), so the route keeps flowing and nothing is
/// lost.
async fn dead_letter(p: &RouteParts, items: Vec<(RouteItem, String, u32)>) {
    let Some(dead_letter) = &p.dead_letter else {
        tracing::error!(
            "route {}: {} records not delivered ({}), and the route has no dead letters: their batches fail and are sent again",
            p.name,
            items.len(),
            items.first().map_or("", |i| i.1.as_str())
        );
        p.metrics
            .dead_letter_failures
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        // Dropped without completing: their tickets fail.
        drop(items);
        return;
    };
    let now = bitacora_model::routed::rfc3339_micros(crate::record::now_ms() * 1000);
    let mut pending: Vec<(SinkRecord, Done)> = items
        .into_iter()
        .map(|(item, why, attempts)| {
            let head = serde_json::json!({
                "route": p.name,
                "reason": why,
                "attempts": attempts,
                "failed_at": now,
            })
            .to_string();
            // The record is embedded as it was sent (it is one JSON object).
            let mut json = Vec::with_capacity(head.len() + item.record.len() + 12);
            json.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            json.extend_from_slice(b",\"record\":");
            json.extend_from_slice(&item.record.json);
            json.push(b'}');
            (SinkRecord::new(item.record.id.clone(), json), item.done)
        })
        .collect();
    let limits = dead_letter.limits();
    let mut attempt = 0u32;
    let mut last_error = String::new();
    while !pending.is_empty() {
        if attempt >= p.retry.max_attempts {
            break;
        }
        attempt += 1;
        // One chunk within the limits (a record larger than max_bytes goes alone: the sink
        // rejects it, and it fails below with the sink's reason).
        let mut end = 0;
        let mut bytes = 0;
        while end < pending.len() && end < limits.max_records.max(1) {
            let len = pending[end].0.len();
            if end > 0 && bytes + len > limits.max_bytes {
                break;
            }
            bytes += len;
            end += 1;
        }
        let records: Vec<SinkRecord> = pending[..end].iter().map(|(r, _)| r.clone()).collect();
        let again: Vec<usize> = match dead_letter.send(&records).await {
            Ok(sent) => {
                for (i, why) in &sent.rejected {
                    tracing::error!(
                        "route {}: dead-letter sink {} refused record {}: {why}",
                        p.name,
                        dead_letter.describe(),
                        records.get(*i).map_or("?", |r| &*r.id)
                    );
                }
                if !sent.is_complete() {
                    last_error = format!(
                        "{} records not taken",
                        sent.retry.len() + sent.rejected.len()
                    );
                }
                // Refused for good: those fail now; the rest not taken is sent again.
                let refused: std::collections::HashSet<usize> =
                    sent.rejected.iter().map(|(i, _)| *i).collect();
                let retry: std::collections::HashSet<usize> = sent.retry.into_iter().collect();
                let mut again = Vec::new();
                let mut kept = Vec::with_capacity(pending.len());
                for (i, (record, done)) in pending.drain(..).enumerate() {
                    if i >= end || retry.contains(&i) {
                        if i < end {
                            again.push(kept.len());
                        }
                        kept.push((record, done));
                    } else if refused.contains(&i) {
                        p.metrics
                            .dead_letter_failures
                            .fetch_add(1, Ordering::Relaxed);
                        drop(done);
                    } else {
                        p.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        done.complete();
                    }
                }
                pending = kept;
                if again.is_empty() {
                    // The chunk is done: the next one starts with a fresh count.
                    attempt = 0;
                    continue;
                }
                again
            }
            Err(e) => {
                last_error = e.to_string();
                tracing::error!(
                    "route {}: dead-letter sink {}: {e}; retrying",
                    p.name,
                    dead_letter.describe()
                );
                if !e.is_retryable() {
                    break;
                }
                (0..end).collect()
            }
        };
        p.metrics
            .retried_records
            .fetch_add(again.len() as u64, Ordering::Relaxed);
        tokio::time::sleep(p.retry.backoff(attempt)).await;
    }
    if !pending.is_empty() {
        tracing::error!(
            "route {}: the dead-letter sink {} did not take {} records ({last_error}): their batches fail and are sent again",
            p.name,
            dead_letter.describe(),
            pending.len()
        );
        p.metrics
            .dead_letter_failures
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        // Dropped without completing: their tickets fail.
        drop(pending);
    }
}
