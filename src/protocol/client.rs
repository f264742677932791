//! The client side: one TCP connection, one request at a time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Framed};

use super::codec::FrameCodec;
use super::error::{ClientError, ProtocolError};
use super::frame::{Event, Frame, FrameKind, Status};
use crate::tcp::{self, TcpOptions, Tracked};
use crate::{Condition, Role};

/// Most event frames read in one [`RpcConnection::condition`] check: a
/// server cannot keep a check busy by sending events without end.
pub(crate) const MAX_EVENTS_PER_CHECK: usize = 8;

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
    /// The server sent [`Event::GoingAway`]: finish, then close.
    going_away: bool,
    /// The going-away said `too_many_pings`: heartbeats are refused on
    /// this connection from now on (the server answers none).
    pings_refused: bool,
    /// A frame nobody asked for was read off the idle connection: the
    /// stream is out of step.
    stray: bool,
    /// The last call's round trip (start, length), until taken.
    last_call: Option<(tokio::time::Instant, Duration)>,
    /// The role the latest heartbeat reply reported.
    role: Option<Role>,
    /// The role the first heartbeat reply reported (`None` before it).
    first_role: Option<Option<Role>>,
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
            going_away: false,
            pings_refused: false,
            stray: false,
            last_call: None,
            role: None,
            first_role: None,
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
        let started = tokio::time::Instant::now();
        let reply = self.round_trip(Frame::request(id, body)).await?;
        self.last_call = Some((started, started.elapsed()));
        match reply.status {
            Status::Ok => Ok(reply.body),
            status => Err(ClientError::Rejected {
                status,
                body: reply.body,
            }),
        }
    }

    /// One heartbeat round trip on this connection, answered by the server's
    /// connection task: proves both the socket and the peer process alive,
    /// and learns the server's [`role`](Self::role).
    pub async fn heartbeat(&mut self) -> Result<(), ClientError> {
        if self.pings_refused {
            // The server answers no heartbeat here any more: sending one
            // would leave a request in flight for ever.
            return Err(ClientError::HeartbeatRefused);
        }
        let id = self.take_id();
        let reply = self.round_trip(Frame::heartbeat(id)).await?;
        if reply.status != Status::Ok {
            return Err(ClientError::Rejected {
                status: reply.status,
                body: reply.body,
            });
        }
        match reply.reported_role() {
            Ok(role) => {
                self.role = role;
                self.first_role.get_or_insert(role);
                Ok(())
            }
            Err(code) => {
                self.broken = true;
                Err(ClientError::Protocol(ProtocolError::UnknownRole { code }))
            }
        }
    }

    /// The server's role as its latest heartbeat reply reported it; `None`
    /// before the first heartbeat or if the server reports none.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// The role the first heartbeat reported, when the latest one differs:
    /// the server changed role since this connection was made.
    pub fn role_changed(&self) -> Option<(Option<Role>, Option<Role>)> {
        match self.first_role {
            Some(first) if first != self.role => Some((first, self.role)),
            _ => None,
        }
    }

    /// Whether the server said it is going away ([`Event::GoingAway`]).
    pub fn is_going_away(&self) -> bool {
        self.going_away
    }

    /// Whether the server refused this connection's heartbeats as too
    /// frequent ([`Frame::too_many_pings`](super::Frame::too_many_pings)).
    pub fn heartbeats_refused(&self) -> bool {
        self.pings_refused
    }

    /// The round trip of the last call answered since the previous take
    /// (when it started, how long it took): what a pool's adaptive heartbeat
    /// timeout learns from (see [`Manager::take_round_trip`](crate::Manager::take_round_trip)).
    pub fn take_round_trip(&mut self) -> Option<(tokio::time::Instant, Duration)> {
        self.last_call.take()
    }

    /// When the last byte arrived from the server (a reply, an event, any
    /// part of a frame): the connection's last proof of life.
    pub fn last_read(&self) -> Option<tokio::time::Instant> {
        self.framed.get_ref().last_read()
    }

    /// What this connection knows about itself, without waiting on I/O:
    /// `Broken` after any I/O or protocol error; `Dirty` if a request was cut
    /// off half way or reply bytes sit unread; `Draining` once the server
    /// said it is going away; otherwise what the socket shows (EOF, reset, or
    /// bytes arriving unasked).
    ///
    /// Bytes waiting on an idle connection are read if they form whole event
    /// frames (a going-away frame arrives unasked); anything else unasked
    /// leaves the connection `Dirty` or `Broken`.
    pub fn condition(&mut self) -> Condition {
        if self.stream_state() == Condition::Ready || self.stream_state() == Condition::Draining {
            match self.framed.get_ref().condition() {
                Condition::Dirty => self.read_events(),
                Condition::Ready | Condition::Draining => {}
                Condition::Broken => return Condition::Broken,
            }
        }
        self.stream_state()
    }

    /// What the connection's own bookkeeping knows, with no system call: an
    /// error seen, a request in flight, reply bytes read but not consumed, a
    /// going-away frame received. [`condition`](Self::condition) adds a peek
    /// at the socket.
    pub fn known_condition(&self) -> Condition {
        self.stream_state()
    }

    fn stream_state(&self) -> Condition {
        if self.broken {
            Condition::Broken
        } else if self.in_flight || self.stray || !self.framed.read_buffer().is_empty() {
            Condition::Dirty
        } else if self.going_away {
            Condition::Draining
        } else {
            Condition::Ready
        }
    }

    /// Reads the frames already waiting on an idle connection, without
    /// waiting for more: events are taken in; any other frame leaves the
    /// connection `Dirty` (the server spoke out of turn), garbage or EOF
    /// `Broken`. A frame only partly arrived stays in the read buffer, which
    /// leaves the connection `Dirty` too.
    fn read_events(&mut self) {
        for _ in 0..MAX_EVENTS_PER_CHECK {
            match self.framed.next().now_or_never() {
                None => return,
                Some(Some(Ok(frame))) if frame.is_event() => self.take_event(&frame),
                Some(Some(Ok(_))) => {
                    self.stray = true;
                    return;
                }
                Some(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    /// Acts on an event frame; events this version does not know are ignored,
    /// so a server may add new ones.
    fn take_event(&mut self, frame: &Frame) {
        if frame.announced_event() == Some(Event::GoingAway) {
            if !self.going_away {
                tracing::debug!(peer = ?self.peer_addr().ok(), "server is going away");
            }
            self.going_away = true;
            if frame.says_too_many_pings() && !self.pings_refused {
                tracing::debug!(peer = ?self.peer_addr().ok(), "server refuses heartbeats as too frequent");
                self.pings_refused = true;
            }
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
        // A draining connection still serves its holder: the server
        // finishes what arrives until the client closes.
        match self.stream_state() {
            Condition::Ready | Condition::Draining => {}
            condition => return Err(ClientError::Unusable { condition }),
        }
        self.in_flight = true;
        let reply = match self.request_timeout {
            None => self.exchange(request).await,
            Some(after) => tokio::time::timeout(after, self.exchange(request))
                .await
                // The request stays in flight: the connection is left Dirty.
                .unwrap_or(Err(ClientError::TimedOut { after })),
        };
        if let Err(ClientError::HeartbeatRefused) = reply {
            // Refused, not owed: the server sends no reply to it.
            self.in_flight = false;
        }
        let reply = reply?;
        self.in_flight = false;
        self.take_buffered_events();
        Ok(reply)
    }

    /// Takes in the event frames already read behind a reply (a going-away
    /// frame that shared a segment with the last reply), from the buffer
    /// only, no system call: left there, they would make the returned
    /// member look `Dirty` (bytes unread) instead of `Draining`, so a
    /// graceful restart would be counted as a failure of its server.
    fn take_buffered_events(&mut self) {
        let mut codec = FrameCodec::new(self.framed.codec().max_body());
        for _ in 0..MAX_EVENTS_PER_CHECK {
            if self.framed.read_buffer().is_empty() {
                return;
            }
            match codec.decode(self.framed.read_buffer_mut()) {
                Ok(Some(frame)) if frame.is_event() => self.take_event(&frame),
                Ok(Some(_)) => {
                    self.stray = true;
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }

    async fn exchange(&mut self, request: Frame) -> Result<Frame, ClientError> {
        let expected_id = request.id;
        let expected = match request.kind() {
            FrameKind::HeartbeatRequest => FrameKind::HeartbeatReply,
            _ => FrameKind::Reply,
        };
        let outcome = async {
            self.framed.send(request).await?;
            // Events may come first (bounded by the request timeout).
            let reply = loop {
                match self.framed.next().await {
                    None => return Err(ClientError::Closed),
                    Some(frame) => {
                        let frame = frame?;
                        if frame.is_event() {
                            self.take_event(&frame);
                            if self.pings_refused && expected == FrameKind::HeartbeatReply {
                                // Sent in place of this heartbeat's reply.
                                return Err(ClientError::HeartbeatRefused);
                            }
                            continue;
                        }
                        break frame;
                    }
                }
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
        if outcome
            .as_ref()
            .is_err_and(|e| !matches!(e, ClientError::HeartbeatRefused))
        {
            self.broken = true;
        }
        outcome
    }
}
