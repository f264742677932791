//! The ledger: who holds each member and each place, and the named
//! transitions that are the only way those counts change.
//!
//! # Implementation details
//!
//! A pool has `size` places. Each place is held by exactly one of:
//!
//! | holder | what it is | counted in |
//! |---|---|---|
//! | the idle set | a member ready for checkout | `idle.len()` |
//! | a caller | a member inside a `Pooled` guard, or popped for a checkout that is still running the cheap check (`Lending`) | `in_use` |
//! | a prober | a member being probed by the sentinel or a checkout, or a suspect waiting for its re-probe | `probing` |
//! | a connect | a place reserved for a connect in progress, the caller's or the sentinel's | `connecting` |
//! | a close | an evicted member whose close work (a PostgreSQL cancel, say) is still running | `closing` |
//! | a return | a member a caller gave back, running its `after_release` hook in a short task | `returning` |
//!
//! so `size == idle + in_use + probing + connecting + closing + returning`
//! and `size <= max_size` (invariants 1 and 3 of DESIGN.md) after every
//! transition; each transition ends with a debug assertion of both, and of
//! the hand-off rule (the idle set holds members only while no live waiter
//! is queued).
//!
//! `max_size` lives here, not only in the configuration, because
//! [`resize`](State::resize) changes it at run time. Shrinking never takes
//! a member from a caller, so `size` may stay above a new, lower `max_size`
//! for a while: the ledger then only lets it fall (no place is reserved or
//! handed to a waiter, and members coming back are evicted as `resized`),
//! which the assertion checks against `ceiling`, the highest `size` allowed
//! since the last shrink.
//!
//! Transitions, all under the pool's one lock and none awaiting:
//!
//! * [`reserve`](State::reserve): a free place becomes a connect's;
//! * [`take_idle`](State::take_idle): an idle member is lent (fresh) or
//!   claimed for a probe (idle past `validate_after`);
//! * [`claim_for_probe`](State::claim_for_probe): the sentinel takes an idle member to probe;
//! * [`admit`](State::admit): a connect finished: a new member is counted,
//!   and its place moves to it by one of the next two;
//! * [`lend`](State::lend): a probed or new member goes to the caller who
//!   probed or connected it;
//! * [`give_back`](State::give_back): a member goes to the oldest waiter, else the idle set
//!   (or back to its holder for eviction, on a closed pool or above `max_size`);
//! * [`vet`](State::vet): a new member, just admitted, is counted as
//!   probing while its `after_connect` hook runs, until it is lent or given back;
//! * [`begin_return`](State::begin_return): a returned member runs its
//!   `after_release` hook before it goes back;
//! * [`resize`](State::resize): `max_size` changes; new places go to waiters,
//!   idle members above a lower maximum are claimed for eviction;
//! * [`evict`](State::evict): a member leaves; its place goes to close work
//!   or is freed;
//! * [`vacate`](State::vacate): a place with no member (a failed connect,
//!   finished close work) is freed: to the oldest waiter that can connect
//!   with it, else `size` shrinks.
//!
//! The places themselves are guarded by [`Hold`](super::shared::Hold): a
//! future that holds a place across an await (a connect, a probe) holds a
//! token whose `Drop` frees the place, so a cancelled checkout or a stopped
//! sentinel leaks nothing (invariant 4).

use super::idle::{End, State};
use super::member::Member;
use super::status::EvictReason;

/// Who holds a member or a place: the gauge a transition moves it from or to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Held {
    /// A caller's `Pooled` guard.
    Caller,
    /// Popped (or handed over) for a checkout that has not yet handed it
    /// out: counted as in use and as a checkout; evicting it from here undoes
    /// the checkout count, since no caller got it.
    Lending,
    /// Being probed, or waiting for a re-probe.
    Probing,
    /// A place reserved for a connect.
    Connecting,
    /// An evicted member's close work is running.
    Closing,
    /// Returned by a caller, running its `after_release` hook.
    Returning,
}

/// Counts of places by holder (the idle set counts itself).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Ledger {
    /// Members alive plus places reserved: never above `max_size`.
    pub(crate) size: usize,
    pub(crate) in_use: usize,
    pub(crate) probing: usize,
    pub(crate) connecting: usize,
    pub(crate) closing: usize,
    pub(crate) returning: usize,
}

/// What `take_idle` found.
pub(crate) enum Taken<C> {
    /// Used recently enough to be trusted after the cheap check: lent.
    Fresh(Member<C>),
    /// Idle past `validate_after`: claimed for a probe first.
    Stale(Member<C>),
}

impl<C> State<C> {
    #[inline]
    pub(super) fn gauge(&mut self, held: Held) -> &mut usize {
        match held {
            Held::Caller | Held::Lending => &mut self.ledger.in_use,
            Held::Probing => &mut self.ledger.probing,
            Held::Connecting => &mut self.ledger.connecting,
            Held::Closing => &mut self.ledger.closing,
            Held::Returning => &mut self.ledger.returning,
        }
    }

    /// Moves one place out of `from`'s count. Only for use inside a
    /// transition: the place must be put somewhere before it ends.
    #[inline]
    pub(super) fn release(&mut self, from: Held) {
        let gauge = self.gauge(from);
        debug_assert!(*gauge > 0, "released a place {from:?} did not hold");
        *gauge = gauge.saturating_sub(1);
        if from == Held::Lending {
            self.counters.checkouts = self.counters.checkouts.saturating_sub(1);
        }
    }

    /// Counts one more place for `to`. Lending counts a checkout.
    #[inline]
    pub(super) fn hold(&mut self, to: Held) {
        *self.gauge(to) += 1;
        if to == Held::Lending {
            self.counters.checkouts += 1;
        }
    }

    /// A free place becomes a connect's, if there is one.
    pub(crate) fn reserve(&mut self) -> bool {
        if self.closed || self.ledger.size >= self.max_size {
            return false;
        }
        self.ledger.size += 1;
        self.hold(Held::Connecting);
        self.assert_invariants();
        true
    }

    /// The pool closes: it keeps no place from now on, so every member
    /// coming back is evicted. The caller takes the idle set and the
    /// waiters.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.keep = 0;
        self.assert_invariants();
    }

    /// Pops the member the idle order says is next: lent if fresh, claimed
    /// for a probe if idle for `validate_after_ms` or longer.
    #[inline]
    pub(crate) fn take_idle(&mut self, now_ms: u64, validate_after_ms: u64) -> Option<Taken<C>> {
        let member = self.pop_idle()?;
        Some(
            if member.idle_for(now_ms) >= validate_after_ms || member.distrusted {
                self.hold(Held::Probing);
                Taken::Stale(member)
            } else {
                self.hold(Held::Lending);
                Taken::Fresh(member)
            },
        )
    }

    /// The sentinel takes an idle member (already popped) to probe it.
    pub(crate) fn claim_for_probe(&mut self) {
        self.hold(Held::Probing);
    }

    /// A connect finished: counts the new member and gives its id. The
    /// caller then moves the connect's place to the member with
    /// [`vet`](Self::vet), in the same critical section.
    pub(crate) fn admit(&mut self) -> u64 {
        self.counters.created += 1;
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A member goes to the caller who probed or connected it.
    pub(crate) fn lend(&mut self, from: Held) {
        self.move_place(from, Held::Lending);
    }

    /// A new member, just admitted (its place still the connect's), is
    /// counted as probing while its `after_connect` hook runs and until it
    /// is lent or given back, so no caller can have it before.
    pub(crate) fn vet(&mut self) {
        self.move_place(Held::Connecting, Held::Probing);
    }

    /// A caller returned a healthy member that has an `after_release` hook
    /// to run: it is held by the return until the hook says yes.
    pub(crate) fn begin_return(&mut self) {
        self.move_place(Held::Caller, Held::Returning);
    }

    fn move_place(&mut self, from: Held, to: Held) {
        self.release(from);
        self.hold(to);
        self.assert_invariants();
    }

    /// A healthy member goes to the oldest waiter, else the idle set. On a
    /// closed pool, or above a `max_size` lowered by `resize`, it is handed
    /// back, its place still `from`'s: the caller evicts it outside the
    /// lock, through `Shared::evict`, for [`surplus_reason`](Self::surplus_reason).
    #[must_use = "a member handed back must be evicted"]
    #[inline]
    pub(crate) fn give_back(
        &mut self,
        member: Member<C>,
        from: Held,
        end: End,
    ) -> Option<Member<C>> {
        if self.ledger.size > self.keep {
            return Some(member);
        }
        self.release(from);
        self.hand_on(member, end);
        self.assert_invariants();
        None
    }

    /// Why `give_back` handed a member back.
    pub(crate) fn surplus_reason(&self) -> EvictReason {
        if self.closed {
            EvictReason::Closed
        } else {
            EvictReason::Resized
        }
    }

    /// The pool's maximum changes to `max_size`. Growing offers the new places to
    /// queued callers at once (each connects with its own); shrinking claims
    /// idle members above the new maximum, coldest first, as for a probe,
    /// and returns them to be evicted through `Shared::evict`. Members held
    /// by callers are not touched: they are evicted when they come back
    /// while the pool is still above the new maximum.
    #[must_use = "the idle members claimed must be evicted"]
    pub(crate) fn resize(&mut self, max_size: usize) -> Vec<Member<C>> {
        self.max_size = max_size;
        if !self.closed {
            self.keep = max_size;
        }
        self.ceiling = self.ledger.size.max(max_size);
        while !self.closed && self.ledger.size < self.max_size && self.has_capacity_waiter() {
            self.ledger.size += 1;
            self.free_place();
        }
        let surplus = self.ledger.size.saturating_sub(self.max_size);
        let mut claimed = Vec::with_capacity(surplus.min(self.idle.len()));
        while claimed.len() < surplus {
            let Some(member) = self.pop_cold() else { break };
            self.claim_for_probe();
            claimed.push(member);
        }
        self.assert_invariants();
        claimed
    }

    /// A member leaves the pool, counted by `reason`. Its place stays taken
    /// by its close work if it has any, else is freed.
    pub(crate) fn evict(&mut self, from: Held, reason: EvictReason, closing: bool) {
        self.release(from);
        self.counters.evicted.add(reason);
        if from == Held::Probing
            && matches!(
                reason,
                EvictReason::ProbeFailed | EvictReason::ProbeTimedOut
            )
        {
            self.counters.probes_failed += 1;
        }
        if closing {
            self.hold(Held::Closing);
        } else {
            self.free_place();
        }
        self.assert_invariants();
    }

    /// A place with no member is freed: a connect that failed, or close
    /// work that ended.
    pub(crate) fn vacate(&mut self, from: Held) {
        self.release(from);
        self.free_place();
        self.assert_invariants();
    }

    /// Members ready or about to be: idle, being probed, being connected.
    /// What `min_idle` counts.
    pub(crate) fn spare(&self) -> usize {
        self.idle.len() + self.ledger.probing + self.ledger.connecting
    }

    /// Members borrowed, probed or being returned: connected and alive, but
    /// not in the idle set. What `Pool::ready` counts with the idle ones.
    pub(crate) fn connected(&self) -> usize {
        self.idle.len() + self.ledger.in_use + self.ledger.probing + self.ledger.returning
    }

    /// Invariants 1 and 3, and the hand-off rule, checked in debug builds
    /// after every transition. Above a lowered `max_size`, `size` may only
    /// fall: it stays within `ceiling`, which follows it down.
    #[inline]
    pub(crate) fn assert_invariants(&self) {
        #[cfg(any(debug_assertions, livepool_loom))]
        {
            let l = &self.ledger;
            let held =
                self.idle.len() + l.in_use + l.probing + l.connecting + l.closing + l.returning;
            assert_eq!(
                l.size,
                held,
                "every place has one holder: {l:?}, idle {}",
                self.idle.len()
            );
            assert!(
                l.size <= self.max_size.max(self.ceiling),
                "size {} above max_size {} (ceiling since the last shrink {})",
                l.size,
                self.max_size,
                self.ceiling
            );
            assert!(
                self.idle.is_empty() || self.closed || !self.has_live_waiter_for_members(),
                "a member sat idle while a caller waited"
            );
        }
    }
}
