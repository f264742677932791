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

use std::future::Future;

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
}
