//! `kind = "redis"` (ElastiCache in AWS). A batch round (an owner) writes its status key
//! `<prefix>#b:<owner>` (`~` while it delivers, for `claim_secs`) and claims its records in the
//! same pipeline:
//!
//! - records with a time of their own ([`Key::time_us`]: their copies all carry it) are fields
//!   of the hash of their ten seconds and of one of 8 shards of their id,
//!   `<prefix>#w<window>:<shard>`, claimed by one script call per hash and round (up to 1,000
//!   fields): `HMGET` of the fields, `HSET` of the free ones to the owner, the hash's expiry
//!   (`PEXPIRE … ttl NX`, then `GT`: a new hash never lacks one, an older one is extended and
//!   never shortened by an instance with a shorter TTL), the taken ones and their holders
//!   answered. No expiry per key, which is most of what a `SET … PX` costs Redis, and about 60 %
//!   of its memory; one short answer per hash (only the taken fields) instead of one per record,
//!   which was most of what the client spent;
//! - a record stamped on arrival is a key of its own: `SET <prefix><id> <owner> NX PX ttl GET`
//!   (Redis 7 or later); ids starting with `#` are written `##…`, so that no key of this kind is
//!   ever named like a hash or a status (`#w…`, `#b:…`).
//!
//! Either way a key lives at least `ttl_secs` after its claim (a window's hash: after its latest
//! claim). Committing the round is one `SET` of its status to `=` for the TTL, releasing it one
//! `DEL`, renewing it one `PEXPIRE`. A key held by another owner is a duplicate if that owner
//! committed, in flight while it delivers, and taken over (a compare-and-set script) once its
//! status is gone (released, or its holder died and the status expired). Keys of records stamped on arrival written `=` by
//! earlier versions (one `SET` per record at commit) still read as seen.
//!
//! The connection manager reconnects behind a dropped connection and hands the error to the
//! caller, which retries (the pipeline holds the batch back meanwhile: nothing passes unchecked).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Claim, DedupStore, Key};
use crate::{Error, Result};

/// A committed round's status (and the value of keys seen by earlier versions). Owners are hex
/// tokens: never this, nor [`PENDING`].
const SEEN: &[u8] = b"=";
/// A round's status while it delivers.
const PENDING: &[u8] = b"~";
/// Takes a key over from an owner whose status is gone: only if it still holds that owner.
const TAKEOVER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end";
/// Claims fields of a window's hash (`KEYS[1]`) for the owner `ARGV[1]`, with the hash's
/// expiry `ARGV[2]` ms in the same step; answers the fields that were taken, as pairs of their
/// place among the fields (from 1) and their holder — the others were free and are now the
/// owner's. One `HMGET` and one `HSET` whatever the number of fields (plus the two `PEXPIRE`s;
/// per field, about what one `HSETNX` costs Redis), and one short answer to read instead of one
/// per field. A new
/// hash is never left without an expiry; an older one is extended, never shortened (`GT`: by an
/// instance with a shorter window).
const CLAIM: &str = "local h = redis.call('HMGET', KEYS[1], unpack(ARGV, 3)) local s, t = {}, {} for i = 1, #h do if h[i] then t[#t + 1] = i t[#t + 1] = h[i] else s[#s + 1] = ARGV[i + 2] s[#s + 1] = ARGV[1] end end if #s > 0 then redis.call('HSET', KEYS[1], unpack(s)) end redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX') redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT') return t";
/// The most fields one [`CLAIM`] call takes: Redis's Lua `unpack`s at most ~8,000 values, and
/// the `HSET` takes two a field (3,999 fields at most).
const CLAIM_FIELDS: usize = 1_000;
/// The same as [`TAKEOVER`] for a field of a window's hash.
const TAKEOVER_FIELD: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 else return 0 end";
/// Shards of a window's hash: a live round (its records' times within seconds) writes to a
/// few hashes, and a hash stays small enough to expire in one go (~125,000 fields at 100,000
/// records a second).
const SHARDS: u64 = 8;
/// Microseconds in a window: timed keys are filed by the ten seconds of their time.
const WINDOW_US: i64 = 10_000_000;
/// Renews a round's status only while it delivers (never shortens a commit).
const EXTEND: &str = "if redis.call('GET', KEYS[1]) == '~' then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) else return 0 end";

pub struct RedisDedup {
    conn: ConnectionManager,
    prefix: String,
    ttl_ms: u64,
    claim_ms: u64,
}

fn err(e: redis::RedisError) -> Error {
    Error::Dedup {
        store: "redis",
        message: bitacora_model::one_line(&e.to_string()),
    }
}

/// A reconnecting connection to the Redis at `url` (set at the setting `key`): short connect
/// and response timeouts, so a caller holding a batch back learns of an outage quickly and
/// retries. `store` names the user in errors.
pub(crate) async fn connect(
    url: &str,
    key: &str,
    store: &'static str,
) -> Result<ConnectionManager> {
    // TLS (`rediss://`, `valkeys://`, any case) needs rustls's process-wide crypto provider:
    // the builds with the AWS SDK link two (aws-lc-rs and ring), so rustls cannot pick one by
    // itself. Chosen here whatever the URL; already chosen (an earlier call) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = redis::Client::open(url).map_err(|e| {
        Error::config(
            key,
            format!("{url:?}: {}", bitacora_model::one_line(&e.to_string())),
        )
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| Error::Dedup {
            store,
            message: format!(
                "cannot connect to {url}: {}",
                bitacora_model::one_line(&e.to_string())
            ),
        })
}

impl RedisDedup {
    pub async fn connect(url: &str, prefix: &str, ttl: Duration, claim: Duration) -> Result<Self> {
        let conn = connect(url, "stream.dedup.url", "redis").await?;
        // One endpoint: a Redis Cluster would refuse the claims' multi-slot pipelines.
        let mut probe = conn.clone();
        let cluster: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut probe)
            .await
            .map_err(err)?;
        if cluster.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Err(Error::config(
                "stream.dedup.url",
                format!(
                    "{url} is a Redis Cluster node: the dedup needs one endpoint (ElastiCache with cluster mode disabled, or a single Redis)"
                ),
            ));
        }
        // `SET … NX GET` is Redis 7's: an older server would refuse every claim at run time.
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut probe)
            .await
            .map_err(err)?;
        if let Some(v) = server_version(&info)
            && v < (7, 0)
        {
            return Err(Error::config(
                "stream.dedup.url",
                format!(
                    "{url} runs Redis {}.{}: the dedup needs Redis 7 or later (SET … NX GET)",
                    v.0, v.1
                ),
            ));
        }
        Ok(RedisDedup {
            conn,
            prefix: prefix.to_string(),
            ttl_ms: ttl.as_millis().max(1) as u64,
            claim_ms: claim.as_millis().max(1) as u64,
        })
    }

    /// Writes into `out` the name of the Redis key where `k` lives: the key of its own, or the
    /// window's hash it is a field of. `Some((window, shard))` for the latter.
    fn place(&self, k: &Key<'_>, out: &mut String) -> Option<(i64, u64)> {
        out.clear();
        match bucket(k) {
            Some(b) => {
                self.hash_name(b, out);
                Some(b)
            }
            None => {
                out.push_str(&self.prefix);
                if k.id.starts_with('#') {
                    out.push('#');
                }
                out.push_str(k.id);
                None
            }
        }
    }

    /// Appends to `out` the name of a window's hash: `<prefix>#w<window>:<shard>`.
    fn hash_name(&self, (window, shard): (i64, u64), out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{}#w{window}:{shard}", self.prefix);
    }

    /// The status key of a round.
    fn status_key(&self, owner: &str) -> String {
        format!("{}#b:{owner}", self.prefix)
    }

    /// Adds to `pipe` the write of a round's status as delivering, unless it has one already
    /// (a committed round stays committed).
    fn write_pending(&self, pipe: &mut redis::Pipeline, owner: &str) {
        pipe.cmd("SET")
            .arg(self.status_key(owner))
            .arg(PENDING)
            .arg("NX")
            .arg("PX")
            .arg(self.claim_ms)
            .ignore();
    }
}

/// The window's hash a key with a time of its own is a field of: `(window, shard)`.
fn bucket(k: &Key<'_>) -> Option<(i64, u64)> {
    k.time_us.map(|t| {
        (
            t.div_euclid(WINDOW_US),
            xxhash_rust::xxh3::xxh3_64(k.id.as_bytes()) % SHARDS,
        )
    })
}

/// A command of `args` words (its name included) whose bytes add up to about `bytes`, built without regrowing.
fn command(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut c = redis::Cmd::with_capacity(args, name.len() + bytes + 24);
    c.arg(name);
    c
}

/// What a round's status key says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Committed,
    Delivering,
    Gone,
}

/// `redis_version:7.0.15` of `INFO server` (Valkey and ElastiCache report it too).
fn server_version(info: &str) -> Option<(u32, u32)> {
    let v = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[async_trait]
impl DedupStore for RedisDedup {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn claim(&self, owner: &str, keys: &[Key<'_>]) -> Result<Vec<Claim>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // The round's timed keys by window hash, in order of first appearance (a live round's
        // records fall in a few hashes): one script call per hash, up to CLAIM_FIELDS keys each.
        let mut groups: Vec<((i64, u64), Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<(i64, u64), usize> = HashMap::new();
        // The keys of their own, claimed one command each after the hashes' calls.
        let mut own: Vec<usize> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match bucket(k) {
                Some(b) => {
                    let g = *group_of.entry(b).or_insert_with(|| {
                        groups.push((b, Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push(i);
                }
                None => own.push(i),
            }
        }
        let mut name = String::with_capacity(self.prefix.len() + 64);
        let mut pipe = redis::Pipeline::with_capacity(groups.len() + own.len() + 1);
        // The status first: whoever finds a key of this round finds its status.
        self.write_pending(&mut pipe, owner);
        let ttl = self.ttl_ms.to_string();
        // The keys each hash call claims, in the pipeline's order.
        let mut calls: Vec<&[usize]> = Vec::new();
        for (b, members) in &groups {
            let mut hash = String::with_capacity(self.prefix.len() + 24);
            self.hash_name(*b, &mut hash);
            for chunk in members.chunks(CLAIM_FIELDS) {
                let bytes = chunk.iter().map(|&i| keys[i].id.len()).sum::<usize>()
                    + CLAIM.len()
                    + hash.len()
                    + owner.len()
                    + ttl.len();
                let mut c = command("EVAL", 6 + chunk.len(), bytes + 8 * chunk.len());
                c.arg(CLAIM)
                    .arg(1)
                    .arg(hash.as_bytes())
                    .arg(owner)
                    .arg(&ttl);
                for &i in chunk {
                    c.arg(keys[i].id);
                }
                pipe.add_command(c);
                calls.push(chunk);
            }
        }
        for &i in &own {
            self.place(&keys[i], &mut name);
            let mut c = command("SET", 7, name.len() + owner.len() + ttl.len() + 10);
            c.arg(name.as_bytes())
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(&ttl)
                .arg("GET");
            pipe.add_command(c);
        }
        let mut conn = self.conn.clone();
        let answers: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(err)?;
        if answers.len() != calls.len() + own.len() {
            return Err(Error::Dedup {
                store: "redis",
                message: format!(
                    "{} answers to {} commands",
                    answers.len(),
                    calls.len() + own.len()
                ),
            });
        }
        // The holder of each key that was taken (`None`: the claim is this round's).
        let mut previous: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let unexpected = |other: &redis::Value| Error::Dedup {
            store: "redis",
            message: format!(
                "unexpected answer to a claim: {}",
                bitacora_model::one_line(&format!("{other:?}"))
            ),
        };
        let mut answers = answers.into_iter();
        for (chunk, a) in calls.iter().zip(answers.by_ref()) {
            let redis::Value::Array(taken) = a else {
                return Err(unexpected(&a));
            };
            let mut taken = taken.into_iter();
            while let Some(place) = taken.next() {
                match (place, taken.next()) {
                    (redis::Value::Int(n), Some(redis::Value::BulkString(holder)))
                        if n >= 1 && (n as usize) <= chunk.len() =>
                    {
                        previous[chunk[n as usize - 1]] = Some(holder);
                    }
                    (place, holder) => {
                        return Err(unexpected(&redis::Value::Array(
                            [Some(place), holder].into_iter().flatten().collect(),
                        )));
                    }
                }
            }
        }
        for (&i, a) in own.iter().zip(answers) {
            match a {
                redis::Value::Nil => {}
                redis::Value::BulkString(holder) => previous[i] = Some(holder),
                other => return Err(unexpected(&other)),
            }
        }
        // The rounds holding the keys that were taken: one MGET of their statuses.
        let mut holders: HashMap<&[u8], Status> = HashMap::new();
        for p in previous.iter().flatten() {
            if p.as_slice() != SEEN {
                holders.insert(p.as_slice(), Status::Gone);
            }
        }
        if !holders.is_empty() {
            let names: Vec<&[u8]> = holders.keys().copied().collect();
            let mut mget = redis::cmd("MGET");
            for h in &names {
                mget.arg(self.status_key(&String::from_utf8_lossy(h)));
            }
            let statuses: Vec<Option<Vec<u8>>> = mget.query_async(&mut conn).await.map_err(err)?;
            for (h, st) in names.iter().zip(statuses) {
                let status = match st.as_deref() {
                    Some(SEEN) => Status::Committed,
                    Some(_) => Status::Delivering,
                    None => Status::Gone,
                };
                holders.insert(h, status);
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut orphans = Vec::new();
        for (i, p) in previous.iter().enumerate() {
            out.push(match p.as_deref() {
                None => Claim::New,
                Some(SEEN) => Claim::Duplicate,
                Some(h) => match holders.get(h).copied().unwrap_or(Status::Gone) {
                    Status::Committed => Claim::Duplicate,
                    Status::Delivering if h == owner.as_bytes() => Claim::New,
                    Status::Delivering => Claim::InFlight,
                    // Another round's status is gone: take the key over. This round's own can
                    // be gone only if it expired between the two calls: written again below.
                    Status::Gone => {
                        orphans.push((i, h));
                        Claim::InFlight
                    }
                },
            });
        }
        if !orphans.is_empty() {
            let mut pipe = redis::pipe();
            self.write_pending(&mut pipe, owner);
            for (i, h) in &orphans {
                let k = &keys[*i];
                if self.place(k, &mut name).is_some() {
                    pipe.cmd("EVAL")
                        .arg(TAKEOVER_FIELD)
                        .arg(1)
                        .arg(name.as_bytes())
                        .arg(k.id)
                        .arg(*h)
                        .arg(owner);
                } else {
                    pipe.cmd("EVAL")
                        .arg(TAKEOVER)
                        .arg(1)
                        .arg(name.as_bytes())
                        .arg(*h)
                        .arg(owner)
                        .arg(self.ttl_ms);
                }
            }
            let taken: Vec<i64> = pipe.query_async(&mut conn).await.map_err(err)?;
            for ((i, _), t) in orphans.iter().zip(taken) {
                // Not taken: someone else took it first; it is in flight (asked again later).
                if t == 1 {
                    out[*i] = Claim::New;
                }
            }
        }
        Ok(out)
    }

    async fn commit(&self, owner: &str, keys: &[Key<'_>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.status_key(owner))
            .arg(SEEN)
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn release(&self, owner: &str, keys: &[Key<'_>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        // Only a round still delivering: a committed one stays committed.
        redis::cmd("EVAL")
            .arg("if redis.call('GET', KEYS[1]) == '~' then return redis.call('DEL', KEYS[1]) else return 0 end")
            .arg(1)
            .arg(self.status_key(owner))
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn extend(&self, owner: &str, keys: &[Key<'_>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::cmd("EVAL")
            .arg(EXTEND)
            .arg(1)
            .arg(self.status_key(owner))
            .arg(self.claim_ms)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_server_version() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(super::server_version(info), Some((7, 0)));
        assert_eq!(
            super::server_version("redis_version:6.2.14\r\n"),
            Some((6, 2))
        );
        assert_eq!(super::server_version("nothing"), None);
    }
}
