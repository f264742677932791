//! A small server for the reference protocol, with switchable misbehaviour so
//! tests, examples and benchmarks can make a live peer hang, stall or lie.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::codec::{DEFAULT_MAX_BODY, FrameCodec};
use super::error::BindError;
use super::frame::{Event, Frame, Status};
use crate::Role;

/// The business side of a server: turns a request body into a reply.
///
/// Heartbeats never reach it; the connection task answers them. Implement it
/// with a plain `async fn`; the future must be `Send`.
///
/// ```
/// use bytes::Bytes;
/// use livepool::protocol::{Handler, Reply};
///
/// struct Upper;
///
/// impl Handler for Upper {
///     async fn handle(&self, request: Bytes) -> Reply {
///         Reply::ok(Bytes::from(request.to_ascii_uppercase()))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one business request.
    fn handle(&self, request: Bytes) -> impl Future<Output = Reply> + Send;
}

/// What a [`Handler`] answers: a status and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `Ok`, or why the request was not served.
    pub status: Status,
    /// The answer, or a message explaining a non-`Ok` status.
    pub body: Bytes,
}

impl Reply {
    /// A successful answer.
    pub fn ok(body: Bytes) -> Self {
        Self {
            status: Status::Ok,
            body,
        }
    }

    /// A refusal with a reason the client sees in
    /// [`ClientError::Rejected`](super::ClientError::Rejected).
    pub fn error(status: Status, message: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: message.into(),
        }
    }
}

/// The default handler: answers every request with its own body, which is all
/// a liveness test or a throughput benchmark needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Bytes) -> Reply {
        Reply::ok(request)
    }
}

/// How the server behaves, switchable at run time with
/// [`ServerHandle::set_mode`] to reproduce the failures the pool must catch.
///
/// The mode is read when a frame arrives (and [`Hang`](ServerMode::Hang) once
/// more just before a reply is written), so a change applies at once to every
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerMode {
    /// Answer everything promptly.
    #[default]
    Normal,
    /// Answer business requests but not heartbeats: the in-band probe fails
    /// while ordinary traffic still works.
    IgnoreHeartbeats,
    /// Read every frame and answer none, keeping sockets open: an application
    /// that hangs while its kernel still ACKs. Frames read in this mode are
    /// dropped, never answered later.
    Hang,
    /// Answer everything, heartbeats included, after this delay.
    Slow(Duration),
    /// Answer everything with a request id that does not match the request.
    WrongId,
}

/// Limits of one server. Every resource a peer can make it spend is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    max_body: usize,
    max_in_flight: usize,
    max_connections: usize,
    /// Ping etiquette: heartbeats closer together than this on one
    /// connection are refused with a going-away `too_many_pings`.
    min_heartbeat_interval: Option<Duration>,
}

/// Configures and starts a server.
///
/// ```no_run
/// use livepool::protocol::Server;
///
/// # async fn run() -> Result<(), livepool::protocol::BindError> {
/// let server = Server::new().bind("127.0.0.1:0".parse().unwrap()).await?;
/// println!("listening on {}", server.addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Server<H = Echo> {
    handler: H,
    limits: Limits,
}

impl Server<Echo> {
    /// An echo server with default limits (16 MiB bodies, 64 requests in
    /// flight per connection, 1024 connections).
    pub fn new() -> Self {
        Self::with_handler(Echo)
    }
}

impl Default for Server<Echo> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: Handler> Server<H> {
    /// A server that hands business requests to `handler`.
    pub fn with_handler(handler: H) -> Self {
        Self {
            handler,
            limits: Limits {
                max_body: DEFAULT_MAX_BODY,
                max_in_flight: 64,
                max_connections: 1024,
                min_heartbeat_interval: None,
            },
        }
    }

    /// Largest body accepted or sent. A request announcing more closes its
    /// connection; a handler reply over it is replaced by a `ServerError`.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.limits.max_body = FrameCodec::new(bytes).max_body();
        self
    }

    /// Requests (and delayed heartbeats) one connection may have pending
    /// before the server stops reading from it: backpressure instead of an
    /// unbounded queue. At least 1.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.limits.max_in_flight = requests.max(1);
        self
    }

    /// Connections served at once; further ones wait in the listen backlog.
    /// At least 1.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections.max(1);
        self
    }

    /// Enforces a minimum interval between heartbeats on each connection,
    /// as gRPC servers do (`min_time` of their keepalive policy). A
    /// heartbeat that arrives sooner after the previous one than `min` is
    /// not answered: the server sends a going-away event saying
    /// `too_many_pings` ([`Frame::too_many_pings`]) in its place, answers no
    /// heartbeat on that connection from then on, and keeps serving
    /// business requests until the client closes. Off by default.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), livepool::protocol::BindError> {
    /// use livepool::protocol::Server;
    /// use std::time::Duration;
    /// let server = Server::new()
    ///     .min_heartbeat_interval(Duration::from_secs(5))
    ///     .bind("127.0.0.1:0".parse().unwrap())
    ///     .await?;
    /// assert_eq!(server.heartbeats_refused(), 0);
    /// # Ok(()) }
    /// ```
    pub fn min_heartbeat_interval(mut self, min: Duration) -> Self {
        self.limits.min_heartbeat_interval = Some(min);
        self
    }

    /// Starts listening on `addr` (port 0 picks a free one) and serving in
    /// background tasks. `SO_REUSEADDR` is set, so a server can bind the port
    /// of one just shut down: that is how tests simulate a restart.
    pub async fn bind(self, addr: SocketAddr) -> Result<ServerHandle, BindError> {
        let listener = listen(addr).map_err(|source| BindError { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| BindError { addr, source })?;
        let (mode, _) = watch::channel(ServerMode::Normal);
        let shared = Arc::new(Shared {
            mode,
            role: AtomicU8::new(role_code(Some(Role::Primary))),
            requests: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            heartbeats_refused: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            going_away: CancellationToken::new(),
            grace: Mutex::new(Duration::ZERO),
        });
        let cancel = CancellationToken::new();
        let accept = AcceptLoop {
            listener,
            handler: Arc::new(self.handler),
            limits: self.limits,
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(accept.run(cancel.clone()));
        Ok(ServerHandle {
            addr: local,
            shared,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// State the handle and every connection task share.
#[derive(Debug)]
struct Shared {
    mode: watch::Sender<ServerMode>,
    /// The role reported in heartbeat replies ([`role_code`]).
    role: AtomicU8,
    requests: AtomicU64,
    heartbeats: AtomicU64,
    /// Heartbeats refused as too frequent (each connection's first).
    heartbeats_refused: AtomicU64,
    connections: AtomicUsize,
    /// Cancelled when a graceful shutdown begins.
    going_away: CancellationToken,
    /// How long a graceful shutdown waits for clients to close.
    grace: Mutex<Duration>,
}

impl Shared {
    fn mode(&self) -> ServerMode {
        *self.mode.borrow()
    }

    fn role(&self) -> Option<Role> {
        match self.role.load(Ordering::Relaxed) {
            1 => Some(Role::Primary),
            2 => Some(Role::Replica),
            3 => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// A role as stored in [`Shared::role`]; 0 is "reports none".
fn role_code(role: Option<Role>) -> u8 {
    match role {
        None => 0,
        Some(Role::Primary) => 1,
        Some(Role::Replica) => 2,
        Some(Role::ReadOnly) => 3,
    }
}

/// Controls a running server and reads its counters. Dropping it shuts the
/// server down (without waiting); [`shutdown`](Self::shutdown) also waits.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ServerHandle {
    /// Where the server listens (with the real port if 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Business request frames received so far (heartbeats excluded).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Heartbeat frames received so far, answered or not.
    pub fn heartbeats(&self) -> u64 {
        self.shared.heartbeats.load(Ordering::Relaxed)
    }

    /// Heartbeats refused as too frequent (see
    /// [`Server::min_heartbeat_interval`]): one per connection refused.
    pub fn heartbeats_refused(&self) -> u64 {
        self.shared.heartbeats_refused.load(Ordering::Relaxed)
    }

    /// Connections open right now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The current behaviour.
    pub fn mode(&self) -> ServerMode {
        self.shared.mode()
    }

    /// Switches behaviour on every connection at once.
    pub fn set_mode(&self, mode: ServerMode) {
        self.shared.mode.send_replace(mode);
    }

    /// The role heartbeat replies report (a new server reports
    /// [`Role::Primary`]).
    pub fn role(&self) -> Option<Role> {
        self.shared.role()
    }

    /// Changes the role reported in every heartbeat reply from now on, on
    /// every connection: how tests stage a failover. `None` reports no role,
    /// as servers before roles did.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use livepool::Role;
    /// use livepool::protocol::Server;
    /// let server = Server::new().bind("127.0.0.1:0".parse()?).await?;
    /// server.set_role(Role::Replica); // demoted: clients tracking roles evict their members
    /// # Ok(()) }
    /// ```
    pub fn set_role(&self, role: impl Into<Option<Role>>) {
        self.shared
            .role
            .store(role_code(role.into()), Ordering::Relaxed);
    }

    /// Shuts down gracefully, as a server being restarted on purpose should:
    /// stops accepting, sends a going-away event ([`Event::GoingAway`]) on
    /// every connection, keeps serving whatever arrives until each client
    /// closes its connection, and after `grace` closes the ones left. Returns
    /// when every connection is closed. Clients of this crate mark such a
    /// connection draining, so a pool closes it when it is next idle and no
    /// caller sees an error.
    pub async fn shutdown_gracefully(&self, grace: Duration) {
        *self
            .shared
            .grace
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = grace;
        self.shared.going_away.cancel();
        self.join().await;
    }

    /// Closes the listener and every connection, and waits until all are
    /// closed, so the port can be bound again at once. Idempotent.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.join().await;
    }

    async fn join(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // A panicked accept loop has dropped everything already.
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct AcceptLoop<H> {
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shared: Arc<Shared>,
}

impl<H: Handler> AcceptLoop<H> {
    async fn run(self, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut connections = JoinSet::new();
        loop {
            let next = async {
                // The semaphore is never closed, so this only waits.
                let slot = Arc::clone(&slots).acquire_owned().await;
                (slot, self.listener.accept().await)
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = self.shared.going_away.cancelled() => {
                    drop(self.listener);
                    drain(&mut connections, &self.shared, &cancel).await;
                    connections.shutdown().await;
                    return;
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                (slot, accepted) = next => match (slot, accepted) {
                    (Ok(slot), Ok((stream, peer))) => {
                        let conn = ServerConnection {
                            handler: Arc::clone(&self.handler),
                            limits: self.limits,
                            shared: Arc::clone(&self.shared),
                        };
                        let counted = ConnectionCount::new(Arc::clone(&self.shared));
                        connections.spawn(async move {
                            let _counted = counted;
                            let _slot = slot;
                            conn.serve(stream, peer).await;
                        });
                    }
                    (_, Err(err)) => {
                        // Out of file descriptors and the like: back off, don't spin.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    (Err(_), Ok(_)) => break,
                },
            }
        }
        drop(self.listener);
        // Aborting drops every connection's socket, which closes it.
        connections.shutdown().await;
    }
}

/// A graceful shutdown's wait: until every client closed its connection, the
/// grace period ran out, or a hard shutdown was asked for.
async fn drain(connections: &mut JoinSet<()>, shared: &Shared, cancel: &CancellationToken) {
    let grace = *shared.grace.lock().unwrap_or_else(PoisonError::into_inner);
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = &mut deadline => return,
            next = connections.join_next() => if next.is_none() { return },
        }
    }
}

/// Keeps [`ServerHandle::connections`] right even when a task is aborted.
struct ConnectionCount(Arc<Shared>);

impl ConnectionCount {
    fn new(shared: Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reply being produced: `None` when nothing is to be sent.
type PendingReply = Pin<Box<dyn Future<Output = Option<Frame>> + Send>>;

struct ServerConnection<H> {
    handler: Arc<H>,
    limits: Limits,
    shared: Arc<Shared>,
}

impl<H: Handler> ServerConnection<H> {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, FrameCodec::new(self.limits.max_body));
        let mut pending = FuturesUnordered::<PendingReply>::new();
        let mut announced = false;
        let mut pings = PingPolicy::new(self.limits.min_heartbeat_interval);
        loop {
            let may_read = pending.len() < self.limits.max_in_flight;
            tokio::select! {
                () = self.shared.going_away.cancelled(), if !announced => {
                    announced = true;
                    if let Err(err) = framed.send(Frame::event(Event::GoingAway)).await {
                        tracing::debug!(%peer, error = %err, "write failed, closing");
                        break;
                    }
                }
                Some(reply) = pending.next(), if !pending.is_empty() => {
                    let Some(reply) = reply else { continue };
                    if self.shared.mode() == ServerMode::Hang {
                        continue;
                    }
                    if let Err(err) = framed.send(reply).await {
                        tracing::debug!(%peer, error = %err, "write failed, closing");
                        break;
                    }
                }
                next = framed.next(), if may_read => match next {
                    None => break,
                    Some(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "bad input, closing");
                        break;
                    }
                    Some(Ok(frame)) if !frame.is_request() => {
                        tracing::debug!(%peer, kind = %frame.kind(), "client sent a reply, closing");
                        break;
                    }
                    Some(Ok(frame)) => {
                        if frame.is_heartbeat() {
                            match pings.judge() {
                                Ping::Allowed => {}
                                Ping::Ignored => {
                                    self.shared.heartbeats.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                Ping::TooSoon => {
                                    self.shared.heartbeats.fetch_add(1, Ordering::Relaxed);
                                    self.shared.heartbeats_refused.fetch_add(1, Ordering::Relaxed);
                                    tracing::debug!(%peer, "heartbeats too frequent, refusing");
                                    if let Err(err) = framed.send(Frame::too_many_pings()).await {
                                        tracing::debug!(%peer, error = %err, "write failed, closing");
                                        break;
                                    }
                                    continue;
                                }
                            }
                        }
                        if let Some(reply) = self.dispatch(frame) {
                            pending.push(reply);
                        }
                    }
                },
            }
        }
    }

    /// Decides how `request` is answered under the current mode. Heartbeats
    /// are answered here, never by the handler.
    fn dispatch(&self, request: Frame) -> Option<PendingReply> {
        let mode = self.shared.mode();
        if request.is_heartbeat() {
            self.shared.heartbeats.fetch_add(1, Ordering::Relaxed);
            if mode == ServerMode::IgnoreHeartbeats {
                return None;
            }
        } else {
            self.shared.requests.fetch_add(1, Ordering::Relaxed);
        }
        if mode == ServerMode::Hang {
            return None;
        }
        let delay = match mode {
            ServerMode::Slow(delay) => Some(delay),
            _ => None,
        };
        let wrong_id = mode == ServerMode::WrongId;
        let handler = Arc::clone(&self.handler);
        let shared = Arc::clone(&self.shared);
        let max_body = self.limits.max_body;
        Some(Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if !request.is_two_way() {
                if !request.is_heartbeat() {
                    let _ = handler.handle(request.body.clone()).await;
                }
                return None;
            }
            let mut frame = if request.is_heartbeat() {
                // The role as of the reply, not of the request's arrival.
                request.heartbeat_reply(shared.role())
            } else {
                let reply = fit(handler.handle(request.body.clone()).await, max_body);
                request.reply(reply.status, reply.body)
            };
            if wrong_id {
                frame.id = frame.id.wrapping_add(1);
            }
            Some(frame)
        }))
    }
}

/// One connection's ping etiquette: how soon a heartbeat may follow the
/// previous one (measured between arrivals, as gRPC does).
struct PingPolicy {
    min: Option<Duration>,
    last: Option<tokio::time::Instant>,
    refused: bool,
}

enum Ping {
    Allowed,
    /// The first heartbeat too soon: refused with a going-away.
    TooSoon,
    /// After a refusal: no heartbeat is answered on this connection.
    Ignored,
}

impl PingPolicy {
    fn new(min: Option<Duration>) -> Self {
        PingPolicy {
            min,
            last: None,
            refused: false,
        }
    }

    fn judge(&mut self) -> Ping {
        if self.refused {
            return Ping::Ignored;
        }
        let Some(min) = self.min else {
            return Ping::Allowed;
        };
        let now = tokio::time::Instant::now();
        let too_soon = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < min);
        self.last = Some(now);
        if too_soon {
            self.refused = true;
            Ping::TooSoon
        } else {
            Ping::Allowed
        }
    }
}

/// Replaces a reply the codec would refuse by a `ServerError` that explains.
fn fit(reply: Reply, max_body: usize) -> Reply {
    if reply.body.len() <= max_body {
        reply
    } else {
        tracing::warn!(
            len = reply.body.len(),
            max_body,
            "handler reply too large, sending ServerError"
        );
        let message: &'static [u8] = b"reply exceeds the body limit";
        let body = if message.len() <= max_body {
            Bytes::from_static(message)
        } else {
            Bytes::new()
        };
        Reply::error(Status::ServerError, body)
    }
}
