//! The idle set and the fair waiter queue, and the one rule that joins them:
//! a member or a free place goes to the oldest live waiter before anything else.
//!
//! Everything here runs under the pool's lock and never awaits. Because every
//! return, refill and eviction goes through [`State::dispatch`], the idle set
//! is non-empty only while no one waits, so a newcomer can take an idle member
//! without jumping the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::config::IdleOrder;
use super::handoff;
use super::member::Member;
use super::slot::{Held, Ledger};
use super::status::Counters;

/// What a waiter is handed.
pub(crate) enum Grant<C> {
    /// A member, fresh from a return, a probe or a connect.
    Member(Member<C>),
    /// A free place, already counted in `size` and `connecting`: the waiter
    /// connects a new member with it.
    Capacity,
    /// The waiter's `wait_timeout` ran out: sent by the sentinel, so a queued
    /// checkout needs no timer of its own.
    TimedOut,
    /// The sentinel ended without the pool closing (its runtime shut down,
    /// or it panicked): nobody would send `TimedOut` any more, so the waiter
    /// decides afresh, which restarts the sentinel.
    Recheck,
}

/// Which end of the idle set a member goes back to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Where checkouts take from first: a member a caller just used.
    Hot,
    /// Where checkouts take from last: a member that was only probed, so it
    /// keeps ageing towards `idle_timeout`.
    Cold,
}

/// A queued caller: where to send its grant, and when it gives up.
pub(crate) struct Waiter<C> {
    tx: handoff::Sender<Grant<C>>,
    /// Coarse-clock milliseconds.
    deadline_ms: u64,
    /// False for a caller backing off after its own connect failed: it
    /// takes a member the moment one is ready, but a free place would only
    /// have it connect again before its backoff is over.
    takes_capacity: bool,
    /// When it queued, in `wait_clock` nanoseconds: what
    /// `Counters::wait_time` adds up when it is answered. Read only by
    /// callers that queue, under the lock, so a checkout that finds a member
    /// reads no clock and the `get()` future carries no instant across its
    /// wait.
    queued_ns: u64,
}

/// Whether the sentinel task is running.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sentinel {
    /// Not started yet: the pool was built outside a runtime.
    NotStarted,
    Running,
    /// Ended without the pool closing: restarted by the next checkout.
    Gone,
}

pub(crate) struct State<C> {
    /// Back is hot for LIFO; front is next for FIFO.
    pub(crate) idle: VecDeque<Member<C>>,
    /// Oldest first. Senders of cancelled waiters stay until they reach the
    /// front or the next purge; `dispatch` skips them.
    pub(crate) waiters: VecDeque<Waiter<C>>,
    /// Who holds how many places (see `slot.rs`).
    pub(crate) ledger: Ledger,
    /// The maximum in force: the configuration's until `resize` changes it.
    pub(crate) max_size: usize,
    /// Places the pool may keep: `max_size` while open, zero once closed.
    /// One comparison on the return path says whether a member coming
    /// back stays, for both reasons it may not.
    pub(crate) keep: usize,
    /// The highest `size` may be: `max_size`, or after a shrink the size at
    /// that moment, lowered each time a place goes (see `slot.rs`).
    pub(crate) ceiling: usize,
    /// Notified when a closed pool's last place goes, for `Pool::drain`.
    pub(crate) emptied: Arc<Notify>,
    pub(crate) closed: bool,
    pub(crate) sentinel: Sentinel,
    /// Bumped each time the sentinel is (re)started after it ended: members
    /// made before may have their I/O tied to a runtime that is gone.
    pub(crate) epoch: u32,
    pub(crate) next_id: u64,
    /// Read through [`State::counters`], which adds `wait_ns`.
    pub(crate) counters: Counters,
    /// `Counters::wait_time` in nanoseconds: kept as an integer so that
    /// answering a waiter adds without `Duration`'s normalising.
    wait_ns: u64,
    /// Connect failures since the last success, for the once-per-outage log.
    pub(crate) outage: super::calls::Outage,
    order: IdleOrder,
}

impl<C> State<C> {
    pub(crate) fn new(order: IdleOrder, max_size: usize) -> Self {
        State {
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
            ledger: Ledger::default(),
            max_size,
            keep: max_size,
            ceiling: max_size,
            emptied: Arc::new(Notify::new()),
            closed: false,
            sentinel: Sentinel::NotStarted,
            epoch: 0,
            next_id: 0,
            counters: Counters::default(),
            wait_ns: 0,
            outage: Default::default(),
            order,
        }
    }

    /// Takes the member the idle order says is next.
    #[inline]
    pub(crate) fn pop_idle(&mut self) -> Option<Member<C>> {
        match self.order {
            IdleOrder::Lifo => self.idle.pop_back(),
            IdleOrder::Fifo => self.idle.pop_front(),
        }
    }

    /// Takes the member checkouts would take last: the first to go when
    /// the pool shrinks.
    pub(crate) fn pop_cold(&mut self) -> Option<Member<C>> {
        match self.order {
            IdleOrder::Lifo => self.idle.pop_front(),
            IdleOrder::Fifo => self.idle.pop_back(),
        }
    }

    fn push_idle(&mut self, member: Member<C>, end: End) {
        match (self.order, end) {
            (IdleOrder::Lifo, End::Hot) | (IdleOrder::Fifo, End::Cold) => {
                self.idle.push_back(member)
            }
            (IdleOrder::Lifo, End::Cold) | (IdleOrder::Fifo, End::Hot) => {
                self.idle.push_front(member)
            }
        }
    }

    /// Queues a caller. One that was already served a member that failed its
    /// check goes back to the front: it has waited longest.
    #[inline]
    pub(crate) fn enqueue(
        &mut self,
        front: bool,
        deadline_ms: u64,
        takes_capacity: bool,
    ) -> handoff::Receiver<Grant<C>> {
        if self.waiters.len() == self.waiters.capacity() && !self.waiters.is_empty() {
            // Purge cancelled waiters before the queue grows, which keeps its
            // length bounded by the number of live waiters times two.
            self.waiters.retain(|w| !w.tx.is_closed());
        }
        let (tx, rx) = handoff::channel();
        let waiter = Waiter {
            tx,
            deadline_ms,
            takes_capacity,
            queued_ns: super::wait_clock::now_ns(),
        };
        if front {
            self.waiters.push_front(waiter);
        } else {
            self.waiters.push_back(waiter);
        }
        rx
    }

    /// Live waiters, for `status()`.
    pub(crate) fn waiting(&self) -> usize {
        self.waiters.iter().filter(|w| !w.tx.is_closed()).count()
    }

    /// Whether a live queued caller would connect with a free place.
    pub(crate) fn has_capacity_waiter(&self) -> bool {
        self.waiters
            .iter()
            .any(|w| w.takes_capacity && !w.tx.is_closed())
    }

    /// For the ledger's debug check: any queued caller still waiting.
    #[cfg(any(debug_assertions, livepool_loom))]
    pub(crate) fn has_live_waiter_for_members(&self) -> bool {
        self.waiters.iter().any(|w| !w.tx.is_closed())
    }

    /// Ends the backoff of every caller waiting out a failed connect of its
    /// own: a connect just succeeded, so the server is back and they should
    /// try now rather than when their timers say.
    pub(crate) fn wake_backoffs(&mut self) {
        if self.waiters.iter().all(|w| w.takes_capacity) {
            return;
        }
        let (backing_off, queued): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| !w.takes_capacity);
        self.waiters = queued;
        for waiter in backing_off {
            self.answer(waiter, Grant::Recheck);
        }
    }

    /// Sends every waiter `grant_of()`, emptying the queue.
    pub(crate) fn wake_all(&mut self, grant_of: impl Fn() -> Grant<C>) {
        for waiter in std::mem::take(&mut self.waiters) {
            self.answer(waiter, grant_of());
        }
    }

    /// Tells every waiter whose deadline has passed that it timed out, keeping
    /// the others in order. Called by the sentinel on each tick.
    pub(crate) fn expire_waiters(&mut self, now_ms: u64) {
        if !self.waiters.iter().any(|w| w.deadline_ms <= now_ms) {
            return;
        }
        for _ in 0..self.waiters.len() {
            let Some(waiter) = self.waiters.pop_front() else {
                break;
            };
            if waiter.deadline_ms <= now_ms {
                // A cancelled waiter's closed channel refuses it: nothing to undo.
                self.answer(waiter, Grant::TimedOut);
            } else {
                self.waiters.push_back(waiter);
            }
        }
    }

    /// Sends a grant that carries no member or place; a waiter that
    /// received it stops waiting, and its wait is counted.
    fn answer(&mut self, waiter: Waiter<C>, grant: Grant<C>) {
        let queued_ns = waiter.queued_ns;
        if waiter.tx.send(grant).is_ok() {
            self.add_wait(queued_ns);
        }
    }

    fn add_wait(&mut self, queued_ns: u64) {
        let waited = super::wait_clock::now_ns().saturating_sub(queued_ns);
        self.wait_ns = self.wait_ns.saturating_add(waited);
    }

    /// The counters as `status()` reports them.
    pub(crate) fn counters(&self) -> Counters {
        Counters {
            wait_time: Duration::from_nanos(self.wait_ns),
            ..self.counters
        }
    }

    /// One place fewer. The ceiling follows `size` down to `max_size`, and a
    /// closed pool that has no place left tells `drain`.
    fn shrink(&mut self) {
        self.ledger.size -= 1;
        self.ceiling = self.ledger.size.max(self.max_size);
        if self.closed && self.ledger.size == 0 {
            self.emptied.notify_waiters();
        }
    }

    /// Offers a member or a free place to the oldest live waiter that takes
    /// it (any waiter takes a member; only those that may connect take a
    /// place), counting it for that waiter; hands it back if none does.
    /// Only the ledger's transitions call it, with the place already
    /// released from its last holder.
    // Inlined into both callers, so each keeps only its own half.
    #[inline(always)]
    fn offer(&mut self, mut grant: Grant<C>) -> Option<Grant<C>> {
        // A member goes to the oldest waiter, whoever it is: the common
        // case, popped from the front. A place goes to the oldest waiter
        // that may connect with it: a scan, but a rare one.
        let is_member = matches!(grant, Grant::Member(_));
        let to = if is_member {
            Held::Lending
        } else {
            Held::Connecting
        };
        loop {
            let waiter = if is_member {
                self.waiters.pop_front()
            } else {
                match self.waiters.iter().position(|w| w.takes_capacity) {
                    Some(i) => self.waiters.remove(i),
                    None => None,
                }
            };
            let Some(waiter) = waiter else {
                return Some(grant);
            };
            self.hold(to);
            let queued_ns = waiter.queued_ns;
            match waiter.tx.send(grant) {
                Ok(()) => {
                    self.add_wait(queued_ns);
                    return None;
                }
                Err(back) => {
                    // That waiter was cancelled: undo and try the next.
                    grant = back;
                    self.release(to);
                }
            }
        }
    }

    /// A grant that reached a caller who no longer wants it (its checkout
    /// was cancelled, or its own timer fired first) goes to the next waiter,
    /// undoing the counts `offer` made for it. A member that may not stay
    /// (closed pool, above a lowered `max_size`) is handed back, held as
    /// lending, for the caller to evict outside the lock.
    #[must_use = "a member handed back must be evicted"]
    pub(crate) fn take_back(&mut self, grant: Grant<C>) -> Option<Member<C>> {
        match grant {
            Grant::Member(member) => self.give_back(member, Held::Lending, End::Hot),
            Grant::Capacity => {
                self.vacate(Held::Connecting);
                None
            }
            Grant::TimedOut | Grant::Recheck => None,
        }
    }

    /// A member nobody holds, on an open pool within `max_size`: to the
    /// oldest waiter, else to the idle set.
    pub(super) fn hand_on(&mut self, member: Member<C>, end: End) {
        if let Some(Grant::Member(member)) = self.offer(Grant::Member(member)) {
            self.push_idle(member, end);
        }
    }

    /// A place nobody holds: to the oldest waiter that may connect with it,
    /// else given up; always given up on a closed pool or above a
    /// `max_size` lowered by `resize`.
    pub(super) fn free_place(&mut self) {
        if self.ledger.size <= self.keep && self.offer(Grant::Capacity).is_none() {
            return;
        }
        self.shrink();
    }
}
