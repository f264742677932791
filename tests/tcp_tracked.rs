//! `Tracked` and `socket_state`, each observed on a real loopback socket pair.

use std::io::ErrorKind;
use std::time::Duration;

use livepool::Condition;
use livepool::tcp::{SocketState, Tracked, socket_state};
use livepool::testing::{close_with_reset, loopback_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Bound on every wait in these tests, so a bug fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(10);

/// Writes until a write fails (a reset socket may accept one write before
/// the kernel reports the reset), and returns that error's kind.
async fn first_write_error(client: &mut Tracked<TcpStream>) -> Option<ErrorKind> {
    for _ in 0..10 {
        if let Err(e) = client.write_all(b"x").await {
            return Some(e.kind());
        }
    }
    None
}

/// Waits until the kernel has something to report on `stream` (bytes, FIN or
/// RST), without reading it.
async fn until_readable(stream: &TcpStream) {
    timeout(LIMIT, stream.readable()).await.unwrap().unwrap();
}

#[test]
fn tracked_is_unpin_when_the_stream_is() {
    fn assert_unpin<T: Unpin>() {}
    assert_unpin::<Tracked<TcpStream>>();
    assert_unpin::<Tracked<tokio::io::DuplexStream>>();
}

#[tokio::test]
async fn records_read_and_write_instants_in_tokio_time() {
    let (client, mut server) = loopback_pair().await.unwrap();
    tokio::time::pause();
    let mut client = Tracked::new(client);
    assert_eq!((client.last_read(), client.last_write()), (None, None));
    assert_eq!(client.last_activity(), None);

    let asked = Instant::now();
    client.write_all(b"ping").await.unwrap();
    assert_eq!(client.last_write(), Some(asked));
    assert_eq!(client.last_read(), None, "a write is not a read");

    tokio::time::advance(Duration::from_secs(10)).await;
    let mut buf = [0u8; 4];
    timeout(LIMIT, server.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    server.write_all(b"pong").await.unwrap();
    timeout(LIMIT, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"pong");
    let answered = client.last_read().unwrap();
    assert!(answered >= asked + Duration::from_secs(10), "{answered:?}");
    assert_eq!(client.last_activity(), Some(answered));

    tokio::time::advance(Duration::from_secs(5)).await;
    client.write_all(b"more").await.unwrap();
    assert!(client.last_write().unwrap() >= answered + Duration::from_secs(5));
    assert_eq!(
        client.last_activity(),
        Some(answered),
        "writes are no proof of life"
    );
    assert!(!client.saw_eof() && client.saw_error().is_none());
}

#[tokio::test]
async fn a_read_into_a_full_buffer_is_not_eof() {
    let (client, mut server) = loopback_pair().await.unwrap();
    let mut client = Tracked::new(client);
    // With a byte waiting, the socket is readable and a read into no room
    // returns 0 at once: that is not the peer closing.
    server.write_all(b"x").await.unwrap();
    until_readable(client.get_ref()).await;
    let read = timeout(LIMIT, client.read(&mut [])).await.unwrap();
    assert_eq!(read.unwrap(), 0);
    assert!(!client.saw_eof());
    assert_eq!(client.last_read(), None);
    assert_eq!(client.condition(), Condition::Dirty);
}

#[tokio::test]
async fn eof_is_noted_and_breaks_the_connection() {
    let (client, server) = loopback_pair().await.unwrap();
    let mut client = Tracked::new(client);
    drop(server);
    let mut buf = [0u8; 8];
    let read = timeout(LIMIT, client.read(&mut buf)).await.unwrap();
    assert_eq!(read.unwrap(), 0);
    assert!(client.saw_eof());
    assert_eq!(client.saw_error(), None);
    assert_eq!(client.condition(), Condition::Broken);
}

#[tokio::test]
async fn errors_are_noted_and_the_first_one_kept() {
    let (client, server) = loopback_pair().await.unwrap();
    let mut client = Tracked::new(client);
    close_with_reset(server);
    until_readable(client.get_ref()).await;
    let mut buf = [0u8; 8];
    let error = client.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    assert_eq!(client.saw_error(), Some(ErrorKind::ConnectionReset));
    assert_eq!(client.condition(), Condition::Broken);

    // The socket is dead, so writes fail too; the first error stays on record.
    let write_error = first_write_error(&mut client).await;
    assert!(
        write_error.is_some(),
        "writes to a reset socket kept succeeding"
    );
    assert_eq!(client.saw_error(), Some(ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn write_errors_are_noted() {
    let (client, server) = loopback_pair().await.unwrap();
    let mut client = Tracked::new(client);
    close_with_reset(server);
    until_readable(client.get_ref()).await;
    let error = first_write_error(&mut client).await;
    assert!(error.is_some(), "writes to a reset socket kept succeeding");
    assert_eq!(client.saw_error(), error);
    assert_eq!(client.last_read(), None);
}

#[tokio::test]
async fn condition_follows_the_socket() {
    let (client, mut server) = loopback_pair().await.unwrap();
    let mut client = Tracked::new(client);
    assert_eq!(client.condition(), Condition::Ready);

    server.write_all(b"stale reply").await.unwrap();
    until_readable(client.get_ref()).await;
    assert_eq!(client.condition(), Condition::Dirty);

    let mut buf = [0u8; 11];
    timeout(LIMIT, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        client.condition(),
        Condition::Ready,
        "drained: back in step"
    );

    server.shutdown().await.unwrap();
    until_readable(client.get_ref()).await;
    assert_eq!(
        client.condition(),
        Condition::Broken,
        "FIN seen by peek alone"
    );
    assert!(!client.saw_eof(), "condition() reads nothing");
}

#[tokio::test]
async fn socket_state_open_then_unread_without_consuming() {
    let (client, mut server) = loopback_pair().await.unwrap();
    assert_eq!(socket_state(&client), SocketState::Open);

    server.write_all(b"hello").await.unwrap();
    until_readable(&client).await;
    assert_eq!(socket_state(&client), SocketState::Unread);
    assert_eq!(socket_state(&client), SocketState::Unread);

    let mut client = client;
    let mut buf = [0u8; 5];
    timeout(LIMIT, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello", "the peek consumed nothing");
    assert_eq!(socket_state(&client), SocketState::Open);
}

#[tokio::test]
async fn socket_state_sees_eof() {
    let (client, server) = loopback_pair().await.unwrap();
    drop(server);
    until_readable(&client).await;
    assert_eq!(socket_state(&client), SocketState::Eof);
    assert!(socket_state(&client).is_broken());
}

#[tokio::test]
async fn socket_state_sees_reset() {
    let (client, server) = loopback_pair().await.unwrap();
    close_with_reset(server);
    until_readable(&client).await;
    assert_eq!(socket_state(&client), SocketState::Reset);
    // The kernel reports a socket error once; afterwards the socket reads as
    // closed. Either way it is broken.
    assert!(socket_state(&client).is_broken());
}

#[tokio::test]
async fn tracked_socket_state_matches_the_free_function() {
    let (client, server) = loopback_pair().await.unwrap();
    let client = Tracked::new(client);
    assert_eq!(client.socket_state(), SocketState::Open);
    close_with_reset(server);
    until_readable(client.get_ref()).await;
    assert_eq!(client.socket_state(), SocketState::Reset);
}
