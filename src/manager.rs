//! The [`Manager`] trait: how the pool makes, probes and judges connections.
//!
//! The pool itself knows nothing about TCP or any protocol. Everything it needs
//! to know about a connection it learns through these four methods, and each of
//! them maps onto one layer of liveness from the crate docs:
//!
//! * [`connect`](Manager::connect) makes a member (through [`crate::tcp`] for
//!   the kernel layer: keepalive and `TCP_USER_TIMEOUT`);
//! * [`heartbeat`](Manager::heartbeat) is the in-band probe, sent on the same
//!   connection and answered by the peer's application;
//! * [`condition`](Manager::condition) is the use-time layer: what the
//!   connection has already seen (EOF, an error, unread bytes, a request cut off
//!   half way), read without waiting on I/O.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// What [`Manager::condition`] reports about a connection, without waiting on I/O.
///
/// The pool asks on every checkout (so a member that died while idle is never
/// handed out) and on every return (so a member left mid-request is never
/// reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// Nothing known against it: it may be reused.
    Ready,
    /// It was dropped with a request in flight, or with bytes of an old reply
    /// still unread. The stream is out of step and the next caller would read
    /// someone else's answer, so it is evicted.
    Dirty,
    /// The transport has failed: EOF, reset, an I/O or protocol error.
    Broken,
    /// The server said it is going away (a going-away frame, HTTP/2 GOAWAY,
    /// an admin shutdown) or the member's endpoint is being removed: the
    /// connection still works for what is in flight, but it is not handed out
    /// again. An idle member is closed at once; a borrowed one when returned.
    /// Not a failure: counted as `drained`, not as broken.
    Draining,
}

/// The part a server plays, as a member last saw it (at connect or at its
/// latest heartbeat). Reported by [`Manager::role`]; the endpoint layer
/// routes checkouts by it, and never hands a caller a member whose last known
/// role is not the one it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Accepts writes (Redis `ROLE` master, PostgreSQL not in recovery and
    /// not read-only).
    Primary,
    /// A replica of a primary: reads only (Redis `ROLE` slave, PostgreSQL in
    /// recovery).
    Replica,
    /// Accepts sessions but refuses writes without being a replica
    /// (PostgreSQL `default_transaction_read_only`, a writer being demoted).
    ReadOnly,
}

impl Role {
    /// A stable snake_case name, for log fields and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What closing a connection takes: nothing more than dropping it (the usual
/// case), or I/O that must finish before the server forgets the session,
/// such as PostgreSQL's cancel request for a query cut off half way.
///
/// The pool drives pending work in the background, bounded by its
/// `close_timeout`, and keeps the member's place taken until it ends, so a
/// pool never has more than `max_size` sessions open on the server, even
/// while cancelled queries are still running there.
///
/// ```
/// use livepool::manager::Closing;
/// let nothing_to_do = Closing::done();
/// assert!(nothing_to_do.is_done());
/// let cancel = Closing::after(async { /* send a cancel request, wait for the server */ });
/// assert!(!cancel.is_done());
/// ```
#[must_use = "pending close work does nothing unless the pool runs it"]
pub struct Closing {
    work: Option<Pin<Box<dyn Future<Output = ()> + Send + 'static>>>,
}

impl Closing {
    /// The connection is closed: it was dropped, nothing is left to do.
    pub fn done() -> Self {
        Closing { work: None }
    }

    /// Closing ends when `work` does. The connection (or what must outlive
    /// it, like a cancel token) moves into `work`.
    pub fn after(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Closing {
            work: Some(Box::pin(work)),
        }
    }

    /// Whether nothing is left to do.
    pub fn is_done(&self) -> bool {
        self.work.is_none()
    }

    /// The pending work, if any.
    #[allow(dead_code)] // wired into the pool's close path next
    pub(crate) fn into_work(self) -> Option<Pin<Box<dyn Future<Output = ()> + Send + 'static>>> {
        self.work
    }
}

impl fmt::Debug for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.work.is_some() {
            "Closing::Pending"
        } else {
            "Closing::Done"
        })
    }
}

/// Makes, probes and judges the connections of one pool.
///
/// Implement it with plain `async fn`s; the futures must be `Send` so the pool
/// can drive them from any task.
///
/// ```
/// use livepool::{Condition, Manager};
///
/// /// A toy connection: a counter that reports itself dead past 3 uses.
/// struct Counter(u32);
///
/// struct CounterManager;
///
/// impl Manager for CounterManager {
///     type Connection = Counter;
///     type Error = std::io::Error;
///
///     async fn connect(&self) -> Result<Counter, std::io::Error> {
///         Ok(Counter(0))
///     }
///
///     async fn heartbeat(&self, conn: &mut Counter) -> Result<(), std::io::Error> {
///         if conn.0 > 3 {
///             return Err(std::io::Error::other("worn out"));
///         }
///         Ok(())
///     }
///
///     fn condition(&self, conn: &mut Counter) -> Condition {
///         if conn.0 > 3 { Condition::Broken } else { Condition::Ready }
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled connection.
    type Connection: Send + 'static;
    /// Why a connect or a heartbeat failed. Kept as the `source` of the pool's
    /// own errors, so a caller can see the real cause.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. The pool bounds it with its `connect_timeout`
    /// and may drop the future at any await point (a cancelled checkout), so it
    /// must not leave anything half made behind when dropped.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Proves the connection alive with one round trip on the connection
    /// itself, answered by the peer's application (Redis `PING`, an empty SQL
    /// query, a heartbeat frame). The pool bounds it with its
    /// `heartbeat_timeout`; a future dropped half way leaves the connection in
    /// an unknown state, and the pool evicts it.
    fn heartbeat(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A cheap check with no I/O wait: what the connection already knows about
    /// itself. The default trusts every connection.
    fn condition(&self, conn: &mut Self::Connection) -> Condition {
        let _ = conn;
        Condition::Ready
    }

    /// The check when a caller returns the connection; by default the same
    /// as [`condition`](Manager::condition).
    ///
    /// Override it when part of `condition` costs a system call that only
    /// matters for an idle connection (a peek for unread bytes or a peer's
    /// FIN): a returned connection was in use a moment ago, its own
    /// bookkeeping (a request in flight, an error seen) is what matters, and
    /// the next checkout and the sentinel's idle sweep still run the full
    /// check before anyone gets it again.
    fn condition_on_return(&self, conn: &mut Self::Connection) -> Condition {
        self.condition(conn)
    }

    /// Whether `error` (from [`connect`](Manager::connect)) will happen again
    /// however often the pool retries: authentication failed, the database
    /// does not exist, a TLS certificate was rejected. A checkout that meets
    /// one fails at once with it instead of retrying for all of
    /// `wait_timeout`, and the background refill backs off to its maximum.
    /// The default treats every error as transient.
    fn is_permanent(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// The role the connection's server had when last seen (at connect or
    /// the latest heartbeat); `None` if the manager does not track roles.
    /// A manager that tracks them should fail the heartbeat when the role
    /// changed since connect, so the member is evicted and reconnected.
    fn role(&self, conn: &Self::Connection) -> Option<Role> {
        let _ = conn;
        None
    }

    /// Whether a caller's healthy return counts as proof of life, as a
    /// heartbeat would (the default): it restarts the member's heartbeat
    /// clock, so a member in constant use is never probed. A manager whose
    /// heartbeat learns what use cannot (the server's [`role`](Manager::role))
    /// returns `false`: then every member is probed at least once per
    /// heartbeat interval, by the sentinel while idle or at checkout once
    /// past `validate_after`, however busy it is, so a demoted server's
    /// members are found out in bounded time even under constant load.
    fn use_proves_alive(&self) -> bool {
        true
    }

    /// Closes a connection the pool is done with. The default drops it.
    /// Override it when closing needs I/O (see [`Closing`]).
    fn close(&self, conn: Self::Connection) -> Closing {
        drop(conn);
        Closing::done()
    }

    /// After a failed [`heartbeat`](Manager::heartbeat): whether the server
    /// refused it as too frequent (gRPC's GOAWAY `too_many_pings`, the
    /// reference protocol's going-away frame saying so). The pool then
    /// closes the member as drained (never as a failed probe) and doubles
    /// its heartbeat interval for this endpoint. The default: never.
    fn heartbeat_refused(&self, conn: &Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// The round trip of the last request made on the connection since the
    /// previous call (when it started, how long it took), taken out: what
    /// the adaptive heartbeat timeout learns from busy members, asked when
    /// a caller returns one and adaptation is on. The default: none.
    fn take_round_trip(
        &self,
        conn: &mut Self::Connection,
    ) -> Option<(tokio::time::Instant, std::time::Duration)> {
        let _ = conn;
        None
    }

    /// When the connection last received anything from its peer, as far as
    /// the manager knows without I/O: any inbound byte is proof of life, so
    /// the sentinel does not probe a member heard from within the heartbeat
    /// interval. The default: unknown (the pool counts from the last
    /// heartbeat answered or the last healthy return).
    fn last_heard(&self, conn: &Self::Connection) -> Option<tokio::time::Instant> {
        let _ = conn;
        None
    }
}
