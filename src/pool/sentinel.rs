//! The sentinel: one task per pool, on one timer, that keeps idle members
//! honest. Each tick it claims idle members whose last proof of life is older
//! than the heartbeat interval (less each member's jitter), probes them with
//! bounded concurrency, and returns or evicts each; it trims idle members past
//! `idle_timeout` above `min_idle`, retires members past `max_lifetime`, and
//! refills to `min_idle` with exponential backoff while connects fail.
//!
//! It takes members through the same lock and the same moves as a caller, so a
//! member it holds is counted as probing and no caller can take it.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use super::chain::Chain;
use super::checkout::jittered;
use super::idle::{End, Grant, State};
use super::member::Member;
use super::shared::{Held, Shared, Vacancy, log_eviction};
use super::status::EvictReason;
use crate::{Condition, Manager};

/// Background connects in flight at once while refilling to `min_idle`.
const MAX_CONCURRENT_REFILLS: usize = 16;

/// Idle members given the cheap check per tick, round robin. A small pool has
/// every member checked every tick; a huge one spends a bounded time under the
/// lock (the check is a non-blocking syscall at most).
const CHECKS_PER_TICK: usize = 32;

enum Job<C> {
    Probe(Member<C>),
    Connect,
}

/// Why a background probe or connect failed.
enum Failure<E> {
    Error(E),
    TimedOut,
    /// The manager panicked: a bug in it, contained here so the sentinel lives on.
    Panicked,
}

enum Done<C, E> {
    Probe {
        member: Member<C>,
        result: Result<(), Failure<E>>,
        rtt: Duration,
    },
    Connect(Result<C, Failure<E>>),
}

/// Runs a manager future, turning a timeout or a panic into a [`Failure`].
async fn guarded<T, E>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Failure<E>> {
    match AssertUnwindSafe(timeout(limit, work)).catch_unwind().await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(Failure::Error(e)),
        Ok(Err(_elapsed)) => Err(Failure::TimedOut),
        Err(_panic) => Err(Failure::Panicked),
    }
}

/// What the sentinel holds between ticks.
struct Work<C> {
    /// Claimed for a heartbeat, not yet started (counted as probing).
    due: VecDeque<Member<C>>,
    /// Failed fewer than `heartbeat_failures` times: re-probed at the given
    /// coarse time, never handed out meanwhile (counted as probing).
    suspects: Vec<(Member<C>, u64)>,
    probes_in_flight: usize,
    /// Places reserved for refill connects not yet started.
    refills_due: usize,
    refills_in_flight: usize,
    refill_backoff: Duration,
    refill_not_before: Instant,
    /// Reused between scans so a tick allocates nothing.
    scratch: VecDeque<Member<C>>,
    /// Where the next tick's cheap checks start in the idle set.
    check_cursor: usize,
    /// `created` as of the last tick: a connect that succeeded anywhere
    /// (a caller's too) means the server is back, and ends the backoff.
    created_seen: u64,
}

pub(crate) async fn run<M: Manager>(pool: Weak<Shared<M>>) {
    let Some(shared) = pool.upgrade() else {
        return;
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(shared.tick_ms));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut work = Work {
        due: VecDeque::new(),
        suspects: Vec::new(),
        probes_in_flight: 0,
        refills_due: 0,
        refills_in_flight: 0,
        refill_backoff: shared.config.refill_backoff_min,
        refill_not_before: Instant::now(),
        scratch: VecDeque::new(),
        check_cursor: 0,
        created_seen: 0,
    };
    drop(shared);
    let mut in_flight = FuturesUnordered::new();
    loop {
        let Some(shared) = pool.upgrade() else {
            break;
        };
        let plan = tokio::select! {
            biased;
            () = shared.wake_sentinel.notified() => true,
            _ = ticker.tick() => true,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                shared.settle(done, &mut work);
                false
            }
        };
        if shared.is_closed() {
            shared.discard(&mut work);
            break;
        }
        if plan {
            shared.plan(&mut work);
        }
        while work.probes_in_flight < shared.config.max_concurrent_probes {
            let Some(member) = work.due.pop_front() else {
                break;
            };
            work.probes_in_flight += 1;
            in_flight.push(run_job(Arc::clone(&shared), Job::Probe(member)));
        }
        while work.refills_due > 0 {
            work.refills_due -= 1;
            work.refills_in_flight += 1;
            in_flight.push(run_job(Arc::clone(&shared), Job::Connect));
        }
    }
    // Dropping the jobs in flight frees their places through their `Vacancy`.
    drop(in_flight);
}

/// One probe or one connect. A `Vacancy` frees the place if the sentinel
/// stops (the pool closed) while the job is in flight.
async fn run_job<M: Manager>(
    shared: Arc<Shared<M>>,
    job: Job<M::Connection>,
) -> Done<M::Connection, M::Error> {
    match job {
        Job::Probe(mut member) => {
            let vacancy = Vacancy::new(
                &shared,
                Held::Probing,
                Some((EvictReason::Closed, member.id)),
            );
            let started = Instant::now();
            let result = guarded(
                shared.config.heartbeat_timeout,
                shared.manager.heartbeat(&mut member.conn),
            )
            .await;
            let rtt = started.elapsed();
            vacancy.disarm();
            Done::Probe {
                member,
                result,
                rtt,
            }
        }
        Job::Connect => {
            let vacancy = Vacancy::new(&shared, Held::Connecting, None);
            let result = guarded(shared.config.connect_timeout, shared.manager.connect()).await;
            vacancy.disarm();
            Done::Connect(result)
        }
    }
}

impl<M: Manager> Shared<M> {
    /// One tick: claim due members, trim and retire idle ones, reserve refills.
    fn plan(&self, work: &mut Work<M::Connection>) {
        let now = self.clock.refresh();
        let interval_ms = self.config.heartbeat_interval.map(|d| d.as_millis() as u64);
        let idle_timeout_ms = self.config.idle_timeout.map(|d| d.as_millis() as u64);
        let tick_ms = self.tick_ms;
        let min_idle = self.config.min_idle;
        let mut removed: Vec<(Member<M::Connection>, EvictReason)> = Vec::new();
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.expire_waiters(now);
            if st.counters.created != work.created_seen {
                work.created_seen = st.counters.created;
                work.refill_backoff = self.config.refill_backoff_min;
                work.refill_not_before = Instant::now();
            }
            // Suspects whose re-probe time has come go back in line.
            let mut i = 0;
            while i < work.suspects.len() {
                if work.suspects[i].1 <= now {
                    let (member, _) = work.suspects.swap_remove(i);
                    work.due.push_back(member);
                } else {
                    i += 1;
                }
            }
            // `spare`: members ready or about to be (idle, probing, connecting);
            // what `min_idle` keeps and `idle_timeout` trims down to.
            // The cheap check on a window of idle members: a peer's FIN or RST,
            // or a kernel keepalive that gave up, shows here with no traffic
            // of ours, heartbeats on or off.
            let len = st.idle.len();
            if len > 0 {
                let start = work.check_cursor % len;
                let count = len.min(CHECKS_PER_TICK);
                for k in 0..count {
                    let member = &mut st.idle[(start + k) % len];
                    match self.check(&mut member.conn) {
                        Condition::Ready => {}
                        Condition::Draining => member.doomed = Some(EvictReason::Drained),
                        Condition::Dirty | Condition::Broken => {
                            member.doomed = Some(EvictReason::BrokenWhileIdle)
                        }
                    }
                }
                work.check_cursor = start + count;
            }
            let verdict = |m: &Member<M::Connection>, spare: usize| -> Option<Action> {
                if let Some(reason) = m.doomed {
                    return Some(Action::Evict(reason));
                }
                if now >= m.retire_at_ms {
                    return Some(Action::Evict(EvictReason::MaxLifetime));
                }
                if let Some(limit) = idle_timeout_ms {
                    if spare > min_idle && now.saturating_sub(m.last_used_ms) >= limit {
                        return Some(Action::Evict(EvictReason::IdleTimeout));
                    }
                }
                // Claimed up to half a tick early, which centres the rounding
                // to the tick: the period stays within the jitter.
                if let Some(interval) = interval_ms {
                    if m.idle_for(now) + u64::from(m.probe_early_ms) + tick_ms / 2 >= interval {
                        return Some(Action::Probe);
                    }
                }
                None
            };
            // A read-only pass first: most ticks find nothing to do.
            let mut spare = st.spare();
            if st.idle.iter().any(|m| verdict(m, spare).is_some()) {
                let mut kept = std::mem::take(&mut work.scratch);
                while let Some(member) = st.idle.pop_front() {
                    match verdict(&member, spare) {
                        None => kept.push_back(member),
                        Some(Action::Probe) => {
                            st.probing += 1;
                            work.due.push_back(member);
                        }
                        Some(Action::Evict(reason)) => {
                            spare -= 1;
                            st.counters.evicted.add(reason);
                            let orphan = st.dispatch(Grant::Capacity, End::Hot);
                            debug_assert!(orphan.is_none());
                            removed.push((member, reason));
                        }
                    }
                }
                std::mem::swap(&mut st.idle, &mut kept);
                work.scratch = kept;
            }
            self.reserve_refills(&mut st, work);
        }
        for (member, reason) in removed {
            log_eviction(&self.config.name, member.id, reason);
        }
    }

    /// Reserves places for refill connects up to `min_idle` (within
    /// `max_size`), unless backing off after failed connects. Called each
    /// tick and each time a refill connect succeeds, so refilling a large
    /// pool runs at the speed of connects, not of ticks.
    fn reserve_refills(&self, st: &mut State<M::Connection>, work: &mut Work<M::Connection>) {
        let want = self
            .config
            .min_idle
            .saturating_sub(st.spare())
            .min(self.config.max_size - st.size);
        let room = MAX_CONCURRENT_REFILLS.saturating_sub(work.refills_in_flight + work.refills_due);
        if want > 0 && room > 0 && Instant::now() >= work.refill_not_before {
            let n = want.min(room);
            st.size += n;
            st.connecting += n;
            work.refills_due += n;
        }
    }

    /// A job finished: put the member back, re-probe or evict it, or admit a
    /// new connection.
    fn settle(&self, done: Done<M::Connection, M::Error>, work: &mut Work<M::Connection>) {
        match done {
            Done::Probe {
                mut member,
                result: Ok(()),
                rtt,
            } => {
                work.probes_in_flight -= 1;
                member.last_ok_ms = self.clock.refresh();
                member.failures = 0;
                let orphan = {
                    let mut st = self.lock();
                    st.counters.probes_ok += 1;
                    st.counters.probe_rtt.record(rtt);
                    st.probing -= 1;
                    st.dispatch(Grant::Member(member), End::Cold)
                };
                drop(orphan);
            }
            Done::Probe {
                mut member,
                result: Err(error),
                ..
            } => {
                work.probes_in_flight -= 1;
                member.failures += 1;
                let reason = match &error {
                    Failure::TimedOut => EvictReason::ProbeTimedOut,
                    Failure::Error(_) | Failure::Panicked => EvictReason::ProbeFailed,
                };
                let (pool, id, failures) = (&self.config.name, member.id, member.failures);
                let reason_name = reason.as_str();
                match &error {
                    Failure::Error(error) => {
                        tracing::warn!(pool = %pool, member = id, failures, reason = reason_name, error = %Chain(error), "heartbeat failed")
                    }
                    Failure::TimedOut => {
                        tracing::warn!(pool = %pool, member = id, failures, reason = reason_name, timeout = ?self.config.heartbeat_timeout, "heartbeat timed out")
                    }
                    Failure::Panicked => {
                        tracing::error!(pool = %pool, member = id, failures, reason = reason_name, "Manager::heartbeat panicked")
                    }
                }
                // Only a heartbeat that answered with an error may be retried:
                // one cut off by its timeout (or a panic) may still be answered
                // on this stream, which is then out of step, so it goes at once.
                let out_of_step = !matches!(error, Failure::Error(_));
                if out_of_step || member.failures >= self.config.heartbeat_failures {
                    log_eviction(&self.config.name, member.id, reason);
                    self.vacate(Held::Probing, |c| {
                        c.probes_failed += 1;
                        c.evicted.add(reason);
                    });
                    drop(member);
                } else {
                    self.lock().counters.probes_failed += 1;
                    let retry_at =
                        self.clock.now_ms() + self.config.heartbeat_timeout.as_millis() as u64;
                    work.suspects.push((member, retry_at));
                }
            }
            Done::Connect(Ok(conn)) => {
                work.refills_in_flight -= 1;
                work.refill_backoff = self.config.refill_backoff_min;
                let orphan = {
                    let mut st = self.lock();
                    let member = self.new_member(&mut st, conn);
                    let orphan = st.dispatch(Grant::Member(member), End::Hot);
                    if !st.closed {
                        self.reserve_refills(&mut st, work);
                    }
                    orphan
                };
                drop(orphan);
            }
            Done::Connect(Err(error)) => {
                work.refills_in_flight -= 1;
                self.vacate(Held::Connecting, |c| c.connect_failures += 1);
                // The connects of one round fail together: one step of
                // backoff per round, not per connect.
                let now = Instant::now();
                if now >= work.refill_not_before {
                    work.refill_not_before = now + jittered(work.refill_backoff);
                    work.refill_backoff =
                        (work.refill_backoff * 2).min(self.config.refill_backoff_max);
                }
                let (pool, retry_in_ms) = (
                    &self.config.name,
                    (work.refill_not_before - now).as_millis() as u64,
                );
                match &error {
                    Failure::Error(error) => {
                        tracing::warn!(pool = %pool, error = %Chain(error), retry_in_ms, "refill connect failed")
                    }
                    Failure::TimedOut => {
                        tracing::warn!(pool = %pool, timeout = ?self.config.connect_timeout, retry_in_ms, "refill connect timed out")
                    }
                    Failure::Panicked => {
                        tracing::error!(pool = %pool, retry_in_ms, "Manager::connect panicked")
                    }
                }
            }
        }
    }

    /// The pool closed: members the sentinel holds are closed.
    fn discard(&self, work: &mut Work<M::Connection>) {
        let held: Vec<_> = work
            .due
            .drain(..)
            .chain(work.suspects.drain(..).map(|(m, _)| m))
            .collect();
        for member in held {
            log_eviction(&self.config.name, member.id, EvictReason::Closed);
            self.vacate(Held::Probing, |c| c.evicted.add(EvictReason::Closed));
        }
        if work.refills_due > 0 {
            for _ in 0..std::mem::take(&mut work.refills_due) {
                self.vacate(Held::Connecting, |_| {});
            }
        }
    }
}

enum Action {
    Probe,
    Evict(EvictReason),
}
