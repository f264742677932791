//! An independent reading of the wire format, written from the table in
//! `protocol/frame.rs` with plain indexing, against which the codec and the
//! client are checked. It shares no code with them: a bug in one is a
//! disagreement, not a shared blind spot.

use bytes::Bytes;

use crate::protocol::{Flags, Frame, FrameKind, HEADER_LEN, MAGIC, Status};

/// Why a header is refused, as the model sees it. One per rejecting
/// `ProtocolError` variant, so disagreements name the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The first two bytes are not the magic.
    BadMagic,
    /// Flag bits outside request, two-way, heartbeat, event.
    UnknownFlags,
    /// A status byte above 3.
    UnknownStatus,
    /// An announced body longer than the limit (for a heartbeat or an
    /// event, longer than [`CONTROL_LIMIT`] too).
    BodyTooLarge,
}

/// The flag bits: request, two-way, heartbeat, event.
const KNOWN_FLAGS: u8 = 0b1111;
/// Heartbeat and event bits: the frames the protocol keeps short.
const CONTROL_FLAGS: u8 = 0b1100;
/// The body limit of heartbeats and events, whatever the configured one.
pub const CONTROL_LIMIT: usize = 64;
/// The event bit.
const EVENT_FLAG: u8 = 0b1000;
/// The going-away event's code, the first byte of an event's body.
pub const GOING_AWAY: u8 = 1;

/// Whether a frame is a server-to-client event, which a client takes in
/// while it waits for a reply (and on an idle connection) and never answers.
pub fn is_event(frame: &Frame) -> bool {
    frame.flags.bits() & EVENT_FLAG != 0
}

/// Whether a frame is the going-away event.
pub fn is_going_away(frame: &Frame) -> bool {
    is_event(frame) && frame.body.first() == Some(&GOING_AWAY)
}

/// The going-away event's reason `too_many_pings`, its body's second byte:
/// the server refuses heartbeats on this connection from now on.
pub const TOO_MANY_PINGS: u8 = 1;

/// Whether a frame is the going-away event saying `too_many_pings`.
pub fn says_too_many_pings(frame: &Frame) -> bool {
    is_going_away(frame) && frame.body.get(1) == Some(&TOO_MANY_PINGS)
}

/// An event frame with this code, by hand.
pub fn event(code: u8) -> Vec<u8> {
    wire(EVENT_FLAG, 0, 0, 1, &[code])
}

/// What the front of a byte stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole frame yet (a header whose own fields are fine, or fewer
    /// than [`HEADER_LEN`] bytes).
    Incomplete,
    /// A header that breaks a rule: the stream is dead from here on.
    Refused(Refusal),
    /// One whole frame, and how many bytes it took.
    Frame(Frame, usize),
}

/// Reads the frame at the front of `stream` under a body limit of `max_body`.
pub fn parse(stream: &[u8], max_body: usize) -> Parsed {
    if stream.len() < HEADER_LEN {
        return Parsed::Incomplete;
    }
    let magic = u16::from(stream[0]) << 8 | u16::from(stream[1]);
    if magic != MAGIC {
        return Parsed::Refused(Refusal::BadMagic);
    }
    let flags = stream[2];
    if flags & !KNOWN_FLAGS != 0 {
        return Parsed::Refused(Refusal::UnknownFlags);
    }
    let status = match stream[3] {
        0 => Status::Ok,
        1 => Status::BadRequest,
        2 => Status::ServerError,
        3 => Status::ServerBusy,
        _ => return Parsed::Refused(Refusal::UnknownStatus),
    };
    let id = stream[4..12]
        .iter()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let len = stream[12..16]
        .iter()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let limit = if flags & CONTROL_FLAGS != 0 {
        max_body.min(CONTROL_LIMIT)
    } else {
        max_body
    };
    if len > limit.min(u32::MAX as usize) as u64 {
        return Parsed::Refused(Refusal::BodyTooLarge);
    }
    // `len` fits: it is at most `max_body`, a usize.
    let end = HEADER_LEN + len as usize;
    if stream.len() < end {
        return Parsed::Incomplete;
    }
    let frame = Frame {
        flags: Flags::from_bits(flags).unwrap_or_default(),
        status,
        id,
        body: Bytes::copy_from_slice(&stream[HEADER_LEN..end]),
    };
    Parsed::Frame(frame, end)
}

/// Writes a header and body by hand, byte by byte (the fake server's frames
/// must not come from the codec under test).
pub fn wire(flags: u8, status: u8, id: u64, len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.push(flags);
    out.push(status);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What a client call or heartbeat must end with, given what the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An `Ok` reply for the request in flight, with this body.
    Answered(Bytes),
    /// A reply for the request in flight with a non-`Ok` status.
    Rejected(Status, Bytes),
    /// A reply whose id is not the request's.
    WrongId {
        /// The id of the request in flight.
        expected: u64,
        /// The id the frame carried.
        got: u64,
    },
    /// A frame of the wrong kind (a request, or the other kind of reply).
    WrongKind {
        /// The reply kind the request calls for.
        expected: FrameKind,
        /// What arrived.
        got: FrameKind,
    },
    /// Bytes that are no frame.
    Refused(Refusal),
    /// An `Ok` heartbeat reply whose body starts with a byte that is no
    /// role (1 primary, 2 replica, 3 read-only; an empty body reports none).
    UnknownRole(u8),
    /// A heartbeat the server refused as too frequent: a going-away saying
    /// `too_many_pings` came in place of its reply (or earlier on the
    /// connection, and then the client sends no heartbeat at all).
    HeartbeatRefused,
    /// The server closed the connection before a whole reply: EOF, a reset, or
    /// EOF in the middle of a frame. Which of these the client sees depends on
    /// timing, so they count as one.
    Ended,
}

/// How a client must judge `parsed` as the answer to request `id` of `kind`.
/// `None` when the stream holds no whole frame yet.
pub fn judge(parsed: &Parsed, id: u64, kind: FrameKind) -> Option<Outcome> {
    let expected = match kind {
        FrameKind::HeartbeatRequest => FrameKind::HeartbeatReply,
        _ => FrameKind::Reply,
    };
    let frame = match parsed {
        Parsed::Incomplete => return None,
        Parsed::Refused(why) => return Some(Outcome::Refused(*why)),
        Parsed::Frame(frame, _) => frame,
    };
    Some(if frame.is_request() {
        Outcome::WrongKind {
            expected,
            got: frame.kind(),
        }
    } else if frame.id != id {
        Outcome::WrongId {
            expected: id,
            got: frame.id,
        }
    } else if frame.kind() != expected {
        Outcome::WrongKind {
            expected,
            got: frame.kind(),
        }
    } else if frame.status == Status::Ok {
        match frame.body.first() {
            Some(&code) if expected == FrameKind::HeartbeatReply && !(1..=3).contains(&code) => {
                Outcome::UnknownRole(code)
            }
            _ => Outcome::Answered(frame.body.clone()),
        }
    } else {
        Outcome::Rejected(frame.status, frame.body.clone())
    })
}
