//! Turns bytes into [`Frame`]s and back, for `tokio_util::codec::Framed`.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::ProtocolError;
use super::frame::{Flags, Frame, HEADER_LEN, MAGIC, Status};

/// Body limit used when none is given: big enough for any reasonable RPC,
/// small enough that a corrupt length cannot exhaust memory.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Largest body of a control frame (heartbeat or event), whatever the codec's
/// own limit: they carry a code byte or two, so a peer announcing more is
/// broken or hostile and is refused before anything is buffered for it.
pub const MAX_CONTROL_BODY: usize = 64;

/// The frame codec, with a body-size limit (and the smaller
/// [`MAX_CONTROL_BODY`] for heartbeats and events) checked against the header
/// *before* any buffer is grown, so a peer announcing a 4 GiB body costs
/// nothing but an error.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use livepool::protocol::{Frame, FrameCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = FrameCodec::new(1024);
/// let mut wire = BytesMut::new();
/// codec.encode(Frame::request(1, Bytes::from_static(b"hi")), &mut wire)?;
/// assert_eq!(codec.decode(&mut wire)?, Some(Frame::request(1, Bytes::from_static(b"hi"))));
/// # Ok::<(), livepool::protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_body: usize,
}

impl FrameCodec {
    /// A codec refusing bodies longer than `max_body` bytes, in both directions.
    /// Values above `u32::MAX` are capped there, the most the header can say.
    pub fn new(max_body: usize) -> Self {
        Self {
            max_body: max_body.min(u32::MAX as usize),
        }
    }

    /// The body limit in force.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    fn check_len(&self, len: u64) -> Result<usize, ProtocolError> {
        match usize::try_from(len) {
            Ok(n) if n <= self.max_body => Ok(n),
            _ => Err(ProtocolError::BodyTooLarge {
                len,
                max: self.max_body,
            }),
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY)
    }
}

/// The header fields, validated.
struct Header {
    flags: Flags,
    status: Status,
    id: u64,
    body_len: usize,
}

impl FrameCodec {
    /// Validates the header at the front of `src` (which holds at least
    /// [`HEADER_LEN`] bytes) without consuming it.
    fn parse_header(&self, mut src: &[u8]) -> Result<Header, ProtocolError> {
        let magic = src.get_u16();
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic { found: magic });
        }
        let flag_bits = src.get_u8();
        let flags =
            Flags::from_bits(flag_bits).ok_or(ProtocolError::UnknownFlags { flags: flag_bits })?;
        let code = src.get_u8();
        let status = Status::from_code(code).ok_or(ProtocolError::UnknownStatus { code })?;
        let id = src.get_u64();
        let announced = u64::from(src.get_u32());
        if (flags.contains(Flags::HEARTBEAT) || flags.contains(Flags::EVENT))
            && announced > MAX_CONTROL_BODY as u64
        {
            return Err(ProtocolError::BodyTooLarge {
                len: announced,
                max: MAX_CONTROL_BODY,
            });
        }
        let body_len = self.check_len(announced)?;
        Ok(Header {
            flags,
            status,
            id,
            body_len,
        })
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = self.parse_header(&src[..HEADER_LEN])?;
        let frame_len = HEADER_LEN + header.body_len;
        if src.len() < frame_len {
            // Safe to reserve: body_len was checked against the limit.
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(header.body_len).freeze();
        Ok(Some(Frame {
            flags: header.flags,
            status: header.status,
            id: header.id,
            body,
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::UnexpectedEof {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        if frame.is_control() && frame.body.len() > MAX_CONTROL_BODY {
            return Err(ProtocolError::BodyTooLarge {
                len: frame.body.len() as u64,
                max: MAX_CONTROL_BODY,
            });
        }
        let body_len = self.check_len(frame.body.len() as u64)?;
        // check_len capped the limit at u32::MAX, so this cannot truncate.
        let wire_len = body_len as u32;
        dst.reserve(HEADER_LEN + body_len);
        dst.put_u16(MAGIC);
        dst.put_u8(frame.flags.bits());
        dst.put_u8(frame.status.code());
        dst.put_u64(frame.id);
        dst.put_u32(wire_len);
        dst.extend_from_slice(&frame.body);
        Ok(())
    }
}
