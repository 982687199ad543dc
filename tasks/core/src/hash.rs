//! Hash maps and sets keyed by strings from the data (ids, labels): each key hashed with one
//! call of XXH3. `Hash for str` goes through a streaming hasher, which costs more than the hash
//! itself for short ids; the `0xff` terminator `str` adds is not needed for one key per hash.

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The hasher: XXH3 of what is written, seeded with what was written before (a key of several
/// parts, such as an `Option<&str>`, chains them).
#[derive(Default, Clone, Copy)]
pub struct OneShot(u64);

impl Hasher for OneShot {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, _: u8) {}
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`OneShot`] hashers from a seed: [`Seeded::default`] is seed 0, the same hashes in
/// every process; [`Seeded::random`] a seed per process, for keys that senders choose (so that
/// they cannot aim many keys at one hash).
#[derive(Default, Clone, Copy)]
pub struct Seeded(u64);

impl Seeded {
    /// This process's random seed.
    pub fn random() -> Self {
        static SEED: LazyLock<u64> = LazyLock::new(|| {
            getrandom::u64().unwrap_or_else(|_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            })
        });
        Seeded(*SEED)
    }
}

impl BuildHasher for Seeded {
    type Hasher = OneShot;
    fn build_hasher(&self) -> OneShot {
        OneShot(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn equal_strings_meet_and_seeds_change_the_hash() {
        let other_a = String::from("a");
        let mut set = HashSet::with_hasher(Seeded::random());
        assert!(set.insert("a"));
        assert!(set.insert("b"));
        assert!(!set.insert(other_a.as_str()));
        assert_eq!(set.len(), 2);
        assert_ne!(Seeded(1).hash_one("a"), Seeded(2).hash_one("a"));
        assert_ne!(
            Seeded(1).hash_one(Some("a")),
            Seeded(1).hash_one(None::<&str>)
        );
    }
}
