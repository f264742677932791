//! `PgManager` against the real PostgreSQL server named by LIVEPOOL_PG_ADDR
//! (default 127.0.0.1:5432; user postgres, database test, trust auth),
//! directly and through the fault proxy.
//!
//! Every test sets a unique `application_name`, so the server's own
//! `pg_stat_activity` can be compared with what the pool holds.

#![cfg(feature = "postgres")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use livepool::adapters::postgres::{ADDR_VAR, PgManager, PgManagerError};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Cause, Condition, EvictReason, Pool, Pooled, Status};
use tokio::time::{sleep, timeout};
use tokio_postgres::{Client, NoTls};

const INTERVAL: Duration = Duration::from_millis(200);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(150);
/// Bound on every wait for something the pool or the server should do
/// within an interval or two: generous, the machine is shared.
const SLACK: Duration = Duration::from_secs(5);

fn manager() -> PgManager {
    PgManager::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// A session of the test's own, outside any pool, to ask the server what
/// it sees. Fails the test (never skips it) when the server is not there.
async fn admin() -> Client {
    let pg = manager();
    let addr = pg.addr();
    let unreachable = |e: &dyn std::fmt::Display| -> ! {
        panic!(
            "PostgreSQL is not reachable at {addr} (user postgres, database test): {e}. \
             Start one there or set {ADDR_VAR}=IP:port"
        )
    };
    let stream = match timeout(SLACK, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => unreachable(&e),
        Err(_) => unreachable(&"connect timed out"),
    };
    let (client, connection) = match timeout(SLACK, pg.config().connect_raw(stream, NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => unreachable(&e),
        Err(_) => unreachable(&"startup timed out"),
    };
    tokio::spawn(connection);
    client
}

/// An `application_name` no other test (or run) uses.
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

/// How many sessions the server lists under `name`.
async fn server_count(admin: &Client, name: &str) -> usize {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) as usize
}

/// Waits (bounded by `SLACK`) until `done` holds for the pool's status.
async fn wait_for_status(
    pool: &Pool<PgManager>,
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

/// Waits (bounded by `SLACK`) until the server lists exactly as many sessions
/// under `name` as the pool holds members.
async fn assert_server_matches_pool(admin: &Client, name: &str, pool: &Pool<PgManager>) {
    let start = Instant::now();
    loop {
        let members = pool.status().size;
        let listed = server_count(admin, name).await;
        if listed == members {
            return;
        }
        assert!(
            start.elapsed() < SLACK,
            "server lists {listed} sessions named {name}, the pool holds {members}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn borrows_runs_a_query_returns_and_heartbeats_idle_members() {
    let admin = admin().await;
    let name = unique_name("basic");
    let pool = builder().build(manager().application_name(&name)).unwrap();

    let mut conn = pool.get().await.expect("borrow");
    let row = conn
        .query_one(
            "SELECT $1::int4 + 1, current_setting('application_name')",
            &[&41i32],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), name);
    assert_eq!(server_count(&admin, &name).await, 1);
    drop(conn);

    let status = pool.status();
    assert_eq!((status.idle, status.in_use), (1, 0), "{status:?}");
    // Idle for a few intervals: the sentinel sends empty queries, and it stays.
    let status = wait_for_status(&pool, "two heartbeats", |s| s.counters.probes_ok >= 2).await;
    assert_eq!(status.counters.evicted.total(), 0, "{status:?}");
    assert_eq!(status.idle, 1);
}

#[tokio::test]
async fn a_query_cut_off_half_way_evicts_the_member() {
    let admin = admin().await;
    let name = unique_name("cutoff");
    let pool = builder().build(manager().application_name(&name)).unwrap();
    let mut conn = pool.get().await.expect("borrow");
    // The server only reads the goodbye once the statement is over, so keep
    // it short: the check below waits for the session to end.
    let sleeping = conn.simple_query("SELECT pg_sleep(1)");
    assert!(timeout(Duration::from_millis(50), sleeping).await.is_err());
    assert_eq!(conn.condition(), Condition::Dirty);
    drop(conn);

    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::Dirty),
        1,
        "{status:?}"
    );
    assert_eq!(status.size, 0);
    // Its session goes with it, cut-off query and all.
    assert_server_matches_pool(&admin, &name, &pool).await;
    // A finished query leaves the member clean.
    let mut conn = pool.get().await.expect("borrow");
    conn.batch_execute("SELECT 1").await.expect("query");
    assert_eq!(conn.condition(), Condition::Ready);
}

#[tokio::test]
async fn blackholed_and_reset_members_are_evicted_while_callers_see_no_error() {
    let admin = admin().await;
    let name = unique_name("faults");
    let proxy = FaultProxy::start(manager().addr()).await.expect("proxy");
    let mut config = manager().config().clone();
    config.application_name(&name);
    let pool = builder()
        .build(PgManager::new(proxy.addr(), config))
        .unwrap();

    // Three members; `hot` is returned last, so LIFO keeps handing it to the
    // caller below while the two cold ones sit idle.
    let (cold_a, cold_b, hot) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    let proxy_id = |conn: &Pooled<PgManager>| {
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
    assert_server_matches_pool(&admin, &name, &pool).await;

    // A caller runs queries back to back for the whole episode.
    let stop = Arc::new(AtomicBool::new(false));
    let caller = tokio::spawn({
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut conn = pool.get().await.map_err(|e| format!("get: {e}"))?;
                let row = conn
                    .query_one("SELECT $1::int8 + 1", &[&(done as i64)])
                    .await
                    .map_err(|e| format!("query: {e}"))?;
                done = row.get::<_, i64>(0) as u64;
                drop(conn);
                tokio::task::yield_now().await;
            }
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
    let queries = timeout(SLACK, caller)
        .await
        .expect("caller finishes")
        .expect("caller task")
        .expect("the caller saw no error");
    assert!(queries > 0);
    // A cut path carries no FIN: the server learns the evicted member is
    // gone once the path heals (or from its own keepalive, much later).
    proxy.fault_connection(blackholed, Fault::Pass);
    assert_server_matches_pool(&admin, &name, &pool).await;
}

#[tokio::test]
async fn a_member_terminated_by_the_server_is_noticed_before_anyone_borrows_it() {
    let admin = admin().await;
    let name = unique_name("kill");
    let pool = builder().build(manager().application_name(&name)).unwrap();
    let mut conn = pool.get().await.unwrap();
    let victim: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(conn);

    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&victim])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let status = wait_for_status(&pool, "terminated member evicted", |s| s.size == 0).await;
    assert_eq!(status.counters.checkouts, 1, "nobody borrowed meanwhile");
    let noticed = status.counters.evicted.get(EvictReason::BrokenWhileIdle)
        + status.counters.evicted.get(EvictReason::ProbeFailed);
    assert_eq!(noticed, 1, "{status:?}");

    let mut conn = pool.get().await.expect("the next borrow connects afresh");
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, victim);
    drop(conn);
    assert_server_matches_pool(&admin, &name, &pool).await;
}

#[tokio::test]
async fn a_refused_login_is_a_typed_error_with_the_server_reason() {
    let _admin = admin().await;
    let mut config = manager().config().clone();
    config.dbname("livepool_no_such_database");
    let pool = builder()
        .wait_timeout(Duration::from_millis(1500))
        .build(PgManager::new(manager().addr(), config))
        .unwrap();
    let err = pool.get().await.expect_err("no such database");
    match err.cause() {
        Some(Cause::Connect(e @ PgManagerError::Handshake { source, .. })) => {
            assert_eq!(
                source.code(),
                Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
            );
            assert!(e.to_string().contains(&manager().addr().to_string()), "{e}");
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_typed_error_naming_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let pool = builder()
        .wait_timeout(Duration::from_millis(500))
        .build(PgManager::new(addr, manager().config().clone()))
        .unwrap();
    let err = pool.get().await.expect_err("nothing listens there");
    match err.cause() {
        Some(Cause::Connect(e @ PgManagerError::Connect(_))) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}
