//! The state every handle, guard and the sentinel share, and the few moves
//! that change who holds a member, each one of the ledger's transitions
//! (`slot.rs`) under one lock, with no await inside, and connections dropped
//! only after unlocking.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::clock::CoarseClock;
use super::config::Config;
use super::error::Error;
use super::hooks::Hooks;
use super::idle::{End, Grant, Sentinel, State};
use super::member::{Member, MemberData};
use super::slot::Held;
use super::status::{EvictReason, Status};
use super::time::millis;
use crate::{Condition, Manager};

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) clock: CoarseClock,
    pub(crate) validate_after_ms: u64,
    /// [`Manager::use_proves_alive`], read once: consulted on every return.
    pub(crate) use_proves_alive: bool,
    /// A return needs none of the optional steps: a use proves the member
    /// alive, and there is no `after_release` hook, no leak detection and
    /// no adaptive timeout to feed. Fixed at build, so the common return
    /// tests one flag instead of four.
    pub(crate) plain_return: bool,
    /// The sentinel's tick: how stale the coarse clock may be.
    pub(crate) tick_ms: u64,
    pub(crate) wake_sentinel: Notify,
    pub(crate) hooks: Hooks<M::Connection>,
    pub(crate) hook_timeout: Duration,
    /// The `metrics` feature's handles, registered when the sentinel first
    /// starts (see `crate::metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::PoolMetrics,
    /// Issue 12's liveness state: the adaptive timeout, the interval a
    /// server may push up, and the loans leak detection watches.
    pub(crate) adaptive: super::adaptive::Adaptive,
    pub(crate) pace: super::pace::Pace,
    pub(crate) leaks: super::leak::Leaks,
    state: Mutex<State<M::Connection>>,
    /// Where the sentinel runs: whether a queued caller may leave its
    /// deadline to it (see `driven.rs`).
    pub(crate) sentinel_runtime: super::driven::SentinelRuntime,
    /// This pool, for work that must own a handle on it (the sentinel, close
    /// work). Never upgraded on a hot path.
    me: Weak<Shared<M>>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(
        manager: M,
        config: Config,
        hooks: Hooks<M::Connection>,
        hook_timeout: Duration,
    ) -> Arc<Self> {
        let adaptive = super::adaptive::Adaptive::new(
            config.adaptive_heartbeat_floor,
            config.heartbeat_timeout,
        );
        let leaks = super::leak::Leaks::new(config.leak_threshold);
        let use_proves_alive = manager.use_proves_alive();
        Arc::new_cyclic(|me| Shared {
            plain_return: use_proves_alive
                && hooks.after_release.is_none()
                && !leaks.is_on()
                && !adaptive.is_on(),
            use_proves_alive,
            manager,
            validate_after_ms: millis(config.validate_after),
            tick_ms: millis(config.sentinel_tick()),
            state: Mutex::new(State::new(config.idle_order, config.max_size)),
            hooks,
            hook_timeout,
            adaptive,
            pace: super::pace::Pace::new(config.heartbeat_interval),
            leaks,
            config,
            clock: CoarseClock::new(),
            wake_sentinel: Notify::new(),
            #[cfg(feature = "metrics")]
            metrics: Default::default(),
            sentinel_runtime: super::driven::SentinelRuntime::new(),
            me: me.clone(),
        })
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

    /// Starts the sentinel if it is not running: the pool was built outside a
    /// runtime, or its sentinel ended with its runtime (or panicked). Called
    /// under the lock by every checkout's decision, so no deadline depends
    /// on a sentinel that is gone. Fails only where no runtime is there to
    /// run it.
    pub(crate) fn ensure_sentinel(
        &self,
        st: &mut State<M::Connection>,
    ) -> Result<(), Error<M::Error>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::NoBackgroundTask);
        };
        // Here rather than at build: a pool built outside a runtime (in a
        // `LazyLock`, before `main` installs the exporter) registers with
        // the recorder of its first use.
        #[cfg(feature = "metrics")]
        self.metrics
            .register(&self.config.name, self.config.min_idle);
        let restarted = st.sentinel == Sentinel::Gone;
        st.sentinel = Sentinel::Running;
        if restarted {
            st.epoch = st.epoch.wrapping_add(1);
            st.counters.sentinel_restarts += 1;
            #[cfg(feature = "metrics")]
            self.metrics.sentinel_restarted();
            tracing::warn!(
                pool = %self.config.name,
                restarts = st.counters.sentinel_restarts,
                "the pool's background task had ended (its runtime shut down, or it panicked); restarted it on this runtime, and members made before are replaced"
            );
        }
        self.clock.refresh();
        // Spawning never polls the task inline, so doing it under the lock
        // cannot deadlock.
        let exit = super::sentinel::Exit(self.me.clone());
        self.sentinel_runtime.set(&runtime);
        runtime.spawn(super::sentinel::run(self.me.clone(), exit));
        Ok(())
    }

    /// The sentinel ended. If the pool is still open, waiters are told to
    /// decide afresh (nobody else would time them out), which restarts it.
    pub(crate) fn sentinel_ended(&self) {
        let mut st = self.lock();
        if st.closed || st.sentinel != Sentinel::Running {
            return;
        }
        st.sentinel = Sentinel::Gone;
        st.wake_all(|| Grant::Recheck);
        tracing::warn!(pool = %self.config.name, "the pool's background task ended while the pool is open; the next checkout restarts it");
    }

    /// Hands a healthy member on: to the oldest waiter, else to the idle
    /// set; evicted instead on a closed pool or above a lowered `max_size`.
    pub(crate) fn put_back(&self, member: Member<M::Connection>, from: Held, end: End) {
        let surplus = self.lock().give_back(member, from, end);
        if let Some(member) = surplus {
            self.evict_surplus(member, from);
        }
    }

    /// A member `give_back` handed back: evicted, closed or resized. Out
    /// of line, so the return path's common case saves no registers for it.
    #[cold]
    #[inline(never)]
    pub(crate) fn evict_surplus(&self, member: Member<M::Connection>, from: Held) {
        let reason = self.lock().surplus_reason();
        self.evict(member, reason, from);
    }

    /// The one way a member leaves the pool: logged, counted by `reason`,
    /// closed through [`Manager::close`] (its place held until that work
    /// ends), and the sentinel told if the pool fell below `min_idle`.
    // Members travel boxed everywhere (see `member.rs`); this is where one ends.
    #[allow(clippy::boxed_local)]
    pub(crate) fn evict(&self, member: Member<M::Connection>, reason: EvictReason, from: Held) {
        log_eviction(&self.config.name, member.id, reason);
        let MemberData { conn, .. } = *member;
        let work = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.close(conn)
        })) {
            Ok(closing) => closing.into_work(),
            Err(_) => {
                tracing::error!(pool = %self.config.name, "Manager::close panicked; the connection is dropped");
                None
            }
        };
        let spawn = work.and_then(|work| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let shared = self.me.upgrade()?;
            Some((runtime, shared, work))
        });
        let below_min = {
            let mut st = self.lock();
            self.evicted(&mut st, from, reason, spawn.is_some());
            self.below_min_idle(&st)
        };
        if let Some((runtime, shared, work)) = spawn {
            runtime.spawn(async move {
                // Frees the place when the work ends, times out, or is
                // dropped with its runtime.
                let _hold = Closing(Arc::clone(&shared));
                if tokio::time::timeout(shared.config.close_timeout, work)
                    .await
                    .is_err()
                {
                    tracing::warn!(pool = %shared.config.name, timeout = ?shared.config.close_timeout, "closing a connection took longer than close_timeout; its place is freed");
                }
            });
        }
        if below_min {
            self.wake_sentinel.notify_one();
        }
    }

    /// A member leaves the ledger (the caller holds the lock, and has
    /// logged it with `log_eviction` before taking it): the one place every
    /// eviction passes, whichever path it took, so the metrics count each.
    pub(crate) fn evicted(
        &self,
        st: &mut State<M::Connection>,
        from: Held,
        reason: EvictReason,
        closing: bool,
    ) {
        st.evict(from, reason, closing);
        #[cfg(feature = "metrics")]
        {
            self.metrics.evicted(reason);
            self.gauges_if_closed(st);
        }
    }

    /// Publishes the gauges from the ledger: each sentinel tick, and after
    /// the pool closed (its sentinel has stopped) at each change, so they
    /// follow the members still coming back. See `crate::metrics` for why
    /// not at every change.
    #[cfg(feature = "metrics")]
    pub(crate) fn publish_gauges(&self, st: &State<M::Connection>) {
        self.metrics.publish(&status_of(st));
    }

    #[cfg(feature = "metrics")]
    fn gauges_if_closed(&self, st: &State<M::Connection>) {
        if st.closed {
            self.publish_gauges(st);
        }
    }

    /// Frees a place held by `from` that has no member: a connect that
    /// failed or was cancelled.
    pub(crate) fn vacate(&self, from: Held) {
        let below_min = {
            let mut st = self.lock();
            st.vacate(from);
            #[cfg(feature = "metrics")]
            self.gauges_if_closed(&st);
            self.below_min_idle(&st)
        };
        if below_min {
            self.wake_sentinel.notify_one();
        }
    }

    fn below_min_idle(&self, st: &State<M::Connection>) -> bool {
        !st.closed && st.spare() < self.config.min_idle && st.ledger.size < st.max_size
    }

    /// Makes a member of a new connection with the id the ledger gave it.
    pub(crate) fn new_member(
        &self,
        id: u64,
        epoch: u32,
        conn: M::Connection,
    ) -> Member<M::Connection> {
        let now = self.clock.refresh();
        let retire_at_ms = match self.config.max_lifetime {
            Some(lifetime) => {
                let ms = millis(lifetime);
                now.saturating_add(ms - fastrand::u64(0..=ms / 10))
            }
            None => u64::MAX,
        };
        let probe_early_ms = match self.config.heartbeat_interval {
            Some(interval) => {
                let spread = (millis(interval) as f64 * self.config.heartbeat_jitter) as u64;
                u32::try_from(fastrand::u64(0..=spread)).unwrap_or(u32::MAX)
            }
            None => 0,
        };
        tracing::debug!(pool = %self.config.name, member = id, "member connected");
        Box::new(MemberData {
            conn,
            id,
            created_ms: now,
            uses: 0,
            retire_at_ms,
            last_used_ms: now,
            last_ok_ms: now,
            probe_early_ms,
            epoch,
            failures: 0,
            doomed: None,
            distrusted: false,
        })
    }

    pub(crate) fn status(&self) -> Status {
        let mut status = status_of(&self.lock());
        status.heartbeat_interval = self.pace.interval();
        status.heartbeat_threshold = self.adaptive.threshold();
        status
    }

    /// A handle of its own on this pool, for work spawned on its behalf.
    pub(crate) fn handle(&self) -> Option<Arc<Shared<M>>> {
        self.me.upgrade()
    }

    /// Changes `max_size` at run time (already validated): see
    /// [`State::resize`](super::idle::State). Idle members above a lower
    /// maximum are evicted here, as `resized`.
    pub(crate) fn resize(&self, max_size: usize) {
        let (before, claimed, below_min) = {
            let mut st = self.lock();
            let before = st.max_size;
            let claimed = st.resize(max_size);
            (before, claimed, self.below_min_idle(&st))
        };
        tracing::info!(pool = %self.config.name, from = before, to = max_size, closing_idle = claimed.len(), "pool resized");
        for member in claimed {
            self.evict(member, EvictReason::Resized, Held::Probing);
        }
        if below_min {
            self.wake_sentinel.notify_one();
        }
    }

    /// Refuses new checkouts, wakes waiters with `Closed` and closes idle members.
    pub(crate) fn close(&self) {
        let (idle, waiters) = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.close();
            let idle = std::mem::take(&mut st.idle);
            // Claimed like a probe, then evicted one by one through the one
            // eviction path (which runs their close work).
            for _ in 0..idle.len() {
                st.claim_for_probe();
            }
            let waiters = std::mem::take(&mut st.waiters);
            #[cfg(feature = "metrics")]
            self.publish_gauges(&st);
            (idle, waiters)
        };
        // Dropping the senders wakes every waiter with a closed channel.
        drop(waiters);
        for member in idle {
            self.evict(member, EvictReason::Closed, Held::Probing);
        }
        self.wake_sentinel.notify_one();
        tracing::info!(pool = %self.config.name, "pool closed");
    }
}

/// The snapshot `Pool::status` returns, of a ledger already locked.
pub(crate) fn status_of<C>(st: &State<C>) -> Status {
    let l = st.ledger;
    Status {
        max_size: st.max_size,
        size: l.size,
        idle: st.idle.len(),
        in_use: l.in_use,
        probing: l.probing,
        connecting: l.connecting,
        closing: l.closing,
        returning: l.returning,
        waiters: st.waiting(),
        closed: st.closed,
        counters: st.counters(),
        // Not in the ledger: `Shared::status` fills them in.
        heartbeat_interval: None,
        heartbeat_threshold: Duration::ZERO,
    }
}

/// Holds an evicted member's place while its close work runs.
struct Closing<M: Manager>(Arc<Shared<M>>);

impl<M: Manager> Drop for Closing<M> {
    fn drop(&mut self) {
        self.0.vacate(Held::Closing);
    }
}

/// One tracing event per member that leaves the pool: failures at WARN,
/// routine retirement at DEBUG.
pub(crate) fn log_eviction(pool: &str, member: u64, reason: EvictReason) {
    if reason.is_failure() {
        tracing::warn!(pool = %pool, member, reason = reason.as_str(), "member evicted");
    } else {
        tracing::debug!(pool = %pool, member, reason = reason.as_str(), "member evicted");
    }
}

/// A place held across an await (a connect, a probe): if the future holding
/// it is dropped half way (a cancelled checkout, a sentinel stopping
/// mid-probe), `Drop` frees the place (invariant 4, no leaked permit). The
/// member itself, if any, is owned by the same future and dropped with it.
#[must_use = "dropping the token frees the place at once"]
pub(crate) struct Hold<'a, M: Manager> {
    shared: &'a Shared<M>,
    held: Held,
    /// The reason and member id to count and log if cancelled; `None` for a
    /// place with no member yet (a connect).
    on_cancel: Option<(EvictReason, u64)>,
    armed: bool,
}

impl<'a, M: Manager> Hold<'a, M> {
    pub(crate) fn new(
        shared: &'a Shared<M>,
        held: Held,
        on_cancel: Option<(EvictReason, u64)>,
    ) -> Self {
        Hold {
            shared,
            held,
            on_cancel,
            armed: true,
        }
    }

    /// The work finished: whoever continues takes over the place.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<M: Manager> Drop for Hold<'_, M> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match self.on_cancel {
            Some((reason, member)) => {
                log_eviction(&self.shared.config.name, member, reason);
                let mut st = self.shared.lock();
                self.shared.evicted(&mut st, self.held, reason, false);
            }
            None => self.shared.vacate(self.held),
        }
    }
}
