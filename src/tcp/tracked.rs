//! A stream wrapper that remembers what its I/O saw, so the pool can judge a
//! connection without help from the protocol code.
//!
//! Protocol code reads and writes; it should not have to report "I saw EOF" or
//! "the last reply arrived at t" to the pool. Wrapping the transport in
//! [`Tracked`] records both as a side effect of the I/O itself: the sentinel
//! uses the last read to skip heartbeats on members that just proved
//! themselves, and checkout/return use EOF and errors to evict at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::socket_state::{SocketState, socket_state};
use crate::Condition;

pin_project! {
    /// Any `AsyncRead + AsyncWrite` stream, plus a record of its I/O: when it last
    /// read and wrote, whether it saw EOF, and the first error it saw.
    ///
    /// Instants are [`tokio::time::Instant`], so tests under
    /// `tokio::time::pause()` see virtual time. `Tracked<S>` is `Unpin` whenever
    /// `S` is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use livepool::tcp::Tracked;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let (client, mut server) = tokio::io::duplex(64);
    /// let mut client = Tracked::new(client);
    /// client.write_all(b"ping").await?;
    /// assert!(client.last_write().is_some() && client.last_read().is_none());
    ///
    /// drop(server);
    /// let mut buf = [0u8; 8];
    /// assert_eq!(client.read(&mut buf).await?, 0);
    /// assert!(client.saw_eof());
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct Tracked<S> {
        #[pin]
        inner: S,
        last_read: Option<Instant>,
        last_write: Option<Instant>,
        saw_eof: bool,
        saw_error: Option<io::ErrorKind>,
    }
}

impl<S> Tracked<S> {
    /// Starts tracking `inner`, with nothing seen yet.
    pub fn new(inner: S) -> Self {
        Tracked {
            inner,
            last_read: None,
            last_write: None,
            saw_eof: false,
            saw_error: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream. I/O done through it directly is not recorded.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream, dropping the record.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// When a read last returned at least one byte.
    pub fn last_read(&self) -> Option<Instant> {
        self.last_read
    }

    /// When a write last accepted at least one byte. This says only that the
    /// local kernel took the bytes, not that the peer is alive.
    pub fn last_write(&self) -> Option<Instant> {
        self.last_write
    }

    /// The last proof that the peer is alive: the last read of at least one
    /// byte. Writes do not count, because a write to a dead peer succeeds
    /// until the send buffer fills. `None` until something has been read.
    pub fn last_activity(&self) -> Option<Instant> {
        self.last_read
    }

    /// Whether a read returned 0 bytes into a non-empty buffer: the peer
    /// closed its side.
    pub fn saw_eof(&self) -> bool {
        self.saw_eof
    }

    /// The kind of the first I/O error any read, write, flush or shutdown
    /// returned.
    pub fn saw_error(&self) -> Option<io::ErrorKind> {
        self.saw_error
    }
}

impl Tracked<TcpStream> {
    /// What the pool should do with this connection, judged without waiting:
    /// [`Broken`](Condition::Broken) if EOF or an error was seen or the socket
    /// is closed, reset or failed now; [`Dirty`](Condition::Dirty) if unread
    /// bytes wait on what should be an idle connection;
    /// [`Ready`](Condition::Ready) otherwise.
    pub fn condition(&self) -> Condition {
        if self.saw_eof || self.saw_error.is_some() {
            return Condition::Broken;
        }
        match socket_state(&self.inner) {
            SocketState::Open => Condition::Ready,
            SocketState::Unread => Condition::Dirty,
            SocketState::Eof | SocketState::Reset | SocketState::Failed(_) => Condition::Broken,
        }
    }

    /// The current [`SocketState`] of the wrapped socket.
    pub fn socket_state(&self) -> SocketState {
        socket_state(&self.inner)
    }
}

/// Records `result`'s error, if any, keeping the first one.
fn note_error<T>(saw_error: &mut Option<io::ErrorKind>, result: &io::Result<T>) {
    if let Err(e) = result
        && saw_error.is_none()
    {
        *saw_error = Some(e.kind());
    }
}

/// Records a write that accepted `n` bytes; a write of 0 bytes from a
/// non-empty buffer means the stream can take no more, which is an error.
fn note_write(
    last_write: &mut Option<Instant>,
    saw_error: &mut Option<io::ErrorKind>,
    result: &io::Result<usize>,
    offered_nothing: bool,
) {
    match result {
        Ok(0) if !offered_nothing => {
            saw_error.get_or_insert(io::ErrorKind::WriteZero);
        }
        Ok(0) => {}
        Ok(_) => *last_write = Some(Instant::now()),
        Err(_) => note_error(saw_error, result),
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let filled_before = buf.filled().len();
        let had_room = buf.remaining() > 0;
        let result = ready!(this.inner.poll_read(cx, buf));
        match &result {
            Ok(()) if buf.filled().len() > filled_before => *this.last_read = Some(Instant::now()),
            Ok(()) if had_room => *this.saw_eof = true,
            Ok(()) => {}
            Err(_) => note_error(this.saw_error, &result),
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = ready!(this.inner.poll_write(cx, buf));
        note_write(this.last_write, this.saw_error, &result, buf.is_empty());
        Poll::Ready(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = ready!(this.inner.poll_write_vectored(cx, bufs));
        let offered_nothing = bufs.iter().all(|b| b.is_empty());
        note_write(this.last_write, this.saw_error, &result, offered_nothing);
        Poll::Ready(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = ready!(this.inner.poll_flush(cx));
        note_error(this.saw_error, &result);
        Poll::Ready(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = ready!(this.inner.poll_shutdown(cx));
        note_error(this.saw_error, &result);
        Poll::Ready(result)
    }
}
