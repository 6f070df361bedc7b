//! A bit-exact port of the parts of CPython 3's `random.Random` that Zorplex uses.
//!
//! The reference benchmark draws its lookup tables and tasks from
//! `random.Random(seed)`. To generate exactly the same tasks for the same seed we
//! reproduce the Mersenne Twister (MT19937) as CPython seeds it from an integer, and
//! the integer-valued methods built on `getrandbits`: `randint`, `randrange`,
//! `choice`, `sample` and `shuffle`.

/// A pseudo-random generator that yields the same stream as CPython's
/// `random.Random(seed)` for the methods it provides.
///
/// ```
/// use monarch_rl::zorplex::PyRandom;
///
/// // In CPython: random.Random(42).randint(1, 100) == 82
/// let mut rng = PyRandom::new(42);
/// assert_eq!(rng.randint(1, 100), 82);
/// ```
#[derive(Clone)]
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

impl PyRandom {
    /// Seeds the generator as `random.Random(seed)` does for a Python `int`.
    ///
    /// CPython seeds from the absolute value of the integer, split into 32-bit
    /// words, least significant first.
    pub fn new(seed: i64) -> Self {
        let magnitude = seed.unsigned_abs();
        let low = magnitude as u32;
        let high = (magnitude >> 32) as u32;
        let key: &[u32] = if high == 0 { &[low] } else { &[low, high] };
        let mut rng = PyRandom {
            state: [0; N],
            index: N + 1,
        };
        rng.init_by_array(key);
        rng
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..N {
            let prev = self.state[i - 1];
            self.state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            let prev = self.state[i - 1];
            self.state[i] = (self.state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.state[i - 1];
            self.state[i] = (self.state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
        }
        self.state[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.state[k] & UPPER_MASK) | (self.state[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next raw 32-bit output of the twister (`genrand_uint32` in CPython).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.getrandbits(k)` for `k <= 64`.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports at most 64 bits, got {k}");
        match k {
            0 => 0,
            1..=32 => u64::from(self.next_u32() >> (32 - k)),
            _ => {
                // CPython fills 32-bit words least significant first and drops the
                // surplus high bits of the last word.
                let low = u64::from(self.next_u32());
                let high = u64::from(self.next_u32() >> (64 - k));
                low | (high << 32)
            }
        }
    }

    /// `random._randbelow(n)`: uniform in `0..n` by rejection sampling. `n` must be
    /// positive.
    pub fn randbelow(&mut self, n: u64) -> u64 {
        assert!(n > 0, "randbelow needs a positive bound");
        let bits = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(bits);
            if r < n {
                return r;
            }
        }
    }

    /// `random.randrange(start, stop)`: uniform in `start..stop`.
    ///
    /// # Panics
    /// If the range is empty, as CPython raises `ValueError`.
    pub fn randrange(&mut self, start: i64, stop: i64) -> i64 {
        assert!(start < stop, "empty range for randrange({start}, {stop})");
        let width = (stop as i128 - start as i128) as u64;
        (start as i128 + self.randbelow(width) as i128) as i64
    }

    /// `random.randint(a, b)`: uniform in `a..=b`.
    pub fn randint(&mut self, a: i64, b: i64) -> i64 {
        self.randrange(a, b + 1)
    }

    /// `random.choice(seq)`; `None` for an empty slice (where CPython raises).
    pub fn choice<'a, T>(&mut self, seq: &'a [T]) -> Option<&'a T> {
        if seq.is_empty() {
            return None;
        }
        let i = self.randbelow(seq.len() as u64) as usize;
        Some(&seq[i])
    }

    /// `random.shuffle(x)` in place (Fisher-Yates from the end).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// `random.sample(population, k)`: `k` distinct elements in selection order.
    ///
    /// Like CPython it picks between a pool-based and a set-based algorithm by the
    /// sizes involved, since the two consume the stream differently.
    ///
    /// # Panics
    /// If `k` exceeds the population, as CPython raises `ValueError`.
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Vec<T> {
        let n = population.len();
        assert!(k <= n, "sample larger than population ({k} > {n})");
        let mut setsize = 21usize;
        if k > 5 {
            let exponent = ((k as f64 * 3.0).ln() / 4f64.ln()).ceil() as u32;
            setsize += 4usize.pow(exponent);
        }
        if n <= setsize {
            let mut pool: Vec<T> = population.to_vec();
            let mut result = Vec::with_capacity(k);
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                result.push(pool[j].clone());
                pool[j] = pool[n - i - 1].clone();
            }
            result
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            let mut result = Vec::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while selected.contains(&j) {
                    j = self.randbelow(n as u64) as usize;
                }
                selected.insert(j);
                result.push(population[j].clone());
            }
            result
        }
    }
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values were printed by CPython 3.11:
    //   r = random.Random(seed); [r.getrandbits(32) for _ in range(3)] etc.
    #[test]
    fn raw_stream_matches_cpython() {
        let mut r = PyRandom::new(0);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [3_626_764_237, 1_654_615_998, 3_255_389_356]
        );
        let mut r = PyRandom::new(42);
        assert_eq!(r.getrandbits(32), 2_746_317_213);
    }

    #[test]
    fn large_and_negative_seeds_match_cpython() {
        // random.Random(2**40 + 5).getrandbits(32) and random.Random(-7) == Random(7)
        let mut big = PyRandom::new((1i64 << 40) + 5);
        assert_eq!(big.getrandbits(32), 2_166_296_868);
        let mut neg = PyRandom::new(-7);
        let mut pos = PyRandom::new(7);
        assert_eq!(neg.next_u32(), pos.next_u32());
    }

    #[test]
    fn integer_methods_match_cpython() {
        let mut r = PyRandom::new(1234);
        let ints: Vec<i64> = (0..5).map(|_| r.randint(1, 100)).collect();
        assert_eq!(ints, [100, 57, 15, 1, 12]);

        let mut r = PyRandom::new(7);
        let mut v: Vec<u32> = (0..10).collect();
        r.shuffle(&mut v);
        assert_eq!(v, [8, 3, 1, 4, 7, 0, 9, 6, 2, 5]);

        let pop: Vec<u32> = (0..26).collect();
        let mut r = PyRandom::new(3);
        assert_eq!(r.sample(&pop, 3), [7, 18, 17]);
        let small: Vec<u32> = (0..10).collect();
        assert_eq!(r.sample(&small, 4), [2, 5, 7, 8]);
        assert_eq!(r.sample(&pop, 8), [18, 2, 19, 0, 15, 8, 17, 7]);
        assert_eq!(r.choice(&pop), Some(&6));
        assert_eq!(r.getrandbits(48), 201_863_444_206_710);
    }
}
