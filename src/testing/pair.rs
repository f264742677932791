//! A connected pair of loopback sockets, for tests that need both ends.

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
