//! The going-away event and server roles: a graceful shutdown finishes what
//! is in flight and turns connections `Draining`; a server's role travels in
//! heartbeat replies, and a manager that tracks roles evicts on a change.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use livepool::protocol::{
    ClientError, DEFAULT_MAX_BODY, RpcConnection, RpcManager, Server, ServerHandle, ServerMode,
};
use livepool::tcp::TcpOptions;
use livepool::{Condition, EvictReason, Manager, Pool, Role};

/// Bound on every wait in these tests: far above what loopback needs.
const PATIENCE: Duration = Duration::from_secs(5);

async fn server() -> ServerHandle {
    Server::new()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind loopback")
}

async fn client(addr: SocketAddr) -> RpcConnection {
    let mut conn = RpcConnection::connect(addr, &TcpOptions::default(), DEFAULT_MAX_BODY)
        .await
        .expect("connect to loopback server");
    conn.set_request_timeout(Some(PATIENCE));
    conn
}

/// Waits until `check` holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_a_call_in_flight_and_marks_the_connection_draining() {
    let server = server().await;
    server.set_mode(ServerMode::Slow(Duration::from_millis(300)));
    let mut conn = client(server.addr()).await;
    let call = tokio::spawn(async move {
        let reply = conn.call(Bytes::from_static(b"last")).await;
        (reply, conn)
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // the request is at the server
    let shutdown = tokio::spawn(async move {
        server.shutdown_gracefully(PATIENCE).await;
        server
    });
    let (reply, mut conn) = call.await.unwrap();
    assert_eq!(reply.expect("the call in flight is answered"), "last");
    assert!(conn.is_going_away());
    assert_eq!(conn.condition(), Condition::Draining);
    assert_eq!(conn.known_condition(), Condition::Draining);
    // The server waits for the client to close, not for the grace period.
    let started = Instant::now();
    drop(conn);
    let server = shutdown.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn an_idle_connection_learns_of_the_going_away_from_its_cheap_check() {
    let server = server().await;
    let mut conn = client(server.addr()).await;
    conn.heartbeat().await.unwrap();
    assert_eq!(conn.condition(), Condition::Ready);
    let shutdown = {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let graceful = server.shutdown_gracefully(PATIENCE);
            tokio::pin!(graceful);
            tokio::select! {
                () = &mut graceful => {}
                _ = rx => graceful.await,
            }
        });
        (tx, task)
    };
    eventually("the going-away frame to arrive", || {
        conn.condition() == Condition::Draining
    })
    .await;
    // Draining still serves its holder: the server answers until we close.
    assert_eq!(conn.call(Bytes::from_static(b"x")).await.unwrap(), "x");
    drop(conn);
    drop(shutdown.0);
    tokio::time::timeout(PATIENCE, shutdown.1)
        .await
        .expect("the server closes once its client has")
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_gives_up_on_clients_that_stay_after_the_grace_period() {
    let server = server().await;
    let mut conn = client(server.addr()).await;
    conn.heartbeat().await.unwrap();
    let started = Instant::now();
    server.shutdown_gracefully(Duration::from_millis(200)).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(190), "waited {took:?}");
    assert!(took < Duration::from_secs(3), "waited {took:?}");
    assert!(matches!(
        conn.call(Bytes::from_static(b"late")).await,
        Err(ClientError::Closed | ClientError::Io(_))
    ));
}

#[tokio::test]
async fn a_pool_closes_drained_members_as_drained_not_broken() {
    let server = server().await;
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(4)
        .heartbeat_interval(Duration::from_secs(60))
        .build(RpcManager::new(server.addr()))
        .unwrap();
    eventually("four idle members", || pool.status().idle == 4).await;
    let shutdown = tokio::spawn(async move { server.shutdown_gracefully(PATIENCE).await });
    eventually("every member drained", || {
        pool.status().counters.evicted.get(EvictReason::Drained) >= 4
    })
    .await;
    let evicted = pool.status().counters.evicted;
    assert_eq!(evicted.get(EvictReason::BrokenWhileIdle), 0, "{evicted:?}");
    assert_eq!(evicted.get(EvictReason::BrokenOnCheckout), 0, "{evicted:?}");
    pool.close();
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("the server closes once the pool has")
        .unwrap();
}

#[tokio::test]
async fn heartbeat_replies_carry_the_servers_role() {
    let server = server().await;
    let mut conn = client(server.addr()).await;
    assert_eq!(
        conn.role(),
        None,
        "nothing known before the first heartbeat"
    );
    conn.heartbeat().await.unwrap();
    assert_eq!(conn.role(), Some(Role::Primary));
    server.set_role(Role::Replica);
    conn.heartbeat().await.unwrap();
    assert_eq!(conn.role(), Some(Role::Replica));
    assert_eq!(
        conn.role_changed(),
        Some((Some(Role::Primary), Some(Role::Replica)))
    );
    server.set_role(None);
    conn.heartbeat().await.unwrap();
    assert_eq!(conn.role(), None);
}

#[tokio::test]
async fn a_manager_tracking_roles_fails_the_heartbeat_and_drains_on_a_role_change() {
    let server = server().await;
    let tracking = RpcManager::new(server.addr()).track_roles(true);
    let plain = RpcManager::new(server.addr());
    let mut tracked = tracking.connect().await.unwrap();
    let mut untracked = plain.connect().await.unwrap();
    assert_eq!(tracking.role(&tracked), Some(Role::Primary));
    assert_eq!(
        plain.role(&untracked),
        None,
        "not tracking: no role reported"
    );

    server.set_role(Role::ReadOnly);
    match tracking.heartbeat(&mut tracked).await {
        Err(err @ ClientError::RoleChanged { .. }) => {
            assert_eq!(
                err.to_string(),
                "the server's role changed from primary to read_only"
            );
        }
        other => panic!("expected RoleChanged, got {other:?}"),
    }
    // It stays failed (a re-probe must not pass), and it is never handed out.
    assert!(tracking.heartbeat(&mut tracked).await.is_err());
    assert_eq!(tracking.condition(&mut tracked), Condition::Draining);
    assert_eq!(tracking.role(&tracked), Some(Role::ReadOnly));
    plain.heartbeat(&mut untracked).await.unwrap();
    assert_eq!(plain.condition(&mut untracked), Condition::Ready);
}
