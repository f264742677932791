//! A fake server that answers each request with bytes a fuzz input chooses,
//! and says, for every request it read, what the client must make of the
//! stream it has sent on that connection so far (judged by the model).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::input::Input;
use super::model::{self, Outcome, Parsed};
use crate::protocol::{Flags, FrameKind, HEADER_LEN};

/// What the server read and what the client must conclude from the answer.
#[derive(Debug)]
pub(super) struct Expectation {
    /// The kind of request the server read.
    pub kind: FrameKind,
    /// Its body, as the server read it.
    pub body: Bytes,
    /// What the client must return.
    pub outcome: Outcome,
    /// Whether bytes are left over after the reply, so the client must now
    /// call its connection dirty.
    pub leftover: bool,
    /// Whether the bytes behind the reply cannot start a frame, so the
    /// client, reading them in with the reply, must call it broken.
    pub garbage: bool,
    /// Whether the server has sent this connection the going-away event
    /// before the reply (so the client must call it draining).
    pub going_away: bool,
    /// Whether the server has said `too_many_pings` on this connection by
    /// the end of this answer (as far as the client has read): from then on
    /// the client refuses to send heartbeats.
    pub pings_refused: bool,
}

/// The rest of the fuzz input, consumed one answer at a time by every
/// connection of the server, in the order requests arrive.
struct Script {
    data: Vec<u8>,
    pos: usize,
}

impl Script {
    fn read<T>(&mut self, f: impl FnOnce(&mut Input<'_>) -> T) -> T {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let mut input = Input::new(rest);
        let out = f(&mut input);
        let left = input.rest().len();
        self.pos += rest.len() - left;
        out
    }
}

struct Shared {
    script: Mutex<Script>,
    max_body: usize,
    /// Answer each connection's first request (the connect heartbeat of
    /// `RpcManager`) correctly, so the pool's connects succeed at once and
    /// the input is spent on pooled traffic instead of connect retries.
    spare_handshake: bool,
    expectations: mpsc::UnboundedSender<Expectation>,
}

/// A running fake server; everything it spawned ends when this is dropped.
pub(super) struct FakeServer {
    pub addr: SocketAddr,
    pub expectations: mpsc::UnboundedReceiver<Expectation>,
    tasks: JoinSet<()>,
}

impl FakeServer {
    /// Listens on a fresh loopback port and answers from `script`.
    pub async fn start(script: &[u8], max_body: usize, spare_handshake: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                data: script.to_vec(),
                pos: 0,
            }),
            max_body,
            spare_handshake,
            expectations: tx,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        FakeServer {
            addr,
            expectations: rx,
            tasks,
        }
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    // Everything sent on this connection, and how much of it the client has
    // taken (as the model reads it).
    let mut sent: Vec<u8> = Vec::new();
    let mut taken = 0;
    let mut first = true;
    let mut going_away = false;
    let mut pings_refused = false;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let flags = header[2];
        let id = u64::from_be_bytes(header[4..12].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(header[12..16].try_into().unwrap_or_default());
        // The client never sends more than its own limit; if it did, that
        // is a finding.
        assert!(
            len as usize <= shared.max_body,
            "the client sent a body of {len} bytes over its limit of {}",
            shared.max_body
        );
        let mut body = vec![0u8; len as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let kind = if flags & Flags::HEARTBEAT.bits() != 0 {
            FrameKind::HeartbeatRequest
        } else {
            FrameKind::Request
        };
        let answer = if first && shared.spare_handshake {
            Answer::correct(flags, id, &body)
        } else {
            let mut script = shared.script.lock().unwrap_or_else(PoisonError::into_inner);
            script.read(|input| Answer::choose(input, flags, id, &body, shared.max_body, 1))
        };
        first = false;
        sent.extend_from_slice(&answer.bytes);
        // Events before the reply are taken in and skipped by the client;
        // a `too_many_pings` one ends a heartbeat's wait there (`None`).
        let parsed = loop {
            match model::parse(&sent[taken..], shared.max_body) {
                Parsed::Frame(frame, len) if model::is_event(&frame) => {
                    going_away |= model::is_going_away(&frame);
                    pings_refused |= model::says_too_many_pings(&frame);
                    taken += len;
                    if pings_refused && kind == FrameKind::HeartbeatRequest {
                        break None;
                    }
                }
                parsed => break Some(parsed),
            }
        };
        let (outcome, close) = match parsed.as_ref().map(|p| model::judge(p, id, kind)) {
            None => (Outcome::HeartbeatRefused, answer.close),
            // No whole frame: the client would wait, so close to end it.
            Some(None) => (Outcome::Ended, true),
            Some(Some(outcome)) => (outcome, answer.close),
        };
        if let Some(Parsed::Frame(_, len)) = parsed {
            taken += len;
        }
        // Behind a reply, the client takes in the frames that came with it
        // (`take_buffered_events`): events are applied, any other frame is
        // taken and leaves the connection dirty, bytes that cannot start a
        // frame break it, and a partial frame stays unread (dirty).
        let mut stray = false;
        let mut garbage = false;
        if matches!(outcome, Outcome::Answered(_) | Outcome::Rejected(..)) {
            for _ in 0..crate::protocol::client::MAX_EVENTS_PER_CHECK {
                if taken >= sent.len() {
                    break;
                }
                match model::parse(&sent[taken..], shared.max_body) {
                    Parsed::Frame(frame, len) if model::is_event(&frame) => {
                        going_away |= model::is_going_away(&frame);
                        pings_refused |= model::says_too_many_pings(&frame);
                        taken += len;
                    }
                    Parsed::Frame(_, len) => {
                        stray = true;
                        taken += len;
                        break;
                    }
                    Parsed::Incomplete => break,
                    Parsed::Refused(_) => {
                        garbage = true;
                        break;
                    }
                }
            }
        }
        let expectation = Expectation {
            kind,
            body: Bytes::from(body),
            leftover: stray || sent.len() > taken,
            garbage,
            going_away,
            pings_refused,
            outcome,
        };
        // Sent before the bytes, so the client cannot see the answer first.
        let _ = shared.expectations.send(expectation);
        if stream.write_all(&answer.bytes).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// The bytes of one answer, and whether the server closes after them.
struct Answer {
    bytes: Vec<u8>,
    close: bool,
}

impl Answer {
    /// The reply the protocol asks for: same id, the heartbeat bit kept,
    /// status Ok, the request's body echoed.
    fn correct(flags: u8, id: u64, body: &[u8]) -> Answer {
        let bits = flags & Flags::HEARTBEAT.bits();
        Answer {
            bytes: model::wire(bits, 0, id, body.len() as u32, body),
            close: false,
        }
    }

    /// An answer chosen by the input. An exhausted input reads as zeros,
    /// which chooses the correct reply.
    fn choose(
        input: &mut Input<'_>,
        flags: u8,
        id: u64,
        body: &[u8],
        max_body: usize,
        depth: u8,
    ) -> Answer {
        let heartbeat = flags & Flags::HEARTBEAT.bits();
        let op = input.byte();
        match op % 8 {
            0 => Answer::correct(flags, id, body),
            1 => {
                let status = input.byte() % 5;
                let len = usize::from(input.byte()) % (max_body + 8);
                let own = input.bytes(len);
                Answer {
                    bytes: model::wire(heartbeat, status, id, own.len() as u32, own),
                    close: false,
                }
            }
            2 => {
                let other = id ^ u64::from(input.byte().max(1));
                Answer {
                    bytes: model::wire(heartbeat, 0, other, body.len() as u32, body),
                    close: false,
                }
            }
            3 => {
                let (flags, status) = (input.byte(), input.byte());
                let id = if input.byte() & 1 == 0 {
                    id
                } else {
                    input.u64()
                };
                let announced = input.u32();
                let len = usize::from(input.byte());
                let own = input.bytes(len);
                Answer {
                    bytes: model::wire(flags, status, id, announced, own),
                    close: false,
                }
            }
            4 => {
                let len = usize::from(input.byte());
                Answer {
                    bytes: input.bytes(len).to_vec(),
                    close: false,
                }
            }
            5 => Answer {
                bytes: Vec::new(),
                close: true,
            },
            6 => {
                let mut whole = Answer::correct(flags, id, body).bytes;
                whole.truncate(usize::from(input.byte()) % whole.len().max(1));
                Answer {
                    bytes: whole,
                    close: true,
                }
            }
            _ if depth > 0 && input.byte() & 1 == 1 => {
                // An event first (going away, or one this version does not
                // know), then any answer.
                let mut first = Answer {
                    bytes: model::event(input.byte() % 3),
                    close: false,
                };
                let then = Answer::choose(input, flags, id, body, max_body, depth - 1);
                first.bytes.extend_from_slice(&then.bytes);
                first.close = then.close;
                first
            }
            _ if depth > 0 => {
                let mut first = Answer::correct(flags, id, body);
                let then = Answer::choose(input, flags, id, body, max_body, depth - 1);
                first.bytes.extend_from_slice(&then.bytes);
                first.close = then.close;
                first
            }
            _ => Answer::correct(flags, id, body),
        }
    }
}
