//! Leak detection: a member borrowed for longer than `leak_threshold` is
//! reported once, with the call site of the `get()` that borrowed it.
//!
//! A guard kept forever (stored in a struct, moved into a task that never
//! ends, forgotten in a `Vec`) takes a member out of the pool for good, and
//! the symptom (checkouts timing out once every member is held) is far from
//! the cause. The call site is captured with `#[track_caller]` on
//! [`Pool::get`](super::Pool::get), which costs nothing more than passing a
//! pointer; a loan is written down only when the threshold is set. With it
//! off, a checkout pays one predictable branch and a return another.
//!
//! The sentinel sweeps the loans each tick; each leak is logged at WARN
//! once and counted in `Counters::leaks`. Bounded: one entry per borrowed
//! member, and there are at most `max_size` of those (a few more after a
//! shrink, while members borrowed before it are out).

use std::num::NonZeroU32;
use std::panic::Location;
use std::sync::Mutex;

/// One member out with a caller.
struct Loan {
    site: &'static Location<'static>,
    member: u64,
    since_ms: u64,
    reported: bool,
}

/// Loans of one pool; a slab so a loan's key stays valid while others come
/// and go.
pub(crate) struct Leaks {
    threshold_ms: Option<u64>,
    loans: Mutex<Slab>,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Option<Loan>>,
    free: Vec<u32>,
}

/// A loan's key, kept in its guard.
pub(crate) type LoanKey = NonZeroU32;

impl Leaks {
    pub(crate) fn new(threshold: Option<std::time::Duration>) -> Self {
        Leaks {
            threshold_ms: threshold.map(super::time::millis),
            loans: Mutex::new(Slab::default()),
        }
    }

    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.threshold_ms.is_some()
    }

    fn slab(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.loans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a loan down; its key goes into the guard.
    #[cold]
    pub(crate) fn lend(
        &self,
        site: &'static Location<'static>,
        member: u64,
        now_ms: u64,
    ) -> Option<LoanKey> {
        let loan = Loan {
            site,
            member,
            since_ms: now_ms,
            reported: false,
        };
        let mut slab = self.slab();
        let index = match slab.free.pop() {
            Some(index) => {
                slab.entries[index as usize] = Some(loan);
                index
            }
            None => {
                let index = u32::try_from(slab.entries.len()).ok()?;
                slab.entries.push(Some(loan));
                index
            }
        };
        NonZeroU32::new(index.checked_add(1)?)
    }

    /// The guard came back (returned or detached).
    #[cold]
    pub(crate) fn end(&self, key: LoanKey) {
        let index = key.get() - 1;
        let mut slab = self.slab();
        if let Some(entry) = slab.entries.get_mut(index as usize) {
            if entry.take().is_some() {
                slab.free.push(index);
            }
        }
    }

    /// Logs each loan past the threshold once; returns how many were new.
    pub(crate) fn sweep(&self, pool: &str, now_ms: u64) -> u64 {
        let Some(threshold) = self.threshold_ms else {
            return 0;
        };
        let mut found = 0;
        let mut slab = self.slab();
        for loan in slab.entries.iter_mut().flatten() {
            let held_ms = now_ms.saturating_sub(loan.since_ms);
            if !loan.reported && held_ms >= threshold {
                loan.reported = true;
                found += 1;
                tracing::warn!(
                    pool = %pool,
                    member = loan.member,
                    held_ms,
                    threshold_ms = threshold,
                    borrowed_at = %loan.site,
                    "a member has been borrowed longer than leak_threshold; is its guard kept or forgotten?"
                );
            }
        }
        found
    }

    /// Loans open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.slab().entries.iter().flatten().count()
    }
}

impl<M: crate::Manager> super::shared::Shared<M> {
    /// A checkout succeeded and leak detection is on: the loan is written
    /// down with the call site of its `get()`. Called by `Shared::lend`
    /// after its own test of [`Leaks::is_on`], and out of line, so that with
    /// detection off a checkout pays that test and nothing else (the guard
    /// is not moved through a call).
    #[cold]
    #[inline(never)]
    pub(crate) fn note_loan(&self, id: u64, site: &'static Location<'static>) -> Option<LoanKey> {
        self.leaks.lend(site, id, self.clock.refresh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loan_past_the_threshold_is_reported_once_and_keys_are_reused() {
        let leaks = Leaks::new(Some(std::time::Duration::from_millis(100)));
        let here = Location::caller();
        let a = leaks.lend(here, 1, 0).unwrap();
        let b = leaks.lend(here, 2, 50).unwrap();
        assert_eq!(leaks.sweep("p", 99), 0);
        assert_eq!(leaks.sweep("p", 100), 1);
        assert_eq!(leaks.sweep("p", 1000), 1, "b's turn");
        assert_eq!(leaks.sweep("p", 2000), 0, "each once");
        leaks.end(a);
        leaks.end(a);
        let c = leaks.lend(here, 3, 0).unwrap();
        assert_eq!(c, a, "a's slot reused");
        leaks.end(b);
        leaks.end(c);
        assert_eq!(leaks.open(), 0);
        assert!(!Leaks::new(None).is_on());
    }
}
