//! A coarse clock: milliseconds since the pool was built, refreshed by the
//! sentinel on every tick and by every slow path that reads the real clock.
//!
//! Why: reading the clock costs about 30 ns, as much as the rest of a checkout.
//! Idle ages are compared against intervals of seconds, so a timestamp that is
//! at most one sentinel tick old is precise enough, and the hot paths (checkout
//! and return) only load an atomic.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

pub(crate) struct CoarseClock {
    origin: Instant,
    now_ms: AtomicU64,
}

impl CoarseClock {
    pub(crate) fn new() -> Self {
        CoarseClock {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
        }
    }

    /// The last refreshed time, in milliseconds since `origin`. No clock read.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// The instant a coarse time stands for (saturating: `u64::MAX` is never).
    pub(crate) fn instant_of(&self, ms: u64) -> Instant {
        super::time::later(self.origin, std::time::Duration::from_millis(ms))
    }

    /// Reads the real clock, publishes it, and returns it.
    pub(crate) fn refresh(&self) -> u64 {
        let ms = super::time::millis(self.origin.elapsed());
        self.now_ms.fetch_max(ms, Ordering::Relaxed);
        ms
    }
}
