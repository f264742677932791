//! The idle set and the fair waiter queue, and the one rule that joins them:
//! a member or a free place goes to the oldest live waiter before anything else.
//!
//! Everything here runs under the pool's lock and never awaits. Because every
//! return, refill and eviction goes through [`State::dispatch`], the idle set
//! is non-empty only while no one waits, so a newcomer can take an idle member
//! without jumping the queue.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use super::config::IdleOrder;
use super::member::Member;
use super::status::{Counters, EvictReason};

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
    tx: oneshot::Sender<Grant<C>>,
    /// Coarse-clock milliseconds.
    deadline_ms: u64,
}

pub(crate) struct State<C> {
    /// Back is hot for LIFO; front is next for FIFO.
    pub(crate) idle: VecDeque<Member<C>>,
    /// Oldest first. Senders of cancelled waiters stay until they reach the
    /// front or the next purge; `dispatch` skips them.
    pub(crate) waiters: VecDeque<Waiter<C>>,
    /// Members alive plus places reserved for connects in progress.
    pub(crate) size: usize,
    /// Members held by the sentinel or by a checkout's heartbeat.
    pub(crate) probing: usize,
    /// Connects in progress (callers' and the sentinel's).
    pub(crate) connecting: usize,
    pub(crate) closed: bool,
    pub(crate) next_id: u64,
    pub(crate) counters: Counters,
    order: IdleOrder,
}

impl<C> State<C> {
    pub(crate) fn new(order: IdleOrder) -> Self {
        State {
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
            size: 0,
            probing: 0,
            connecting: 0,
            closed: false,
            next_id: 0,
            counters: Counters::default(),
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
    pub(crate) fn enqueue(&mut self, front: bool, deadline_ms: u64) -> oneshot::Receiver<Grant<C>> {
        if self.waiters.len() == self.waiters.capacity() && !self.waiters.is_empty() {
            // Purge cancelled waiters before the queue grows, which keeps its
            // length bounded by the number of live waiters times two.
            self.waiters.retain(|w| !w.tx.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { tx, deadline_ms };
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
                let _ = waiter.tx.send(Grant::TimedOut);
            } else {
                self.waiters.push_back(waiter);
            }
        }
    }

    /// Gives a member or a free place to the oldest live waiter; failing that,
    /// a member goes to the idle set and a place is given up. On a closed pool
    /// a member is handed back to be dropped outside the lock.
    #[must_use = "a member handed back must be dropped outside the lock"]
    pub(crate) fn dispatch(&mut self, mut grant: Grant<C>, end: End) -> Option<Member<C>> {
        if !self.closed {
            while let Some(waiter) = self.waiters.pop_front() {
                if matches!(grant, Grant::Member(_)) {
                    self.counters.checkouts += 1;
                } else {
                    self.connecting += 1;
                }
                match waiter.tx.send(grant) {
                    Ok(()) => return None,
                    Err(back) => {
                        // That waiter was cancelled: undo and try the next.
                        grant = back;
                        if matches!(grant, Grant::Member(_)) {
                            self.counters.checkouts -= 1;
                        } else {
                            self.connecting -= 1;
                        }
                    }
                }
            }
        }
        match grant {
            Grant::Member(member) if !self.closed => {
                self.push_idle(member, end);
                None
            }
            Grant::Member(member) => {
                self.size -= 1;
                self.counters.evicted.add(EvictReason::Closed);
                Some(member)
            }
            Grant::Capacity => {
                self.size -= 1;
                None
            }
            Grant::TimedOut => None,
        }
    }
}
