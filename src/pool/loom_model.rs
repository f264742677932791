//! Built only under `--cfg livepool_loom`: the member handoff's real code
//! (the ledger's transitions on `State`, the waiter queue, and the
//! [`handoff`](super::handoff) channel) driven step by step from loom
//! threads by `tests/loom_handoff.rs`.
//!
//! What this file adds is only the sequencing a checkout, a return and the
//! sentinel run around those transitions (`checkout.rs`, `pooled.rs`,
//! `sentinel.rs`), without the manager, the clock or tasks, which loom
//! cannot run. The pool's lock is a loom mutex here, as the channel's is;
//! the ledger's own assertions (invariants 1 and 3, the hand-off rule) run
//! after every transition, as in debug builds.
//!
//! Not part of the crate's API.
#![allow(missing_docs)]

use super::handoff::Receiver;
use super::idle::{End, Grant, State};
use super::member::{Member, MemberData};
use super::slot::{Held, Taken};
use super::status::EvictReason;
use crate::loom::sync::{Mutex, MutexGuard};
use crate::pool::IdleOrder;

/// A member's connection in the model: a record of who had it.
#[derive(Debug, Default)]
pub struct Conn {
    /// Names of the callers that were handed it, in order.
    pub history: Vec<&'static str>,
    /// Set while the sentinel holds it for a probe.
    pub under_probe: bool,
    /// Its last probe failed.
    pub failed: bool,
}

/// A member held outside the pool (by a caller or the sentinel).
pub struct Lent(Member<Conn>);

impl Lent {
    pub fn id(&self) -> u64 {
        self.0.id
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.0.conn
    }

    /// A caller takes it: records the caller and checks invariant 2 (never
    /// a member being probed, or one that failed its last probe).
    pub fn accept(&mut self, caller: &'static str) {
        assert!(
            !self.0.conn.under_probe,
            "{caller} was handed member {} while it was being probed",
            self.0.id
        );
        assert!(
            !self.0.conn.failed,
            "{caller} was handed member {}, which failed its last probe",
            self.0.id
        );
        self.0.conn.history.push(caller);
    }
}

/// A free place granted to a caller: it connects with it or gives it up.
pub struct Place(());

/// What one checkout's decision gave.
pub enum Checkout {
    Member(Lent),
    Connect(Place),
    Wait(Waiter),
}

/// What a queued caller received.
pub enum Granted {
    Member(Lent),
    Capacity(Place),
    /// The sender went without sending (the pool closed), or a grant that
    /// carries nothing (timed out, recheck).
    Nothing,
}

/// A queued caller's end of the handoff.
pub struct Waiter(Receiver<Grant<Conn>>);

/// The pool's state behind its one lock.
pub struct Model {
    state: Mutex<State<Conn>>,
}

/// Counts of the ledger, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub size: usize,
    pub idle: usize,
    pub in_use: usize,
    pub probing: usize,
    pub connecting: usize,
    pub closing: usize,
    pub returning: usize,
    pub live_waiters: usize,
}

impl Model {
    /// A LIFO pool of `max_size` places with `members` idle.
    pub fn new(max_size: usize, members: usize) -> Self {
        let model = Model {
            state: Mutex::new(State::new(IdleOrder::Lifo, max_size)),
        };
        let mut made = Vec::with_capacity(members);
        for _ in 0..members {
            let Checkout::Connect(place) = model.checkout() else {
                panic!("no room for {members} members in {max_size} places");
            };
            made.push(model.connect(place));
        }
        for member in made {
            model.give_back(member);
        }
        model
    }

    fn lock(&self) -> MutexGuard<'_, State<Conn>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Shared::decide`: an idle member, else a free place, else queue
    /// (at the back, taking places too: a first try).
    pub fn checkout(&self) -> Checkout {
        let mut st = self.lock();
        if let Some(taken) = st.take_idle(0, u64::MAX) {
            let (Taken::Fresh(member) | Taken::Stale(member)) = taken;
            return Checkout::Member(Lent(member));
        }
        if st.reserve() {
            return Checkout::Connect(Place(()));
        }
        Checkout::Wait(Waiter(st.enqueue(false, u64::MAX, true)))
    }

    /// `Shared::admission` then `connect_for_caller`: a connect in a
    /// reserved place succeeded; the new member is vetted, then lent.
    pub fn connect(&self, Place(()): Place) -> Lent {
        let mut st = self.lock();
        let id = st.admit();
        st.vet();
        st.lend(Held::Probing);
        Lent(Box::new(MemberData {
            conn: Conn::default(),
            id,
            created_ms: 0,
            uses: 0,
            retire_at_ms: u64::MAX,
            last_used_ms: 0,
            last_ok_ms: 0,
            probe_early_ms: 0,
            epoch: st.epoch,
            failures: 0,
            doomed: None,
            distrusted: false,
        }))
    }

    /// A connect in a reserved place failed: the place is freed (to the
    /// oldest waiter that may connect, else given up).
    pub fn connect_failed(&self, Place(()): Place) {
        self.lock().vacate(Held::Connecting);
    }

    /// `Pooled::drop` for a healthy member: `Shared::put_back` from a caller.
    pub fn give_back(&self, Lent(member): Lent) {
        let surplus = self.lock().give_back(member, Held::Caller, End::Hot);
        assert!(surplus.is_none(), "an open pool within max_size kept it");
    }

    /// `Pooled::drop` for a broken member: evicted, its place freed.
    pub fn evict(&self, Lent(member): Lent) {
        drop(member);
        self.lock()
            .evict(Held::Caller, EvictReason::BrokenOnReturn, false);
    }

    /// The sentinel's claim: the coldest idle member, held as probing.
    pub fn sentinel_claim(&self) -> Option<Lent> {
        let mut st = self.lock();
        let mut member = st.idle.pop_front()?;
        st.claim_for_probe();
        member.conn.under_probe = true;
        Some(Lent(member))
    }

    /// The probe answered: back to the cold end (or to the oldest waiter).
    pub fn probe_passed(&self, Lent(mut member): Lent) {
        member.conn.under_probe = false;
        let surplus = self.lock().give_back(member, Held::Probing, End::Cold);
        assert!(surplus.is_none(), "an open pool within max_size kept it");
    }

    /// The probe failed: evicted, its place freed.
    pub fn probe_failed(&self, Lent(mut member): Lent) {
        member.conn.failed = true;
        drop(member);
        self.lock()
            .evict(Held::Probing, EvictReason::ProbeFailed, false);
    }

    /// A deliberately broken sentinel, for the model to catch: it probes
    /// the coldest idle member where it lies instead of claiming it.
    pub fn broken_probe_in_place(&self, passes: bool) {
        let id = {
            let mut st = self.lock();
            let Some(member) = st.idle.front_mut() else {
                return;
            };
            member.conn.under_probe = true;
            member.id
        };
        let mut st = self.lock();
        if let Some(member) = st.idle.iter_mut().find(|m| m.id == id) {
            member.conn.under_probe = false;
            member.conn.failed = !passes;
        }
    }

    pub fn counts(&self) -> Counts {
        let st = self.lock();
        let l = st.ledger;
        Counts {
            size: l.size,
            idle: st.idle.len(),
            in_use: l.in_use,
            probing: l.probing,
            connecting: l.connecting,
            closing: l.closing,
            returning: l.returning,
            live_waiters: st.waiting(),
        }
    }

    /// The idle members' histories, hottest last.
    pub fn idle_histories(&self) -> Vec<(u64, Vec<&'static str>)> {
        self.lock()
            .idle
            .iter()
            .map(|m| (m.id, m.conn.history.clone()))
            .collect()
    }
}

impl Waiter {
    /// Waits for the grant: the `Waiting` future of `checkout.rs`.
    pub async fn wait(mut self) -> Granted {
        match (&mut self.0).await {
            Ok(Grant::Member(member)) => Granted::Member(Lent(member)),
            Ok(Grant::Capacity) => Granted::Capacity(Place(())),
            Ok(Grant::TimedOut | Grant::Recheck) | Err(_) => Granted::Nothing,
        }
    }

    /// What was sent already, without waiting (the model checks with it
    /// that a grant reached this waiter, without blocking a loom thread).
    pub fn try_granted(&self) -> Option<Granted> {
        Some(match self.0.try_take()? {
            Grant::Member(member) => Granted::Member(Lent(member)),
            Grant::Capacity => Granted::Capacity(Place(())),
            Grant::TimedOut | Grant::Recheck => Granted::Nothing,
        })
    }

    /// A cancelled checkout: `Waiting::drop`, which passes on whatever was
    /// sent to it meanwhile through `Shared::redispatch`.
    pub fn cancel(self, model: &Model) {
        if let Some(grant) = self.0.cancel() {
            let surplus = model.lock().take_back(grant);
            assert!(surplus.is_none(), "an open pool within max_size kept it");
        }
    }

    /// A deliberately broken cancel, for the model to catch: it looks for
    /// a grant, then closes the channel, as two steps. A grant sent between
    /// the two is dropped with the channel: a member or a place lost.
    pub fn broken_cancel(self, model: &Model) {
        let grant = self.0.try_take();
        self.0.close();
        if let Some(grant) = grant {
            let surplus = model.lock().take_back(grant);
            assert!(surplus.is_none(), "an open pool within max_size kept it");
        }
    }
}
