//! Typed errors of the reference protocol: what went wrong on the wire, in
//! the client, and when starting a server.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::frame::{FrameKind, Status};
use crate::{Condition, Role};

/// A role or "none", for messages.
struct RoleName(Option<Role>);

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(role) => role.fmt(f),
            None => f.write_str("none"),
        }
    }
}
use crate::tcp::ConnectError;

/// The byte stream broke the protocol's rules (or the socket under it failed).
///
/// Every variant but [`Io`](ProtocolError::Io) means the peer is not speaking
/// this protocol correctly; the stream cannot be resynchronised and the
/// connection must be closed.
#[derive(Debug)]
pub enum ProtocolError {
    /// The header did not start with [`MAGIC`](super::MAGIC).
    BadMagic {
        /// The two bytes found instead.
        found: u16,
    },
    /// The flags byte had bits this version does not define.
    UnknownFlags {
        /// The whole flags byte as received.
        flags: u8,
    },
    /// The status byte was not a known [`Status`].
    UnknownStatus {
        /// The byte as received.
        code: u8,
    },
    /// A body longer than the configured limit, refused before any buffer
    /// was grown for it.
    BodyTooLarge {
        /// The announced (or, when encoding, the actual) body length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    UnexpectedEof {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// A heartbeat reply reported a role code this version does not know.
    UnknownRole {
        /// The code byte as received.
        code: u8,
    },
    /// Reading or writing the socket failed.
    Io(io::Error),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { found } => write!(
                f,
                "bad frame magic {found:#06x} (expected {:#06x}): the peer does not speak this protocol",
                super::MAGIC
            ),
            Self::UnknownFlags { flags } => {
                write!(f, "frame flags {flags:#010b} contain unknown bits")
            }
            Self::UnknownStatus { code } => write!(f, "unknown frame status code {code}"),
            Self::BodyTooLarge { len, max } => {
                write!(
                    f,
                    "frame body of {len} bytes exceeds the limit of {max} bytes"
                )
            }
            Self::UnexpectedEof { buffered } => write!(
                f,
                "connection closed in the middle of a frame ({buffered} bytes of it received)"
            ),
            Self::UnknownRole { code } => {
                write!(f, "heartbeat reply reports unknown role code {code}")
            }
            Self::Io(_) => f.write_str("socket I/O failed"),
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for ProtocolError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// Why a client call, heartbeat or connect failed.
///
/// Only [`Rejected`](ClientError::Rejected) and a
/// [`BodyTooLarge`](ProtocolError::BodyTooLarge) refused before sending leave
/// the connection usable; every other error leaves it
/// [`Broken`](Condition::Broken) or, for [`TimedOut`](ClientError::TimedOut),
/// [`Dirty`](Condition::Dirty).
#[derive(Debug)]
pub enum ClientError {
    /// The TCP connection could not be made.
    Connect(ConnectError),
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The peer sent bytes that are not a valid frame.
    Protocol(ProtocolError),
    /// A reply arrived for a request id other than the one in flight: the
    /// stream is out of step.
    UnexpectedReply {
        /// The id of the request in flight.
        expected_id: u64,
        /// The id the reply carried.
        got_id: u64,
    },
    /// A frame of the wrong kind arrived (for example a business reply to a
    /// heartbeat, or a request from the server).
    UnexpectedFrame {
        /// What the client was waiting for.
        expected: FrameKind,
        /// What arrived.
        got: FrameKind,
    },
    /// The server closed the connection (clean EOF between frames).
    Closed,
    /// No reply within the connection's request timeout. The request is still
    /// in flight, so the connection is left [`Dirty`](Condition::Dirty).
    TimedOut {
        /// The timeout that expired.
        after: Duration,
    },
    /// The server answered with a non-`Ok` status. The connection is fine.
    Rejected {
        /// The status of the reply.
        status: Status,
        /// The body of the reply (a message from the server, if any).
        body: Bytes,
    },
    /// The connection had already failed or was left mid-request, so it was
    /// not used: a reply read now could belong to an older request.
    Unusable {
        /// Its condition when the call was refused.
        condition: Condition,
    },
    /// The server's role is not the one it had when this connection was made
    /// (an [`RpcManager`](super::RpcManager) that tracks roles reports it from
    /// the heartbeat, so the pool evicts the member). The connection works;
    /// what it is connected *to* changed.
    RoleChanged {
        /// The role at connect.
        from: Option<Role>,
        /// The role now.
        to: Option<Role>,
    },
    /// The server refused the heartbeat as too frequent (a going-away event
    /// saying `too_many_pings`). The connection is in step and still serves
    /// requests, but it is [`Draining`](Condition::Draining): the server
    /// asked the client to close it, and to ping less often.
    HeartbeatRefused,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("could not connect"),
            Self::Io(_) => f.write_str("connection I/O failed"),
            Self::Protocol(_) => f.write_str("the server broke the protocol"),
            Self::UnexpectedReply {
                expected_id,
                got_id,
            } => write!(
                f,
                "reply carries request id {got_id} but request {expected_id} is in flight"
            ),
            Self::UnexpectedFrame { expected, got } => {
                write!(f, "expected a {expected} but received a {got}")
            }
            Self::Closed => f.write_str("the server closed the connection"),
            Self::HeartbeatRefused => {
                f.write_str("the server refused the heartbeat as too frequent (too_many_pings)")
            }
            Self::TimedOut { after } => write!(f, "no reply within {after:?}"),
            Self::Rejected { status, body } => {
                write!(f, "the server answered \"{status}\"")?;
                if !body.is_empty() {
                    write!(f, ": {}", String::from_utf8_lossy(body))?;
                }
                Ok(())
            }
            Self::Unusable { condition } => write!(
                f,
                "connection not used: it is {condition:?} after an earlier failure or cancellation"
            ),
            Self::RoleChanged { from, to } => write!(
                f,
                "the server's role changed from {} to {}",
                RoleName(*from),
                RoleName(*to)
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(err) => Some(err),
            Self::Io(err) => Some(err),
            Self::Protocol(err) => Some(err),
            _ => None,
        }
    }
}

impl From<ProtocolError> for ClientError {
    fn from(err: ProtocolError) -> Self {
        match err {
            ProtocolError::Io(io) => Self::Io(io),
            other => Self::Protocol(other),
        }
    }
}

impl From<ConnectError> for ClientError {
    fn from(err: ConnectError) -> Self {
        Self::Connect(err)
    }
}

/// The server could not start listening.
#[derive(Debug)]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the socket layer said.
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not listen on {}", self.addr)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
