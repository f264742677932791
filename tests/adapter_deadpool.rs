//! `DeadpoolManager` around a deadpool manager written the way
//! `deadpool-redis` writes its own (create: connect; recycle: PING), against
//! the real Redis server named by LIVEPOOL_REDIS_ADDR (default 127.0.0.1:6379).

#![cfg(all(feature = "deadpool", feature = "redis"))]

mod adapter_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use adapter_support::{SLACK, builder, return_and_watch_it_heartbeat, wait_for_status};

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use livepool::adapters::deadpool::{DeadpoolManager, DeadpoolManagerError};
use livepool::adapters::redis::{ADDR_VAR, DEFAULT_ADDR};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Cause, EvictReason, Manager};
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

/// A deadpool manager for Redis, as a user of deadpool would have it.
struct RedisDeadpool {
    client: redis::Client,
    /// Makes `recycle` refuse every connection, as a manager does when its
    /// check gets a wrong answer.
    refuse: AtomicBool,
}

impl RedisDeadpool {
    fn new(addr: SocketAddr) -> Self {
        RedisDeadpool {
            client: redis::Client::open(format!("redis://{addr}/")).expect("redis URL"),
            refuse: AtomicBool::new(false),
        }
    }
}

impl deadpool::managed::Manager for RedisDeadpool {
    type Type = MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        self.client.get_multiplexed_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<redis::RedisError> {
        let pong: String = redis::cmd("PING").query_async(conn).await?;
        if pong != "PONG" || self.refuse.load(Ordering::Relaxed) {
            return Err(RecycleError::message("PING was not answered PONG"));
        }
        Ok(())
    }
}

/// The Redis server; fails the test (never skips it) when it is not there.
async fn server_addr() -> SocketAddr {
    let addr =
        livepool::adapters::addr_from_env(ADDR_VAR, DEFAULT_ADDR).unwrap_or_else(|e| panic!("{e}"));
    match timeout(SLACK, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => addr,
        Ok(Err(e)) => panic!(
            "Redis is not reachable at {addr}: {e}. Start one there or set {ADDR_VAR}=IP:port"
        ),
        Err(_) => panic!("Redis at {addr} did not accept within {SLACK:?}; set {ADDR_VAR}"),
    }
}

#[tokio::test]
async fn recycle_becomes_the_background_heartbeat() {
    let addr = server_addr().await;
    let pool = builder()
        .build(DeadpoolManager::new(RedisDeadpool::new(addr)))
        .unwrap();
    let mut conn = pool.get().await.expect("borrow");
    let echoed: String = redis::cmd("ECHO")
        .arg("through deadpool's manager")
        .query_async(&mut **conn)
        .await
        .expect("ECHO");
    assert_eq!(echoed, "through deadpool's manager");
    assert_eq!(conn.metrics().recycle_count, 0);
    return_and_watch_it_heartbeat(&pool, conn).await;
    // The metrics deadpool's recycle reads are kept as deadpool keeps them.
    let conn = pool.get().await.expect("borrow");
    assert!(conn.metrics().recycle_count >= 2, "{:?}", conn.metrics());
    assert!(conn.metrics().recycled.is_some());
}

#[tokio::test]
async fn a_refused_recycle_is_a_typed_error_and_evicts() {
    let addr = server_addr().await;
    let pool = builder()
        .build(DeadpoolManager::new(RedisDeadpool::new(addr)))
        .unwrap();
    let mut conn = pool.get().await.expect("borrow");
    pool.manager().inner().refuse.store(true, Ordering::Relaxed);
    let err = pool
        .manager()
        .heartbeat(&mut conn)
        .await
        .expect_err("recycle refuses");
    assert!(
        matches!(err, DeadpoolManagerError::RecycleRefused(ref why) if why.contains("PONG")),
        "{err:?}"
    );
    drop(conn);

    let status = wait_for_status(&pool, "refused member evicted", |s| s.size == 0).await;
    assert_eq!(
        status.counters.evicted.get(EvictReason::ProbeFailed),
        1,
        "{status:?}"
    );
}

#[tokio::test]
async fn a_blackholed_member_fails_its_recycle_by_timing_out() {
    let proxy = FaultProxy::start(server_addr().await).await.expect("proxy");
    let pool = builder()
        .build(DeadpoolManager::new(RedisDeadpool::new(proxy.addr())))
        .unwrap();
    drop(pool.get().await.expect("borrow"));
    proxy.set_fault(Fault::Blackhole);
    let status = wait_for_status(&pool, "blackholed member evicted", |s| s.size == 0).await;
    assert_eq!(
        status.counters.evicted.get(EvictReason::ProbeTimedOut),
        1,
        "{status:?}"
    );

    proxy.set_fault(Fault::Pass);
    let mut conn = pool
        .get()
        .await
        .expect("a fresh member once the path is back");
    let _: () = redis::cmd("PING")
        .query_async(&mut **conn)
        .await
        .expect("PING");
}

#[tokio::test]
async fn a_failed_create_is_a_typed_error_with_its_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = builder()
        .wait_timeout(Duration::from_millis(500))
        .build(DeadpoolManager::new(RedisDeadpool::new(addr)))
        .unwrap();
    let err = pool.get().await.expect_err("nothing listens there");
    match err.cause() {
        Some(Cause::Connect(e @ DeadpoolManagerError::Create(inner))) => {
            assert!(inner.is_connection_refusal(), "{inner:?}");
            assert!(std::error::Error::source(e).is_some());
        }
        other => panic!("expected a create error, got {other:?}"),
    }
}
