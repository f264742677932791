//! A [`Manager`] for Redis over the `redis` crate's multiplexed async
//! connection (feature `redis`).
//!
//! Configured as users configure the `redis` crate: a URL
//! ([`RedisManager::from_url`]: `redis://user:pass@host:port/db`,
//! `rediss://` for TLS with the `redis-tls` feature) or anything that is
//! [`IntoConnectionInfo`] ([`RedisManager::from_connection_info`]). A host
//! name is resolved at every connect, so a DNS change reaches the next
//! member, and each address it resolves to is tried in turn.
//!
//! The socket is opened by [`crate::tcp::connect_host`] (keepalive,
//! `TCP_USER_TIMEOUT`, connect timeout), wrapped in TLS by the crate itself
//! when asked (`RedisTls`, feature `redis-tls`, over that same socket, so the socket options
//! hold for TLS members too), and handed to
//! [`MultiplexedConnection::new_with_config`], which takes any stream; the
//! multiplexer's driver runs in a task of its own that ends with the member.
//! The heartbeat is `PING`, and only `PONG` counts as an answer. With
//! [`track_roles`](RedisManager::track_roles) it also asks `ROLE` (one
//! more round trip), so a member on a server demoted to replica is evicted
//! at its next heartbeat, and one that saw a `READONLY` reply is not handed
//! out again.
//!
//! Borrowed members are [`RedisConnection`]s, which implement the `redis`
//! crate's [`ConnectionLike`], and so does the pool's guard around one
//! ([`Pooled`]), so every command API works on a borrowed connection as it
//! is: [`AsyncCommands`](::redis::AsyncCommands) methods,
//! `cmd.query_async(&mut conn)`, pipelines, and functions generic over
//! `impl ConnectionLike`. They remember a command that was cut off (its future dropped
//! before the reply came) and report the member dirty, so it is evicted rather
//! than handed to the next caller. The multiplexer itself would match the late
//! reply to the dropped request and stay in step, but the command may still
//! be running on the server (a blocking `BLPOP`, a `MULTI` left open), so
//! the connection is not trusted again.
//!
//! ```no_run
//! use livepool::Pool;
//! use livepool::adapters::redis::RedisManager;
//! use redis::AsyncCommands;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = RedisManager::from_url("redis://localhost:6379/0")?;
//! let pool = Pool::builder().max_size(8).build(manager)?;
//! let mut conn = pool.get().await?;
//! let _: () = conn.set("greeting", "hello").await?;
//! let greeting: String = redis::cmd("GET").arg("greeting").query_async(&mut conn).await?;
//! assert_eq!(greeting, "hello");
//! # Ok(()) }
//! ```

mod server;
#[cfg(feature = "redis-tls")]
mod tls;

/// The `redis` crate this adapter is built on (1.x), so its command traits
/// (`AsyncCommands`, `aio::ConnectionLike`) need no dependency of their own
/// at a matching version.
pub use ::redis;
pub use server::RedisConfigError;
#[cfg(feature = "redis-tls")]
pub use tls::{RedisTls, RedisTlsError};

use std::fmt;
use std::net::SocketAddr;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, RedisConnectionInfo, RedisFuture, Value,
};
use tokio::io::{AsyncRead, AsyncWrite};

use self::server::Server;
use super::driver::{Driver, Usage, open_socket};
use super::env::{EnvAddrError, addr_from_env};
use crate::tcp::{ConnectError, TcpOptions};
use crate::{Condition, Manager, Pooled, Role};

/// The environment variable [`RedisManager::from_env`] reads.
pub const ADDR_VAR: &str = "LIVEPOOL_REDIS_ADDR";

/// The address [`RedisManager::from_env`] uses when [`ADDR_VAR`] is unset.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    6379,
));

/// Makes, probes and judges connections to one Redis server.
///
/// ```no_run
/// use std::time::Duration;
/// use livepool::Pool;
/// use livepool::adapters::redis::RedisManager;
/// use livepool::tcp::TcpOptions;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = RedisManager::new("127.0.0.1:6379".parse()?)
///     .tcp_options(TcpOptions::default())
///     .client_name("checkout-service");
/// let pool = Pool::builder()
///     .heartbeat_interval(Duration::from_secs(10))
///     .build(manager)?;
/// # drop(pool); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisManager {
    server: Server,
    tcp: TcpOptions,
    info: RedisConnectionInfo,
    config: AsyncConnectionConfig,
    client_name: Option<String>,
    track_roles: bool,
    /// Given with [`tls`](RedisManager::tls); a `rediss://` server without
    /// it uses the system's roots.
    #[cfg(feature = "redis-tls")]
    tls: Option<RedisTls>,
}

impl fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection info holds the password: leave it out.
        f.debug_struct("RedisManager")
            .field("host", &self.server.host)
            .field("port", &self.server.port)
            .field("tls", &self.server.tls)
            .field("tcp", &self.tcp)
            .field("db", &self.info.db())
            .field("client_name", &self.client_name)
            .field("track_roles", &self.track_roles)
            .finish_non_exhaustive()
    }
}

impl RedisManager {
    /// A manager for the server at `addr`, database 0, no password, with the
    /// default [`TcpOptions`] and the `redis` crate's default connection
    /// settings (a response timeout of 500 ms per command).
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_server(Server::from_addr(addr), RedisConnectionInfo::default())
    }

    fn with_server(server: Server, info: RedisConnectionInfo) -> Self {
        RedisManager {
            server,
            tcp: TcpOptions::default(),
            info,
            config: AsyncConnectionConfig::new(),
            client_name: None,
            track_roles: false,
            #[cfg(feature = "redis-tls")]
            tls: None,
        }
    }

    /// A manager for the server a Redis URL names, with its database,
    /// username and password: `redis://[user[:password]@]host[:port][/db]`,
    /// or `rediss://...` for TLS (feature `redis-tls`; the system's root
    /// certificates unless `tls` gives others). The host may be
    /// a name: it is resolved at every connect.
    ///
    /// ```
    /// use livepool::adapters::redis::RedisManager;
    ///
    /// let manager = RedisManager::from_url("redis://app:secret@localhost:6379/2")?;
    /// assert_eq!((manager.host(), manager.port()), ("localhost", 6379));
    /// # Ok::<(), livepool::adapters::redis::RedisConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, RedisConfigError> {
        Self::from_connection_info(url)
    }

    /// A manager from anything the `redis` crate takes as connection info:
    /// a [`redis::ConnectionInfo`], a URL, a
    /// `(host, port)` pair. Its address, database, credentials and protocol
    /// are used; its TCP settings are not (the socket's options are this
    /// crate's [`TcpOptions`], see [`tcp_options`](Self::tcp_options)).
    ///
    /// ```
    /// use livepool::adapters::redis::RedisManager;
    /// use redis::IntoConnectionInfo;
    ///
    /// let info = ("localhost", 6379).into_connection_info()?;
    /// let info = info.set_redis_settings(redis::RedisConnectionInfo::default().set_db(3));
    /// let manager = RedisManager::from_connection_info(info)?;
    /// assert_eq!(manager.host(), "localhost");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_connection_info(info: impl IntoConnectionInfo) -> Result<Self, RedisConfigError> {
        let (server, info) = server::parse(info)?;
        Ok(Self::with_server(server, info))
    }

    /// A manager for the server named by `LIVEPOOL_REDIS_ADDR`, or
    /// `127.0.0.1:6379` when it is unset: the way this crate's tests and
    /// examples find their server.
    pub fn from_env() -> Result<Self, EnvAddrError> {
        Ok(Self::new(addr_from_env(ADDR_VAR, DEFAULT_ADDR)?))
    }

    /// Socket options for every connection (keepalive, `TCP_USER_TIMEOUT`,
    /// connect timeout).
    pub fn tcp_options(mut self, tcp: TcpOptions) -> Self {
        self.tcp = tcp;
        self
    }

    /// Database, credentials and protocol version, as the `redis` crate takes
    /// them; sent in the handshake of every connection.
    pub fn connection_info(mut self, info: RedisConnectionInfo) -> Self {
        self.info = info;
        self
    }

    /// The `redis` crate's per-connection settings, e.g. its response timeout.
    pub fn connection_config(mut self, config: AsyncConnectionConfig) -> Self {
        self.config = config;
        self
    }

    /// Names every connection with `CLIENT SETNAME`, so `CLIENT LIST` on the
    /// server shows which pool each connection belongs to.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Reads the server's role with `ROLE` (after the `PING`) at connect and
    /// with every heartbeat (`master` is [`Role::Primary`], `slave` [`Role::Replica`]),
    /// reports it through [`Manager::role`], and fails the heartbeat with
    /// [`RedisManagerError::RoleChanged`] once it differs from the role at
    /// connect, so the member is evicted and replaced. A member whose
    /// command was answered `READONLY` (the server was demoted under it)
    /// is [`Draining`](Condition::Draining): closed when returned, never
    /// handed out again. Off by default.
    ///
    /// ```
    /// use livepool::adapters::redis::RedisManager;
    /// let manager = RedisManager::new("127.0.0.1:6379".parse().unwrap()).track_roles(true);
    /// # let _ = manager;
    /// ```
    pub fn track_roles(mut self, on: bool) -> Self {
        self.track_roles = on;
        self
    }

    /// Connects with TLS, checking the server's certificate as `tls` says
    /// (feature `redis-tls`). A `rediss://` URL turns TLS on by itself, with
    /// the system's root certificates; this replaces those, and turns TLS on
    /// for any other manager too. The handshake is bounded by the
    /// [`TcpOptions`]' `connect_timeout`, as the TCP handshake before it.
    ///
    /// ```no_run
    /// use livepool::adapters::redis::{RedisManager, RedisTls};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = RedisManager::from_url("rediss://default:secret@cache.internal:6380/0")?
    ///     .tls(RedisTls::from_ca_file("/etc/redis/ca.crt")?);
    /// # drop(manager); Ok(()) }
    /// ```
    #[cfg(feature = "redis-tls")]
    pub fn tls(mut self, tls: RedisTls) -> Self {
        self.server.tls = true;
        self.tls = Some(tls);
        self
    }

    /// The server this manager connects to, when it was given as an
    /// address ([`new`](Self::new), [`from_env`](Self::from_env), a URL with
    /// an IP literal). A manager for a host name has no one address (the
    /// name is resolved at every connect): for it this is the unspecified
    /// address `0.0.0.0` with the port; [`host`](Self::host) names it.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr.unwrap_or_else(|| {
            SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), self.server.port)
        })
    }

    /// The host this manager connects to: a name, resolved at every
    /// connect, or an IP address.
    pub fn host(&self) -> &str {
        &self.server.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Whether connections are TLS.
    pub fn uses_tls(&self) -> bool {
        self.server.tls
    }

    /// The database, credentials and protocol every connection's handshake
    /// sends.
    pub fn redis_settings(&self) -> &RedisConnectionInfo {
        &self.info
    }

    /// The TLS layer over a freshly opened socket, if this manager uses TLS.
    #[cfg(feature = "redis-tls")]
    async fn start_tls(
        &self,
        stream: tokio::net::TcpStream,
        server: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, RedisManagerError> {
        let tls_error = |source| RedisManagerError::Tls {
            addr: server,
            source,
        };
        let tls = match &self.tls {
            Some(tls) => tls.clone(),
            None => RedisTls::default_roots()
                .map_err(|e| tls_error(std::io::Error::new(std::io::ErrorKind::NotFound, e)))?,
        };
        tls.handshake(&self.server.host, stream, self.tcp.connect_timeout)
            .await
            .map_err(tls_error)
    }

    /// `PING` and, when roles are tracked, `ROLE`; returns the role read.
    /// Two commands, not a pipeline: a pipeline wraps a server error
    /// (`NOAUTH`, `LOADING`) so its code no longer shows, and
    /// [`is_permanent`](Manager::is_permanent) reads that code.
    async fn probe(&self, conn: &mut RedisConnection) -> Result<Option<Role>, RedisManagerError> {
        let pong = ::redis::cmd("PING")
            .query_async::<Value>(conn)
            .await
            .map_err(RedisManagerError::Heartbeat)?;
        match pong {
            Value::SimpleString(s) if s == "PONG" => {}
            other => return Err(RedisManagerError::UnexpectedPingReply(format!("{other:?}"))),
        }
        if !self.track_roles {
            return Ok(None);
        }
        let reply = ::redis::cmd("ROLE")
            .query_async::<Value>(conn)
            .await
            .map_err(RedisManagerError::Heartbeat)?;
        role_from(Some(&reply))
            .map(Some)
            .ok_or_else(|| RedisManagerError::UnexpectedRoleReply(format!("{reply:?}")))
    }

    /// The `redis` crate's handshake over `stream` (plain or TLS), the
    /// client name, and the proving PING.
    async fn start_redis<S>(
        &self,
        stream: S,
        server: SocketAddr,
        local_addr: SocketAddr,
    ) -> Result<RedisConnection, RedisManagerError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handshake = |source| RedisManagerError::Handshake {
            addr: server,
            source,
        };
        let (conn, driver) =
            MultiplexedConnection::new_with_config(&self.info, stream, self.config.clone())
                .await
                .map_err(handshake)?;
        let mut conn = RedisConnection {
            conn,
            driver: Driver::spawn(driver),
            usage: Usage::default(),
            local_addr,
            role: None,
            role_at_connect: None,
            readonly_seen: false,
        };
        if let Some(name) = &self.client_name {
            ::redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(name)
                .exec_async(&mut conn)
                .await
                .map_err(handshake)?;
        }
        // The handshake proves little: the replies it waits for are answered
        // at once even while the server is paused (`CLIENT PAUSE`) or still
        // loading. One PING answered PONG proves the application serves
        // commands, so a member is never admitted that fails its first use.
        let role = self.probe(&mut conn).await?;
        conn.role = role;
        conn.role_at_connect = role;
        Ok(conn)
    }
}

/// The role a `ROLE` reply names (its first element).
fn role_from(reply: Option<&Value>) -> Option<Role> {
    let Some(Value::Array(items)) = reply else {
        return None;
    };
    let name = match items.first()? {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
        Value::SimpleString(s) => s.as_str(),
        _ => return None,
    };
    match name {
        "master" => Some(Role::Primary),
        "slave" | "replica" => Some(Role::Replica),
        _ => None,
    }
}

impl Manager for RedisManager {
    type Connection = RedisConnection;
    type Error = RedisManagerError;

    async fn connect(&self) -> Result<RedisConnection, RedisManagerError> {
        let (stream, local_addr, server) =
            open_socket(&self.server.host, self.server.port, &self.tcp)
                .await
                .map_err(RedisManagerError::Connect)?;
        #[cfg(feature = "redis-tls")]
        if self.server.tls {
            let stream = self.start_tls(stream, server).await?;
            return self.start_redis(stream, server, local_addr).await;
        }
        self.start_redis(stream, server, local_addr).await
    }

    /// Authentication refused (a wrong password or user, or none sent where
    /// one is required), a missing permission, or TLS refused (a
    /// certificate that does not verify, no root certificates): retrying
    /// cannot help.
    fn is_permanent(&self, error: &RedisManagerError) -> bool {
        let redis_error = match error {
            RedisManagerError::Handshake { source, .. } => source,
            RedisManagerError::Heartbeat(e) => e,
            #[cfg(feature = "redis-tls")]
            RedisManagerError::Tls { source, .. } => return tls::is_refusal(source),
            _ => return false,
        };
        redis_error.kind() == ::redis::ErrorKind::AuthenticationFailed
            || matches!(redis_error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
    }

    async fn heartbeat(&self, conn: &mut RedisConnection) -> Result<(), RedisManagerError> {
        let role = self.probe(conn).await?;
        if !self.track_roles {
            return Ok(());
        }
        conn.role = role;
        match (conn.role_at_connect, role) {
            (Some(was), Some(now)) if was != now => {
                Err(RedisManagerError::RoleChanged { was, now })
            }
            _ => Ok(()),
        }
    }

    fn condition(&self, conn: &mut RedisConnection) -> Condition {
        let condition = conn.condition();
        let demoted = conn.readonly_seen || conn.role != conn.role_at_connect;
        if condition == Condition::Ready && self.track_roles && demoted {
            Condition::Draining
        } else {
            condition
        }
    }

    fn role(&self, conn: &RedisConnection) -> Option<Role> {
        conn.role
    }

    /// Only the heartbeat reads the role: when it is tracked, a busy member
    /// must still be probed every interval.
    fn use_proves_alive(&self) -> bool {
        !self.track_roles
    }
}

/// A pooled Redis connection: the `redis` crate's multiplexed connection,
/// the task driving it, and what its own commands have shown.
///
/// Use it as any `redis` async connection (it implements [`ConnectionLike`]);
/// the pool reads [`condition`](Self::condition) when it comes back.
pub struct RedisConnection {
    conn: MultiplexedConnection,
    driver: Driver,
    usage: Usage,
    local_addr: SocketAddr,
    /// The server's role at the latest probe, when roles are tracked.
    role: Option<Role>,
    role_at_connect: Option<Role>,
    /// A command was answered `READONLY`: the server is a replica now.
    readonly_seen: bool,
}

impl RedisConnection {
    /// The local end of the socket, to find this connection in the server's
    /// `CLIENT LIST` (its `addr` field) or in a proxy's connection list.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True once the multiplexer's driver has stopped (the server closed the
    /// connection, the socket failed): no command can succeed any more.
    pub fn is_closed(&self) -> bool {
        self.driver.has_stopped()
    }

    /// What the pool checks on checkout and return, without I/O: `Broken`
    /// if the driver stopped or a command failed with a connection error,
    /// `Dirty` if a command was cut off before its reply, else `Ready`.
    pub fn condition(&self) -> Condition {
        self.usage.condition(&self.driver)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("local_addr", &self.local_addr)
            .field("condition", &self.condition())
            .finish_non_exhaustive()
    }
}

/// Errors after which the connection cannot be trusted: the socket is gone,
/// or a reply did not come in time and may still arrive.
fn is_fatal(e: &::redis::RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_timeout() || e.is_io_error()
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let RedisConnection {
            conn,
            usage,
            readonly_seen,
            ..
        } = self;
        Box::pin(async move {
            let result = usage.track(conn.send_packed_command(cmd), is_fatal).await;
            if result.as_ref().is_err_and(|e| e.code() == Some("READONLY")) {
                *readonly_seen = true;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let RedisConnection { conn, usage, .. } = self;
        Box::pin(usage.track(conn.send_packed_commands(cmd, offset, count), is_fatal))
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// `ConnectionLike` for a guard around a [`RedisConnection`], by deref: every
/// command still goes through the member's own tracking.
macro_rules! connection_like_by_deref {
    ($(#[$doc:meta])* impl[$($g:tt)*] for $guard:ty) => {
        $(#[$doc])*
        impl<$($g)*> ConnectionLike for $guard {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                (**self).req_packed_command(cmd)
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                cmd: &'a ::redis::Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                (**self).req_packed_commands(cmd, offset, count)
            }

            fn get_db(&self) -> i64 {
                (**self).get_db()
            }
        }
    };
}

connection_like_by_deref! {
    /// The guard is a connection too, so `query_async(&mut conn)` and
    /// functions generic over `impl ConnectionLike` take a borrowed
    /// connection as it is; a command cut off half way through it still
    /// evicts the member on return.
    impl['p] for Pooled<'p, RedisManager>
}

connection_like_by_deref! {
    /// The same for a member of an [`Endpoints`](crate::endpoints::Endpoints)
    /// set of Redis servers.
    impl[K: crate::endpoints::Key] for crate::endpoints::Member<K, RedisManager>
}

/// Why a Redis connect or heartbeat failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisManagerError {
    /// The TCP connection could not be opened.
    Connect(ConnectError),
    /// The server did not accept the connection's setup (`HELLO`, `AUTH`,
    /// `SELECT`, `CLIENT SETNAME`).
    Handshake {
        /// The server.
        addr: SocketAddr,
        /// What the `redis` crate said.
        source: ::redis::RedisError,
    },
    /// `PING` failed: the connection is closed, timed out, or the server
    /// answered with an error (e.g. `LOADING`, `NOAUTH`).
    Heartbeat(::redis::RedisError),
    /// `PING` was answered with something other than `PONG`: the stream is
    /// out of step, or this is not the server it should be.
    UnexpectedPingReply(String),
    /// `ROLE` was answered with something that names no known role.
    UnexpectedRoleReply(String),
    /// The server's role changed since the connection was made (a
    /// failover): the member is replaced (see
    /// [`RedisManager::track_roles`]).
    RoleChanged {
        /// The role at connect.
        was: Role,
        /// The role now.
        now: Role,
    },
    /// The TLS handshake failed (feature `redis-tls`): the certificate was
    /// refused (permanent), no root certificates could be found
    /// (permanent), or the handshake was cut or timed out.
    #[cfg(feature = "redis-tls")]
    Tls {
        /// The server.
        addr: SocketAddr,
        /// What TLS said; a refusal by rustls is its inner error.
        source: std::io::Error,
    },
}

impl fmt::Display for RedisManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisManagerError::Connect(_) => f.write_str("could not connect to Redis"),
            RedisManagerError::Handshake { addr, .. } => {
                write!(f, "Redis at {addr} refused the connection setup")
            }
            RedisManagerError::Heartbeat(_) => f.write_str("Redis heartbeat (PING) failed"),
            RedisManagerError::UnexpectedPingReply(reply) => {
                write!(f, "Redis answered PING with {reply} instead of PONG")
            }
            RedisManagerError::UnexpectedRoleReply(reply) => {
                write!(
                    f,
                    "Redis answered ROLE with {reply}, which names no known role"
                )
            }
            RedisManagerError::RoleChanged { was, now } => {
                write!(f, "the Redis server's role changed from {was} to {now}")
            }
            #[cfg(feature = "redis-tls")]
            RedisManagerError::Tls { addr, .. } => {
                write!(f, "TLS with Redis at {addr} failed")
            }
        }
    }
}

impl std::error::Error for RedisManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisManagerError::Connect(e) => Some(e),
            // A `RedisError` prints the error it wraps and returns it as
            // its source too: report the chain from the first level that
            // says something new.
            RedisManagerError::Handshake { source, .. } => Some(crate::chain::cause_once(source)),
            RedisManagerError::Heartbeat(e) => Some(crate::chain::cause_once(e)),
            RedisManagerError::UnexpectedPingReply(_)
            | RedisManagerError::UnexpectedRoleReply(_)
            | RedisManagerError::RoleChanged { .. } => None,
            #[cfg(feature = "redis-tls")]
            RedisManagerError::Tls { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_replies_name_primary_or_replica_and_anything_else_none() {
        let reply = |name: &str| Value::Array(vec![Value::BulkString(name.as_bytes().to_vec())]);
        assert_eq!(role_from(Some(&reply("master"))), Some(Role::Primary));
        assert_eq!(role_from(Some(&reply("slave"))), Some(Role::Replica));
        assert_eq!(role_from(Some(&reply("sentinel"))), None);
        assert_eq!(role_from(Some(&Value::Nil)), None);
        assert_eq!(role_from(None), None);
    }
}
