//! `tcp::connect` and `apply_options`: every option read back from a real
//! loopback socket with getsockopt, the typed errors, and the connect timeout.
//!
//! Linux only: the read-back of `TCP_USER_TIMEOUT`, the kernel limits and the
//! full-accept-queue trick used to make a connect hang are Linux behaviour.

#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use livepool::tcp::{ConnectError, InvalidOption, Keepalive, TcpOptions, apply_options, connect};
use socket2::{Domain, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Bound on every wait in these tests, so a bug fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(10);

/// The options as the kernel holds them, read back with getsockopt.
#[derive(Debug, PartialEq)]
struct ReadBack {
    nodelay: bool,
    keepalive: bool,
    idle: Duration,
    interval: Duration,
    retries: u32,
    user_timeout: Option<Duration>,
}

fn read_back(stream: &TcpStream) -> ReadBack {
    let socket = SockRef::from(stream);
    ReadBack {
        nodelay: socket.tcp_nodelay().unwrap(),
        keepalive: socket.keepalive().unwrap(),
        idle: socket.tcp_keepalive_time().unwrap(),
        interval: socket.tcp_keepalive_interval().unwrap(),
        retries: socket.tcp_keepalive_retries().unwrap(),
        user_timeout: socket.tcp_user_timeout().unwrap(),
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn connect_with(opts: &TcpOptions) -> ReadBack {
    let (_listener, addr) = listener().await;
    let stream = timeout(LIMIT, connect(addr, opts)).await.unwrap().unwrap();
    read_back(&stream)
}

#[tokio::test]
async fn defaults_are_set_on_the_socket() {
    assert_eq!(
        connect_with(&TcpOptions::default()).await,
        ReadBack {
            nodelay: true,
            keepalive: true,
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            retries: 3,
            user_timeout: Some(Duration::from_secs(30)),
        }
    );
}

#[tokio::test]
async fn custom_values_are_set_on_the_socket() {
    let opts = TcpOptions::default()
        .with_nodelay(false)
        .with_keepalive(Keepalive::new(
            Duration::from_secs(61),
            Duration::from_secs(7),
            4,
        ))
        .with_user_timeout(Duration::from_millis(12_345));
    assert_eq!(
        connect_with(&opts).await,
        ReadBack {
            nodelay: false,
            keepalive: true,
            idle: Duration::from_secs(61),
            interval: Duration::from_secs(7),
            retries: 4,
            user_timeout: Some(Duration::from_millis(12_345)),
        }
    );
}

#[tokio::test]
async fn kernel_limits_are_accepted_and_fractions_round_up() {
    let opts = TcpOptions::default()
        .with_keepalive(Keepalive::new(
            Duration::from_secs(32_767),
            Duration::from_millis(1_500),
            127,
        ))
        .with_user_timeout(Duration::from_micros(2_500));
    let got = connect_with(&opts).await;
    assert_eq!(got.idle, Duration::from_secs(32_767));
    assert_eq!(got.interval, Duration::from_secs(2));
    assert_eq!(got.retries, 127);
    assert_eq!(got.user_timeout, Some(Duration::from_millis(3)));
}

#[tokio::test]
async fn keepalive_and_user_timeout_can_be_turned_off() {
    let opts = TcpOptions::default()
        .without_keepalive()
        .without_user_timeout();
    let got = connect_with(&opts).await;
    assert!(!got.keepalive);
    assert_eq!(got.user_timeout, None);
}

#[tokio::test]
async fn apply_options_sets_a_socket_made_elsewhere() {
    let (_listener, addr) = listener().await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let before = read_back(&stream);
    assert!(!before.keepalive && before.user_timeout.is_none());

    let opts = TcpOptions::default().with_keepalive(Keepalive::new(
        Duration::from_secs(40),
        Duration::from_secs(6),
        2,
    ));
    apply_options(&stream, &opts).unwrap();
    assert_eq!(
        read_back(&stream),
        ReadBack {
            nodelay: true,
            keepalive: true,
            idle: Duration::from_secs(40),
            interval: Duration::from_secs(6),
            retries: 2,
            user_timeout: Some(Duration::from_secs(30)),
        }
    );
}

fn keepalive(idle_ms: u64, interval_ms: u64, retries: u32) -> TcpOptions {
    TcpOptions::default().with_keepalive(Keepalive::new(
        Duration::from_millis(idle_ms),
        Duration::from_millis(interval_ms),
        retries,
    ))
}

#[tokio::test]
async fn invalid_options_are_named_before_any_syscall() {
    let defaults = TcpOptions::default();
    let cases = [
        (
            defaults.clone().with_connect_timeout(Duration::ZERO),
            InvalidOption::ConnectTimeout(Duration::ZERO),
        ),
        (
            keepalive(0, 5_000, 3),
            InvalidOption::KeepaliveIdle(Duration::ZERO),
        ),
        (
            keepalive(32_767_001, 5_000, 3),
            InvalidOption::KeepaliveIdle(Duration::from_millis(32_767_001)),
        ),
        (
            keepalive(30_000, 0, 3),
            InvalidOption::KeepaliveInterval(Duration::ZERO),
        ),
        (
            keepalive(30_000, 40_000_000, 3),
            InvalidOption::KeepaliveInterval(Duration::from_secs(40_000)),
        ),
        (
            keepalive(30_000, 5_000, 0),
            InvalidOption::KeepaliveRetries(0),
        ),
        (
            keepalive(30_000, 5_000, 128),
            InvalidOption::KeepaliveRetries(128),
        ),
        (
            defaults.clone().with_user_timeout(Duration::ZERO),
            InvalidOption::UserTimeout(Duration::ZERO),
        ),
        (
            defaults.with_user_timeout(Duration::from_millis(1 << 31)),
            InvalidOption::UserTimeout(Duration::from_millis(1 << 31)),
        ),
    ];
    let (_listener, addr) = listener().await;
    let stream = TcpStream::connect(addr).await.unwrap();
    for (opts, expected) in cases {
        assert_eq!(opts.validate(), Err(expected));

        match connect(addr, &opts).await {
            Err(ConnectError::InvalidOptions { addr: got, source }) => {
                assert_eq!((got, source), (addr, expected));
            }
            other => panic!("{opts:?}: expected InvalidOptions, got {other:?}"),
        }

        let error = apply_options(&stream, &opts).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        let inner = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<InvalidOption>());
        assert_eq!(inner, Some(&expected), "{error}");
    }
}

#[tokio::test]
async fn refused_connect_is_a_typed_io_error() {
    let (listener, addr) = listener().await;
    drop(listener);
    let error = timeout(LIMIT, connect(addr, &TcpOptions::default()))
        .await
        .unwrap()
        .unwrap_err();
    match &error {
        ConnectError::Io { addr: got, source } => {
            assert_eq!(*got, addr);
            assert_eq!(source.kind(), ErrorKind::ConnectionRefused);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    assert!(std::error::Error::source(&error).is_some());
    let io: std::io::Error = error.into();
    assert_eq!(io.kind(), ErrorKind::ConnectionRefused);
}

/// A listener whose accept queue is full: Linux drops further SYNs, so a
/// connect to it hangs in SYN_SENT. Returns the listener and the connections
/// that filled it (both must stay alive). The queue is filled until a probe
/// connect stops completing, so this does not depend on how the kernel
/// counts the backlog.
async fn full_listener() -> (Socket, Vec<TcpStream>, SocketAddr) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&loopback.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue failed: {e}"),
            Err(_hung) => return (listener, fillers, addr),
        }
    }
    panic!("the accept queue never filled up; cannot make a connect hang");
}

#[tokio::test]
async fn connect_that_hangs_times_out_with_a_typed_error() {
    let (_listener, _fillers, addr) = full_listener().await;
    let opts = TcpOptions::default().with_connect_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let error = timeout(LIMIT, connect(addr, &opts))
        .await
        .unwrap()
        .unwrap_err();
    let waited = started.elapsed();
    match &error {
        ConnectError::TimedOut { addr: got, after } => {
            assert_eq!((*got, *after), (addr, Duration::from_millis(300)));
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let io: std::io::Error = error.into();
    assert_eq!(io.kind(), ErrorKind::TimedOut);
}

#[tokio::test]
async fn connect_timeout_runs_on_tokio_time() {
    let (_listener, _fillers, addr) = full_listener().await;
    tokio::time::pause();
    let opts = TcpOptions::default().with_connect_timeout(Duration::from_secs(3600));
    let started = tokio::time::Instant::now();
    let real_start = std::time::Instant::now();
    let error = connect(addr, &opts).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::TimedOut { after, .. } if after == Duration::from_secs(3600)),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3600));
    assert!(real_start.elapsed() < LIMIT, "{:?}", real_start.elapsed());
}
