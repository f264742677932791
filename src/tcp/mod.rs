//! Connecting: socket2 options, connect timeout, the tracked stream.
//!
//! STAND-IN (to be replaced by the `tcp` branch): only the contract's
//! signatures, so the adapters build and test before it lands.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// How the kernel probes an idle connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the kernel drops the connection.
    pub retries: u32,
}

/// How [`connect`] builds a pooled TCP connection.
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// Kernel keepalive.
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT`.
    pub user_timeout: Option<Duration>,
    /// Longest wait for the handshake.
    pub connect_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(5),
                retries: 3,
            }),
            user_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why [`connect`] gave no connection.
#[derive(Debug)]
pub enum ConnectError {
    /// The handshake did not finish in time.
    TimedOut {
        /// Where the connection was going.
        addr: SocketAddr,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connect failed.
    Io {
        /// Where the connection was going.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut { addr, after } => {
                write!(f, "connecting to {addr} timed out after {after:?}")
            }
            ConnectError::Io { addr, source } => write!(f, "connecting to {addr} failed: {source}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Io { source, .. } => Some(source),
            ConnectError::TimedOut { .. } => None,
        }
    }
}

impl From<ConnectError> for io::Error {
    fn from(e: ConnectError) -> io::Error {
        let kind = match &e {
            ConnectError::TimedOut { .. } => io::ErrorKind::TimedOut,
            ConnectError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Opens a TCP connection with `opts` applied.
pub async fn connect(addr: SocketAddr, opts: &TcpOptions) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Err(_) => {
            return Err(ConnectError::TimedOut {
                addr,
                after: opts.connect_timeout,
            });
        }
    };
    let io_error = |source| ConnectError::Io { addr, source };
    stream.set_nodelay(opts.nodelay).map_err(io_error)?;
    let sock = SockRef::from(&stream);
    if let Some(k) = opts.keepalive {
        let params = TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.retries);
        sock.set_tcp_keepalive(&params).map_err(io_error)?;
    }
    #[cfg(target_os = "linux")]
    sock.set_tcp_user_timeout(opts.user_timeout)
        .map_err(io_error)?;
    Ok(stream)
}
