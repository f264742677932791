//! Checkout behaviour: fairness, wakeups, typed errors, close, try_get, detach,
//! configuration checks.

mod support;

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepool::{BuildError, Cause, Error, EvictReason, Phase, Pool, Pooled};
use support::{Death, FakeManager, assert_consistent};
use tokio::time::timeout;

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_order_of_arrival() {
    let pool = Pool::builder()
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.get().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::task::yield_now().await;
            drop(conn);
        }));
        settle().await; // task i is queued before task i + 1 arrives
    }
    assert_eq!(pool.status().waiters, 16);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
}

/// 64 tasks share 8 members, each holding its member across a yield: every
/// task must finish, every time (a lost wakeup would hang one forever).
#[test]
fn no_lost_wakeups_64_tasks_8_members() {
    for round in 0..20 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = Pool::builder()
                .max_size(8)
                .wait_timeout(Duration::from_secs(30))
                .build(FakeManager::new())
                .unwrap();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let pool = pool.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..50 {
                        let conn = pool.get().await.unwrap();
                        tokio::task::yield_now().await;
                        drop(conn);
                    }
                }));
            }
            let all = async {
                for t in tasks {
                    t.await.unwrap();
                }
            };
            timeout(Duration::from_secs(20), all)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a task never finished"));
            let status = pool.status();
            assert_eq!(status.counters.checkouts, 64 * 50);
            assert_eq!((status.in_use, status.waiters), (0, 0), "{status:?}");
            assert_consistent(&status);
        });
    }
}

#[tokio::test(start_paused = true)]
async fn wait_timeout_says_waiting() {
    let pool = Pool::builder()
        .max_size(1)
        .wait_timeout(Duration::from_millis(100))
        .build(FakeManager::new())
        .unwrap();
    let _held = pool.get().await.unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::Waiting,
                cause: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("waiting for a member"), "{err}");
    assert_eq!(pool.status().counters.wait_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn connect_failures_are_retried_until_the_deadline_then_reported_as_the_cause() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    let pool = Pool::builder()
        .wait_timeout(Duration::from_secs(2))
        .build(manager.clone())
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::Connecting,
                ..
            }
        ) && matches!(err.cause(), Some(Cause::Connect(_))),
        "{err:?}"
    );
    // Each level says its own part once; the chain holds the rest.
    let cause = err.source().unwrap();
    assert_eq!(cause.to_string(), "connect failed");
    assert_eq!(cause.source().unwrap().to_string(), "connection refused");
    assert!(!err.to_string().contains("connection refused"), "{err}");
    let status = pool.status();
    assert!(
        status.counters.connect_failures >= 3,
        "retried with backoff: {status:?}"
    );
    assert!(
        status.counters.connect_failures < 200,
        "busy loop: {status:?}"
    );
    assert_eq!(status.size, 0);

    // The server comes back within the wait: the caller sees no error at all.
    let pool2 = pool.clone();
    let getter = tokio::spawn(async move { pool2.get().await.map(|c| c.id) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    manager.set_connect_fails(false);
    assert!(getter.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_slow_connect_times_out_with_connecting_phase() {
    let manager = FakeManager::new();
    manager.set_connect_delay(Duration::from_secs(60));
    let pool = Pool::builder()
        .connect_timeout(Duration::from_millis(300))
        .wait_timeout(Duration::from_secs(1))
        .build(manager)
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: Phase::Connecting,
                ..
            }
        ) && matches!(err.cause(), Some(Cause::ConnectTimedOut(_))),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_at_checkout_is_evicted_and_a_new_member_connected() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .no_heartbeats()
        .validate_after(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_millis(200))
        .build(manager.clone())
        .unwrap();
    let id = pool.get().await.unwrap().id;
    manager.kill(id, Death::Hung);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let conn = pool.get().await.unwrap();
    assert_ne!(conn.id, id);
    let status = pool.status();
    assert_eq!(status.counters.evicted.get(EvictReason::ProbeTimedOut), 1);
    assert_eq!(status.counters.probes_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn try_get_never_queues() {
    let pool = Pool::builder()
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    let held = pool.try_get().await.unwrap();
    assert!(matches!(pool.try_get().await, Err(Error::Exhausted)));
    drop(held);
    assert!(pool.try_get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn close_wakes_waiters_closes_idle_and_returned_members() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(2).build(manager.clone()).unwrap();
    let borrowed = pool.get().await.unwrap();
    drop(pool.get().await.unwrap()); // one idle
    let _second = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|c| c.id) }
    });
    settle().await;
    assert_eq!(pool.status().waiters, 1);
    pool.close();
    assert!(matches!(waiter.await.unwrap(), Err(Error::Closed)));
    assert!(matches!(pool.get().await, Err(Error::Closed)));
    assert_eq!(
        manager.open(),
        2,
        "borrowed members stay open until returned"
    );
    drop(borrowed);
    drop(_second);
    assert_eq!(manager.open(), 0);
    let status = pool.status();
    assert_eq!(status.size, 0);
    assert_eq!(status.counters.evicted.get(EvictReason::Closed), 2);
    assert!(status.closed);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_closes_the_pool_and_stops_the_sentinel() {
    let manager = FakeManager::new();
    let pool = Pool::builder().min_idle(2).build(manager.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(manager.open(), 2, "min_idle refilled");
    let borrowed = pool.get_owned().await.unwrap();
    drop(pool);
    settle().await;
    assert_eq!(manager.open(), 1, "idle member closed, borrowed one kept");
    drop(borrowed);
    assert_eq!(manager.open(), 0);
    // The sentinel would refill to min_idle if it were still running.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(manager.open(), 0);
    assert_eq!(manager.connects(), 2);
}

#[tokio::test(start_paused = true)]
async fn detach_frees_the_place() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(1).build(manager.clone()).unwrap();
    let conn = pool.get().await.unwrap();
    let raw = Pooled::detach(conn);
    assert_eq!(raw.id, 0);
    let next = pool.get().await.unwrap();
    assert_eq!(next.id, 1);
    let status = pool.status();
    assert_eq!(status.counters.evicted.get(EvictReason::Detached), 1);
    assert_eq!(status.size, 1);
    assert_eq!(
        manager.open(),
        2,
        "the detached connection is the caller's now"
    );
}

#[tokio::test]
async fn bad_configurations_are_refused_with_a_clear_error() {
    let m = FakeManager::new;
    let cases: Vec<(livepool::Builder, BuildError)> = vec![
        (Pool::builder().max_size(0), BuildError::MaxSize(0)),
        (
            Pool::builder().max_size(2).min_idle(3),
            BuildError::MinIdleAboveMaxSize {
                min_idle: 3,
                max_size: 2,
            },
        ),
        (
            Pool::builder().wait_timeout(Duration::ZERO),
            BuildError::ZeroDuration("wait_timeout"),
        ),
        (
            Pool::builder()
                .heartbeat_interval(Duration::from_secs(1))
                .heartbeat_timeout(Duration::from_secs(1)),
            BuildError::HeartbeatTimeoutNotBelowInterval,
        ),
        (
            Pool::builder().heartbeat_jitter(0.9),
            BuildError::Jitter(0.9),
        ),
        (
            Pool::builder().heartbeat_failures(0),
            BuildError::ZeroCount("heartbeat_failures"),
        ),
    ];
    for (builder, expected) in cases {
        let err = builder.build(m()).unwrap_err();
        assert_eq!(err, expected);
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(
        Pool::builder()
            .min_idle(11)
            .build(m())
            .unwrap_err()
            .to_string(),
        "min_idle (11) must not be above max_size (10)"
    );
}

#[test]
fn a_pool_built_outside_a_runtime_starts_its_sentinel_on_first_use() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .min_idle(2)
        .build(manager.clone())
        .expect("no runtime is needed to build");
    assert_eq!(pool.status().size, 0, "nothing runs before a runtime does");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        drop(pool.get().await.expect("first checkout"));
        // The sentinel started with it: the refill to min_idle runs.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(pool.status().idle, 2, "{:?}", pool.status());
        assert_eq!(pool.status().counters.sentinel_restarts, 0);
    });
}

#[tokio::test(start_paused = true)]
async fn a_broken_idle_member_is_skipped_at_checkout_without_an_error() {
    let manager = FakeManager::new();
    let pool = Pool::builder().build(manager.clone()).unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let (ida, idb) = (a.id, b.id);
    drop(a);
    drop(b);
    manager.kill(ida, Death::Visible);
    manager.kill(idb, Death::Visible);
    let conn = pool.get().await.unwrap();
    assert!(conn.id != ida && conn.id != idb);
    assert_eq!(
        pool.status()
            .counters
            .evicted
            .get(EvictReason::BrokenOnCheckout),
        2
    );
    assert_consistent(&pool.status());
}

/// The fast path's future must stay small: it is moved by value into every
/// caller's state machine, and a large one costs a memcpy per checkout. It
/// holds the fast path and an inline wait (a receiver and a deadline); probe,
/// connect and retry state is boxed out of line (it was 592 bytes inline).
#[tokio::test]
async fn the_get_future_is_small() {
    let pool = Pool::builder().build(FakeManager::new()).unwrap();
    let size = std::mem::size_of_val(&pool.get());
    // The `metrics` feature keeps the wait's start (an `Instant`) across
    // the inline wait, for `db.client.connection.wait_time`.
    let limit = if cfg!(feature = "metrics") { 176 } else { 160 };
    assert!(size <= limit, "get() future is {size} bytes");
}
