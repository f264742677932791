//! The sentinel: one task per pool, on one timer, that keeps idle members
//! honest. Each tick it claims idle members whose last proof of life is older
//! than the heartbeat interval (less each member's jitter), probes them with
//! bounded concurrency, and returns or evicts each; it trims idle members past
//! `idle_timeout` above `min_idle`, retires members past `max_lifetime`, and
//! refills to `min_idle` with exponential backoff while connects fail.
//!
//! It takes members through the same ledger transitions as a caller, and
//! probes and connects through the same calls (`calls.rs`), so a member it
//! holds is counted as probing and no caller can take it.
//!
//! Nothing depends on it alone: if it ends without the pool closing (its
//! runtime shut down, a panic), its exit guard tells every queued caller to
//! decide afresh, and the next checkout starts a new one.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, MissedTickBehavior};

use super::admission::Refused;
use super::calls::Failure;
use super::idle::{End, State};
use super::member::Member;
use super::shared::{Hold, Shared};
use super::slot::Held;
use super::status::EvictReason;
use super::time::{doubled, jittered, later, millis};
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

enum Done<C, E> {
    Probe {
        member: Member<C>,
        result: Result<(), Failure<E>>,
    },
    Connect(Result<Member<C>, Refused<E>>),
}

/// What the sentinel holds between ticks. Dropped with the sentinel (its
/// runtime shut down), it gives back every member and place it held.
struct Work<M: Manager> {
    shared: Weak<Shared<M>>,
    /// Claimed for a heartbeat, not yet started (counted as probing).
    due: VecDeque<Member<M::Connection>>,
    /// Failed fewer than `heartbeat_failures` times: re-probed at the given
    /// coarse time, never handed out meanwhile (counted as probing).
    suspects: Vec<(Member<M::Connection>, u64)>,
    probes_in_flight: usize,
    /// Places reserved for refill connects not yet started.
    refills_due: usize,
    refills_in_flight: usize,
    refill_backoff: Duration,
    refill_not_before: Instant,
    /// Reused between scans so a tick allocates nothing.
    scratch: VecDeque<Member<M::Connection>>,
    /// Where the next tick's cheap checks start in the idle set.
    check_cursor: usize,
    /// `created` as of the last tick: a connect that succeeded anywhere
    /// (a caller's too) means the server is back, and ends the backoff.
    created_seen: u64,
}

impl<M: Manager> Drop for Work<M> {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let reason = if shared.is_closed() {
            EvictReason::Closed
        } else {
            EvictReason::RuntimeGone
        };
        let held: Vec<_> = self
            .due
            .drain(..)
            .chain(self.suspects.drain(..).map(|(m, _)| m))
            .collect();
        for member in held {
            shared.evict(member, reason, Held::Probing);
        }
        for _ in 0..std::mem::take(&mut self.refills_due) {
            shared.vacate(Held::Connecting);
        }
    }
}

/// Tells the pool its sentinel ended, however it ended (a `break`, a panic
/// unwinding, or the future dropped with its runtime, even before its first
/// poll: it is an argument of `run`, so the unpolled future owns it too).
pub(crate) struct Exit<M: Manager>(pub(crate) Weak<Shared<M>>);

impl<M: Manager> Drop for Exit<M> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.sentinel_ended();
        }
    }
}

pub(crate) async fn run<M: Manager>(pool: Weak<Shared<M>>, exit: Exit<M>) {
    let _exit = exit;
    let Some(shared) = pool.upgrade() else {
        return;
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(shared.tick_ms));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Declared before `work`, so dropped after it: jobs in flight give their
    // places back through their `Hold` first.
    let mut in_flight = FuturesUnordered::new();
    let mut work = Work {
        shared: pool.clone(),
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
    drop(in_flight);
    drop(work);
}

/// One probe or one connect. A `Hold` frees the place if the sentinel
/// stops (the pool closed, the runtime went) while the job is in flight.
async fn run_job<M: Manager>(
    shared: Arc<Shared<M>>,
    job: Job<M::Connection>,
) -> Done<M::Connection, M::Error> {
    match job {
        Job::Probe(mut member) => {
            let hold = Hold::new(
                &shared,
                Held::Probing,
                Some((EvictReason::Closed, member.id)),
            );
            let result = shared.probe(&mut member, None).await;
            hold.disarm();
            Done::Probe { member, result }
        }
        // Its place is held inside, until the member is admitted.
        Job::Connect => Done::Connect(shared.connect_member(None).await),
    }
}

impl<M: Manager> Shared<M> {
    /// One tick: time out waiters, claim due members, trim and retire idle
    /// ones, reserve refills.
    fn plan(&self, work: &mut Work<M>) {
        let now = self.clock.refresh();
        let interval_ms = self.config.heartbeat_interval.map(millis);
        let idle_timeout_ms = self.config.idle_timeout.map(millis);
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
            // The cheap check on a window of idle members: a peer's FIN or RST,
            // or a kernel keepalive that gave up, shows here with no traffic
            // of ours, heartbeats on or off.
            let len = st.idle.len();
            if len > 0 {
                let start = work.check_cursor % len;
                let count = len.min(CHECKS_PER_TICK);
                for k in 0..count {
                    let member = &mut st.idle[(start + k) % len];
                    member.doomed = match self.check(&mut member.conn) {
                        Condition::Ready => None,
                        Condition::Draining => Some(EvictReason::Drained),
                        Condition::Dirty | Condition::Broken => Some(EvictReason::BrokenWhileIdle),
                    };
                }
                work.check_cursor = start + count;
            }
            let epoch = st.epoch;
            // `spare`: members ready or about to be (idle, probing, connecting);
            // what `min_idle` keeps and `idle_timeout` trims down to.
            let verdict = |m: &Member<M::Connection>, spare: usize| -> Option<Action> {
                if let Some(reason) = m.doomed {
                    return Some(Action::Evict(reason));
                }
                if m.epoch != epoch {
                    return Some(Action::Evict(EvictReason::RuntimeGone));
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
                    let age = m
                        .idle_for(now)
                        .saturating_add(u64::from(m.probe_early_ms))
                        .saturating_add(tick_ms / 2);
                    if age >= interval {
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
                        Some(action) => {
                            // Claimed either way: probed, or evicted below
                            // through the one eviction path.
                            st.claim_for_probe();
                            match action {
                                Action::Probe => work.due.push_back(member),
                                Action::Evict(reason) => {
                                    spare = spare.saturating_sub(1);
                                    removed.push((member, reason));
                                }
                            }
                        }
                    }
                }
                std::mem::swap(&mut st.idle, &mut kept);
                work.scratch = kept;
            }
            self.reserve_refills(&mut st, work);
            #[cfg(feature = "metrics")]
            self.publish_gauges(&st);
            st.assert_invariants();
        }
        for (member, reason) in removed {
            self.evict(member, reason, Held::Probing);
        }
    }

    /// Reserves places for refill connects up to `min_idle` (within
    /// `max_size`), unless backing off after failed connects. Called each
    /// tick and each time a refill connect succeeds, so refilling a large
    /// pool runs at the speed of connects, not of ticks.
    fn reserve_refills(&self, st: &mut State<M::Connection>, work: &mut Work<M>) {
        let want = self.config.min_idle.saturating_sub(st.spare());
        let room = MAX_CONCURRENT_REFILLS.saturating_sub(work.refills_in_flight + work.refills_due);
        if want == 0 || room == 0 || Instant::now() < work.refill_not_before {
            return;
        }
        for _ in 0..want.min(room) {
            if !st.reserve() {
                break;
            }
            work.refills_due += 1;
        }
    }

    /// A job finished: put the member back, re-probe or evict it, or admit a
    /// new connection.
    fn settle(&self, done: Done<M::Connection, M::Error>, work: &mut Work<M>) {
        match done {
            Done::Probe {
                member,
                result: Ok(()),
            } => {
                work.probes_in_flight -= 1;
                self.put_back(member, Held::Probing, End::Cold);
            }
            Done::Probe {
                member,
                result: Err(failure),
            } => {
                work.probes_in_flight -= 1;
                if !failure.leaves_stream_in_step()
                    || member.failures >= self.config.heartbeat_failures
                {
                    self.evict(member, failure.probe_reason(), Held::Probing);
                } else {
                    self.lock().counters.probes_failed += 1;
                    let retry_at = self
                        .clock
                        .now_ms()
                        .saturating_add(millis(self.config.heartbeat_timeout));
                    work.suspects.push((member, retry_at));
                }
            }
            Done::Connect(Ok(member)) => {
                work.refills_in_flight -= 1;
                work.refill_backoff = self.config.refill_backoff_min;
                self.put_back(member, Held::Probing, End::Hot);
                let mut st = self.lock();
                if !st.closed {
                    self.reserve_refills(&mut st, work);
                }
            }
            Done::Connect(Err(refused)) => {
                // The place was freed (or the member evicted) already.
                work.refills_in_flight -= 1;
                // The connects of one round fail together: one step of
                // backoff per round, not per connect. A permanent failure
                // goes straight to the longest backoff: it needs a person.
                let now = Instant::now();
                if matches!(refused, Refused::Connect(Failure::Permanent(_))) {
                    work.refill_backoff = self.config.refill_backoff_max;
                }
                if now >= work.refill_not_before {
                    work.refill_not_before = later(now, jittered(work.refill_backoff));
                    work.refill_backoff =
                        doubled(work.refill_backoff).min(self.config.refill_backoff_max);
                }
                tracing::debug!(
                    pool = %self.config.name,
                    retry_in_ms = millis(work.refill_not_before.saturating_duration_since(now)),
                    "refill backing off"
                );
            }
        }
    }
}

enum Action {
    Probe,
    Evict(EvictReason),
}
