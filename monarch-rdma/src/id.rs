//! Buffer ids: unique in the job, and telling whether this process made one.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The id of one registration: a random number drawn once per process (high
/// half) and a counter (low half), so ids never repeat within a process and
/// collide between processes with negligible chance; an id of a process that
/// restarted is never mistaken for a new registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BufferId(u128);

/// This process's random half.
static NONCE: LazyLock<u64> = LazyLock::new(|| {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    u64::from_le_bytes(bytes)
});

/// The counter half of the next id; 0 is never used, so that a live slot's
/// stamp is never 0.
static NEXT: AtomicU64 = AtomicU64::new(1);

impl BufferId {
    /// A new id of this process.
    pub(crate) fn next() -> Self {
        let counter = NEXT.fetch_add(1, Ordering::Relaxed);
        BufferId((u128::from(*NONCE) << 64) | u128::from(counter))
    }

    /// The counter half.
    pub(crate) fn counter(self) -> u64 {
        // Truncation keeps exactly the low half.
        self.0 as u64
    }

    /// Whether this process made the id (and so, if it is not registered
    /// now, it was dropped).
    pub(crate) fn is_ours(self) -> bool {
        (self.0 >> 64) as u64 == *NONCE && self.counter() < NEXT.load(Ordering::Relaxed)
    }
}

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_known_to_their_process() {
        let a = BufferId::next();
        let b = BufferId::next();
        assert_ne!(a, b);
        assert!(a.is_ours() && b.is_ours());
        assert_eq!(b.counter(), a.counter() + 1);
        assert!(!BufferId(u128::from(!*NONCE) << 64 | 1).is_ours());
        assert_eq!(a.to_string().len(), 32);
    }
}
