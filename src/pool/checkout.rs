//! Checkout, as DESIGN.md lays it out: pop an idle member, cheap check, probe
//! if stale, on failure evict and try the next or connect a new one, all inside
//! `wait_timeout`; queue first-come first-served when the pool is full.
//!
//! Cancel safety (invariant 4): every await point holds its place through a
//! guard (`Hold` while probing or connecting, `Waiting` while queued) whose
//! `Drop` gives the place back, and a member whose probe was cut short is
//! evicted, never put back as if validated.
//!
//! Every retry checks the caller's deadline, and a retry after a failed
//! connect (or a new member that failed its check) backs off, 10 ms doubling
//! to 1 s, queued as a waiter that takes members but not free places: the
//! first member to become idle, or the first connect to succeed anywhere,
//! ends its backoff at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::admission::Refused;
use super::calls::Failure;
use super::error::{Cause, Error, Phase};
use super::handoff;
use super::hooks::{Hook, Verdict};
use super::idle::{Grant, Sentinel};
use super::member::Member;
use super::pooled::Home;
use super::shared::{Hold, Shared};
use super::slot::{Held, Taken};
use super::status::EvictReason;
use super::time::{doubled, jittered, later, millis};
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
    Wait(handoff::Receiver<Grant<C>>),
    /// Made under a sentinel that has ended (claimed as probing): evict it
    /// and decide again.
    Orphan(Member<C>),
}

/// How a checkout makes the guard's way home: a borrow of the pool (`get`)
/// or a shared handle (`get_owned`). `'s` is how long the pool itself is
/// borrowed for: the checkout future keeps its queue place (`Waiting`) and
/// its slow path, which both borrow the pool, next to the lender.
pub(crate) trait Lender<'s, 'p, M: Manager>: Copy + Send + Sync + 's {
    fn home(self) -> Home<'p, M>;
    /// The pool it lends from: so a checkout's future holds the lender
    /// alone, not the lender and the pool.
    fn shared(self) -> &'s Shared<M>;
}

impl<'p, M: Manager> Lender<'p, 'p, M> for &'p Shared<M> {
    #[inline]
    fn home(self) -> Home<'p, M> {
        Home::Borrowed(self)
    }

    #[inline]
    fn shared(self) -> &'p Shared<M> {
        self
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

impl<'s, M: Manager> Lender<'s, 'static, M> for Owned<'s, M> {
    fn home(self) -> Home<'static, M> {
        Home::Owned(Arc::clone(self.0))
    }

    #[inline]
    fn shared(self) -> &'s Shared<M> {
        self.0
    }
}

/// The outcome of one try.
enum Step<M: Manager> {
    /// Handed out: the guard is made in `get()` itself.
    Done(Member<M::Connection>),
    /// Decide afresh at once (a dead idle member was evicted, say).
    Retry,
    /// A connect failed, or made a member that failed its check: back off
    /// before connecting again.
    BackOff,
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

/// The end of a checkout's `wait_timeout`, in the coarse clock's
/// milliseconds: the sentinel enforces it on queued checkouts, and the
/// timers of connects, probes and slow-path waits turn it into an `Instant`
/// (`at`) only when they start. A plain queued wait never needs the
/// `Instant`, and building it costs more than the rest of the deadline.
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    ms: u64,
}

impl Deadline {
    /// The deadline as an `Instant`, for a timer.
    fn at<M: Manager>(self, shared: &Shared<M>) -> Instant {
        shared.clock.instant_of(self.ms)
    }
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
            let ms = shared
                .clock
                .now_ms()
                .saturating_add(millis(shared.config.wait_timeout))
                .saturating_add(shared.tick_ms);
            Deadline { ms }
        })
    }

    /// What the checkout was doing when its time ran out, as its last
    /// failure says: a checkout retries after probes and hooks, and backs
    /// off after connects.
    fn phase(&self) -> Phase {
        match self.cause {
            Some(Cause::Probe(_) | Cause::ProbeTimedOut(_)) => Phase::Probing,
            Some(Cause::Hook { hook, .. }) => Phase::Hook(hook),
            _ => Phase::Connecting,
        }
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
    pub(crate) rx: handoff::Receiver<Grant<C>>,
    pub(crate) deadline: Deadline,
}

/// What an inline wait ends in. A member handed out travels as its box
/// (one word), and becomes a guard only in `get()` itself: a guard is four
/// words, copied at every enum it passes through.
pub(crate) enum Waited<M: Manager> {
    Done(Member<M::Connection>),
    Fail(Error<M::Error>),
    Slow(Option<Next<M::Connection>>, Attempt<M::Error>),
}

/// What the fast path of `get` leaves for the slow path (a member handed
/// out as its box, as in [`Waited`]).
pub(crate) enum Fast<M: Manager> {
    Done(Member<M::Connection>),
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
    pub(crate) fn checkout_fast(&self, queue: Queue) -> Fast<M> {
        let mut attempt = Attempt::new();
        match self.decide(queue, &mut attempt) {
            Err(e) => Fast::Fail(e),
            // A `before_acquire` hook awaits: the slow path runs it.
            Ok(Next::Fresh(member)) if self.hooks.before_acquire.is_some() => {
                Fast::Slow(Some(Next::Fresh(member)), attempt)
            }
            Ok(Next::Fresh(member)) => match self.hand_out(member, Held::Lending) {
                Some(member) => {
                    // Nothing failed on the way, so the attempt holds no
                    // cause: skipping its drop glue (out of line since
                    // `Cause` has hook failures) saves the fast path a call.
                    debug_assert!(attempt.cause.is_none());
                    std::mem::forget(attempt);
                    Fast::Done(member)
                }
                None => {
                    attempt.retried = true;
                    Fast::Slow(None, attempt)
                }
            },
            Ok(Next::Wait(rx)) if queue == Queue::Wait => self.queued_fast(rx, attempt),
            Ok(next) => Fast::Slow(Some(next), attempt),
        }
    }

    /// A checkout that queued on its fast path waits inline, with the
    /// sentinel for a timer, only where the sentinel is driven while this
    /// caller waits. Out of line: a checkout served at once never needs it,
    /// and inlined it cost that checkout instructions all the same.
    #[inline(never)]
    fn queued_fast(
        &self,
        rx: handoff::Receiver<Grant<M::Connection>>,
        attempt: Attempt<M::Error>,
    ) -> Fast<M> {
        match attempt.deadline {
            Some(deadline) if self.sentinel_runtime.drives_caller() => {
                Fast::Queued(Queued { rx, deadline })
            }
            _ => Fast::Slow(Some(Next::Wait(rx)), attempt),
        }
    }

    /// What a checkout queued on its fast path does with what it received:
    /// a member fresh from another caller is handed out after the cheap
    /// check; anything else goes on to the slow path or fails.
    pub(crate) fn after_inline_wait(
        &self,
        received: Result<Grant<M::Connection>, Error<M::Error>>,
        deadline: Deadline,
    ) -> Waited<M> {
        match received {
            Ok(Grant::Member(member)) if self.hooks.before_acquire.is_some() => Waited::Slow(
                Some(Next::Fresh(member)),
                Attempt::after_wait(deadline, false),
            ),
            Ok(Grant::Member(member)) => match self.hand_out(member, Held::Lending) {
                Some(member) => Waited::Done(member),
                None => Waited::Slow(None, Attempt::after_wait(deadline, true)),
            },
            Ok(Grant::Capacity) => {
                Waited::Slow(Some(Next::Connect), Attempt::after_wait(deadline, false))
            }
            Ok(Grant::TimedOut) => Waited::Fail(self.timed_out(Phase::Waiting, None)),
            Ok(Grant::Recheck) => Waited::Slow(None, Attempt::after_wait(deadline, true)),
            Err(e) => Waited::Fail(e),
        }
    }

    /// Everything else: probing, connecting, queueing, retrying.
    pub(crate) async fn checkout_slow(
        &self,
        queue: Queue,
        mut next: Option<Next<M::Connection>>,
        mut attempt: Attempt<M::Error>,
    ) -> Result<Member<M::Connection>, Error<M::Error>> {
        loop {
            let step = match next.take() {
                Some(next) => next,
                None => self.decide(queue, &mut attempt)?,
            };
            let step = match step {
                Next::Fresh(member) => self.acquire(member, &mut attempt).await,
                Next::Stale(member) => self.probe_then_hand_out(member, &mut attempt).await,
                Next::Connect => self.connect_for_caller(&mut attempt).await,
                Next::Orphan(member) => {
                    self.evict(member, EvictReason::RuntimeGone, Held::Probing);
                    Step::Retry
                }
                Next::Wait(rx) => {
                    let deadline = attempt.deadline(self).at(self);
                    self.wait_for_grant(rx, deadline, &mut attempt).await
                }
            };
            match step {
                Step::Done(pooled) => return Ok(pooled),
                Step::Fail(e) => return Err(e),
                Step::Retry => {}
                Step::BackOff => {
                    if let Some(done) = self.back_off(&mut attempt).await {
                        return done;
                    }
                }
            }
            attempt.retried = true;
            // Every retry checks the deadline: a loop of dead members or
            // failed connects must not outlive `wait_timeout`.
            if Instant::now() >= attempt.deadline(self).at(self) {
                return Err(self.timed_out(attempt.phase(), attempt.cause.take()));
            }
        }
    }

    /// Waits for a grant on the slow path, with a timer of its own as well
    /// as the sentinel's `TimedOut`: the slow path can afford one, and so no
    /// deadline here depends on the sentinel alone.
    async fn wait_for_grant(
        &self,
        rx: handoff::Receiver<Grant<M::Connection>>,
        deadline: Instant,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<M> {
        let received = tokio::select! {
            biased;
            received = self.wait(rx) => received,
            () = tokio::time::sleep_until(deadline) => Ok(Grant::TimedOut),
        };
        match received {
            Ok(Grant::Member(member)) => self.acquire(member, attempt).await,
            Ok(Grant::Capacity) => self.connect_for_caller(attempt).await,
            Ok(Grant::TimedOut) => Step::Fail(self.timed_out(Phase::Waiting, attempt.cause.take())),
            Ok(Grant::Recheck) => Step::Retry,
            Err(e) => Step::Fail(e),
        }
    }

    /// After a failed connect: wait `connect_backoff` (jittered, doubling),
    /// queued so that a member becoming idle, or a connect succeeding
    /// anywhere, is handed over at once. `Some` if the wait ended the
    /// checkout; `None` to try again.
    async fn back_off(
        &self,
        attempt: &mut Attempt<M::Error>,
    ) -> Option<Result<Member<M::Connection>, Error<M::Error>>> {
        let deadline = attempt.deadline(self);
        let pause = jittered(attempt.connect_backoff);
        attempt.connect_backoff = doubled(attempt.connect_backoff).min(CONNECT_RETRY_MAX);
        let deadline_at = deadline.at(self);
        let resume = deadline_at.min(later(Instant::now(), pause));
        let rx = {
            let mut st = self.lock();
            if st.closed {
                return Some(Err(Error::Closed));
            }
            if !st.idle.is_empty() {
                // Something came back meanwhile: take it now.
                return None;
            }
            st.enqueue(true, deadline.ms, false)
        };
        let received = tokio::select! {
            biased;
            received = self.wait(rx) => received,
            () = tokio::time::sleep_until(resume) => return (resume >= deadline_at)
                .then(|| Err(self.timed_out(attempt.phase(), attempt.cause.take()))),
        };
        match received {
            Ok(Grant::Member(member)) => match self.acquire(member, attempt).await {
                Step::Done(pooled) => Some(Ok(pooled)),
                Step::Fail(e) => Some(Err(e)),
                Step::Retry | Step::BackOff => None,
            },
            // Not sent to a waiter that takes no places; passed on if it were.
            Ok(Grant::Capacity) => {
                self.redispatch(Grant::Capacity);
                None
            }
            Ok(Grant::TimedOut) => Some(Err(self.timed_out(attempt.phase(), attempt.cause.take()))),
            Ok(Grant::Recheck) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// One short critical section: take an idle member, reserve a place, or
    /// queue. Restarts the sentinel if it is not running; a member made
    /// under a sentinel (and so perhaps a runtime) that has ended comes back
    /// as `Orphan`, to be evicted outside the lock.
    #[inline]
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
        if st.sentinel != Sentinel::Running {
            self.ensure_sentinel(&mut st)?;
        }
        if let Some(taken) = st.take_idle(now, self.validate_after_ms) {
            return Ok(match taken {
                Taken::Fresh(member) if member.epoch == st.epoch => Next::Fresh(member),
                Taken::Stale(member) if member.epoch == st.epoch => Next::Stale(member),
                Taken::Fresh(member) => {
                    // Claimed as for a probe instead: no caller gets it.
                    st.release(Held::Lending);
                    st.hold(Held::Probing);
                    Next::Orphan(member)
                }
                Taken::Stale(member) => Next::Orphan(member),
            });
        }
        if st.reserve() {
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
        Ok(Next::Wait(st.enqueue(attempt.retried, deadline.ms, true)))
    }

    /// The cheap check: the member back if it may be handed out; `None` if
    /// it failed and was evicted, and the caller tries again.
    #[inline]
    fn hand_out(
        &self,
        mut member: Member<M::Connection>,
        from: Held,
    ) -> Option<Member<M::Connection>> {
        match self.unfit(&mut member) {
            None => Some(member),
            Some(reason) => {
                self.evict(member, reason, from);
                None
            }
        }
    }

    /// The cheap check at checkout: why the member may not be handed out.
    #[inline]
    fn unfit(&self, member: &mut Member<M::Connection>) -> Option<EvictReason> {
        match self.check(&mut member.conn) {
            Condition::Ready => None,
            Condition::Draining => Some(EvictReason::Drained),
            Condition::Dirty | Condition::Broken => Some(EvictReason::BrokenOnCheckout),
        }
    }

    /// A member taken from the pool (idle, or handed over by a caller
    /// returning it) on the slow path: the cheap check, then
    /// `before_acquire`.
    async fn acquire(
        &self,
        mut member: Member<M::Connection>,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<M> {
        match self.unfit(&mut member) {
            None => self.before_acquire(member, attempt).await,
            Some(reason) => {
                self.evict(member, reason, Held::Lending);
                Step::Retry
            }
        }
    }

    /// Runs `before_acquire` on a member held as lending, if there is such
    /// a hook, then hands it out. A refusal or a failure evicts it and the
    /// caller takes the next; a cancelled checkout evicts it too (the hook's
    /// I/O on it was cut off half way).
    async fn before_acquire(
        &self,
        mut member: Member<M::Connection>,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<M> {
        let Some(hook) = &self.hooks.before_acquire else {
            return Step::Done(member);
        };
        let deadline = attempt.deadline(self).at(self);
        let id = member.id;
        let hold = Hold::new(self, Held::Lending, Some((EvictReason::HookFailed, id)));
        let info = self.member_info(&member);
        let result = self
            .run_hook(
                Hook::BeforeAcquire,
                id,
                hook(&mut member.conn, info),
                Some(deadline),
            )
            .await;
        hold.disarm();
        let (reason, failure) = match result {
            Ok(Verdict::Keep) => return Step::Done(member),
            Ok(Verdict::Refuse) => (EvictReason::HookRefused, None),
            Err(failure) => (EvictReason::HookFailed, Some(failure)),
        };
        self.evict(member, reason, Held::Lending);
        attempt.cause = Some(Cause::Hook {
            hook: Hook::BeforeAcquire,
            failure,
        });
        Step::Retry
    }

    async fn probe_then_hand_out(
        &self,
        mut member: Member<M::Connection>,
        attempt: &mut Attempt<M::Error>,
    ) -> Step<M> {
        if self.check(&mut member.conn) != Condition::Ready {
            self.evict(member, EvictReason::BrokenOnCheckout, Held::Probing);
            return Step::Retry;
        }
        let deadline = attempt.deadline(self).at(self);
        let hold = Hold::new(
            self,
            Held::Probing,
            Some((EvictReason::ProbeCancelled, member.id)),
        );
        let result = self.probe(&mut member, Some(deadline)).await;
        hold.disarm();
        match result {
            Ok(()) => {
                // The cheap check again: the answer may have brought bytes
                // nobody asked for (a doubled reply), leaving it out of step;
                // then `before_acquire`.
                self.lock().lend(Held::Probing);
                self.acquire(member, attempt).await
            }
            Err(Failure::Refused) => {
                // The server's refusal (too frequent pings, a shutdown):
                // not the member's fault, and no failure to report.
                self.evict(member, EvictReason::Drained, Held::Probing);
                Step::Retry
            }
            Err(failure) => {
                self.evict(member, failure.probe_reason(), Held::Probing);
                let passed = matches!(failure, Failure::DeadlinePassed);
                attempt.cause = Some(probe_cause(failure, self.config.heartbeat_timeout));
                if passed {
                    return Step::Fail(self.timed_out(Phase::Probing, attempt.cause.take()));
                }
                Step::Retry
            }
        }
    }

    /// Connects into a place already reserved (counted in `size` and
    /// `connecting`). A failed connect gives the place up and asks the caller
    /// to back off; a permanent failure ends the checkout at once.
    async fn connect_for_caller(&self, attempt: &mut Attempt<M::Error>) -> Step<M> {
        let deadline = attempt.deadline(self).at(self);
        match self.connect_member(Some(deadline)).await {
            Ok(member) => {
                self.lock().lend(Held::Probing);
                // Even a new connection gets the cheap check: a server that
                // accepts and closes at once must not reach the caller, nor
                // turn this checkout into a loop of connects.
                match self.hand_out(member, Held::Lending) {
                    Some(member) => Step::Done(member),
                    None => {
                        attempt.cause = Some(Cause::BrokenAfterConnect);
                        Step::BackOff
                    }
                }
            }
            Err(Refused::Hook(failure)) => {
                attempt.cause = Some(Cause::Hook {
                    hook: Hook::AfterConnect,
                    failure: Some(failure),
                });
                Step::BackOff
            }
            Err(Refused::Connect(failure)) => match failure {
                Failure::Permanent(e) => Step::Fail(Error::Permanent(e)),
                Failure::DeadlinePassed => {
                    Step::Fail(self.timed_out(Phase::Connecting, attempt.cause.take()))
                }
                other => {
                    attempt.cause = Some(connect_cause(other, self.config.connect_timeout));
                    Step::BackOff
                }
            },
        }
    }

    /// A queued checkout's wait: a hand-written future, so that waiting
    /// adds no async-fn layer (and no state) to the `get()` future.
    pub(crate) fn wait(&self, rx: handoff::Receiver<Grant<M::Connection>>) -> Waiting<'_, M> {
        Waiting {
            shared: self,
            rx: Some(rx),
        }
    }

    /// The one way a checkout gives up on `wait_timeout`: counted, and
    /// carrying the last failure it absorbed.
    fn timed_out(&self, phase: Phase, cause: Option<Cause<M::Error>>) -> Error<M::Error> {
        self.lock().counters.wait_timeouts += 1;
        #[cfg(feature = "metrics")]
        self.metrics.timed_out();
        Error::Timeout {
            phase,
            waited: self.config.wait_timeout,
            cause: cause.map(Box::new),
        }
    }

    /// Gives a grant that reached a caller who no longer wants it to the next
    /// waiter, undoing the counts `dispatch` made for it.
    fn redispatch(&self, grant: Grant<M::Connection>) {
        let orphan = self.lock().take_back(grant);
        if let Some(member) = orphan {
            self.evict_surplus(member, Held::Lending);
        }
    }
}

pub(crate) fn connect_cause<E>(failure: Failure<E>, limit: Duration) -> Cause<E> {
    match failure {
        Failure::Error(e) | Failure::Permanent(e) => Cause::Connect(e),
        Failure::TimedOut(d) => Cause::ConnectTimedOut(d),
        Failure::DeadlinePassed => Cause::ConnectTimedOut(limit),
        Failure::Panicked => Cause::ManagerPanicked,
        Failure::Outpaced(d) => Cause::ConnectTimedOut(d),
        Failure::Refused => Cause::ConnectTimedOut(limit),
    }
}

fn probe_cause<E>(failure: Failure<E>, limit: Duration) -> Cause<E> {
    match failure {
        Failure::Error(e) | Failure::Permanent(e) => Cause::Probe(e),
        Failure::TimedOut(d) => Cause::ProbeTimedOut(d),
        Failure::DeadlinePassed => Cause::ProbeTimedOut(limit),
        Failure::Panicked => Cause::ManagerPanicked,
        Failure::Outpaced(d) => Cause::ProbeTimedOut(d),
        // Handled before: a refused probe is no failure of the member.
        Failure::Refused => Cause::ProbeTimedOut(limit),
    }
}

/// A caller's place in the queue. Dropped while still queued (a cancelled or
/// timed-out `get`), it closes its channel and passes on anything that was
/// handed to it in the meantime, so no member or place is lost.
pub(crate) struct Waiting<'a, M: Manager> {
    shared: &'a Shared<M>,
    rx: Option<handoff::Receiver<Grant<M::Connection>>>,
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

impl<M: Manager> Drop for Waiting<'_, M> {
    fn drop(&mut self) {
        let Some(rx) = self.rx.take() else {
            return;
        };
        // Closed and emptied in one step: a grant sent before is passed on,
        // and none can be sent after.
        if let Some(grant) = rx.cancel() {
            self.shared.redispatch(grant);
        }
    }
}
