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

use crate::dedup::{Claim, DedupStore};
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
            seq: AtomicU64::new(0),
        }
    }

    /// Takes one batch; `Ok` once every matching route accepted its records and their keys are
    /// marked seen. `Err`: nothing of the batch counts as delivered (its claims are released):
    /// send it again.
    pub async fn process(&self, records: &[Incoming]) -> Result<Outcome> {
        self.run(records, &mut None).await
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
        let mut answer = Some(answer);
        if let Err(e) = self.run(records, &mut answer).await
            && let Some(tx) = answer.take()
        {
            let _ = tx.send(Err(e));
        }
    }

    async fn run(
        &self,
        records: &[Incoming],
        answer: &mut Option<tokio::sync::oneshot::Sender<Result<Outcome>>>,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let m = &self.metrics;
        m.batches_in.fetch_add(1, Relaxed);
        m.records_in.fetch_add(records.len() as u64, Relaxed);
        let envelopes: Vec<_> = records.iter().map(Incoming::envelope).collect();
        let mut events = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for (r, e) in records.iter().zip(&envelopes) {
            if let Some(detail) = &r.broken {
                let rej = bitacora_model::model::Rejected {
                    reason: bitacora_model::model::Reason::BrokenEnvelope,
                    detail: detail.clone(),
                    log_stream: None,
                    source_event_id: Some(std::borrow::Cow::Borrowed(&r.event_id)),
                    source_timestamp: None,
                    raw: std::borrow::Cow::Borrowed(&r.raw),
                };
                rejected.push((rej, r.ingestion_ms));
                continue;
            }
            match self.normalizer.normalize_envelope(e, &r.raw) {
                Ok(ev) => events.push(ev),
                Err(rej) => rejected.push((rej, r.ingestion_ms)),
            }
        }
        // The first copy in the batch wins; the others are duplicates.
        let mut seen = HashSet::with_capacity(events.len());
        let mut outcome = Outcome {
            quarantined: rejected.len() as u64,
            ..Outcome::default()
        };
        events.retain(|e| {
            let first = seen.insert(e.event_id.clone());
            if !first {
                outcome.duplicates += 1;
            }
            first
        });
        // Rounds: claim → deliver what is new → commit it; copies another batch is delivering
        // right now are asked about again after that (never while holding this batch's own
        // claims undelivered, so two batches holding copies of each other's records cannot
        // wait for each other).
        let deadline = Instant::now() + self.dedup_patience;
        let mut pending: Vec<&bitacora_model::model::Event<'_>> = events.iter().collect();
        let mut quarantine: &[(bitacora_model::model::Rejected<'_>, i64)] = &rejected;
        let mut wait = Duration::from_millis(2);
        let (last_owner, last_keys) = loop {
            // Each round is its own owner: it commits or releases everything it claimed.
            let owner = self.next_owner();
            let keys: Vec<&str> = pending.iter().map(|e| &*e.event_id).collect();
            let claims = self.claim(&owner, &keys, deadline).await?;
            let mut fresh = Vec::with_capacity(pending.len());
            let mut in_flight = Vec::new();
            for (e, c) in pending.iter().zip(claims) {
                match c {
                    Claim::New => fresh.push(*e),
                    Claim::Duplicate => outcome.duplicates += 1,
                    Claim::InFlight => in_flight.push(*e),
                }
            }
            let delivered = self
                .deliver_round(&owner, &fresh, quarantine, &mut outcome)
                .await?;
            quarantine = &[];
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
                // What earlier rounds delivered (and marked) counts; the resend finds it seen.
                self.count(&outcome);
                return Err(Error::Unavailable(format!(
                    "{} records still being delivered by another batch after {:?}: send the batch again",
                    in_flight.len(),
                    self.dedup_patience
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
            pending = in_flight;
        };
        self.count(&outcome);
        m.batch_latency.observe(started.elapsed().as_secs_f64());
        if let Some(tx) = answer.take() {
            let _ = tx.send(Ok(outcome));
        }
        self.commit(&last_owner, &last_keys).await;
        Ok(outcome)
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

    /// Delivers one round's new records (and the batch's rejected ones, in the first round);
    /// returns their keys, to be committed. On failure releases them.
    async fn deliver_round<'e>(
        &self,
        owner: &str,
        fresh: &[&'e bitacora_model::model::Event<'_>],
        rejected: &[(bitacora_model::model::Rejected<'_>, i64)],
        outcome: &mut Outcome,
    ) -> Result<Vec<&'e str>> {
        if fresh.is_empty() && rejected.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = fresh.iter().map(|e| &*e.event_id).collect();
        let work = async {
            match self.hand_over(fresh, rejected, outcome).await {
                Ok(ticket) => ticket.wait().await,
                Err(e) => {
                    tracing::warn!("batch {owner}: {e}");
                    false
                }
            }
        };
        let delivered = self.renewing_claims(owner, &keys, work).await;
        if !delivered {
            self.metrics.failed_batches.fetch_add(1, Relaxed);
            if let Err(e) = self.dedup.release(owner, &keys).await {
                // The claims expire after claim_secs: the records are new again then.
                tracing::warn!("batch {owner}: releasing its dedup claims: {e}");
            }
            return Err(Error::Unavailable(
                "the batch was not delivered to every route: send it again".into(),
            ));
        }
        Ok(keys)
    }

    /// Runs `work` (the delivery of a round) while renewing the round's claims every third of
    /// `claim_secs`: a delivery slower than that (a route retrying, a full buffer) keeps its
    /// keys, so no copy elsewhere is delivered meanwhile; a dead instance's claims still expire.
    async fn renewing_claims<F: Future<Output = bool>>(
        &self,
        owner: &str,
        keys: &[&str],
        work: F,
    ) -> bool {
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
    async fn claim(&self, owner: &str, keys: &[&str], deadline: Instant) -> Result<Vec<Claim>> {
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
    async fn commit(&self, owner: &str, keys: &[&str]) {
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

    /// Hands the new records to their routes and the rejected ones to the quarantine.
    async fn hand_over(
        &self,
        fresh: &[&bitacora_model::model::Event<'_>],
        rejected: &[(bitacora_model::model::Rejected<'_>, i64)],
        outcome: &mut Outcome,
    ) -> Result<Ticket> {
        let ticket = Ticket::new();
        for e in fresh {
            outcome.accepted += 1;
            let mut routed = false;
            for r in &self.routes {
                if r.wants(e) {
                    routed = true;
                    r.enqueue(r.render(e)?, ticket.done()).await?;
                }
            }
            if !routed {
                self.metrics.unrouted.fetch_add(1, Relaxed);
            }
        }
        for (rej, received_ms) in rejected {
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
            self.quarantine
                .enqueue(SinkRecord::new(id, json), ticket.done())
                .await?;
        }
        Ok(ticket)
    }
}
