//! The wait and use times the `metrics` feature records
//! (`db.client.connection.wait_time` and `use_time`): one clock read when a
//! checkout starts, one when it hands the guard out (which ends the wait and
//! starts the use), one when the guard is dropped.
//!
//! Without the feature, [`WaitStart`] is zero-sized and [`Shared::lent`]
//! hands the guard through untouched, so the checkout's code is the same
//! and `get()` reads no clock, as its fast path promises.

use super::pooled::Pooled;
use super::shared::Shared;
use crate::Manager;

/// When a checkout started; nothing at all without the `metrics` feature.
/// Held across the checkout's one inline await, so it adds 16 bytes to the
/// `get()` future with the feature, and none without.
#[derive(Clone, Copy)]
pub(crate) struct WaitStart {
    #[cfg(feature = "metrics")]
    at: tokio::time::Instant,
}

impl WaitStart {
    #[inline(always)]
    pub(crate) fn now() -> Self {
        WaitStart {
            #[cfg(feature = "metrics")]
            at: tokio::time::Instant::now(),
        }
    }
}

impl<M: Manager> Shared<M> {
    /// A checkout succeeded: records how long it took, and starts the
    /// guard's use time with the same clock read.
    #[inline(always)]
    pub(crate) fn lent<'p>(&self, pooled: Pooled<'p, M>, started: WaitStart) -> Pooled<'p, M> {
        #[cfg(feature = "metrics")]
        let pooled = {
            let mut pooled = pooled;
            let now = tokio::time::Instant::now();
            self.metrics
                .waited(now.saturating_duration_since(started.at));
            pooled.lent_at = Some(now);
            pooled
        };
        #[cfg(not(feature = "metrics"))]
        let _ = started;
        pooled
    }
}
