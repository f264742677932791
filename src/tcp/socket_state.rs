//! What an idle socket's receive queue says, read without waiting and without
//! consuming anything.
//!
//! On an idle request/response connection nothing should arrive: the peer
//! speaks only when spoken to. So a one-byte peek tells the pool, at no cost,
//! whether a member died while idle (EOF, reset, a kernel timeout) or is out of
//! step (bytes of an old reply still waiting), before it is handed out.

use std::mem::MaybeUninit;

use socket2::SockRef;
use tokio::net::TcpStream;

/// What a peek at an idle socket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketState {
    /// Nothing waiting and no error: as far as the kernel knows, the
    /// connection is up. (Only a heartbeat proves the peer alive.)
    Open,
    /// Bytes are waiting that nobody asked for. On a request/response
    /// connection the stream is out of step, so the member must not be reused.
    Unread,
    /// The peer closed its side (FIN) and nothing is left to read.
    Eof,
    /// The peer reset the connection (RST).
    Reset,
    /// The socket failed otherwise, e.g. `TimedOut` when keepalive or
    /// `TCP_USER_TIMEOUT` gave up on the peer.
    Failed(std::io::ErrorKind),
}

impl SocketState {
    /// Whether the connection can never carry another request.
    pub fn is_broken(self) -> bool {
        matches!(
            self,
            SocketState::Eof | SocketState::Reset | SocketState::Failed(_)
        )
    }
}

/// Peeks at one byte of `stream`'s receive queue, without waiting (tokio
/// sockets are non-blocking, so `MSG_PEEK` alone never blocks) and without
/// consuming it.
///
/// A pending socket error is reported once: the kernel clears it when it is
/// read, so after `Reset` a second call may say `Eof`. Both are broken.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use livepool::tcp::{socket_state, SocketState};
///
/// let stream = tokio::net::TcpStream::connect("127.0.0.1:6379").await?;
/// assert_eq!(socket_state(&stream), SocketState::Open);
/// # Ok(())
/// # }
/// ```
pub fn socket_state(stream: &TcpStream) -> SocketState {
    let socket = SockRef::from(stream);
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    // A signal can interrupt even a non-blocking call; a second try is enough.
    let mut result = socket.peek(&mut byte);
    if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
        result = socket.peek(&mut byte);
    }
    match result {
        Ok(0) => SocketState::Eof,
        Ok(_) => SocketState::Unread,
        Err(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock => SocketState::Open,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                SocketState::Reset
            }
            kind => SocketState::Failed(kind),
        },
    }
}
