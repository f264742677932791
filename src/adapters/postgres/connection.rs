//! The pooled PostgreSQL session, and how it is closed without outliving
//! its place in the pool.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_postgres::tls::TlsConnect;
use tokio_postgres::{CancelToken, Client, Transaction};

use super::wire::Wire;
use crate::adapters::driver::Driver;
use crate::tcp::{self, TcpOptions};
use crate::{Condition, Role};

/// How long a closed member's session may take to end after its client is
/// dropped (the cancelled query's error read, `Terminate` sent). The pool's
/// `close_timeout` usually cuts the wait first; this bounds a direct caller
/// of [`Manager::close`](crate::Manager::close).
const SESSION_END_WAIT: Duration = Duration::from_secs(10);

/// A pooled PostgreSQL session: the `tokio-postgres` [`Client`], the task
/// driving its socket, and what its traffic has shown.
///
/// It derefs to [`Client`], and `&Client` is a
/// [`GenericClient`](tokio_postgres::GenericClient), so code written against
/// either takes a pooled session as it is (`&**conn` or
/// [`client`](Self::client)). `GenericClient` is sealed in `tokio-postgres`
/// (only its `Client` and `Transaction` may implement it), which is why the
/// session derefs instead of implementing it.
///
/// Every query counts, whichever way it was sent (`Client` methods,
/// `GenericClient`, a [`Transaction`], `copy_in`, `query_raw`): the session
/// watches its own protocol traffic (every `Query` and `Sync` is answered by
/// one `ReadyForQuery`), so one returned while a reply is still owed, a
/// query future dropped half way, is [`Condition::Dirty`]: the pool evicts
/// it, and closing it sends PostgreSQL's cancel request so the statement
/// stops on the server too.
///
/// ```no_run
/// use livepool::Pool;
/// use livepool::adapters::postgres::PgManager;
/// use tokio_postgres::GenericClient;
///
/// async fn count_users(db: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
///     Ok(db.query_one("SELECT count(*) FROM pg_user", &[]).await?.get(0))
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder().build(PgManager::from_conn_str("host=localhost user=postgres")?)?;
/// let conn = pool.get().await?;
/// println!("{} users", count_users(&**conn).await?);
/// # Ok(()) }
/// ```
pub struct PgConnection {
    pub(crate) client: Client,
    pub(crate) driver: Driver,
    pub(crate) wire: Arc<Wire>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) server: SocketAddr,
    /// The name TLS checked, reused for the cancel request's own session.
    pub(crate) tls_domain: String,
    pub(crate) role: Option<Role>,
}

impl Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl PgConnection {
    /// [`Client::transaction`] (which needs `&mut Client`). A
    /// [`Transaction`] dropped without commit sends `ROLLBACK` without
    /// waiting for it; returned before that reply came, the session counts
    /// as dirty and is replaced.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, tokio_postgres::Error> {
        self.client.transaction().await
    }

    /// The client; the same as dereferencing the session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The local end of the socket, to find this session in
    /// `pg_stat_activity` (`client_port`) or in a proxy's connection list.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's address this session is connected to (one of the
    /// config's hosts, as resolved at connect).
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// The server's role at connect or at the latest heartbeat, when the
    /// manager tracks roles ([`PgManager::track_roles`](super::PgManager::track_roles)).
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// True once the session is over: the client is closed or the task
    /// driving the socket has ended.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.driver.has_stopped()
    }

    /// What the pool checks on checkout and return, without I/O:
    /// `Broken` if the session is over (the socket closed, or the server
    /// sent a fatal error such as `57P01` admin shutdown, even before it
    /// closes the socket), `Dirty` if a request's reply is still owed, else
    /// `Ready`.
    pub fn condition(&self) -> Condition {
        if self.is_closed() || self.wire.ended().is_some() {
            Condition::Broken
        } else if self.wire.reply_owed() {
            Condition::Dirty
        } else {
            Condition::Ready
        }
    }

    /// Closes the session and ends once the server has it no more: first
    /// `cancel` (if a query was cut off), then the client is dropped, so
    /// the connection task reads what is left, sends `Terminate` and ends.
    pub(crate) async fn shut_down(self, cancel: Option<impl Future<Output = ()>>) {
        if let Some(cancel) = cancel {
            cancel.await;
        }
        let PgConnection {
            client,
            driver,
            server,
            ..
        } = self;
        drop(client);
        if !driver.stopped_within(SESSION_END_WAIT).await {
            tracing::warn!(
                server = %server,
                reason = "session_did_not_end",
                "postgres session still open {SESSION_END_WAIT:?} after close; dropping its socket"
            );
        }
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("server", &self.server)
            .field("local_addr", &self.local_addr)
            .field("condition", &self.condition())
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why a cancel request did not go out.
#[derive(Debug)]
enum CancelError {
    Tls(Box<dyn std::error::Error + Send + Sync>),
    Connect(tcp::ConnectError),
    Request(tokio_postgres::Error),
}

impl fmt::Display for CancelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelError::Tls(_) => "could not set up TLS for the cancel request",
            CancelError::Connect(_) => "could not connect to send the cancel request",
            CancelError::Request(_) => "the cancel request failed",
        })
    }
}

impl std::error::Error for CancelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CancelError::Tls(e) => Some(crate::chain::cause_once(&**e)),
            CancelError::Connect(e) => Some(e),
            CancelError::Request(e) => Some(crate::chain::cause_once(e)),
        }
    }
}

/// PostgreSQL's cancel request for the query running on `token`'s session:
/// a connection of its own to `server` (made by [`crate::tcp`], with TLS
/// from `tls` as the session had), bounded by `within`. The server says
/// nothing back; the cancelled query ends with SQLSTATE 57014 on the
/// session itself.
pub(crate) async fn send_cancel<C>(
    token: CancelToken,
    server: SocketAddr,
    tcp: TcpOptions,
    tls: Result<C, Box<dyn std::error::Error + Send + Sync>>,
    within: Duration,
) where
    C: TlsConnect<TcpStream>,
{
    let request = async {
        let tls = tls.map_err(CancelError::Tls)?;
        let stream = tcp::connect(server, &tcp)
            .await
            .map_err(CancelError::Connect)?;
        token
            .cancel_query_raw(stream, tls)
            .await
            .map_err(CancelError::Request)
    };
    match tokio::time::timeout(within, request).await {
        Ok(Ok(())) => {
            tracing::debug!(server = %server, reason = "cut_off", "postgres cancel request sent")
        }
        Ok(Err(error)) => tracing::warn!(
            server = %server,
            reason = "cut_off",
            error = &error as &dyn std::error::Error,
            "postgres cancel request not sent; the query runs on until the session ends"
        ),
        Err(_elapsed) => tracing::warn!(
            server = %server,
            reason = "cut_off",
            "postgres cancel request not sent within {within:?}"
        ),
    }
}
