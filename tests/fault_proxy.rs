//! `FaultProxy`: every fault observed by a real client through the proxy to a
//! small echo server.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use livepool::tcp::{SocketState, socket_state};
use livepool::testing::{Fault, FaultProxy, ProxyConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// Bound on every wait in these tests, so a bug fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(10);

/// An echo server; its tasks end with the test's runtime.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// A proxy in front of a fresh echo server.
async fn proxy() -> FaultProxy {
    FaultProxy::start(echo_server().await).await.unwrap()
}

async fn client(proxy: &FaultProxy) -> TcpStream {
    timeout(LIMIT, TcpStream::connect(proxy.addr()))
        .await
        .unwrap()
        .unwrap()
}

/// Sends `message` and reads as many bytes back.
async fn round_trip(client: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    client.write_all(message).await?;
    let mut echoed = vec![0; message.len()];
    client.read_exact(&mut echoed).await?;
    Ok(echoed)
}

/// A client whose connection is proven to echo, and is listed by the proxy.
async fn working_client(proxy: &FaultProxy) -> TcpStream {
    let mut client = client(proxy).await;
    let echoed = timeout(LIMIT, round_trip(&mut client, b"hello"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"hello");
    client
}

/// Waits until the proxy's live list satisfies `done`, and returns it.
async fn until_connections(
    proxy: &FaultProxy,
    done: impl Fn(&[ProxyConnection]) -> bool,
) -> Vec<ProxyConnection> {
    let started = Instant::now();
    loop {
        let live = proxy.connections();
        if done(&live) {
            return live;
        }
        assert!(
            started.elapsed() < LIMIT,
            "live connections stuck at {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the client reads next: bytes, EOF, or an error.
async fn next_read(client: &mut TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    timeout(LIMIT, client.read(&mut buf)).await.unwrap()
}

fn is_closed(read: &std::io::Result<usize>) -> bool {
    match read {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    }
}

#[tokio::test]
async fn pass_echoes_both_ways() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let echoed = timeout(LIMIT, round_trip(&mut client, &big))
        .await
        .unwrap()
        .unwrap();
    assert!(echoed == big, "a large message came back changed");
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.fault(), Fault::Pass);
}

#[tokio::test]
async fn blackhole_forwards_nothing_and_keeps_the_socket_open() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    proxy.set_fault(Fault::Blackhole);

    // Far more than the socket buffers hold: the proxy reads and discards,
    // so the client's writes never block.
    let lost = vec![7u8; 4 * 1024 * 1024];
    timeout(LIMIT, client.write_all(&lost))
        .await
        .expect("writes into a blackhole blocked")
        .unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_millis(500), client.read(&mut buf)).await;
    assert!(read.is_err(), "a reply came out of the blackhole: {read:?}");
    assert_eq!(socket_state(&client), SocketState::Open);

    // Lifting it: what was sent meanwhile is gone, new traffic flows.
    proxy.set_fault(Fault::Pass);
    let echoed = timeout(LIMIT, round_trip(&mut client, b"again"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"again");
}

#[tokio::test]
async fn reset_makes_the_client_read_connection_reset() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    proxy.set_fault(Fault::Reset);
    let error = next_read(&mut client).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    until_connections(&proxy, |live| live.is_empty()).await;
}

#[tokio::test]
async fn close_makes_the_client_read_eof() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    proxy.set_fault(Fault::Close);
    assert_eq!(next_read(&mut client).await.unwrap(), 0);
    until_connections(&proxy, |live| live.is_empty()).await;
}

#[tokio::test]
async fn delay_holds_each_direction_in_order() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    let delay = Duration::from_millis(300);
    proxy.set_fault(Fault::Delay(delay));

    let started = Instant::now();
    for part in [&b"one "[..], b"two ", b"three"] {
        client.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut echoed = [0u8; 13];
    timeout(LIMIT, client.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(&echoed, b"one two three");
    // Held `delay` on the way up and again on the way back.
    assert!(took >= 2 * delay, "echo came back after only {took:?}");
    assert!(took < 2 * delay + Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_new_fault_applies_at_once_to_queued_data() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    proxy.set_fault(Fault::Delay(Duration::from_secs(3600)));
    client.write_all(b"held").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    proxy.set_fault(Fault::Pass);
    let mut echoed = [0u8; 4];
    timeout(LIMIT, client.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"held");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_fault_on_one_connection_spares_the_others() {
    let proxy = proxy().await;
    let mut doomed = working_client(&proxy).await;
    let mut spared = working_client(&proxy).await;
    let live = until_connections(&proxy, |live| live.len() == 2).await;
    let doomed_addr = doomed.local_addr().unwrap();
    let doomed_id = live
        .iter()
        .find(|c| c.client_addr == doomed_addr)
        .unwrap()
        .id;

    assert!(proxy.fault_connection(doomed_id, Fault::Reset));
    let error = next_read(&mut doomed).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    let echoed = timeout(LIMIT, round_trip(&mut spared, b"still here"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"still here");
    let live = until_connections(&proxy, |live| live.len() == 1).await;
    assert_eq!(live[0].client_addr, spared.local_addr().unwrap());
    assert_eq!(live[0].fault, Fault::Pass);
    assert!(!proxy.fault_connection(doomed_id, Fault::Close), "gone");
    assert!(!proxy.fault_connection(9_999, Fault::Close), "never was");
}

#[tokio::test]
async fn set_fault_applies_to_future_connections_too() {
    let proxy = proxy().await;
    let _earlier = working_client(&proxy).await;
    proxy.set_fault(Fault::Delay(Duration::from_millis(1)));
    let live = until_connections(&proxy, |live| live.len() == 1).await;
    assert_eq!(live[0].fault, Fault::Delay(Duration::from_millis(1)));

    proxy.set_fault(Fault::Close);
    let mut later = client(&proxy).await;
    assert_eq!(next_read(&mut later).await.unwrap(), 0);
    assert_eq!(proxy.accepted(), 2);
}

#[tokio::test]
async fn refusing_resets_new_connections_and_spares_live_ones() {
    let proxy = proxy().await;
    let mut live = working_client(&proxy).await;
    proxy.set_refusing(true);

    match timeout(LIMIT, TcpStream::connect(proxy.addr()))
        .await
        .unwrap()
    {
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
            ),
            "{e}"
        ),
        Ok(mut refused) => {
            let read = next_read(&mut refused).await;
            assert!(is_closed(&read), "a refused connection read {read:?}");
        }
    }
    assert_eq!((proxy.accepted(), proxy.refused()), (1, 1));
    let echoed = timeout(LIMIT, round_trip(&mut live, b"live"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"live");

    proxy.set_refusing(false);
    let _back = working_client(&proxy).await;
    assert_eq!(proxy.accepted(), 2);
}

#[tokio::test]
async fn connections_lists_live_ones_in_accept_order() {
    let proxy = proxy().await;
    assert!(proxy.connections().is_empty());
    let first = working_client(&proxy).await;
    let second = working_client(&proxy).await;
    let live = until_connections(&proxy, |live| live.len() == 2).await;
    let listed: Vec<_> = live.iter().map(|c| (c.id, c.client_addr)).collect();
    assert_eq!(
        listed,
        [
            (0, first.local_addr().unwrap()),
            (1, second.local_addr().unwrap())
        ]
    );

    drop(first);
    let live = until_connections(&proxy, |live| live.len() == 1).await;
    assert_eq!(live[0].id, 1);
}

#[tokio::test]
async fn shutdown_ends_every_connection() {
    let proxy = proxy().await;
    let addr = proxy.addr();
    let mut client = working_client(&proxy).await;
    timeout(LIMIT, proxy.shutdown()).await.unwrap();
    let read = next_read(&mut client).await;
    assert!(is_closed(&read), "after shutdown the client read {read:?}");
    let reconnect = timeout(LIMIT, TcpStream::connect(addr)).await.unwrap();
    assert_eq!(
        reconnect.unwrap_err().kind(),
        ErrorKind::ConnectionRefused,
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn dropping_the_proxy_ends_every_connection() {
    let proxy = proxy().await;
    let mut client = working_client(&proxy).await;
    drop(proxy);
    let read = next_read(&mut client).await;
    assert!(is_closed(&read), "after drop the client read {read:?}");
}

#[tokio::test]
async fn an_unreachable_upstream_resets_the_client() {
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = gone.local_addr().unwrap();
    drop(gone);
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut client = client(&proxy).await;
    let read = next_read(&mut client).await;
    assert!(is_closed(&read), "read {read:?} through a proxy to nowhere");
    until_connections(&proxy, |live| live.is_empty()).await;
}
