//! Real loopback sockets for tests: a connected pair, and an abortive close.

use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};

/// Returns `(client, server)`: two ends of one fresh TCP connection on
/// 127.0.0.1, for tests that need a real kernel socket (socket options,
/// peeks, resets) rather than an in-memory pipe.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (client, server) = livepool::testing::loopback_pair().await?;
/// assert_eq!(client.local_addr()?, server.peer_addr()?);
/// # Ok(())
/// # }
/// ```
pub async fn loopback_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    Ok((client?, accepted?.0))
}

/// Closes `stream` with RST instead of FIN (`SO_LINGER` 0, then close), the
/// way a crashed peer or a firewall kills a connection: the other end's next
/// read fails with `ConnectionReset` instead of returning EOF.
///
/// If the linger option cannot be set, the stream is still closed, normally.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use livepool::testing::{close_with_reset, loopback_pair};
/// use tokio::io::AsyncReadExt;
///
/// let (mut client, server) = loopback_pair().await?;
/// close_with_reset(server);
/// let error = client.read(&mut [0u8; 8]).await.unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
/// # Ok(())
/// # }
/// ```
pub fn close_with_reset(stream: TcpStream) {
    if let Err(error) = SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "could not arm RST; closing normally");
    }
    drop(stream);
}
