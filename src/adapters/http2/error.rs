//! Why an HTTP/2 connect or heartbeat failed.

use std::fmt;
use std::net::SocketAddr;

use crate::tcp::ConnectError;

/// Why an HTTP/2 connect or heartbeat failed.
///
/// `Display` says which step failed; the cause is the
/// [`source`](std::error::Error::source): a [`ConnectError`], the
/// transport's error, or the `h2::Error` (kept in the variant, so code can
/// read its [`reason`](h2::Error::reason) or ask
/// [`is_go_away`](h2::Error::is_go_away)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Http2ManagerError {
    /// The TCP connection could not be opened.
    Connect(ConnectError),
    /// The [`Transport`](super::Transport) could not wrap the socket (a
    /// TLS handshake failed).
    Transport {
        /// The server, as `host:port`.
        host: String,
        /// What the transport's
        /// [`is_permanent`](super::Transport::is_permanent) said of it.
        permanent: bool,
        /// The transport's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP/2 handshake (client preface and `SETTINGS`) could not be
    /// written.
    Handshake {
        /// The server's address.
        peer: SocketAddr,
        /// What h2 said.
        source: h2::Error,
    },
    /// The `PING` found no answer: the connection ended (the error it
    /// ended with, e.g. a server's `GOAWAY` or a malformed frame, is the
    /// cause), or the ping itself failed.
    Heartbeat(h2::Error),
    /// h2 gave no `PING` handle for a new connection. h2 0.4 always gives
    /// one; this keeps a change there a typed error rather than a panic.
    NoPingHandle,
}

impl fmt::Display for Http2ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Http2ManagerError::Connect(_) => f.write_str("could not connect to the HTTP/2 server"),
            Http2ManagerError::Transport { host, .. } => {
                write!(f, "the transport to {host} could not be set up")
            }
            Http2ManagerError::Handshake { peer, .. } => {
                write!(f, "HTTP/2 handshake with {peer} failed")
            }
            Http2ManagerError::Heartbeat(_) => f.write_str("HTTP/2 heartbeat (PING) failed"),
            Http2ManagerError::NoPingHandle => {
                f.write_str("the HTTP/2 connection gave no PING handle")
            }
        }
    }
}

impl std::error::Error for Http2ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Http2ManagerError::Connect(e) => Some(e),
            Http2ManagerError::Transport { source, .. } => Some(source.as_ref()),
            // h2's errors print their own cause and return none.
            Http2ManagerError::Handshake { source, .. } => Some(source),
            Http2ManagerError::Heartbeat(e) => Some(e),
            Http2ManagerError::NoPingHandle => None,
        }
    }
}
