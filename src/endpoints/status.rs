//! `Endpoints::status()`: each endpoint's pool status, load, role and
//! health, and the whole set's counts.

use std::time::Duration;

use super::error::Failure;
use crate::{Role, Status};

/// One endpoint as the set sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointStatus<K, E> {
    /// The discovery key.
    pub key: K,
    /// The endpoint's own pool.
    pub pool: Status,
    /// Checkouts routed here and not yet returned (waiting ones included).
    pub pending: usize,
    /// The peak-EWMA round-trip estimate.
    pub rtt: Duration,
    /// The role its members last reported.
    pub role: Option<Role>,
    /// Failures since the last success.
    pub failures_in_row: u32,
    /// Down: over the failure threshold and not yet due for a retry.
    pub down: bool,
    /// Ejected (out of rotation), and for how much longer.
    pub ejected_for: Option<Duration>,
    /// The server said it is going away.
    pub going_away: bool,
    /// Removed by discovery: draining, members closed as they come back.
    pub removed: bool,
    /// The latest failure seen.
    pub last_failure: Option<Failure<E>>,
}

/// The whole set.
///
/// ```
/// # use livepool::endpoints::SetStatus;
/// fn export(status: &SetStatus<String, std::io::Error>) -> Vec<String> {
///     let mut lines = vec![format!("endpoints_ejected {}", status.ejected)];
///     for e in &status.endpoints {
///         lines.push(format!("endpoint_in_use{{endpoint=\"{}\"}} {}", e.key, e.pool.in_use));
///     }
///     lines
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SetStatus<K, E> {
    /// Every endpoint, live ones first, then removed ones still draining.
    pub endpoints: Vec<EndpointStatus<K, E>>,
    /// Endpoints in discovery.
    pub live: usize,
    /// Live endpoints that are down.
    pub down: usize,
    /// Live endpoints out of rotation.
    pub ejected: usize,
    /// Removed endpoints whose members are not all closed yet.
    pub draining: usize,
}
