//! The deterministic generator behind randomized election timeouts.
//!
//! Owns: a SplitMix64 state seeded from [`crate::raft::Config::timeout_seed`].
//! Must not: read entropy from the environment. The core has no randomness of its own: the seed is
//! an input, so the same inputs always produce the same elections (the simulator relies on it).
//! Invariants: the output sequence is a pure function of the seed.

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and good enough to spread election timeouts.
#[derive(Clone, Debug)]
pub(crate) struct TimeoutRng {
    state: u64,
}

impl TimeoutRng {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> TimeoutRng {
        TimeoutRng { state: seed }
    }

    /// The next 64 pseudo-random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` must be positive), by Lemire's multiply-shift reduction,
    /// which avoids the modulo bias's worst cases at no cost.
    pub(crate) fn below(&mut self, bound: u32) -> u32 {
        assert!(bound > 0, "below() needs a positive bound");
        let wide = u64::from(self.next_u32()) * u64::from(bound);
        u32::try_from(wide >> 32).expect("(x * bound) >> 32 < bound fits in u32")
    }

    fn next_u32(&mut self) -> u32 {
        u32::try_from(self.next_u64() >> 32).expect("the high half of a u64 fits in u32")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = TimeoutRng::new(7);
        let mut b = TimeoutRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = TimeoutRng::new(8);
        assert_ne!(TimeoutRng::new(7).next_u64(), c.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = TimeoutRng::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every value of a small range appears: {seen:?}");
    }
}
