//! A small deterministic pseudo-random number generator: xoshiro256** seeded through SplitMix64.
//!
//! Only integer arithmetic, `sqrt` and basic floating-point operations are used (all exactly
//! specified by IEEE 754), so a seed yields the same sequence on every platform and every run.
//! Transcendental functions (`ln`, `cos`) are avoided on purpose: their last bits may differ
//! between C libraries, which would break byte-identical output.

/// Golden-ratio increment of SplitMix64, also used to spread stream numbers.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Advances a SplitMix64 state and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The xoshiro256** generator.
#[derive(Debug, Clone)]
pub(super) struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// Seeds a generator; SplitMix64 spreads even tiny seeds (0, 1, 2) over the whole state.
    pub(super) fn new(seed: u64) -> Self {
        let mut sm = seed;
        // SplitMix64 is a bijection over successive states, so four consecutive outputs are
        // never all zero, the one state xoshiro must avoid.
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { state }
    }

    /// An independent generator for one numbered item of one named stream.
    ///
    /// Each patient draws from its own stream, so adding patients never changes the ones
    /// generated before them.
    pub(super) fn stream(seed: u64, stream: u64, index: u64) -> Self {
        let mut sm = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mixed = splitmix64(&mut sm);
        let mut sm = mixed ^ index.wrapping_mul(GOLDEN_GAMMA);
        Self::new(splitmix64(&mut sm))
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..n`; `0` when `n` is zero.
    ///
    /// Lemire's multiply-and-shift with rejection, so there is no modulo bias.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        let mut low = product as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
                low = product as u64;
            }
        }
        (product >> 64) as u64
    }

    /// A uniform index into a collection of `len` items (`0` when `len` is zero).
    pub(super) fn index(&mut self, len: usize) -> usize {
        // usize fits in u64 on every supported target, and the result is below `len`.
        self.below(len as u64) as usize
    }

    /// A uniform integer in `lo..=hi` (`lo` when the range is empty).
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo);
        if span == u64::MAX {
            return self.next_u64() as i64;
        }
        lo.wrapping_add(self.below(span + 1) as i64)
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in `[lo, hi)`.
    pub(super) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// `true` with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An approximately normal value (Irwin-Hall sum of four uniforms, rescaled).
    ///
    /// The tails stop at about 3.5 standard deviations, which suits clinical values: a
    /// simulated heart rate never lands at an absurd extreme.
    pub(super) fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let sum = self.unit() + self.unit() + self.unit() + self.unit();
        // The sum of four U(0,1) has mean 2 and variance 1/3.
        mean + sd * (sum - 2.0) * 3f64.sqrt()
    }

    /// A uniformly chosen item of a built-in, non-empty table.
    ///
    /// Only used on the generator's static tables, which are never empty (a unit test checks).
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// An item chosen with probability proportional to its weight.
    pub(super) fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut ticket = self.below(total);
        for (item, weight) in items {
            let weight = u64::from(*weight);
            if ticket < weight {
                return item;
            }
            ticket -= weight;
        }
        &items[items.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::stream(42, 1, 0);
        let mut d = Rng::stream(42, 1, 1);
        assert_ne!(c.next_u64(), d.next_u64());
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut rng = Rng::new(7);
        let mut seen = [false; 5];
        for _ in 0..10_000 {
            let v = rng.below(5);
            assert!(v < 5);
            seen[v as usize] = true;
            let r = rng.range(-3, 3);
            assert!((-3..=3).contains(&r));
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(seen.iter().all(|s| *s), "every value of 0..5 is drawn");
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.range(4, 4), 4);
    }

    #[test]
    fn normal_has_roughly_the_requested_moments() {
        let mut rng = Rng::new(3);
        let n = 20_000;
        let values: Vec<f64> = (0..n).map(|_| rng.normal(10.0, 2.0)).collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        assert!((mean - 10.0).abs() < 0.1, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.1, "sd {}", var.sqrt());
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut rng = Rng::new(11);
        let items = [("never", 0), ("always", 5)];
        for _ in 0..1000 {
            assert_eq!(*rng.weighted(&items), "always");
        }
    }
}
