//! Target (a): the frame decoder on arbitrary bytes, checked against the
//! model frame by frame, fed in small chunks so every split of a header and
//! a body is met.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::input::Input;
use super::model::{self, Parsed, Refusal};
use crate::protocol::{FrameCodec, HEADER_LEN, ProtocolError};

/// Input: the body limit (0..64), the chunk size (1..24), then the stream.
///
/// Checks: never a panic; each step agrees with the model (the same frame,
/// the same bytes consumed, the same refusal, or "need more" with nothing
/// consumed); every body within the limit; the buffer never grows beyond a
/// bound set by the bytes fed and the limit, whatever length a header
/// announces (the limit is enforced before any allocation); re-encoding a
/// decoded frame gives back exactly the bytes it came from, and decoding
/// those gives the same frame.
pub fn codec(data: &[u8]) {
    let mut input = Input::new(data);
    let max_body = usize::from(input.byte() % 64);
    let step = 1 + usize::from(input.byte() % 24);
    let stream = input.rest();
    let mut codec = FrameCodec::new(max_body);
    let mut buf = BytesMut::new();
    let (mut fed, mut consumed) = (0, 0);
    loop {
        loop {
            let before = buf.len();
            let decoded = codec.decode(&mut buf);
            let bound = 4 * (fed + HEADER_LEN + max_body) + 1024;
            assert!(
                buf.capacity() <= bound,
                "buffer grew to {} bytes after {fed} fed, limit {max_body}",
                buf.capacity()
            );
            match (decoded, model::parse(&stream[consumed..fed], max_body)) {
                (Ok(None), Parsed::Incomplete) => {
                    assert_eq!(buf.len(), before, "consumed bytes without a frame");
                    break;
                }
                (Ok(Some(frame)), Parsed::Frame(expected, len)) => {
                    assert_eq!(frame, expected);
                    assert_eq!(before - buf.len(), len, "consumed the wrong length");
                    assert!(frame.body.len() <= max_body, "body over the limit");
                    let original = &stream[consumed..consumed + len];
                    round_trip(&mut codec, frame, original);
                    consumed += len;
                }
                (Err(error), Parsed::Refused(why)) => {
                    assert_eq!(refusal(&error), Some(why), "refused for another reason");
                    return;
                }
                (got, want) => panic!("codec gave {got:?}, the model {want:?}"),
            }
        }
        if fed == stream.len() {
            break;
        }
        let next = (fed + step).min(stream.len());
        buf.extend_from_slice(&stream[fed..next]);
        fed = next;
    }
    match codec.decode_eof(&mut buf) {
        Ok(None) => assert!(buf.is_empty(), "decode_eof left bytes unexplained"),
        Err(ProtocolError::UnexpectedEof { buffered }) => {
            assert!(
                buffered > 0 && buffered == buf.len(),
                "wrong count {buffered}"
            );
        }
        other => panic!("decode_eof after the last frame gave {other:?}"),
    }
}

fn round_trip(codec: &mut FrameCodec, frame: crate::protocol::Frame, original: &[u8]) {
    let mut wire = BytesMut::new();
    codec
        .encode(frame.clone(), &mut wire)
        .expect("a frame the codec decoded must encode");
    assert_eq!(&wire[..], original, "re-encoding changed the bytes");
    let again = codec.decode(&mut wire).expect("re-decoding failed");
    assert_eq!(again, Some(frame), "re-decoding changed the frame");
    assert!(wire.is_empty());
}

/// Which rule a codec error names, in the model's terms.
pub(super) fn refusal(error: &ProtocolError) -> Option<Refusal> {
    match error {
        ProtocolError::BadMagic { .. } => Some(Refusal::BadMagic),
        ProtocolError::UnknownFlags { .. } => Some(Refusal::UnknownFlags),
        ProtocolError::UnknownStatus { .. } => Some(Refusal::UnknownStatus),
        ProtocolError::BodyTooLarge { .. } => Some(Refusal::BodyTooLarge),
        _ => None,
    }
}
