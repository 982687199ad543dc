//! The Kinesis source's coordinator and shard readers (see the module's documentation).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use tokio::sync::{mpsc, watch};

use super::leases::{LeaseStore, RedisLeases, SHARD_END};
use super::records;
use crate::metrics::ShardMetrics;
use crate::pipeline::Pipeline;
use crate::sources::{SourceConfig, StartPosition, StreamSource};
use crate::{Error, Result};

/// Kinesis allows 5 GetRecords calls a second per shard.
const MIN_CALL_GAP: Duration = Duration::from_millis(200);
/// … and 2 MiB a second per shard.
const BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;

pub struct KinesisSource {
    client: aws_sdk_kinesis::Client,
    stream: String,
    start: StartPosition,
    log_stream: String,
    leases: Arc<dyn LeaseStore>,
    owner: String,
    lease: Duration,
    max_records: i32,
    idle: Duration,
    sync_every: Duration,
}

struct Reader {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl KinesisSource {
    /// The source of `[stream.source]`; `dedup_url` is the Redis of the leases unless
    /// `redis_url` names another; `owner` is this instance's token.
    pub async fn new(c: &SourceConfig, dedup_url: &str, owner: &str) -> Result<Self> {
        let stream = c
            .stream_name
            .clone()
            .ok_or_else(|| Error::config("stream.source.stream_name", "not set"))?;
        let sdk = crate::sinks::aws::client::sdk_config(
            &format!("kinesis source {stream}"),
            &c.region,
            &c.endpoint_url,
        )
        .await?;
        let lease = Duration::from_secs(c.lease_secs);
        let url = c.redis_url.as_deref().unwrap_or(dedup_url);
        // The stream's name as a hash tag: its keys share one slot of a Redis Cluster.
        let prefix = format!("{}{{{stream}}}:", c.key_prefix);
        let leases = Arc::new(RedisLeases::connect(url, prefix, lease).await?);
        Ok(KinesisSource {
            client: aws_sdk_kinesis::Client::new(&sdk),
            log_stream: c.default_log_stream(),
            stream,
            start: c.start,
            leases,
            owner: owner.to_string(),
            lease,
            max_records: c.max_records as i32,
            idle: Duration::from_millis(c.idle_ms),
            sync_every: Duration::from_secs(c.shard_sync_secs),
        })
    }

    fn name(&self) -> String {
        format!("kinesis {}", self.stream)
    }

    /// Every shard of the stream, closed ones included (their children wait for them).
    async fn list_shards(&self) -> Result<Vec<Shard>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = req
                .send()
                .await
                .map_err(|e| crate::sinks::aws::client::sdk_error(&self.name(), e))?;
            shards.extend(out.shards().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(shards)
    }

    /// One pass of the coordinator: returns the shards to start reading (their lease taken).
    async fn balance(
        &self,
        shards: &[Shard],
        readers: &mut HashMap<String, Reader>,
        retired: &mut Vec<tokio::task::JoinHandle<()>>,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Vec<(Shard, Option<String>)>> {
        let instances = self.leases.heartbeat(&self.owner).await?;
        let ids: Vec<String> = shards.iter().map(|s| s.shard_id().to_string()).collect();
        let checkpoints = self.leases.checkpoints(&ids).await?;
        let finished: HashSet<&str> = ids
            .iter()
            .zip(&checkpoints)
            .filter(|(_, c)| c.as_deref() == Some(SHARD_END))
            .map(|(i, _)| i.as_str())
            .collect();
        let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let ready = |s: &Shard| {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()];
            !finished.contains(s.shard_id())
                && parents
                    .into_iter()
                    .flatten()
                    .all(|p| finished.contains(p) || !known.contains(p))
        };
        let eligible: Vec<(&Shard, Option<String>)> = shards
            .iter()
            .zip(checkpoints)
            .filter(|(s, _)| ready(s))
            .collect();
        // Renew what is held; let go of what was lost.
        for (id, r) in readers.iter() {
            if !self.leases.renew(id, &self.owner).await? {
                tracing::warn!(
                    "{}: lost the lease of {id}: another instance reads it now",
                    self.name()
                );
                let _ = r.stop.send(true);
                metrics.shard(id).leased.store(0, Relaxed);
            }
        }
        for (_, r) in readers.extract_if(|_, r| *r.stop.borrow()) {
            retired.push(r.handle);
        }
        let share = eligible.len().div_ceil(instances.max(1));
        if readers.len() > share {
            // Above this instance's share: give the extras back (after their current batch).
            let extra: Vec<String> = readers.keys().skip(share).cloned().collect();
            for id in extra {
                if let Some(r) = readers.remove(&id) {
                    tracing::info!(
                        "{}: handing {id} over ({instances} instances share {} shards)",
                        self.name(),
                        eligible.len()
                    );
                    let _ = r.stop.send(true);
                    retired.push(r.handle);
                }
            }
            return Ok(Vec::new());
        }
        let mut taken = Vec::new();
        for (s, checkpoint) in eligible {
            if readers.len() + taken.len() >= share {
                break;
            }
            let id = s.shard_id();
            if readers.contains_key(id) {
                continue;
            }
            if self.leases.acquire(id, &self.owner).await? {
                taken.push((s.clone(), checkpoint));
            }
        }
        Ok(taken)
    }

    async fn iterator(&self, shard: &Shard, from: Option<&str>) -> Result<String> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard.shard_id());
        req = match from {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            // A child of a reshard starts at its beginning whatever `start` says.
            None if shard.parent_shard_id().is_some()
                || self.start == StartPosition::TrimHorizon =>
            {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            None => req.shard_iterator_type(ShardIteratorType::Latest),
        };
        let out = req
            .send()
            .await
            .map_err(|e| crate::sinks::aws::client::sdk_error(&self.name(), e))?;
        out.shard_iterator().map(str::to_string).ok_or_else(|| {
            Error::Unavailable(format!(
                "{}: no iterator for {}",
                self.name(),
                shard.shard_id()
            ))
        })
    }

    /// Reads one shard until it ends, its lease is lost, or it is told to stop.
    async fn read_shard(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        shard: Shard,
        checkpoint: Option<String>,
        mut stop: watch::Receiver<bool>,
        ended: mpsc::UnboundedSender<String>,
    ) {
        let id = shard.shard_id().to_string();
        let m: Arc<ShardMetrics> = pipeline.metrics.shard(&id);
        m.leased.store(1, Relaxed);
        tracing::info!(
            "{}: reading {id} from {}",
            self.name(),
            checkpoint.as_deref().unwrap_or("its start position")
        );
        let mut position = checkpoint;
        let mut iterator: Option<String> = None;
        let mut failures = 0u32;
        let mut next_call = Instant::now();
        let pause = |d: Duration, stop: &mut watch::Receiver<bool>| {
            let mut stop = stop.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        };
        while !*stop.borrow() {
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator(&shard, position.as_deref()).await {
                    Ok(it) => it,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("{}: {id}: {e}", self.name());
                        pause(backoff(failures), &mut stop).await;
                        continue;
                    }
                },
            };
            tokio::time::sleep_until(next_call.into()).await;
            let called = Instant::now();
            next_call = called + MIN_CALL_GAP;
            let out = match self
                .client
                .get_records()
                .shard_iterator(&it)
                .limit(self.max_records)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let code = e.code().unwrap_or_default().to_string();
                    failures += 1;
                    match code.as_str() {
                        "ExpiredIteratorException" => {
                            // A new iterator from the checkpoint (iterators last 5 minutes).
                            tracing::info!(
                                "{}: {id}: iterator expired; reading again from the checkpoint",
                                self.name()
                            );
                        }
                        "ProvisionedThroughputExceededException" => {
                            m.throttled.fetch_add(1, Relaxed);
                            iterator = Some(it);
                            pause(backoff(failures), &mut stop).await;
                        }
                        _ => {
                            tracing::warn!(
                                "{}: {id}: GetRecords: {}",
                                self.name(),
                                crate::sinks::aws::client::sdk_error(&self.name(), e)
                            );
                            iterator = Some(it);
                            pause(backoff(failures), &mut stop).await;
                        }
                    }
                    continue;
                }
            };
            failures = 0;
            if let Some(ms) = out.millis_behind_latest() {
                m.millis_behind.store(ms.max(0) as u64, Relaxed);
            }
            let got = out.records();
            let bytes: usize = got.iter().map(|r| r.data().as_ref().len()).sum();
            if let Some(last) = got.last() {
                m.records_in.fetch_add(got.len() as u64, Relaxed);
                let mut incoming = Vec::with_capacity(got.len());
                for r in got {
                    let arrival = r
                        .approximate_arrival_timestamp()
                        .map_or_else(crate::record::now_ms, |t| t.to_millis().unwrap_or_default());
                    records::decode(
                        r.data().as_ref(),
                        arrival,
                        r.sequence_number(),
                        &self.log_stream,
                        &mut incoming,
                    );
                }
                // Until every route accepted the batch: its checkpoint waits for it.
                let mut attempt = 0u32;
                loop {
                    match pipeline.process(&incoming).await {
                        Ok(_) => break,
                        Err(e) => {
                            attempt += 1;
                            tracing::warn!(
                                "{}: {id}: batch not taken ({e}); sending it again",
                                self.name()
                            );
                            if *stop.borrow() {
                                // Stopping: not checkpointed, read again by the next holder.
                                m.leased.store(0, Relaxed);
                                let _ = self.leases.release(&id, &self.owner).await;
                                return;
                            }
                            pause(backoff(attempt), &mut stop).await;
                        }
                    }
                }
                let seq = last.sequence_number().to_string();
                match self.leases.checkpoint(&id, &self.owner, &seq).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            "{}: {id}: lease lost before checkpointing {seq}: the next holder reads again from the last checkpoint (copies are filtered)",
                            self.name()
                        );
                        m.leased.store(0, Relaxed);
                        return;
                    }
                    // Checkpointed with the next batch; a crash meanwhile reads again (filtered).
                    Err(e) => tracing::warn!("{}: {id}: checkpoint {seq}: {e}", self.name()),
                }
                position = Some(seq);
            }
            match out.next_shard_iterator() {
                Some(next) => iterator = Some(next.to_string()),
                None => {
                    // The shard was closed by a reshard and is read to its end.
                    for attempt in 1..=10u32 {
                        match self.leases.checkpoint(&id, &self.owner, SHARD_END).await {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!("{}: {id}: checkpoint SHARD_END: {e}", self.name());
                                pause(backoff(attempt), &mut stop).await;
                            }
                        }
                    }
                    tracing::info!(
                        "{}: {id} read to its end; its children may be read",
                        self.name()
                    );
                    let _ = ended.send(id.clone());
                    break;
                }
            }
            if got.is_empty() {
                pause(self.idle, &mut stop).await;
            } else {
                // Stay under 2 MiB/s per shard.
                let budget = Duration::from_secs_f64(bytes as f64 / BYTES_PER_SEC);
                next_call = next_call.max(called + budget);
            }
        }
        m.leased.store(0, Relaxed);
        if let Err(e) = self.leases.release(&id, &self.owner).await {
            tracing::warn!(
                "{}: {id}: releasing its lease: {e} (it expires by itself)",
                self.name()
            );
        }
    }
}

/// The wait before try `n + 1` of a reader's call or batch: the routes' backoff (exponential,
/// jitter in [½, 1]) from 200 ms to 5 s.
fn backoff(n: u32) -> Duration {
    const READER: crate::routes::RetryConfig = crate::routes::RetryConfig {
        max_attempts: u32::MAX,
        initial_backoff_ms: 200,
        max_backoff_ms: 5_000,
    };
    READER.backoff(n)
}

#[async_trait]
impl StreamSource for KinesisSource {
    fn kind(&self) -> &'static str {
        "kinesis"
    }

    async fn run(
        self: Arc<Self>,
        pipeline: Arc<Pipeline>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut readers: HashMap<String, Reader> = HashMap::new();
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<String>();
        let mut shards: Vec<Shard> = Vec::new();
        let mut synced: Option<Instant> = None;
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut finished_handles = Vec::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(_) = ended_rx.recv() => synced = None,
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if *shutdown.borrow() {
                break;
            }
            for (_, r) in readers.extract_if(|_, r| r.handle.is_finished()) {
                finished_handles.push(r.handle);
            }
            if synced.is_none_or(|t| t.elapsed() >= self.sync_every) {
                match self.list_shards().await {
                    Ok(s) => {
                        shards = s;
                        synced = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!("{}: ListShards: {e}", self.name()),
                }
            }
            match self
                .balance(
                    &shards,
                    &mut readers,
                    &mut finished_handles,
                    &pipeline.metrics,
                )
                .await
            {
                Ok(taken) => {
                    for (shard, checkpoint) in taken {
                        let (stop_tx, stop_rx) = watch::channel(false);
                        let id = shard.shard_id().to_string();
                        let handle = tokio::spawn(self.clone().read_shard(
                            pipeline.clone(),
                            shard,
                            checkpoint,
                            stop_rx,
                            ended_tx.clone(),
                        ));
                        readers.insert(
                            id,
                            Reader {
                                stop: stop_tx,
                                handle,
                            },
                        );
                    }
                }
                Err(e) => tracing::warn!("{}: leases: {e}", self.name()),
            }
        }
        // Shutdown: every reader finishes its batch, checkpoints and gives its lease back.
        for r in readers.values() {
            let _ = r.stop.send(true);
        }
        for (_, r) in readers {
            let _ = r.handle.await;
        }
        for h in finished_handles {
            let _ = h.await;
        }
        Ok(())
    }
}
