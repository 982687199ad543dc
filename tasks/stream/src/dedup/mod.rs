//! Dedup stores: the first copy of a key seen within `ttl_secs` wins.
//!
//! A two-phase mark keeps delivery at least once: [`DedupStore::claim`] takes a short claim on
//! each new key (so that another instance holding a copy waits instead of delivering it too),
//! the records are delivered, and only then [`DedupStore::commit`] marks the keys seen for the
//! whole TTL. A batch that could not be delivered [`DedupStore::release`]s its claims, so its
//! records stay new for the retry; a crashed holder's claims expire after `claim_secs`. A key is
//! therefore never "seen" unless its record was delivered.

mod memory;
mod none;
mod redis;

#[doc(hidden)]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::MemoryDedup;
pub use none::NoDedup;
pub use redis::RedisDedup;
pub(crate) use redis::connect as connect_redis;

use crate::Result;

/// A record's dedup key: its id (`event_id`, else the CloudWatch `eventId`, else a hash of the
/// record) and, when every copy of the record carries it, the record's own time — a store may
/// file keys by it (Redis keeps such keys in hashes of ten seconds, cheaper than a key each). Copies
/// of a record are given the same `Key`; two keys with one id and different times may or may not
/// be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    pub id: &'a str,
    /// Microseconds since the epoch; `None` for a record stamped on arrival (a copy sent again
    /// later would carry another time).
    pub time_us: Option<i64>,
}

impl<'a> Key<'a> {
    /// The key of a record stamped on arrival.
    pub fn untimed(id: &'a str) -> Self {
        Key { id, time_us: None }
    }

    /// The key of a record with a time of its own.
    pub fn timed(id: &'a str, time_us: i64) -> Self {
        Key {
            id,
            time_us: Some(time_us),
        }
    }

    /// The key of a normalised event: timed by its `event_time` when that is the record's own
    /// ([`Event::own_time`](bitacora_model::model::Event::own_time): its `ts`, its CloudWatch
    /// envelope's `timestamp`), not its arrival (nor a routed record's, which does not say).
    pub fn of(event: &'a bitacora_model::model::Event<'_>) -> Self {
        Key {
            id: &event.event_id,
            time_us: event.own_time.then_some(event.event_time),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(id: &'a str) -> Self {
        Key::untimed(id)
    }
}

/// What a claim found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: claimed for this caller, which delivers it and then commits or releases.
    New,
    /// Delivered before, within the TTL: a duplicate.
    Duplicate,
    /// Claimed by another caller that is delivering it now: ask again later (it becomes a
    /// duplicate once committed, or new again if released or expired).
    InFlight,
}

/// A dedup store (`[stream.dedup] kind`). Keys are the records' dedup keys; a caller's claims are
/// told apart by its `owner` token.
///
/// An owner is one round of one batch, used once: it claims its keys (a claim retried after an
/// error repeats the same keys), delivers the new ones, then commits or releases all of them —
/// `keys` passed to `commit`, `release` and `extend` are every key the owner's claim answered
/// [`Claim::New`]. Stores may mark per owner (Redis: one status key per round) or per key
/// (memory); both give the same answers.
#[async_trait]
pub trait DedupStore: Send + Sync {
    /// The store's kind, for logs and metrics.
    fn kind(&self) -> &'static str;
    /// Claims every key not seen and not claimed; one answer per key, in order.
    async fn claim(&self, owner: &str, keys: &[Key<'_>]) -> Result<Vec<Claim>>;
    /// Marks the caller's claimed keys seen for the TTL (their records were delivered).
    async fn commit(&self, owner: &str, keys: &[Key<'_>]) -> Result<()>;
    /// Drops the caller's claims on keys whose records were not delivered.
    async fn release(&self, owner: &str, keys: &[Key<'_>]) -> Result<()>;
    /// Renews the caller's claims for another `claim_secs` (a batch whose delivery takes
    /// longer — a route retrying, a full buffer — keeps them; a dead holder's still expire).
    /// Keys the caller no longer holds are left as they are.
    async fn extend(&self, owner: &str, keys: &[Key<'_>]) -> Result<()>;
}

/// `[stream.dedup]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    pub kind: DedupKind,
    /// redis: the server (ElastiCache's primary endpoint in AWS; `rediss://` for TLS).
    pub url: String,
    /// How long a delivered key is remembered: copies arriving later pass as new.
    pub ttl_secs: u64,
    /// How long a claim lasts when its holder dies before committing it (longer than a batch's
    /// delivery takes, shorter than producers wait to resend).
    pub claim_secs: u64,
    /// memory: the most keys remembered (least recently seen ones go first).
    pub max_keys: u64,
    /// redis: the prefix of every key.
    pub key_prefix: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DedupKind {
    Redis,
    Memory,
    None,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            kind: DedupKind::Memory,
            url: "redis://127.0.0.1:6379/0".into(),
            ttl_secs: 86_400,
            claim_secs: 60,
            max_keys: 2_000_000,
            key_prefix: "bitacora:seen:".into(),
        }
    }
}

impl DedupConfig {
    pub fn validate(&self) -> bitacora_core::Result<()> {
        use bitacora_core::Error;
        let ranges: [(&str, u64, u64, u64); 3] = [
            // A key lives `ttl_secs` from its claim: at least as long as a claim.
            (
                "stream.dedup.ttl_secs",
                self.ttl_secs,
                self.claim_secs.max(1),
                30 * 86_400,
            ),
            ("stream.dedup.claim_secs", self.claim_secs, 1, 3_600),
            ("stream.dedup.max_keys", self.max_keys, 1, 1_000_000_000),
        ];
        for (key, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(Error::config(
                    key,
                    format!("must be between {lo} and {hi}, got {v}"),
                ));
            }
        }
        if self.kind == DedupKind::Redis
            && !self.url.starts_with("redis://")
            && !self.url.starts_with("rediss://")
        {
            return Err(Error::config(
                "stream.dedup.url",
                format!(
                    "expected redis://HOST:PORT/DB or rediss://…, got {:?}",
                    self.url
                ),
            ));
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    pub fn claim_ttl(&self) -> Duration {
        Duration::from_secs(self.claim_secs)
    }

    /// The configured store.
    pub async fn build(&self) -> Result<Arc<dyn DedupStore>> {
        Ok(match self.kind {
            DedupKind::Memory => Arc::new(MemoryDedup::new(
                self.max_keys as usize,
                self.ttl(),
                self.claim_ttl(),
            )),
            DedupKind::None => Arc::new(NoDedup),
            DedupKind::Redis => Arc::new(
                RedisDedup::connect(&self.url, &self.key_prefix, self.ttl(), self.claim_ttl())
                    .await?,
            ),
        })
    }
}

impl DedupConfig {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            DedupKind::Redis => "redis",
            DedupKind::Memory => "memory",
            DedupKind::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Key;
    use crate::record::{Incoming, envelope_of_line};
    use bitacora_model::normalize::Normalizer;

    /// The key the pipeline gives `line` received at `at_ms`.
    fn key_of(line: &str, at_ms: i64) -> (Option<i64>, String) {
        let n = Normalizer::new("app", 1 << 20);
        let r: Incoming = envelope_of_line(line, at_ms, "http");
        let env = r.envelope();
        let ev = r.normalize(&env, &n).unwrap();
        let k = Key::of(&ev);
        (k.time_us, k.id.to_string())
    }

    #[test]
    fn a_record_sent_twice_has_one_key_timed_only_by_its_own_time() {
        // 2026-11-18T10:00:00Z in ms; the copy arrives 5 s later.
        let t = 1_794_996_000_000;
        let lines = [
            // ts equal to the arrival millisecond: still the message's own.
            (
                r#"{"event_id":"a","ts":"2026-11-18T10:00:00.000Z","event_type":"tap"}"#,
                Some(t * 1000),
            ),
            // A CloudWatch envelope: its timestamp, whatever the arrival.
            (
                &*format!(r#"{{"timestamp":{t},"message":"{{\"event_id\":\"b\"}}"}}"#),
                Some(t * 1000),
            ),
            // No `ts`, a text line: stamped on arrival, so untimed.
            (r#"{"event_id":"c","event_type":"tap"}"#, None),
            ("plain text crash", None),
        ];
        // A routed record sent back in (a fan-out queue's message): it does not say where its
        // time came from, so it is untimed.
        let routed = {
            let n = Normalizer::new("app", 1 << 20);
            let r = envelope_of_line(lines[0].0, t, "http");
            let env = r.envelope();
            let mut out = Vec::new();
            bitacora_model::routed::write_event(&r.normalize(&env, &n).unwrap(), &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(bitacora_model::routed::looks_routed(&routed));
        let lines: Vec<(&str, Option<i64>)> = lines
            .iter()
            .copied()
            .chain([(routed.as_str(), None)])
            .collect();
        for (line, time) in lines {
            let first = key_of(line, t);
            assert_eq!(first.0, time, "{line}");
            assert_eq!(key_of(line, t + 5_000), first, "{line}: the copy's key");
        }
    }
}
