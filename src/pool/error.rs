//! What a caller sees when no live connection can be had.

use std::fmt;

use std::time::Duration;

use super::hooks::{Hook, HookFailure};

/// Why `get` or `try_get` gave no connection.
///
/// The pool retries behind the caller's back (evicting dead members,
/// reconnecting) for as long as `wait_timeout` allows, so an error means no live
/// connection could be had in time. It says what the pool was doing when time
/// ran out and carries the last failure as its `source`.
///
/// ```
/// # use livepool::{Manager, Pool};
/// # struct Refused;
/// # impl Manager for Refused {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> std::io::Result<()> {
/// #         Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"))
/// #     }
/// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use livepool::{Cause, Error, Phase};
///
/// let pool = Pool::builder()
///     .wait_timeout(Duration::from_millis(200))
///     .build(Refused)
///     .unwrap();
/// let err = pool.get().await.unwrap_err();
/// assert!(matches!(err, Error::Timeout { phase: Phase::Connecting, .. }));
/// match err.cause() {
///     Some(Cause::Connect(e)) => {
///         // The server refused every connect for 200 ms; `e` is the manager's own error.
///         assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// `wait_timeout` ran out.
    Timeout {
        /// What the checkout was doing when the deadline passed.
        phase: Phase,
        /// The configured `wait_timeout`.
        waited: Duration,
        /// The last failure seen during this checkout, if any. Boxed: an
        /// error is rare, and a smaller `Error` is a smaller
        /// `Result<Pooled, Error>` for every checkout to move.
        cause: Option<Box<Cause<E>>>,
    },
    /// The pool was closed before or during the checkout.
    Closed,
    /// `try_get` only: every member is in use and the pool is at `max_size`.
    Exhausted,
    /// A connect failed with an error the manager calls permanent
    /// ([`Manager::is_permanent`](crate::Manager::is_permanent): wrong
    /// password, unknown database, certificate rejected). Retrying cannot
    /// help, so the checkout fails at once instead of waiting out
    /// `wait_timeout`. The manager's error is the `source()`.
    Permanent(E),
    /// The pool's background task is not running (it ended with the runtime
    /// it was started on, or the pool was built outside one) and this
    /// checkout is not inside a tokio runtime that could restart it.
    NoBackgroundTask,
    /// [`Pool::ready`](super::Pool::ready) only: fewer members than it
    /// waits for were connected when its timeout ran out. The last failure
    /// (a connect, or an `after_connect` hook) is the `source()`.
    NotReady {
        /// Members connected when the timeout ran out.
        connected: usize,
        /// Members it waited for: `min_idle`, at least one.
        wanted: usize,
        /// The timeout given to `ready`.
        waited: Duration,
        /// The last failure seen, if any (boxed, as for `Timeout`).
        cause: Option<Box<Cause<E>>>,
    },
}

/// What a checkout was doing when its `wait_timeout` ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Queued behind other callers for a member to be returned.
    Waiting,
    /// Opening a new connection.
    Connecting,
    /// Running the in-band heartbeat on a member idle past `validate_after`.
    Probing,
    /// Running a hook (`after_connect` on a new member, `before_acquire` on
    /// an idle one).
    Hook(Hook),
}

/// A failure the pool absorbed while trying to hand out a live connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Cause<E> {
    /// `Manager::connect` returned an error.
    Connect(E),
    /// `Manager::connect` did not finish within `connect_timeout`.
    ConnectTimedOut(Duration),
    /// The heartbeat of a stale member returned an error; the member was evicted.
    Probe(E),
    /// The heartbeat of a stale member did not finish within `heartbeat_timeout`.
    ProbeTimedOut(Duration),
    /// A connect succeeded but the manager's cheap check rejected the new
    /// member at once (a server that accepts and closes, say).
    BrokenAfterConnect,
    /// The manager panicked in `connect` or `heartbeat`; contained.
    ManagerPanicked,
    /// A hook failed (or refused, for `before_acquire`, every member it
    /// was shown); the member was evicted.
    Hook {
        /// Which hook.
        hook: Hook,
        /// How it failed; `None` if it refused.
        failure: Option<HookFailure>,
    },
}

impl<E> Error<E> {
    /// True for [`Error::Timeout`], whatever the phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// The last absorbed failure, if the error carries one.
    pub fn cause(&self) -> Option<&Cause<E>> {
        match self {
            Error::Timeout { cause, .. } | Error::NotReady { cause, .. } => cause.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Waiting => "waiting for a member to be returned",
            Phase::Connecting => "connecting a new member",
            Phase::Probing => "probing an idle member",
            Phase::Hook(Hook::AfterConnect) => "running the after_connect hook",
            Phase::Hook(Hook::BeforeAcquire) => "running the before_acquire hook",
            Phase::Hook(Hook::AfterRelease) => "running the after_release hook",
        })
    }
}

/// Says this level only; the manager's error is `source()`, so a reporter
/// that walks the chain (anyhow, eyre, tracing) prints each cause once.
impl<E: std::error::Error + 'static> fmt::Display for Cause<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Connect(_) => f.write_str("connect failed"),
            Cause::ConnectTimedOut(d) => write!(f, "connect timed out after {d:?}"),
            Cause::Probe(_) => f.write_str("heartbeat failed"),
            Cause::ProbeTimedOut(d) => write!(f, "heartbeat timed out after {d:?}"),
            Cause::BrokenAfterConnect => {
                f.write_str("a new connection failed the manager's check at once")
            }
            Cause::ManagerPanicked => f.write_str("the manager panicked"),
            Cause::Hook { hook, failure } => match failure {
                None => write!(f, "the {hook} hook refused the member"),
                Some(HookFailure::Error(_)) => write!(f, "the {hook} hook failed"),
                Some(HookFailure::TimedOut(d)) => {
                    write!(f, "the {hook} hook timed out after {d:?}")
                }
                Some(HookFailure::Panicked) => write!(f, "the {hook} hook panicked"),
            },
        }
    }
}

impl<E: std::error::Error + 'static> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout {
                phase,
                waited,
                cause,
            } => {
                let _ = cause;
                write!(
                    f,
                    "no live connection within the wait timeout of {waited:?} (timed out while {phase})"
                )
            }
            Error::Closed => f.write_str("the pool is closed"),
            Error::Exhausted => f.write_str("every member is in use and the pool is at max_size"),
            Error::Permanent(_) => f.write_str("connect failed in a way retrying cannot fix"),
            Error::NoBackgroundTask => f.write_str(
                "the pool's background task is not running, and no tokio runtime is here to restart it",
            ),
            Error::NotReady {
                connected,
                wanted,
                waited,
                cause,
            } => {
                let _ = cause;
                write!(
                    f,
                    "{connected} of {wanted} members connected within {waited:?}"
                )
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Cause<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Cause::Connect(e) | Cause::Probe(e) => Some(e),
            Cause::Hook {
                failure: Some(HookFailure::Error(e)),
                ..
            } => Some(&**e),
            _ => None,
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Timeout { cause: Some(c), .. } | Error::NotReady { cause: Some(c), .. } => {
                Some(c)
            }
            Error::Permanent(e) => Some(e),
            _ => None,
        }
    }
}
