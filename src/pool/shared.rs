//! The state every handle, guard and the sentinel share, and the few moves that
//! change who holds a member. Each move is one short critical section under one
//! lock, with no await inside, and drops connections only after unlocking.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::clock::CoarseClock;
use super::config::Config;
use super::idle::{End, Grant, State};
use super::member::{Member, MemberData};
use super::status::{Counters, EvictReason, Status};
use crate::{Condition, Manager};

/// Who held a member or a place when it is given up: the gauge to decrement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Held {
    /// A caller's `Pooled` guard (in use).
    ByCaller,
    /// Popped for a checkout that then rejected it: undo the checkout count.
    ByCheckout,
    /// Being probed, or waiting for a re-probe.
    Probing,
    /// A place reserved for a connect.
    Connecting,
}

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) clock: CoarseClock,
    pub(crate) validate_after_ms: u64,
    /// The sentinel's tick: how stale the coarse clock may be.
    pub(crate) tick_ms: u64,
    pub(crate) wake_sentinel: Notify,
    state: Mutex<State<M::Connection>>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, config: Config) -> Self {
        Shared {
            manager,
            validate_after_ms: config.validate_after.as_millis() as u64,
            tick_ms: config.sentinel_tick().as_millis() as u64,
            state: Mutex::new(State::new(config.idle_order)),
            config,
            clock: CoarseClock::new(),
            wake_sentinel: Notify::new(),
        }
    }

    /// Nothing panics while holding the lock, but a caller's `Drop` of a
    /// connection could run elsewhere and poison nothing of ours; recover
    /// rather than cascade a panic.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<M::Connection>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The manager's cheap check. A manager that panics here has a bug; its
    /// connection is treated as broken rather than letting the panic tear
    /// through the pool's bookkeeping (or kill the sentinel).
    #[inline]
    pub(crate) fn check(&self, conn: &mut M::Connection) -> Condition {
        self.contain(|| self.manager.condition(conn))
    }

    /// The manager's check on return; see [`Manager::condition_on_return`].
    #[inline]
    pub(crate) fn check_on_return(&self, conn: &mut M::Connection) -> Condition {
        self.contain(|| self.manager.condition_on_return(conn))
    }

    #[inline]
    fn contain(&self, check: impl FnOnce() -> Condition) -> Condition {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
            Ok(condition) => condition,
            Err(_) => {
                tracing::error!(pool = %self.config.name, "Manager::condition panicked; treating the connection as broken");
                Condition::Broken
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Hands a healthy member on: to the oldest waiter, else to the idle set.
    pub(crate) fn put_back(&self, member: Member<M::Connection>, from: Held, end: End) {
        let orphan = {
            let mut st = self.lock();
            st.release_gauge(from);
            st.dispatch(Grant::Member(member), end)
        };
        drop(orphan);
    }

    /// Takes a member out of the pool for `reason` and frees its place (the
    /// oldest waiter gets it to connect with). The connection is closed by
    /// dropping it, outside the lock.
    pub(crate) fn evict(&self, member: Member<M::Connection>, reason: EvictReason, from: Held) {
        log_eviction(&self.config.name, member.id, reason);
        self.vacate(from, |c| c.evicted.add(reason));
        drop(member);
    }

    /// Frees a place held by `from`, updating counters with `count`.
    pub(crate) fn vacate(&self, from: Held, count: impl FnOnce(&mut Counters)) {
        let below_min = {
            let mut st = self.lock();
            st.release_gauge(from);
            count(&mut st.counters);
            let orphan = st.dispatch(Grant::Capacity, End::Hot);
            debug_assert!(orphan.is_none());
            !st.closed && st.spare() < self.config.min_idle && st.size < self.config.max_size
        };
        if below_min {
            self.wake_sentinel.notify_one();
        }
    }

    /// Makes a member of a new connection. Called under the lock so ids and the
    /// `created` counter stay in step with `size`.
    pub(crate) fn new_member(
        &self,
        st: &mut State<M::Connection>,
        conn: M::Connection,
    ) -> Member<M::Connection> {
        let now = self.clock.refresh();
        st.connecting -= 1;
        st.counters.created += 1;
        let id = st.next_id;
        st.next_id += 1;
        let retire_at_ms = match self.config.max_lifetime {
            Some(lifetime) => {
                let ms = lifetime.as_millis() as u64;
                now.saturating_add(ms - fastrand::u64(0..=ms / 10))
            }
            None => u64::MAX,
        };
        let probe_early_ms = match self.config.heartbeat_interval {
            Some(interval) => {
                let spread = (interval.as_millis() as f64 * self.config.heartbeat_jitter) as u32;
                fastrand::u32(0..=spread)
            }
            None => 0,
        };
        tracing::debug!(pool = %self.config.name, member = id, "member connected");
        Box::new(MemberData {
            conn,
            id,
            retire_at_ms,
            last_used_ms: now,
            last_ok_ms: now,
            probe_early_ms,
            failures: 0,
            doomed: None,
        })
    }

    pub(crate) fn status(&self) -> Status {
        let st = self.lock();
        let idle = st.idle.len();
        Status {
            max_size: self.config.max_size,
            size: st.size,
            idle,
            in_use: st.size - idle - st.probing - st.connecting,
            probing: st.probing,
            connecting: st.connecting,
            waiters: st.waiting(),
            closed: st.closed,
            counters: st.counters,
        }
    }

    /// Refuses new checkouts, wakes waiters with `Closed` and closes idle members.
    pub(crate) fn close(&self) {
        let (idle, waiters) = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            let idle = std::mem::take(&mut st.idle);
            st.size -= idle.len();
            for _ in 0..idle.len() {
                st.counters.evicted.add(EvictReason::Closed);
            }
            (idle, std::mem::take(&mut st.waiters))
        };
        // Dropping the senders wakes every waiter with a closed channel.
        drop(waiters);
        for member in idle {
            log_eviction(&self.config.name, member.id, EvictReason::Closed);
        }
        self.wake_sentinel.notify_one();
        tracing::info!(pool = %self.config.name, "pool closed");
    }
}

impl<C> State<C> {
    /// Members ready or about to be: idle, being probed, being connected.
    /// What `min_idle` counts.
    pub(crate) fn spare(&self) -> usize {
        self.idle.len() + self.probing + self.connecting
    }

    pub(crate) fn release_gauge(&mut self, from: Held) {
        match from {
            Held::ByCaller => {}
            Held::ByCheckout => self.counters.checkouts -= 1,
            Held::Probing => self.probing -= 1,
            Held::Connecting => self.connecting -= 1,
        }
    }
}

/// One tracing event per member that leaves the pool: failures at WARN,
/// routine retirement at DEBUG.
pub(crate) fn log_eviction(pool: &str, member: u64, reason: EvictReason) {
    if reason.is_failure() {
        tracing::warn!(pool, member, reason = reason.as_str(), "member evicted");
    } else {
        tracing::debug!(pool, member, reason = reason.as_str(), "member evicted");
    }
}

/// Frees a place if the future holding it is dropped half way (a cancelled
/// checkout, a sentinel stopping mid-probe): invariant 4, no leaked permit.
/// The member itself, if any, is owned by the same future and dropped with it.
pub(crate) struct Vacancy<'a, M: Manager> {
    shared: &'a Shared<M>,
    held: Held,
    /// The reason and member id to count and log if cancelled; `None` for a
    /// place with no member yet (a connect).
    on_cancel: Option<(EvictReason, u64)>,
    armed: bool,
}

impl<'a, M: Manager> Vacancy<'a, M> {
    pub(crate) fn new(
        shared: &'a Shared<M>,
        held: Held,
        on_cancel: Option<(EvictReason, u64)>,
    ) -> Self {
        Vacancy {
            shared,
            held,
            on_cancel,
            armed: true,
        }
    }

    /// The work finished: whoever continues takes over the accounting.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<M: Manager> Drop for Vacancy<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            let on_cancel = self.on_cancel;
            if let Some((reason, member)) = on_cancel {
                log_eviction(&self.shared.config.name, member, reason);
            }
            self.shared.vacate(self.held, |c| {
                if let Some((reason, _)) = on_cancel {
                    c.evicted.add(reason)
                }
            });
        }
    }
}
