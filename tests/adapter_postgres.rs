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
