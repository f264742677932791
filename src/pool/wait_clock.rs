//! The clock [`Counters::wait_time`](super::status::Counters::wait_time) is
//! kept on: monotonic nanoseconds as a plain `u64`.
//!
//! Why not `tokio::time::Instant`, as the pool's timers use: a queued
//! checkout reads this clock twice under the pool's lock (when it queues,
//! when it is answered), and `Instant`'s arithmetic (seconds and
//! nanoseconds normalised and checked on every subtraction, through
//! tokio's test-clock indirection) cost more than the reads themselves:
//! 149 instructions per queued checkout, against about 45 for two raw reads
//! and one integer subtraction (callgrind, `benches/checkout_instructions`
//! `queued`). The price: this is the system's clock, not tokio's, so under
//! a paused test clock (`start_paused`) a wait adds the real time it took,
//! not the virtual time. It is a statistic, never a deadline.

/// Nanoseconds on the system's monotonic clock (CLOCK_MONOTONIC).
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // Both fields are non-negative for CLOCK_MONOTONIC; wrapping keeps
    // this free of panics, and 2^64 ns is 584 years of uptime.
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// Nanoseconds since the first read, on `std`'s monotonic clock.
#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) fn now_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::now_ns;
    use std::time::Duration;

    #[test]
    fn it_moves_forward_with_real_time() {
        let before = now_ns();
        std::thread::sleep(Duration::from_millis(20));
        let waited = now_ns().saturating_sub(before);
        assert!(waited >= 20_000_000, "{waited} ns");
        assert!(waited < 5_000_000_000, "{waited} ns");
    }
}
