//! Target (b): the client's reply handling. A real [`RpcConnection`] over
//! loopback to the fake server, making calls and heartbeats the input
//! chooses; every result must be what the model says the bytes sent mean.

use std::time::Duration;

use bytes::Bytes;

use super::input::Input;
use super::model::Outcome;
use super::server::{Expectation, FakeServer};
use crate::Condition;
use crate::protocol::{ClientError, FrameKind, ProtocolError, RpcConnection};
use crate::tcp::TcpOptions;

/// A hang guard only: the fake server closes whenever its bytes leave the
/// client waiting, so any timeout is a finding.
pub(super) const HANG: Duration = Duration::from_secs(10);

/// Input: the body limit (8..64), the number of operations (1..8) and their
/// codes (call, heartbeat, or a call over the limit), then the server's
/// script.
///
/// Checks: never a panic or a hang; each result matches the model's verdict
/// on what the server sent (the reply's body exactly, the ids and kinds
/// named in errors, the rule a malformed frame broke); the server reads each
/// request body intact; a call over the limit is refused before anything is
/// sent; a connection is `Dirty` after a reply exactly when bytes are left
/// over, `Broken` after any failure, and refuses every later call.
pub fn client(data: &[u8]) {
    super::runtime::block_on(async {
        let mut input = Input::new(data);
        let max_body = 8 + usize::from(input.byte() % 57);
        let ops: Vec<u8> = (0..1 + input.byte() % 8).map(|_| input.byte()).collect();
        let mut server = FakeServer::start(input.rest(), max_body, false).await;
        let mut conn = RpcConnection::connect(server.addr, &TcpOptions::default(), max_body)
            .await
            .expect("connect to the fake server on loopback");
        conn.set_request_timeout(Some(HANG));
        // The server said `too_many_pings` (as far as the client has read).
        let mut pings_refused = false;
        for (n, op) in ops.into_iter().enumerate() {
            let before = conn.known_condition();
            let (kind, body, result) = match op % 4 {
                3 => {
                    let huge = Bytes::from(vec![b'x'; max_body + 1]);
                    let result = conn.call(huge).await;
                    assert!(
                        matches!(
                            result,
                            Err(ClientError::Protocol(ProtocolError::BodyTooLarge { .. }))
                        ),
                        "a body over the limit gave {result:?}"
                    );
                    assert_eq!(
                        conn.known_condition(),
                        before,
                        "a refused call changed state"
                    );
                    continue;
                }
                2 if pings_refused => {
                    // Refused without a word on the wire.
                    let result = conn.heartbeat().await;
                    assert!(
                        matches!(result, Err(ClientError::HeartbeatRefused)),
                        "a heartbeat after too_many_pings gave {result:?}"
                    );
                    assert!(
                        server.expectations.try_recv().is_err(),
                        "a refused heartbeat reached the server"
                    );
                    assert_eq!(
                        conn.known_condition(),
                        before,
                        "a refused heartbeat changed state"
                    );
                    continue;
                }
                2 => (
                    FrameKind::HeartbeatRequest,
                    Bytes::new(),
                    conn.heartbeat().await.map(|()| None),
                ),
                _ => {
                    let body = Bytes::from(format!("call {n}"));
                    let result = conn.call(body.clone()).await.map(Some);
                    (FrameKind::Request, body, result)
                }
            };
            // A draining connection still serves its holder.
            if !matches!(before, Condition::Ready | Condition::Draining) {
                assert!(
                    matches!(result, Err(ClientError::Unusable { condition }) if condition == before),
                    "a {before:?} connection was used: {result:?}"
                );
                continue;
            }
            let expectation = server.expectations.try_recv().ok();
            check(&result, expectation.as_ref(), kind, &body);
            let after = conn.known_condition();
            if let Some(e) = &expectation {
                pings_refused = e.pings_refused;
            }
            match (&result, &expectation) {
                // The client stopped reading at the event: what came after
                // it may sit in its read buffer (dirty) or in the socket.
                (Err(ClientError::HeartbeatRefused), Some(e)) => {
                    let allowed: &[Condition] = if e.leftover {
                        &[Condition::Dirty, Condition::Draining]
                    } else {
                        &[Condition::Draining]
                    };
                    assert!(
                        allowed.contains(&after),
                        "state after a refused heartbeat: {after:?}"
                    );
                }
                (Ok(_) | Err(ClientError::Rejected { .. }), Some(e)) => {
                    let dirty = if e.garbage {
                        Condition::Broken
                    } else if e.leftover {
                        Condition::Dirty
                    } else if e.going_away {
                        Condition::Draining
                    } else {
                        Condition::Ready
                    };
                    assert_eq!(
                        after, dirty,
                        "state after a reply with leftover {}",
                        e.leftover
                    );
                }
                _ => assert_eq!(after, Condition::Broken, "state after {result:?}"),
            }
        }
        drop(conn);
        server.stop().await;
    });
}

/// Compares what a call or heartbeat returned (`Some(body)` for a call's
/// answer, `None` for a heartbeat's) with what the server says it must be;
/// `None` when the server never read the request (it had closed).
pub(super) fn check(
    result: &Result<Option<Bytes>, ClientError>,
    expectation: Option<&Expectation>,
    kind: FrameKind,
    body: &Bytes,
) {
    let Some(expectation) = expectation else {
        assert!(
            ended(result),
            "the server never read this {kind}, yet the client got {result:?}"
        );
        return;
    };
    assert_eq!(
        expectation.kind, kind,
        "the server read another kind of request"
    );
    assert_eq!(&expectation.body, body, "the server read another body");
    let agrees = match (&expectation.outcome, result) {
        (Outcome::Answered(want), Ok(Some(got))) => want == got,
        (Outcome::Answered(_), Ok(None)) => kind == FrameKind::HeartbeatRequest,
        (Outcome::Rejected(s, b), Err(ClientError::Rejected { status, body })) => {
            s == status && b == body
        }
        (
            Outcome::WrongId { expected, got },
            Err(ClientError::UnexpectedReply {
                expected_id,
                got_id,
            }),
        ) => expected == expected_id && got == got_id,
        (
            Outcome::WrongKind { expected, got },
            Err(ClientError::UnexpectedFrame {
                expected: e,
                got: g,
            }),
        ) => expected == e && got == g,
        (
            Outcome::UnknownRole(want),
            Err(ClientError::Protocol(ProtocolError::UnknownRole { code })),
        ) => want == code,
        (Outcome::Refused(why), Err(ClientError::Protocol(error))) => {
            super::codec::refusal(error) == Some(*why)
        }
        (Outcome::HeartbeatRefused, Err(ClientError::HeartbeatRefused)) => true,
        (Outcome::Ended, result) => ended(result),
        _ => false,
    };
    assert!(
        agrees,
        "the server's bytes mean {:?}, the client returned {result:?}",
        expectation.outcome
    );
}

/// The ways a connection the server closed can fail, by timing: EOF between
/// frames, EOF inside one, or a reset.
fn ended(result: &Result<Option<Bytes>, ClientError>) -> bool {
    matches!(
        result,
        Err(ClientError::Closed
            | ClientError::Io(_)
            | ClientError::Protocol(ProtocolError::UnexpectedEof { .. }))
    )
}
