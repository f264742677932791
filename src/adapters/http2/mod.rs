//! A [`Manager`] for HTTP/2 client connections over the `h2` crate
//! (feature `http2`).
//!
//! One member is one HTTP/2 connection. The socket is opened by
//! [`crate::tcp::connect_host`] (keepalive, `TCP_USER_TIMEOUT`, connect
//! timeout; the host name resolved at every connect), handed to the
//! manager's [`Transport`] ([`Plaintext`] by default: HTTP/2 with prior
//! knowledge, `h2c`), then the h2 handshake runs on it and the connection's
//! frame loop is driven by a task of its own that ends with the member.
//! Connect proves the peer with one PING round trip, because the handshake
//! alone waits for nothing from the server.
//!
//! For an `https` server, implement [`Transport`] over your TLS client.
//! With tokio-rustls: a `TlsConnector` from a `ClientConfig` whose
//! `alpn_protocols` is `vec![b"h2".to_vec()]`, and `wrap` calling
//! `connector.connect(ServerName::try_from(host.to_owned())?, tcp)`;
//! `is_permanent` true for a rejected certificate. `tests/adapter_http2.rs`
//! (module `tls`) has one, about 40 lines, checked against a TLS server.
//!
//! The three layers of liveness, for HTTP/2:
//!
//! * **heartbeat**: an HTTP/2 `PING` frame, answered by the peer's HTTP/2
//!   stack on the same connection. It finds a server process that is hung,
//!   or a path that is blackholed, while the kernel would still report the
//!   connection established.
//! * **condition** (no I/O): h2's own view of the connection. A `GOAWAY`
//!   with `NO_ERROR` from the server (a graceful shutdown, a maximum
//!   connection age, a proxy's idle timeout as nginx and Envoy send it)
//!   turns the member [`Condition::Draining`]: it is not
//!   handed out again and is closed when returned, counted as `drained`,
//!   not as a failure. Any other connection error (EOF, reset, a `GOAWAY`
//!   with an error code, a protocol error) makes it [`Condition::Broken`].
//! * **kernel**: the socket options of [`TcpOptions`].
//!
//! ## Requests, and streams left open at return
//!
//! A borrowed member is an [`Http2Connection`]: send requests with
//! [`send_request`](Http2Connection::send_request), which waits until h2
//! may open another stream, or take a [`sender`](Http2Connection::sender)
//! (a clone of h2's `SendRequest`) to run several streams at once.
//!
//! Unlike a Redis or PostgreSQL session, an HTTP/2 connection cannot get out
//! of step: every request has a stream of its own, and a response future or
//! body dropped half way resets only its stream (h2 sends `RST_STREAM`). So
//! a member returned with streams still open (a response body still being
//! read, a request not yet answered) is *not* dirty: it goes back to the
//! pool and the next borrower opens new streams beside the old ones, up to
//! the server's `MAX_CONCURRENT_STREAMS`. This is what HTTP/2 is for, and
//! evicting such a member would turn every cancelled request into a new TCP
//! and HTTP/2 handshake. The streams themselves keep working after the
//! return; they fail only if the pool later closes the member (evicted,
//! drained, pool closed), which gives the connection a second to finish
//! before its socket is dropped.
//!
//! Size the pool for HTTP/2: a few members, each carrying many streams,
//! rather than one member per concurrent request. In this crate's
//! `http2_short_vs_long` bench 16 tasks on one connection's streams ran
//! 2.5× the requests per second of 16 tasks on 16 pooled connections.
//!
//! A server's `GOAWAY` can arrive while a caller holds the member: streams
//! the server has accepted still finish, but a request sent after it fails
//! with an `h2::Error` for which `is_go_away() && is_remote()` holds. The
//! server processed nothing of that request, so it is safe to retry on a
//! fresh member from the pool.
//!
//! ```no_run
//! use bytes::Bytes;
//! use livepool::Pool;
//! use livepool::adapters::http2::Http2Manager;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder()
//!     .max_size(4)
//!     .build(Http2Manager::new("localhost", 8080))?;
//!
//! let mut conn = pool.get().await?;
//! let request = http::Request::get(format!("http://{}/health", conn.authority())).body(())?;
//! let (response, _request_body) = conn.send_request(request, true).await?;
//! drop(conn); // back to the pool: the stream goes on by itself
//!
//! let response = response.await?;
//! let status = response.status();
//! let mut body = response.into_body();
//! let mut bytes = Vec::new();
//! while let Some(chunk) = body.data().await {
//!     let chunk: Bytes = chunk?;
//!     // Give the window back, or a large body stalls.
//!     let _ = body.flow_control().release_capacity(chunk.len());
//!     bytes.extend_from_slice(&chunk);
//! }
//! println!("{status}: {} bytes", bytes.len());
//! # Ok(()) }
//! ```

mod connection;
mod error;
mod transport;

pub use connection::Http2Connection;
pub use error::Http2ManagerError;
pub use transport::{Plaintext, Transport};

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::Reason;

use super::driver::{Driver, open_socket};
use crate::tcp::TcpOptions;
use crate::{Condition, Manager};

/// Makes, probes and judges HTTP/2 connections to one server.
///
/// ```no_run
/// use std::time::Duration;
/// use livepool::Pool;
/// use livepool::adapters::http2::Http2Manager;
/// use livepool::tcp::TcpOptions;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut h2 = h2::client::Builder::new();
/// h2.initial_window_size(1 << 20);
/// let manager = Http2Manager::new("api.internal", 8080)
///     .tcp_options(TcpOptions::default())
///     .h2_builder(h2);
/// let pool = Pool::builder()
///     .heartbeat_interval(Duration::from_secs(10))
///     .build(manager)?;
/// # drop(pool); Ok(()) }
/// ```
///
/// Plaintext by default; [`transport`](Self::transport) puts TLS (or any
/// other [`Transport`]) between the TCP connect and the HTTP/2 handshake.
#[derive(Clone)]
pub struct Http2Manager<T = Plaintext> {
    host: String,
    port: u16,
    tcp: TcpOptions,
    h2: h2::client::Builder,
    transport: T,
}

impl<T> fmt::Debug for Http2Manager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2Manager")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl Http2Manager<Plaintext> {
    /// A manager for the server at `host` (a name, resolved at every connect
    /// so a DNS change reaches new members, or an IP literal) and `port`,
    /// with the default [`TcpOptions`] and h2's default settings.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Http2Manager {
            host: host.into(),
            port,
            tcp: TcpOptions::default(),
            h2: h2::client::Builder::new(),
            transport: Plaintext,
        }
    }

    /// A manager for the server at `addr`, with no name to resolve.
    pub fn for_addr(addr: SocketAddr) -> Self {
        Self::new(addr.ip().to_string(), addr.port())
    }
}

impl<T: Transport> Http2Manager<T> {
    /// Runs `transport` on every new socket before the HTTP/2 handshake:
    /// TLS with ALPN `h2` for an `https` server.
    pub fn transport<U: Transport>(self, transport: U) -> Http2Manager<U> {
        Http2Manager {
            host: self.host,
            port: self.port,
            tcp: self.tcp,
            h2: self.h2,
            transport,
        }
    }

    /// Socket options for every connection (keepalive, `TCP_USER_TIMEOUT`,
    /// connect timeout).
    pub fn tcp_options(mut self, tcp: TcpOptions) -> Self {
        self.tcp = tcp;
        self
    }

    /// h2's connection settings (window sizes, frame and header list
    /// limits, concurrent streams), used for every handshake.
    pub fn h2_builder(mut self, builder: h2::client::Builder) -> Self {
        self.h2 = builder;
        self
    }

    /// The host this manager connects to, as given.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port this manager connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` as a request's authority (an IPv6 literal in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl<T: Transport> Manager for Http2Manager<T> {
    type Connection = Http2Connection;
    type Error = Http2ManagerError;

    async fn connect(&self) -> Result<Http2Connection, Http2ManagerError> {
        let (stream, local_addr, peer_addr) = open_socket(&self.host, self.port, &self.tcp)
            .await
            .map_err(Http2ManagerError::Connect)?;
        let stream = self.transport.wrap(stream, &self.host).await.map_err(|e| {
            Http2ManagerError::Transport {
                host: self.authority(),
                permanent: self.transport.is_permanent(&e),
                source: Box::new(e),
            }
        })?;
        let (send, mut connection) =
            self.h2
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|source| Http2ManagerError::Handshake {
                    peer: peer_addr,
                    source,
                })?;
        let ping = connection
            .ping_pong()
            .ok_or(Http2ManagerError::NoPingHandle)?;
        let driver = Driver::spawn(async move {
            match connection.await {
                Ok(()) => {}
                // A graceful GOAWAY is no error; the pool counts the drain.
                Err(e) if e.is_go_away() && e.reason() == Some(Reason::NO_ERROR) => {}
                Err(e) => tracing::debug!(
                    peer = %peer_addr,
                    error = &e as &dyn std::error::Error,
                    "HTTP/2 connection ended with an error"
                ),
            }
        });
        let mut conn = Http2Connection {
            send,
            ping,
            driver,
            local_addr,
            peer_addr,
            authority: self.authority(),
        };
        // The handshake only writes the preface and our SETTINGS; it
        // waits for nothing. One PING answered proves an HTTP/2 server is
        // there and serving, so no member is admitted that fails its first
        // request (a server that speaks HTTP/1.1 only, or a hung one).
        self.heartbeat(&mut conn).await?;
        Ok(conn)
    }

    async fn heartbeat(&self, conn: &mut Http2Connection) -> Result<(), Http2ManagerError> {
        conn.ping().await.map_err(Http2ManagerError::Heartbeat)
    }

    fn condition(&self, conn: &mut Http2Connection) -> Condition {
        conn.condition()
    }

    /// The server refuses this client for good: it does not speak HTTP/2
    /// without TLS (an HTTP/1.1-only server, whose reply h2 reads as a
    /// malformed frame), or it said so in its `GOAWAY`
    /// (`HTTP_1_1_REQUIRED`, `INADEQUATE_SECURITY`), or it broke the
    /// protocol in a way a retry repeats; or the [`Transport`] calls its
    /// error permanent (a refused certificate). A refused or timed-out
    /// connect, a `GOAWAY` with `NO_ERROR` (a server shutting down) or
    /// `ENHANCE_YOUR_CALM` are transient.
    fn is_permanent(&self, error: &Http2ManagerError) -> bool {
        let source = match error {
            Http2ManagerError::Handshake { source, .. } => source,
            Http2ManagerError::Heartbeat(source) => source,
            Http2ManagerError::Transport { permanent, .. } => return *permanent,
            _ => return false,
        };
        source.is_go_away()
            && matches!(
                source.reason(),
                Some(
                    Reason::PROTOCOL_ERROR
                        | Reason::FRAME_SIZE_ERROR
                        | Reason::COMPRESSION_ERROR
                        | Reason::HTTP_1_1_REQUIRED
                        | Reason::INADEQUATE_SECURITY
                )
            )
    }
}
