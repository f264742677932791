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

use super::chain::Chain;
use super::error::{Cause, Error, Phase};
use super::idle::{End, Grant};
use super::member::Member;
use super::pooled::{Home, Pooled};
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
pub(crate) enum Next<C> {
    /// A member used recently enough to be trusted after the cheap check.
    Fresh(Member<C>),
    /// A member idle past `validate_after`: probe before handing out.
    Stale(Member<C>),
    /// A free place, reserved: connect a new member.
    Connect,
    /// The pool is full: queued.
    Wait(oneshot::Receiver<Grant<C>>),
}

/// How a checkout makes the guard's way home: a borrow of the pool (`get`)
/// or a shared handle (`get_owned`).
pub(crate) trait Lender<'p, M: Manager>: Copy + Send + Sync {
    fn home(self) -> Home<'p, M>;
}

impl<'p, M: Manager> Lender<'p, M> for &'p Shared<M> {
    #[inline]
    fn home(self) -> Home<'p, M> {
        Home::Borrowed(self)
    }
}

/// Lends a guard its own handle on the pool, so it may outlive the borrow.
pub(crate) struct Owned<'s, M: Manager>(pub(crate) &'s Arc<Shared<M>>);

impl<M: Manager> Clone for Owned<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Manager> Copy for Owned<'_, M> {}

impl<M: Manager> Lender<'static, M> for Owned<'_, M> {
    fn home(self) -> Home<'static, M> {
        Home::Owned(Arc::clone(self.0))
    }
}

/// The outcome of one try.
enum Step<'p, M: Manager> {
    Done(Pooled<'p, M>),
    Retry,
    Fail(Error<M::Error>),
}

/// What one `get()` remembers across tries.
pub(crate) struct Attempt<E> {
    /// Set on the first slow step, so the fast path never reads the clock.
    deadline: Option<Deadline>,
    cause: Option<Cause<E>>,
    /// After a failed try, the caller queues at the front: it came first.
    retried: bool,
    counted_wait: bool,
    connect_backoff: Duration,
}

const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(10);
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(1);

/// The end of a checkout's `wait_timeout`, in both clocks: an `Instant` for
/// the timers of connects and probes, coarse milliseconds for the sentinel,
/// which enforces it on queued checkouts.
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    ms: u64,
}

impl<E> Attempt<E> {
    pub(crate) fn new() -> Self {
        Attempt {
            deadline: None,
            cause: None,
            retried: false,
            counted_wait: false,
            connect_backoff: CONNECT_RETRY_FIRST,
        }
    }

    /// Set on the first slow step, from the coarse clock: no clock read. The
    /// coarse clock lags by at most one sentinel tick, so one tick is added:
    /// the deadline is never early, and late by at most a tick.
    fn deadline<M: Manager>(&mut self, shared: &Shared<M>) -> Deadline {
        *self.deadline.get_or_insert_with(|| {
            let ms = shared.clock.now_ms()
                + shared.config.wait_timeout.as_millis() as u64
                + shared.tick_ms;
            Deadline {
                at: shared.clock.instant_of(ms),
                ms,
            }
        })
    }

    /// What a checkout that waited inline knows when it moves to the slow path.
    fn after_wait(deadline: Deadline, retried: bool) -> Self {
        Attempt {
            deadline: Some(deadline),
            cause: None,
            retried,
            counted_wait: true,
            connect_backoff: CONNECT_RETRY_FIRST,
        }
    }
}

/// A checkout that queued on its fast path: what it waits on, with no span,
/// no timer and no box, because a plain wait needs little state. Anything
/// more (a connect, a probe, a retry) goes on to the boxed slow path.
pub(crate) struct Queued<C> {
    pub(crate) rx: oneshot::Receiver<Grant<C>>,
    pub(crate) deadline: Deadline,
}

/// What an inline wait ends in.
pub(crate) enum Waited<'p, M: Manager> {
    Done(Pooled<'p, M>),
    Fail(Error<M::Error>),
    Slow(Option<Next<M::Connection>>, Attempt<M::Error>),
}

/// What the fast path of `get` leaves for the slow path.
pub(crate) enum Fast<'p, M: Manager> {
    Done(Pooled<'p, M>),
    Fail(Error<M::Error>),
    /// Queued behind other callers: wait inline.
    Queued(Queued<M::Connection>),
    /// Carry on with this step (or decide afresh, for `None`).
    Slow(Option<Next<M::Connection>>, Attempt<M::Error>),
}

impl<M: Manager> Shared<M> {
    /// The common case with no await, no timer, no clock read and no span: an
    /// idle member used recently enough, which passes the cheap check.
    #[inline]
    pub(crate) fn checkout_fast<'p>(
        &self,
        lender: impl Lender<'p, M>,
        queue: Queue,
    ) -> Fast<'p, M> {
        let mut attempt = Attempt::new();
        match self.decide(queue, &mut attempt) {
            Err(e) => Fast::Fail(e),
            Ok(Next::Fresh(member)) => match self.hand_out(lender, member, Held::ByCheckout) {
                Step::Done(pooled) => Fast::Done(pooled),
                Step::Fail(e) => Fast::Fail(e),
                Step::Retry => {
                    attempt.retried = true;
                    Fast::Slow(None, attempt)
                }
            },
            Ok(Next::Wait(rx)) if queue == Queue::Wait => match attempt.deadline {
                Some(deadline) => Fast::Queued(Queued { rx, deadline }),
                None => Fast::Slow(Some(Next::Wait(rx)), attempt),
            },
            Ok(next) => Fast::Slow(Some(next), attempt),
        }
    }

    /// What a checkout queued on its fast path does with what it received:
    /// a member fresh from another caller is handed out after the cheap
    /// check; anything else goes on to the slow path or fails.
    pub(crate) fn after_inline_wait<'p>(
        &self,
        lender: impl Lender<'p, M>,
        received: Result<Grant<M::Connection>, Error<M::Error>>,
        deadline: Deadline,
    ) -> Waited<'p, M> {
        match received {
            Ok(Grant::Member(member)) => match self.hand_out(lender, member, Held::ByCheckout) {
                Step::Done(pooled) => Waited::Done(pooled),
                Step::Fail(e) => Waited::Fail(e),
                Step::Retry => Waited::Slow(None, Attempt::after_wait(deadline, true)),
            },
            Ok(Grant::Capacity) => {
                Waited::Slow(Some(Next::Connect), Attempt::after_wait(deadline, false))
            }
            Ok(Grant::TimedOut) => Waited::Fail(self.timed_out(Phase::Waiting, None)),
            Err(e) => Waited::Fail(e),
        }
    }

    /// Everything else: probing, connecting, queueing, retrying.
    pub(crate) async fn checkout_slow<'p>(
        &self,
        lender: impl Lender<'p, M>,
        queue: Queue,
        mut next: Option<Next<M::Connection>>,
        mut attempt: Attempt<M::Error>,
    ) -> Result<Pooled<'p, M>, Error<M::Error>> {
        loop {
            let step = match next.take() {
                Some(next) => next,
                None => self.decide(queue, &mut attempt)?,
            };
            let step = match step {
                Next::Fresh(member) => self.hand_out(lender, member, Held::ByCheckout),
                Next::Stale(member) => self.probe_then_hand_out(lender, member, &mut attempt).await,
                Next::Connect => self.connect_for_caller(lender, &mut attempt).await,
                Next::Wait(rx) => match self.wait(rx).await {
                    Ok(Grant::Member(member)) => self.hand_out(lender, member, Held::ByCheckout),
                    Ok(Grant::Capacity) => self.connect_for_caller(lender, &mut attempt).await,
                    Ok(Grant::TimedOut) => {
                        Step::Fail(self.timed_out(Phase::Waiting, attempt.cause.take()))
                    }
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
        let deadline = attempt.deadline(self);
        Ok(Next::Wait(st.enqueue(attempt.retried, deadline.ms)))
    }

    /// The cheap check, then the guard. A member that fails it is evicted and
    /// the caller tries again.
    fn hand_out<'p>(
        &self,
        lender: impl Lender<'p, M>,
        mut member: Member<M::Connection>,
        from: Held,
    ) -> Step<'p, M> {
        match self.check(&mut member.conn) {
            Condition::Ready => Step::Done(Pooled::new(lender.home(), member)),
            Condition::Draining => {
                self.evict(member, EvictReason::Drained, from);
                Step::Retry
            }
            Condition::Dirty | Condition::Broken => {
                self.evict(member, EvictReason::BrokenOnCheckout, from);
                Step::Retry
            }
        }
    }

    async fn probe_then_hand_out<'p>(
        &self,
        lender: impl Lender<'p, M>,
        mut member: Member<M::Connection>,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<'p, M> {
        if self.check(&mut member.conn) != Condition::Ready {
            self.evict(member, EvictReason::BrokenOnCheckout, Held::Probing);
            return Step::Retry;
        }
        let deadline = attempt.deadline(self).at;
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
                Step::Done(Pooled::new(lender.home(), member))
            }
            Ok(Err(error)) => {
                tracing::warn!(pool = %self.config.name, member = member.id, error = %Chain(&error), "heartbeat at checkout failed");
                self.evict_probed(member, EvictReason::ProbeFailed);
                attempt.cause = Some(Cause::Probe(error));
                Step::Retry
            }
            Err(_elapsed) => {
                tracing::warn!(pool = %self.config.name, member = member.id, timeout = ?self.config.heartbeat_timeout, "heartbeat at checkout timed out");
                self.evict_probed(member, EvictReason::ProbeTimedOut);
                attempt.cause = Some(Cause::ProbeTimedOut(self.config.heartbeat_timeout));
                if Instant::now() >= deadline {
                    return Step::Fail(self.timed_out(Phase::Probing, attempt.cause.take()));
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
    async fn connect_for_caller<'p>(
        &self,
        lender: impl Lender<'p, M>,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<'p, M> {
        let vacancy = Vacancy::new(self, Held::Connecting, None);
        let deadline = attempt.deadline(self).at;
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
                self.hand_out(lender, member, Held::ByCheckout)
            }
            Ok(Err(error)) => {
                tracing::warn!(pool = %self.config.name, error = %Chain(&error), "connect failed");
                drop(vacancy);
                self.count_connect_failure();
                attempt.cause = Some(Cause::Connect(error));
                let pause = jittered(attempt.connect_backoff);
                attempt.connect_backoff = (attempt.connect_backoff * 2).min(CONNECT_RETRY_MAX);
                let resume = deadline.min(Instant::now() + pause);
                tokio::time::sleep_until(resume).await;
                if resume >= deadline {
                    return Step::Fail(self.timed_out(Phase::Connecting, attempt.cause.take()));
                }
                Step::Retry
            }
            Err(_elapsed) => {
                drop(vacancy);
                self.count_connect_failure();
                if connect_deadline >= deadline {
                    tracing::warn!(pool = %self.config.name, "connect cut short by the wait timeout");
                    return Step::Fail(self.timed_out(Phase::Connecting, attempt.cause.take()));
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

    /// Waits for a grant with no timer of its own: the sentinel sends
    /// `Grant::TimedOut` once the deadline given at `enqueue` has passed.
    /// A queued checkout's wait: a hand-written future, so that waiting
    /// adds no async-fn layer (and no state) to the `get()` future.
    pub(crate) fn wait(&self, rx: oneshot::Receiver<Grant<M::Connection>>) -> Waiting<'_, M> {
        Waiting {
            shared: self,
            rx: Some(rx),
        }
    }

    /// The one way a checkout gives up on `wait_timeout`: counted, and
    /// carrying the last failure it absorbed.
    fn timed_out(&self, phase: Phase, cause: Option<Cause<M::Error>>) -> Error<M::Error> {
        self.lock().counters.wait_timeouts += 1;
        Error::Timeout {
            phase,
            waited: self.config.wait_timeout,
            cause,
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
                Grant::TimedOut => return,
            }
            st.dispatch(grant, End::Hot)
        };
        drop(orphan);
    }
}

/// A caller's place in the queue. Dropped while still queued (a cancelled or
/// timed-out `get`), it closes its channel and passes on anything that was
/// handed to it in the meantime, so no member or place is lost.
pub(crate) struct Waiting<'a, M: Manager> {
    shared: &'a Shared<M>,
    rx: Option<oneshot::Receiver<Grant<M::Connection>>>,
}

impl<M: Manager> std::future::Future for Waiting<'_, M> {
    type Output = Result<Grant<M::Connection>, Error<M::Error>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            return std::task::Poll::Ready(Err(Error::Closed));
        };
        let received = std::task::ready!(std::pin::Pin::new(rx).poll(cx));
        // Received: nothing left for `Drop` to pass on.
        self.rx = None;
        // The sender is dropped without a grant only by `close`.
        std::task::Poll::Ready(received.map_err(|_| Error::Closed))
    }
}

impl<M: Manager> Waiting<'_, M> {
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
            Ok(Grant::TimedOut) | Err(_) => None,
        }
    }
}

impl<M: Manager> Drop for Waiting<'_, M> {
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
