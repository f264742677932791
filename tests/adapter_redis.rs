//! `RedisManager` against the real Redis server named by LIVEPOOL_REDIS_ADDR
//! (default 127.0.0.1:6379), directly and through the fault proxy.
//!
//! Every test names its connections with a unique `CLIENT SETNAME`, so the
//! server's own `CLIENT LIST` can be compared with what the pool holds.

#![cfg(feature = "redis")]

mod adapter_support;

use std::net::SocketAddr;
use std::time::Duration;

use adapter_support::{
    SLACK, blackhole_and_reset_idle_members, builder, kill_an_idle_member_on_the_server,
    return_and_watch_it_heartbeat, return_cut_off_member, unique_name,
};
use livepool::Cause;
use livepool::adapters::redis::{ADDR_VAR, RedisConnection, RedisManager, RedisManagerError};
use livepool::testing::FaultProxy;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

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

/// The server's id for the connection `conn`.
async fn client_id(conn: &mut RedisConnection) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(conn)
        .await
        .expect("CLIENT ID")
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
    // Idle for a few intervals: the sentinel PINGs it, and it stays.
    let status = return_and_watch_it_heartbeat(&pool, conn).await;
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
    // Its server-side session goes with it, cut-off command and all.
    return_cut_off_member(&pool, conn, &name, async || {
        server_count(&mut admin, &name).await
    })
    .await;
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

    let key = format!("{name}:counter");
    let commands = blackhole_and_reset_idle_members(
        &pool,
        &proxy,
        &name,
        RedisConnection::local_addr,
        async || server_count(&mut admin, &name).await,
        async |conn: &mut RedisConnection, _| {
            let _: i64 = conn.incr(&key, 1).await.map_err(|e| format!("INCR: {e}"))?;
            Ok(())
        },
    )
    .await;
    let count: i64 = pool.get().await.unwrap().get_del(&key).await.unwrap();
    assert_eq!(
        count as u64, commands,
        "every INCR the caller made counted once"
    );
}

#[tokio::test]
async fn a_member_killed_by_the_server_is_noticed_before_anyone_borrows_it() {
    let mut admin = admin().await;
    let name = unique_name("kill");
    let pool = builder()
        .build(RedisManager::from_env().unwrap().client_name(&name))
        .unwrap();
    let mut killer = admin.clone();
    kill_an_idle_member_on_the_server(
        &pool,
        &name,
        async |conn: &mut RedisConnection| client_id(conn).await,
        async |victim| {
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(victim)
                .query_async(&mut killer)
                .await
                .unwrap();
            assert_eq!(killed, 1);
        },
        async || server_count(&mut admin, &name).await,
    )
    .await;
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

/// A redis-server of the test's own (with a password, if given), ended by pid on drop.
struct PasswordServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl PasswordServer {
    async fn start(port: u16, password: Option<&str>) -> Self {
        let port_arg = port.to_string();
        let mut command = std::process::Command::new("redis-server");
        command.args(["--port", &port_arg, "--bind", "127.0.0.1", "--save", ""]);
        command.args(["--appendonly", "no"]);
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run this test");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        PasswordServer { child, addr }
    }
}

impl Drop for PasswordServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_wrong_or_missing_password_fails_the_checkout_at_once() {
    let server = PasswordServer::start(16150, Some("right-password")).await;
    let wrong = redis::RedisConnectionInfo::default().set_password("wrong-password");
    for (what, manager) in [
        (
            "wrong password",
            RedisManager::new(server.addr).connection_info(wrong),
        ),
        ("no password", RedisManager::new(server.addr)),
    ] {
        let pool = builder()
            .wait_timeout(Duration::from_secs(10))
            .build(manager)
            .unwrap();
        let started = std::time::Instant::now();
        let err = pool.get().await.expect_err(what);
        assert!(
            matches!(err, livepool::Error::Permanent(_)),
            "{what}: {err:?}"
        );
        // Not the whole 10 s wait_timeout.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    let right = redis::RedisConnectionInfo::default().set_password("right-password");
    let pool = builder()
        .build(RedisManager::new(server.addr).connection_info(right))
        .unwrap();
    drop(pool.get().await.expect("the right password works"));
}

#[tokio::test]
async fn a_paused_server_admits_no_member() {
    use livepool::Manager;
    let server = PasswordServer::start(16151, None).await;
    let manager = RedisManager::new(server.addr);
    let mut admin = manager.connect().await.expect("admin connection");
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .exec_async(&mut admin)
        .await
        .unwrap();
    // The handshake alone would succeed now; the proving PING must not.
    let paused = timeout(Duration::from_millis(700), manager.connect()).await;
    assert!(
        !matches!(paused, Ok(Ok(_))),
        "a member was admitted while the server serves no command"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    manager
        .connect()
        .await
        .expect("served again after the pause");
}
