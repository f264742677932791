//! Opening a pooled TCP connection: options set before the handshake, and a
//! bounded wait for it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

use super::options::{InvalidOption, TcpOptions, apply_validated};

/// Opens a TCP connection to `addr` with `opts` applied, waiting at most
/// `opts.connect_timeout` for the handshake.
///
/// The options are set on the socket *before* `connect`, so the connection is
/// never without its keepalive and user-timeout policy, not even during the
/// handshake. The wait is a tokio timer, so tests under
/// `tokio::time::pause()` see it in virtual time.
///
/// ```no_run
/// # async fn demo() -> Result<(), livepool::tcp::ConnectError> {
/// use livepool::tcp::{connect, TcpOptions};
///
/// let stream = connect("127.0.0.1:6379".parse().unwrap(), &TcpOptions::default()).await?;
/// # drop(stream);
/// # Ok(())
/// # }
/// ```
pub async fn connect(addr: SocketAddr, opts: &TcpOptions) -> Result<TcpStream, ConnectError> {
    opts.validate()
        .map_err(|source| ConnectError::InvalidOptions { addr, source })?;
    let io_error = |source| ConnectError::Io { addr, source };
    let socket = configured_socket(addr, opts).map_err(io_error)?;
    match tokio::time::timeout(opts.connect_timeout, socket.connect(addr)).await {
        Ok(result) => result.map_err(io_error),
        Err(_elapsed) => Err(ConnectError::TimedOut {
            addr,
            after: opts.connect_timeout,
        }),
    }
}

/// A non-blocking socket for `addr`'s family with every option in `opts` set.
fn configured_socket(addr: SocketAddr, opts: &TcpOptions) -> std::io::Result<TcpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    apply_validated(&socket, opts)?;
    Ok(TcpSocket::from_std_stream(socket.into()))
}

/// Why [`connect`] gave no connection. Each variant names the address, so a
/// pool with several upstreams can say which one failed.
///
/// ```no_run
/// # async fn demo() {
/// use livepool::tcp::{connect, ConnectError, TcpOptions};
///
/// match connect("127.0.0.1:5432".parse().unwrap(), &TcpOptions::default()).await {
///     Ok(_stream) => {}
///     Err(ConnectError::TimedOut { addr, after }) => eprintln!("{addr}: no answer in {after:?}"),
///     Err(other) => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The handshake did not finish within `connect_timeout`: typically a host
    /// that is gone, or a firewall dropping the SYN.
    TimedOut {
        /// Where the connection was going.
        addr: SocketAddr,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The socket could not be made or the connect failed, e.g.
    /// `ConnectionRefused` when nothing listens on the port.
    Io {
        /// Where the connection was going.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The options were rejected before any socket was made.
    InvalidOptions {
        /// Where the connection was going.
        addr: SocketAddr,
        /// Which option, and why.
        source: InvalidOption,
    },
}

impl ConnectError {
    /// The address the failed connect was going to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ConnectError::TimedOut { addr, .. }
            | ConnectError::Io { addr, .. }
            | ConnectError::InvalidOptions { addr, .. } => *addr,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut { addr, after } => {
                write!(f, "connecting to {addr} timed out after {after:?}")
            }
            ConnectError::Io { addr, source } => {
                write!(f, "connecting to {addr} failed: {source}")
            }
            ConnectError::InvalidOptions { addr, source } => {
                write!(f, "not connecting to {addr}: {source}")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::TimedOut { .. } => None,
            ConnectError::Io { source, .. } => Some(source),
            ConnectError::InvalidOptions { source, .. } => Some(source),
        }
    }
}

/// Keeps the kind a caller may branch on (`TimedOut`, `ConnectionRefused`,
/// `InvalidInput` for bad options) and the [`ConnectError`] as the inner error,
/// so the message still names the address.
impl From<ConnectError> for std::io::Error {
    fn from(error: ConnectError) -> Self {
        let kind = match &error {
            ConnectError::TimedOut { .. } => std::io::ErrorKind::TimedOut,
            ConnectError::Io { source, .. } => source.kind(),
            ConnectError::InvalidOptions { .. } => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, error)
    }
}
