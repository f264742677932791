//! The sentinel: background heartbeats, their spread, the failure policy,
//! idle timeout, max lifetime, refill to min_idle with backoff. Virtual time.

mod support;

use std::time::Duration;

use livepool::{EvictReason, Pool};
use support::{Death, FakeManager, assert_consistent};
use tokio::time::{Instant, sleep};

async fn members(pool: &Pool<FakeManager>, n: usize) -> Vec<u64> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.unwrap());
    }
    held.iter().map(|c| c.id).collect()
}

#[tokio::test(start_paused = true)]
async fn every_idle_member_is_probed_once_per_interval_with_jitter() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(20)
        .heartbeat_interval(Duration::from_secs(10))
        .heartbeat_jitter(0.2)
        .heartbeat_timeout(Duration::from_secs(1))
        .build(manager.clone())
        .unwrap();
    let ids = members(&pool, 20).await;
    let start = Instant::now();
    sleep(Duration::from_secs(100)).await;
    let log = manager.probe_log();
    for id in &ids {
        let times: Vec<Instant> = log
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, t)| *t)
            .collect();
        // 100 s at one probe per 8..10 s: 10 to 12 probes, never a burst.
        assert!(
            (9..=13).contains(&times.len()),
            "member {id}: {} probes",
            times.len()
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(7) && gap <= Duration::from_secs(11),
                "member {id}: probes {gap:?} apart"
            );
        }
    }
    // Members probe at different moments, not in lockstep.
    let mut firsts: Vec<Duration> = ids
        .iter()
        .filter_map(|id| log.iter().find(|(i, _)| i == id).map(|(_, t)| *t - start))
        .collect();
    firsts.sort();
    firsts.dedup();
    assert!(firsts.len() >= 5, "first probes bunched: {firsts:?}");
    assert!(
        *firsts.last().unwrap() - firsts[0] >= Duration::from_millis(500),
        "{firsts:?}"
    );
    let status = pool.status();
    assert_eq!(status.counters.probes_ok, log.len() as u64);
    assert_eq!(status.counters.probe_rtt.count, log.len() as u64);
    assert_consistent(&status);
}

#[tokio::test(start_paused = true)]
async fn a_busy_member_is_not_probed() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .heartbeat_interval(Duration::from_secs(10))
        .heartbeat_timeout(Duration::from_secs(1))
        .build(manager.clone())
        .unwrap();
    for _ in 0..100 {
        let conn = pool.get().await.unwrap();
        sleep(Duration::from_secs(1)).await;
        drop(conn);
    }
    assert_eq!(
        manager.heartbeats(),
        0,
        "a member used every second needs no heartbeat"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_idle_member_is_evicted_within_interval_plus_timeout_and_replaced() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(4)
        .heartbeat_interval(Duration::from_secs(5))
        .heartbeat_timeout(Duration::from_secs(1))
        .build(manager.clone())
        .unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.status().idle, 4);
    manager.kill(1, Death::Hung);
    manager.kill(2, Death::Silent);
    let killed = Instant::now();
    loop {
        sleep(Duration::from_millis(50)).await;
        let e = pool.status().counters.evicted;
        if e.get(EvictReason::ProbeTimedOut) == 1 && e.get(EvictReason::ProbeFailed) == 1 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "not evicted in time"
        );
    }
    // Interval + timeout = 6 s, plus one sentinel tick.
    assert!(
        killed.elapsed() <= Duration::from_millis(6_600),
        "{:?}",
        killed.elapsed()
    );
    sleep(Duration::from_millis(100)).await;
    let status = pool.status();
    assert_eq!(status.size, 4, "refilled to min_idle: {status:?}");
    assert_eq!(manager.connects(), 6);
    assert_consistent(&status);
}

#[tokio::test(start_paused = true)]
async fn a_suspect_is_reprobed_and_never_handed_out_meanwhile() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(3) // room for a new member, so the caller need not queue
        .heartbeat_interval(Duration::from_secs(5))
        .heartbeat_timeout(Duration::from_secs(1))
        .heartbeat_failures(2)
        .build(manager.clone())
        .unwrap();
    let ids = members(&pool, 2).await;
    manager.kill(ids[0], Death::Silent); // fails twice: evicted
    manager.kill(ids[1], Death::Silent); // fails once, then recovers
    sleep(Duration::from_millis(5_200)).await;
    let status = pool.status();
    assert_eq!(
        status.probing, 2,
        "both suspects held for re-probe: {status:?}"
    );
    assert_eq!(status.counters.probes_failed, 2);
    manager.revive(ids[1]);
    // Meanwhile a caller gets a new member, never a suspect (one that passes
    // its re-probe may be handed out afterwards).
    let conn = pool.get().await.unwrap();
    assert!(!ids.contains(&conn.id));
    drop(conn);
    sleep(Duration::from_secs(2)).await;
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::ProbeFailed),
        1,
        "{status:?}"
    );
    assert_eq!(status.probing, 0);
    assert_eq!(status.idle, 2, "the recovered suspect is back: {status:?}");
    assert_consistent(&status);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_trims_down_to_min_idle_only() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(6)
        .min_idle(2)
        .no_heartbeats()
        .idle_timeout(Some(Duration::from_secs(30)))
        .build(manager.clone())
        .unwrap();
    members(&pool, 6).await;
    assert_eq!(pool.status().idle, 6);
    sleep(Duration::from_secs(40)).await;
    let status = pool.status();
    assert_eq!(status.idle, 2, "{status:?}");
    assert_eq!(status.counters.evicted.get(EvictReason::IdleTimeout), 4);
    sleep(Duration::from_secs(100)).await;
    assert_eq!(pool.status().idle, 2, "never below min_idle");
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_retires_idle_members_spread_out_not_at_once() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(20)
        .no_heartbeats()
        .max_lifetime(Some(Duration::from_secs(100)))
        .build(manager.clone())
        .unwrap();
    members(&pool, 20).await;
    let mut retired_at = Vec::new();
    let start = Instant::now();
    let mut seen = 0;
    while seen < 20 {
        sleep(Duration::from_millis(100)).await;
        let n = pool.status().counters.evicted.get(EvictReason::MaxLifetime);
        for _ in seen..n {
            retired_at.push(start.elapsed());
        }
        seen = n;
        assert!(start.elapsed() < Duration::from_secs(120), "not retired");
    }
    let spread = *retired_at.last().unwrap() - retired_at[0];
    assert!(retired_at[0] >= Duration::from_secs(89), "{retired_at:?}");
    assert!(
        spread >= Duration::from_secs(2),
        "retired in one burst: {retired_at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn refill_backs_off_while_connects_fail_then_recovers() {
    let manager = FakeManager::new();
    manager.set_connect_fails(true);
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(2)
        .refill_backoff_min(Duration::from_millis(100))
        .refill_backoff_max(Duration::from_secs(5))
        .build(manager.clone())
        .unwrap();
    sleep(Duration::from_secs(30)).await;
    let failures = pool.status().counters.connect_failures;
    // Exponential: ~0.1+0.2+...+5 s, then every 5 s (×2 places, ±50% jitter).
    assert!((4..=60).contains(&failures), "{failures} attempts in 30 s");
    manager.set_connect_fails(false);
    sleep(Duration::from_secs(10)).await;
    let status = pool.status();
    assert_eq!(status.idle, 2, "{status:?}");
    assert_consistent(&status);
}

#[tokio::test(start_paused = true)]
async fn an_eviction_hands_the_free_place_to_a_waiting_caller_at_once() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(1).build(manager.clone()).unwrap();
    let mut held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|c| c.id) }
    });
    sleep(Duration::from_millis(10)).await;
    livepool::Pooled::mark_broken(&mut held);
    drop(held);
    let got = tokio::time::timeout(Duration::from_millis(10), waiter)
        .await
        .expect("waiter not served at once")
        .unwrap();
    assert_eq!(got.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_member_seen_dead_while_idle_is_evicted_without_heartbeats() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(2)
        .no_heartbeats()
        .build(manager.clone())
        .unwrap();
    sleep(Duration::from_millis(50)).await;
    manager.kill(0, Death::Visible); // e.g. the peer's RST, or keepalive gave up
    let killed = Instant::now();
    while pool
        .status()
        .counters
        .evicted
        .get(EvictReason::BrokenWhileIdle)
        == 0
    {
        sleep(Duration::from_millis(10)).await;
        assert!(killed.elapsed() < Duration::from_secs(5), "never noticed");
    }
    // One sentinel tick (at most 250 ms), no caller involved.
    assert!(
        killed.elapsed() <= Duration::from_millis(300),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(manager.heartbeats(), 0);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.status().idle, 2, "replaced to min_idle");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_manager_costs_its_member_not_the_sentinel() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .heartbeat_interval(Duration::from_secs(5))
        .heartbeat_timeout(Duration::from_secs(1))
        .wait_timeout(Duration::from_secs(2))
        .build(manager.clone())
        .unwrap();
    let ids = members(&pool, 2).await;
    manager.kill(ids[0], Death::Panics);
    sleep(Duration::from_secs(6)).await;
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::BrokenWhileIdle),
        1,
        "{status:?}"
    );
    assert_consistent(&status);
    // The sentinel still runs: it still probes, and still times out waiters.
    let before = manager.heartbeats();
    sleep(Duration::from_secs(6)).await;
    assert!(manager.heartbeats() > before, "sentinel died");
    let _a = pool.get().await.unwrap();
    let _b = pool.get().await.unwrap();
    let started = Instant::now();
    assert!(pool.get().await.unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_secs(3));
}
