//! `kind = "redis"` (ElastiCache in AWS): one key per record, `SET key owner NX PX claim GET`
//! claims (Redis 7 or later), `SET key = PX ttl` commits, a compare-and-delete script releases;
//! every call is one pipeline per batch. The connection manager reconnects behind a dropped
//! connection and hands the error to the caller, which retries (the pipeline holds the batch
//! back meanwhile: nothing passes unchecked).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Claim, DedupStore};
use crate::{Error, Result};

/// The value of a delivered key (owners are hex tokens: never this).
const SEEN: &str = "=";
/// Deletes a key only if it still holds the caller's claim.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
/// Renews a key's expiry only if it still holds the caller's claim.
const EXTEND: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

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
        // `SET … NX GET` is Redis 7's: an older server would refuse every claim at run time.
        let mut probe = conn.clone();
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

    fn key(&self, k: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + k.len());
        s.push_str(&self.prefix);
        s.push_str(k);
        s
    }
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

    async fn claim(&self, owner: &str, keys: &[&str]) -> Result<Vec<Claim>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(self.key(k))
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(self.claim_ms)
                .arg("GET");
        }
        let mut conn = self.conn.clone();
        let previous: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(err)?;
        Ok(previous
            .into_iter()
            .map(|p| match p.as_deref() {
                None => Claim::New,
                Some(SEEN) => Claim::Duplicate,
                Some(o) if o == owner => Claim::New,
                Some(_) => Claim::InFlight,
            })
            .collect())
    }

    async fn commit(&self, _owner: &str, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(self.key(k))
                .arg(SEEN)
                .arg("PX")
                .arg(self.ttl_ms)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn release(&self, owner: &str, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(self.key(k))
                .arg(owner)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn extend(&self, owner: &str, keys: &[&str]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("EVAL")
                .arg(EXTEND)
                .arg(1)
                .arg(self.key(k))
                .arg(owner)
                .arg(self.claim_ms)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
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
