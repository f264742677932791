//! What a PostgreSQL session's own bytes say about it: whether a reply is
//! still owed (a query cut off half way, whichever API sent it), and whether
//! the server has ended the session.
//!
//! Why on the wire: `tokio_postgres::GenericClient` is sealed, so a pooled
//! connection cannot wrap the client's query methods to notice a future
//! dropped half way; and [`Client`](tokio_postgres::Client) itself does not
//! say whether a reply is pending. The protocol does, exactly: every simple
//! `Query` and every `Sync` is answered by one `ReadyForQuery`. So the
//! socket (or, with TLS, the decrypted stream above it) is wrapped in
//! [`Watched`], which frames the messages each way (one type byte and a
//! length) and keeps count. The count starts once the startup is over, when
//! both directions sit at a message boundary.
//!
//! What counts is a request that makes the server work: a `Query`, or a
//! `Sync` closing `Parse`/`Bind`/`Execute`/`Describe`. tokio-postgres also
//! sends housekeeping without waiting for the reply (`Close` + `Sync` when a
//! `Statement` is dropped, `ROLLBACK` when a `Transaction` is dropped); the
//! server answers those at once and the connection task reads the answers
//! itself, so they leave the session in step and are not counted against it.
//!
//! One exception in the protocol is handled: a `COPY ... FROM STDIN` sent
//! through the extended protocol is followed by a `Sync` that the server
//! ignores while it is in copy-in mode (`CopyInResponse` answers it instead).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// The shared view of one session's traffic: written by the connection task
/// (through [`Watched`]), read by the pool's checks.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    state: Mutex<WireState>,
}

/// What the frames seen so far imply. Pub(crate) for unit tests of the
/// framing.
#[derive(Debug, Default)]
struct WireState {
    armed: bool,
    to_server: Framer,
    from_server: Framer,
    /// Requests still owed a `ReadyForQuery`, oldest first.
    owed: VecDeque<Owed>,
    /// Whether the extended-protocol messages sent since the last `Sync`
    /// make the server work.
    open_work: bool,
    /// Why the session is over, as the server said (its SQLSTATE), or
    /// that the byte stream stopped making sense.
    ended: Option<SessionEnd>,
}

/// One request the server still owes a `ReadyForQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owed {
    /// `b'Q'` (simple query, function call) or `b'S'` (a `Sync`).
    kind: u8,
    /// False for housekeeping tokio-postgres sends without waiting.
    work: bool,
}

/// Why [`Wire`] considers the session over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// An `ErrorResponse` of severity `FATAL`/`PANIC`, or of SQLSTATE class
    /// 57P (operator intervention: `57P01` admin shutdown, `57P02` crash
    /// shutdown, `57P03` cannot connect now) or 08 (connection exception).
    Server {
        /// The SQLSTATE the server sent (empty if none).
        code: String,
    },
    /// A frame length below the protocol's minimum: out of step.
    Garbled,
}

/// The largest part of an `ErrorResponse` kept to find its severity and
/// code (the server sends those first).
const ERROR_CAPTURE: usize = 512;

/// The part of a simple `Query` kept to recognise tokio-postgres's
/// `ROLLBACK` (`ROLLBACK TO sp_N` for a savepoint).
const QUERY_CAPTURE: usize = 16;

/// The `ROLLBACK` a dropped `Transaction` sends: housekeeping.
fn is_rollback(query: &[u8]) -> bool {
    query == b"ROLLBACK\0" || query.starts_with(b"ROLLBACK TO ")
}

/// Splits a byte stream into protocol messages: one type byte, a 4-byte
/// big-endian length that counts itself, then the body.
#[derive(Debug, Default)]
struct Framer {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
    kind: u8,
    captured: Vec<u8>,
}

/// A message boundary the framer reached.
enum Frame<'a> {
    /// A message started (its header is complete).
    Start(u8),
    /// A message ended; `body` is its start, as much as the framer's
    /// `capture` allowed for its kind.
    End(u8, &'a [u8]),
    /// The length field is impossible.
    Garbled,
}

impl Framer {
    /// Frames `bytes`, keeping up to `capture(kind)` bytes of each body.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        capture: impl Fn(u8) -> usize,
        mut on: impl FnMut(Frame<'_>),
    ) {
        while !bytes.is_empty() {
            if self.header_len < self.header.len() {
                let take = (self.header.len() - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len < self.header.len() {
                    return;
                }
                self.kind = self.header[0];
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                let Some(body) = (len as usize).checked_sub(4) else {
                    on(Frame::Garbled);
                    return;
                };
                self.body_left = body;
                self.captured.clear();
                on(Frame::Start(self.kind));
            }
            let take = self.body_left.min(bytes.len());
            let room = capture(self.kind).saturating_sub(self.captured.len());
            if room > 0 {
                self.captured.extend_from_slice(&bytes[..take.min(room)]);
            }
            self.body_left -= take;
            bytes = &bytes[take..];
            if self.body_left == 0 {
                self.header_len = 0;
                on(Frame::End(self.kind, &self.captured));
            }
        }
    }
}

impl WireState {
    fn work_owed(&self) -> bool {
        self.open_work || self.owed.iter().any(|o| o.work)
    }

    fn sent(&mut self, bytes: &[u8]) {
        if !self.armed || self.ended.is_some() {
            return;
        }
        let capture = |kind| if kind == b'Q' { QUERY_CAPTURE } else { 0 };
        let (owed, open_work, ended) = (&mut self.owed, &mut self.open_work, &mut self.ended);
        self.to_server.feed(bytes, capture, |frame| match frame {
            Frame::End(b'Q', query) => owed.push_back(Owed {
                kind: b'Q',
                work: !is_rollback(query),
            }),
            Frame::Start(b'F') => owed.push_back(Owed {
                kind: b'Q',
                work: true,
            }),
            Frame::Start(b'P' | b'B' | b'E' | b'D') => *open_work = true,
            Frame::Start(b'S') => owed.push_back(Owed {
                kind: b'S',
                work: std::mem::take(open_work),
            }),
            Frame::Garbled => *ended = Some(SessionEnd::Garbled),
            _ => {}
        });
    }

    fn received(&mut self, bytes: &[u8]) {
        if !self.armed || self.ended.is_some() {
            return;
        }
        let (owed, ended) = (&mut self.owed, &mut self.ended);
        let capture = |kind| if kind == b'E' { ERROR_CAPTURE } else { 0 };
        self.from_server.feed(bytes, capture, |frame| match frame {
            // ReadyForQuery answers the oldest request.
            Frame::End(b'Z', _) => {
                owed.pop_front();
            }
            // CopyInResponse to an extended-protocol COPY: the Sync sent
            // after Execute is ignored by the server while copying.
            Frame::Start(b'G') if owed.front().is_some_and(|o| o.kind == b'S') => {
                owed.pop_front();
            }
            Frame::End(b'E', body) => {
                if let Some(end) = session_end(body) {
                    *ended = Some(end);
                }
            }
            Frame::Garbled => *ended = Some(SessionEnd::Garbled),
            _ => {}
        });
    }
}

/// Reads an `ErrorResponse` body (fields of one type byte and a
/// NUL-terminated string) for what says the session is over.
fn session_end(body: &[u8]) -> Option<SessionEnd> {
    let mut severity: &[u8] = b"";
    let mut code: &[u8] = b"";
    let mut rest = body;
    while let [field, tail @ ..] = rest {
        if *field == 0 {
            break;
        }
        let Some(nul) = tail.iter().position(|&b| b == 0) else {
            break; // cut off by the capture limit
        };
        match field {
            // `V` is the untranslated severity (9.6+); `S` may be translated.
            b'V' => severity = &tail[..nul],
            b'S' if severity.is_empty() => severity = &tail[..nul],
            b'C' => code = &tail[..nul],
            _ => {}
        }
        rest = &tail[nul + 1..];
    }
    let fatal = matches!(severity, b"FATAL" | b"PANIC");
    let ends_session = code.starts_with(b"57P") || code.starts_with(b"08");
    (fatal || ends_session).then(|| SessionEnd::Server {
        code: String::from_utf8_lossy(code).into_owned(),
    })
}

impl Wire {
    fn state(&self) -> MutexGuard<'_, WireState> {
        // A panic while holding it leaves counts that are still the best
        // knowledge there is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts counting: the startup is over and both directions are at a
    /// message boundary.
    pub(crate) fn arm(&self) {
        self.state().armed = true;
    }

    /// Whether a request that makes the server work was sent (or is being
    /// sent) and its `ReadyForQuery` has not come back: a query cut off.
    pub(crate) fn reply_owed(&self) -> bool {
        self.state().work_owed()
    }

    /// Why the session is over, if its traffic says so.
    pub(crate) fn ended(&self) -> Option<SessionEnd> {
        self.state().ended.clone()
    }
}

/// A stream whose traffic is reported to a [`Wire`]. Wraps the TCP socket
/// when the session is plain, and the TLS stream (never the socket under it)
/// when it is encrypted.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    wire: Arc<Wire>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, wire: Arc<Wire>) -> Self {
        Watched { inner, wire }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.wire.state().received(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.wire.state().sent(&buf[..n.min(buf.len())]);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Watched<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// The user's TLS connector, run on the socket under a plain [`Watched`]:
/// it takes the socket out, negotiates TLS on it, and watches the
/// decrypted stream instead, so the count always sees plaintext.
pub(crate) struct WatchedTls<C> {
    inner: C,
    wire: Arc<Wire>,
}

impl<C> WatchedTls<C> {
    pub(crate) fn new(inner: C, wire: Arc<Wire>) -> Self {
        WatchedTls { inner, wire }
    }
}

impl<S, C> TlsConnect<Watched<S>> for WatchedTls<C>
where
    C: TlsConnect<S>,
    C::Future: Send + 'static,
    C::Stream: Send + 'static,
    S: 'static,
{
    type Stream = Watched<C::Stream>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, C::Error>> + Send>>;

    fn connect(self, stream: Watched<S>) -> Self::Future {
        let handshake = self.inner.connect(stream.inner);
        let wire = self.wire;
        Box::pin(async move { Ok(Watched::new(handshake.await?, wire)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn armed() -> WireState {
        WireState {
            armed: true,
            ..WireState::default()
        }
    }

    fn error_body(severity: &str, code: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', "m"),
        ] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        body
    }

    #[test]
    fn a_query_is_owed_until_ready_for_query_even_when_split_byte_by_byte() {
        let mut wire = armed();
        wire.sent(&frame(b'Q', b"SELECT 1\0"));
        assert!(wire.work_owed());
        let mut reply = frame(b'T', b"rowdesc");
        reply.extend(frame(b'D', b"row"));
        reply.extend(frame(b'C', b"SELECT 1\0"));
        reply.extend(frame(b'Z', b"I"));
        let (head, last) = reply.split_at(reply.len() - 1);
        for byte in head {
            wire.received(std::slice::from_ref(byte));
        }
        assert!(
            wire.work_owed(),
            "the last byte of ReadyForQuery is missing"
        );
        wire.received(last);
        assert!(!wire.work_owed());
        assert_eq!(wire.ended, None);
    }

    #[test]
    fn pipelined_extended_queries_are_owed_one_reply_per_sync() {
        let mut wire = armed();
        let mut out = Vec::new();
        for _ in 0..2 {
            for kind in [b'B', b'E'] {
                out.extend(frame(kind, b"x"));
            }
            out.extend(frame(b'S', b""));
        }
        wire.sent(&out);
        assert_eq!(wire.owed.len(), 2);
        wire.received(&frame(b'Z', b"I"));
        assert_eq!(wire.owed.len(), 1, "one Sync is still unanswered");
        assert!(wire.work_owed());
    }

    #[test]
    fn an_extended_copy_in_is_settled_by_one_ready_for_query() {
        let mut wire = armed();
        let mut out = frame(b'B', b"x");
        out.extend(frame(b'E', b"x"));
        out.extend(frame(b'S', b""));
        wire.sent(&out);
        wire.received(&frame(b'2', b""));
        wire.received(&frame(b'G', b"\0\0\0"));
        wire.sent(&frame(b'd', b"1\n"));
        let mut done = frame(b'c', b"");
        done.extend(frame(b'S', b""));
        wire.sent(&done);
        let mut reply = frame(b'C', b"COPY 1\0");
        reply.extend(frame(b'Z', b"I"));
        wire.received(&reply);
        assert!(wire.owed.is_empty(), "{:?}", wire.owed);
    }

    #[test]
    fn housekeeping_sent_without_waiting_is_not_a_query_cut_off() {
        let mut wire = armed();
        // A dropped Statement: Close + Sync.
        let mut close = frame(b'C', b"Ss0\0");
        close.extend(frame(b'S', b""));
        wire.sent(&close);
        // A dropped Transaction: ROLLBACK.
        wire.sent(&frame(b'Q', b"ROLLBACK\0"));
        assert_eq!(wire.owed.len(), 2);
        assert!(!wire.work_owed());
        // A real query behind them is.
        wire.sent(&frame(b'Q', b"ROLLBACK_LOG_CLEANUP()\0"));
        assert!(wire.work_owed());
        // Extended messages not yet closed by their Sync count too.
        let mut wire = armed();
        wire.sent(&frame(b'P', b"s1\0SELECT pg_sleep(1)\0\0\0"));
        assert!(wire.work_owed());
    }

    #[test]
    fn admin_shutdown_and_fatal_errors_end_the_session_but_query_errors_do_not() {
        let mut wire = armed();
        wire.received(&frame(b'E', &error_body("ERROR", "42P01")));
        assert_eq!(wire.ended, None);
        wire.received(&frame(b'E', &error_body("FATAL", "57P01")));
        assert_eq!(
            wire.ended,
            Some(SessionEnd::Server {
                code: "57P01".into()
            })
        );
        let mut wire = armed();
        wire.received(&frame(b'E', &error_body("FATAL", "XX000")));
        assert!(wire.ended.is_some());
    }

    #[test]
    fn nothing_is_counted_before_the_startup_is_over_and_garbage_ends_it() {
        let mut wire = WireState::default();
        wire.sent(b"\0\0\0\x08\x04\xd2\x16\x2f"); // SSLRequest: no type byte
        wire.received(b"N");
        assert!(wire.owed.is_empty() && !wire.work_owed());
        let mut wire = armed();
        wire.received(b"Z\0\0\0\x02");
        assert_eq!(wire.ended, Some(SessionEnd::Garbled));
    }
}
