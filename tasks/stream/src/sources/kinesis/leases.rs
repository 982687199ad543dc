//! Shard leases and checkpoints: which instance reads which shard, and how far every route has
//! accepted its records. Kept in Redis (the ElastiCache of the architecture) so that several
//! service instances share a stream; `memory` is the same protocol inside one process (tests, a
//! single instance whose checkpoints may be lost).
//!
//! A lease is a key holding its owner with an expiry: taken with `SET NX PX`, renewed and
//! released only by its owner (compare-and-set scripts). A checkpoint is written only by the
//! shard's current lease holder, so an instance that lost its lease (paused past the expiry) can
//! never move a checkpoint past records it did not deliver. A finished shard's checkpoint is
//! [`SHARD_END`]: its children may then be read. Live instances heartbeat in a sorted set; each
//! aims at its share of the shards (`ceil(shards / instances)`), so shards rebalance as
//! instances come and go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{Error, Result};

/// The checkpoint of a shard read to its end.
pub const SHARD_END: &str = "SHARD_END";

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Records `owner` alive now; returns how many instances are alive.
    async fn heartbeat(&self, owner: &str) -> Result<usize>;
    /// Takes the shard's lease if nobody holds it (or `owner` already does).
    async fn acquire(&self, shard: &str, owner: &str) -> Result<bool>;
    /// Renews the owner's lease; `false` if it no longer holds it.
    async fn renew(&self, shard: &str, owner: &str) -> Result<bool>;
    /// Gives the lease up (only the owner's).
    async fn release(&self, shard: &str, owner: &str) -> Result<()>;
    /// Writes the shard's checkpoint if `owner` holds its lease; `false` if it does not.
    async fn checkpoint(&self, shard: &str, owner: &str, sequence: &str) -> Result<bool>;
    /// The checkpoints of `shards`, in order (`None`: never checkpointed).
    async fn checkpoints(&self, shards: &[String]) -> Result<Vec<Option<String>>>;
}

// ------------------------------------------------------------------------------------------ redis

pub struct RedisLeases {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    lease_ms: u64,
}

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
const ACQUIRE: &str = "local v = redis.call('GET', KEYS[1]) if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 elseif v then return 0 else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end";
const CHECKPOINT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 else return 0 end";
const HEARTBEAT: &str = "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[3]) return redis.call('ZCARD', KEYS[1])";

fn err(e: redis::RedisError) -> Error {
    Error::Dedup {
        store: "redis (kinesis leases)",
        message: bitacora_model::one_line(&e.to_string()),
    }
}

impl RedisLeases {
    /// `prefix` already names the stream (`bitacora:kinesis:mobile-logs:`).
    pub async fn connect(url: &str, prefix: String, lease: Duration) -> Result<Self> {
        let conn =
            crate::dedup::connect_redis(url, "stream.source.redis_url", "redis (kinesis leases)")
                .await?;
        Ok(RedisLeases {
            conn,
            prefix,
            lease_ms: lease.as_millis().max(1) as u64,
        })
    }

    fn key(&self, kind: &str, shard: &str) -> String {
        format!("{}{kind}:{shard}", self.prefix)
    }

    async fn script(&self, body: &str, keys: &[String], args: &[String]) -> Result<i64> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(body).arg(keys.len());
        for k in keys {
            cmd.arg(k);
        }
        for a in args {
            cmd.arg(a);
        }
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(err)
    }
}

#[async_trait]
impl LeaseStore for RedisLeases {
    async fn heartbeat(&self, owner: &str) -> Result<usize> {
        let now = crate::record::now_ms();
        // Members silent for two lease periods are gone.
        let n = self
            .script(
                HEARTBEAT,
                &[format!("{}workers", self.prefix)],
                &[
                    now.to_string(),
                    owner.to_string(),
                    (2 * self.lease_ms).to_string(),
                ],
            )
            .await?;
        Ok(n.max(1) as usize)
    }

    async fn acquire(&self, shard: &str, owner: &str) -> Result<bool> {
        let n = self
            .script(
                ACQUIRE,
                &[self.key("lease", shard)],
                &[owner.to_string(), self.lease_ms.to_string()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn renew(&self, shard: &str, owner: &str) -> Result<bool> {
        let n = self
            .script(
                RENEW,
                &[self.key("lease", shard)],
                &[owner.to_string(), self.lease_ms.to_string()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, shard: &str, owner: &str) -> Result<()> {
        self.script(RELEASE, &[self.key("lease", shard)], &[owner.to_string()])
            .await
            .map(|_| ())
    }

    async fn checkpoint(&self, shard: &str, owner: &str, sequence: &str) -> Result<bool> {
        let n = self
            .script(
                CHECKPOINT,
                &[self.key("lease", shard), self.key("checkpoint", shard)],
                &[owner.to_string(), sequence.to_string()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn checkpoints(&self, shards: &[String]) -> Result<Vec<Option<String>>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = shards.iter().map(|s| self.key("checkpoint", s)).collect();
        let mut conn = self.conn.clone();
        redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(err)
    }
}

// ----------------------------------------------------------------------------------------- memory

#[derive(Default)]
struct MemoryState {
    leases: HashMap<String, (String, Instant)>,
    checkpoints: HashMap<String, String>,
    workers: HashMap<String, Instant>,
}

/// Leases and checkpoints inside one process.
pub struct MemoryLeases {
    state: Mutex<MemoryState>,
    lease: Duration,
}

impl MemoryLeases {
    pub fn new(lease: Duration) -> Self {
        MemoryLeases {
            state: Mutex::default(),
            lease,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn holds(s: &MemoryState, shard: &str, owner: &str) -> bool {
        s.leases
            .get(shard)
            .is_some_and(|(o, until)| o == owner && *until > Instant::now())
    }
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn heartbeat(&self, owner: &str) -> Result<usize> {
        let now = Instant::now();
        let mut s = self.lock();
        s.workers.insert(owner.to_string(), now);
        let gone = 2 * self.lease;
        s.workers.retain(|_, seen| now.duration_since(*seen) < gone);
        Ok(s.workers.len().max(1))
    }

    async fn acquire(&self, shard: &str, owner: &str) -> Result<bool> {
        let now = Instant::now();
        let mut s = self.lock();
        let free = match s.leases.get(shard) {
            None => true,
            Some((o, until)) => o == owner || *until <= now,
        };
        if free {
            s.leases
                .insert(shard.to_string(), (owner.to_string(), now + self.lease));
        }
        Ok(free)
    }

    async fn renew(&self, shard: &str, owner: &str) -> Result<bool> {
        let mut s = self.lock();
        if !Self::holds(&s, shard, owner) {
            return Ok(false);
        }
        s.leases.insert(
            shard.to_string(),
            (owner.to_string(), Instant::now() + self.lease),
        );
        Ok(true)
    }

    async fn release(&self, shard: &str, owner: &str) -> Result<()> {
        let mut s = self.lock();
        if s.leases.get(shard).is_some_and(|(o, _)| o == owner) {
            s.leases.remove(shard);
        }
        Ok(())
    }

    async fn checkpoint(&self, shard: &str, owner: &str, sequence: &str) -> Result<bool> {
        let mut s = self.lock();
        if !Self::holds(&s, shard, owner) {
            return Ok(false);
        }
        s.checkpoints
            .insert(shard.to_string(), sequence.to_string());
        Ok(true)
    }

    async fn checkpoints(&self, shards: &[String]) -> Result<Vec<Option<String>>> {
        let s = self.lock();
        Ok(shards
            .iter()
            .map(|k| s.checkpoints.get(k).cloned())
            .collect())
    }
}

/// The one conformance suite every [`LeaseStore`] passes. `make(lease)` returns a fresh store.
#[doc(hidden)]
pub async fn conformance<F, Fut>(make: F)
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = std::sync::Arc<dyn LeaseStore>>,
{
    let long = Duration::from_secs(60);
    let l = make(long).await;
    // One holder at a time; the holder may take it again.
    assert!(l.acquire("s0", "a").await.unwrap());
    assert!(!l.acquire("s0", "b").await.unwrap());
    assert!(l.acquire("s0", "a").await.unwrap());
    assert!(l.renew("s0", "a").await.unwrap());
    assert!(!l.renew("s0", "b").await.unwrap());
    // Only the holder moves the checkpoint.
    assert!(l.checkpoint("s0", "a", "100").await.unwrap());
    assert!(!l.checkpoint("s0", "b", "200").await.unwrap());
    assert_eq!(
        l.checkpoints(&["s0".into(), "s1".into()]).await.unwrap(),
        vec![Some("100".to_string()), None]
    );
    // Releasing someone else's lease does nothing; the holder's release frees it, and the
    // checkpoint stays.
    l.release("s0", "b").await.unwrap();
    assert!(!l.acquire("s0", "b").await.unwrap());
    l.release("s0", "a").await.unwrap();
    assert!(l.acquire("s0", "b").await.unwrap());
    assert!(!l.checkpoint("s0", "a", "300").await.unwrap());
    assert!(l.checkpoint("s0", "b", SHARD_END).await.unwrap());
    assert_eq!(
        l.checkpoints(&["s0".into()]).await.unwrap(),
        vec![Some(SHARD_END.to_string())]
    );
    // Heartbeats count the live instances.
    assert_eq!(l.heartbeat("a").await.unwrap(), 1);
    assert_eq!(l.heartbeat("b").await.unwrap(), 2);
    assert_eq!(l.heartbeat("a").await.unwrap(), 2);

    // A dead holder's lease expires: another takes it; the old holder can neither renew it nor
    // checkpoint. Instances silent for two lease periods stop counting.
    let short = Duration::from_millis(300);
    let l = make(short).await;
    assert!(l.acquire("s1", "a").await.unwrap());
    l.heartbeat("a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(l.acquire("s1", "b").await.unwrap());
    assert!(!l.renew("s1", "a").await.unwrap());
    assert!(!l.checkpoint("s1", "a", "5").await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(l.heartbeat("b").await.unwrap(), 1, "a is gone");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_leases_pass_the_conformance_suite() {
        super::conformance(|lease| async move {
            std::sync::Arc::new(super::MemoryLeases::new(lease))
                as std::sync::Arc<dyn super::LeaseStore>
        })
        .await;
    }
}
