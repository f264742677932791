//! Which runtime the sentinel was spawned on, so a queued checkout knows
//! whether it may leave its deadline to the sentinel.
//!
//! A checkout queued on the fast path carries no timer: the sentinel sends
//! it `TimedOut` when its `wait_timeout` runs out. That holds only while
//! something drives the sentinel. A caller on the sentinel's own runtime is
//! such a driver (while it awaits, its runtime runs). A caller on another
//! runtime is not: the sentinel's runtime may be a current-thread runtime
//! whose `block_on` has returned, alive but never polled again, and a wait
//! left to its sentinel would never end. So a caller on any other runtime
//! waits on the slow path, under a timer of its own.
//!
//! Only a current-thread runtime can be alive and never driven: a
//! multi-thread runtime's workers run its tasks whoever awaits. So for a
//! sentinel on a multi-thread runtime the check is one load; for one on a
//! current-thread runtime, the runtime is kept as its [`Id`]'s number and
//! compared with the caller's (a thread-local read of the current handle).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::runtime::{Handle, Id, RuntimeFlavor};

/// The sentinel's current-thread runtime, [`DRIVEN_BY_ITS_WORKERS`] for a
/// multi-thread one, or 0 before it first starts.
pub(crate) struct SentinelRuntime(AtomicU64);

/// A multi-thread runtime: its workers drive the sentinel while it lives.
const DRIVEN_BY_ITS_WORKERS: u64 = u64::MAX;

impl SentinelRuntime {
    pub(crate) fn new() -> Self {
        SentinelRuntime(AtomicU64::new(0))
    }

    /// Records the runtime a sentinel was just spawned on.
    pub(crate) fn set(&self, runtime: &Handle) {
        let home = match runtime.runtime_flavor() {
            RuntimeFlavor::CurrentThread => number(runtime.id()),
            _ => DRIVEN_BY_ITS_WORKERS,
        };
        self.0.store(home, Ordering::Relaxed);
    }

    /// Whether a queued caller may leave its deadline to the sentinel: it
    /// runs on the sentinel's runtime, or on no tokio runtime at all (it has
    /// no timer of its own to use then, and the old rule is the best there is).
    #[inline]
    pub(crate) fn drives_caller(&self) -> bool {
        let home = self.0.load(Ordering::Relaxed);
        if home == DRIVEN_BY_ITS_WORKERS {
            return true;
        }
        match Handle::try_current() {
            Ok(current) => number(current.id()) == home,
            Err(_) => true,
        }
    }
}

/// An `Id` as a number: tokio exposes it only through `Display` and
/// `Hash`, and its `Hash` writes the one integer it wraps.
fn number(id: Id) -> u64 {
    let mut capture = Capture(0);
    id.hash(&mut capture);
    // 0 means "no runtime yet" and all ones "a multi-thread runtime": the
    // top bit keeps every id clear of 0, and the one id that would be all
    // ones shares its number with its neighbour (ids count up from 1).
    let n = capture.0 | 1 << 63;
    if n == DRIVEN_BY_ITS_WORKERS { n - 1 } else { n }
}

/// A `Hasher` that keeps the integer written to it (or, should `Id`'s
/// `Hash` ever write bytes, folds them), so equal ids give equal numbers.
struct Capture(u64);

impl Hasher for Capture {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::SentinelRuntime;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn only_the_sentinels_runtime_drives_it() {
        let (a, b) = (runtime(), runtime());
        let home = SentinelRuntime::new();
        home.set(a.handle());
        assert!(a.block_on(async { home.drives_caller() }));
        assert!(!b.block_on(async { home.drives_caller() }));
        // Outside any runtime there is no timer to fall back on.
        assert!(home.drives_caller());
    }

    #[test]
    fn a_multi_thread_runtime_drives_its_sentinel_for_every_caller() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let home = SentinelRuntime::new();
        home.set(multi.handle());
        assert!(runtime().block_on(async { home.drives_caller() }));
    }
}
