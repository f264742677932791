//! One message of the reference protocol: a fixed 16-byte header and a body.
//!
//! The header is laid out like Dubbo's (big-endian):
//!
//! | bytes | field       | meaning                                                  |
//! |-------|-------------|----------------------------------------------------------|
//! | 0..2  | magic       | [`MAGIC`]: rejects a peer speaking something else at once |
//! | 2     | flags       | [`Flags`]: request / two-way / heartbeat / event bits    |
//! | 3     | status      | [`Status`] of a reply; `Ok` in requests                  |
//! | 4..12 | request id  | chosen by the client, echoed by the reply                |
//! | 12..16| body length | checked against the codec's limit before any allocation  |
//!
//! Control frames (heartbeats and events) carry at most
//! [`MAX_CONTROL_BODY`](super::MAX_CONTROL_BODY) bytes:
//!
//! * a heartbeat reply's body is empty (the server reports no role: what
//!   servers before roles sent) or starts with one [`Role`] code byte (1
//!   primary, 2 replica, 3 read-only); further bytes are reserved and ignored.
//!   Clients before roles ignore the body, so the change is backward compatible.
//! * an event frame (flag [`Flags::EVENT`], server to client, id 0, never
//!   answered) starts with one [`Event`] code byte. The only event is
//!   [`Event::GoingAway`]: the server is shutting down gracefully, finishes
//!   what is in flight, and the client should not start anything new on this
//!   connection (Dubbo's READONLY event, HTTP/2's GOAWAY). A client that does
//!   not know the bit reports a protocol error and closes the connection,
//!   which is what the server asked for anyway.

use std::fmt;
use std::ops::BitOr;

use bytes::Bytes;

use crate::Role;

/// First two bytes of every frame. A stream that does not start with them is
/// not speaking this protocol, and the codec refuses it before reading further.
pub const MAGIC: u16 = 0x1F7E;

/// Size of the fixed header that precedes every body.
pub const HEADER_LEN: usize = 16;

/// The flag bits of a frame header. Kept as a checked newtype so an unknown
/// bit (a newer or foreign peer) is an error rather than silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No bits: a one-way business reply (never sent by this crate).
    pub const NONE: Flags = Flags(0);
    /// Set on requests, clear on replies: tells the two directions apart.
    pub const REQUEST: Flags = Flags(0b0000_0001);
    /// The sender waits for a reply; without it a request is fire-and-forget.
    pub const TWO_WAY: Flags = Flags(0b0000_0010);
    /// An in-band liveness probe (or its answer), handled by the peer's
    /// connection task and never by business handlers.
    pub const HEARTBEAT: Flags = Flags(0b0000_0100);
    /// A server-to-client event ([`Event`]), sent unasked and never
    /// answered.
    pub const EVENT: Flags = Flags(0b0000_1000);

    const KNOWN: u8 = Self::REQUEST.0 | Self::TWO_WAY.0 | Self::HEARTBEAT.0 | Self::EVENT.0;

    /// Accepts only the bits this version understands, so the codec can
    /// report anything else as a protocol error.
    pub const fn from_bits(bits: u8) -> Option<Flags> {
        if bits & !Self::KNOWN == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// The wire byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The outcome a reply reports. A non-`Ok` status is an answer from a live
/// peer (the connection stays usable); it is not a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// The request was handled; the body is the answer.
    Ok = 0,
    /// The server could not make sense of the request.
    BadRequest = 1,
    /// The handler failed, or produced a reply too large to send.
    ServerError = 2,
    /// The server is overloaded and did not handle the request.
    ServerBusy = 3,
}

impl Status {
    /// Every status, for tests and exhaustive matching on the wire byte.
    pub const ALL: [Status; 4] = [
        Status::Ok,
        Status::BadRequest,
        Status::ServerError,
        Status::ServerBusy,
    ];

    /// Decodes the wire byte; `None` for codes this version does not know.
    pub const fn from_code(code: u8) -> Option<Status> {
        match code {
            0 => Some(Status::Ok),
            1 => Some(Status::BadRequest),
            2 => Some(Status::ServerError),
            3 => Some(Status::ServerBusy),
            _ => None,
        }
    }

    /// The wire byte.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Status::Ok => "ok",
            Status::BadRequest => "bad request",
            Status::ServerError => "server error",
            Status::ServerBusy => "server busy",
        };
        f.write_str(text)
    }
}

/// What a frame is for, derived from its flags. Lets the client say exactly
/// which kind of frame it expected and which it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A business request for the server's handler.
    Request,
    /// The answer to a business request.
    Reply,
    /// An in-band liveness probe.
    HeartbeatRequest,
    /// The answer to a liveness probe.
    HeartbeatReply,
    /// A server-to-client [`Event`], such as going away.
    Event,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FrameKind::Request => "business request",
            FrameKind::Reply => "business reply",
            FrameKind::HeartbeatRequest => "heartbeat request",
            FrameKind::HeartbeatReply => "heartbeat reply",
            FrameKind::Event => "event",
        };
        f.write_str(text)
    }
}

/// One decoded message. The body is reference-counted [`Bytes`], so a server
/// can echo it and a client can hand it on without copying.
///
/// ```
/// use bytes::Bytes;
/// use livepool::protocol::{Frame, FrameKind, Status};
///
/// let request = Frame::request(7, Bytes::from_static(b"ping"));
/// let reply = request.reply(Status::Ok, Bytes::from_static(b"pong"));
/// assert_eq!(reply.id, 7);
/// assert_eq!(reply.kind(), FrameKind::Reply);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Direction, reply expectation and heartbeat bits.
    pub flags: Flags,
    /// The outcome, meaningful in replies.
    pub status: Status,
    /// Pairs a reply with its request.
    pub id: u64,
    /// The payload; its length is bounded by the codec.
    pub body: Bytes,
}

impl Frame {
    /// A two-way business request: what [`RpcConnection::call`](super::RpcConnection::call) sends.
    pub fn request(id: u64, body: Bytes) -> Frame {
        Frame {
            flags: Flags::REQUEST | Flags::TWO_WAY,
            status: Status::Ok,
            id,
            body,
        }
    }

    /// A two-way heartbeat probe with an empty body.
    pub fn heartbeat(id: u64) -> Frame {
        Frame {
            flags: Flags::REQUEST | Flags::TWO_WAY | Flags::HEARTBEAT,
            status: Status::Ok,
            id,
            body: Bytes::new(),
        }
    }

    /// The event frame announcing `event`: server to client, id 0, never
    /// answered.
    ///
    /// ```
    /// use livepool::protocol::{Event, Frame, FrameKind};
    /// let frame = Frame::event(Event::GoingAway);
    /// assert_eq!(frame.kind(), FrameKind::Event);
    /// assert_eq!(frame.announced_event(), Some(Event::GoingAway));
    /// ```
    pub fn event(event: Event) -> Frame {
        Frame {
            flags: Flags::EVENT,
            status: Status::Ok,
            id: 0,
            body: Bytes::from_static(event.wire()),
        }
    }

    /// A going-away event saying why: the client's heartbeats came more
    /// often than the server allows (gRPC's GOAWAY `too_many_pings`). The
    /// server answers the offending heartbeat with this instead of a reply,
    /// answers no heartbeat on the connection after it, and still serves
    /// business requests until the client closes. A client before reasons
    /// reads a plain going-away (it ignores the reason byte).
    ///
    /// ```
    /// use livepool::protocol::{Event, Frame};
    /// let frame = Frame::too_many_pings();
    /// assert_eq!(frame.announced_event(), Some(Event::GoingAway));
    /// assert!(frame.says_too_many_pings());
    /// assert!(!Frame::event(Event::GoingAway).says_too_many_pings());
    /// ```
    pub fn too_many_pings() -> Frame {
        Frame {
            body: Bytes::from_static(&[1, GOING_AWAY_TOO_MANY_PINGS]),
            ..Frame::event(Event::GoingAway)
        }
    }

    /// Whether this is a going-away event saying `too_many_pings`.
    pub fn says_too_many_pings(&self) -> bool {
        self.announced_event() == Some(Event::GoingAway)
            && self.body.get(1) == Some(&GOING_AWAY_TOO_MANY_PINGS)
    }

    /// A heartbeat reply reporting `role` (none: an empty body, as servers
    /// before roles answered).
    pub fn heartbeat_reply(&self, role: Option<Role>) -> Frame {
        let body = match role {
            None => Bytes::new(),
            Some(role) => Bytes::from_static(role_wire(role)),
        };
        self.reply(Status::Ok, body)
    }

    /// The answer to this frame: same id, same heartbeat bit, request bits
    /// cleared. Building replies only this way keeps them matched to requests.
    pub fn reply(&self, status: Status, body: Bytes) -> Frame {
        Frame {
            flags: if self.is_heartbeat() {
                Flags::HEARTBEAT
            } else {
                Flags::NONE
            },
            status,
            id: self.id,
            body,
        }
    }

    /// Whether this travels client to server.
    pub fn is_request(&self) -> bool {
        self.flags.contains(Flags::REQUEST)
    }

    /// Whether the sender waits for an answer.
    pub fn is_two_way(&self) -> bool {
        self.flags.contains(Flags::TWO_WAY)
    }

    /// Whether this is a liveness probe or its answer.
    pub fn is_heartbeat(&self) -> bool {
        self.flags.contains(Flags::HEARTBEAT)
    }

    /// Whether this is a server-to-client event.
    pub fn is_event(&self) -> bool {
        self.flags.contains(Flags::EVENT)
    }

    /// Whether this is a heartbeat or an event, whose body the codec bounds
    /// by [`MAX_CONTROL_BODY`](super::MAX_CONTROL_BODY).
    pub fn is_control(&self) -> bool {
        self.is_heartbeat() || self.is_event()
    }

    /// The event an event frame announces; `None` for other frames and for
    /// event codes this version does not know.
    pub fn announced_event(&self) -> Option<Event> {
        if !self.is_event() {
            return None;
        }
        self.body.first().and_then(|code| Event::from_code(*code))
    }

    /// The role a heartbeat reply reports: `Ok(None)` for an empty body
    /// (a server that reports none), an error for an unknown role code.
    pub fn reported_role(&self) -> Result<Option<Role>, u8> {
        match self.body.first() {
            None => Ok(None),
            Some(1) => Ok(Some(Role::Primary)),
            Some(2) => Ok(Some(Role::Replica)),
            Some(3) => Ok(Some(Role::ReadOnly)),
            Some(other) => Err(*other),
        }
    }

    /// The frame's role, from its flags.
    pub fn kind(&self) -> FrameKind {
        if self.is_event() {
            return FrameKind::Event;
        }
        match (self.is_request(), self.is_heartbeat()) {
            (true, false) => FrameKind::Request,
            (false, false) => FrameKind::Reply,
            (true, true) => FrameKind::HeartbeatRequest,
            (false, true) => FrameKind::HeartbeatReply,
        }
    }
}

/// The one-byte wire code of a role in a heartbeat reply.
fn role_wire(role: Role) -> &'static [u8] {
    match role {
        Role::Primary => &[1],
        Role::Replica => &[2],
        Role::ReadOnly => &[3],
    }
}

/// The reason byte a going-away event may carry after its code: heartbeats
/// came more often than the server's minimum interval (see
/// [`Frame::too_many_pings`]).
pub const GOING_AWAY_TOO_MANY_PINGS: u8 = 1;

/// What an event frame announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// The server is shutting down gracefully: it finishes the requests in
    /// flight and serves what arrives until the client closes, but the client
    /// should start nothing new on this connection and close it once idle.
    GoingAway,
}

impl Event {
    /// Decodes the event code byte; `None` for codes this version does not know.
    pub const fn from_code(code: u8) -> Option<Event> {
        match code {
            1 => Some(Event::GoingAway),
            _ => None,
        }
    }

    /// The event's body on the wire.
    fn wire(self) -> &'static [u8] {
        match self {
            Event::GoingAway => &[1],
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::GoingAway => "going away",
        })
    }
}
