//! Issue 12 through the fault proxy and the reference server: the adaptive
//! heartbeat timeout against a round-trip spike (and against a silent
//! peer), and ping etiquette against a server that limits heartbeats.
//!
//! Virtual time: the proxy's delays, the server and the pool all run on one
//! paused tokio clock, so the spike and the bounds are exact, not at the
//! mercy of a loaded machine. The clock is stepped by the test
//! (`tests/paused_clock`), not auto-advanced: see there why.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use livepool::protocol::{RpcManager, Server, ServerHandle};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Builder, EvictReason, Pool, Status};
use tokio::time::{Instant, sleep};

mod paused_clock;
use paused_clock::step_the_clock;

const INTERVAL: Duration = Duration::from_millis(400);
/// The fixed pool's timeout, and the rig's (tests/fault_support).
const FIXED_TIMEOUT: Duration = Duration::from_millis(150);
/// The adaptive pool's ceiling (below the interval, as validation asks).
const CEILING: Duration = Duration::from_millis(350);
const FLOOR: Duration = Duration::from_millis(20);
/// One way, so a round trip is about twice this.
const BASE_DELAY: Duration = Duration::from_millis(10);
const MEMBERS: usize = 6;

async fn server() -> ServerHandle {
    Server::new()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a reference server on loopback")
}

fn manager(addr: SocketAddr) -> RpcManager {
    RpcManager::new(addr).request_timeout(None)
}

fn builder(name: &str) -> Builder {
    Pool::builder()
        .name(name)
        .max_size(MEMBERS)
        .min_idle(MEMBERS)
        .heartbeat_interval(INTERVAL)
        .wait_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .refill_backoff_min(Duration::from_millis(50))
        .refill_backoff_max(Duration::from_millis(500))
}

fn failures(s: &Status) -> u64 {
    s.counters
        .evicted
        .iter()
        .filter(|(r, _)| r.is_failure())
        .map(|(_, n)| n)
        .sum()
}

async fn full(pool: &Pool<RpcManager>) {
    let started = Instant::now();
    while pool.status().idle < MEMBERS {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            pool.status()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// Every connection through the proxy gets its own delay, `scale` ×
/// `BASE_DELAY` ± 20%, drawn afresh every 50 ms, for `time`.
async fn jitter(proxy: &FaultProxy, scale: u32, time: Duration) {
    let base = BASE_DELAY * scale;
    proxy.set_fault(Fault::Delay(base));
    let until = Instant::now() + time;
    while Instant::now() < until {
        for conn in proxy.connections() {
            let delay = base.mul_f64(0.8 + 0.4 * fastrand::f64());
            proxy.fault_connection(conn.id, Fault::Delay(delay));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// A 10× round-trip spike on every member: the fixed 150 ms timeout evicts
/// healthy members (counted), the adaptive one (ceiling 350 ms) none, in
/// the same run through the same proxy; its late answers are counted.
#[tokio::test(start_paused = true)]
async fn a_round_trip_spike_evicts_nobody_with_the_adaptive_timeout() {
    let _clock = step_the_clock();
    let server = server().await;
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set_fault(Fault::Delay(BASE_DELAY));
    let fixed = builder("fixed")
        .heartbeat_timeout(FIXED_TIMEOUT)
        .build(manager(proxy.addr()))
        .unwrap();
    let adaptive = builder("adaptive")
        .heartbeat_timeout(CEILING)
        .adaptive_heartbeat_timeout(FLOOR)
        .build(manager(proxy.addr()))
        .unwrap();
    full(&fixed).await;
    full(&adaptive).await;
    // Learn the usual round trips: about 45 heartbeats each.
    jitter(&proxy, 1, Duration::from_secs(3)).await;
    let calm = (fixed.status(), adaptive.status());
    assert_eq!(failures(&calm.0) + failures(&calm.1), 0, "{calm:?}");
    assert!(
        calm.1.heartbeat_threshold < Duration::from_millis(100),
        "learnt {:?}",
        calm.1.heartbeat_threshold
    );
    jitter(&proxy, 10, Duration::from_secs(5)).await;
    let spiked = (fixed.status(), adaptive.status());
    let fixed_false = failures(&spiked.0);
    eprintln!(
        "spike: fixed evicted {fixed_false} healthy members, adaptive {} ({} late answers kept, threshold now {:?})",
        failures(&spiked.1),
        spiked.1.counters.probes_late,
        spiked.1.heartbeat_threshold
    );
    assert!(fixed_false >= MEMBERS as u64, "fixed: {:?}", spiked.0);
    assert_eq!(failures(&spiked.1), 0, "adaptive: {:?}", spiked.1);
    assert!(spiked.1.counters.probes_late > 0, "{:?}", spiked.1);
    fixed.close();
    adaptive.close();
    proxy.shutdown().await;
    server.shutdown().await;
}

/// A silent peer (one member blackholed) under the adaptive timeout is
/// evicted within `interval + ceiling` (plus a sentinel tick) in every
/// trial, wherever in the heartbeat cycle the fault lands.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_still_evicted_within_interval_plus_ceiling() {
    let _clock = step_the_clock();
    let bound = INTERVAL + CEILING + INTERVAL / 10;
    let mut times = Vec::new();
    for trial in 0..10 {
        let server = server().await;
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_fault(Fault::Delay(BASE_DELAY));
        let pool = builder("silent")
            .heartbeat_timeout(CEILING)
            .adaptive_heartbeat_timeout(FLOOR)
            .build(manager(proxy.addr()))
            .unwrap();
        full(&pool).await;
        sleep(Duration::from_secs(2) + INTERVAL.mul_f64(fastrand::f64())).await;
        let target = proxy.connections()[trial % MEMBERS].id;
        let before = pool
            .status()
            .counters
            .evicted
            .get(EvictReason::ProbeTimedOut);
        let injected = Instant::now();
        assert!(proxy.fault_connection(target, Fault::Blackhole));
        while pool
            .status()
            .counters
            .evicted
            .get(EvictReason::ProbeTimedOut)
            == before
        {
            assert!(
                injected.elapsed() <= bound,
                "trial {trial}: not evicted within {bound:?}: {:?}",
                pool.status()
            );
            sleep(Duration::from_millis(1)).await;
        }
        times.push(injected.elapsed());
        assert_eq!(failures(&pool.status()), 1, "{:?}", pool.status());
        pool.close();
        proxy.shutdown().await;
        server.shutdown().await;
    }
    times.sort();
    eprintln!("silent peer evicted after {times:?} (bound {bound:?})");
}

/// Ping etiquette: a server that allows a heartbeat per second per
/// connection refuses the pool's (every 300 ms) with a going-away
/// `too_many_pings`. The pool closes those members as drained (no failure
/// eviction, no caller error), doubles its interval until the server is
/// content (300 → 600 → 1200 ms; jitter puts 600 ms probes under 1 s), and
/// the refusals stop.
#[tokio::test(start_paused = true)]
async fn too_many_pings_doubles_the_interval_and_convicts_nobody() {
    let _clock = step_the_clock();
    let server = Server::new()
        .min_heartbeat_interval(Duration::from_secs(1))
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let pool = Pool::builder()
        .name("etiquette")
        .max_size(3)
        .min_idle(3)
        .heartbeat_interval(Duration::from_millis(300))
        .heartbeat_timeout(Duration::from_millis(200))
        .build(manager(server.addr()))
        .unwrap();
    let caller = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                let mut conn = pool.get().await.expect("no caller error");
                let body = Bytes::from(i.to_string());
                let reply = conn.call(body.clone()).await.expect("no call error");
                assert_eq!(reply, body);
                drop(conn);
                sleep(Duration::from_millis(97)).await;
            }
        })
    };
    sleep(Duration::from_secs(20)).await;
    caller.await.unwrap();
    let s = pool.status();
    assert_eq!(failures(&s), 0, "{s:?}");
    assert!(s.counters.heartbeats_refused >= 1, "{s:?}");
    assert!(s.counters.evicted.get(EvictReason::Drained) >= 1, "{s:?}");
    let interval = s.heartbeat_interval.unwrap();
    assert!(
        interval >= Duration::from_millis(1200) && interval <= Duration::from_millis(2400),
        "{interval:?}"
    );
    let refused = server.heartbeats_refused();
    sleep(Duration::from_secs(20)).await;
    assert_eq!(
        server.heartbeats_refused(),
        refused,
        "refusals stop once the interval suits the server"
    );
    assert!(pool.status().counters.probes_ok > 10, "{:?}", pool.status());
    pool.close();
    server.shutdown().await;
}
