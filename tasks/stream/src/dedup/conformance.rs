//! The one conformance suite every [`DedupStore`] passes (called from each store's tests).
//! `make(ttl, claim_ttl)` returns a fresh, empty store. The suite runs three times: with keys
//! stamped on arrival, with timed keys (spread over ten minutes), and with both mixed in the
//! same calls — stores that file timed keys apart are checked on each layout and on both at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Claim, DedupStore, Key};

pub async fn run<F, Fut>(make: F)
where
    F: Fn(Duration, Duration) -> Fut,
    Fut: Future<Output = Arc<dyn DedupStore>>,
{
    for timed in [Timed::None, Timed::All, Timed::Mixed] {
        suite(&make, Keys { timed }).await;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Timed {
    None,
    All,
    /// Three keys in four.
    Mixed,
}

/// How the suite's keys are made.
#[derive(Clone, Copy)]
struct Keys {
    timed: Timed,
}

impl Keys {
    /// Timed keys get a time of their own from their id (so a key's copies carry the same),
    /// within ten minutes of 2026-12-01.
    fn of<'a>(self, ids: &[&'a str]) -> Vec<Key<'a>> {
        ids.iter()
            .map(|id| {
                // FNV-1a: a stable spread of the ids.
                let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                if self.timed == Timed::All || (self.timed == Timed::Mixed && h % 4 != 0) {
                    Key::timed(id, 1_796_083_200_000_000 + (h % 600) as i64 * 1_000_000)
                } else {
                    Key::untimed(id)
                }
            })
            .collect()
    }
}

async fn suite<F, Fut>(make: &F, k: Keys)
where
    F: Fn(Duration, Duration) -> Fut,
    Fut: Future<Output = Arc<dyn DedupStore>>,
{
    let long = Duration::from_secs(60);
    use Claim::*;

    // First copy wins, once delivered.
    let d = make(long, long).await;
    assert_eq!(
        d.claim("a", &k.of(&["k1", "k2"])).await.unwrap(),
        vec![New, New]
    );
    d.commit("a", &k.of(&["k1", "k2"])).await.unwrap();
    assert_eq!(
        d.claim("b", &k.of(&["k1", "k3", "k2"])).await.unwrap(),
        vec![Duplicate, New, Duplicate]
    );
    assert_eq!(
        d.claim("a", &k.of(&["k1"])).await.unwrap(),
        vec![Duplicate],
        "{}",
        d.kind()
    );

    // A claim held by another caller: in flight, not a duplicate; released, it is new again.
    let d = make(long, long).await;
    assert_eq!(d.claim("a", &k.of(&["x"])).await.unwrap(), vec![New]);
    assert_eq!(
        d.claim("a", &k.of(&["x"])).await.unwrap(),
        vec![New],
        "the owner's own claim"
    );
    assert_eq!(d.claim("b", &k.of(&["x"])).await.unwrap(), vec![InFlight]);
    d.release("a", &k.of(&["x"])).await.unwrap();
    assert_eq!(d.claim("b", &k.of(&["x"])).await.unwrap(), vec![New]);
    // Releasing someone else's claim does nothing.
    d.release("a", &k.of(&["x"])).await.unwrap();
    assert_eq!(d.claim("c", &k.of(&["x"])).await.unwrap(), vec![InFlight]);
    // Nothing is seen that was never committed.
    d.release("b", &k.of(&["x"])).await.unwrap();
    assert_eq!(d.claim("c", &k.of(&["x"])).await.unwrap(), vec![New]);

    // Many keys in one call keep their order.
    let d = make(long, long).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("many-{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let even: Vec<&str> = refs.iter().copied().step_by(2).collect();
    assert!(
        d.claim("a", &k.of(&even))
            .await
            .unwrap()
            .iter()
            .all(|c| *c == New)
    );
    d.commit("a", &k.of(&even)).await.unwrap();
    let got = d.claim("b", &k.of(&refs)).await.unwrap();
    assert_eq!(got.len(), refs.len());
    for (i, c) in got.iter().enumerate() {
        assert_eq!(
            *c,
            if i.is_multiple_of(2) { Duplicate } else { New },
            "key {i}"
        );
    }

    // Many keys of one moment in one call (a store filing keys by time puts them together,
    // thousands in each of its places — Redis: ~9,000 in each of its 8 hashes, past what one
    // script call can take): the same answers, in order; mixed, with keys of their own among
    // them.
    let d = make(long, long).await;
    let keys: Vec<String> = (0..80_000).map(|i| format!("now-{i}")).collect();
    // The keys `Keys::of` makes, with one time for all the timed ones.
    fn timed(k: Keys, ids: &[String]) -> Vec<Key<'_>> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        k.of(&refs)
            .into_iter()
            .map(|key| match key.time_us {
                Some(_) => Key::timed(key.id, 1_796_083_200_000_000),
                None => key,
            })
            .collect()
    }
    let tenths: Vec<String> = keys.iter().step_by(10).cloned().collect();
    assert!(
        d.claim("a", &timed(k, &tenths))
            .await
            .unwrap()
            .iter()
            .all(|c| *c == New)
    );
    d.commit("a", &timed(k, &tenths)).await.unwrap();
    let got = d.claim("b", &timed(k, &keys)).await.unwrap();
    assert_eq!(got.len(), keys.len());
    for (i, c) in got.iter().enumerate() {
        let want = if i.is_multiple_of(10) { Duplicate } else { New };
        assert_eq!(*c, want, "{}: key {i} of one moment", d.kind());
    }

    // A dead holder's claim expires; a seen key is forgotten after the TTL.
    let short = Duration::from_millis(400);
    let d = make(short, short).await;
    assert_eq!(d.claim("a", &k.of(&["c1"])).await.unwrap(), vec![New]);
    assert_eq!(d.claim("a2", &k.of(&["s1"])).await.unwrap(), vec![New]);
    d.commit("a2", &k.of(&["s1"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        d.claim("b", &k.of(&["c1", "s1"])).await.unwrap(),
        vec![New, New]
    );

    // A dead holder's claim expires while the dedup window is long: the key is taken over by
    // one caller (the others see it in flight), and is seen once that one commits.
    let d = make(long, short).await;
    assert_eq!(
        d.claim("dead", &k.of(&["o1", "o2"])).await.unwrap(),
        vec![New, New]
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(d.claim("b", &k.of(&["o1"])).await.unwrap(), vec![New]);
    assert_eq!(
        d.claim("c", &k.of(&["o1", "o2"])).await.unwrap(),
        vec![InFlight, New],
        "{}: a taken-over key is held by its new owner",
        d.kind()
    );
    d.commit("b", &k.of(&["o1"])).await.unwrap();
    d.release("c", &k.of(&["o2"])).await.unwrap();
    assert_eq!(
        d.claim("e", &k.of(&["o1", "o2"])).await.unwrap(),
        vec![Duplicate, New]
    );
    // Two callers taking over the same expired key at once: exactly one gets it.
    let r = make(long, short).await;
    assert_eq!(r.claim("gone", &k.of(&["race"])).await.unwrap(), vec![New]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let race = k.of(&["race"]);
    let (x, y) = tokio::join!(r.claim("x", &race), r.claim("y", &race));
    let mut got = vec![x.unwrap()[0], y.unwrap()[0]];
    got.sort_by_key(|c| *c == InFlight);
    assert_eq!(got, vec![New, InFlight], "{}: one taker", r.kind());

    // Keys committed by their (new) owners are seen.
    d.commit("e", &k.of(&["o2"])).await.unwrap();
    assert_eq!(
        d.claim("f", &k.of(&["o1", "o2"])).await.unwrap(),
        vec![Duplicate, Duplicate]
    );
    // Release after commit changes nothing.
    d.release("e", &k.of(&["o2"])).await.unwrap();
    assert_eq!(d.claim("g", &k.of(&["o2"])).await.unwrap(), vec![Duplicate]);

    // A holder that renews its claim keeps it past claim_secs; nobody else can renew it.
    let d = make(long, short).await;
    assert_eq!(d.claim("a", &k.of(&["slow"])).await.unwrap(), vec![New]);
    assert_eq!(d.claim("a2", &k.of(&["other"])).await.unwrap(), vec![New]);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        d.extend("a", &k.of(&["slow"])).await.unwrap();
        d.extend("b", &k.of(&["other"])).await.unwrap();
    }
    assert_eq!(
        d.claim("b", &k.of(&["slow", "other"])).await.unwrap(),
        vec![InFlight, New],
        "{}: a renewed claim is held 600 ms after a 400 ms claim; the other expired",
        d.kind()
    );
    // Renewing a released key does not bring it back.
    d.release("a", &k.of(&["slow"])).await.unwrap();
    d.extend("a", &k.of(&["slow"])).await.unwrap();
    assert_eq!(d.claim("c", &k.of(&["slow"])).await.unwrap(), vec![New]);

    // A commit after the claim expired still marks the delivered key seen.
    let d = make(long, short).await;
    assert_eq!(d.claim("a", &k.of(&["late"])).await.unwrap(), vec![New]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.commit("a", &k.of(&["late"])).await.unwrap();
    assert_eq!(
        d.claim("b", &k.of(&["late"])).await.unwrap(),
        vec![Duplicate]
    );
}
