//! One batch through the service: normalise (the batch transform's code) → quarantine what
//! cannot be trusted → claim the dedup keys → hand new records to every matching route → wait
//! until each route took its records (delivered or dead-lettered) → commit the keys → answer.
//!
//! Delivery rule (DESIGN.md): a key is marked seen only after its record was delivered; a batch
//! that fails releases its claims, so its records are new when it is sent again. A dedup store
//! that fails is retried (the batch waits, and its source with it) for up to `claim_secs`; then
//! the batch fails and its sender sends it again. Nothing passes the dedup unchecked.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bitacora_model::normalize::Normalizer;
use serde::Serialize;

use crate::dedup::{Claim, DedupStore, Key};
use crate::metrics::Metrics;
use crate::record::{Incoming, SinkRecord};
use crate::routes::{Route, Ticket};
use crate::{Error, Result};

/// What a batch came to (the HTTP answer's body).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// New records, handed to every matching route (or matching none).
    pub accepted: u64,
    /// Copies of records delivered before (or earlier in the same batch).
    pub duplicates: u64,
    /// Records that cannot be trusted, delivered to the quarantine.
    pub quarantined: u64,
}

/// What a batch of units came to: the outcome of what was delivered, and each unit's failure
/// (`None`: delivered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitsReport {
    pub outcome: Outcome,
    pub failed: Vec<Option<String>>,
}

impl UnitsReport {
    /// The indices of the units that failed.
    pub fn failed_units(&self) -> impl Iterator<Item = usize> + '_ {
        self.failed
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|_| i))
    }

    /// A batch of one unit: its outcome, or why it failed.
    fn into_result(self) -> Result<Outcome> {
        match self.failed.into_iter().flatten().next() {
            None => Ok(self.outcome),
            Some(why) => Err(Error::Unavailable(format!("the batch was {why}"))),
        }
    }
}

pub struct Pipeline {
    pub normalizer: Normalizer,
    pub dedup: Arc<dyn DedupStore>,
    pub routes: Vec<Route>,
    pub quarantine: Route,
    pub metrics: Arc<Metrics>,
    /// This instance's token; a batch round's claims are `<instance>-<n>`.
    pub instance: String,
    /// How long a batch waits for the dedup store (errors, or copies in flight elsewhere).
    pub dedup_patience: Duration,
    /// `[[stream.alerts]]`, fed with every delivered round (the service evaluates them).
    pub alerts: Option<Arc<crate::alerts::Engine>>,
    seq: AtomicU64,
}

/// A random token naming this service instance (16 hex characters).
pub fn owner_token() -> String {
    format!(
        "{:016x}",
        getrandom::u64().unwrap_or_else(|_| crate::record::now_ms() as u64)
    )
}

impl Pipeline {
    /// The configured pipeline: the dedup store, a running worker per route (and the
    /// quarantine's), the normaliser. `default_dead_letters`: routes without `dead_letter`
    /// (and the quarantine) get files under `stream.data_dir` (the service); else none, and what
    /// a route cannot deliver fails its unit (a Lambda handler: the event source sends it
    /// again). The workers stop once the pipeline is dropped and their buffers are delivered.
    pub async fn build(
        config: &bitacora_core::Config,
        stream: &crate::StreamConfig,
        instance: String,
        metrics: Arc<Metrics>,
        default_dead_letters: bool,
    ) -> Result<(Pipeline, Vec<tokio::task::JoinHandle<()>>)> {
        use crate::routes::RouteParts;
        let dedup = stream.dedup.build().await?;
        let mut routes = Vec::new();
        let mut workers = Vec::new();
        for c in &stream.routes {
            let parts = RouteParts::from_config(
                c,
                &stream.data_dir,
                default_dead_letters,
                &instance,
                metrics.route(&c.name),
            )
            .await?;
            tracing::info!(
                "route {}: {} → {}",
                c.name,
                describe_match(c),
                parts.sink.describe()
            );
            let (route, handle) = parts.spawn();
            routes.push(route);
            workers.push(handle);
        }
        if routes.is_empty() {
            tracing::warn!(
                "no [[stream.routes]]: records are deduplicated and quarantined, and go nowhere else"
            );
        }
        let q_sink = stream.quarantine_sink().build(&instance).await?;
        let q_dead = match default_dead_letters {
            true => Some(
                crate::sinks::SinkConfig::file(stream.dead_letter_dir("quarantine"))
                    .build(&instance)
                    .await?,
            ),
            false => None,
        };
        tracing::info!("quarantine → {}", q_sink.describe());
        let (quarantine, q_handle) = RouteParts {
            name: "quarantine".into(),
            matches: Default::default(),
            pii: None,
            sink: q_sink,
            dead_letter: q_dead,
            buffer_records: 20_000,
            batch: Default::default(),
            retry: Default::default(),
            metrics: metrics.route("quarantine"),
        }
        .spawn();
        workers.push(q_handle);
        let mut pipeline = Pipeline::new(
            Normalizer::new(
                config.source.log_group.clone(),
                config.transform.max_record_bytes,
            ),
            dedup,
            routes,
            quarantine,
            metrics,
            instance,
            stream.dedup.claim_ttl(),
        );
        if !stream.alerts.is_empty() {
            for a in &stream.alerts {
                tracing::info!(
                    "alert {}: {} over {} s → {}",
                    a.name,
                    a.kind.name(),
                    a.window_secs,
                    a.notify.join(", ")
                );
            }
            pipeline.alerts = Some(Arc::new(crate::alerts::Engine::new(&stream.alerts)));
        }
        Ok((pipeline, workers))
    }

    pub fn new(
        normalizer: Normalizer,
        dedup: Arc<dyn DedupStore>,
        routes: Vec<Route>,
        quarantine: Route,
        metrics: Arc<Metrics>,
        instance: String,
        dedup_patience: Duration,
    ) -> Self {
        Pipeline {
            normalizer,
            dedup,
            routes,
            quarantine,
            metrics,
            instance,
            dedup_patience,
            alerts: None,
            seq: AtomicU64::new(0),
        }
    }

    /// Takes one batch; `Ok` once every matching route accepted its records and their keys are
    /// marked seen. `Err`: nothing of the batch counts as delivered (its claims are released):
    /// send it again.
    pub async fn process(&self, records: &[Incoming]) -> Result<Outcome> {
        let units = vec![0; records.len()];
        let report = self.run(records, &units, 1, &mut None).await?;
        report.into_result()
    }

    /// [`Pipeline::process`], telling `answer` the outcome as soon as the batch is delivered:
    /// the last round's keys are marked seen after that (one dedup round trip less before the
    /// sender hears back). A copy arriving meanwhile waits for the mark and is a duplicate; the
    /// service's shutdown waits for it too (the pipeline stays alive until it is done).
    pub async fn process_answering(
        &self,
        records: &[Incoming],
        answer: tokio::sync::oneshot::Sender<Result<Outcome>>,
    ) {
        let units = vec![0; records.len()];
        let mut answer = Some(answer);
        let result = self
            .run(records, &units, 1, &mut answer)
            .await
            .and_then(UnitsReport::into_result);
        if let (Err(e), Some(tx)) = (result, answer.take()) {
            let _ = tx.send(Err(e));
        }
    }

    /// Takes a batch made of `n_units` units that succeed or fail on their own (a Lambda event's
    /// records: `units[i]` is the unit of `records[i]`): a unit whose records were all delivered
    /// (or dead-lettered) has its keys marked seen; a unit with a record that was not has its
    /// keys released and is reported failed (its sender sends it again). `Err`: nothing of the
    /// batch was delivered (the dedup store is unavailable).
    pub async fn process_units(
        &self,
        records: &[Incoming],
        units: &[usize],
        n_units: usize,
    ) -> Result<UnitsReport> {
        if units.len() != records.len() || units.iter().any(|u| *u >= n_units) {
            return Err(Error::Unavailable(format!(
                "{} records given {} unit numbers below {n_units}",
                records.len(),
                units.len()
            )));
        }
        self.run(records, units, n_units, &mut None).await
    }

    async fn run(
        &self,
        records: &[Incoming],
        units: &[usize],
        n_units: usize,
        answer: &mut Option<tokio::sync::oneshot::Sender<Result<Outcome>>>,
    ) -> Result<UnitsReport> {
        let started = Instant::now();
        let m = &self.metrics;
        m.batches_in.fetch_add(1, Relaxed);
        m.records_in.fetch_add(records.len() as u64, Relaxed);
        let envelopes: Vec<_> = records.iter().map(Incoming::envelope).collect();
        let mut events = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for ((r, e), &unit) in records.iter().zip(&envelopes).zip(units) {
            match r.normalize(e, &self.normalizer) {
                Ok(ev) => events.push((ev, unit)),
                Err(rej) => rejected.push((rej, r.ingestion_ms, unit)),
            }
        }
        // The first copy in the batch wins; the others are duplicates.
        let mut report = UnitsReport {
            outcome: Outcome::default(),
            failed: vec![None; n_units],
        };
        let first: Vec<bool> = {
            // Ids are the senders': hashed with this process's seed.
            let mut seen = HashSet::with_capacity_and_hasher(
                events.len(),
                bitacora_core::hash::Seeded::random(),
            );
            events
                .iter()
                .map(|(e, _)| seen.insert(e.event_id.as_ref()))
                .collect()
        };
        let mut first = first.into_iter();
        events.retain(|_| {
            let first = first.next().unwrap_or(true);
            if !first {
                report.outcome.duplicates += 1;
            }
            first
        });
        // Rounds: claim → deliver what is new → commit it; copies another batch is delivering
        // right now are asked about again after that (never while holding this batch's own
        // claims undelivered, so two batches holding copies of each other's records cannot
        // wait for each other).
        let deadline = Instant::now() + self.dedup_patience;
        let mut pending: Vec<&(bitacora_model::model::Event<'_>, usize)> = events.iter().collect();
        let mut quarantine: &[(bitacora_model::model::Rejected<'_>, i64, usize)] = &rejected;
        let mut wait = Duration::from_millis(2);
        let (last_owner, last_keys) = loop {
            // Each round is its own owner: it commits or releases everything it claimed.
            let owner = self.next_owner();
            let keys: Vec<Key<'_>> = pending.iter().map(|(e, _)| Key::of(e)).collect();
            let claims = match self.claim(&owner, &keys, deadline).await {
                Ok(c) => c,
                // What earlier rounds delivered (and marked) counts; the resend finds it seen.
                Err(e) => return Err(self.count_failed(&report, e)),
            };
            let mut fresh = Vec::with_capacity(pending.len());
            let mut in_flight = Vec::new();
            for (e, c) in pending.iter().zip(claims) {
                match c {
                    Claim::New => fresh.push(*e),
                    Claim::Duplicate => report.outcome.duplicates += 1,
                    Claim::InFlight => in_flight.push(*e),
                }
            }
            let (owner, delivered) = self
                .deliver_round(&owner, &fresh, quarantine, &mut report)
                .await;
            quarantine = &[];
            // The records of a unit that failed are not asked about again: it is sent again.
            in_flight.retain(|(_, u)| report.failed[*u].is_none());
            if in_flight.is_empty() {
                // The last round: the sender may hear back before its keys are marked.
                break (owner, delivered);
            }
            // Marked before waiting for the copies in flight elsewhere: their holders may be
            // waiting for these keys in turn.
            self.commit(&owner, &delivered).await;
            m.dedup_in_flight_waits.fetch_add(1, Relaxed);
            if Instant::now() >= deadline {
                m.failed_batches.fetch_add(1, Relaxed);
                let why = format!(
                    "held back: copies of its records were still being delivered by another batch after {:?}; send it again",
                    self.dedup_patience
                );
                for (_, u) in &in_flight {
                    report.failed[*u].get_or_insert_with(|| why.clone());
                }
                break (owner, Vec::new());
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
            pending = in_flight;
        };
        self.count(&report.outcome);
        m.batch_latency.observe(started.elapsed().as_secs_f64());
        if let Some(tx) = answer.take()
            && report.failed.iter().all(Option::is_none)
        {
            let _ = tx.send(Ok(report.outcome));
        }
        if !last_keys.is_empty() {
            self.commit(&last_owner, &last_keys).await;
        }
        Ok(report)
    }

    /// Feeds delivered events to the dashboard's aggregates and the alert rules.
    fn observe<'e, 'a: 'e>(
        &self,
        delivered: impl Iterator<Item = &'e bitacora_model::model::Event<'a>>,
    ) {
        let delivered: Vec<_> = delivered.collect();
        if delivered.is_empty() {
            return;
        }
        self.metrics.live.observe(delivered.iter().copied());
        if let Some(a) = &self.alerts {
            a.observe(
                (crate::record::now_ms() / 1000) as u64,
                delivered.iter().copied(),
            );
        }
    }

    /// Counts what was delivered before a batch gave up, and passes its error on.
    fn count_failed(&self, report: &UnitsReport, e: Error) -> Error {
        self.count(&report.outcome);
        e
    }

    /// Adds what a batch came to to the service's counters.
    fn count(&self, o: &Outcome) {
        let m = &self.metrics;
        m.accepted.fetch_add(o.accepted, Relaxed);
        m.duplicates.fetch_add(o.duplicates, Relaxed);
        m.quarantined.fetch_add(o.quarantined, Relaxed);
    }

    /// A new owner token: `<instance>-<n>`, hex.
    fn next_owner(&self) -> String {
        format!("{}-{:x}", self.instance, self.seq.fetch_add(1, Relaxed))
    }

    /// Delivers one round's new records (and the batch's rejected ones, in the first round),
    /// each unit on its own ticket; returns the keys of the units delivered and the owner that
    /// is to commit them. A unit that failed is marked in `report` and its keys are released.
    async fn deliver_round<'e>(
        &self,
        owner: &str,
        fresh: &[&'e (bitacora_model::model::Event<'_>, usize)],
        rejected: &[(bitacora_model::model::Rejected<'_>, i64, usize)],
        report: &mut UnitsReport,
    ) -> (String, Vec<Key<'e>>) {
        if fresh.is_empty() && rejected.is_empty() {
            return (owner.to_string(), Vec::new());
        }
        let keys: Vec<Key<'e>> = fresh.iter().map(|(e, _)| Key::of(e)).collect();
        let mut tickets: Vec<Option<Ticket>> = vec![None; report.failed.len()];
        let work = async {
            match self.hand_over(fresh, rejected, &mut tickets).await {
                Ok(()) => {
                    let mut ok = vec![true; tickets.len()];
                    for (u, t) in tickets.iter().enumerate() {
                        if let Some(t) = t {
                            ok[u] = t.wait().await;
                        }
                    }
                    Ok(ok)
                }
                Err(e) => Err(e),
            }
        };
        let delivered = self.renewing_claims(owner, &keys, work).await;
        let why = "not delivered to every route: send it again";
        let ok = match delivered {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!("batch {owner}: {e}");
                vec![false; report.failed.len()]
            }
        };
        let mut done = Vec::with_capacity(keys.len());
        let mut undone = Vec::new();
        for (u, key) in fresh.iter().map(|p| p.1).zip(&keys) {
            if ok[u] {
                report.outcome.accepted += 1;
                done.push(*key);
            } else {
                report.failed[u].get_or_insert_with(|| why.to_string());
                undone.push(*key);
            }
        }
        self.observe(fresh.iter().filter(|p| ok[p.1]).map(|p| &p.0));
        for (_, _, u) in rejected {
            if ok[*u] {
                report.outcome.quarantined += 1;
            } else {
                report.failed[*u].get_or_insert_with(|| why.to_string());
            }
        }
        if !undone.is_empty() || ok.iter().any(|o| !o) {
            self.metrics.failed_batches.fetch_add(1, Relaxed);
        }
        if undone.is_empty() {
            return (owner.to_string(), done);
        }
        // A round commits or releases all it claimed: it is released, and what its delivered
        // units hold is claimed again by a round of its own, to be committed.
        if let Err(e) = self.dedup.release(owner, &keys).await {
            // The claims expire after claim_secs: the records are new again then.
            tracing::warn!("batch {owner}: releasing its dedup claims: {e}");
        }
        let again = self.next_owner();
        if done.is_empty() {
            return (again, done);
        }
        match self.dedup.claim(&again, &done).await {
            // Keys another batch took meanwhile are its own to mark (delivered twice at worst).
            Ok(claims) => {
                let mut i = claims.iter();
                done.retain(|_| matches!(i.next(), Some(Claim::New)));
            }
            Err(e) => {
                self.metrics
                    .dedup_commit_failures
                    .fetch_add(done.len() as u64, Relaxed);
                tracing::error!(
                    "dedup {}: {} delivered records could not be marked seen ({e}): later copies of them will pass",
                    self.dedup.kind(),
                    done.len()
                );
                done.clear();
            }
        }
        (again, done)
    }

    /// Runs `work` (the delivery of a round) while renewing the round's claims every third of
    /// `claim_secs`: a delivery slower than that (a route retrying, a full buffer) keeps its
    /// keys, so no copy elsewhere is delivered meanwhile; a dead instance's claims still expire.
    async fn renewing_claims<T, F: Future<Output = T>>(
        &self,
        owner: &str,
        keys: &[Key<'_>],
        work: F,
    ) -> T {
        let every = (self.dedup_patience / 3).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => {
                    self.metrics.dedup_renewals.fetch_add(1, Relaxed);
                    if let Err(e) = self.dedup.extend(owner, keys).await {
                        self.metrics.dedup_errors.fetch_add(1, Relaxed);
                        tracing::warn!("batch {owner}: renewing its dedup claims: {e}");
                    }
                }
            }
        }
    }

    /// Claims the keys, retrying store errors until `deadline`.
    async fn claim(&self, owner: &str, keys: &[Key<'_>], deadline: Instant) -> Result<Vec<Claim>> {
        self.retrying("claim", deadline, || self.dedup.claim(owner, keys))
            .await
            .map_err(|e| {
                self.metrics.failed_batches.fetch_add(1, Relaxed);
                Error::Unavailable(format!(
                    "dedup store {} unavailable for {:?} ({e}): send the batch again",
                    self.dedup.kind(),
                    self.dedup_patience
                ))
            })
    }

    /// Marks delivered keys seen, retrying store errors for a while: the records are delivered
    /// either way, a mark that cannot be written only lets a later copy through (counted).
    async fn commit(&self, owner: &str, keys: &[Key<'_>]) {
        let deadline = Instant::now() + self.dedup_patience;
        if let Err(e) = self
            .retrying("commit", deadline, || self.dedup.commit(owner, keys))
            .await
        {
            self.metrics
                .dedup_commit_failures
                .fetch_add(keys.len() as u64, Relaxed);
            tracing::error!(
                "dedup {}: {} delivered records could not be marked seen ({e}): later copies of them will pass",
                self.dedup.kind(),
                keys.len()
            );
        }
    }

    /// Runs a dedup store call until it succeeds or `deadline` passes (then its last error),
    /// counting errors and backing off as the routes do (25 ms doubling to 1 s, with jitter).
    async fn retrying<T, F, Fut>(&self, what: &str, deadline: Instant, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        const BACKOFF: crate::routes::RetryConfig = crate::routes::RetryConfig {
            max_attempts: u32::MAX,
            initial_backoff_ms: 25,
            max_backoff_ms: 1_000,
        };
        let mut attempt = 0u32;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.metrics.dedup_errors.fetch_add(1, Relaxed);
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    tracing::warn!("dedup {}: {what}: {e}; retrying", self.dedup.kind());
                }
            }
            attempt += 1;
            tokio::time::sleep(BACKOFF.backoff(attempt)).await;
        }
    }

    /// Hands the new records to their routes and the rejected ones to the quarantine, each on
    /// its unit's ticket.
    async fn hand_over(
        &self,
        fresh: &[&(bitacora_model::model::Event<'_>, usize)],
        rejected: &[(bitacora_model::model::Rejected<'_>, i64, usize)],
        tickets: &mut [Option<Ticket>],
    ) -> Result<()> {
        // Each route's records of the round, handed over together (one wait for room and one
        // send per chunk).
        let mut per_route: Vec<Vec<(SinkRecord, crate::routes::Done)>> =
            self.routes.iter().map(|_| Vec::new()).collect();
        let mut unrouted = 0;
        let mut scratch = Vec::with_capacity(1024);
        for (e, u) in fresh.iter().map(|p| (&p.0, p.1)) {
            let mut routed = false;
            for (r, out) in self.routes.iter().zip(&mut per_route) {
                if r.wants(e) {
                    routed = true;
                    let done = tickets[u].get_or_insert_with(Ticket::new).done();
                    out.push((r.render_with(e, &mut scratch)?, done));
                    if out.len() >= r.chunk_records() {
                        r.enqueue_all(std::mem::take(out)).await?;
                    }
                }
            }
            if !routed {
                unrouted += 1;
            }
        }
        self.metrics.unrouted.fetch_add(unrouted, Relaxed);
        for (r, records) in self.routes.iter().zip(per_route) {
            r.enqueue_all(records).await?;
        }
        let mut quarantined = Vec::with_capacity(rejected.len());
        for (rej, received_ms, u) in rejected {
            let mut json = Vec::with_capacity(rej.raw.len() + 256);
            bitacora_model::routed::write_rejected(
                rej,
                self.normalizer.log_group(),
                received_ms.saturating_mul(1000),
                &mut json,
            )
            .map_err(|e| Error::Unavailable(format!("quarantine record: {e}")))?;
            let id = rej
                .source_event_id
                .as_deref()
                .map_or_else(|| crate::record::line_hash(&rej.raw), str::to_string);
            let done = tickets[*u].get_or_insert_with(Ticket::new).done();
            quarantined.push((SinkRecord::new(id, json), done));
            if quarantined.len() >= self.quarantine.chunk_records() {
                self.quarantine
                    .enqueue_all(std::mem::take(&mut quarantined))
                    .await?;
            }
        }
        self.quarantine.enqueue_all(quarantined).await
    }
}

fn describe_match(c: &crate::routes::RouteConfig) -> String {
    if c.matches.is_empty() {
        return "every event".into();
    }
    c.matches
        .iter()
        .map(|(k, v)| match v {
            crate::routes::matcher::Values::One(s) => format!("{k}={s}"),
            crate::routes::matcher::Values::Any(l) => format!("{k}∈[{}]", l.join(",")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
