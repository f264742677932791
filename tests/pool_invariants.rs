//! One test per invariant of DESIGN.md's member state machine, against the
//! fake manager, in virtual time.

mod support;

use std::time::Duration;

use livepool::{EvictReason, Pool, Pooled};
use support::{Death, FakeManager, assert_consistent};
use tokio::time::{advance, timeout};

fn builder() -> livepool::Builder {
    Pool::builder()
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .heartbeat_timeout(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_secs(10))
        .validate_after(Duration::from_secs(30))
}

/// Lets spawned tasks and the sentinel run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn invariant_1_a_member_has_exactly_one_owner() {
    let manager = FakeManager::new();
    let pool = builder().build(manager.clone()).unwrap();
    let held: Vec<_> = futures_join(&pool, 4).await;
    let mut ids: Vec<u64> = held.iter().map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "two callers hold the same member");
    let status = pool.status();
    assert_eq!((status.in_use, status.idle), (4, 0));
    assert_consistent(&status);
    drop(held);
    let status = pool.status();
    assert_eq!((status.in_use, status.idle), (0, 4));
    assert_consistent(&status);

    // While the sentinel probes a member (slow heartbeat), a caller cannot take it.
    manager.set_heartbeat_delay(Duration::from_millis(500));
    advance(Duration::from_secs(11)).await;
    settle().await;
    let status = pool.status();
    assert_eq!(status.probing, 4, "sentinel should hold all 4: {status:?}");
    assert_eq!(status.idle, 0);
    assert_consistent(&status);
    let conn = pool.get().await.unwrap();
    // All four were being probed, so the caller had to wait for one to come back.
    assert!(pool.status().counters.waits >= 1);
    assert_consistent(&pool.status());
    drop(conn);
}

async fn futures_join(pool: &Pool<FakeManager>, n: usize) -> Vec<Pooled<'_, FakeManager>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.unwrap());
    }
    held
}

#[tokio::test(start_paused = true)]
async fn invariant_2_never_hands_out_a_probing_or_failed_member() {
    let manager = FakeManager::new();
    let pool = builder().no_heartbeats().build(manager.clone()).unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let (dead, live) = (a.id, b.id);
    drop(b);
    drop(a); // LIFO: `dead` is on top
    manager.kill(dead, Death::Silent);
    // Idle past validate_after: checkout probes, the dead one fails and is evicted.
    advance(Duration::from_secs(31)).await;
    settle().await; // the sentinel refreshes the coarse clock
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, live, "got the member that failed its probe");
    assert!(manager.failed_probe(dead));
    let status = pool.status();
    assert_eq!(status.counters.evicted.get(EvictReason::ProbeFailed), 1);
    assert_consistent(&status);
    drop(conn);

    // Background path: a member that fails its heartbeat is never handed out.
    let pool = builder().build(manager.clone()).unwrap();
    let ids: Vec<u64> = futures_join(&pool, 3).await.iter().map(|c| c.id).collect();
    for id in &ids {
        manager.kill(*id, Death::Silent);
    }
    advance(Duration::from_secs(11)).await;
    settle().await;
    let fresh = pool.get().await.unwrap();
    assert!(
        !ids.contains(&fresh.id),
        "a member that failed its heartbeat was handed out"
    );
    assert_eq!(
        pool.status().counters.evicted.get(EvictReason::ProbeFailed),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn invariant_3_members_plus_connects_never_exceed_max_size() {
    let manager = FakeManager::new();
    manager.set_connect_delay(Duration::from_millis(50));
    let pool = builder().build(manager.clone()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let conn = pool.get().await.unwrap();
            let status = pool.status();
            assert!(status.size <= 4, "{status:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(conn);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(manager.max_open() <= 4, "opened {}", manager.max_open());
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn invariant_4_a_cancelled_get_leaks_no_place_and_no_member() {
    let manager = FakeManager::new();
    // No background heartbeats: the probe under test is the checkout's own.
    let pool = builder()
        .max_size(1)
        .no_heartbeats()
        .build(manager.clone())
        .unwrap();

    // Cancelled while connecting.
    manager.set_connect_delay(Duration::from_secs(1));
    assert!(
        timeout(Duration::from_millis(10), pool.get())
            .await
            .is_err()
    );
    let status = pool.status();
    assert_eq!((status.size, status.connecting), (0, 0), "{status:?}");
    manager.set_connect_delay(Duration::ZERO);

    // Cancelled while waiting in the queue.
    let held = pool.get().await.unwrap();
    assert!(
        timeout(Duration::from_millis(10), pool.get())
            .await
            .is_err()
    );
    assert_eq!(pool.status().waiters, 0);
    drop(held);
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status:?}");

    // Cancelled while probing: the member is evicted, not put back as validated.
    manager.set_heartbeat_delay(Duration::from_millis(500));
    advance(Duration::from_secs(31)).await;
    settle().await;
    assert!(
        timeout(Duration::from_millis(10), pool.get())
            .await
            .is_err()
    );
    let status = pool.status();
    assert_eq!(
        (status.size, status.probing, status.idle),
        (0, 0, 0),
        "{status:?}"
    );
    assert_eq!(status.counters.evicted.get(EvictReason::ProbeCancelled), 1);
    assert_eq!(
        manager.open(),
        0,
        "the cancelled probe's connection was not closed"
    );
    manager.set_heartbeat_delay(Duration::ZERO);

    // Cancelled after a member was handed over but before the waiter ran:
    // the member goes to the next waiter, not lost.
    let held = pool.get().await.unwrap();
    let mut first = Box::pin(pool.get());
    assert!(futures_poll_once(first.as_mut()).await.is_none());
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|c| c.id) }
    });
    settle().await;
    drop(held); // handed to `first`...
    drop(first); // ...which is cancelled before it runs
    let got = timeout(Duration::from_secs(1), second)
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_ok(), "the next waiter never got the member: {got:?}");
    assert_consistent(&pool.status());
    assert_eq!(pool.status().in_use, 0);
}

async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn invariant_5_a_broken_or_dirty_return_is_evicted_never_reused() {
    let manager = FakeManager::new();
    let pool = builder().build(manager.clone()).unwrap();

    let mut conn = pool.get().await.unwrap();
    let id = conn.id;
    Pooled::mark_broken(&mut conn);
    drop(conn);
    assert_ne!(pool.get().await.unwrap().id, id);

    let mut conn = pool.get().await.unwrap();
    let id = conn.id;
    conn.in_flight = true; // a request cut off half way
    drop(conn);
    assert_ne!(pool.get().await.unwrap().id, id);

    let conn = pool.get().await.unwrap();
    let id = conn.id;
    manager.kill(id, Death::Visible); // EOF seen while borrowed
    drop(conn);
    assert_ne!(pool.get().await.unwrap().id, id);

    let pool2 = pool.clone();
    let panicked = tokio::spawn(async move {
        let _conn = pool2.get().await.unwrap();
        panic!("caller bug while holding a member");
    })
    .await;
    assert!(panicked.is_err());

    let e = pool.status().counters.evicted;
    assert_eq!(e.get(EvictReason::BrokenOnReturn), 2);
    assert_eq!(e.get(EvictReason::Dirty), 1);
    assert_eq!(e.get(EvictReason::CallerPanicked), 1);
    assert_consistent(&pool.status());
}

#[tokio::test(start_paused = true)]
async fn invariant_6_eviction_never_takes_a_member_from_a_caller() {
    let manager = FakeManager::new();
    let pool = builder()
        .max_lifetime(Some(Duration::from_secs(60)))
        .idle_timeout(Some(Duration::from_secs(20)))
        .build(manager.clone())
        .unwrap();
    let conn = pool.get().await.unwrap();
    let id = conn.id;
    advance(Duration::from_secs(120)).await;
    settle().await;
    // Still ours, still open, not probed behind our back.
    assert_eq!(conn.id, id);
    assert_eq!(manager.open(), 1);
    assert_eq!(manager.heartbeats(), 0);
    assert_eq!(pool.status().in_use, 1);
    drop(conn); // past max_lifetime: retired on return
    let status = pool.status();
    assert_eq!(status.counters.evicted.get(EvictReason::MaxLifetime), 1);
    assert_eq!(manager.open(), 0);
    assert_consistent(&status);
}
