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

/// Resolves `host` (a name or an IP literal) at every call, so a DNS change
/// reaches the next connect, then tries each address it resolved to in
/// turn, each with `opts` applied and bounded by `opts.connect_timeout`,
/// until one connects.
///
/// Why every address: a name with an IPv6 and an IPv4 address, or several
/// replicas behind one name, must not fail because the first address is
/// unreachable. The error of each failed address is kept.
///
/// ```no_run
/// # async fn demo() -> Result<(), livepool::tcp::ConnectError> {
/// use livepool::tcp::{connect_host, TcpOptions};
///
/// let stream = connect_host("localhost", 6379, &TcpOptions::default()).await?;
/// # drop(stream);
/// # Ok(())
/// # }
/// ```
pub async fn connect_host(
    host: &str,
    port: u16,
    opts: &TcpOptions,
) -> Result<TcpStream, ConnectError> {
    // An IP literal needs no lookup (and no blocking thread).
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return connect(SocketAddr::new(ip, port), opts).await;
    }
    let resolve_error = |source| ConnectError::Resolve {
        host: host.to_owned(),
        source,
    };
    let lookup = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(opts.connect_timeout, lookup).await {
        Ok(Ok(addrs)) => addrs.take(MAX_ADDRESSES_TRIED).collect(),
        Ok(Err(source)) => return Err(resolve_error(source)),
        Err(_elapsed) => {
            return Err(resolve_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", opts.connect_timeout),
            )));
        }
    };
    connect_each(host, addrs, opts).await
}

/// Tries each of the addresses `host` resolved to, in order, until one
/// connects; keeps each failure.
async fn connect_each(
    host: &str,
    addrs: Vec<SocketAddr>,
    opts: &TcpOptions,
) -> Result<TcpStream, ConnectError> {
    let mut failures = Vec::new();
    for addr in addrs {
        match connect(addr, opts).await {
            Ok(stream) => return Ok(stream),
            // Bad options fail the same way for every address.
            Err(e @ ConnectError::InvalidOptions { .. }) => return Err(e),
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Err(ConnectError::Resolve {
            host: host.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolved to no address",
            ),
        }),
        1 => Err(failures.remove(0)),
        _ => Err(ConnectError::EveryAddress {
            host: host.to_owned(),
            failures,
        }),
    }
}

/// A name that resolves to more addresses than this has the rest ignored:
/// bounded work per connect.
const MAX_ADDRESSES_TRIED: usize = 16;

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
    /// [`connect_host`] could not resolve the name (or it resolved to nothing).
    Resolve {
        /// The name looked up.
        host: String,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// [`connect_host`] tried every address the name resolved to, and each
    /// failed; the failures in the order tried.
    EveryAddress {
        /// The name looked up.
        host: String,
        /// One failure per address tried.
        failures: Vec<ConnectError>,
    },
}

impl ConnectError {
    /// The address the failed connect was going to; for a name, the last
    /// address tried, or `None` if it never resolved.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            ConnectError::TimedOut { addr, .. }
            | ConnectError::Io { addr, .. }
            | ConnectError::InvalidOptions { addr, .. } => Some(*addr),
            ConnectError::Resolve { .. } => None,
            ConnectError::EveryAddress { failures, .. } => failures.last().and_then(|e| e.addr()),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut { addr, after } => {
                write!(f, "connecting to {addr} timed out after {after:?}")
            }
            ConnectError::Io { addr, .. } => write!(f, "connecting to {addr} failed"),
            ConnectError::InvalidOptions { addr, .. } => {
                write!(f, "not connecting to {addr}: invalid socket options")
            }
            ConnectError::Resolve { host, .. } => write!(f, "could not resolve {host}"),
            ConnectError::EveryAddress { host, failures } => {
                write!(
                    f,
                    "connecting to {host} failed at each of its {} addresses (",
                    failures.len()
                )?;
                for (i, failure) in failures.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    // Each address's own cause is written here: a chain has
                    // one source, and these are siblings.
                    match std::error::Error::source(failure) {
                        Some(cause) => write!(f, "{sep}{failure}: {cause}")?,
                        None => write!(f, "{sep}{failure}")?,
                    }
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::TimedOut { .. } | ConnectError::EveryAddress { .. } => None,
            ConnectError::Io { source, .. } | ConnectError::Resolve { source, .. } => Some(source),
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
            ConnectError::Resolve { source, .. } => source.kind(),
            ConnectError::EveryAddress { failures, .. } => {
                failures
                    .last()
                    .map_or(std::io::ErrorKind::NotFound, |e| match e {
                        ConnectError::Io { source, .. } => source.kind(),
                        _ => std::io::ErrorKind::TimedOut,
                    })
            }
        };
        std::io::Error::new(kind, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn every_resolved_address_is_tried_in_turn() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (dead, live_addr) = (closed_port(), live.local_addr().unwrap());
        let opts = TcpOptions::default();
        let stream = connect_each("db.example", vec![dead, live_addr], &opts)
            .await
            .expect("the second address accepts");
        assert_eq!(stream.peer_addr().unwrap(), live_addr);

        let (dead2, dead3) = (closed_port(), closed_port());
        match connect_each("db.example", vec![dead2, dead3], &opts).await {
            Err(ConnectError::EveryAddress { host, failures }) => {
                assert_eq!(host, "db.example");
                let tried: Vec<_> = failures.iter().map(ConnectError::addr).collect();
                assert_eq!(tried, [Some(dead2), Some(dead3)]);
            }
            other => panic!("expected EveryAddress, got {other:?}"),
        }
        assert!(matches!(
            connect_each("db.example", Vec::new(), &opts).await,
            Err(ConnectError::Resolve { .. })
        ));
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_and_connected() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        let stream = connect_host("localhost", port, &TcpOptions::default())
            .await
            .expect("localhost resolves to the loopback");
        assert!(stream.peer_addr().unwrap().ip().is_loopback());
    }
}
