//! The stall guard: the process's own pauses are not the peer's fault.
//!
//! A process that stops (a stopped container, a debugger, a starved runtime,
//! a long synchronous call on a worker) sees every timer fire at once when it
//! runs again: each probe in flight "timed out", though its answer may sit
//! unread in the socket buffer. A machine that suspends is worse: tokio's
//! `Instant` (CLOCK_MONOTONIC) stops meanwhile, so no timer even looks late,
//! but every peer may have gone (NAT entries expire, servers close idle
//! sessions) while the pool thinks a second passed.
//!
//! Two ways to notice, both cheap:
//!
//! * **a timer far late**: the sentinel's tick, or a probe's own timeout,
//!   fires more than [`STALL_SLACK`] after it was due. Scheduling noise on a
//!   loaded machine is tens of milliseconds; half a second is a pause.
//! * **boot time against monotonic time** (Linux): CLOCK_BOOTTIME counts
//!   suspend, CLOCK_MONOTONIC does not; their difference growing by more
//!   than [`STALL_SLACK`] between two ticks is a suspend.
//!
//! What the pool does about it: convict nobody for the time it was away (a
//! probe whose timeout fired late gets one more full timeout to answer), but
//! trust nobody either: every idle member is marked to be probed before it is
//! handed out. `status()` counts stalls.

use std::time::Duration;

use tokio::time::Instant;

/// How late a timer may fire before the pool calls it a stall of its own.
pub(crate) const STALL_SLACK: Duration = Duration::from_millis(500);

/// Whether a timer due at `due` fired far late: the process itself was away.
pub(crate) fn woke_late(due: Instant) -> bool {
    Instant::now().saturating_duration_since(due) > STALL_SLACK
}

/// What the sentinel remembers between ticks to notice a stall.
pub(crate) struct StallWatch {
    last_seen: Instant,
    suspended: Option<Duration>,
}

impl StallWatch {
    pub(crate) fn new() -> Self {
        StallWatch {
            last_seen: Instant::now(),
            suspended: suspended_so_far(),
        }
    }

    /// Called each time the sentinel wakes; it wakes at least once a tick.
    /// Returns how long the process was away, if it was.
    pub(crate) fn observe(&mut self, tick: Duration) -> Option<Duration> {
        let now = Instant::now();
        let gap = now.saturating_duration_since(self.last_seen);
        self.last_seen = now;
        let late = gap.saturating_sub(tick);
        let suspended = suspended_so_far();
        let slept = match (self.suspended, suspended) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => Duration::ZERO,
        };
        self.suspended = suspended;
        let away = late.max(slept);
        (away > STALL_SLACK).then_some(away)
    }
}

/// CLOCK_BOOTTIME − CLOCK_MONOTONIC: time spent suspended since boot.
#[cfg(target_os = "linux")]
fn suspended_so_far() -> Option<Duration> {
    use rustix::time::{ClockId, clock_gettime};
    let to = |t: rustix::time::Timespec| {
        Duration::new(
            u64::try_from(t.tv_sec).ok()?,
            u32::try_from(t.tv_nsec).ok()?,
        )
        .into()
    };
    let boot: Option<Duration> = to(clock_gettime(ClockId::Boottime));
    let mono: Option<Duration> = to(clock_gettime(ClockId::Monotonic));
    Some(boot?.saturating_sub(mono?))
}

/// No second clock to compare with: only late timers are noticed.
#[cfg(not(target_os = "linux"))]
fn suspended_so_far() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_late_wake_is_a_stall_and_a_punctual_one_is_not() {
        let tick = Duration::from_millis(100);
        let mut watch = StallWatch::new();
        tokio::time::advance(tick).await;
        assert_eq!(watch.observe(tick), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        let away = watch.observe(tick).expect("a 5 s gap is a stall");
        assert!(away >= Duration::from_secs(4), "{away:?}");
        assert!(suspended_so_far().is_some() || cfg!(not(target_os = "linux")));
    }
}
