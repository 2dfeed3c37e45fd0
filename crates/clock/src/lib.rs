//! The `Clock` seam: every TTL, timeout, expiry and budget reads time through it, so tests and the
//! simulator (tokio's paused clock, virtual time) and production read the same code path.
//!
//! Key decision: a crate of its own, below everything that reads time, so the generic API server
//! of the simulator and the controllers need neither the cloud crate nor each other for it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

/// Wall-clock time as the controllers see it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Wall-clock time derived from tokio's clock: `epoch + (tokio::time::Instant::now() - start)`.
/// Under `tokio::time::pause()` it advances only when the runtime auto-advances, which is how the
/// simulator runs hours of cluster time in seconds while timestamps stay consistent.
#[derive(Debug, Clone)]
pub struct TokioClock {
    epoch: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `epoch` now (must be called inside a tokio runtime).
    pub fn starting_at(epoch: Timestamp) -> Self {
        Self {
            epoch,
            start: tokio::time::Instant::now(),
        }
    }

    /// Time elapsed since the clock was created.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.start)
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.elapsed();
        let span = jiff::SignedDuration::try_from(elapsed).unwrap_or(jiff::SignedDuration::MAX);
        self.epoch.checked_add(span).unwrap_or(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_virtual_time() {
        let epoch: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = TokioClock::starting_at(epoch);
        assert_eq!(clock.now(), epoch);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            clock.now(),
            "2026-01-01T01:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
