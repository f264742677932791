//! The reference server, observed from clients: echo, heartbeats, every
//! misbehaviour mode, bounds, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use livepool::Condition;
use livepool::protocol::{
    ClientError, DEFAULT_MAX_BODY, Frame, FrameCodec, Handler, Reply, RpcConnection, Server,
    ServerHandle, ServerMode, Status,
};
use livepool::tcp::TcpOptions;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// Bound on every wait in these tests: far above what loopback needs.
const PATIENCE: Duration = Duration::from_secs(5);
/// Request timeout for probes that are expected to go unanswered.
const SHORT: Duration = Duration::from_millis(300);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn echo_server() -> ServerHandle {
    Server::new().bind(loopback()).await.expect("bind loopback")
}

async fn client(addr: SocketAddr) -> RpcConnection {
    let opts = TcpOptions {
        nodelay: true,
        connect_timeout: PATIENCE,
        ..TcpOptions::default()
    };
    let mut conn = RpcConnection::connect(addr, &opts, DEFAULT_MAX_BODY)
        .await
        .expect("connect to loopback server");
    conn.set_request_timeout(Some(PATIENCE));
    conn
}

/// Waits until `check` holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A handler that counts its calls, to prove heartbeats never reach it.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Handler for Counting {
    async fn handle(&self, request: Bytes) -> Reply {
        self.0.fetch_add(1, Ordering::SeqCst);
        if request.as_ref() == b"fail" {
            Reply::error(Status::BadRequest, "no thanks")
        } else {
            Reply::ok(request)
        }
    }
}

/// A server with a [`Counting`] handler and one client connected to it.
async fn counting_server() -> (Counting, ServerHandle, RpcConnection) {
    let handler = Counting::default();
    let server = Server::with_handler(handler.clone())
        .bind(loopback())
        .await
        .unwrap();
    let conn = client(server.addr()).await;
    (handler, server, conn)
}

#[tokio::test]
async fn echo_answers_with_the_request_body() {
    let server = echo_server().await;
    let mut conn = client(server.addr()).await;
    for body in [&b"hello"[..], b"", &[0u8; 70_000]] {
        let reply = conn.call(Bytes::copy_from_slice(body)).await.unwrap();
        assert_eq!(reply.as_ref(), body);
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(conn.condition(), Condition::Ready);
}

#[tokio::test]
async fn handler_status_reaches_the_client_and_keeps_the_connection() {
    let (handler, _server, mut conn) = counting_server().await;
    match conn.call(Bytes::from_static(b"fail")).await {
        Err(ClientError::Rejected { status, body }) => {
            assert_eq!(status, Status::BadRequest);
            assert_eq!(body, "no thanks");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(conn.condition(), Condition::Ready);
    assert_eq!(conn.call(Bytes::from_static(b"ok")).await.unwrap(), "ok");
    assert_eq!(handler.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn heartbeats_are_answered_without_the_handler_and_not_counted_as_requests() {
    let (handler, server, mut conn) = counting_server().await;
    for _ in 0..3 {
        conn.heartbeat().await.unwrap();
    }
    conn.call(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(server.heartbeats(), 3);
    assert_eq!(server.requests(), 1);
    assert_eq!(
        handler.0.load(Ordering::SeqCst),
        1,
        "handler saw only the call"
    );
    assert_eq!(conn.condition(), Condition::Ready);
}

#[tokio::test]
async fn ignore_heartbeats_mode_lets_calls_through_but_not_heartbeats() {
    let server = echo_server().await;
    let mut conn = client(server.addr()).await;
    server.set_mode(ServerMode::IgnoreHeartbeats);
    assert_eq!(
        conn.call(Bytes::from_static(b"still")).await.unwrap(),
        "still"
    );
    conn.set_request_timeout(Some(SHORT));
    assert!(matches!(
        conn.heartbeat().await,
        Err(ClientError::TimedOut { .. })
    ));
    assert_eq!(
        conn.condition(),
        Condition::Dirty,
        "heartbeat left in flight"
    );
    assert_eq!(server.heartbeats(), 1, "received, just not answered");
    assert_eq!(server.requests(), 1);

    server.set_mode(ServerMode::Normal);
    let mut fresh = client(server.addr()).await;
    fresh.heartbeat().await.unwrap();
}

#[tokio::test]
async fn hang_mode_answers_nothing_but_keeps_sockets_open() {
    let server = echo_server().await;
    let mut caller = client(server.addr()).await;
    let mut prober = client(server.addr()).await;
    caller.call(Bytes::from_static(b"before")).await.unwrap();
    server.set_mode(ServerMode::Hang);
    caller.set_request_timeout(Some(SHORT));
    prober.set_request_timeout(Some(SHORT));
    assert!(matches!(
        caller.call(Bytes::from_static(b"x")).await,
        Err(ClientError::TimedOut { .. })
    ));
    assert!(matches!(
        prober.heartbeat().await,
        Err(ClientError::TimedOut { .. })
    ));
    // Out of step but not closed: the server still holds both sockets.
    assert_eq!(caller.condition(), Condition::Dirty);
    assert_eq!(prober.condition(), Condition::Dirty);
    assert_eq!(server.connections(), 2);
    assert_eq!((server.requests(), server.heartbeats()), (2, 1));

    // A raw socket sees neither data nor EOF.
    let mut raw = TcpStream::connect(server.addr()).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        timeout(SHORT, raw.read(&mut byte)).await.is_err(),
        "a hung server must not close the socket"
    );
}

#[tokio::test]
async fn slow_mode_answers_after_the_delay() {
    let server = echo_server().await;
    let mut conn = client(server.addr()).await;
    let delay = Duration::from_millis(300);
    server.set_mode(ServerMode::Slow(delay));
    let started = Instant::now();
    assert_eq!(
        conn.call(Bytes::from_static(b"late")).await.unwrap(),
        "late"
    );
    let call_took = started.elapsed();
    let started = Instant::now();
    conn.heartbeat().await.unwrap();
    let heartbeat_took = started.elapsed();
    for took in [call_took, heartbeat_took] {
        assert!(took >= delay, "answered after {took:?}, before the delay");
        assert!(took < delay + PATIENCE, "answered after {took:?}");
    }
    assert_eq!(conn.condition(), Condition::Ready);
}

#[tokio::test]
async fn wrong_id_mode_is_a_protocol_error_that_breaks_the_connection() {
    let server = echo_server().await;
    let mut conn = client(server.addr()).await;
    conn.call(Bytes::from_static(b"fine")).await.unwrap();
    server.set_mode(ServerMode::WrongId);
    match conn.call(Bytes::from_static(b"x")).await {
        Err(ClientError::UnexpectedReply {
            expected_id,
            got_id,
        }) => assert_ne!(expected_id, got_id),
        other => panic!("expected UnexpectedReply, got {other:?}"),
    }
    assert_eq!(conn.condition(), Condition::Broken);
    assert!(matches!(
        conn.call(Bytes::from_static(b"again")).await,
        Err(ClientError::Unusable {
            condition: Condition::Broken
        })
    ));

    let mut prober = client(server.addr()).await;
    assert!(matches!(
        prober.heartbeat().await,
        Err(ClientError::UnexpectedReply { .. })
    ));
    assert_eq!(prober.condition(), Condition::Broken);
}

#[tokio::test]
async fn mode_changes_apply_to_open_connections_at_once() {
    let server = echo_server().await;
    let mut conn = client(server.addr()).await;
    conn.heartbeat().await.unwrap();
    server.set_mode(ServerMode::Hang);
    assert_eq!(server.mode(), ServerMode::Hang);
    conn.set_request_timeout(Some(SHORT));
    assert!(matches!(
        conn.heartbeat().await,
        Err(ClientError::TimedOut { .. })
    ));
}

#[tokio::test]
async fn shutdown_closes_connections_and_frees_the_port() {
    let server = echo_server().await;
    let addr = server.addr();
    let mut conn = client(addr).await;
    conn.heartbeat().await.unwrap();
    eventually("one live connection", || server.connections() == 1).await;

    timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown finishes");
    assert_eq!(server.connections(), 0);
    let err = conn.heartbeat().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "expected EOF or reset, got {err:?}"
    );
    assert_eq!(conn.condition(), Condition::Broken);

    // A restart on the very same port.
    let restarted = Server::new().bind(addr).await.expect("port is free again");
    assert_eq!(restarted.addr(), addr);
    let mut again = client(addr).await;
    assert_eq!(
        again.call(Bytes::from_static(b"back")).await.unwrap(),
        "back"
    );
    restarted.shutdown().await;
    restarted.shutdown().await; // idempotent
}

#[tokio::test]
async fn connections_counts_only_open_ones() {
    let server = echo_server().await;
    let first = client(server.addr()).await;
    let _second = client(server.addr()).await;
    eventually("two live connections", || server.connections() == 2).await;
    drop(first);
    eventually("one live connection", || server.connections() == 1).await;
}

#[tokio::test]
async fn oversize_request_closes_only_that_connection() {
    let server = Server::new().max_body(16).bind(loopback()).await.unwrap();
    let mut greedy = client(server.addr()).await;
    let mut modest = client(server.addr()).await;
    let err = greedy.call(Bytes::from(vec![1u8; 100])).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "expected the server to hang up, got {err:?}"
    );
    assert_eq!(greedy.condition(), Condition::Broken);
    assert_eq!(
        modest.call(Bytes::from_static(b"small")).await.unwrap(),
        "small"
    );
}

struct Bloated;

impl Handler for Bloated {
    async fn handle(&self, _request: Bytes) -> Reply {
        Reply::ok(Bytes::from(vec![0u8; 1000]))
    }
}

#[tokio::test]
async fn oversize_handler_reply_becomes_a_server_error() {
    let server = Server::with_handler(Bloated)
        .max_body(64)
        .bind(loopback())
        .await
        .unwrap();
    let mut conn = client(server.addr()).await;
    match conn.call(Bytes::from_static(b"x")).await {
        Err(ClientError::Rejected { status, .. }) => assert_eq!(status, Status::ServerError),
        other => panic!("expected a ServerError reply, got {other:?}"),
    }
    assert_eq!(conn.condition(), Condition::Ready);
}

#[tokio::test]
async fn in_flight_limit_stops_reading_until_replies_leave() {
    let server = Server::new()
        .max_in_flight(2)
        .bind(loopback())
        .await
        .unwrap();
    server.set_mode(ServerMode::Slow(Duration::from_millis(400)));
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let mut raw = Framed::new(stream, FrameCodec::default());
    for id in 1..=4 {
        raw.send(Frame::request(id, Bytes::from_static(b"p")))
            .await
            .unwrap();
    }
    eventually("two requests read", || server.requests() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.requests(), 2, "the rest waits behind the limit");
    let mut ids = Vec::new();
    for _ in 0..4 {
        let reply = timeout(PATIENCE, raw.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        ids.push(reply.id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn bind_failure_is_a_typed_error_naming_the_address() {
    let server = echo_server().await;
    // A second listener on a port with a live listener is refused even with SO_REUSEADDR.
    let err = Server::new().bind(server.addr()).await.unwrap_err();
    assert_eq!(err.addr, server.addr());
    assert!(err.to_string().contains(&server.addr().to_string()));
}
