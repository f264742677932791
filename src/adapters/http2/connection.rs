//! The pooled HTTP/2 connection: h2's request handle, its PING handle, the
//! task driving the connection, and h2's own view of whether it still
//! takes requests.

use std::fmt;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Ping, PingPong, Reason, SendStream};

use crate::Condition;
use crate::adapters::driver::Driver;

/// A pooled HTTP/2 connection.
///
/// Send requests with [`send_request`](Self::send_request), or take a
/// [`sender`](Self::sender) to run several streams at once. Streams still
/// open when the member goes back to the pool keep running and do not make
/// it dirty (see the [module docs](super)).
pub struct Http2Connection {
    pub(super) send: SendRequest<Bytes>,
    pub(super) ping: PingPong,
    /// Drives the connection's frame loop; ends with the member.
    pub(super) driver: Driver,
    pub(super) local_addr: SocketAddr,
    pub(super) peer_addr: SocketAddr,
    pub(super) authority: String,
}

impl Http2Connection {
    /// Waits until h2 may open another stream (the server's
    /// `MAX_CONCURRENT_STREAMS` allows it), then sends `request`'s head.
    /// With `end_of_stream` false, send the body on the returned
    /// [`SendStream`]; await the [`ResponseFuture`] for the response.
    ///
    /// The URI must be absolute (`http://host:port/path`;
    /// [`authority`](Self::authority) gives `host:port`). The wait for a
    /// free stream has no bound of its own: wrap the call in
    /// `tokio::time::timeout` if the server's limit may be reached. After
    /// the server's `GOAWAY` it fails with an error for which
    /// `is_go_away() && is_remote()` holds: nothing was sent, a retry on
    /// another member is safe.
    pub async fn send_request(
        &mut self,
        request: http::Request<()>,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), h2::Error> {
        std::future::poll_fn(|cx| self.send.poll_ready(cx)).await?;
        self.send.send_request(request, end_of_stream)
    }

    /// A clone of h2's request handle, to open several streams at once
    /// (each clone waits for its own `poll_ready`). A clone kept after the
    /// member is returned still works, but only until the pool closes the
    /// member (an eviction, a drain, the pool's close).
    ///
    /// ```no_run
    /// use livepool::Pool;
    /// use livepool::adapters::http2::Http2Manager;
    ///
    /// # async fn demo(pool: &Pool<Http2Manager>) -> Result<(), Box<dyn std::error::Error>> {
    /// // Three requests in flight at once on one borrowed connection.
    /// let conn = pool.get().await?;
    /// let mut responses = Vec::new();
    /// for path in ["/a", "/b", "/c"] {
    ///     let mut sender = conn.sender().ready().await?;
    ///     let uri = format!("http://{}{path}", conn.authority());
    ///     let (response, _) = sender.send_request(http::Request::get(uri).body(())?, true)?;
    ///     responses.push(response);
    /// }
    /// drop(conn); // the streams go on; the member is free for the next caller
    /// for response in responses {
    ///     println!("{}", response.await?.status());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.send.clone()
    }

    /// The server as a request authority, `host:port`, as the manager was
    /// given it.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The local end of the socket, to find this connection in a proxy's
    /// or the server's connection list.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's address this connection reached.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// True once the server sent `GOAWAY` with `NO_ERROR`: streams it
    /// accepted still finish, no new ones may be opened.
    pub fn is_going_away(&mut self) -> bool {
        self.condition() == Condition::Draining
    }

    /// What the pool checks on checkout and return, without I/O: h2's own
    /// record of the connection. `Draining` after the server's graceful
    /// `GOAWAY`, `Broken` after any other connection error or once the
    /// driving task has ended, else `Ready`. Open streams do not count
    /// against it.
    pub fn condition(&mut self) -> Condition {
        match self.connection_error() {
            Some(e) if e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR) => {
                Condition::Draining
            }
            Some(_) => Condition::Broken,
            None if self.driver.has_stopped() => Condition::Broken,
            None => Condition::Ready,
        }
    }

    /// The error the connection ended with, if it has: h2 reports it from
    /// `poll_ready` once its frame loop saw it, whatever stream was active.
    /// Polled with a no-op waker: nobody waits on this handle while the
    /// pool holds the member, and the next `send_request` registers its
    /// own waker.
    fn connection_error(&mut self) -> Option<h2::Error> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.send.poll_ready(&mut cx) {
            Poll::Ready(Err(e)) => Some(e),
            Poll::Ready(Ok(())) | Poll::Pending => None,
        }
    }

    /// One PING round trip. A failed ping reports the error the connection
    /// ended with when there is one (a `GOAWAY`, a malformed frame), which
    /// says more than h2's "broken pipe" for a ping on a closed connection.
    pub(super) async fn ping(&mut self) -> Result<(), h2::Error> {
        match self.ping.ping(Ping::opaque()).await {
            Ok(_pong) => Ok(()),
            Err(e) => Err(self.connection_error().unwrap_or(e)),
        }
    }
}

impl fmt::Debug for Http2Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2Connection")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("authority", &self.authority)
            .field("driver_stopped", &self.driver.has_stopped())
            .finish_non_exhaustive()
    }
}
