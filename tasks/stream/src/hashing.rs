//! Hash sets and maps of strings that come from the records (ids, labels): each string hashed
//! once with XXH3, seeded at random per process (the senders choose the strings), and the set's
//! hasher passing that hash on as it is.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::LazyLock;

static SEED: LazyLock<u64> =
    LazyLock::new(|| getrandom::u64().unwrap_or_else(|_| crate::record::now_ms() as u64));

/// A string with its seeded XXH3 ([`Hashed::key`]).
#[derive(Clone, Copy, Eq)]
pub struct Key<'a>(pub &'a str, u64);

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1 && self.0 == other.0
    }
}

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.1);
    }
}

/// The hasher (and its builder) of [`Key`]s: their hash as it is.
#[derive(Default, Clone, Copy)]
pub struct Hashed(u64);

impl Hashed {
    /// `s` as a key of a set or map built with [`Hashed`].
    pub fn key(s: &str) -> Key<'_> {
        Key(s, xxhash_rust::xxh3::xxh3_64_with_seed(s.as_bytes(), *SEED))
    }
}

impl Hasher for Hashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Keys write their hash with `write_u64`; anything else is hashed as bytes, seeded.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0 ^ *SEED);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for Hashed {
    type Hasher = Hashed;
    fn build_hasher(&self) -> Hashed {
        Hashed(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_meet_and_different_ones_do_not() {
        let other_a = String::from("a");
        let mut set = std::collections::HashSet::with_hasher(Hashed::default());
        assert!(set.insert(Hashed::key("a")));
        assert!(set.insert(Hashed::key("b")));
        assert!(!set.insert(Hashed::key(&other_a)));
        assert_eq!(set.len(), 2);
        assert_ne!(Hashed::key("a").1, Hashed::key("b").1);
    }
}
