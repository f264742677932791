//! A loom model of the member handoff: the idle set, the waiter queue, a
//! return to the oldest waiter, a cancelled waiter, the sentinel's claim.
//! It drives the pool's real transitions and its real handoff channel
//! (`livepool::pool::loom_model`, built on loom's Mutex and Arc under
//! `--cfg livepool_loom`) from two or three threads, and loom runs every
//! interleaving of their lock and channel operations (up to
//! `LOOM_MAX_PREEMPTIONS` preemptions). Checked in every one:
//!
//! 1. every member has one holder: the ledger's own assertion after each
//!    transition (`size == idle + in_use + probing + connecting + ...`),
//!    and at the end every member is idle, no place is held, no waiter is
//!    left waiting;
//! 2. a caller is never handed a member being probed or one that failed its
//!    probe (`Lent::accept`);
//! 3. `size <= max_size` (the ledger's assertion);
//! 4. a cancelled checkout leaks no member and no place: what was sent to
//!    it goes to the next waiter, who gets it (loom reports a deadlock if
//!    nobody wakes a waiter), and the counts settle.
//!
//! Two deliberately broken copies must fail the model (`#[should_panic]`):
//! a cancel that looks for a grant and closes its channel as two steps
//! (a grant sent in between is lost), and a sentinel that probes a member
//! where it lies in the idle set instead of claiming it.
//!
//! Run with:
//! `RUSTFLAGS="--cfg livepool_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_handoff`
#![cfg(livepool_loom)]

use livepool::pool::loom_model::{Checkout, Granted, Lent, Model};
use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;

/// A checkout that takes whatever the pool gives (a member, a place to
/// connect with, or a place in the queue), uses the member, returns it.
fn borrow_and_return(model: &Model, name: &'static str) {
    let mut member = match model.checkout() {
        Checkout::Member(member) => member,
        Checkout::Connect(place) => model.connect(place),
        Checkout::Wait(waiter) => wait_for_member(model, waiter, name),
    };
    member.accept(name);
    model.give_back(member);
}

fn wait_for_member(model: &Model, waiter: livepool::pool::loom_model::Waiter, name: &str) -> Lent {
    match block_on(waiter.wait()) {
        Granted::Member(member) => member,
        Granted::Capacity(place) => model.connect(place),
        Granted::Nothing => panic!("{name} was woken with nothing"),
    }
}

/// Takes the one idle member for caller `a`.
fn lend_the_member(model: &Model) -> Lent {
    let Checkout::Member(mut member) = model.checkout() else {
        panic!("the idle member was not lent");
    };
    member.accept("a");
    member
}

fn queue(model: &Model) -> livepool::pool::loom_model::Waiter {
    match model.checkout() {
        Checkout::Wait(waiter) => waiter,
        _ => panic!("a full pool did not queue the caller"),
    }
}

/// Everything settled: every member idle, no place held, nobody waiting.
fn settled(model: &Model, max_size: usize) {
    let c = model.counts();
    assert_eq!(
        (c.in_use, c.probing, c.connecting, c.closing, c.returning),
        (0, 0, 0, 0, 0),
        "a place is still held: {c:?}"
    );
    assert_eq!(c.size, c.idle, "a place has no holder: {c:?}");
    assert!(c.size <= max_size, "above max_size: {c:?}");
    assert_eq!(c.live_waiters, 0, "a caller still waits: {c:?}");
}

#[test]
fn a_returned_member_goes_to_the_oldest_waiter() {
    loom::model(|| {
        let model = Arc::new(Model::new(1, 1));
        let a = lend_the_member(&model);
        let (b, c) = (queue(&model), queue(&model));
        let threads = [(b, "b"), (c, "c")].map(|(waiter, name)| {
            let model = Arc::clone(&model);
            thread::spawn(move || {
                let mut member = wait_for_member(&model, waiter, name);
                member.accept(name);
                model.give_back(member);
            })
        });
        model.give_back(a);
        for t in threads {
            t.join().unwrap();
        }
        settled(&model, 1);
        assert_eq!(model.idle_histories(), vec![(0, vec!["a", "b", "c"])]);
    });
}

/// Caller `a` returns the one member while `b` (queued first) cancels:
/// whether `b` was sent the member before it cancelled or not, the member
/// ends with `c`, queued behind it. (`c` looks once both are done rather
/// than blocking: a waiter left blocked forever is a loom deadlock, which
/// aborts instead of failing the broken copy's test.)
fn cancelled_waiter(broken: bool) {
    loom::model(move || {
        let model = Arc::new(Model::new(1, 1));
        let a = lend_the_member(&model);
        let (b, c) = (queue(&model), queue(&model));
        let canceller = {
            let model = Arc::clone(&model);
            thread::spawn(move || {
                if broken {
                    b.broken_cancel(&model)
                } else {
                    b.cancel(&model)
                }
            })
        };
        model.give_back(a);
        canceller.join().unwrap();
        let Some(Granted::Member(mut member)) = c.try_granted() else {
            panic!("the member was lost: c, the oldest waiter left, got nothing");
        };
        member.accept("c");
        model.give_back(member);
        settled(&model, 1);
        assert_eq!(model.idle_histories(), vec![(0, vec!["a", "c"])]);
    });
}

#[test]
fn a_cancelled_waiter_passes_the_member_on() {
    cancelled_waiter(false);
}

#[test]
#[should_panic(expected = "the member was lost")]
fn broken_cancel_loses_the_member() {
    cancelled_waiter(true);
}

#[test]
fn a_cancelled_waiter_passes_a_freed_place_on() {
    loom::model(|| {
        let model = Arc::new(Model::new(1, 1));
        let a = lend_the_member(&model);
        let (b, c) = (queue(&model), queue(&model));
        let canceller = {
            let model = Arc::clone(&model);
            thread::spawn(move || b.cancel(&model))
        };
        let waiter = {
            let model = Arc::clone(&model);
            thread::spawn(move || {
                let mut member = wait_for_member(&model, c, "c");
                member.accept("c");
                model.give_back(member);
            })
        };
        // Returned broken: its place is freed, to the oldest waiter.
        model.evict(a);
        canceller.join().unwrap();
        waiter.join().unwrap();
        settled(&model, 1);
        assert_eq!(model.idle_histories(), vec![(1, vec!["c"])]);
    });
}

/// The sentinel claims the coldest of two idle members and its probe fails
/// (or passes) while two callers borrow: neither is handed the member under
/// probe, a caller left without one gets the freed place or the other
/// member, and everything settles.
fn sentinel_against_checkouts(probe_passes: bool) {
    loom::model(move || {
        let model = Arc::new(Model::new(2, 2));
        let callers = ["x", "y"].map(|name| {
            let model = Arc::clone(&model);
            thread::spawn(move || borrow_and_return(&model, name))
        });
        if let Some(member) = model.sentinel_claim() {
            if probe_passes {
                model.probe_passed(member);
            } else {
                model.probe_failed(member);
            }
        }
        for t in callers {
            t.join().unwrap();
        }
        settled(&model, 2);
    });
}

#[test]
fn a_probed_member_is_never_handed_out_probe_fails() {
    sentinel_against_checkouts(false);
}

#[test]
fn a_probed_member_is_never_handed_out_probe_passes() {
    sentinel_against_checkouts(true);
}

#[test]
#[should_panic(expected = "while it was being probed")]
fn broken_sentinel_probing_in_place_is_caught() {
    loom::model(|| {
        let model = Arc::new(Model::new(1, 1));
        let caller = {
            let model = Arc::clone(&model);
            thread::spawn(move || borrow_and_return(&model, "x"))
        };
        model.broken_probe_in_place(true);
        caller.join().unwrap();
        settled(&model, 1);
    });
}
