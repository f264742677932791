//! The [`Manager`] for the reference protocol: how a pool makes, probes and
//! judges [`RpcConnection`]s.

use std::net::SocketAddr;
use std::time::Duration;

use super::client::{DEFAULT_REQUEST_TIMEOUT, RpcConnection};
use super::codec::DEFAULT_MAX_BODY;
use super::error::ClientError;
use crate::tcp::TcpOptions;
use crate::{Condition, Manager};

/// Pools [`RpcConnection`]s to one server. The heartbeat is the protocol's
/// heartbeat frame, sent on the pooled connection itself and answered by the
/// server's connection task.
///
/// ```no_run
/// use livepool::protocol::RpcManager;
/// use livepool::Manager;
///
/// # async fn run() -> Result<(), livepool::protocol::ClientError> {
/// let manager = RpcManager::new("127.0.0.1:7000".parse().unwrap());
/// let mut conn = manager.connect().await?;
/// manager.heartbeat(&mut conn).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RpcManager {
    addr: SocketAddr,
    tcp: TcpOptions,
    max_body: usize,
    request_timeout: Option<Duration>,
    track_roles: bool,
}

impl RpcManager {
    /// A manager for the server at `addr` with the default [`TcpOptions`]
    /// (which suit pooled connections), body limit and request timeout.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            tcp: TcpOptions::default(),
            max_body: DEFAULT_MAX_BODY,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            track_roles: false,
        }
    }

    /// Replaces the socket options: keepalive and `TCP_USER_TIMEOUT` are the
    /// kernel's layer of liveness.
    pub fn tcp_options(mut self, tcp: TcpOptions) -> Self {
        self.tcp = tcp;
        self
    }

    /// Largest body sent or accepted on each connection.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Bound on each call and heartbeat, see
    /// [`RpcConnection::set_request_timeout`].
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Track the server's role (reported in every heartbeat reply):
    /// [`Manager::role`] reports it, the heartbeat fails with
    /// [`ClientError::RoleChanged`] once it differs from the role at
    /// connect (so the pool evicts the member), and such a member is
    /// [`Draining`](Condition::Draining): never handed out again. Off by
    /// default: then `role` is `None`.
    ///
    /// ```
    /// use livepool::protocol::RpcManager;
    /// let manager = RpcManager::new("127.0.0.1:7000".parse().unwrap()).track_roles(true);
    /// # let _ = manager;
    /// ```
    pub fn track_roles(mut self, track: bool) -> Self {
        self.track_roles = track;
        self
    }

    /// The server this manager connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl RpcManager {
    /// A member whose server changed role drains, when roles are tracked.
    fn with_role(&self, conn: &RpcConnection, condition: Condition) -> Condition {
        if condition == Condition::Ready && self.track_roles && conn.role_changed().is_some() {
            Condition::Draining
        } else {
            condition
        }
    }
}

impl Manager for RpcManager {
    type Connection = RpcConnection;
    type Error = ClientError;

    /// Connects, then proves the server *application* answers with one
    /// heartbeat round trip, as a Redis `HELLO` or a PostgreSQL startup does.
    /// A TCP handshake alone proves little: a load balancer or proxy with no
    /// backend accepts and then resets, and a pool that counted that as a
    /// member would hand out connections that die on first use and refill
    /// them in a loop with no backoff.
    async fn connect(&self) -> Result<RpcConnection, ClientError> {
        let mut conn = RpcConnection::connect(self.addr, &self.tcp, self.max_body).await?;
        conn.set_request_timeout(self.request_timeout);
        conn.heartbeat().await?;
        Ok(conn)
    }

    async fn heartbeat(&self, conn: &mut RpcConnection) -> Result<(), ClientError> {
        conn.heartbeat().await?;
        match conn.role_changed() {
            Some((from, to)) if self.track_roles => Err(ClientError::RoleChanged { from, to }),
            _ => Ok(()),
        }
    }

    fn condition(&self, conn: &mut RpcConnection) -> Condition {
        let condition = conn.condition();
        self.with_role(conn, condition)
    }

    /// No peek on return: the connection was in use a moment ago, and its
    /// bookkeeping knows whether a request was cut off or an error seen.
    /// Bytes nobody asked for are found by the next checkout's peek.
    fn condition_on_return(&self, conn: &mut RpcConnection) -> Condition {
        self.with_role(conn, conn.known_condition())
    }

    /// The last call's round trip, for the adaptive heartbeat timeout.
    fn take_round_trip(
        &self,
        conn: &mut RpcConnection,
    ) -> Option<(tokio::time::Instant, std::time::Duration)> {
        conn.take_round_trip()
    }

    fn heartbeat_refused(&self, conn: &RpcConnection) -> bool {
        conn.heartbeats_refused()
    }

    /// Any byte read counts: a reply to a caller's request, an event.
    fn last_heard(&self, conn: &RpcConnection) -> Option<tokio::time::Instant> {
        conn.last_read()
    }

    fn role(&self, conn: &RpcConnection) -> Option<crate::Role> {
        if self.track_roles { conn.role() } else { None }
    }

    /// The role travels only in heartbeat replies: when roles are tracked,
    /// a busy member must still be probed every interval.
    fn use_proves_alive(&self) -> bool {
        !self.track_roles
    }
}
