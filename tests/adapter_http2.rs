//! `Http2Manager` against an in-process hyper HTTP/2 server, directly and
//! through the fault proxy: borrow, request, return; a server whose HTTP/2
//! stack stops answering (its connection task stalled, or the path
//! blackholed) is evicted within a heartbeat interval plus its timeout; a
//! graceful `GOAWAY` drains members with no caller error, and they are
//! replaced.
//!
//! The stalled-server test runs in virtual time, with exact bounds; the
//! rest in real time with generous slack, as the shared adapter scenarios
//! (tests/adapter_support) are written.

#![cfg(feature = "http2")]

mod adapter_support;
mod paused_clock;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapter_support::{
    HEARTBEAT_TIMEOUT, INTERVAL, SLACK, blackhole_and_reset_idle_members, builder,
    return_and_watch_it_heartbeat, wait_for_status,
};
use bytes::Bytes;
use h2::client::ResponseFuture;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use livepool::adapters::http2::{Http2Connection, Http2Manager, Http2ManagerError, Transport};
use livepool::testing::FaultProxy;
use livepool::{Condition, EvictReason, Manager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// How long the server takes to answer `/slow`: long enough for a test to
/// act while the request is in flight.
const SLOW: Duration = Duration::from_millis(300);

/// An HTTP/2 server (hyper, prior knowledge) on a loopback port, serving
/// `/slow` after [`SLOW`] and every other path at once, with the body
/// `hello <path>`. It counts its open connections, and can send a graceful
/// `GOAWAY` on, or stall, every connection open at the time, while it keeps
/// accepting new ones (as a server with a maximum connection age does, or
/// one replica of several restarting).
struct Server {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    go_away: watch::Sender<u64>,
    stall: watch::Sender<u64>,
    /// Aborted on drop; the connection tasks live in its `JoinSet` and end
    /// with it.
    accept: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let (go_away, _) = watch::channel(0);
        let (stall, _) = watch::channel(0);
        let accept = {
            let (open, go_away, stall) = (open.clone(), go_away.clone(), stall.clone());
            tokio::spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    while connections.try_join_next().is_some() {}
                    connections.spawn(serve(
                        stream,
                        Open::count(&open),
                        go_away.subscribe(),
                        stall.subscribe(),
                    ));
                }
            })
        };
        Server {
            addr,
            open,
            go_away,
            stall,
            accept,
        }
    }

    /// HTTP/2 connections open at the server.
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// hyper's graceful shutdown on every connection open now: `GOAWAY`
    /// with `NO_ERROR`, streams in flight finish, then the connection closes.
    fn go_away(&self) {
        self.go_away.send_modify(|n| *n += 1);
    }

    /// Every connection open now stops being polled: its socket stays open
    /// and the kernel still ACKs, but its HTTP/2 stack answers nothing (a
    /// hung server process).
    fn stall(&self) {
        self.stall.send_modify(|n| *n += 1);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One open connection, counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn count(open: &Arc<AtomicUsize>) -> Open {
        open.fetch_add(1, Ordering::SeqCst);
        Open(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    _open: Open,
    mut go_away: watch::Receiver<u64>,
    mut stall: watch::Receiver<u64>,
) {
    let service = service_fn(
        |request: hyper::Request<hyper::body::Incoming>| async move {
            let path = request.uri().path().to_owned();
            if path == "/slow" {
                tokio::time::sleep(SLOW).await;
            }
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(format!(
                "hello {path}"
            )))))
        },
    );
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            Ok(()) = go_away.changed() => conn.as_mut().graceful_shutdown(),
            // Holds the connection, socket and all, without polling it.
            Ok(()) = stall.changed() => std::future::pending::<()>().await,
        }
    }
}

fn manager(addr: SocketAddr) -> Http2Manager {
    Http2Manager::for_addr(addr)
}

/// Reads a whole response; the body is small.
async fn read(response: ResponseFuture) -> Result<String, String> {
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|e| format!("body: {e}"))
}

/// Sends a GET for `path` on `conn`; the response, to await later.
async fn send_get(conn: &mut Http2Connection, path: &str) -> Result<ResponseFuture, String> {
    let request = http::Request::get(format!("http://{}{path}", conn.authority()))
        .body(())
        .unwrap();
    let (response, _no_body) = conn
        .send_request(request, true)
        .await
        .map_err(|e| format!("send: {e}"))?;
    Ok(response)
}

/// A GET for `path` on `conn`, answered `hello <path>`.
async fn get(conn: &mut Http2Connection, path: &str) -> Result<(), String> {
    let body = read(send_get(conn, path).await?).await?;
    if body != format!("hello {path}") {
        return Err(format!("unexpected body {body:?}"));
    }
    Ok(())
}

/// Waits (bounded by `SLACK`) until the server has exactly `n` connections open.
async fn wait_for_open(server: &Server, n: usize) {
    let start = Instant::now();
    while server.open() != n {
        assert!(
            start.elapsed() < SLACK,
            "the server has {} connections open, expected {n}",
            server.open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds a pool of `manager` and checks its first checkout fails at once
/// (well within `wait_timeout`, no retries) with a permanent error, which
/// it returns.
async fn first_get_fails_at_once_as_permanent<T: Transport>(
    manager: Http2Manager<T>,
) -> Http2ManagerError {
    let pool = builder().build(manager).unwrap();
    let started = Instant::now();
    let err = pool.get().await.expect_err("no member");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}: {err:?}");
    match err {
        livepool::Error::Permanent(e) => e,
        other => panic!("expected a permanent error: {other:?}"),
    }
}

#[tokio::test]
async fn borrows_sends_a_request_returns_and_heartbeats_idle_members() {
    let server = Server::start().await;
    let pool = builder().build(manager(server.addr)).unwrap();

    let mut conn = pool.get().await.expect("borrow");
    assert_eq!(conn.peer_addr(), server.addr);
    get(&mut conn, "/one").await.expect("request");
    get(&mut conn, "/two")
        .await
        .expect("a second request, same member");
    assert_eq!(server.open(), 1);
    return_and_watch_it_heartbeat(&pool, conn).await;

    // The heartbeats kept the one connection; the next borrower gets it.
    let mut conn = pool.get().await.unwrap();
    get(&mut conn, "/three").await.unwrap();
    assert_eq!(server.open(), 1);
    assert_eq!(pool.status().counters.created, 1);
}

#[tokio::test]
async fn a_member_returned_with_a_stream_open_stays_in_the_pool_and_the_stream_finishes() {
    let server = Server::start().await;
    let pool = builder().build(manager(server.addr)).unwrap();

    let mut conn = pool.get().await.unwrap();
    let local = conn.local_addr();
    let slow = send_get(&mut conn, "/slow").await.unwrap();
    drop(conn); // returned while the server is still working on /slow

    let status = pool.status();
    assert_eq!(status.counters.evicted.total(), 0, "{status:?}");
    assert_eq!(status.idle, 1, "{status:?}");
    // The next borrower gets the same connection and opens a stream beside it.
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.local_addr(), local);
    assert_eq!(conn.condition(), Condition::Ready);
    get(&mut conn, "/beside").await.unwrap();
    drop(conn);
    assert_eq!(
        timeout(SLACK, read(slow)).await.expect("in time").unwrap(),
        "hello /slow"
    );
    assert_eq!(pool.status().counters.evicted.total(), 0);
}

#[tokio::test(start_paused = true)]
async fn streams_from_clones_of_the_sender_run_at_once_on_one_member() {
    let _clock = paused_clock::step_the_clock();
    let server = Server::start().await;
    let pool = builder().build(manager(server.addr)).unwrap();
    let conn = pool.get().await.unwrap();
    let started = tokio::time::Instant::now();
    let mut responses = Vec::new();
    for _ in 0..3 {
        let mut sender = conn.sender().ready().await.unwrap();
        let uri = format!("http://{}/slow", conn.authority());
        let request = http::Request::get(uri).body(()).unwrap();
        responses.push(sender.send_request(request, true).unwrap().0);
    }
    drop(conn);
    for response in responses {
        assert_eq!(read(response).await.unwrap(), "hello /slow");
    }
    // Three streams side by side: one SLOW (virtual time), not three.
    let took = started.elapsed();
    assert!(took < SLOW * 2, "took {took:?}");
    assert_eq!(server.open(), 1);
    assert_eq!(pool.status().counters.evicted.total(), 0);
}

/// Virtual time, so the bound is exact rather than at the mercy of a loaded
/// machine: the server, its stalled connection and the pool share one
/// paused clock, stepped by the test so that it never jumps past a PONG
/// still in the kernel (`tests/paused_clock`).
#[tokio::test(start_paused = true)]
async fn a_server_whose_http2_stack_stops_answering_is_evicted_within_interval_plus_timeout() {
    let _clock = paused_clock::step_the_clock();
    let server = Server::start().await;
    let pool = builder().build(manager(server.addr)).unwrap();
    let conn = pool.get().await.unwrap();
    let stalled = conn.local_addr();
    return_and_watch_it_heartbeat(&pool, conn).await;

    // The server process hangs: its socket stays open and its kernel ACKs,
    // so TCP keepalive would see nothing; only the PING goes unanswered.
    server.stall();
    let stalled_at = tokio::time::Instant::now();
    let status = wait_for_status(&pool, "stalled member evicted", |s| s.size == 0).await;
    let took = stalled_at.elapsed();
    eprintln!("a stalled HTTP/2 stack: evicted {took:?} (virtual) after the stall");
    assert_eq!(
        status.counters.evicted.get(EvictReason::ProbeTimedOut),
        1,
        "{status:?}"
    );
    // The next heartbeat is due within an interval and times out after
    // the timeout; the sentinel's tick (interval / 10) and the 20 ms poll
    // of `wait_for_status` round it up.
    let bound = INTERVAL + HEARTBEAT_TIMEOUT + INTERVAL / 10 + Duration::from_millis(20);
    assert!(took <= bound, "took {took:?}, more than {bound:?}");
    assert!(
        took >= HEARTBEAT_TIMEOUT,
        "evicted before the PING could time out: {took:?}"
    );

    // The server accepts new connections still: the next borrower gets one.
    let mut conn = pool.get().await.expect("a fresh member");
    assert_ne!(conn.local_addr(), stalled);
    get(&mut conn, "/after").await.unwrap();
}

#[tokio::test]
async fn blackholed_and_reset_paths_are_evicted_within_interval_plus_timeout_with_no_caller_error()
{
    let server = Server::start().await;
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let pool = builder().build(manager(proxy.addr())).unwrap();
    let served = blackhole_and_reset_idle_members(
        &pool,
        &proxy,
        "the server's connections",
        Http2Connection::local_addr,
        async || server.open(),
        async |conn, n| get(conn, &format!("/{n}")).await,
    )
    .await;
    assert!(served > 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_graceful_goaway_drains_a_borrowed_member_with_no_caller_error() {
    let server = Server::start().await;
    let pool = builder().build(manager(server.addr)).unwrap();

    let mut conn = pool.get().await.unwrap();
    let drained = conn.local_addr();
    let slow = send_get(&mut conn, "/slow").await.unwrap();
    server.go_away();
    let start = Instant::now();
    while !conn.is_going_away() {
        assert!(start.elapsed() < SLACK, "GOAWAY not seen: {conn:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The stream the server had accepted is answered in full.
    assert_eq!(read(slow).await.unwrap(), "hello /slow");
    drop(conn);
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::Drained),
        1,
        "{status:?}"
    );
    assert!(
        status
            .counters
            .evicted
            .iter()
            .all(|(r, n)| n == 0 || !r.is_failure()),
        "a drain is no failure: {status:?}"
    );

    // The next borrower gets a new connection, and the old one is gone at
    // the server.
    let mut conn = pool.get().await.unwrap();
    assert_ne!(conn.local_addr(), drained);
    get(&mut conn, "/next").await.unwrap();
    wait_for_open(&server, 1).await;
}

#[tokio::test]
async fn a_graceful_goaway_drains_idle_members_they_are_replaced_and_callers_see_no_error() {
    let server = Server::start().await;
    let pool = builder().min_idle(2).build(manager(server.addr)).unwrap();
    wait_for_status(&pool, "min_idle connected", |s| s.idle == 2).await;

    // A caller runs requests back to back through the whole episode.
    let stop = std::cell::Cell::new(false);
    let caller = async {
        let mut done = 0u64;
        while !stop.get() {
            let mut conn = pool.get().await.map_err(|e| format!("get: {e}"))?;
            get(&mut conn, &format!("/{done}")).await?;
            done += 1;
            drop(conn);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<u64, String>(done)
    };
    let episode = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.go_away();
        let status = wait_for_status(&pool, "both members drained and replaced", |s| {
            s.counters.evicted.get(EvictReason::Drained) >= 2 && s.size >= 2
        })
        .await;
        stop.set(true);
        status
    };
    let (done, status) = timeout(SLACK * 2, async { tokio::join!(caller, episode) })
        .await
        .expect("the episode ends");
    let done = done.expect("the caller saw no error");
    assert!(done > 0);
    let failures: u64 = status
        .counters
        .evicted
        .iter()
        .filter(|(r, _)| r.is_failure())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failures, 0, "{status:?}");
    // The drained connections close at the server; the replacements stay.
    wait_for_open(&server, pool.status().size).await;
}

/// A server on h2's own server side that answers PINGs until told to end
/// the connection with a `GOAWAY` carrying `reason` (hyper sends only
/// `NO_ERROR` on its own).
async fn server_ending_with(reason: h2::Reason) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (end, ended) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(stream).await.unwrap();
        tokio::select! {
            _ = async { while conn.accept().await.is_some() {} } => return,
            _ = ended => {}
        }
        conn.abrupt_shutdown(reason);
        while conn.accept().await.is_some() {}
    });
    (addr, end)
}

#[tokio::test]
async fn a_goaway_with_an_error_code_breaks_the_member_rather_than_draining_it() {
    let (addr, end) = server_ending_with(h2::Reason::ENHANCE_YOUR_CALM).await;
    let pool = builder().build(manager(addr)).unwrap();
    let mut conn = pool
        .get()
        .await
        .expect("the server answers the proving PING");
    assert_eq!(conn.condition(), Condition::Ready);
    drop(conn);
    end.send(()).unwrap();
    let status = wait_for_status(&pool, "member evicted", |s| s.size == 0).await;
    let evicted = status.counters.evicted;
    assert_eq!(evicted.get(EvictReason::Drained), 0, "{status:?}");
    assert_eq!(
        evicted.get(EvictReason::BrokenWhileIdle) + evicted.get(EvictReason::ProbeFailed),
        1,
        "{status:?}"
    );
}

/// A server that answers HTTP/1.1 only (here: a 400 to whatever it reads,
/// as a real one answers the HTTP/2 preface).
async fn http1_only_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http1_only_server_fails_the_checkout_at_once_as_permanent() {
    let addr = http1_only_server().await;
    let manager = manager(addr);
    let err = manager.connect().await.expect_err("no HTTP/2 there");
    assert!(manager.is_permanent(&err), "{err:?}");
    // h2 reads the start of "HTTP/1.1 400" as a frame header announcing a
    // 4.7 MB frame: a connection error it detected itself.
    let Http2ManagerError::Heartbeat(h2_error) = &err else {
        panic!("expected the proving PING to fail: {err:?}");
    };
    assert_eq!(h2_error.reason(), Some(h2::Reason::FRAME_SIZE_ERROR));
    assert!(
        h2_error.is_go_away() && h2_error.is_library(),
        "{h2_error:?}"
    );
    // Display says its own level; the cause is the source.
    assert_eq!(err.to_string(), "HTTP/2 heartbeat (PING) failed");
    let cause = std::error::Error::source(&err)
        .expect("a cause")
        .to_string();
    assert_eq!(cause, h2_error.to_string());

    first_get_fails_at_once_as_permanent(manager).await;
}

#[tokio::test]
async fn a_refused_connect_is_transient() {
    // A port nobody listens on: bound, then released.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let manager = manager(addr);
    let err = manager.connect().await.expect_err("nobody listens");
    assert!(matches!(err, Http2ManagerError::Connect(_)), "{err:?}");
    assert!(!manager.is_permanent(&err));
}

/// A transport that counts the sockets it wraps, or refuses them.
struct Counting {
    wrapped: Arc<AtomicUsize>,
    /// `None`: pass the socket on; `Some(permanent)`: refuse it, calling
    /// the refusal permanent or not.
    refuse: Option<bool>,
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the transport refused the socket")
    }
}

impl std::error::Error for Refused {}

impl Transport for Counting {
    type Io = tokio::net::TcpStream;
    type Error = Refused;

    async fn wrap(
        &self,
        tcp: tokio::net::TcpStream,
        host: &str,
    ) -> Result<tokio::net::TcpStream, Refused> {
        assert_eq!(host, "127.0.0.1", "the host as the manager was given it");
        self.wrapped.fetch_add(1, Ordering::SeqCst);
        match self.refuse {
            Some(_) => Err(Refused),
            None => Ok(tcp),
        }
    }

    fn is_permanent(&self, _: &Refused) -> bool {
        self.refuse == Some(true)
    }
}

#[tokio::test]
async fn a_transport_wraps_every_socket_and_its_permanent_refusal_fails_the_checkout_at_once() {
    let server = Server::start().await;
    let wrapped = Arc::new(AtomicUsize::new(0));
    let transport = |refuse| Counting {
        wrapped: wrapped.clone(),
        refuse,
    };

    let pool = builder()
        .build(manager(server.addr).transport(transport(None)))
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    get(&mut conn, "/wrapped").await.unwrap();
    assert_eq!(wrapped.load(Ordering::SeqCst), 1);
    drop(conn);

    let transient = manager(server.addr).transport(transport(Some(false)));
    let err = transient.connect().await.expect_err("refused");
    assert!(!transient.is_permanent(&err), "{err:?}");

    let permanent = manager(server.addr).transport(transport(Some(true)));
    let err = permanent.connect().await.expect_err("refused");
    assert!(permanent.is_permanent(&err), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("the transport to {} could not be set up", server.addr)
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "the transport refused the socket"
    );
    first_get_fails_at_once_as_permanent(permanent).await;
}

/// HTTP/2 over TLS through a [`Transport`]: tokio-rustls offering ALPN
/// `h2`, against an h2 server behind a rustls acceptor, with a CA the test
/// makes.
mod tls {
    use super::*;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A CA and a server certificate it signed for `localhost`.
    fn certificates() -> (
        CertificateDer<'static>,
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        (ca.der().clone(), cert.der().clone(), key)
    }

    /// An h2 server behind TLS (ALPN `h2`), answering `hello tls`.
    async fn tls_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> SocketAddr {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    while let Some(Ok((_request, mut respond))) = conn.accept().await {
                        if let Ok(mut send) = respond.send_response(http::Response::new(()), false)
                        {
                            let _ = send.send_data(Bytes::from_static(b"hello tls"), true);
                        }
                    }
                });
            }
        });
        addr
    }

    /// TLS trusting `ca` only, offering ALPN `h2`; a rejected certificate
    /// is permanent.
    struct Rustls(TlsConnector);

    impl Rustls {
        fn trusting(ca: CertificateDer<'static>) -> Rustls {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Rustls(TlsConnector::from(Arc::new(config)))
        }
    }

    impl Transport for Rustls {
        type Io = TlsStream<tokio::net::TcpStream>;
        type Error = std::io::Error;

        async fn wrap(&self, tcp: tokio::net::TcpStream, host: &str) -> std::io::Result<Self::Io> {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = self.0.connect(name, tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(std::io::Error::other("the server did not agree to h2"));
            }
            Ok(tls)
        }

        fn is_permanent(&self, error: &std::io::Error) -> bool {
            matches!(
                error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::InvalidCertificate(_))
            )
        }
    }

    #[tokio::test]
    async fn requests_and_heartbeats_run_over_tls_and_a_foreign_ca_is_permanent() {
        let (ca, cert, key) = certificates();
        let addr = tls_server(cert, key).await;
        let manager = Http2Manager::new("localhost", addr.port()).transport(Rustls::trusting(ca));
        let pool = builder().build(manager).unwrap();
        let mut conn = pool.get().await.expect("a TLS member");
        let uri = format!("https://{}/", conn.authority());
        let (response, _) = conn
            .send_request(http::Request::get(uri).body(()).unwrap(), true)
            .await
            .unwrap();
        assert_eq!(read(response).await.unwrap(), "hello tls");
        return_and_watch_it_heartbeat(&pool, conn).await;

        // A client that trusts another CA: refused at once, for good.
        let (other_ca, _, _) = certificates();
        let foreign =
            Http2Manager::new("localhost", addr.port()).transport(Rustls::trusting(other_ca));
        let err = first_get_fails_at_once_as_permanent(foreign).await;
        assert!(
            matches!(err, Http2ManagerError::Transport { .. }),
            "{err:?}"
        );
    }
}
