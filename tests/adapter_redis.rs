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
        Some(Cause::Connect(e @ RedisManagerError::Connect(tcp))) => {
            // The address is named once, by the TCP level below this one.
            assert!(!e.to_string().contains(&addr.to_string()), "{e}");
            assert_eq!(tcp.addr(), Some(addr));
            assert!(tcp.to_string().contains(&addr.to_string()), "{tcp}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// A redis-server of the test's own (with a password, if given), ended by pid on drop.
use adapter_support::redis_child::RedisChild as PasswordServer;

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

/// A `redis://` URL with a host name, a database and a password: the
/// server resolves `localhost`, the handshake selects database 2 (a key
/// written there is not in database 0), and the pool's guard itself is
/// what `query_async(&mut conn)` and code generic over `ConnectionLike`
/// take.
#[tokio::test]
async fn a_url_with_a_host_name_database_and_password_is_honoured() {
    use redis::aio::ConnectionLike;

    let server = PasswordServer::start(16210, Some("url-secret")).await;
    let url = format!("redis://:url-secret@localhost:{}/2", server.addr.port());
    let manager = RedisManager::from_url(&url).expect("a valid URL");
    assert_eq!((manager.host(), manager.port()), ("localhost", 16210));
    assert_eq!(manager.redis_settings().db(), 2);
    let pool = builder().build(manager).unwrap();

    /// Client code written against the `redis` crate's trait, not livepool.
    async fn incr_twice(conn: &mut impl ConnectionLike, key: &str) -> redis::RedisResult<i64> {
        let _: i64 = redis::cmd("INCR").arg(key).query_async(conn).await?;
        redis::cmd("INCR").arg(key).query_async(conn).await
    }
    let mut conn = pool.get().await.expect("borrow over a resolved name");
    assert_eq!(conn.get_db(), 2);
    assert_eq!(incr_twice(&mut conn, "isolated").await.expect("INCR"), 2);
    let db: i64 = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async::<String>(&mut conn)
        .await
        .expect("CLIENT INFO")
        .split(' ')
        .find_map(|field| field.strip_prefix("db="))
        .and_then(|db| db.parse().ok())
        .expect("a db= field");
    assert_eq!(db, 2, "the server says this connection is on database 2");
    drop(conn);

    // The same key seen from database 0 (the URL without a path) and 2.
    let url0 = format!("redis://:url-secret@localhost:{}", server.addr.port());
    let mut other = RedisManager::from_url(&url0)
        .unwrap()
        .connect_direct()
        .await;
    let in_db0: Option<i64> = other.get("isolated").await.expect("GET in db 0");
    assert_eq!(in_db0, None, "database 2's key leaked into database 0");
    let _: () = redis::cmd("SELECT")
        .arg(2)
        .query_async(&mut other)
        .await
        .unwrap();
    let in_db2: Option<i64> = other.get("isolated").await.expect("GET in db 2");
    assert_eq!(in_db2, Some(2));
}

/// An ACL user named in the URL logs in as that user (`AUTH user pass`);
/// the same URL with a wrong password is a permanent error, at once.
#[tokio::test]
async fn a_url_username_and_password_log_in_as_that_acl_user() {
    let server = PasswordServer::start(16211, Some("admin-secret")).await;
    let admin_url = format!("redis://:admin-secret@127.0.0.1:{}", server.addr.port());
    let mut admin = RedisManager::from_url(&admin_url)
        .unwrap()
        .connect_direct()
        .await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">app-secret", "~*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");

    let url = format!("redis://app:app-secret@localhost:{}/0", server.addr.port());
    let pool = builder()
        .build(RedisManager::from_url(&url).unwrap())
        .unwrap();
    let mut conn = pool.get().await.expect("app logs in");
    let whoami: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(whoami, "app");
    drop(conn);

    let wrong = format!("redis://app:wrong@localhost:{}/0", server.addr.port());
    let pool = builder()
        .wait_timeout(Duration::from_secs(10))
        .build(RedisManager::from_url(&wrong).unwrap())
        .unwrap();
    let started = std::time::Instant::now();
    let err = pool.get().await.expect_err("a wrong password");
    assert!(matches!(err, livepool::Error::Permanent(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A command cut off through the guard (`query_async(&mut conn)` on the
/// `Pooled` itself) is tracked like one on the connection: dirty, evicted.
#[tokio::test]
async fn a_command_cut_off_through_the_guard_still_marks_the_member_dirty() {
    let name = unique_name("guard-cutoff");
    let pool = builder()
        .build(RedisManager::from_env().unwrap().client_name(&name))
        .unwrap();
    let mut conn = pool.get().await.expect("borrow");
    let mut blpop = redis::cmd("BLPOP");
    blpop.arg(format!("{name}:never")).arg(5);
    let blocked = blpop.query_async::<redis::Value>(&mut conn);
    assert!(timeout(Duration::from_millis(50), blocked).await.is_err());
    assert_eq!(conn.condition(), livepool::Condition::Dirty);
    drop(conn);
    let status = pool.status();
    assert_eq!(status.counters.evicted.total(), 1, "{status:?}");
}

#[test]
fn urls_the_manager_cannot_honour_are_typed_errors() {
    use livepool::adapters::redis::RedisConfigError;
    for (url, ok) in [
        ("redis://localhost", true),
        ("redis://[::1]:6380/4", true),
        ("redis+unix:///run/redis.sock", false),
        ("redis://localhost/not-a-number", false),
        ("memcached://localhost", false),
    ] {
        match RedisManager::from_url(url) {
            Ok(_) => assert!(ok, "{url} accepted"),
            Err(e) => {
                assert!(!ok, "{url}: {e}");
                assert!(matches!(
                    e,
                    RedisConfigError::UnixSocket(_) | RedisConfigError::Invalid(_)
                ));
            }
        }
    }
    let ipv6 = RedisManager::from_url("redis://[::1]:6380/4").unwrap();
    assert_eq!(ipv6.addr(), "[::1]:6380".parse().unwrap());
    assert_eq!(ipv6.redis_settings().db(), 4);
}

/// A manager's direct connection (outside any pool), failing the test with
/// the whole error chain if the server is not there.
trait ConnectDirect {
    async fn connect_direct(self) -> RedisConnection;
}

impl ConnectDirect for RedisManager {
    async fn connect_direct(self) -> RedisConnection {
        use livepool::Manager;
        match timeout(SLACK, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => panic!("{}", chain(&e)),
            Err(_) => panic!("connect to {} timed out", self.host()),
        }
    }
}

/// An error and each of its causes, for a failure message.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

/// TLS against a redis-server child started with a CA and certificate the
/// test makes itself (`rcgen`).
#[cfg(feature = "redis-tls")]
mod tls {
    use super::*;
    use livepool::Manager;
    use livepool::adapters::redis::RedisTls;
    use livepool::testing::Fault;
    use redis::aio::ConnectionLike;

    /// A CA, a server certificate it signed for `localhost` and 127.0.0.1,
    /// written where redis-server can read them.
    struct Certificates {
        dir: std::path::PathBuf,
        ca_pem: String,
    }

    impl Certificates {
        fn make(test: &str) -> Self {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "livepool test CA");
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            let server_key = KeyPair::generate().unwrap();
            let server_params =
                CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                    .unwrap();
            let server = server_params.signed_by(&server_key, &issuer).unwrap();
            let dir = std::env::temp_dir().join(unique_name(test));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
            std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
            std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
            Certificates {
                dir,
                ca_pem: ca.pem(),
            }
        }

        fn path(&self, file: &str) -> String {
            self.dir.join(file).to_str().unwrap().to_owned()
        }
    }

    impl Drop for Certificates {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn tls_server(port: u16, certs: &Certificates) -> PasswordServer {
        let port = port.to_string();
        let (cert, key, ca) = (
            certs.path("server.crt"),
            certs.path("server.key"),
            certs.path("ca.crt"),
        );
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ];
        PasswordServer::start_with(port.parse().unwrap(), &args).await
    }

    /// `rediss://` with a host name and database, trusting the test's CA:
    /// commands run, idle members heartbeat over TLS, and the TLS session
    /// runs on the crate's own socket: a member whose path is reset (the
    /// fault proxy between pool and server) is evicted and replaced.
    #[tokio::test]
    async fn rediss_with_the_right_ca_serves_and_heals() {
        let certs = Certificates::make("tls-ok");
        let server = tls_server(16212, &certs).await;
        let url = format!("rediss://localhost:{}/1", server.addr.port());
        let manager = RedisManager::from_url(&url)
            .unwrap()
            .tls(RedisTls::from_ca_file(certs.path("ca.crt")).unwrap());
        assert!(manager.uses_tls());
        let pool = builder().build(manager).unwrap();
        let mut conn = pool.get().await.expect("a TLS member");
        let _: () = conn.set("tls-key", "over tls").await.expect("SET");
        let value: String = redis::cmd("GET")
            .arg("tls-key")
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(value, "over tls");
        assert_eq!(conn.get_db(), 1);
        let status = return_and_watch_it_heartbeat(&pool, conn).await;
        assert!(status.counters.probes_ok >= 2, "{status:?}");

        // Through the fault proxy, by IP, the certificate checked against
        // the name it was issued for.
        let proxy = FaultProxy::start(server.addr).await.expect("proxy");
        let tls = RedisTls::from_ca_pem(certs.ca_pem.as_bytes())
            .unwrap()
            .server_name("localhost")
            .unwrap();
        let pool = builder()
            .build(RedisManager::new(proxy.addr()).tls(tls))
            .unwrap();
        let mut conn = pool.get().await.expect("a TLS member through the proxy");
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        drop(conn);
        proxy.set_fault(Fault::Reset);
        adapter_support::wait_for_status(&pool, "the reset member evicted", |s| {
            s.counters.evicted.total() >= 1
        })
        .await;
        proxy.set_fault(Fault::Pass);
        let mut conn = pool.get().await.expect("a fresh TLS member");
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        assert_eq!(pong, "PONG");
    }

    /// A certificate that does not verify (the system's roots do not know
    /// the test's CA; a CA that is right for a name that is wrong) is a
    /// permanent error: the checkout fails at once, not after wait_timeout.
    #[tokio::test]
    async fn a_rejected_certificate_is_a_permanent_error() {
        let certs = Certificates::make("tls-reject");
        let server = tls_server(16213, &certs).await;
        let port = server.addr.port();
        let right_ca = || RedisTls::from_ca_pem(certs.ca_pem.as_bytes()).unwrap();
        let other_ca = Certificates::make("tls-other-ca");
        for (what, manager) in [
            (
                "system roots",
                RedisManager::from_url(&format!("rediss://localhost:{port}")).unwrap(),
            ),
            (
                "another CA",
                RedisManager::from_url(&format!("redis://localhost:{port}"))
                    .unwrap()
                    .tls(RedisTls::from_ca_pem(other_ca.ca_pem.as_bytes()).unwrap()),
            ),
            (
                "a name the certificate does not cover",
                RedisManager::new(server.addr)
                    .tls(right_ca().server_name("cache.example").unwrap()),
            ),
        ] {
            let err = manager.connect().await.expect_err(what);
            assert!(manager.is_permanent(&err), "{what}: {}", chain(&err));
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
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{what}: {:?}",
                started.elapsed()
            );
        }
        // The right CA works against the same server.
        let manager = RedisManager::new(server.addr).tls(right_ca());
        drop(manager.connect().await.expect("the right CA"));
    }

    /// A server that accepts the TCP connection but never answers the TLS
    /// handshake: bounded by the connect timeout, and not permanent.
    #[tokio::test]
    async fn a_silent_tls_handshake_is_bounded_and_transient() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let tcp =
            livepool::tcp::TcpOptions::default().with_connect_timeout(Duration::from_millis(300));
        let manager = RedisManager::new(addr).tcp_options(tcp).tls(
            RedisTls::from_ca_pem(Certificates::make("tls-silent").ca_pem.as_bytes()).unwrap(),
        );
        let started = std::time::Instant::now();
        let err = timeout(SLACK, manager.connect())
            .await
            .expect("bounded by the connect timeout")
            .expect_err("no handshake");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(&err, RedisManagerError::Tls { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
            "{}",
            chain(&err)
        );
        assert!(!manager.is_permanent(&err));
    }
}

/// A member of an endpoint set of Redis servers is a `ConnectionLike` too.
#[tokio::test]
async fn an_endpoint_set_member_takes_redis_commands_as_it_is() {
    use livepool::endpoints::{Endpoints, Want, discover};
    let addr = server_addr();
    let set = Endpoints::builder()
        .name("redis-set")
        .pool(builder())
        .build(discover::fixed([(addr, addr)]), |addr: &SocketAddr| {
            RedisManager::new(*addr)
        })
        .unwrap();
    let mut member = set.get(Want::Any).await.expect("a member");
    let pong: String = redis::cmd("PING").query_async(&mut member).await.unwrap();
    assert_eq!(pong, "PONG");
}
