//! The retry policy of one watcher, as a pure object (no clock, no sleeping): the caller asks it
//! how long to pause after a failure and tells it when the watch synced.
//!
//! Why not kube-runtime's `DefaultBackoff` through `WatchStreamExt::backoff`: that resets on every
//! `Ok` item, and the watcher yields `Ok(Event::Init)` before each re-list attempt, so against an
//! unreachable API server the pause never grew past its first step (about one retry per second
//! per watcher, forever). Here only a successful sync resets the policy.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff with jitter that resets only on a successful sync, and that reports the
/// two state changes worth a log line: healthy to failing, failing to recovered.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    /// Failures since the last successful sync.
    failures: u32,
    /// State of the jitter generator (splitmix64).
    seed: u64,
}

/// What one failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Pause before the next attempt.
    pub delay: Duration,
    /// The first failure since the watch was last healthy (log it; later ones are retries).
    pub started_failing: bool,
}

impl WatchBackoff {
    /// The nominal pause after the first failure.
    pub const INITIAL: Duration = Duration::from_millis(500);
    /// The nominal pause never grows past this (the jittered pause lies in `MAX/2..=MAX`).
    pub const MAX: Duration = Duration::from_secs(30);

    /// A policy with a jitter sequence of its own per process (so replicas and kinds do not
    /// retry in step).
    pub fn new() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        Self::with_seed(h.finish())
    }

    /// A policy with a fixed jitter sequence (tests).
    pub fn with_seed(seed: u64) -> Self {
        Self { failures: 0, seed }
    }

    /// Failures since the last successful sync.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failed attempt (a failed list or watch request) and returns the pause before the
    /// next one: nominally `INITIAL * 2^(n-1)` capped at `MAX`, jittered to between half and all
    /// of it.
    pub fn failed(&mut self) -> Retry {
        let started_failing = self.failures == 0;
        self.failures = self.failures.saturating_add(1);
        let nominal = Self::INITIAL
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(Self::MAX);
        // Equal jitter: half fixed, half random.
        let half = nominal / 2;
        let random = half.mul_f64(self.next_unit());
        Retry {
            delay: half + random,
            started_failing,
        }
    }

    /// Records a successful sync (a complete list, or an event from a working watch). Returns the
    /// number of failures it ends (non-zero: the watch recovered, worth one log line).
    pub fn synced(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }

    /// A uniform number in `[0, 1)` (splitmix64).
    fn next_unit(&mut self) -> f64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(b: &mut WatchBackoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| b.failed().delay).collect()
    }

    #[test]
    fn pauses_double_from_half_a_second_within_their_jitter_band() {
        let mut b = WatchBackoff::with_seed(7);
        for (i, d) in delays(&mut b, 6).into_iter().enumerate() {
            let nominal = WatchBackoff::INITIAL * (1u32 << i);
            assert!(
                d >= nominal / 2 && d <= nominal,
                "failure {}: {d:?} outside {:?}..={nominal:?}",
                i + 1,
                nominal / 2
            );
        }
    }

    #[test]
    fn pauses_reach_tens_of_seconds_and_stay_under_the_cap() {
        for seed in 0..50 {
            let mut b = WatchBackoff::with_seed(seed);
            let all = delays(&mut b, 200);
            assert!(all.iter().all(|d| *d <= WatchBackoff::MAX), "seed {seed}");
            // From the 7th failure on (nominal 32 s, capped at 30) every pause is 15-30 s.
            assert_eq!(WatchBackoff::MAX / 2, Duration::from_secs(15));
            assert!(
                all[6..].iter().all(|d| *d >= WatchBackoff::MAX / 2),
                "seed {seed}: {:?}",
                &all[6..12]
            );
        }
    }

    #[test]
    fn jitter_differs_between_watchers() {
        let a = delays(&mut WatchBackoff::with_seed(1), 10);
        let b = delays(&mut WatchBackoff::with_seed(2), 10);
        assert_ne!(a, b);
    }

    #[test]
    fn only_a_successful_sync_resets_the_pause() {
        let mut b = WatchBackoff::with_seed(3);
        delays(&mut b, 10);
        // Nothing but `synced` brings the pause down: more failures stay at the cap.
        assert!(b.failed().delay >= WatchBackoff::MAX / 2);
        assert_eq!(b.failures(), 11);
        assert_eq!(b.synced(), 11, "the sync ends 11 failures");
        let after = b.failed();
        assert!(after.delay <= WatchBackoff::INITIAL, "{after:?}");
        assert!(after.started_failing);
    }

    #[test]
    fn only_state_changes_are_reported() {
        let mut b = WatchBackoff::with_seed(4);
        assert_eq!(b.synced(), 0, "a sync while healthy is no recovery");
        let started: Vec<bool> = (0..5).map(|_| b.failed().started_failing).collect();
        assert_eq!(started, [true, false, false, false, false]);
        assert_eq!(b.synced(), 5);
        assert_eq!(b.synced(), 0, "recovered once");
        assert!(b.failed().started_failing);
    }
}
