//! `Pool::drain`: a graceful stop. Lending stops at once (the pool is
//! closed: new checkouts and queued ones fail with `Error::Closed`), idle
//! members are closed at once, and members still borrowed are closed as
//! they come back; `drain` waits for that up to a deadline and reports what
//! was still out.

use std::time::Duration;

use tokio::time::Instant;

use super::shared::Shared;
use super::time::later;
use crate::Manager;

/// What was left when [`Pool::drain`](super::Pool::drain) returned.
///
/// Everything is zero (and [`is_complete`](Self::is_complete) true) when
/// every member was returned and closed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Members still borrowed: closed when their callers return them.
    pub in_use: usize,
    /// Members returned but still running their `after_release` hook.
    pub returning: usize,
    /// Connects, probes and hooks still in flight: each ends within its
    /// own timeout, and its member is closed then.
    pub in_flight: usize,
    /// Members whose close work (see [`Manager::close`]) still runs,
    /// bounded by `close_timeout`.
    pub closing: usize,
    /// How long `drain` waited.
    pub waited: Duration,
}

impl DrainReport {
    /// Whether nothing was left: every member closed, no work running.
    pub fn is_complete(&self) -> bool {
        self.in_use + self.returning + self.in_flight + self.closing == 0
    }
}

impl<M: Manager> Shared<M> {
    /// Closes the pool and waits up to `within` for its last place to go.
    pub(crate) async fn drain(&self, within: Duration) -> DrainReport {
        let started = Instant::now();
        let deadline = later(started, within);
        self.close();
        let emptied = std::sync::Arc::clone(&self.lock().emptied);
        loop {
            let notified = emptied.notified();
            tokio::pin!(notified);
            // Registered before the check, so a place going in between is seen.
            notified.as_mut().enable();
            if self.lock().ledger.size == 0 {
                break;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let st = self.lock();
        let l = st.ledger;
        let report = DrainReport {
            in_use: l.in_use,
            returning: l.returning,
            in_flight: l.probing + l.connecting,
            closing: l.closing,
            waited: started.elapsed(),
        };
        drop(st);
        if report.is_complete() {
            tracing::info!(pool = %self.config.name, waited_ms = report.waited.as_millis(), "pool drained");
        } else {
            tracing::warn!(pool = %self.config.name, in_use = report.in_use, returning = report.returning, in_flight = report.in_flight, closing = report.closing, "pool drain deadline passed with members still out");
        }
        report
    }
}
