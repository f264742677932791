//! `PgManager` against the real PostgreSQL server named by LIVEPOOL_PG_ADDR
//! (default 127.0.0.1:5432; user postgres, database test, trust auth),
//! directly and through the fault proxy.
//!
//! Every test sets a unique `application_name`, so the server's own
//! `pg_stat_activity` can be compared with what the pool holds.

#![cfg(feature = "postgres")]

mod adapter_support;

use std::net::SocketAddr;
use std::time::Duration;

use adapter_support::{
    SLACK, blackhole_and_reset_idle_members, builder, kill_an_idle_member_on_the_server,
    return_and_watch_it_heartbeat, return_cut_off_member, unique_name,
};
use livepool::adapters::addr_from_env;
use livepool::adapters::postgres::{
    ADDR_VAR, DEFAULT_ADDR, PgConnection, PgManager, PgManagerError,
};
use livepool::testing::FaultProxy;
use livepool::{Cause, Condition};
use tokio::time::timeout;
use tokio_postgres::{Client, NoTls};

fn manager() -> PgManager {
    PgManager::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// The server's address (LIVEPOOL_PG_ADDR or 127.0.0.1:5432).
fn server_addr() -> SocketAddr {
    addr_from_env(ADDR_VAR, DEFAULT_ADDR).unwrap_or_else(|e| panic!("{e}"))
}

/// A session of the test's own, outside any pool, to ask the server what
/// it sees. Fails the test (never skips it) when the server is not there.
async fn admin() -> Client {
    let pg = manager();
    let addr = server_addr();
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

/// The server process serving `conn`'s session.
async fn backend_pid(conn: &mut PgConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid")
        .get(0)
}

#[tokio::test]
async fn borrows_runs_a_query_returns_and_heartbeats_idle_members() {
    let admin = admin().await;
    let name = unique_name("basic");
    let pool = builder().build(manager().application_name(&name)).unwrap();

    let conn = pool.get().await.expect("borrow");
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
    // Idle for a few intervals: the sentinel sends empty queries, and it stays.
    return_and_watch_it_heartbeat(&pool, conn).await;
}

#[tokio::test]
async fn a_query_cut_off_half_way_evicts_the_member() {
    let admin = admin().await;
    let name = unique_name("cutoff");
    let pool = builder().build(manager().application_name(&name)).unwrap();
    let conn = pool.get().await.expect("borrow");
    // The server only reads the goodbye once the statement is over, so keep
    // it short: the check below waits for the session to end.
    let sleeping = conn.simple_query("SELECT pg_sleep(1)");
    assert!(timeout(Duration::from_millis(50), sleeping).await.is_err());
    assert_eq!(conn.condition(), Condition::Dirty);
    // Its server-side session goes with it, cut-off command and all.
    return_cut_off_member(&pool, conn, &name, async || {
        server_count(&admin, &name).await
    })
    .await;
    // A finished query leaves the member clean.
    let conn = pool.get().await.expect("borrow");
    conn.batch_execute("SELECT 1").await.expect("query");
    assert_eq!(conn.condition(), Condition::Ready);
}

#[tokio::test]
async fn blackholed_and_reset_members_are_evicted_while_callers_see_no_error() {
    let admin = admin().await;
    let name = unique_name("faults");
    let proxy = FaultProxy::start(server_addr()).await.expect("proxy");
    let mut config = manager().config().clone();
    config.application_name(&name);
    let pool = builder()
        .build(PgManager::new(proxy.addr(), config))
        .unwrap();

    blackhole_and_reset_idle_members(
        &pool,
        &proxy,
        &name,
        PgConnection::local_addr,
        async || server_count(&admin, &name).await,
        async |conn: &mut PgConnection, before| {
            let row = conn
                .query_one("SELECT $1::int8 + 1", &[&(before as i64)])
                .await
                .map_err(|e| format!("query: {e}"))?;
            let answer = row.get::<_, i64>(0);
            if answer != before as i64 + 1 {
                return Err(format!("the server says {before} + 1 = {answer}"));
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_member_terminated_by_the_server_is_noticed_before_anyone_borrows_it() {
    let admin = admin().await;
    let name = unique_name("kill");
    let pool = builder().build(manager().application_name(&name)).unwrap();
    kill_an_idle_member_on_the_server(
        &pool,
        &name,
        async |conn: &mut PgConnection| backend_pid(conn).await.into(),
        async |victim| {
            let killed: bool = admin
                .query_one(
                    "SELECT pg_terminate_backend($1)",
                    &[&i32::try_from(victim).expect("a backend pid")],
                )
                .await
                .unwrap()
                .get(0);
            assert!(killed);
        },
        async || server_count(&admin, &name).await,
    )
    .await;
}

#[tokio::test]
async fn a_refused_login_is_a_typed_error_with_the_server_reason() {
    let _admin = admin().await;
    let mut config = manager().config().clone();
    config.dbname("livepool_no_such_database");
    let pool = builder()
        .wait_timeout(Duration::from_millis(1500))
        .build(PgManager::new(server_addr(), config))
        .unwrap();
    let started = std::time::Instant::now();
    let err = pool.get().await.expect_err("no such database");
    // An unknown database is permanent: the checkout fails at once.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    match &err {
        livepool::Error::Permanent(e @ PgManagerError::Handshake { source, .. }) => {
            assert_eq!(
                source.code(),
                Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
            );
            assert!(e.to_string().contains(&server_addr().to_string()), "{e}");
            assert!(
                !e.to_string().contains("does not exist"),
                "the server's reason is the source's, not repeated here: {e}"
            );
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
        Some(Cause::Connect(PgManagerError::Connect(e))) => {
            // The address is named by the TCP level, the level below this one.
            assert_eq!(e.addr(), Some(addr));
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// Sessions under `name` that are still running a statement (not idle).
async fn active_count(admin: &Client, name: &str) -> usize {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state = 'active'",
            &[&name],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) as usize
}

/// Ten `pg_sleep(3)` statements cut off at 200 ms by four callers sharing a
/// pool of two: the pool never holds more server sessions than `max_size`
/// (a cut-off member keeps its place until its cancel request and close are
/// done), and every cut-off statement is gone from the server within a second
/// of the last cut, not three.
#[tokio::test]
async fn a_cancel_storm_never_holds_more_sessions_than_max_size() {
    const MAX_SIZE: usize = 2;
    const CUTS: usize = 10;
    let watcher = admin().await;
    let admin = admin().await;
    let name = unique_name("storm");
    let pool = builder()
        .max_size(MAX_SIZE)
        .wait_timeout(Duration::from_secs(20))
        .build(manager().application_name(&name))
        .unwrap();

    // Sample the server's view (and the pool's) every 10 ms throughout.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let name = name.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let admin = watcher;
            let (mut most_sessions, mut most_size, mut samples) = (0, 0, 0);
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most_sessions = most_sessions.max(server_count(&admin, &name).await);
                most_size = most_size.max(pool.status().size);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (most_sessions, most_size, samples)
        })
    };

    let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            let cuts = cuts.clone();
            tokio::spawn(async move {
                while cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < CUTS {
                    let conn = pool.get().await.expect("borrow within wait_timeout");
                    let sleeping = conn.simple_query("SELECT pg_sleep(3)");
                    assert!(
                        timeout(Duration::from_millis(200), sleeping).await.is_err(),
                        "pg_sleep(3) finished within 200 ms"
                    );
                    assert_eq!(conn.condition(), Condition::Dirty);
                }
            })
        })
        .collect();
    let storm = std::time::Instant::now();
    for caller in callers {
        caller.await.expect("caller");
    }
    let last_cut = std::time::Instant::now();

    // Every cut-off statement ends on the server within a second.
    loop {
        let active = active_count(&admin, &name).await;
        if active == 0 {
            break;
        }
        assert!(
            last_cut.elapsed() < Duration::from_secs(1),
            "{active} cut-off statements still run on the server {:?} after the last cut",
            last_cut.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone_after = last_cut.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (most_sessions, most_size, samples) = sampler.await.expect("sampler");
    println!(
        "cancel storm: {CUTS} cuts in {:?}, at most {most_sessions} server sessions \
         ({samples} samples), pool size at most {most_size}, cut-off statements gone \
         {gone_after:?} after the last cut",
        last_cut - storm
    );
    assert!(samples > 10, "the sampler ran {samples} times");
    assert!(
        most_sessions <= MAX_SIZE,
        "the server saw {most_sessions} sessions of a pool of {MAX_SIZE}"
    );
    assert!(most_size <= MAX_SIZE);
    // Ten 200 ms cuts two at a time: about a second, not ten 3 s sleeps.
    assert!(
        last_cut - storm < Duration::from_secs(8),
        "{:?}",
        last_cut - storm
    );
    let status = pool.status();
    assert!(status.counters.evicted.total() >= CUTS as u64, "{status:?}");
}

/// Client code written against tokio-postgres's own trait, not livepool.
/// `GenericClient` is sealed (only `Client` and `Transaction` implement
/// it), so a pooled session is passed as `&**conn` (it derefs to `Client`)
/// and a transaction as itself.
async fn add_and_count(
    db: &impl tokio_postgres::GenericClient,
    table: &str,
    value: i32,
) -> Result<i64, tokio_postgres::Error> {
    db.execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&value])
        .await?;
    Ok(db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// Sleeps on the server through any `GenericClient`.
async fn sleep_generic(
    db: &impl tokio_postgres::GenericClient,
    seconds: f64,
) -> Result<(), tokio_postgres::Error> {
    db.execute("SELECT pg_sleep($1)", &[&seconds])
        .await
        .map(drop)
}

/// The documented equivalent of `GenericClient` on a pooled session, from a
/// connection string with a host name: the same generic function runs on
/// the session (`&**conn`) and on a transaction of it (rolled back: its row
/// is gone), and a query cut off inside it still leaves the session dirty,
/// so the pool evicts it and its statement is cancelled on the server.
#[tokio::test]
async fn code_generic_over_generic_client_runs_on_the_session_and_its_transactions() {
    let admin = admin().await;
    let name = unique_name("generic");
    let port = server_addr().port();
    let manager = PgManager::from_conn_str(&format!(
        "host=localhost port={port} user=postgres dbname=test"
    ))
    .unwrap()
    .application_name(&name);
    let pool = builder().build(manager).unwrap();

    let mut conn = pool.get().await.expect("borrow over a resolved name");
    conn.batch_execute("CREATE TEMP TABLE generic_t (x int4)")
        .await
        .unwrap();
    assert_eq!(add_and_count(&**conn, "generic_t", 1).await.unwrap(), 1);
    {
        let tx = conn.transaction().await.expect("BEGIN");
        assert_eq!(add_and_count(&tx, "generic_t", 2).await.unwrap(), 2);
        tx.rollback().await.expect("ROLLBACK");
    }
    assert_eq!(
        add_and_count(conn.client(), "generic_t", 3).await.unwrap(),
        2
    );
    assert_eq!(conn.condition(), Condition::Ready);

    // Cut off inside the generic function, in a transaction too.
    {
        let tx = conn.transaction().await.expect("BEGIN");
        // Long enough that only the cancel can end it within the checks
        // below: without one the server holds the session for 30 s.
        let cut = timeout(Duration::from_millis(100), sleep_generic(&tx, 30.0)).await;
        assert!(cut.is_err(), "pg_sleep(30) finished within 100 ms");
    }
    assert_eq!(conn.condition(), Condition::Dirty);
    assert_eq!(active_count(&admin, &name).await, 1, "the sleep runs on");
    return_cut_off_member(&pool, conn, &name, async || {
        server_count(&admin, &name).await
    })
    .await;
}
