//! The zorplex vocabulary, its seeded value table and the multi-step keys.

use md5::{Digest, Md5};

use super::PyRandom;

/// The 26 words every Zorplex task draws from, in the reference's order.
pub const WORDS: [&str; 26] = [
    "apple", "banana", "cat", "dog", "elephant", "fish", "grape", "house", "ice", "jungle", "kite",
    "lemon", "moon", "night", "ocean", "piano", "queen", "river", "sun", "tree", "umbrella",
    "violet", "water", "xray", "yellow", "zebra",
];

/// Position of `word` in [`WORDS`], ignoring ASCII case.
pub fn word_index(word: &str) -> Option<usize> {
    WORDS.iter().position(|w| w.eq_ignore_ascii_case(word))
}

/// The seeded map from each word to its zorplex value (1..=100).
///
/// ```
/// use monarch_rl::zorplex::ZorplexTable;
///
/// let table = ZorplexTable::new(0);
/// assert_eq!(table.get("apple"), Some(50));
/// assert_eq!(table.get("notaword"), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZorplexTable {
    values: [i64; 26],
}

impl ZorplexTable {
    /// Draws the table for `seed` exactly as the reference does: one
    /// `randint(1, 100)` per word, in word order, from a fresh `Random(seed)`.
    pub fn new(seed: i64) -> Self {
        let mut rng = PyRandom::new(seed);
        let mut values = [0; 26];
        for v in &mut values {
            *v = rng.randint(1, 100);
        }
        ZorplexTable { values }
    }

    /// The value of `word` (case-insensitive), or `None` for a word outside [`WORDS`].
    pub fn get(&self, word: &str) -> Option<i64> {
        word_index(word).map(|i| self.values[i])
    }

    /// The value of the word at `index` in [`WORDS`].
    pub fn value_at(&self, index: usize) -> i64 {
        self.values[index]
    }
}

/// The multi-step key of `word` for `seed`: `ZK_` and the first six hex digits,
/// upper-case, of the MD5 of `"{word}_{seed}"`.
///
/// ```
/// assert_eq!(monarch_rl::zorplex::multi_step_key("apple", 0), "ZK_3A2C4A");
/// ```
pub fn multi_step_key(word: &str, seed: i64) -> String {
    let digest = Md5::digest(format!("{word}_{seed}").as_bytes());
    format!("ZK_{:02X}{:02X}{:02X}", digest[0], digest[1], digest[2])
}
