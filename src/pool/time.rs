//! Arithmetic on durations and instants that cannot panic or wrap.
//!
//! Why a module of its own: every duration in `Config` may be as large as
//! `Duration::MAX` (meaning "no limit"), and `Instant + Duration`,
//! `Duration * 2`, `as_millis() as u64` and `mul_f64` all panic or wrap at
//! the edges. Everything in the pool that adds to an instant or scales a
//! duration goes through here.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: what "never" means for a deadline. Far beyond any
/// timeout anyone sets on purpose, and an instant tokio's timer accepts.
pub(crate) const NEVER: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Whole milliseconds, saturating at `u64::MAX` (585 million years).
#[inline]
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `at + d`, or "never" (30 years on) where that would overflow.
#[inline]
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(NEVER))
        .or_else(|| at.checked_add(NEVER))
        .unwrap_or(at)
}

/// `d * 2`, saturating.
#[inline]
pub(crate) fn doubled(d: Duration) -> Duration {
    d.saturating_mul(2)
}

/// Spreads retries by ±50% so callers that failed together do not retry
/// together; saturates instead of panicking on huge durations.
pub(crate) fn jittered(d: Duration) -> Duration {
    let factor = 0.5 + fastrand::f64();
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_overflows_at_the_edges() {
        let now = Instant::now();
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(millis(Duration::from_nanos(1)), 0);
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(doubled(Duration::MAX), Duration::MAX);
        assert!(jittered(Duration::MAX) >= Duration::MAX / 2);
        assert!(jittered(Duration::from_millis(100)) <= Duration::from_millis(150));
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
