//! The two calls into the manager that take time, one path each for
//! checkouts and the sentinel alike: a heartbeat on a member, and a connect
//! into a reserved place. Each is bounded by its timeout (and by the
//! caller's deadline, if it has one), contains a panicking manager, and does
//! its own counting and logging, so the two users cannot drift apart.
//!
//! Connect failures are logged once per outage: the first at WARN, the rest
//! at DEBUG, and one INFO line with the count and length when a connect
//! succeeds again. An outage of a second and a half with a handful of
//! callers otherwise writes a hundred WARN lines saying the same thing.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::{Instant, timeout_at};

use super::adaptive::Answer;
use super::member::Member;
use super::shared::Shared;
use super::status::EvictReason;
use super::time::later;
use crate::Manager;

/// Why a heartbeat or a connect gave nothing.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// The manager returned an error it may not return next time.
    Error(E),
    /// A connect error the manager calls permanent: retrying cannot help.
    Permanent(E),
    /// The call's own timeout ran out (the value given).
    TimedOut(Duration),
    /// The caller's deadline came first.
    DeadlinePassed,
    /// The manager panicked: a bug in it, contained here.
    Panicked,
    /// No answer within the adaptive threshold (the value given) while a
    /// later round trip on the same endpoint answered within it (see
    /// `adaptive.rs`).
    Outpaced(Duration),
    /// The server refused the heartbeat and said it is going away (too
    /// frequent pings, a shutdown): its decision, not a fault of the member.
    Refused,
}

impl<E> Failure<E> {
    /// The eviction reason for a member whose heartbeat failed this way.
    pub(crate) fn probe_reason(&self) -> EvictReason {
        match self {
            Failure::TimedOut(_) | Failure::DeadlinePassed | Failure::Outpaced(_) => {
                EvictReason::ProbeTimedOut
            }
            Failure::Refused => EvictReason::Drained,
            Failure::Error(_) | Failure::Permanent(_) | Failure::Panicked => {
                EvictReason::ProbeFailed
            }
        }
    }

    /// Only a heartbeat answered with an error may be retried: one cut off
    /// (or a panic) may still be answered on this stream, which is then out
    /// of step.
    pub(crate) fn leaves_stream_in_step(&self) -> bool {
        matches!(self, Failure::Error(_))
    }
}

/// Outage bookkeeping for the once-per-outage connect log.
#[derive(Default)]
pub(crate) struct Outage {
    failures: u64,
    since: Option<Instant>,
}

/// Runs `work` until the earlier of `limit` from now and `deadline`,
/// turning a timeout or a panic into a [`Failure`].
pub(crate) async fn bounded<T, E>(
    limit: Duration,
    deadline: Option<Instant>,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Failure<E>> {
    let own = later(Instant::now(), limit);
    let until = deadline.map_or(own, |d| d.min(own));
    match AssertUnwindSafe(timeout_at(until, work))
        .catch_unwind()
        .await
    {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(Failure::Error(e)),
        Ok(Err(_elapsed)) if until < own => Err(Failure::DeadlinePassed),
        Ok(Err(_elapsed)) => Err(Failure::TimedOut(limit)),
        Err(_panic) => Err(Failure::Panicked),
    }
}

impl<M: Manager> Shared<M> {
    /// One heartbeat on `member`. On success its last proof of life is now,
    /// and the round trip is recorded; on failure the failure is logged and
    /// counted on the member. The caller decides what becomes of it.
    pub(crate) async fn probe(
        &self,
        member: &mut Member<M::Connection>,
        deadline: Option<Instant>,
    ) -> Result<(), Failure<M::Error>> {
        let sent_under = self.pace.interval_ms();
        let (answer, started) = self
            .adaptive
            .run(
                deadline,
                self.manager.heartbeat(&mut member.conn),
                &self.wake_sentinel,
            )
            .await;
        let result = match answer {
            Answer::Done(Ok(Ok(()))) => Ok(()),
            Answer::Done(Ok(Err(_))) if self.refused(member, sent_under) => Err(Failure::Refused),
            Answer::Done(Ok(Err(e))) => Err(Failure::Error(e)),
            Answer::Done(Err(_panic)) => Err(Failure::Panicked),
            Answer::TimedOut => Err(Failure::TimedOut(self.config.heartbeat_timeout)),
            Answer::DeadlinePassed => Err(Failure::DeadlinePassed),
            Answer::Outpaced(threshold) => Err(Failure::Outpaced(threshold)),
        };
        match &result {
            Ok(()) => {
                let rtt = started.elapsed();
                member.last_ok_ms = self.clock.refresh();
                member.failures = 0;
                member.distrusted = false;
                let late = self.adaptive.record(started, rtt);
                let mut st = self.lock();
                st.counters.probes_ok += 1;
                st.counters.probes_late += u64::from(late);
                st.counters.probe_rtt.record(rtt);
                #[cfg(feature = "metrics")]
                self.metrics.heartbeat(Some(rtt));
            }
            Err(Failure::Refused) => {}
            Err(failure) => {
                #[cfg(feature = "metrics")]
                self.metrics.heartbeat(None);
                member.failures = member.failures.saturating_add(1);
                let reason = failure.probe_reason().as_str();
                let (pool, id, failures) = (&self.config.name, member.id, member.failures);
                match failure {
                    Failure::Error(e) | Failure::Permanent(e) => {
                        tracing::warn!(pool = %pool, member = id, failures, reason, error = e as &dyn std::error::Error, "heartbeat failed")
                    }
                    Failure::TimedOut(limit) => {
                        tracing::warn!(pool = %pool, member = id, failures, reason, timeout = ?limit, "heartbeat timed out")
                    }
                    Failure::DeadlinePassed => {
                        tracing::warn!(pool = %pool, member = id, failures, reason, "heartbeat cut short by the checkout's wait timeout")
                    }
                    Failure::Panicked => {
                        tracing::error!(pool = %pool, member = id, failures, reason, "Manager::heartbeat panicked")
                    }
                    Failure::Outpaced(threshold) => {
                        tracing::warn!(pool = %pool, member = id, failures, reason, threshold = ?threshold, "heartbeat unanswered past the adaptive threshold while a later round trip on the endpoint answered within it")
                    }
                    Failure::Refused => {}
                }
            }
        }
        result
    }

    /// One connect, for a place already reserved. Counted, classified
    /// (permanent or not) and logged once per outage.
    pub(crate) async fn connect(
        &self,
        deadline: Option<Instant>,
    ) -> Result<M::Connection, Failure<M::Error>> {
        let result = bounded(
            self.config.connect_timeout,
            deadline,
            self.manager.connect(),
        )
        .await;
        let result = match result {
            Err(Failure::Error(e)) if self.manager_says_permanent(&e) => Err(Failure::Permanent(e)),
            other => other,
        };
        let pool = &self.config.name;
        let mut st = self.lock();
        match &result {
            Ok(_) => {
                let outage = std::mem::take(&mut st.outage);
                if outage.failures > 0 {
                    st.wake_backoffs();
                }
                drop(st);
                if outage.failures > 0 {
                    let lasted_ms = outage.since.map_or(0, |t| t.elapsed().as_millis());
                    tracing::info!(pool = %pool, failed_connects = outage.failures, lasted_ms, "connects succeed again");
                }
            }
            Err(failure) => {
                st.counters.connect_failures += 1;
                let first = st.outage.failures == 0;
                st.outage.failures += 1;
                if first {
                    st.outage.since = Some(Instant::now());
                }
                drop(st);
                log_connect_failure(pool, failure, first);
            }
        }
        result
    }

    fn manager_says_permanent(&self, error: &M::Error) -> bool {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.manager.is_permanent(error)))
            .unwrap_or(false)
    }
}

/// The first failure of an outage at WARN (or every permanent one: it needs
/// a person), the rest at DEBUG.
fn log_connect_failure<E: std::error::Error + 'static>(
    pool: &str,
    failure: &Failure<E>,
    first: bool,
) {
    macro_rules! event {
        ($($field:tt)*) => {
            if first {
                tracing::warn!(pool = %pool, $($field)*)
            } else {
                tracing::debug!(pool = %pool, $($field)*)
            }
        };
    }
    match failure {
        Failure::Permanent(e) => {
            tracing::error!(pool = %pool, error = e as &dyn std::error::Error, "connect failed permanently (retrying cannot help)")
        }
        Failure::Error(e) => {
            event!(error = e as &dyn std::error::Error, "connect failed")
        }
        Failure::TimedOut(limit) => event!(timeout = ?limit, "connect timed out"),
        Failure::DeadlinePassed => event!("connect cut short by the checkout's wait timeout"),
        Failure::Panicked => tracing::error!(pool = %pool, "Manager::connect panicked"),
        // Only heartbeats end these ways.
        Failure::Outpaced(_) | Failure::Refused => event!("connect failed"),
    }
}
