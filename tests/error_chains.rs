//! Every error livepool returns reads once: each level's `Display` says its
//! own part, `source()` gives the cause, and no level repeats the text of a
//! level below it, so a reporter that walks the chain (anyhow's `{:#}`,
//! eyre, a tracing `&dyn Error` field) prints the root cause once.
//!
//! The errors are the real ones, made by real failures: a refused port, a
//! host name that does not resolve, a port already taken, bytes that are
//! not a frame, and, where the features are on, a wrong Redis password, an
//! unknown PostgreSQL database and a deadpool manager that cannot connect.
//! The Redis and PostgreSQL clients print their cause in their own text;
//! these tests show the chains livepool hands out skip that repetition.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(feature = "redis")]
mod adapter_support;

use livepool::Pool;
use livepool::protocol::{RpcManager, Server};
use livepool::tcp::{TcpOptions, connect_host};

/// The chain of `error`, one line a level, as a reporter prints it.
fn levels(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut levels = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        levels.push(cause.to_string());
        source = cause.source();
        assert!(levels.len() < 16, "a chain of 16 levels: {levels:?}");
    }
    levels
}

/// Asserts no level is empty and none contains the text of a level below it.
/// Returns the chain for further checks.
fn reads_once(error: &(dyn StdError + 'static)) -> Vec<String> {
    let levels = levels(error);
    for (i, upper) in levels.iter().enumerate() {
        assert!(!upper.trim().is_empty(), "an empty level in {levels:#?}");
        for lower in &levels[i + 1..] {
            assert!(
                !upper.contains(lower.as_str()),
                "{upper:?} repeats its cause {lower:?}; whole chain: {levels:#?}"
            );
        }
    }
    levels
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn quick_pool() -> livepool::Builder {
    Pool::builder()
        .wait_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(200))
}

#[tokio::test]
async fn a_refused_connect_reads_once_from_the_pool_to_the_socket() {
    let pool = quick_pool().build(RpcManager::new(closed_port())).unwrap();
    let err = pool.get().await.expect_err("nothing listens there");
    let chain = reads_once(&err);
    // Pool, cause, client, TCP, and the OS's own words at the bottom.
    assert!(chain.len() >= 4, "{chain:#?}");
    assert!(
        chain.last().unwrap().to_lowercase().contains("refused"),
        "{chain:#?}"
    );
}

#[tokio::test]
async fn a_host_name_that_does_not_resolve_reads_once() {
    let err = connect_host("no-such-host.invalid", 1, &TcpOptions::default())
        .await
        .expect_err("an .invalid name never resolves");
    let chain = reads_once(&err);
    assert!(chain[0].contains("no-such-host.invalid"), "{chain:#?}");
}

#[tokio::test]
async fn a_port_already_taken_reads_once() {
    let first = Server::new()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let err = Server::new()
        .bind(first.addr())
        .await
        .map(|_| ())
        .expect_err("the port is taken");
    let chain = reads_once(&err);
    assert_eq!(chain.len(), 2, "{chain:#?}");
}

#[test]
fn a_frame_with_a_bad_magic_reads_once() {
    use livepool::protocol::FrameCodec;
    use tokio_util::codec::Decoder;
    let mut codec = FrameCodec::new(1024);
    let mut bytes = bytes::BytesMut::from(&[0xde; livepool::protocol::HEADER_LEN][..]);
    let err = codec.decode(&mut bytes).expect_err("not a frame");
    reads_once(&err);
    let io: std::io::Error = std::io::Error::other(err);
    reads_once(&io);
}

#[test]
fn invalid_configs_read_once() {
    let err = Pool::builder()
        .max_size(0)
        .build(RpcManager::new(closed_port()))
        .map(|_| ())
        .expect_err("max_size 0");
    reads_once(&err);
}

#[cfg(feature = "redis")]
mod redis_errors {
    use super::*;
    use adapter_support::redis_child::RedisChild;
    use livepool::adapters::redis::{RedisManager, RedisManagerError};

    #[tokio::test]
    async fn a_refused_redis_connect_reads_once() {
        let pool = quick_pool()
            .build(RedisManager::new(closed_port()))
            .unwrap();
        let err = pool.get().await.expect_err("nothing listens there");
        let chain = reads_once(&err);
        assert!(chain.iter().any(|l| l.contains("Redis")), "{chain:#?}");
    }

    #[tokio::test]
    async fn a_wrong_redis_password_reads_once() {
        let server = RedisChild::start(16152, Some("right-password")).await;
        let wrong = redis::RedisConnectionInfo::default().set_password("wrong-password");
        let pool = quick_pool()
            .build(RedisManager::new(server.addr).connection_info(wrong))
            .unwrap();
        let err = pool.get().await.expect_err("wrong password");
        assert!(
            matches!(
                err,
                livepool::Error::Permanent(RedisManagerError::Handshake { .. })
            ),
            "{err:?}"
        );
        let chain = reads_once(&err);
        // The server's own words are in the chain, once.
        let said = chain
            .iter()
            .filter(|l| l.to_lowercase().contains("authentication failed"))
            .count();
        assert_eq!(said, 1, "{chain:#?}");
    }
}

#[cfg(feature = "postgres")]
mod postgres_errors {
    use super::*;
    use livepool::adapters::postgres::PgManager;

    #[tokio::test]
    async fn an_unknown_postgres_database_reads_once() {
        let mut config = PgManager::from_env().unwrap().config().clone();
        config.dbname("livepool_no_such_database");
        let addr = livepool::adapters::addr_from_env(
            livepool::adapters::postgres::ADDR_VAR,
            livepool::adapters::postgres::DEFAULT_ADDR,
        )
        .unwrap();
        let pool = quick_pool()
            .wait_timeout(Duration::from_secs(3))
            .build(PgManager::new(addr, config))
            .unwrap();
        let err = pool.get().await.expect_err("no such database");
        let chain = reads_once(&err);
        let said = chain
            .iter()
            .filter(|l| l.contains("livepool_no_such_database"))
            .count();
        assert_eq!(said, 1, "the server's message once: {chain:#?}");
    }

    #[tokio::test]
    async fn a_refused_postgres_connect_reads_once() {
        let config = PgManager::from_env().unwrap().config().clone();
        let pool = quick_pool()
            .build(PgManager::new(closed_port(), config))
            .unwrap();
        let err = pool.get().await.expect_err("nothing listens there");
        reads_once(&err);
    }
}

#[cfg(feature = "deadpool")]
#[tokio::test]
async fn a_deadpool_manager_that_cannot_connect_reads_once() {
    use livepool::adapters::deadpool::DeadpoolManager;
    let manager =
        deadpool_redis::Manager::new(format!("redis://{}/", closed_port())).expect("a URL");
    let pool = quick_pool().build(DeadpoolManager::new(manager)).unwrap();
    let err = pool.get().await.expect_err("nothing listens there");
    let chain = reads_once(&err);
    assert!(chain.iter().any(|l| l.contains("deadpool")), "{chain:#?}");
}

#[cfg(feature = "serde")]
#[test]
fn a_bad_environment_variable_reads_once() {
    use livepool::config_file::PoolConfig;
    let err = PoolConfig::from_vars("ORDERS_POOL", [("ORDERS_POOL_WAIT_TIMEOUT", "soon")])
        .expect_err("not a duration");
    let chain = reads_once(&err);
    assert!(chain[0].contains("ORDERS_POOL_WAIT_TIMEOUT"), "{chain:#?}");
}

#[test]
fn an_endpoint_set_with_a_bad_pool_config_reads_once() {
    use livepool::endpoints::Endpoints;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let err = Endpoints::builder()
        .pool(Pool::builder().max_size(0))
        .build(
            livepool::endpoints::discover::fixed([("a", closed_port())]),
            |addr: &SocketAddr| RpcManager::new(*addr),
        )
        .map(|_| ())
        .expect_err("max_size 0");
    let chain = reads_once(&err);
    assert_eq!(chain.len(), 2, "{chain:#?}");
}

#[cfg(feature = "http2")]
mod http2_errors {
    use super::*;
    use livepool::adapters::http2::Http2Manager;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_refused_http2_connect_reads_once() {
        let pool = quick_pool()
            .build(Http2Manager::for_addr(closed_port()))
            .unwrap();
        let err = pool.get().await.expect_err("nothing listens there");
        let chain = reads_once(&err);
        assert!(chain.iter().any(|l| l.contains("HTTP/2")), "{chain:#?}");
    }

    #[tokio::test]
    async fn an_http1_only_server_reads_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut preface = [0u8; 64];
                let _ = stream.read(&mut preface).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        let pool = quick_pool().build(Http2Manager::for_addr(addr)).unwrap();
        let err = pool.get().await.expect_err("no HTTP/2 there");
        assert!(matches!(err, livepool::Error::Permanent(_)), "{err:?}");
        let chain = reads_once(&err);
        // h2's own words (a frame it could not read) at the bottom, once.
        assert!(
            chain.last().unwrap().contains("frame with invalid size"),
            "{chain:#?}"
        );
    }
}
