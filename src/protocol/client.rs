//! The client side: one TCP connection, one request at a time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::codec::FrameCodec;
use super::error::{ClientError, ProtocolError};
use super::frame::{Frame, FrameKind, Status};
use crate::Condition;
use crate::tcp::{self, TcpOptions, Tracked};

/// How long a call or heartbeat waits for its reply unless told otherwise:
/// long enough for any sane server, short enough that a hung one is noticed.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client connection of the reference protocol.
///
/// It keeps the stream in step: every reply must carry the id of the request
/// in flight, and a connection that has seen an error or was abandoned
/// mid-request reports it through [`condition`](Self::condition) and refuses
/// further calls, so a pool evicts it instead of handing a caller someone
/// else's answer.
///
/// ```no_run
/// use bytes::Bytes;
/// use livepool::protocol::{RpcConnection, DEFAULT_MAX_BODY};
/// use livepool::tcp::TcpOptions;
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), livepool::protocol::ClientError> {
/// let opts = TcpOptions::default();
/// let mut conn = RpcConnection::connect("127.0.0.1:7000".parse().unwrap(), &opts, DEFAULT_MAX_BODY).await?;
/// conn.set_request_timeout(Some(Duration::from_secs(2)));
/// conn.heartbeat().await?;
/// let reply = conn.call(Bytes::from_static(b"hello")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RpcConnection {
    framed: Framed<Tracked<TcpStream>, FrameCodec>,
    next_id: u64,
    request_timeout: Option<Duration>,
    /// Set before a request is written, cleared once its reply is read: still
    /// set afterwards means the exchange was cut off half way.
    in_flight: bool,
    broken: bool,
}

impl RpcConnection {
    /// Connects through [`tcp::connect`] (so the kernel keepalive and
    /// `TCP_USER_TIMEOUT` of `opts` apply) and refuses bodies over `max_body`
    /// in both directions.
    pub async fn connect(
        addr: SocketAddr,
        opts: &TcpOptions,
        max_body: usize,
    ) -> Result<Self, ClientError> {
        let stream = tcp::connect(addr, opts).await?;
        Ok(Self {
            framed: Framed::new(Tracked::new(stream), FrameCodec::new(max_body)),
            next_id: 1,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            in_flight: false,
            broken: false,
        })
    }

    /// Bounds each call and heartbeat (default [`DEFAULT_REQUEST_TIMEOUT`]).
    /// `None` leaves the bound to the caller, e.g. the pool's own timeouts.
    pub fn set_request_timeout(&mut self, timeout: Option<Duration>) {
        self.request_timeout = timeout;
    }

    /// The server's address.
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.framed.get_ref().get_ref().peer_addr()
    }

    /// The local address, which tells connections apart in tests and logs.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.framed.get_ref().get_ref().local_addr()
    }

    /// Sends `body` as one request and waits for its reply.
    ///
    /// Dropping the future before it completes leaves the connection
    /// [`Dirty`](Condition::Dirty). A non-`Ok` status from the server is
    /// [`ClientError::Rejected`] and leaves the connection usable.
    pub async fn call(&mut self, body: Bytes) -> Result<Bytes, ClientError> {
        if body.len() > self.framed.codec().max_body() {
            // Refused before anything is written, so the stream stays in step.
            return Err(ClientError::Protocol(ProtocolError::BodyTooLarge {
                len: body.len() as u64,
                max: self.framed.codec().max_body(),
            }));
        }
        let id = self.take_id();
        let reply = self.round_trip(Frame::request(id, body)).await?;
        match reply.status {
            Status::Ok => Ok(reply.body),
            status => Err(ClientError::Rejected {
                status,
                body: reply.body,
            }),
        }
    }

    /// One heartbeat round trip on this connection, answered by the server's
    /// connection task: proves both the socket and the peer process alive.
    pub async fn heartbeat(&mut self) -> Result<(), ClientError> {
        let id = self.take_id();
        let reply = self.round_trip(Frame::heartbeat(id)).await?;
        match reply.status {
            Status::Ok => Ok(()),
            status => Err(ClientError::Rejected {
                status,
                body: reply.body,
            }),
        }
    }

    /// What this connection knows about itself, without waiting on I/O:
    /// `Broken` after any I/O or protocol error; `Dirty` if a request was cut
    /// off half way or reply bytes sit unread; otherwise what the socket shows
    /// (EOF, reset, or bytes arriving unasked).
    pub fn condition(&self) -> Condition {
        match self.stream_state() {
            Condition::Ready => self.framed.get_ref().condition(),
            known => known,
        }
    }

    /// What this connection's own bookkeeping says, without asking the
    /// socket: enough to keep requests and replies in step, and free of
    /// system calls, so every call can afford it.
    /// What the connection's own bookkeeping knows, with no system call: an
    /// error seen, a request in flight, reply bytes read but not consumed.
    /// [`condition`](Self::condition) adds a peek at the socket.
    pub fn known_condition(&self) -> Condition {
        self.stream_state()
    }

    fn stream_state(&self) -> Condition {
        if self.broken {
            Condition::Broken
        } else if self.in_flight || !self.framed.read_buffer().is_empty() {
            Condition::Dirty
        } else {
            Condition::Ready
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Writes `request`, reads its reply, and checks that the reply answers it.
    async fn round_trip(&mut self, request: Frame) -> Result<Frame, ClientError> {
        // Stray bytes on the socket need no peek here: a reply they belong
        // to would carry the wrong id and be caught below.
        match self.stream_state() {
            Condition::Ready => {}
            condition => return Err(ClientError::Unusable { condition }),
        }
        self.in_flight = true;
        let reply = match self.request_timeout {
            None => self.exchange(request).await,
            Some(after) => tokio::time::timeout(after, self.exchange(request))
                .await
                // The request stays in flight: the connection is left Dirty.
                .unwrap_or(Err(ClientError::TimedOut { after })),
        }?;
        self.in_flight = false;
        Ok(reply)
    }

    async fn exchange(&mut self, request: Frame) -> Result<Frame, ClientError> {
        let expected_id = request.id;
        let expected = match request.kind() {
            FrameKind::HeartbeatRequest => FrameKind::HeartbeatReply,
            _ => FrameKind::Reply,
        };
        let outcome = async {
            self.framed.send(request).await?;
            let reply = match self.framed.next().await {
                None => return Err(ClientError::Closed),
                Some(reply) => reply?,
            };
            if reply.is_request() {
                return Err(ClientError::UnexpectedFrame {
                    expected,
                    got: reply.kind(),
                });
            }
            if reply.id != expected_id {
                return Err(ClientError::UnexpectedReply {
                    expected_id,
                    got_id: reply.id,
                });
            }
            if reply.kind() != expected {
                return Err(ClientError::UnexpectedFrame {
                    expected,
                    got: reply.kind(),
                });
            }
            Ok(reply)
        }
        .await;
        if outcome.is_err() {
            self.broken = true;
        }
        outcome
    }
}
