//! The promises of issue 9 and 14 that the pool broke before: it must not die
//! with the runtime it was built in, no duration may overflow, a retry loop
//! must respect the caller's deadline and back off, permanent errors fail
//! fast, close work holds its place, and errors read once.

mod paused_clock;
mod support;

use std::error::Error as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use livepool::{Cause, Error, EvictReason, Phase, Pool};
use paused_clock::paused_runtime;
use support::{Death, FakeError, FakeManager, assert_consistent, capture_logs};

#[test]
fn a_pool_outlives_the_runtime_it_was_built_in() {
    let manager = FakeManager::new();
    let runtime_a = paused_runtime();
    let pool = runtime_a.block_on(async {
        let pool = Pool::builder()
            .max_size(1)
            .wait_timeout(Duration::from_millis(300))
            .build(manager.clone())
            .unwrap();
        drop(pool.get().await.unwrap());
        pool
    });
    drop(runtime_a);

    let runtime_b = paused_runtime();
    runtime_b.block_on(async {
        let held = pool.get().await.expect("a checkout in a new runtime");
        // The pool is full: this one queues, and only a sentinel times it out.
        let started = tokio::time::Instant::now();
        let queued = tokio::time::timeout(Duration::from_secs(5), pool.get())
            .await
            .expect("a queued get() must not hang when the sentinel's runtime is gone");
        assert!(
            matches!(
                queued,
                Err(Error::Timeout {
                    phase: Phase::Waiting,
                    ..
                })
            ),
            "{queued:?}"
        );
        // Within wait_timeout plus one sentinel tick (at most 250 ms).
        assert!(
            started.elapsed() <= Duration::from_millis(300 + 250),
            "{:?}",
            started.elapsed()
        );
        drop(held);
        let status = pool.status();
        assert_eq!(status.counters.sentinel_restarts, 1, "{status:?}");
        // The member made under runtime A was replaced, not handed out.
        assert_eq!(
            status.counters.evicted.get(EvictReason::RuntimeGone),
            1,
            "{status:?}"
        );
        assert_consistent(&status);
    });
}

#[test]
fn a_waiter_queued_when_the_sentinel_dies_is_still_timed_out() {
    let manager = FakeManager::new();
    let (pool_tx, pool_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    // Runtime A lives on its own thread and builds the pool there.
    let a = std::thread::spawn({
        let manager = manager.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let pool = runtime.block_on(async {
                Pool::builder()
                    .max_size(1)
                    .wait_timeout(Duration::from_secs(2))
                    .build(manager)
                    .unwrap()
            });
            pool_tx.send(pool).unwrap();
            // Keep the runtime (and its sentinel) alive until told.
            let _ = stop_rx.recv();
            drop(runtime);
        }
    });
    let pool = pool_rx.recv().unwrap();
    let runtime_b = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime_b.block_on(async {
        let held = pool.get().await.unwrap();
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move {
                let started = std::time::Instant::now();
                let result = pool.get().await.map(|_| ());
                (result, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(()).unwrap(); // runtime A, and the sentinel in it, end now
        let (result, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter must not hang")
            .unwrap();
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        // wait_timeout 2 s, generous slack for a shared machine.
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        assert_eq!(pool.status().counters.sentinel_restarts, 1);
        drop(held);
        drop(pool.get().await.expect("the pool works on in runtime B"));
    });
    a.join().unwrap();
}

/// A pool in a `static`, used from several `#[tokio::test]` runtimes: a
/// common pattern that must simply work.
static SHARED_POOL: LazyLock<Pool<FakeManager>> = LazyLock::new(|| {
    Pool::builder()
        .max_size(2)
        .min_idle(1)
        .wait_timeout(Duration::from_secs(2))
        .build(FakeManager::new())
        .expect("a pool can be built outside any runtime")
});

async fn use_the_static_pool() {
    for _ in 0..20 {
        let a = SHARED_POOL.get().await.expect("checkout");
        let b = SHARED_POOL.get().await.expect("second checkout");
        drop((a, b));
        tokio::task::yield_now().await;
    }
    assert_consistent(&SHARED_POOL.status());
}

#[tokio::test]
async fn a_static_pool_works_from_this_test_runtime() {
    use_the_static_pool().await;
}

#[tokio::test]
async fn a_static_pool_works_from_that_test_runtime_too() {
    use_the_static_pool().await;
}

#[test]
fn a_static_pool_works_across_runtimes_one_after_another() {
    for _ in 0..3 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(use_the_static_pool());
    }
}

#[tokio::test(start_paused = true)]
async fn huge_durations_mean_no_limit_and_never_panic() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .connect_timeout(Duration::MAX)
        .wait_timeout(Duration::MAX)
        .close_timeout(Duration::MAX)
        .validate_after(Duration::MAX)
        .idle_timeout(Some(Duration::MAX))
        .max_lifetime(Some(Duration::MAX))
        .heartbeat_interval(Duration::MAX)
        .heartbeat_timeout(Duration::from_secs(u64::MAX / 4))
        .build(manager.clone())
        .unwrap();
    let held = pool.get().await.expect("connects with connect_timeout MAX");
    // Full, wait_timeout MAX: still waiting after a long (virtual) while,
    // not failing at once claiming it waited 584 billion years.
    let waited = tokio::time::timeout(Duration::from_secs(3600), pool.get()).await;
    assert!(
        waited.is_err(),
        "a wait with no limit is still waiting: {waited:?}"
    );
    drop(held);
    drop(pool.get().await.unwrap());
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn a_huge_refill_backoff_never_panics_and_a_later_success_resets_it() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    let pool = Pool::builder()
        .min_idle(2)
        .max_size(2)
        .refill_backoff_min(Duration::MAX)
        .refill_backoff_max(Duration::MAX)
        .wait_timeout(Duration::from_millis(500))
        .build(manager.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(pool.get().await.is_err());
    manager.set_connect_fails(false);
    drop(pool.get().await.expect("a caller's connect still works"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pool.status().idle,
        2,
        "the refill resumed: {:?}",
        pool.status()
    );
}

#[test]
fn a_member_that_dies_at_birth_does_not_spin_the_caller() {
    // Real time on a current-thread runtime: the connect completes without
    // waiting, so only the checkout's own deadline and backoff can stop it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let manager = FakeManager::new();
        manager.set_born_broken(true);
        let pool = Pool::builder()
            .wait_timeout(Duration::from_millis(200))
            .build(manager.clone())
            .unwrap();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), pool.get())
            .await
            .expect("get() must return");
        let took = started.elapsed();
        assert!(
            matches!(
                &result,
                Err(e @ Error::Timeout { .. }) if matches!(e.cause(), Some(Cause::BrokenAfterConnect))
            ),
            "{result:?}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
        // 10 ms doubling: a handful of connects, not millions.
        assert!(manager.connects() < 20, "{} connects", manager.connects());
        assert_consistent(&pool.status());
    });
}

#[tokio::test(start_paused = true)]
async fn callers_backing_off_are_served_as_soon_as_the_server_is_back() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    let pool = Pool::builder()
        .max_size(4)
        .wait_timeout(Duration::from_secs(10))
        .build(manager.clone())
        .unwrap();
    let returned = Arc::new(Mutex::new(Vec::new()));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, returned) = (pool.clone(), Arc::clone(&returned));
            tokio::spawn(async move {
                let conn = pool.get().await.expect("served once the server is back");
                returned.lock().unwrap().push(tokio::time::Instant::now());
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(conn);
            })
        })
        .collect();
    // An outage long enough for every caller to be deep in its backoff.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    manager.set_connect_fails(false);
    for caller in callers {
        caller.await.unwrap();
    }
    let times = returned.lock().unwrap().clone();
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    // The first success ends every other caller's backoff at once.
    assert!(
        last - first <= Duration::from_millis(20),
        "spread {:?}",
        last - first
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_connect_error_fails_at_once() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    manager.set_permanent(true);
    let pool = Pool::builder()
        .wait_timeout(Duration::from_secs(30))
        .refill_backoff_max(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(err, Error::Permanent(FakeError("connection refused"))),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.source().unwrap().to_string(), "connection refused");
    assert_eq!(pool.status().counters.wait_timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_sends_the_refill_to_its_longest_backoff() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    manager.set_permanent(true);
    let pool = Pool::builder()
        .min_idle(1)
        .refill_backoff_min(Duration::from_millis(100))
        .refill_backoff_max(Duration::from_secs(20))
        .build(manager.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    // 100 ms doubling would be ~9 attempts in 30 s; the longest backoff
    // (20 s, jittered ±50%) allows at most 3.
    let failures = pool.status().counters.connect_failures;
    assert!((1..=3).contains(&failures), "{failures} refill attempts");
}

#[tokio::test(start_paused = true)]
async fn close_work_keeps_its_place_taken_until_it_ends() {
    let manager = FakeManager::new();
    manager.set_close_delay(Duration::from_secs(2));
    let pool = Pool::builder()
        .max_size(2)
        .wait_timeout(Duration::from_millis(500))
        .build(manager.clone())
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.in_flight = true; // a query cut off half way: closing it takes 2 s
    drop(conn);
    let status = pool.status();
    assert_eq!((status.size, status.closing), (1, 1), "{status:?}");
    assert_consistent(&status);
    let other = pool.get().await.expect("one place is still free");
    // The second place is the closing one: a third caller must wait.
    assert!(matches!(pool.get().await, Err(Error::Timeout { .. })));
    assert!(manager.open() <= 2, "never more open than max_size");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = pool.status();
    assert_eq!((status.size, status.closing), (1, 0), "{status:?}");
    assert_eq!(manager.open(), 1);
    drop(other);
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop((a, b));
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_heartbeat_at_checkout_is_contained() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .validate_after(Duration::from_secs(1))
        .no_heartbeats()
        .build(manager.clone())
        .unwrap();
    let id = {
        let conn = pool.get().await.unwrap();
        conn.id
    };
    manager.kill(id, Death::HeartbeatPanics);
    tokio::time::sleep(Duration::from_secs(2)).await; // stale: probed at checkout
    let conn = pool.get().await.expect("a new member, not a panic");
    assert_ne!(conn.id, id);
    drop(conn);
    assert_eq!(
        pool.status().counters.evicted.get(EvictReason::ProbeFailed),
        1
    );
}

/// Found by the `pooled` fuzz target: a heartbeat at checkout that succeeds
/// but leaves a stray reply unread must not hand the member out.
#[tokio::test(start_paused = true)]
async fn a_member_left_out_of_step_by_its_checkout_probe_is_not_handed_out() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .validate_after(Duration::from_secs(1))
        .no_heartbeats()
        .build(manager.clone())
        .unwrap();
    let id = pool.get().await.unwrap().id;
    manager.kill(id, Death::DoubledReply);
    tokio::time::sleep(Duration::from_secs(2)).await; // stale: probed at checkout
    let conn = pool.get().await.unwrap();
    assert_ne!(conn.id, id, "the out-of-step member was handed out");
    assert!(!conn.in_flight);
    drop(conn);
    let evicted = pool.status().counters.evicted;
    assert_eq!(evicted.get(EvictReason::BrokenOnCheckout), 1, "{evicted:?}");
}

/// Every level of every pool error says its own part once.
#[test]
fn error_chains_repeat_no_text() {
    let d = Duration::from_secs(1);
    let timeout = |cause| Error::Timeout {
        phase: Phase::Connecting,
        waited: d,
        cause: Some(Box::new(cause)),
    };
    let errors: Vec<Error<FakeError>> = vec![
        timeout(Cause::Connect(FakeError("connection refused"))),
        timeout(Cause::Probe(FakeError("peer gone"))),
        timeout(Cause::ConnectTimedOut(d)),
        timeout(Cause::ProbeTimedOut(d)),
        timeout(Cause::BrokenAfterConnect),
        timeout(Cause::ManagerPanicked),
        Error::Timeout {
            phase: Phase::Waiting,
            waited: d,
            cause: None,
        },
        Error::Permanent(FakeError("password authentication failed")),
        Error::Closed,
        Error::Exhausted,
        Error::NoBackgroundTask,
    ];
    for error in &errors {
        let mut levels = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            levels.push(cause.to_string());
            source = cause.source();
        }
        for (i, a) in levels.iter().enumerate() {
            assert!(!a.is_empty());
            for b in &levels[i + 1..] {
                assert!(!a.contains(b.as_str()), "{a:?} repeats its cause {b:?}");
            }
        }
    }
}

#[test]
fn an_outage_is_logged_once_not_once_per_connect() {
    let captured = capture_logs(tracing::Level::INFO);
    paused_runtime().block_on(async {
        let manager = FakeManager::new();
        manager.set_connect_fails(true);
        let pool = Pool::builder()
            .name("demo")
            .max_size(6)
            .min_idle(2)
            .wait_timeout(Duration::from_millis(400))
            .build(manager.clone())
            .unwrap();
        let callers: Vec<_> = (0..6)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for _ in 0..4 {
                        let _ = pool.get().await;
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        assert!(pool.status().counters.connect_failures > 20);
        manager.set_connect_fails(false);
        drop(pool.get().await.expect("the server is back"));
    });
    let text = captured.text();
    let warns: Vec<_> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warns.len(),
        1,
        "one WARN for the whole outage:\n{}",
        warns.join("\n")
    );
    assert!(warns[0].contains("connect failed"), "{}", warns[0]);
    let back: Vec<_> = text
        .lines()
        .filter(|l| l.contains("connects succeed again"))
        .collect();
    assert_eq!(back.len(), 1, "{text}");
    assert!(back[0].contains("failed_connects="), "{}", back[0]);
    // One format for the pool field everywhere.
    assert!(text.lines().all(|l| !l.contains("pool=\"")), "{text}");
    assert!(warns[0].contains("pool=demo"), "{}", warns[0]);
}

/// A pool built in a current-thread runtime that stays alive but is no
/// longer driven (its `block_on` returned; nothing polls its tasks): the
/// sentinel neither runs nor ends, so a checkout queued from another
/// runtime must be timed out by a timer of its own.
#[test]
fn a_waiter_is_timed_out_while_the_sentinels_runtime_is_alive_but_not_driven() {
    let manager = FakeManager::new();
    let runtime_a = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = runtime_a.block_on(async {
        Pool::builder()
            .max_size(1)
            .wait_timeout(Duration::from_millis(500))
            .build(manager)
            .unwrap()
    });
    let runtime_b = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime_b.block_on(async {
        let held = pool.get().await.unwrap();
        let started = std::time::Instant::now();
        let queued = tokio::time::timeout(Duration::from_secs(10), pool.get())
            .await
            .expect("a queued get() must not hang while the sentinel is not driven")
            .map(|_| ());
        assert!(matches!(queued, Err(Error::Timeout { .. })), "{queued:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(held);
        drop(pool.get().await.expect("the member came back"));
    });
    drop(runtime_a);
}
