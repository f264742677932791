//! The future `get()` returns, written by hand rather than as an `async
//! fn`, because on the fast path its cost is mostly its own moves.
//!
//! An `async fn`'s future keeps its arguments as upvars and, on its first
//! poll, copies them into the slots its body works on; the caller has just
//! built it field by field and moved it into its own state. On x86 the wide
//! copies that follow narrow stores to the same bytes cannot be forwarded
//! from the store buffer, and each such load stalls for about a dozen
//! cycles: sampling scenario A of the `checkout` bench put about a third of
//! a checkout's time on two such loads (BENCHMARKS.md, "Checkout wall time:
//! where issue 10's cost went"). This future is a small struct read in
//! place: the fast path polls it once, decides under the lock and returns
//! the guard, with nothing copied into a body's frame first.
//!
//! The stages are the ones the `async fn` had: served at once; queued
//! behind other callers and waiting inline (with the sentinel as the
//! timer, see `driven.rs`); or the boxed slow path (probe, connect,
//! retry) inside a `checkout` span.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tracing::Instrument;

use super::checkout::{Attempt, Deadline, Fast, Lender, Next, Queue, Waited, Waiting};
use super::error::Error;
use super::member::Member;
use super::pooled::Pooled;
use super::shared::Shared;
use super::timing::WaitStart;
use crate::Manager;

/// A checkout in progress: `Pool::get`, `get_owned` and `try_get`.
///
/// Dropping it at any stage gives back whatever it holds: a queue place
/// passes on what was handed to it (`Waiting`'s drop), and the slow path's
/// guards give back their places.
pub(crate) struct Checkout<'s, 'p, L, M: Manager> {
    lender: L,
    queue: Queue,
    site: &'static Location<'static>,
    stage: Stage<'s, M>,
    _guard: std::marker::PhantomData<fn() -> Pooled<'p, M>>,
}

/// One enum for every stage, `Start` and `Finished` included. Keeping the
/// stage in an `Option` (`None` before and after) and a flag for "begun"
/// drops the call into this enum's drop glue when the future is dropped,
/// 12 instructions per checkout fewer under callgrind, but measured slower
/// in wall time (scenario A, pinned: 52.2 ns against 48.5 in the same five
/// rounds), so it is not done.
enum Stage<'s, M: Manager> {
    /// Not polled yet: the fast path runs on the first poll.
    Start,
    /// Queued behind other callers, waiting inline for a grant.
    Queued {
        waiting: Waiting<'s, M>,
        deadline: Deadline,
        started: WaitStart,
    },
    /// Probing, connecting or retrying, out of line.
    Slow {
        slow: SlowCheckout<'s, M>,
        started: WaitStart,
    },
    /// The guard or the error was handed out.
    Finished,
}

/// The slow path of a checkout, boxed (see [`slow`]).
type SlowCheckout<'s, M> = Pin<
    Box<
        dyn Future<
                Output = Result<Member<<M as Manager>::Connection>, Error<<M as Manager>::Error>>,
            > + Send
            + 's,
    >,
>;

impl<'s, 'p, L, M> Checkout<'s, 'p, L, M>
where
    L: Lender<'s, 'p, M>,
    M: Manager,
{
    #[inline]
    pub(crate) fn new(lender: L, queue: Queue, site: &'static Location<'static>) -> Self {
        Checkout {
            lender,
            queue,
            site,
            stage: Stage::Start,
            _guard: std::marker::PhantomData,
        }
    }

    #[inline(always)]
    fn lend(&self, member: Member<M::Connection>, started: WaitStart) -> Pooled<'p, M> {
        self.lender
            .shared()
            .lend(self.lender.home(), member, started, self.site)
    }

    fn go_slow(
        &mut self,
        next: Option<Next<M::Connection>>,
        attempt: Attempt<M::Error>,
        started: WaitStart,
    ) {
        self.stage = Stage::Slow {
            slow: slow(self.lender.shared(), self.queue, next, attempt),
            started,
        };
    }

    /// Queued or on the slow path: polls the wait, then what it leads to.
    #[inline(never)]
    fn poll_later(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pooled<'p, M>, Error<M::Error>>> {
        loop {
            match &mut self.stage {
                Stage::Queued {
                    waiting,
                    deadline,
                    started,
                } => {
                    let received = ready!(Pin::new(waiting).poll(cx));
                    let (deadline, started) = (*deadline, *started);
                    // The queue place is spent: dropped before the next
                    // step, as the `async fn` dropped it.
                    self.stage = Stage::Finished;
                    match self.lender.shared().after_inline_wait(received, deadline) {
                        Waited::Done(member) => return Poll::Ready(Ok(self.lend(member, started))),
                        Waited::Fail(e) => return Poll::Ready(Err(e)),
                        Waited::Slow(next, attempt) => self.go_slow(next, attempt, started),
                    }
                }
                Stage::Slow { slow, started } => {
                    let result = ready!(slow.as_mut().poll(cx));
                    let started = *started;
                    self.stage = Stage::Finished;
                    return Poll::Ready(result.map(|member| self.lend(member, started)));
                }
                Stage::Start | Stage::Finished => {
                    panic!("a checkout future polled after it completed")
                }
            }
        }
    }
}

// Every field is a reference, a `Copy` value, a queue place that is
// `Unpin` or a boxed future: nothing in it is pinned in place.
impl<'s, 'p, L, M: Manager> Unpin for Checkout<'s, 'p, L, M> {}

impl<'s, 'p, L, M> Future for Checkout<'s, 'p, L, M>
where
    L: Lender<'s, 'p, M>,
    M: Manager,
{
    type Output = Result<Pooled<'p, M>, Error<M::Error>>;

    /// The first poll's fast path is inline, so a checkout served at once
    /// hands its guard straight to the caller's frame; the later stages
    /// are out of line in [`poll_later`](Checkout::poll_later).
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Stage::Start = this.stage {
            let shared = this.lender.shared();
            match shared.checkout_fast(this.queue) {
                Fast::Done(member) => {
                    this.stage = Stage::Finished;
                    return Poll::Ready(Ok(this.lend(member, WaitStart::AT_ONCE)));
                }
                Fast::Fail(e) => {
                    this.stage = Stage::Finished;
                    return Poll::Ready(Err(e));
                }
                Fast::Queued(queued) => {
                    this.stage = Stage::Queued {
                        waiting: shared.wait(queued.rx),
                        deadline: queued.deadline,
                        started: WaitStart::now(),
                    };
                }
                Fast::Slow(next, attempt) => this.go_slow(next, attempt, WaitStart::now()),
            }
        }
        this.poll_later(cx)
    }
}

/// Probing, connecting and retrying (and any queueing they lead to),
/// inside a `checkout` span. Boxed: that state is large, and keeping it
/// out of line keeps the checkout future small and cheap to move on the
/// fast path and on a first plain wait, which run with no span, no clock
/// read and no timer. The slow path awaits I/O anyway, next to which one
/// allocation is nothing.
fn slow<'s, M: Manager>(
    shared: &'s Shared<M>,
    queue: Queue,
    next: Option<Next<M::Connection>>,
    attempt: Attempt<M::Error>,
) -> SlowCheckout<'s, M> {
    Box::pin(
        shared
            .checkout_slow(queue, next, attempt)
            .instrument(tracing::debug_span!("checkout", pool = %shared.config.name)),
    )
}
