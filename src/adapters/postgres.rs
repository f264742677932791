//! A [`Manager`] for PostgreSQL over `tokio-postgres` (feature `postgres`).
//!
//! The socket is opened by [`crate::tcp::connect`] (keepalive,
//! `TCP_USER_TIMEOUT`, connect timeout) and handed to
//! [`Config::connect_raw`], with TLS through any
//! [`MakeTlsConnect`] (default [`NoTls`]). The `Connection` future that
//! drives the socket runs in a task of its own that ends with the member. The
//! heartbeat is an empty simple query: one round trip answered by the backend
//! process, with no parsing, planning or locks.
//!
//! Borrowed members are [`PgConnection`]s. Their query methods mirror
//! [`Client`]'s and remember a query that was cut off (its future dropped
//! before the reply came), so the pool evicts that member: the statement may
//! still be running on the server, holding locks or a transaction open.
//!
//! ```no_run
//! use livepool::Pool;
//! use livepool::adapters::postgres::PgManager;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // LIVEPOOL_PG_ADDR or 127.0.0.1:5432; user postgres, database test.
//! let pool = Pool::builder().max_size(8).build(PgManager::from_env()?)?;
//! let mut conn = pool.get().await?;
//! let row = conn.query_one("SELECT 1 + $1::int4", &[&41i32]).await?;
//! assert_eq!(row.get::<_, i32>(0), 42);
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{
    Client, Config, NoTls, Row, SimpleQueryMessage, Statement, ToStatement, Transaction,
};

use super::driver::{Driver, Usage, open_socket};
use super::env::{EnvAddrError, addr_from_env};
use crate::tcp::{ConnectError, TcpOptions};
use crate::{Condition, Manager};

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

/// Makes, probes and judges connections to one PostgreSQL server.
///
/// `T` makes the TLS session; [`NoTls`] by default, any
/// `tokio-postgres` TLS connector (e.g. `postgres-native-tls`,
/// `tokio-postgres-rustls`) through [`tls`](Self::tls).
///
/// ```no_run
/// use livepool::Pool;
/// use livepool::adapters::postgres::PgManager;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("orders");
/// let manager = PgManager::new("127.0.0.1:5432".parse()?, config)
///     .application_name("checkout-service");
/// let pool = Pool::builder().max_size(16).build(manager)?;
/// # drop(pool); Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgManager<T = NoTls> {
    addr: SocketAddr,
    tcp: TcpOptions,
    config: Config,
    tls: T,
    tls_domain: String,
}

impl<T> fmt::Debug for PgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Config's own Debug redacts the password.
        f.debug_struct("PgManager")
            .field("addr", &self.addr)
            .field("tcp", &self.tcp)
            .field("config", &self.config)
            .field("tls_domain", &self.tls_domain)
            .finish_non_exhaustive()
    }
}

impl PgManager<NoTls> {
    /// A manager for the server at `addr`, logging in with `config` (user,
    /// password, database, options, application name; its host and port
    /// settings are ignored), without TLS, with the default [`TcpOptions`].
    pub fn new(addr: SocketAddr, config: Config) -> Self {
        PgManager {
            addr,
            tcp: TcpOptions::default(),
            config,
            tls: NoTls,
            tls_domain: addr.ip().to_string(),
        }
    }

    /// A manager for the server named by `LIVEPOOL_PG_ADDR` (or
    /// `127.0.0.1:5432`), as user `postgres` on database `test`, no password,
    /// no TLS: the way this crate's tests and examples find their server.
    pub fn from_env() -> Result<Self, EnvAddrError> {
        let addr = addr_from_env(ADDR_VAR, DEFAULT_ADDR)?;
        let mut config = Config::new();
        config.user(DEFAULT_USER).dbname(DEFAULT_DBNAME);
        Ok(Self::new(addr, config))
    }
}

impl<T> PgManager<T> {
    /// Socket options for every connection (keepalive, `TCP_USER_TIMEOUT`,
    /// connect timeout).
    pub fn tcp_options(mut self, tcp: TcpOptions) -> Self {
        self.tcp = tcp;
        self
    }

    /// Sets `application_name`, so `pg_stat_activity` on the server shows
    /// which pool each session belongs to.
    pub fn application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// Negotiates TLS with `tls`, checking the server's certificate against
    /// `domain` (the address's IP until this is called).
    pub fn tls<U>(self, tls: U, domain: impl Into<String>) -> PgManager<U> {
        PgManager {
            addr: self.addr,
            tcp: self.tcp,
            config: self.config,
            tls,
            tls_domain: domain.into(),
        }
    }

    /// The server this manager connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The login settings sent in every handshake.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl<T> Manager for PgManager<T>
where
    T: MakeTlsConnect<TcpStream> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<TcpStream>>::Future: Send,
{
    type Connection = PgConnection;
    type Error = PgManagerError;

    async fn connect(&self) -> Result<PgConnection, PgManagerError> {
        let addr = self.addr;
        let (stream, local_addr) = open_socket(addr, &self.tcp)
            .await
            .map_err(PgManagerError::Connect)?;
        let tls = self
            .tls
            .clone()
            .make_tls_connect(&self.tls_domain)
            .map_err(|e| PgManagerError::Tls {
                addr,
                source: e.into(),
            })?;
        let (client, connection) = self
            .config
            .connect_raw(stream, tls)
            .await
            .map_err(|source| PgManagerError::Handshake { addr, source })?;
        let driver = Driver::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "postgres connection ended");
            }
        });
        Ok(PgConnection {
            client,
            driver,
            usage: Usage::default(),
            local_addr,
        })
    }

    async fn heartbeat(&self, conn: &mut PgConnection) -> Result<(), PgManagerError> {
        conn.simple_query("")
            .await
            .map(drop)
            .map_err(PgManagerError::Heartbeat)
    }

    fn condition(&self, conn: &mut PgConnection) -> Condition {
        conn.condition()
    }
}

/// A pooled PostgreSQL session: the `tokio-postgres` [`Client`], the task
/// driving its socket, and what its own queries have shown.
///
/// The query methods are [`Client`]'s, taking `&mut self` so they can note a
/// query in flight. [`client`](Self::client) gives the plain client for
/// anything else; queries made through it are not tracked.
pub struct PgConnection {
    client: Client,
    driver: Driver,
    usage: Usage,
    local_addr: SocketAddr,
}

/// Errors after which the session cannot be trusted: the socket is gone, or
/// the server ended the session (SQLSTATE class 08 connection exception,
/// 57P operator intervention such as `pg_terminate_backend`).
fn is_fatal(e: &tokio_postgres::Error) -> bool {
    let by_server = e.code().is_some_and(|code| {
        let code = code.code();
        code.starts_with("08") || code.starts_with("57P")
    });
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    e.is_closed() || by_server || io
}

/// Methods of [`Client`] that run one statement with parameters, tracked.
macro_rules! tracked_statements {
    ($($(#[$doc:meta])* $name:ident -> $output:ty;)*) => {$(
        $(#[$doc])*
        pub async fn $name<S>(
            &mut self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<$output, tokio_postgres::Error>
        where
            S: ?Sized + ToStatement,
        {
            let query = self.client.$name(statement, params);
            self.usage.track(query, is_fatal).await
        }
    )*};
}

/// Methods of [`Client`] that send a query string, tracked.
macro_rules! tracked_strings {
    ($($(#[$doc:meta])* $name:ident -> $output:ty;)*) => {$(
        $(#[$doc])*
        pub async fn $name(&mut self, query: &str) -> Result<$output, tokio_postgres::Error> {
            let query = self.client.$name(query);
            self.usage.track(query, is_fatal).await
        }
    )*};
}

impl PgConnection {
    tracked_statements! {
        /// [`Client::query`], tracked.
        query -> Vec<Row>;
        /// [`Client::query_one`], tracked.
        query_one -> Row;
        /// [`Client::query_opt`], tracked.
        query_opt -> Option<Row>;
        /// [`Client::execute`], tracked.
        execute -> u64;
    }

    tracked_strings! {
        /// [`Client::prepare`], tracked.
        prepare -> Statement;
        /// [`Client::simple_query`], tracked.
        simple_query -> Vec<SimpleQueryMessage>;
        /// [`Client::batch_execute`], tracked.
        batch_execute -> ();
    }

    /// [`Client::transaction`]: `BEGIN` is tracked. A [`Transaction`]
    /// dropped without commit sends `ROLLBACK` first, so the session comes
    /// back to the pool in step whichever way the transaction ended.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, tokio_postgres::Error> {
        let PgConnection { client, usage, .. } = self;
        usage.track(client.transaction(), is_fatal).await
    }

    /// The plain client, for what the methods above do not cover (`copy_in`,
    /// `query_raw`, ...). Queries made through it are not tracked: a caller
    /// that drops one half way should call
    /// [`Pooled::mark_broken`](crate::Pooled::mark_broken).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The local end of the socket, to find this session in
    /// `pg_stat_activity` (`client_port`) or in a proxy's connection list.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True once the session is over: the client is closed or the task
    /// driving the socket has ended.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.driver.has_stopped()
    }

    /// What the pool checks on checkout and return, without I/O: `Broken`
    /// if the session is over or a query failed with a connection error,
    /// `Dirty` if a query was cut off before its reply, else `Ready`.
    pub fn condition(&self) -> Condition {
        if self.client.is_closed() {
            return Condition::Broken;
        }
        self.usage.condition(&self.driver)
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("local_addr", &self.local_addr)
            .field("condition", &self.condition())
            .finish_non_exhaustive()
    }
}

/// Why a PostgreSQL connect or heartbeat failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgManagerError {
    /// The TCP connection could not be opened.
    Connect(ConnectError),
    /// The TLS connector could not be set up for the server's name.
    Tls {
        /// The server.
        addr: SocketAddr,
        /// What the TLS library said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server refused the startup: authentication, an unknown database
    /// or user, too many connections, TLS negotiation.
    Handshake {
        /// The server.
        addr: SocketAddr,
        /// What `tokio-postgres` said.
        source: tokio_postgres::Error,
    },
    /// The empty query did not come back: the session is closed or the
    /// server is shutting down.
    Heartbeat(tokio_postgres::Error),
}

impl fmt::Display for PgManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgManagerError::Connect(e) => write!(f, "could not connect to PostgreSQL: {e}"),
            PgManagerError::Tls { addr, source } => {
                write!(f, "could not set up TLS for PostgreSQL at {addr}: {source}")
            }
            PgManagerError::Handshake { addr, source } => {
                write!(f, "PostgreSQL at {addr} refused the session: {source}")
            }
            PgManagerError::Heartbeat(e) => {
                write!(f, "PostgreSQL heartbeat (empty query) failed: {e}")
            }
        }
    }
}

impl std::error::Error for PgManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgManagerError::Connect(e) => Some(e),
            PgManagerError::Tls { source, .. } => Some(&**source),
            PgManagerError::Handshake { source, .. } => Some(source),
            PgManagerError::Heartbeat(e) => Some(e),
        }
    }
}
