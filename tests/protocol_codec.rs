//! The frame codec: round trips, partial input, and refusal of bad headers
//! before any allocation.

use bytes::{BufMut, Bytes, BytesMut};
use livepool::protocol::{
    Event, Flags, Frame, FrameCodec, HEADER_LEN, MAGIC, MAX_CONTROL_BODY, ProtocolError, Status,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

const LIMIT: usize = 1024;

fn encode(frame: Frame) -> BytesMut {
    let mut wire = BytesMut::new();
    FrameCodec::new(LIMIT)
        .encode(frame, &mut wire)
        .expect("frame within the limit encodes");
    wire
}

fn header(magic: u16, flags: u8, status: u8, id: u64, len: u32) -> BytesMut {
    let mut wire = BytesMut::with_capacity(HEADER_LEN);
    wire.put_u16(magic);
    wire.put_u8(flags);
    wire.put_u8(status);
    wire.put_u64(id);
    wire.put_u32(len);
    wire
}

#[test]
fn every_kind_and_status_round_trips() {
    let request = Frame::request(u64::MAX, Bytes::from_static(b"payload"));
    let heartbeat = Frame::heartbeat(0);
    let mut frames = vec![request.clone(), heartbeat.clone()];
    for status in Status::ALL {
        frames.push(request.reply(status, Bytes::from_static(b"answer")));
        frames.push(heartbeat.reply(status, Bytes::new()));
    }
    let mut codec = FrameCodec::new(LIMIT);
    for frame in frames {
        let mut wire = encode(frame.clone());
        assert_eq!(wire.len(), HEADER_LEN + frame.body.len());
        assert_eq!(codec.decode(&mut wire).unwrap(), Some(frame));
        assert!(wire.is_empty(), "decode consumed exactly one frame");
    }
}

#[test]
fn header_is_big_endian_with_magic_first() {
    let wire = encode(Frame::request(
        0x0102_0304_0506_0708,
        Bytes::from_static(b"xyz"),
    ));
    assert_eq!(&wire[..2], &MAGIC.to_be_bytes());
    assert_eq!(wire[2], (Flags::REQUEST | Flags::TWO_WAY).bits());
    assert_eq!(wire[3], Status::Ok.code());
    assert_eq!(&wire[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&wire[12..16], &[0, 0, 0, 3]);
    assert_eq!(&wire[16..], b"xyz");
}

#[test]
fn back_to_back_frames_decode_one_at_a_time() {
    let mut wire = encode(Frame::request(1, Bytes::from_static(b"a")));
    wire.extend_from_slice(&encode(Frame::heartbeat(2)));
    let mut codec = FrameCodec::new(LIMIT);
    assert_eq!(codec.decode(&mut wire).unwrap().map(|f| f.id), Some(1));
    assert_eq!(codec.decode(&mut wire).unwrap().map(|f| f.id), Some(2));
    assert_eq!(codec.decode(&mut wire).unwrap(), None);
}

#[test]
fn truncated_frame_waits_then_completes() {
    let frame = Frame::request(9, Bytes::from_static(b"hello world"));
    let wire = encode(frame.clone());
    let mut codec = FrameCodec::new(LIMIT);
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "after {i} bytes");
        buf.put_u8(*byte);
    }
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
}

#[test]
fn eof_inside_a_frame_is_an_error_and_between_frames_is_not() {
    let wire = encode(Frame::request(1, Bytes::from_static(b"body")));
    let mut codec = FrameCodec::new(LIMIT);
    let mut partial = BytesMut::from(&wire[..wire.len() - 1]);
    match codec.decode_eof(&mut partial) {
        Err(ProtocolError::UnexpectedEof { buffered }) => assert_eq!(buffered, wire.len() - 1),
        other => panic!("expected UnexpectedEof, got {other:?}"),
    }
    assert_eq!(codec.decode_eof(&mut BytesMut::new()).unwrap(), None);
}

#[test]
fn huge_announced_length_is_refused_without_allocating() {
    let mut wire = header(MAGIC, Flags::REQUEST.bits(), 0, 1, u32::MAX);
    let capacity = wire.capacity();
    let mut codec = FrameCodec::new(LIMIT);
    match codec.decode(&mut wire) {
        Err(ProtocolError::BodyTooLarge { len, max }) => {
            assert_eq!(len, u64::from(u32::MAX));
            assert_eq!(max, LIMIT);
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    assert_eq!(wire.capacity(), capacity, "the buffer must not grow");
    // The default limit refuses it too.
    let mut wire = header(MAGIC, 0, 0, 1, u32::MAX);
    assert!(matches!(
        FrameCodec::default().decode(&mut wire),
        Err(ProtocolError::BodyTooLarge { .. })
    ));
    assert_eq!(wire.capacity(), capacity);
}

#[test]
fn limit_is_inclusive() {
    let mut codec = FrameCodec::new(LIMIT);
    let mut at_limit = header(MAGIC, 0, 0, 1, LIMIT as u32);
    assert_eq!(
        codec.decode(&mut at_limit).unwrap(),
        None,
        "waits for the body"
    );
    assert!(
        at_limit.capacity() >= HEADER_LEN + LIMIT,
        "reserves what the frame needs"
    );
    let mut over = header(MAGIC, 0, 0, 1, LIMIT as u32 + 1);
    assert!(matches!(
        codec.decode(&mut over),
        Err(ProtocolError::BodyTooLarge { .. })
    ));
}

#[test]
fn encoder_refuses_an_oversize_body_and_writes_nothing() {
    let mut wire = BytesMut::new();
    let body = Bytes::from(vec![0u8; LIMIT + 1]);
    let err = FrameCodec::new(LIMIT)
        .encode(Frame::request(1, body), &mut wire)
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::BodyTooLarge { len, max } if len == LIMIT as u64 + 1 && max == LIMIT)
    );
    assert!(wire.is_empty());
}

#[test]
fn bad_magic_unknown_flags_and_unknown_status_are_typed_errors() {
    let mut codec = FrameCodec::new(LIMIT);
    let mut bad_magic = header(0xDEAD, 0, 0, 1, 0);
    assert!(matches!(
        codec.decode(&mut bad_magic),
        Err(ProtocolError::BadMagic { found: 0xDEAD })
    ));
    let mut bad_flags = header(MAGIC, 0b1000_0001, 0, 1, 0);
    assert!(matches!(
        codec.decode(&mut bad_flags),
        Err(ProtocolError::UnknownFlags { flags: 0b1000_0001 })
    ));
    let mut bad_status = header(MAGIC, 0, 200, 1, 0);
    assert!(matches!(
        codec.decode(&mut bad_status),
        Err(ProtocolError::UnknownStatus { code: 200 })
    ));
}

#[test]
fn errors_explain_themselves() {
    let text = ProtocolError::BodyTooLarge { len: 5, max: 4 }.to_string();
    assert!(text.contains('5') && text.contains('4'), "{text}");
    let text = ProtocolError::BadMagic { found: 0xDEAD }.to_string();
    assert!(text.contains("0xdead"), "{text}");
}

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        0u8..16,
        prop::sample::select(Status::ALL.to_vec()),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..=256),
    )
        .prop_map(|(flags, status, id, mut body)| {
            let flags = Flags::from_bits(flags).expect("only known bits generated");
            if flags.contains(Flags::HEARTBEAT) || flags.contains(Flags::EVENT) {
                body.truncate(MAX_CONTROL_BODY);
            }
            Frame {
                flags,
                status,
                id,
                body: Bytes::from(body),
            }
        })
}

proptest! {
    #[test]
    fn arbitrary_frames_round_trip_through_any_split(frames in prop::collection::vec(any_frame(), 1..5), split in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        let mut codec = FrameCodec::new(LIMIT);
        for frame in &frames {
            codec.encode(frame.clone(), &mut wire).unwrap();
        }
        let split = split.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..split]);
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            decoded.push(frame);
        }
        buf.extend_from_slice(&wire[split..]);
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            decoded.push(frame);
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overallocate(bytes in prop::collection::vec(any::<u8>(), 0..64), limit in 0usize..64) {
        let mut codec = FrameCodec::new(limit);
        let mut buf = BytesMut::from(&bytes[..]);
        // Ok(Some) consumes a frame; Ok(None) waits; Err stops: all fine, none panics.
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        prop_assert!(buf.capacity() <= bytes.len().max(HEADER_LEN + limit));
        let _ = codec.decode_eof(&mut buf);
    }

    #[test]
    fn truncations_of_a_valid_frame_wait_or_fail_at_eof(frame in any_frame(), cut in any::<prop::sample::Index>()) {
        let wire = encode(frame);
        let cut = cut.index(wire.len());
        let mut codec = FrameCodec::new(LIMIT);
        let mut buf = BytesMut::from(&wire[..cut]);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
        let at_eof = codec.decode_eof(&mut buf);
        if cut == 0 {
            prop_assert!(matches!(at_eof, Ok(None)));
        } else {
            prop_assert!(matches!(at_eof, Err(ProtocolError::UnexpectedEof { buffered }) if buffered == cut), "{:?}", at_eof);
        }
    }
}

#[test]
fn control_frames_over_their_own_limit_are_refused_from_the_header() {
    // A heartbeat announcing more than MAX_CONTROL_BODY fails before the body
    // arrives, even though the codec's business limit would allow it.
    let mut wire = header(
        MAGIC,
        (Flags::REQUEST | Flags::TWO_WAY | Flags::HEARTBEAT).bits(),
        0,
        1,
        MAX_CONTROL_BODY as u32 + 1,
    );
    match FrameCodec::new(LIMIT).decode(&mut wire) {
        Err(ProtocolError::BodyTooLarge { max, .. }) => assert_eq!(max, MAX_CONTROL_BODY),
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    let mut event = Frame::event(Event::GoingAway);
    event.body = Bytes::from(vec![1; MAX_CONTROL_BODY + 1]);
    assert!(matches!(
        FrameCodec::new(LIMIT).encode(event, &mut BytesMut::new()),
        Err(ProtocolError::BodyTooLarge { .. })
    ));
}

#[test]
fn going_away_event_and_role_replies_round_trip() {
    let event = Frame::event(Event::GoingAway);
    let wire = encode(event.clone());
    assert_eq!(wire[2], Flags::EVENT.bits());
    let decoded = FrameCodec::new(LIMIT)
        .decode(&mut BytesMut::from(&wire[..]))
        .unwrap()
        .unwrap();
    assert_eq!(decoded.announced_event(), Some(Event::GoingAway));

    let probe = Frame::heartbeat(9);
    for role in [
        None,
        Some(livepool::Role::Primary),
        Some(livepool::Role::Replica),
        Some(livepool::Role::ReadOnly),
    ] {
        let reply = probe.heartbeat_reply(role);
        let decoded = FrameCodec::new(LIMIT)
            .decode(&mut BytesMut::from(&encode(reply)[..]))
            .unwrap()
            .unwrap();
        assert_eq!(decoded.reported_role(), Ok(role));
    }
    // An empty heartbeat reply is what servers before roles sent: no role.
    assert_eq!(
        probe.reply(Status::Ok, Bytes::new()).reported_role(),
        Ok(None)
    );
}
