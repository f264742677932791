//! The pool's life as a service sees it (issue 10): hooks on connect,
//! acquire and release; resizing while callers hold members; draining at
//! shutdown; waiting at startup until the backend is there; and the
//! cumulative wait time. Timing runs on virtual time.

mod support;

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use livepool::{BuildError, Cause, Error, EvictReason, Hook, HookFailure, Phase, Pool, Verdict};
use support::{FakeConn, FakeError, FakeManager, assert_consistent};

fn counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

fn evicted(pool: &Pool<FakeManager>, reason: EvictReason) -> u64 {
    pool.status().counters.evicted.get(reason)
}

/// Lets spawned work (refills, returns through `after_release`) run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

// ---- after_connect -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn after_connect_runs_on_every_new_member_before_it_is_admitted() {
    let manager = FakeManager::new();
    let calls = counter();
    let seen = Arc::clone(&calls);
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(2)
        .after_connect(move |conn: &mut FakeConn, meta| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                assert_eq!(meta.uses, 0, "a new member was never used");
                tokio::time::sleep(Duration::from_millis(5)).await;
                conn.session = Some("search_path=app".into());
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
        .build(manager.clone())
        .unwrap();
    // The background refill's members (min_idle) ...
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.status().idle, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // ... and a checkout's own connect alike.
    let held: Vec<_> = [pool.get().await.unwrap(), pool.get().await.unwrap()].into();
    let third = pool.get().await.unwrap();
    for conn in held.iter().chain([&third]) {
        assert_eq!(conn.session.as_deref(), Some("search_path=app"));
    }
    // The refill tops the idle set up again; once its hooks have run, every
    // connection made has been through the hook.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), manager.connects());
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn a_failing_after_connect_never_hands_out_its_member() {
    let manager = FakeManager::new();
    let failures_left = Arc::new(AtomicU64::new(2));
    let left = Arc::clone(&failures_left);
    let pool = Pool::builder()
        .max_size(2)
        .after_connect(move |conn: &mut FakeConn, _| {
            let left = Arc::clone(&left);
            Box::pin(async move {
                if left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(FakeError("relation \"app\" does not exist").into());
                }
                conn.session = Some("ok".into());
                Ok(())
            })
        })
        .build(manager.clone())
        .unwrap();
    let conn = pool.get().await.unwrap();
    assert_eq!(
        conn.session.as_deref(),
        Some("ok"),
        "got a member whose hook failed"
    );
    assert_eq!(manager.connects(), 3);
    assert_eq!(evicted(&pool, EvictReason::HookFailed), 2);
    assert_eq!(manager.open(), 1, "the refused connections were closed");
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn an_after_connect_that_always_fails_times_the_checkout_out_with_a_typed_cause() {
    let pool = Pool::builder()
        .wait_timeout(Duration::from_millis(500))
        .after_connect(|_: &mut FakeConn, _| {
            Box::pin(async { Err(FakeError("permission denied for schema app").into()) })
        })
        .build(FakeManager::new())
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(
        started.elapsed() <= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::Timeout {
            phase: Phase::Hook(Hook::AfterConnect),
            cause: Some(cause),
            ..
        } if matches!(
            **cause,
            Cause::Hook {
                hook: Hook::AfterConnect,
                failure: Some(HookFailure::Error(_)),
            }
        ) => {}
        other => panic!("unexpected: {other:?}"),
    }
    // Each level says its own part; the hook's error is reached as a source.
    let cause = err.source().expect("the hook failure");
    assert_eq!(cause.to_string(), "the after_connect hook failed");
    let root = cause.source().expect("the hook's own error");
    assert_eq!(root.to_string(), "permission denied for schema app");
    assert!(!err.to_string().contains("permission denied"), "{err}");
    assert_eq!(pool.status().in_use, 0);
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn a_hung_after_connect_times_out_as_its_own_failure() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .wait_timeout(Duration::from_secs(2))
        .hook_timeout(Duration::from_millis(100))
        .after_connect(|_: &mut FakeConn, _| Box::pin(std::future::pending()))
        .build(manager.clone())
        .unwrap();
    let err = pool.get().await.unwrap_err();
    match err.cause() {
        Some(Cause::Hook {
            hook: Hook::AfterConnect,
            failure: Some(HookFailure::TimedOut(limit)),
        }) => assert_eq!(*limit, Duration::from_millis(100)),
        other => panic!("unexpected cause: {other:?}"),
    }
    let status = pool.status();
    assert!(
        status.counters.evicted.get(EvictReason::HookFailed) >= 2,
        "{status:?}"
    );
    assert_eq!(status.in_use, 0);
    assert_eq!(manager.open(), 0, "every hung member was closed");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_hook_is_contained_and_typed() {
    let pool = Pool::builder()
        .wait_timeout(Duration::from_millis(300))
        .after_connect(|_: &mut FakeConn, _| Box::pin(async { panic!("bug in the hook") }))
        .build(FakeManager::new())
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err.cause(),
            Some(Cause::Hook {
                failure: Some(HookFailure::Panicked),
                ..
            })
        ),
        "{err:?}"
    );
}

// ---- before_acquire ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn before_acquire_refusing_evicts_and_the_caller_gets_the_next() {
    let manager = FakeManager::new();
    let refuse = Arc::new(AtomicU64::new(u64::MAX));
    let refused_id = Arc::clone(&refuse);
    let pool = Pool::builder()
        .max_size(3)
        .before_acquire(move |conn: &mut FakeConn, _| {
            let refuse = refused_id.load(Ordering::SeqCst);
            Box::pin(async move {
                Ok(if conn.id == refuse {
                    Verdict::Refuse
                } else {
                    Verdict::Keep
                })
            })
        })
        .build(manager.clone())
        .unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let (ida, idb) = (a.id, b.id);
    drop(b);
    drop(a); // LIFO: `a` is next
    refuse.store(ida, Ordering::SeqCst);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, idb, "the caller got the next member");
    assert_eq!(evicted(&pool, EvictReason::HookRefused), 1);
    assert_eq!(manager.open(), 1);
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn before_acquire_failing_or_timing_out_evicts_and_a_new_member_is_connected() {
    let manager = FakeManager::new();
    let mode = counter(); // 0 keep, 1 error, 2 hang
    let m = Arc::clone(&mode);
    let pool = Pool::builder()
        .hook_timeout(Duration::from_millis(50))
        .before_acquire(move |_: &mut FakeConn, _| {
            let mode = m.load(Ordering::SeqCst);
            Box::pin(async move {
                match mode {
                    0 => Ok(Verdict::Keep),
                    1 => Err(FakeError("ROLLBACK failed").into()),
                    _ => std::future::pending().await,
                }
            })
        })
        .build(manager.clone())
        .unwrap();
    let first = pool.get().await.unwrap().id;
    mode.store(1, Ordering::SeqCst);
    let second = pool.get().await.unwrap().id; // new members skip before_acquire
    assert_ne!(second, first);
    mode.store(2, Ordering::SeqCst);
    let third = pool.get().await.unwrap().id;
    assert_ne!(third, second);
    assert_eq!(evicted(&pool, EvictReason::HookFailed), 2);
    assert_eq!(manager.connects(), 3);
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn hooks_see_the_members_age_idle_time_and_use_count() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let pool = Pool::builder()
        .validate_after(Duration::from_secs(3600))
        .before_acquire(move |_: &mut FakeConn, meta| {
            log.lock().unwrap().push(meta);
            Box::pin(async { Ok(Verdict::Keep) })
        })
        .build(FakeManager::new())
        .unwrap();
    drop(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(pool.get().await.unwrap());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].uses, seen[1].uses), (1, 2));
    assert!(seen[0].idle_for >= Duration::from_secs(5), "{seen:?}");
    assert!(seen[1].idle_for >= Duration::from_secs(2), "{seen:?}");
    assert!(seen[1].idle_for < Duration::from_secs(3), "{seen:?}");
    assert!(seen[1].age >= Duration::from_secs(7), "{seen:?}");
}

// ---- after_release -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn after_release_refusing_evicts_the_member() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .after_release(|_: &mut FakeConn, meta| {
            Box::pin(async move {
                Ok(if meta.uses >= 2 {
                    Verdict::Refuse
                } else {
                    Verdict::Keep
                })
            })
        })
        .build(manager.clone())
        .unwrap();
    let id = pool.get().await.unwrap().id;
    settle().await;
    assert_eq!(pool.status().idle, 1, "kept after its first use");
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, id);
    drop(conn);
    settle().await;
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::HookRefused),
        1,
        "{status:?}"
    );
    assert_eq!((status.size, status.idle, status.returning), (0, 0, 0));
    assert_eq!(manager.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_member_returning_through_after_release_is_never_handed_out_meanwhile() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .after_release(|conn: &mut FakeConn, _| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(1)).await; // a ROLLBACK, say
                conn.session = None;
                Ok(Verdict::Keep)
            })
        })
        .build(manager.clone())
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.session = Some("in a transaction".into());
    let id = conn.id;
    drop(conn);
    settle().await;
    let status = pool.status();
    assert_eq!(
        (status.returning, status.idle, status.size),
        (1, 0, 1),
        "{status:?}"
    );
    assert_consistent(&status);
    let other = pool.get().await.unwrap();
    assert_ne!(
        other.id, id,
        "a member still in after_release was handed out"
    );
    drop(other);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = pool.status();
    assert_eq!((status.returning, status.idle), (0, 2), "{status:?}");
    // The reset member comes back clean.
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    assert!(a.session.is_none() && b.session.is_none());
}

#[tokio::test(start_paused = true)]
async fn after_release_failing_or_timing_out_evicts_the_member() {
    let manager = FakeManager::new();
    let mode = counter();
    let m = Arc::clone(&mode);
    let pool = Pool::builder()
        .hook_timeout(Duration::from_millis(100))
        .after_release(move |_: &mut FakeConn, _| {
            let mode = m.load(Ordering::SeqCst);
            Box::pin(async move {
                match mode {
                    0 => Err(FakeError("connection is in a failed transaction").into()),
                    _ => std::future::pending().await,
                }
            })
        })
        .build(manager.clone())
        .unwrap();
    drop(pool.get().await.unwrap());
    settle().await;
    mode.store(1, Ordering::SeqCst);
    drop(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::HookFailed),
        2,
        "{status:?}"
    );
    assert_eq!((status.size, status.returning), (0, 0), "{status:?}");
    assert_eq!(manager.open(), 0);
}

// ---- resize --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn growing_serves_queued_callers_at_once() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .wait_timeout(Duration::from_secs(10))
        .build(manager.clone())
        .unwrap();
    let held = [
        pool.get_owned().await.unwrap(),
        pool.get_owned().await.unwrap(),
    ];
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get_owned().await.map(|c| c.id) })
        })
        .collect();
    settle().await;
    assert_eq!(pool.status().waiters, 3);
    let started = tokio::time::Instant::now();
    pool.resize(5).unwrap();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    let status = pool.status();
    assert_eq!(
        (status.max_size, status.size, status.in_use),
        (5, 5, 2),
        "{status:?}"
    );
    drop(held);
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn shrinking_closes_idle_members_first_and_never_takes_one_from_a_caller() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(6)
        .wait_timeout(Duration::from_secs(10))
        .build(manager.clone())
        .unwrap();
    let mut all = Vec::new();
    for _ in 0..6 {
        all.push(pool.get().await.unwrap());
    }
    let mut held: Vec<_> = all.drain(..4).collect();
    drop(all); // two idle
    assert_eq!(pool.status().idle, 2);

    pool.resize(2).unwrap();
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::Resized),
        2,
        "{status:?}"
    );
    assert_eq!(
        (status.max_size, status.idle, status.in_use),
        (2, 0, 4),
        "{status:?}"
    );
    assert_eq!(manager.open(), 4, "members held by callers stay open");
    for conn in &mut held {
        conn.session = Some("still mine".into()); // each guard still works
    }
    // A caller queued meanwhile gets nothing until the pool is within its max.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get_owned().await.map(|c| c.id) })
    };
    settle().await;
    for (returned, conn) in (1..).zip(held.drain(..2)) {
        drop(conn);
        settle().await;
        assert_eq!(
            manager.open(),
            4 - returned,
            "returned above the max: closed"
        );
        assert!(
            !waiter.is_finished(),
            "a member above the new max was handed on"
        );
    }
    assert_eq!(manager.open(), 2);
    assert_eq!(evicted(&pool, EvictReason::Resized), 4);
    // Within the max again: the next member returned goes to the waiter.
    let kept = held.remove(0).id;
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got, kept);
    assert!(manager.open() <= 2);
    drop(held);
    settle().await;
    let status = pool.status();
    assert!(status.size <= 2, "{status:?}");
    assert_consistent(&status);
}

#[tokio::test(start_paused = true)]
async fn resizing_under_load_never_opens_more_than_the_new_max_once_callers_return() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(8)
        .wait_timeout(Duration::from_secs(30))
        .build(manager.clone())
        .unwrap();
    let workers: Vec<_> = (0..12)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..20u64 {
                    let conn = pool.get().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1 + (i + round) % 7)).await;
                    drop(conn);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    pool.resize(3).unwrap();
    // Once every member borrowed before the shrink has come back, the pool
    // stays within the new max for good.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut max_after = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        max_after = max_after.max(manager.open());
        let status = pool.status();
        assert!(status.size <= 3, "{status:?}");
        assert_consistent(&status);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(max_after <= 3, "{max_after} open after the shrink settled");
    pool.resize(6).unwrap();
    assert_eq!(pool.status().max_size, 6);
}

#[test]
fn resize_is_validated_as_at_build() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = Pool::builder()
            .max_size(4)
            .min_idle(2)
            .build(FakeManager::new())
            .unwrap();
        assert_eq!(pool.resize(0), Err(BuildError::MaxSize(0)));
        assert_eq!(
            pool.resize(1),
            Err(BuildError::MinIdleAboveMaxSize {
                min_idle: 2,
                max_size: 1
            })
        );
        assert!(pool.resize(usize::MAX).is_err());
        assert_eq!(
            pool.status().max_size,
            4,
            "a refused resize changes nothing"
        );
    });
}

// ---- drain ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn drain_waits_for_a_member_returned_before_the_deadline() {
    let manager = FakeManager::new();
    let pool = Pool::builder().build(manager.clone()).unwrap();
    drop(pool.get().await.unwrap()); // one idle
    let conn = pool.get_owned().await.unwrap();
    let _idle_too = pool.get().await.unwrap();
    drop(_idle_too);
    let caller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(conn);
    });
    let started = tokio::time::Instant::now();
    let report = pool.drain(Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(manager.open(), 0);
    assert!(matches!(pool.get().await, Err(Error::Closed)));
    caller.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn drain_reports_a_member_still_borrowed_at_the_deadline_and_closes_it_on_return() {
    let manager = FakeManager::new();
    let pool = Pool::builder().build(manager.clone()).unwrap();
    let conn = pool.get_owned().await.unwrap();
    let queued = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.try_get().await.map(|c| c.id) })
    };
    let report = pool.drain(Duration::from_secs(1)).await;
    assert!(!report.is_complete());
    assert_eq!((report.in_use, report.closing), (1, 0), "{report:?}");
    assert!(report.waited >= Duration::from_secs(1));
    assert!(queued.await.unwrap().is_err(), "lending stopped");
    assert_eq!(manager.open(), 1, "the borrowed member was not taken");
    drop(conn);
    assert_eq!(manager.open(), 0, "closed when it came back");
    let status = pool.status();
    assert_eq!(status.size, 0, "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn drain_reports_close_work_still_running() {
    let manager = FakeManager::new();
    manager.set_close_delay(Duration::from_secs(5));
    let pool = Pool::builder()
        .close_timeout(Duration::from_secs(10))
        .build(manager.clone())
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.in_flight = true; // a cancel request to send when it closes
    drop(conn);
    let report = pool.drain(Duration::from_secs(1)).await;
    assert_eq!((report.in_use, report.closing), (0, 1), "{report:?}");
    let report = pool.drain(Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report:?}");
}

// ---- ready ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn ready_waits_until_min_idle_members_are_connected() {
    let manager = FakeManager::new();
    manager.set_connect_delay(Duration::from_millis(100));
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(3)
        .build(manager.clone())
        .unwrap();
    pool.ready(Duration::from_secs(5)).await.unwrap();
    let status = pool.status();
    assert!(status.idle >= 3, "{status:?}");
    assert!(status.size <= 5);
    assert_consistent(&status);
}

#[tokio::test(start_paused = true)]
async fn ready_fails_at_once_on_a_permanent_connect_error() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    manager.set_permanent(true);
    let pool = Pool::builder().min_idle(2).build(manager.clone()).unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.ready(Duration::from_secs(30)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, Error::Permanent(FakeError("connection refused"))),
        "{err:?}"
    );
    assert_eq!(err.source().unwrap().to_string(), "connection refused");
}

#[tokio::test(start_paused = true)]
async fn ready_times_out_with_the_last_cause() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    let pool = Pool::builder().min_idle(2).build(manager.clone()).unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.ready(Duration::from_secs(2)).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    match &err {
        Error::NotReady {
            connected: 0,
            wanted: 2,
            waited,
            cause: Some(cause),
        } if matches!(**cause, Cause::Connect(FakeError("connection refused"))) => {
            assert_eq!(*waited, Duration::from_secs(2))
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(err.to_string(), "0 of 2 members connected within 2s");
    assert_eq!(err.source().unwrap().to_string(), "connect failed");
    // The backend comes back: ready again succeeds.
    manager.set_connect_fails(false);
    pool.ready(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ready_with_min_idle_zero_still_proves_one_connection() {
    let manager = FakeManager::new();
    let pool = Pool::builder().build(manager.clone()).unwrap();
    pool.ready(Duration::from_secs(1)).await.unwrap();
    assert_eq!(pool.status().idle, 1);
    assert_eq!(manager.connects(), 1);
}

// ---- wait time -----------------------------------------------------------

// Real time: wait time is a statistic on the system's monotonic clock, not
// tokio's (see `wait_clock.rs`), so a paused test clock would not move it.
#[tokio::test]
async fn status_adds_up_the_time_callers_spent_queued() {
    let pool = Pool::builder()
        .max_size(1)
        .wait_timeout(Duration::from_secs(10))
        .build(FakeManager::new())
        .unwrap();
    drop(pool.get().await.unwrap());
    assert_eq!(
        pool.status().counters.wait_time,
        Duration::ZERO,
        "no wait, no time"
    );
    let held = pool.get().await.unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { drop(pool.get().await.unwrap()) })
        })
        .collect();
    let hold = Duration::from_millis(300);
    tokio::time::sleep(hold).await;
    drop(held);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let counters = pool.status().counters;
    assert_eq!(counters.waits, 2);
    // Both queued for the 300 ms hold (then served one after the other at
    // once); generous slack above for a loaded machine.
    assert!(
        counters.wait_time >= 2 * hold && counters.wait_time < 2 * hold + Duration::from_secs(3),
        "{:?}",
        counters.wait_time
    );
}
