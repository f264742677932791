//! Choosing an endpoint: power of two choices over live load, or round robin
//! or random for comparison.
//!
//! Load is what tower's `PeakEwma` computes (Finagle's peak-EWMA): a round
//! trip estimate that jumps to any slower sample at once and decays towards
//! faster ones, times the requests pending on the endpoint plus one. tower's
//! type wraps a `Service` and measures its calls; a pool checkout is not a
//! service call, and the heartbeat round trips happen inside the pool's
//! sentinel where no wrapper can see them, so the estimator is re-stated
//! here and fed from both: heartbeat round trips (the pool's `probe_rtt`
//! deltas) and the time each checkout was held.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How a set spreads checkouts over its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Balance {
    /// Pick two endpoints at random and take the one with the lower load
    /// (peak-EWMA round trip × (pending + 1)): nearly as good as asking
    /// every endpoint, at the cost of two. The default.
    #[default]
    PowerOfTwo,
    /// Each endpoint in turn, whatever its load.
    RoundRobin,
    /// Uniformly at random, whatever its load.
    Random,
}

/// The round-trip estimate of a new endpoint, before any sample: optimistic,
/// so a new endpoint gets traffic and is measured soon.
const DEFAULT_RTT: Duration = Duration::from_millis(1);
/// How fast an estimate forgets a slow sample when nothing new arrives.
const DECAY: Duration = Duration::from_secs(5);

/// One endpoint's live load: checkouts pending on it and the round-trip
/// estimate.
#[derive(Debug)]
pub(crate) struct Load {
    pending: AtomicUsize,
    rtt: Mutex<PeakEwma>,
}

impl Load {
    pub(crate) fn new(now: Instant) -> Self {
        Load {
            pending: AtomicUsize::new(0),
            rtt: Mutex::new(PeakEwma {
                estimate_ns: DEFAULT_RTT.as_nanos() as f64,
                updated: now,
            }),
        }
    }

    /// Counts a checkout as pending, from the moment it is routed here
    /// (waiting included) until [`leave`](Self::leave).
    pub(crate) fn enter(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        self.rtt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(rtt, now);
    }

    /// The decayed round-trip estimate now.
    pub(crate) fn rtt(&self, now: Instant) -> Duration {
        let ns = self
            .rtt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .estimate(now);
        Duration::from_nanos(ns.min(u64::MAX as f64) as u64)
    }

    /// Round trip × (pending + 1): lower is better.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let ns = self
            .rtt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .estimate(now);
        ns * (self.pending() as f64 + 1.0)
    }
}

/// Peak-EWMA round trip, in nanoseconds.
#[derive(Debug)]
struct PeakEwma {
    estimate_ns: f64,
    updated: Instant,
}

impl PeakEwma {
    /// The weight the old estimate keeps after `elapsed`.
    fn keep(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (-elapsed / DECAY.as_secs_f64()).exp()
    }

    /// The estimate decayed towards zero for the time without a sample, as
    /// tower does: an endpoint nobody picks is retried now and then.
    fn estimate(&self, now: Instant) -> f64 {
        self.estimate_ns * self.keep(now)
    }

    fn observe(&mut self, rtt: Duration, now: Instant) {
        let sample = rtt.as_nanos().min(u64::MAX as u128) as f64;
        self.estimate_ns = if sample > self.estimate_ns {
            // The peak: a slowdown counts at once.
            sample
        } else {
            let keep = self.keep(now);
            self.estimate_ns * keep + sample * (1.0 - keep)
        };
        self.updated = now;
    }
}

/// Picks one of `items` that `eligible` admits, by `balance`; no allocation.
pub(crate) fn pick<'a, T>(
    balance: Balance,
    items: &'a [T],
    eligible: impl Fn(&T) -> bool,
    cost: impl Fn(&T) -> f64,
    turn: &AtomicUsize,
) -> Option<&'a T> {
    let n = items.iter().filter(|item| eligible(item)).count();
    let nth = |k: usize| items.iter().filter(|item| eligible(item)).nth(k);
    match n {
        0 => None,
        1 => nth(0),
        n => match balance {
            Balance::RoundRobin => nth(turn.fetch_add(1, Ordering::Relaxed) % n),
            Balance::Random => nth(fastrand::usize(..n)),
            Balance::PowerOfTwo => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(a)?, nth(b)?);
                Some(if cost(b) < cost(a) { b } else { a })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_two_never_picks_the_costliest_of_three() {
        let costs = [1.0, 2.0, 50.0];
        let turn = AtomicUsize::new(0);
        for _ in 0..1000 {
            let picked = pick(Balance::PowerOfTwo, &costs, |_| true, |c| *c, &turn).unwrap();
            assert!(*picked < 50.0);
        }
    }

    #[test]
    fn round_robin_takes_each_eligible_in_turn() {
        let items = [1, 2, 3, 4];
        let turn = AtomicUsize::new(0);
        let picked: Vec<i32> = (0..6)
            .map(|_| *pick(Balance::RoundRobin, &items, |i| *i != 3, |_| 0.0, &turn).unwrap())
            .collect();
        assert_eq!(picked, [1, 2, 4, 1, 2, 4]);
        assert!(pick(Balance::Random, &items, |_| false, |_| 0.0, &turn).is_none());
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let start = Instant::now();
        let mut ewma = PeakEwma {
            estimate_ns: 1_000_000.0,
            updated: start,
        };
        ewma.observe(Duration::from_millis(10), start);
        assert_eq!(
            ewma.estimate(start),
            10_000_000.0,
            "a slow sample counts at once"
        );
        let later = start + DECAY;
        ewma.observe(Duration::from_millis(1), later);
        let after = ewma.estimate(later);
        assert!(after < 10_000_000.0 && after > 1_000_000.0, "{after}");
        assert!(
            ewma.estimate(later + DECAY * 10) < 1_000.0,
            "forgets with time"
        );
    }
}
