//! Ping etiquette: the heartbeat interval in force for this pool's endpoint,
//! which a server that limits pings can push up.
//!
//! Servers bound how often a client may ping (gRPC answers a client that
//! pings more often than its `min_time` with GOAWAY `too_many_pings` and
//! closes the connection). A pool that ignored the refusal would reconnect
//! and be refused again, member after member. So when a heartbeat is
//! refused this way (the manager says so through
//! [`Manager::heartbeat_refused`](crate::Manager::heartbeat_refused)), the
//! member is closed as drained (the server's decision, not a fault of the
//! member: never counted as a failed probe) and the interval doubles, as
//! gRPC clients do. Refusals of probes sent under an interval already
//! doubled since count once, so a burst of refusals on every member doubles
//! it once, and one log line says so.
//!
//! Bounded: at most [`MAX_DOUBLINGS`] doublings (64 × the configured
//! interval); beyond that the server's limit is not one heartbeats can meet,
//! and checkout validation and the kernel keepalive still watch members.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::member::Member;
use super::shared::Shared;
use super::status::EvictReason;
use super::time::millis;
use crate::{Condition, Manager};

/// Doublings of the heartbeat interval at most.
pub(crate) const MAX_DOUBLINGS: u32 = 6;

pub(crate) struct Pace {
    configured_ms: Option<u64>,
    /// The interval in force, in milliseconds; 0 when heartbeats are off.
    interval_ms: AtomicU64,
}

impl Pace {
    pub(crate) fn new(interval: Option<Duration>) -> Self {
        let configured_ms = interval.map(millis);
        Pace {
            configured_ms,
            interval_ms: AtomicU64::new(configured_ms.unwrap_or(0)),
        }
    }

    /// The heartbeat interval in force, in milliseconds.
    #[inline]
    pub(crate) fn interval_ms(&self) -> Option<u64> {
        self.configured_ms?;
        Some(self.interval_ms.load(Ordering::Relaxed))
    }

    /// The heartbeat interval in force.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.interval_ms().map(Duration::from_millis)
    }

    /// The server refused a heartbeat sent while the interval was
    /// `sent_under` ms: doubles the interval unless it was doubled since
    /// (or is at its bound). Returns the new interval if this call doubled it.
    pub(crate) fn refused(&self, sent_under: u64) -> Option<Duration> {
        let configured = self.configured_ms?;
        let cap = configured.saturating_mul(1 << MAX_DOUBLINGS);
        let doubled = sent_under.saturating_mul(2).min(cap);
        if doubled <= sent_under {
            return None;
        }
        self.interval_ms
            .compare_exchange(sent_under, doubled, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| Duration::from_millis(doubled))
    }
}

impl<M: Manager> Shared<M> {
    /// After a heartbeat that failed: whether it was the server's refusal
    /// (the manager says so, or the member now drains), rather than a fault
    /// of the member. A refusal of too frequent pings doubles the interval.
    pub(crate) fn refused(
        &self,
        member: &mut Member<M::Connection>,
        sent_under: Option<u64>,
    ) -> bool {
        let too_many_pings = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.heartbeat_refused(&member.conn)
        }))
        .unwrap_or(false);
        if !too_many_pings {
            return self.check(&mut member.conn) == Condition::Draining;
        }
        self.lock().counters.heartbeats_refused += 1;
        let doubled = sent_under.and_then(|ms| self.pace.refused(ms));
        let pool = &self.config.name;
        match doubled {
            Some(interval) => tracing::warn!(
                pool = %pool,
                member = member.id,
                reason = EvictReason::Drained.as_str(),
                interval = ?interval,
                "the server refused a heartbeat as too frequent (too_many_pings); heartbeat interval doubled for this endpoint"
            ),
            None => tracing::debug!(
                pool = %pool,
                member = member.id,
                reason = EvictReason::Drained.as_str(),
                "the server refused a heartbeat as too frequent; the interval was doubled already"
            ),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_double_once_per_interval_and_stop_at_the_bound() {
        let pace = Pace::new(Some(Duration::from_millis(100)));
        assert_eq!(pace.refused(100), Some(Duration::from_millis(200)));
        assert_eq!(pace.refused(100), None, "a second refusal of the old pace");
        assert_eq!(pace.interval_ms(), Some(200));
        for _ in 0..20 {
            let now = pace.interval_ms().unwrap();
            pace.refused(now);
        }
        assert_eq!(pace.interval_ms(), Some(6400));
        assert_eq!(Pace::new(None).refused(0), None);
    }
}
