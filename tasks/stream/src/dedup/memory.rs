//! `kind = "memory"`: an in-process store for a laptop or a single instance — at most `max_keys`
//! keys (the oldest marks go first, as they would expire first), each for the TTL. Lost on
//! restart: copies resent after a restart pass as new (use `redis` to keep the window).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Claim, DedupStore, Key};
use crate::Result;

enum State {
    Seen { until: Instant },
    Claimed { owner: String, until: Instant },
}

struct Entry {
    state: State,
    /// Position in `order` of its latest mark (older positions of the key are stale).
    generation: u64,
}

struct Inner {
    keys: HashMap<String, Entry>,
    /// Keys in the order they were marked, with the generation of that mark.
    order: VecDeque<(String, u64)>,
    next: u64,
}

pub struct MemoryDedup {
    inner: Mutex<Inner>,
    max_keys: usize,
    ttl: Duration,
    claim_ttl: Duration,
}

impl MemoryDedup {
    pub fn new(max_keys: usize, ttl: Duration, claim_ttl: Duration) -> Self {
        MemoryDedup {
            inner: Mutex::new(Inner {
                keys: HashMap::new(),
                order: VecDeque::new(),
                next: 0,
            }),
            max_keys: max_keys.max(1),
            ttl,
            claim_ttl,
        }
    }

    /// Keys held now (seen or claimed, expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn mark(&mut self, key: &str, state: State, max_keys: usize) {
        let generation = self.next;
        self.next += 1;
        self.keys
            .insert(key.to_string(), Entry { state, generation });
        self.order.push_back((key.to_string(), generation));
        // The oldest marks go first once the bound is passed; positions of keys marked again
        // since are stale, and are swept when they pile up.
        while self.keys.len() > max_keys {
            let Some((k, g)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&k).is_some_and(|e| e.generation == g) {
                self.keys.remove(&k);
            }
        }
        if self.order.len() > 2 * max_keys + 16 {
            let keys = &self.keys;
            self.order
                .retain(|(k, g)| keys.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

#[async_trait]
impl DedupStore for MemoryDedup {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn claim(&self, owner: &str, keys: &[Key<'_>]) -> Result<Vec<Claim>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let found = match inner.keys.get(key.id).map(|e| &e.state) {
                Some(State::Seen { until }) if *until > now => Some(Claim::Duplicate),
                Some(State::Claimed { owner: o, until }) if *until > now => Some(if o == owner {
                    Claim::New
                } else {
                    Claim::InFlight
                }),
                _ => None,
            };
            match found {
                Some(c) => out.push(c),
                None => {
                    let state = State::Claimed {
                        owner: owner.to_string(),
                        until: now + self.claim_ttl,
                    };
                    inner.mark(key.id, state, self.max_keys);
                    out.push(Claim::New);
                }
            }
        }
        Ok(out)
    }

    async fn commit(&self, owner: &str, keys: &[Key<'_>]) -> Result<()> {
        let now = Instant::now();
        let mut inner = self.lock();
        for key in keys {
            // A key another caller committed meanwhile stays as it is (first copy wins).
            let mine_or_free = match inner.keys.get(key.id).map(|e| &e.state) {
                Some(State::Seen { until }) => *until <= now,
                Some(State::Claimed { owner: o, until }) => o == owner || *until <= now,
                None => true,
            };
            if mine_or_free {
                let state = State::Seen {
                    until: now + self.ttl,
                };
                inner.mark(key.id, state, self.max_keys);
            }
        }
        Ok(())
    }

    async fn release(&self, owner: &str, keys: &[Key<'_>]) -> Result<()> {
        let mut inner = self.lock();
        for key in keys {
            let mine = matches!(
                inner.keys.get(key.id).map(|e| &e.state),
                Some(State::Claimed { owner: o, .. }) if o == owner
            );
            if mine {
                inner.keys.remove(key.id);
            }
        }
        Ok(())
    }

    async fn extend(&self, owner: &str, keys: &[Key<'_>]) -> Result<()> {
        let now = Instant::now();
        let mut inner = self.lock();
        for key in keys {
            let mine = matches!(
                inner.keys.get(key.id).map(|e| &e.state),
                Some(State::Claimed { owner: o, until }) if o == owner && *until > now
            );
            if mine {
                // Marked again: a live claim also moves to the back of the eviction order.
                let state = State::Claimed {
                    owner: owner.to_string(),
                    until: now + self.claim_ttl,
                };
                inner.mark(key.id, state, self.max_keys);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::dedup::conformance::run(|ttl, claim| async move {
            std::sync::Arc::new(MemoryDedup::new(100_000, ttl, claim))
                as std::sync::Arc<dyn DedupStore>
        })
        .await;
    }

    #[tokio::test]
    async fn holds_at_most_max_keys() {
        let d = MemoryDedup::new(100, Duration::from_secs(60), Duration::from_secs(60));
        for i in 0..1000 {
            let k = format!("k{i}");
            d.claim("a", &[k.as_str().into()]).await.unwrap();
            d.commit("a", &[k.as_str().into()]).await.unwrap();
        }
        assert!(d.len() <= 100, "{}", d.len());
        // The latest keys are remembered, the oldest are not.
        assert_eq!(
            d.claim("b", &["k999".into()]).await.unwrap(),
            vec![Claim::Duplicate]
        );
        assert_eq!(
            d.claim("b", &["k0".into()]).await.unwrap(),
            vec![Claim::New]
        );
    }
}
