//! The runtime's clock: the one place the engine reads the time (for metrics, for time-based
//! retention and for seeding the election-timeout generator). The consensus core never does;
//! it counts ticks.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Now, on the monotonic clock.
#[allow(clippy::disallowed_methods)] // This module is the clock seam.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Now, on the wall clock (what file modification times are compared with).
#[allow(clippy::disallowed_methods)] // This module is the clock seam.
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// A number that differs between processes (drawn from the operating system's randomness, with
/// the time and the process id), for ids that must not repeat across a restart.
#[allow(clippy::disallowed_methods)] // This module is the clock and randomness seam.
pub(crate) fn process_unique() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A seed that differs between replicas and between restarts: the election timeouts of replicas
/// must not stay in lock step.
#[allow(clippy::disallowed_methods)] // This module is the clock seam.
pub(crate) fn timeout_seed(node: u64, log: u64) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // SplitMix64 finalizer over the three inputs.
    let mut z = (nanos as u64) ^ node.rotate_left(32) ^ log.rotate_left(16) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
