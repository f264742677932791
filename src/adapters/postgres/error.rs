//! Why a PostgreSQL connect or heartbeat failed, and which failures no retry
//! can fix.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;

use tokio_postgres::error::SqlState;

use crate::Role;
use crate::tcp::ConnectError;

/// Why a PostgreSQL connect or heartbeat failed.
///
/// Each variant's `Display` says what failed at its own level; the cause
/// (the socket error, the server's message) is its
/// [`source`](std::error::Error::source), so a reporter walking the chain
/// prints each part once.
///
/// ```
/// use livepool::adapters::postgres::PgManagerError;
/// use livepool::Role;
///
/// let e = PgManagerError::RoleChanged { was: Role::Primary, now: Role::ReadOnly };
/// assert_eq!(e.to_string(), "the PostgreSQL server's role changed from primary to read_only");
/// assert!(!e.is_permanent());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PgManagerError {
    /// The TCP connection could not be opened (the name did not resolve,
    /// or no address answered).
    Connect(ConnectError),
    /// The socket connected but its addresses could not be read.
    Socket {
        /// The host connected to.
        host: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS connector could not be set up for the server's name.
    Tls {
        /// The name checked against the certificate.
        host: String,
        /// What the TLS library said.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The server refused the startup: authentication, an unknown database
    /// or role, too many connections, TLS negotiation.
    Handshake {
        /// The server's address.
        addr: SocketAddr,
        /// What `tokio-postgres` said.
        source: tokio_postgres::Error,
    },
    /// The config names several hosts and each failed, in the order tried.
    /// (A permanent failure, such as a refused password, ends the walk and
    /// is returned by itself, as libpq stops at a failed authentication.)
    EveryHost {
        /// One failure per host tried.
        failures: Vec<PgManagerError>,
    },
    /// The query reading the server's role (`pg_is_in_recovery()`,
    /// `transaction_read_only`) failed at connect.
    RoleQuery(tokio_postgres::Error),
    /// The role query answered something other than one row of two values.
    UnexpectedRoleAnswer,
    /// The heartbeat (an empty query, or the role query when roles are
    /// tracked) did not come back: the session is closed or the server is
    /// shutting down.
    Heartbeat(tokio_postgres::Error),
    /// The heartbeat found the server in another role than at connect
    /// (a failover, a demotion to read-only): the member is evicted.
    RoleChanged {
        /// The role at connect.
        was: Role,
        /// The role now.
        now: Role,
    },
}

impl PgManagerError {
    /// Whether retrying cannot help: the server refused the password
    /// (SQLSTATE `28P01`) or the role (`28000`), the database does not
    /// exist (`3D000`), the TLS connector refused the server's name, or the
    /// TLS handshake failed over the server's certificate.
    ///
    /// The last one is read from the error text (`tokio-postgres` has no
    /// typed TLS error): a TLS handshake error whose causes mention a
    /// certificate, as rustls ("invalid peer certificate"), OpenSSL and
    /// native-tls ("certificate verify failed") all say.
    pub fn is_permanent(&self) -> bool {
        match self {
            PgManagerError::Tls { .. } => true,
            PgManagerError::Handshake { source, .. } => {
                let refused = source.code().is_some_and(|code| {
                    *code == SqlState::INVALID_PASSWORD
                        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                        || *code == SqlState::INVALID_CATALOG_NAME
                });
                refused || certificate_rejected(source)
            }
            _ => false,
        }
    }
}

/// A TLS handshake error whose chain mentions a certificate.
fn certificate_rejected(error: &tokio_postgres::Error) -> bool {
    if error.to_string() != "error performing TLS handshake" {
        return false;
    }
    let mut cause = error.source();
    while let Some(e) = cause {
        if e.to_string().to_ascii_lowercase().contains("certificate") {
            return true;
        }
        cause = e.source();
    }
    false
}

impl fmt::Display for PgManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgManagerError::Connect(_) => f.write_str("could not reach PostgreSQL"),
            PgManagerError::Socket { host, .. } => {
                write!(
                    f,
                    "could not read the socket addresses for PostgreSQL host {host}"
                )
            }
            PgManagerError::Tls { host, .. } => {
                write!(f, "could not set up TLS for PostgreSQL host {host}")
            }
            PgManagerError::Handshake { addr, .. } => {
                write!(f, "PostgreSQL at {addr} refused the session")
            }
            PgManagerError::EveryHost { failures } => {
                write!(
                    f,
                    "each of the {} PostgreSQL hosts failed (",
                    failures.len()
                )?;
                for (i, failure) in failures.iter().enumerate() {
                    // Siblings, not one chain: each host's causes are
                    // written here, since `source` can return only one.
                    f.write_str(if i == 0 { "" } else { "; " })?;
                    write!(f, "{failure}")?;
                    let mut cause = failure.source();
                    while let Some(e) = cause {
                        write!(f, ": {e}")?;
                        cause = e.source();
                    }
                }
                f.write_str(")")
            }
            PgManagerError::RoleQuery(_) => {
                f.write_str("could not read the PostgreSQL server's role")
            }
            PgManagerError::UnexpectedRoleAnswer => f.write_str(
                "the PostgreSQL role query did not answer one row of \
                 (pg_is_in_recovery, transaction_read_only)",
            ),
            PgManagerError::Heartbeat(_) => f.write_str("PostgreSQL heartbeat failed"),
            PgManagerError::RoleChanged { was, now } => {
                write!(
                    f,
                    "the PostgreSQL server's role changed from {was} to {now}"
                )
            }
        }
    }
}

impl StdError for PgManagerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PgManagerError::Connect(e) => Some(e),
            PgManagerError::Socket { source, .. } => Some(source),
            PgManagerError::Tls { source, .. } => Some(crate::chain::cause_once(&**source)),
            // `tokio_postgres::Error` writes its cause into its own text
            // ("db error: FATAL: ...") and returns it as its source too.
            PgManagerError::Handshake { source, .. }
            | PgManagerError::RoleQuery(source)
            | PgManagerError::Heartbeat(source) => Some(crate::chain::cause_once(source)),
            PgManagerError::EveryHost { .. }
            | PgManagerError::UnexpectedRoleAnswer
            | PgManagerError::RoleChanged { .. } => None,
        }
    }
}
