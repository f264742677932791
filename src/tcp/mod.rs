//! Connecting: socket2 options, connect timeout, the tracked stream.
//!
//! STAND-IN: a minimal version with the agreed signatures so the protocol
//! layer builds; the `tcp` branch replaces this whole directory at merge.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Condition;

/// Socket options applied to every connection, so the kernel layer of
/// liveness is configured in one place.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// Disable Nagle's algorithm: small request frames must leave at once.
    pub nodelay: bool,
    /// Kernel keepalive probes, to notice a vanished peer host.
    pub keepalive: Option<Keepalive>,
    /// How long unacknowledged data may sit before the kernel gives up.
    pub user_timeout: Option<Duration>,
    /// Bound on the TCP handshake, so a black-holed address cannot hang a caller.
    pub connect_timeout: Duration,
}

impl Default for TcpOptions {
    /// Same defaults as the real module: usable as they are.
    fn default() -> Self {
        Self {
            nodelay: true,
            keepalive: None,
            user_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Kernel keepalive timings: when to start probing, how often, how many misses.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub retries: u32,
}

/// Why a connect failed, with the address so a log line is self-explanatory.
#[derive(Debug)]
pub enum ConnectError {
    /// The handshake did not finish within `connect_timeout`.
    TimedOut {
        /// The address that did not answer.
        addr: SocketAddr,
        /// The timeout that expired.
        after: Duration,
    },
    /// The socket layer refused (connection refused, unreachable, ...).
    Io {
        /// The address being connected to.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut { addr, after } => {
                write!(f, "connecting to {addr} timed out after {after:?}")
            }
            Self::Io { addr, .. } => write!(f, "connecting to {addr} failed"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TimedOut { .. } => None,
            Self::Io { source, .. } => Some(source),
        }
    }
}

impl From<ConnectError> for io::Error {
    fn from(err: ConnectError) -> Self {
        let kind = match &err {
            ConnectError::TimedOut { .. } => io::ErrorKind::TimedOut,
            ConnectError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, err)
    }
}

/// Opens a TCP connection bounded by `opts.connect_timeout`.
pub async fn connect(addr: SocketAddr, opts: &TcpOptions) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(opts.nodelay);
            Ok(stream)
        }
        Ok(Err(source)) => Err(ConnectError::Io { addr, source }),
        Err(_) => Err(ConnectError::TimedOut {
            addr,
            after: opts.connect_timeout,
        }),
    }
}

/// A stream wrapper that remembers what it saw, so the pool can judge a
/// connection without the protocol's help.
#[pin_project]
#[derive(Debug)]
pub struct Tracked<S> {
    #[pin]
    inner: S,
    last_read: Instant,
    last_write: Instant,
    saw_eof: bool,
}

impl<S> Tracked<S> {
    /// Wraps a stream.
    pub fn new(inner: S) -> Self {
        let now = Instant::now();
        Self {
            inner,
            last_read: now,
            last_write: now,
            saw_eof: false,
        }
    }
    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
    /// When bytes were last read.
    pub fn last_read(&self) -> Instant {
        self.last_read
    }
    /// When bytes were last written.
    pub fn last_write(&self) -> Instant {
        self.last_write
    }
    /// Whether a read returned EOF.
    pub fn saw_eof(&self) -> bool {
        self.saw_eof
    }
}

impl Tracked<TcpStream> {
    /// Stand-in: always `Ready`.
    pub fn condition(&self) -> Condition {
        Condition::Ready
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
