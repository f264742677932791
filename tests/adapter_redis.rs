//! `RedisManager` against the real Redis server named by LIVEPOOL_REDIS_ADDR
//! (default 127.0.0.1:6379), directly and through the fault proxy.
//!
//! Every test names its connections with a unique `CLIENT SETNAME`, so the
//! server's own `CLIENT LIST` can be compared with what the pool holds.

#![cfg(feature = "redis")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use livepool::adapters::redis::{ADDR_VAR, RedisManager, RedisManagerError};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Cause, EvictReason, Pool, Pooled, Status};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::time::{sleep, timeout};

const INTERVAL: Duration = Duration::from_millis(200);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(150);
/// Bound on every wait for something the pool or the server should do
/// within an interval or two: generous, the machine is shared.
const SLACK: Duration = Duration::from_secs(5);

fn server_addr() -> SocketAddr {
    RedisManager::from_env()
        .unwrap_or_else(|e| panic!("{e}"))
        .addr()
}

/// A connection of the test's own, outside any pool, to ask the server what
/// it sees. Fails the test (never skips it) when the server is not there.
async fn admin() -> MultiplexedConnection {
    let addr = server_addr();
    let unreachable = |e: &dyn std::fmt::Display| -> ! {
        panic!("Redis is not reachable at {addr}: {e}. Start one there or set {ADDR_VAR}=IP:port")
    };
    let client =
        redis::Client::open(format!("redis://{addr}/")).unwrap_or_else(|e| unreachable(&e));
    match timeout(SLACK, client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => unreachable(&e),
        Err(_) => unreachable(&"connect timed out"),
    }
}

/// A `CLIENT SETNAME` no other test (or run) uses.
fn unique_name(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "livepool-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn builder() -> livepool::Builder {
    Pool::builder()
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .heartbeat_jitter(0.0)
}

/// How many connections the server lists under `name`.
async fn server_count(admin: &mut MultiplexedConnection, name: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    let needle = format!(" name={name} ");
    list.lines().filter(|l| l.contains(&needle)).count()
}

/// Waits (bounded by `SLACK`) until `done` holds for the pool's status.
async fn wait_for_status<M: livepool::Manager>(
    pool: &Pool<M>,
    what: &str,
    done: impl Fn(&Status) -> bool,
) -> Status {
    let start = Instant::now();
    loop {
        let status = pool.status();
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < SLACK,
            "{what}: not within {SLACK:?}: {status:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded by `SLACK`) until the server lists exactly as many
/// connections under `name` as the pool holds members.
async fn assert_server_matches_pool(
    admin: &mut MultiplexedConnection,
    name: &str,
    pool: &Pool<RedisManager>,
) {
    let start = Instant::now();
    loop {
        let members = pool.status().size;
        let listed = server_count(admin, name).await;
        if listed == members {
            return;
        }
        assert!(
            start.elapsed() < SLACK,
            "server lists {listed} connections named {name}, the pool holds {members}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn borrows_runs_a_command_returns_and_heartbeats_idle_members() {
    let mut admin = admin().await;
    let name = unique_name("basic");
    let pool = builder()
        .build(RedisManager::from_env().unwrap().client_name(&name))
        .unwrap();

    let mut conn = pool.get().await.expect("borrow");
    let key = format!("{name}:key");
    let _: () = conn.set_ex(&key, "value", 10).await.expect("SET");
    let value: String = conn.get(&key).await.expect("GET");
    assert_eq!(value, "value");
    assert_eq!(server_count(&mut admin, &name).await, 1);
    drop(conn);

    let status = pool.status();
    assert_eq!((status.idle, status.in_use), (1, 0), "{status:?}");
    // Idle for a few intervals: the sentinel PINGs it, and it stays.
    let status = wait_for_status(&pool, "two heartbeats", |s| s.counters.probes_ok >= 2).await;
    assert_eq!(status.counters.evicted.total(), 0, "{status:?}");
    assert_eq!(status.idle, 1);
    assert!(status.counters.probe_rtt.count >= 2);
}

#[tokio::test]
async fn a_command_cut_off_half_way_evicts_the_member() {
    let mut admin = admin().await;
    let name = unique_name("cutoff");
    let pool = builder()
        .build(RedisManager::from_env().unwrap().client_name(&name))
        .unwrap();
    let mut conn = pool.get().await.expect("borrow");
    // BLPOP on a key nobody pushes to: cut off after 50 ms, the server is
    // still blocked on it.
    let key = format!("{name}:never");
    let mut blpop = redis::cmd("BLPOP");
    blpop.arg(&key).arg(5);
    let blocked = blpop.query_async::<redis::Value>(&mut *conn);
    assert!(timeout(Duration::from_millis(50), blocked).await.is_err());
    assert_eq!(conn.condition(), livepool::Condition::Dirty);
    drop(conn);

    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::Dirty),
        1,
        "{status:?}"
    );
    assert_eq!(status.size, 0);
    // Its server-side session goes with it.
    assert_server_matches_pool(&mut admin, &name, &pool).await;
    // A finished command leaves the member clean.
    let mut conn = pool.get().await.expect("borrow");
    let _: () = redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .expect("PING");
    assert_eq!(conn.condition(), livepool::Condition::Ready);
}

#[tokio::test]
async fn blackholed_and_reset_members_are_evicted_while_callers_see_no_error() {
    let mut admin = admin().await;
    let name = unique_name("faults");
    let proxy = FaultProxy::start(server_addr()).await.expect("proxy");
    let pool = builder()
        .build(RedisManager::new(proxy.addr()).client_name(&name))
        .unwrap();

    // Three members; `hot` is returned last, so LIFO keeps handing it to the
    // caller below while the two cold ones sit idle.
    let (cold_a, cold_b, hot) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    let proxy_id = |conn: &Pooled<RedisManager>| {
        let addr = conn.local_addr();
        proxy
            .connections()
            .into_iter()
            .find(|c| c.client_addr == addr)
            .map(|c| c.id)
            .expect("the proxy lists every member")
    };
    let (blackholed, reset) = (proxy_id(&cold_a), proxy_id(&cold_b));
    drop(cold_a);
    drop(cold_b);
    drop(hot);
    assert_server_matches_pool(&mut admin, &name, &pool).await;

    // A caller runs commands back to back for the whole episode.
    let stop = Arc::new(AtomicBool::new(false));
    let caller = tokio::spawn({
        let (pool, stop, key) = (pool.clone(), Arc::clone(&stop), format!("{name}:counter"));
        async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut conn = pool.get().await.map_err(|e| format!("get: {e}"))?;
                let _: i64 = conn.incr(&key, 1).await.map_err(|e| format!("INCR: {e}"))?;
                done += 1;
                drop(conn);
                tokio::task::yield_now().await;
            }
            let _: () = pool.get().await.unwrap().del(&key).await.unwrap();
            Ok::<u64, String>(done)
        }
    });

    let before = pool.status().counters.evicted;
    let faulted = Instant::now();
    assert!(proxy.fault_connection(blackholed, Fault::Blackhole));
    assert!(proxy.fault_connection(reset, Fault::Reset));
    let status = wait_for_status(&pool, "both faulted members evicted", |s| {
        s.counters.evicted.total() - before.total() >= 2
    })
    .await;
    let took = faulted.elapsed();
    // Detection within interval + timeout; the rest is slack for a busy machine.
    assert!(
        took < INTERVAL + HEARTBEAT_TIMEOUT + Duration::from_secs(2),
        "took {took:?}"
    );
    let evicted = status.counters.evicted;
    assert!(
        evicted.get(EvictReason::ProbeTimedOut) > before.get(EvictReason::ProbeTimedOut),
        "the blackholed member should fail its heartbeat by timing out: {status:?}"
    );
    let failures = |e: &livepool::Evictions| -> u64 {
        e.iter()
            .filter(|(r, _)| r.is_failure())
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(
        failures(&evicted) - failures(&before),
        2,
        "exactly the two faulted members, as failures: {status:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let commands = timeout(SLACK, caller)
        .await
        .expect("caller finishes")
        .expect("caller task")
        .expect("the caller saw no error");
    assert!(commands > 0);
    // A cut path carries no FIN: the server learns the evicted member is
    // gone once the path heals (or from its own keepalive, much later).
    proxy.fault_connection(blackholed, Fault::Pass);
    assert_server_matches_pool(&mut admin, &name, &pool).await;
}

#[tokio::test]
async fn a_member_killed_by_the_server_is_noticed_before_anyone_borrows_it() {
    let mut admin = admin().await;
    let name = unique_name("kill");
    let pool = builder()
        .build(RedisManager::from_env().unwrap().client_name(&name))
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let victim: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    let status = wait_for_status(&pool, "killed member evicted", |s| s.size == 0).await;
    assert_eq!(status.counters.checkouts, 1, "nobody borrowed meanwhile");
    let noticed = status.counters.evicted.get(EvictReason::BrokenWhileIdle)
        + status.counters.evicted.get(EvictReason::ProbeFailed);
    assert_eq!(noticed, 1, "{status:?}");

    let mut conn = pool.get().await.expect("the next borrow connects afresh");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_ne!(id, victim);
    drop(conn);
    assert_server_matches_pool(&mut admin, &name, &pool).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_typed_error_naming_the_address() {
    // A port nothing listens on: take one from the OS and close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = builder()
        .wait_timeout(Duration::from_millis(500))
        .build(RedisManager::new(addr))
        .unwrap();
    let err = pool.get().await.expect_err("nothing listens there");
    match err.cause() {
        Some(Cause::Connect(e @ RedisManagerError::Connect(_))) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
            assert!(std::error::Error::source(e).is_some());
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}
