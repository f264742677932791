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
//! The runtime is kept as its [`Id`]'s number in an atomic, so the check is
//! one thread-local read of the current handle and one load, without the
//! pool's lock.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::runtime::{Handle, Id};

/// The sentinel's runtime, or 0 before it first starts.
pub(crate) struct SentinelRuntime(AtomicU64);

impl SentinelRuntime {
    pub(crate) fn new() -> Self {
        SentinelRuntime(AtomicU64::new(0))
    }

    /// Records the runtime a sentinel was just spawned on.
    pub(crate) fn set(&self, runtime: &Handle) {
        self.0.store(number(runtime.id()), Ordering::Relaxed);
    }

    /// Whether a queued caller may leave its deadline to the sentinel: it
    /// runs on the sentinel's runtime, or on no tokio runtime at all (it has
    /// no timer of its own to use then, and the old rule is the best there is).
    #[inline]
    pub(crate) fn drives_caller(&self) -> bool {
        match Handle::try_current() {
            Ok(current) => number(current.id()) == self.0.load(Ordering::Relaxed),
            Err(_) => true,
        }
    }
}

/// An `Id` as a number: tokio exposes it only through `Display` and
/// `Hash`, and its `Hash` writes the one integer it wraps.
fn number(id: Id) -> u64 {
    let mut capture = Capture(0);
    id.hash(&mut capture);
    // 0 means "no runtime yet"; an id that hashed to it still compares
    // equal to itself.
    capture.0 | 1 << 63
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
}
