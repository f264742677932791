//! Checkout, as DESIGN.md lays it out: pop an idle member, cheap check, probe
//! if stale, on failure evict and try the next or connect a new one, all inside
//! `wait_timeout`; queue first-come first-served when the pool is full.
//!
//! Cancel safety (invariant 4): every await point holds its place through a
//! guard (`Vacancy` while probing or connecting, `Queued` while waiting) whose
//! `Drop` gives the place back, and a member whose probe was cut short is
//! evicted, never put back as if validated.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};

use super::error::{Cause, Error, Phase};
use super::idle::{End, Grant};
use super::member::Member;
use super::pooled::Pooled;
use super::shared::{Held, Shared, Vacancy};
use super::status::EvictReason;
use crate::{Condition, Manager};

/// Whether a checkout may queue behind other callers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    Wait,
    Never,
}

/// What one pass under the lock decided.
enum Next<C> {
    /// A member used recently enough to be trusted after the cheap check.
    Fresh(Member<C>),
    /// A member idle past `validate_after`: probe before handing out.
    Stale(Member<C>),
    /// A free place, reserved: connect a new member.
    Connect,
    /// The pool is full: queued.
    Wait(oneshot::Receiver<Grant<C>>),
}

/// The outcome of one try.
enum Step<M: Manager> {
    Done(Pooled<M>),
    Retry,
    Fail(Error<M::Error>),
}

/// What one `get()` remembers across tries.
struct Attempt<E> {
    /// Set on the first slow step, so the fast path never reads the clock.
    deadline: Option<Instant>,
    cause: Option<Cause<E>>,
    /// After a failed try, the caller queues at the front: it came first.
    retried: bool,
    counted_wait: bool,
    connect_backoff: Duration,
}

const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(10);
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(1);

impl<E> Attempt<E> {
    fn deadline(&mut self, wait_timeout: Duration) -> Instant {
        *self
            .deadline
            .get_or_insert_with(|| Instant::now() + wait_timeout)
    }
}

impl<M: Manager> Shared<M> {
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        queue: Queue,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let mut attempt = Attempt {
            deadline: None,
            cause: None,
            retried: false,
            counted_wait: false,
            connect_backoff: CONNECT_RETRY_FIRST,
        };
        loop {
            let next = self.decide(queue, &mut attempt)?;
            let step = match next {
                Next::Fresh(member) => self.hand_out(member, Held::ByCheckout),
                Next::Stale(member) => self.probe_then_hand_out(member, &mut attempt).await,
                Next::Connect => self.connect_for_caller(&mut attempt).await,
                Next::Wait(rx) => match self.wait(rx, &mut attempt).await {
                    Ok(Grant::Member(member)) => self.hand_out(member, Held::ByCheckout),
                    Ok(Grant::Capacity) => self.connect_for_caller(&mut attempt).await,
                    Err(e) => Step::Fail(e),
                },
            };
            match step {
                Step::Done(pooled) => return Ok(pooled),
                Step::Fail(e) => return Err(e),
                Step::Retry => attempt.retried = true,
            }
        }
    }

    /// One short critical section: take an idle member, reserve a place, or queue.
    fn decide(
        &self,
        queue: Queue,
        attempt: &mut Attempt<M::Error>,
    ) -> Result<Next<M::Connection>, Error<M::Error>> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        if let Some(member) = st.pop_idle() {
            return Ok(if member.idle_for(now) >= self.validate_after_ms {
                st.probing += 1;
                Next::Stale(member)
            } else {
                st.counters.checkouts += 1;
                Next::Fresh(member)
            });
        }
        if st.size < self.config.max_size {
            st.size += 1;
            st.connecting += 1;
            return Ok(Next::Connect);
        }
        if queue == Queue::Never {
            return Err(Error::Exhausted);
        }
        if !attempt.counted_wait {
            attempt.counted_wait = true;
            st.counters.waits += 1;
        }
        Ok(Next::Wait(st.enqueue(attempt.retried)))
    }

    /// The cheap check, then the guard. A member that fails it is evicted and
    /// the caller tries again.
    fn hand_out(self: &Arc<Self>, mut member: Member<M::Connection>, from: Held) -> Step<M> {
        match self.manager.condition(&mut member.conn) {
            Condition::Ready => Step::Done(Pooled::new(Arc::clone(self), member)),
            Condition::Dirty | Condition::Broken => {
                self.evict(member, EvictReason::BrokenOnCheckout, from);
                Step::Retry
            }
        }
    }

    async fn probe_then_hand_out(
        self: &Arc<Self>,
        mut member: Member<M::Connection>,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<M> {
        if self.manager.condition(&mut member.conn) != Condition::Ready {
            self.evict(member, EvictReason::BrokenOnCheckout, Held::Probing);
            return Step::Retry;
        }
        let deadline = attempt.deadline(self.config.wait_timeout);
        let started = Instant::now();
        let probe_deadline = deadline.min(started + self.config.heartbeat_timeout);
        let vacancy = Vacancy::new(
            self,
            Held::Probing,
            Some((EvictReason::ProbeCancelled, member.id)),
        );
        let result = timeout_at(probe_deadline, self.manager.heartbeat(&mut member.conn)).await;
        vacancy.disarm();
        let rtt = started.elapsed();
        match result {
            Ok(Ok(())) => {
                member.last_ok_ms = self.clock.refresh();
                member.failures = 0;
                {
                    let mut st = self.lock();
                    st.probing -= 1;
                    st.counters.checkouts += 1;
                    st.counters.probes_ok += 1;
                    st.counters.probe_rtt.record(rtt);
                }
                Step::Done(Pooled::new(Arc::clone(self), member))
            }
            Ok(Err(error)) => {
                tracing::warn!(pool = %self.config.name, member = member.id, %error, "heartbeat at checkout failed");
                self.evict_probed(member, EvictReason::ProbeFailed);
                attempt.cause = Some(Cause::Probe(error));
                Step::Retry
            }
            Err(_elapsed) => {
                tracing::warn!(pool = %self.config.name, member = member.id, timeout = ?self.config.heartbeat_timeout, "heartbeat at checkout timed out");
                self.evict_probed(member, EvictReason::ProbeTimedOut);
                attempt.cause = Some(Cause::ProbeTimedOut(self.config.heartbeat_timeout));
                if Instant::now() >= deadline {
                    return self.timed_out(Phase::Probing, attempt);
                }
                Step::Retry
            }
        }
    }

    fn evict_probed(&self, member: Member<M::Connection>, reason: EvictReason) {
        super::shared::log_eviction(&self.config.name, member.id, reason);
        self.vacate(Held::Probing, |c| {
            c.probes_failed += 1;
            c.evicted.add(reason);
        });
        drop(member);
    }

    /// Connects into a place already reserved (counted in `size` and
    /// `connecting`). A failed connect gives the place up, then backs off
    /// before the caller tries again, so a server that refuses at once does
    /// not turn checkouts into a busy loop.
    async fn connect_for_caller(self: &Arc<Self>, attempt: &mut Attempt<M::Error>) -> Step<M> {
        let vacancy = Vacancy::new(self, Held::Connecting, None);
        let deadline = attempt.deadline(self.config.wait_timeout);
        let connect_deadline = deadline.min(Instant::now() + self.config.connect_timeout);
        let result = timeout_at(connect_deadline, self.manager.connect()).await;
        match result {
            Ok(Ok(conn)) => {
                vacancy.disarm();
                let member = {
                    let mut st = self.lock();
                    st.counters.checkouts += 1;
                    self.new_member(&mut st, conn)
                };
                // Even a new connection gets the cheap check: a server that
                // accepts and closes at once must not reach the caller.
                self.hand_out(member, Held::ByCheckout)
            }
            Ok(Err(error)) => {
                tracing::warn!(pool = %self.config.name, %error, "connect failed");
                drop(vacancy);
                self.count_connect_failure();
                attempt.cause = Some(Cause::Connect(error));
                let pause = jittered(attempt.connect_backoff);
                attempt.connect_backoff = (attempt.connect_backoff * 2).min(CONNECT_RETRY_MAX);
                let resume = deadline.min(Instant::now() + pause);
                tokio::time::sleep_until(resume).await;
                if resume >= deadline {
                    return self.timed_out(Phase::Connecting, attempt);
                }
                Step::Retry
            }
            Err(_elapsed) => {
                drop(vacancy);
                self.count_connect_failure();
                if connect_deadline >= deadline {
                    tracing::warn!(pool = %self.config.name, "connect cut short by the wait timeout");
                    return self.timed_out(Phase::Connecting, attempt);
                }
                tracing::warn!(pool = %self.config.name, timeout = ?self.config.connect_timeout, "connect timed out");
                attempt.cause = Some(Cause::ConnectTimedOut(self.config.connect_timeout));
                Step::Retry
            }
        }
    }

    fn count_connect_failure(&self) {
        self.lock().counters.connect_failures += 1;
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Grant<M::Connection>>,
        attempt: &mut Attempt<M::Error>,
    ) -> Result<Grant<M::Connection>, Error<M::Error>> {
        let deadline = attempt.deadline(self.config.wait_timeout);
        let mut queued = Queued {
            shared: self,
            rx: Some(rx),
        };
        let Some(rx) = queued.rx.as_mut() else {
            return Err(Error::Closed);
        };
        match timeout_at(deadline, rx).await {
            Ok(Ok(grant)) => {
                queued.rx = None;
                Ok(grant)
            }
            // The sender was dropped without a grant: only `close` does that.
            Ok(Err(_)) => {
                queued.rx = None;
                Err(Error::Closed)
            }
            Err(_elapsed) => {
                // A member may have been handed over at the last instant: use it.
                if let Some(Grant::Member(member)) = queued.take_late_grant() {
                    return Ok(Grant::Member(member));
                }
                self.lock().counters.wait_timeouts += 1;
                Err(self.timeout_error(Phase::Waiting, attempt))
            }
        }
    }

    fn timed_out(&self, phase: Phase, attempt: &mut Attempt<M::Error>) -> Step<M> {
        self.lock().counters.wait_timeouts += 1;
        Step::Fail(self.timeout_error(phase, attempt))
    }

    fn timeout_error(&self, phase: Phase, attempt: &mut Attempt<M::Error>) -> Error<M::Error> {
        Error::Timeout {
            phase,
            waited: self.config.wait_timeout,
            cause: attempt.cause.take(),
        }
    }

    /// Gives a grant that reached a caller who no longer wants it to the next
    /// waiter, undoing the counts `dispatch` made for it.
    fn redispatch(&self, grant: Grant<M::Connection>) {
        let orphan = {
            let mut st = self.lock();
            match grant {
                Grant::Member(_) => st.release_gauge(Held::ByCheckout),
                Grant::Capacity => st.release_gauge(Held::Connecting),
            }
            st.dispatch(grant, End::Hot)
        };
        drop(orphan);
    }
}

/// A caller's place in the queue. Dropped while still queued (a cancelled or
/// timed-out `get`), it closes its channel and passes on anything that was
/// handed to it in the meantime, so no member or place is lost.
struct Queued<'a, M: Manager> {
    shared: &'a Shared<M>,
    rx: Option<oneshot::Receiver<Grant<M::Connection>>>,
}

impl<M: Manager> Queued<'_, M> {
    /// Closes the channel; a member handed over before that is returned, a
    /// free place is passed on (too late to connect with it).
    fn take_late_grant(&mut self) -> Option<Grant<M::Connection>> {
        let mut rx = self.rx.take()?;
        rx.close();
        match rx.try_recv() {
            Ok(Grant::Member(member)) => Some(Grant::Member(member)),
            Ok(Grant::Capacity) => {
                self.shared.redispatch(Grant::Capacity);
                None
            }
            Err(_) => None,
        }
    }
}

impl<M: Manager> Drop for Queued<'_, M> {
    fn drop(&mut self) {
        if let Some(grant) = self.take_late_grant() {
            self.shared.redispatch(grant);
        }
    }
}

/// Spreads retries by ±50% so callers that failed together do not retry together.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}
