//! The wait and use times the `metrics` feature records
//! (`db.client.connection.wait_time` and `use_time`): one clock read when a
//! checkout finds it must wait (queue, connect or probe), one when it hands
//! the guard out (which ends the wait and starts the use), one when the
//! guard is dropped. A checkout that takes an idle member at once records a
//! wait of zero without reading the clock for it: it took the hundred
//! nanoseconds of one decision under the lock, below any histogram bucket,
//! and that read was a third of what the feature added to the fast path.
//!
//! Without the feature, [`WaitStart`] is zero-sized and [`Shared::lent`]
//! hands the guard through untouched, so the checkout's code is the same
//! and `get()` reads no clock, as its fast path promises.

#[cfg(feature = "metrics")]
use std::time::Duration;

use super::member::Member;
use super::pooled::{Home, Pooled};
use super::shared::Shared;
use crate::Manager;

/// When a checkout started waiting; nothing at all without the `metrics`
/// feature. Held across the checkout's one inline await, so it adds 16
/// bytes to the `get()` future with the feature, and none without.
#[derive(Clone, Copy)]
pub(crate) struct WaitStart {
    /// `None`: served at once, no wait.
    #[cfg(feature = "metrics")]
    at: Option<tokio::time::Instant>,
}

impl WaitStart {
    /// A checkout served from the idle set on its fast path.
    pub(crate) const AT_ONCE: WaitStart = WaitStart {
        #[cfg(feature = "metrics")]
        at: None,
    };

    /// A checkout that has to wait, from now.
    #[inline(always)]
    pub(crate) fn now() -> Self {
        WaitStart {
            #[cfg(feature = "metrics")]
            at: Some(tokio::time::Instant::now()),
        }
    }
}

impl<M: Manager> Shared<M> {
    /// A checkout succeeded: makes the guard, records how long the
    /// checkout took and starts the guard's use time with the same clock
    /// read, and writes the loan down for leak detection (`leak.rs`) when
    /// that is on. The guard is made here, in one piece, and moved once
    /// (into `get()`'s output): the steps before pass the member's box.
    #[inline(always)]
    pub(crate) fn lend<'p>(
        &self,
        home: Home<'p, M>,
        member: Member<M::Connection>,
        started: WaitStart,
        site: &'static std::panic::Location<'static>,
    ) -> Pooled<'p, M> {
        let loan = if self.leaks.is_on() {
            self.note_loan(member.id, site)
        } else {
            None
        };
        #[cfg(feature = "metrics")]
        let lent_at = {
            let now = tokio::time::Instant::now();
            let waited = started
                .at
                .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
            self.metrics.waited(waited);
            Some(now)
        };
        #[cfg(not(feature = "metrics"))]
        let _ = started;
        Pooled {
            shared: home,
            member: Some(member),
            broken: false,
            #[cfg(feature = "metrics")]
            lent_at,
            loan,
        }
    }
}
