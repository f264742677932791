//! A [`Manager`] for PostgreSQL over `tokio-postgres` (feature `postgres`).
//!
//! Built from the client's own [`Config`] or connection string
//! ([`PgManager::from_config`], [`PgManager::from_conn_str`]): host names
//! (resolved at every connect), several hosts tried in order, ports, user,
//! database, `application_name`, and the config's keepalive, user-timeout
//! and connect-timeout settings merged with the crate's [`TcpOptions`].
//! Each socket is opened by [`crate::tcp`] and handed to
//! [`Config::connect_raw`], with TLS through any [`MakeTlsConnect`]
//! (default [`NoTls`]). The `Connection` future that drives the socket runs
//! in a task of its own that ends with the member. The heartbeat is an
//! empty simple query (one round trip answered by the backend process, with
//! no parsing, planning or locks), or with [`track_roles`](PgManager::track_roles)
//! the role query.
//!
//! Borrowed members are [`PgConnection`]s, which deref to
//! [`Client`](tokio_postgres::Client) (so
//! `&**conn` is a `GenericClient`) and notice a query cut off half way
//! whichever way it was sent, so the pool evicts that member and
//! [`close`](Manager::close) cancels the statement on the server before
//! giving the member's place back.
//!
//! ```no_run
//! use livepool::Pool;
//! use livepool::adapters::postgres::PgManager;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = PgManager::from_conn_str("host=localhost user=postgres dbname=test")?;
//! let pool = Pool::builder().max_size(8).build(manager)?;
//! let conn = pool.get().await?;
//! let row = conn.query_one("SELECT 1 + $1::int4", &[&41i32]).await?;
//! assert_eq!(row.get::<_, i32>(0), 42);
//! # Ok(()) }
//! ```

mod config;
mod connection;
mod error;
mod role;
mod wire;

use std::any::TypeId;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls};

pub use config::{DEFAULT_PORT, PgConfigError};
pub use connection::PgConnection;
pub use error::PgManagerError;

use self::config::{Target, merge_tcp_options, targets};
use self::connection::send_cancel;
use self::role::{RoleRead, read_role};
use self::wire::{Watched, WatchedTls, Wire};
use super::driver::Driver;
use super::env::{EnvAddrError, addr_from_env};
use crate::tcp::{self, TcpOptions};
use crate::{Closing, Condition, Manager, Role};

/// The environment variable [`PgManager::from_env`] reads.
pub const ADDR_VAR: &str = "LIVEPOOL_PG_ADDR";

/// The address [`PgManager::from_env`] uses when [`ADDR_VAR`] is unset.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    5432,
));

/// The user [`PgManager::from_env`] logs in as.
pub const DEFAULT_USER: &str = "postgres";

/// The database [`PgManager::from_env`] opens.
pub const DEFAULT_DBNAME: &str = "test";

/// The default bound on one cancel request (connect, TLS, send).
pub const DEFAULT_CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes, probes and judges connections to a PostgreSQL server (one of the
/// config's hosts, tried in order).
///
/// `T` makes the TLS session; [`NoTls`] by default, any `tokio-postgres`
/// TLS connector (e.g. `tokio-postgres-rustls`, `postgres-native-tls`)
/// through [`tls`](Self::tls); see `examples/postgres_tls.rs`.
///
/// ```no_run
/// use livepool::Pool;
/// use livepool::adapters::postgres::PgManager;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = PgManager::from_conn_str(
///     "host=db1.internal,db2.internal user=app password=secret dbname=orders \
///      keepalives_idle=20 connect_timeout=3",
/// )?
/// .application_name("checkout-service")
/// .track_roles(true);
/// let pool = Pool::builder().max_size(16).build(manager)?;
/// # drop(pool); Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgManager<T = NoTls> {
    targets: Arc<[Target]>,
    tcp: TcpOptions,
    config: Config,
    tls: T,
    tls_domain: Option<String>,
    cancel_timeout: Duration,
    track_roles: bool,
}

impl<T> fmt::Debug for PgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config's own Debug redacts the password.
        f.debug_struct("PgManager")
            .field("targets", &self.targets)
            .field("tcp", &self.tcp)
            .field("config", &self.config)
            .field("tls_domain", &self.tls_domain)
            .field("cancel_timeout", &self.cancel_timeout)
            .field("track_roles", &self.track_roles)
            .finish_non_exhaustive()
    }
}

impl PgManager<NoTls> {
    /// A manager for the servers `config` names, without TLS.
    ///
    /// Hosts: each `host` (a name, resolved at every connect, every address
    /// it resolves to tried in turn; or an IP) with its `port` (one for all,
    /// one per host, or 5432) and `hostaddr` (connect there, keep the name
    /// for TLS), tried in order until one accepts the session, or shuffled
    /// per connect with `load_balance_hosts=random`. A host whose socket or
    /// startup fails is skipped for the next, except a permanent failure
    /// (a refused password or role, an unknown database), which ends the
    /// walk as in libpq. A Unix-socket directory is refused with
    /// [`PgConfigError::UnixSocket`]: what this crate adds (keepalive,
    /// `TCP_USER_TIMEOUT`) is TCP's.
    ///
    /// Socket options, by one rule: **a setting the config makes explicitly
    /// wins, every other one is the crate's default** ([`TcpOptions`], or
    /// the options given to [`tcp_options`](Self::tcp_options)).
    /// Explicit means different from `Config::new()`: `keepalives=0` turns
    /// keepalive off; `keepalives_idle` (other than tokio-postgres's 2 h
    /// default, which cannot be told from unset), `keepalives_interval` and
    /// `keepalives_retries` replace those parts of the keepalive policy;
    /// `tcp_user_timeout` replaces the user timeout (zero: the system
    /// default); `connect_timeout` above zero replaces the connect timeout
    /// (zero, libpq's "wait forever", keeps the crate's bound). The result
    /// is [`tcp`](Self::tcp).
    ///
    /// The login (user, password, database, options, `application_name`,
    /// `sslmode`) is sent as the config says.
    ///
    /// ```
    /// use std::time::Duration;
    /// use livepool::adapters::postgres::PgManager;
    ///
    /// let mut config = tokio_postgres::Config::new();
    /// config.host("localhost").user("app").keepalives_idle(Duration::from_secs(20));
    /// let manager = PgManager::from_config(config)?;
    /// assert_eq!(manager.tcp().keepalive.unwrap().idle, Duration::from_secs(20));
    /// // Not set in the config: the crate's 30 s user timeout.
    /// assert_eq!(manager.tcp().user_timeout, Some(Duration::from_secs(30)));
    /// # Ok::<(), livepool::adapters::postgres::PgConfigError>(())
    /// ```
    pub fn from_config(config: Config) -> Result<Self, PgConfigError> {
        let targets = targets(&config)?;
        let tcp = merge_tcp_options(&config, TcpOptions::default())?;
        Ok(Self::plain(targets, tcp, config))
    }

    /// A manager with the defaults: no TLS, no role tracking.
    fn plain(targets: Vec<Target>, tcp: TcpOptions, config: Config) -> Self {
        PgManager {
            targets: targets.into(),
            tcp,
            config,
            tls: NoTls,
            tls_domain: None,
            cancel_timeout: DEFAULT_CANCEL_TIMEOUT,
            track_roles: false,
        }
    }

    /// [`from_config`](Self::from_config) of a libpq-style connection
    /// string (`host=localhost user=app dbname=orders` or
    /// `postgresql://app@localhost/orders`).
    ///
    /// ```
    /// use livepool::adapters::postgres::PgManager;
    ///
    /// let manager = PgManager::from_conn_str("host=localhost,10.0.0.2 port=5432 user=app")?;
    /// let hosts: Vec<_> = manager.hosts().collect();
    /// assert_eq!(hosts, [("localhost", 5432), ("10.0.0.2", 5432)]);
    /// # Ok::<(), livepool::adapters::postgres::PgConfigError>(())
    /// ```
    pub fn from_conn_str(s: &str) -> Result<Self, PgConfigError> {
        Self::from_config(s.parse().map_err(PgConfigError::Parse)?)
    }

    /// A manager for the server at `addr`, logging in with `config` (its
    /// host and port settings are ignored; its socket settings merge as in
    /// [`from_config`](Self::from_config)), without TLS.
    pub fn new(addr: SocketAddr, config: Config) -> Self {
        let target = Target {
            host: addr.ip().to_string(),
            addr: Some(addr.ip()),
            port: addr.port(),
        };
        // Out-of-range values are reported by name at connect
        // (`ConnectError::InvalidOptions`).
        let tcp = config::merge_unchecked(&config, TcpOptions::default());
        Self::plain(vec![target], tcp, config)
    }

    /// A manager for the server named by `LIVEPOOL_PG_ADDR` (or
    /// `127.0.0.1:5432`), as user `postgres` on database `test`, no password,
    /// no TLS: the way this crate's tests find their server.
    pub fn from_env() -> Result<Self, EnvAddrError> {
        let addr = addr_from_env(ADDR_VAR, DEFAULT_ADDR)?;
        let mut config = Config::new();
        config.user(DEFAULT_USER).dbname(DEFAULT_DBNAME);
        Ok(Self::new(addr, config))
    }
}

impl FromStr for PgManager<NoTls> {
    type Err = PgConfigError;

    /// [`PgManager::from_conn_str`].
    fn from_str(s: &str) -> Result<Self, PgConfigError> {
        Self::from_conn_str(s)
    }
}

impl<T> PgManager<T> {
    /// The crate's socket options for every connection (keepalive,
    /// `TCP_USER_TIMEOUT`, connect timeout); settings the config makes
    /// explicitly still win over these (see [`from_config`](PgManager::from_config)).
    pub fn tcp_options(mut self, tcp: TcpOptions) -> Self {
        self.tcp = config::merge_unchecked(&self.config, tcp);
        self
    }

    /// Sets `application_name`, so `pg_stat_activity` on the server shows
    /// which pool each session belongs to.
    pub fn application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// Negotiates TLS with `tls` (as the config's `sslmode` says), checking
    /// each server's certificate against its host name (see
    /// [`tls_domain`](Self::tls_domain)).
    pub fn tls<U>(self, tls: U) -> PgManager<U> {
        PgManager {
            targets: self.targets,
            tcp: self.tcp,
            config: self.config,
            tls,
            tls_domain: self.tls_domain,
            cancel_timeout: self.cancel_timeout,
            track_roles: self.track_roles,
        }
    }

    /// Checks every server's certificate against `domain` instead of the
    /// host's own name (for a server reached by IP, or through a tunnel).
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.tls_domain = Some(domain.into());
        self
    }

    /// Bounds each cancel request sent for a query cut off half way
    /// (default [`DEFAULT_CANCEL_TIMEOUT`]).
    pub fn cancel_timeout(mut self, timeout: Duration) -> Self {
        self.cancel_timeout = timeout;
        self
    }

    /// Reads the server's role at connect and with every heartbeat
    /// (`pg_is_in_recovery()` and `transaction_read_only` in one simple
    /// query: [`Role::Replica`], [`Role::ReadOnly`] or [`Role::Primary`]),
    /// reports it through [`Manager::role`], and fails the heartbeat with
    /// [`PgManagerError::RoleChanged`] when it changed since connect, so a
    /// session on a demoted or promoted server is replaced. Off by default
    /// (the heartbeat is then an empty query).
    pub fn track_roles(mut self, on: bool) -> Self {
        self.track_roles = on;
        self
    }

    /// The hosts tried, in the config's order, with their ports.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, u16)> {
        self.targets.iter().map(|t| (t.host.as_str(), t.port))
    }

    /// The socket options every connection gets: the config's explicit
    /// settings merged over the crate's.
    pub fn tcp(&self) -> &TcpOptions {
        &self.tcp
    }

    /// The login settings sent in every handshake.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl<T> PgManager<T>
where
    T: MakeTlsConnect<TcpStream> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send + 'static,
    <T::TlsConnect as TlsConnect<TcpStream>>::Future: Send + 'static,
{
    /// The startup settings: the config, except that with [`NoTls`] an
    /// `sslmode=prefer` does not ask the server for TLS. (tokio-postgres
    /// asks `NoTls` whether it can do TLS through a private method, which
    /// the connector wrapped for watching the session cannot pass on.)
    fn startup_config(&self) -> std::borrow::Cow<'_, Config> {
        if TypeId::of::<T>() == TypeId::of::<NoTls>()
            && self.config.get_ssl_mode() == SslMode::Prefer
        {
            let mut config = self.config.clone();
            config.ssl_mode(SslMode::Disable);
            std::borrow::Cow::Owned(config)
        } else {
            std::borrow::Cow::Borrowed(&self.config)
        }
    }

    async fn connect_to(&self, target: &Target) -> Result<PgConnection, PgManagerError> {
        let stream = match target.addr {
            Some(ip) => tcp::connect(SocketAddr::new(ip, target.port), &self.tcp).await,
            None => tcp::connect_host(&target.host, target.port, &self.tcp).await,
        }
        .map_err(PgManagerError::Connect)?;
        let socket_error = |source| PgManagerError::Socket {
            host: target.to_string(),
            source,
        };
        let server = stream.peer_addr().map_err(socket_error)?;
        let local_addr = stream.local_addr().map_err(socket_error)?;
        let domain = self.tls_domain.as_deref().unwrap_or(&target.host);
        let tls = self
            .tls
            .clone()
            .make_tls_connect(domain)
            .map_err(|e| PgManagerError::Tls {
                host: domain.to_owned(),
                source: e.into(),
            })?;
        let wire = Arc::new(Wire::default());
        let (client, connection) = self
            .startup_config()
            .connect_raw(
                Watched::new(stream, Arc::clone(&wire)),
                WatchedTls::new(tls, Arc::clone(&wire)),
            )
            .await
            .map_err(|source| PgManagerError::Handshake {
                addr: server,
                source,
            })?;
        wire.arm();
        let driver = Driver::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(
                    server = %server,
                    error = &error as &dyn std::error::Error,
                    "postgres connection ended"
                );
            }
        });
        let mut conn = PgConnection {
            client,
            driver,
            wire,
            local_addr,
            server,
            tls_domain: domain.to_owned(),
            role: None,
        };
        if self.track_roles {
            conn.role = Some(read_role(&conn.client).await.map_err(|e| match e {
                RoleRead::Query(e) => PgManagerError::RoleQuery(e),
                RoleRead::Answer => PgManagerError::UnexpectedRoleAnswer,
            })?);
        }
        Ok(conn)
    }
}

impl<T> Manager for PgManager<T>
where
    T: MakeTlsConnect<TcpStream> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send + 'static,
    <T::TlsConnect as TlsConnect<TcpStream>>::Future: Send + 'static,
{
    type Connection = PgConnection;
    type Error = PgManagerError;

    async fn connect(&self) -> Result<PgConnection, PgManagerError> {
        let mut failures = Vec::new();
        for target in self.targets.iter() {
            match self.connect_to(target).await {
                Ok(conn) => return Ok(conn),
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => failures.push(e),
            }
        }
        match failures.len() {
            1 => Err(failures.remove(0)),
            _ => Err(PgManagerError::EveryHost { failures }),
        }
    }

    async fn heartbeat(&self, conn: &mut PgConnection) -> Result<(), PgManagerError> {
        if !self.track_roles {
            return conn
                .client
                .simple_query("")
                .await
                .map(drop)
                .map_err(PgManagerError::Heartbeat);
        }
        let now = read_role(&conn.client).await.map_err(|e| match e {
            RoleRead::Query(e) => PgManagerError::Heartbeat(e),
            RoleRead::Answer => PgManagerError::UnexpectedRoleAnswer,
        })?;
        match conn.role.replace(now) {
            Some(was) if was != now => Err(PgManagerError::RoleChanged { was, now }),
            _ => Ok(()),
        }
    }

    fn condition(&self, conn: &mut PgConnection) -> Condition {
        conn.condition()
    }

    fn is_permanent(&self, error: &PgManagerError) -> bool {
        error.is_permanent()
    }

    fn role(&self, conn: &PgConnection) -> Option<Role> {
        conn.role
    }

    /// Only the heartbeat reads the role: when it is tracked, a busy
    /// session must still be probed every interval.
    fn use_proves_alive(&self) -> bool {
        !self.track_roles
    }

    /// Ends the session before the member's place is given back: a query
    /// still running (a reply owed) is cancelled with PostgreSQL's cancel
    /// request, bounded by [`cancel_timeout`](PgManager::cancel_timeout);
    /// then the client is dropped and the work ends when the task driving
    /// the socket has (the server read `Terminate`, or closed it).
    fn close(&self, conn: PgConnection) -> Closing {
        if conn.driver.has_stopped() {
            return Closing::done();
        }
        let cancel = conn.wire.reply_owed().then(|| {
            let tls = self
                .tls
                .clone()
                .make_tls_connect(&conn.tls_domain)
                .map_err(Into::into);
            send_cancel(
                conn.client.cancel_token(),
                conn.server,
                self.tcp.clone(),
                tls,
                self.cancel_timeout,
            )
        });
        Closing::after(conn.shut_down(cancel))
    }
}
