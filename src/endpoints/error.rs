//! What an endpoint set's checkout reports when it cannot hand out a member,
//! and what it remembers about each endpoint's failures.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::role::Want;
use crate::Role;

/// One failure the set saw on an endpoint: the cause an
/// [`Error::AllDown`] carries for each endpoint, and the
/// `last_failure` of its [`EndpointStatus`](super::EndpointStatus).
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure<E> {
    /// A checkout from the endpoint's pool failed; the pool's error (with
    /// the manager's cause under it) is the `source()`.
    Checkout(Arc<crate::Error<E>>),
    /// The endpoint's heartbeats failed (seen in its pool's counters).
    Heartbeats {
        /// Heartbeats that failed since the last look, none answering.
        failed: u64,
    },
    /// Background connects to the endpoint failed (seen in its pool's counters).
    Connects {
        /// Connects that failed since the last look, none succeeding.
        failed: u64,
    },
    /// A caller returned a member broken or cut off mid-request.
    Use,
}

impl<E> Clone for Failure<E> {
    fn clone(&self) -> Self {
        match self {
            Failure::Checkout(e) => Failure::Checkout(Arc::clone(e)),
            Failure::Heartbeats { failed } => Failure::Heartbeats { failed: *failed },
            Failure::Connects { failed } => Failure::Connects { failed: *failed },
            Failure::Use => Failure::Use,
        }
    }
}

impl<E> Failure<E> {
    /// A stable snake_case name, for log fields.
    pub fn as_str(&self) -> &'static str {
        match self {
            Failure::Checkout(_) => "checkout_failed",
            Failure::Heartbeats { .. } => "heartbeats_failed",
            Failure::Connects { .. } => "connects_failed",
            Failure::Use => "use_failed",
        }
    }
}

impl<E> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Checkout(_) => f.write_str("checkout failed"),
            Failure::Heartbeats { failed } => write!(f, "{failed} heartbeats failed"),
            Failure::Connects { failed } => write!(f, "{failed} background connects failed"),
            Failure::Use => f.write_str("a caller returned a member broken"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Failure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Checkout(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Why [`Endpoints::get`](super::Endpoints::get) gave no member.
///
/// ```
/// use livepool::endpoints::{Error, Failure};
///
/// fn explain(err: &Error<String, std::io::Error>) -> String {
///     match err {
///         Error::AllDown { endpoints } => endpoints
///             .iter()
///             .map(|(key, cause)| match cause {
///                 Some(cause) => format!("{key}: {cause}"),
///                 None => format!("{key}: down"),
///             })
///             .collect::<Vec<_>>()
///             .join("; "),
///         other => other.to_string(),
///     }
/// }
/// let err = Error::AllDown { endpoints: vec![("a".to_string(), Some(Failure::Use))] };
/// assert_eq!(explain(&err), "a: a caller returned a member broken");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<K, E> {
    /// Every endpoint failed repeatedly and none is due for a retry yet:
    /// failing now beats waiting out `wait_timeout`. Carries each
    /// endpoint's latest failure; the `source()` is the first of them.
    AllDown {
        /// Every endpoint, with its latest failure.
        endpoints: Vec<(K, Option<Failure<E>>)>,
    },
    /// Discovery has given no endpoint within `wait_timeout`.
    NoEndpoints {
        /// The configured `wait_timeout`.
        waited: Duration,
    },
    /// No endpoint offered a member with the wanted role within
    /// `wait_timeout` (say, no primary during a failover). Carries each
    /// endpoint's last known role.
    NoRole {
        /// What was asked for.
        want: Want,
        /// The configured `wait_timeout`.
        waited: Duration,
        /// Every endpoint, with the role it was last seen in.
        roles: Vec<(K, Option<Role>)>,
    },
    /// `wait_timeout` ran out with endpoints failing; the `source()` is the
    /// latest failure.
    Timeout {
        /// The configured `wait_timeout`.
        waited: Duration,
        /// The latest failure met, and where.
        last: Option<(K, Failure<E>)>,
    },
    /// The set was closed.
    Closed,
}

impl<K: fmt::Display, E> fmt::Display for Error<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AllDown { endpoints } => {
                write!(f, "every endpoint is down ({} endpoints)", endpoints.len())
            }
            Error::NoEndpoints { waited } => {
                write!(f, "no endpoint discovered within {waited:?}")
            }
            Error::NoRole { want, waited, .. } => {
                write!(f, "no endpoint offered a {want} member within {waited:?}")
            }
            Error::Timeout { waited, last } => {
                write!(f, "no live member within the wait timeout of {waited:?}")?;
                if let Some((key, _)) = last {
                    write!(f, " (last failure on {key})")?;
                }
                Ok(())
            }
            Error::Closed => f.write_str("the endpoint set is closed"),
        }
    }
}

impl<K: fmt::Display + fmt::Debug, E: std::error::Error + 'static> std::error::Error
    for Error<K, E>
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::AllDown { endpoints } => endpoints
                .iter()
                .find_map(|(_, cause)| cause.as_ref())
                .map(|cause| cause as _),
            Error::Timeout {
                last: Some((_, cause)),
                ..
            } => Some(cause),
            _ => None,
        }
    }
}

/// Why an endpoint set could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The per-endpoint pool configuration is invalid; the pool's own error
    /// is the `source()`.
    Pool(crate::BuildError),
    /// The ejection policy is invalid (the text says which setting).
    Ejection(&'static str),
    /// A duration is zero or beyond [`MAX_WAIT`](super::MAX_WAIT).
    Duration(&'static str),
    /// `build` was called outside a tokio runtime.
    NoRuntime,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Pool(_) => f.write_str("invalid per-endpoint pool configuration"),
            BuildError::Ejection(what) => write!(f, "invalid ejection policy: {what}"),
            BuildError::Duration(what) => {
                write!(f, "{what} must be positive and at most one day")
            }
            BuildError::NoRuntime => f.write_str("no tokio runtime to run the endpoint set on"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Pool(e) => Some(e),
            _ => None,
        }
    }
}
