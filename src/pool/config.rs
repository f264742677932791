//! Pool configuration, its defaults and why they are what they are, and the
//! checks that reject a configuration that could not work.

use std::fmt;
use std::time::Duration;

/// Which idle member a checkout takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdleOrder {
    /// The most recently returned first. Hot connections stay hot and the
    /// rest age, so they are the ones heartbeats probe and `idle_timeout` trims:
    /// the pool shrinks to what the load needs.
    #[default]
    Lifo,
    /// The least recently returned first: spreads use evenly over every member.
    Fifo,
}

/// The largest `max_size` accepted: far above any real pool, low enough that a
/// typo (`usize::MAX`) is caught at build time rather than as a connect storm.
pub const MAX_POOL_SIZE: usize = 1 << 20;

/// Everything a pool is built with. Read it back with `Pool::config`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// A name for tracing events and spans, to tell pools apart.
    pub name: String,
    /// Members plus connects in progress never exceed this.
    pub max_size: usize,
    /// The sentinel keeps at least this many members idle (or about to be),
    /// connecting more in the background with backoff, within `max_size`;
    /// `idle_timeout` never trims below it.
    pub min_idle: usize,
    /// How long `get` may take in all, retries included.
    pub wait_timeout: Duration,
    /// Bound on one `Manager::connect`.
    pub connect_timeout: Duration,
    /// A member idle (since its last proof of life) for at least this long is
    /// probed at checkout before it is handed out.
    pub validate_after: Duration,
    /// Bound on one `Manager::heartbeat`.
    pub heartbeat_timeout: Duration,
    /// Background heartbeats: an idle member is probed when its last proof of
    /// life is this old. `None` turns them off (the kernel layer and checkout
    /// validation still apply).
    pub heartbeat_interval: Option<Duration>,
    /// Heartbeats spread over this fraction of the interval (0.0 to 0.5).
    pub heartbeat_jitter: f64,
    /// Consecutive heartbeats answered with an error that evict a member. A
    /// suspect member is never handed out while it is re-probed. A heartbeat
    /// that times out evicts at once whatever this says: its answer may still
    /// arrive, and the stream is out of step.
    pub heartbeat_failures: u32,
    /// Heartbeats in flight at once, per pool.
    pub max_concurrent_probes: usize,
    /// Idle members unused for this long are closed while the pool is above `min_idle`.
    pub idle_timeout: Option<Duration>,
    /// Members older than this are retired when idle or on return, never taken
    /// from a caller. Each member's lifetime is shortened by up to 10% at random
    /// so a pool does not reconnect all at once.
    pub max_lifetime: Option<Duration>,
    /// Which idle member a checkout takes.
    pub idle_order: IdleOrder,
    /// First delay after a failed background connect; doubles up to `refill_backoff_max`.
    pub refill_backoff_min: Duration,
    /// Longest delay between background connect attempts.
    pub refill_backoff_max: Duration,
    /// Bound on the work [`Manager::close`](crate::Manager::close) returns
    /// (a PostgreSQL cancel request, say). The member's place stays taken
    /// until that work ends or this runs out.
    pub close_timeout: Duration,
    /// Adaptive heartbeat timeout (see `adaptive.rs` for the model): `Some`
    /// turns it on with this floor. A probe is still bounded by
    /// `heartbeat_timeout` (the ceiling), and is convicted earlier, once
    /// silent for twice the slowest recent round trip (at least the floor),
    /// only when another round trip on the same endpoint started after it
    /// and answered within that: so a round-trip spike on every member
    /// evicts nobody. `None` (the default): the fixed timeout.
    pub adaptive_heartbeat_floor: Option<Duration>,
    /// A member borrowed longer than this is logged once at WARN with the
    /// call site of the `get()` that borrowed it, and counted in
    /// `Counters::leaks`. `None` (the default) records nothing.
    pub leak_threshold: Option<Duration>,
}

impl Default for Config {
    /// Defaults chosen to work together with [`crate::tcp::TcpOptions`]' defaults:
    /// a heartbeat every 15 s finds a hung peer within about 18 s and keeps
    /// idle-timeout middleboxes (usually minutes) from cutting members;
    /// validation at checkout only kicks in when a member escaped the sentinel
    /// for two intervals.
    fn default() -> Self {
        Config {
            name: "livepool".to_owned(),
            max_size: 10,
            min_idle: 0,
            wait_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            validate_after: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(3),
            heartbeat_interval: Some(Duration::from_secs(15)),
            heartbeat_jitter: 0.1,
            heartbeat_failures: 1,
            max_concurrent_probes: 64,
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            idle_order: IdleOrder::Lifo,
            refill_backoff_min: Duration::from_millis(100),
            refill_backoff_max: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            adaptive_heartbeat_floor: None,
            leak_threshold: None,
        }
    }
}

/// A configuration the pool refuses to build with.
///
/// ```
/// # use livepool::{Manager, Pool, BuildError};
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> std::io::Result<()> { Ok(()) }
/// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = Pool::builder().max_size(4).min_idle(8).build(M).unwrap_err();
/// assert_eq!(err, BuildError::MinIdleAboveMaxSize { min_idle: 8, max_size: 4 });
/// assert_eq!(err.to_string(), "min_idle (8) must not be above max_size (4)");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_size` is zero or above [`MAX_POOL_SIZE`].
    MaxSize(usize),
    /// `min_idle` is above `max_size`.
    MinIdleAboveMaxSize {
        /// The `min_idle` asked for.
        min_idle: usize,
        /// The `max_size` asked for.
        max_size: usize,
    },
    /// A duration that must be positive is zero.
    ZeroDuration(&'static str),
    /// The heartbeat timeout is not shorter than the heartbeat interval, so
    /// probes of one member would overlap.
    HeartbeatTimeoutNotBelowInterval,
    /// `heartbeat_jitter` is outside 0.0..=0.5.
    Jitter(f64),
    /// A count that must be at least one is zero.
    ZeroCount(&'static str),
    /// `refill_backoff_min` is above `refill_backoff_max`.
    Backoff,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::MaxSize(n) => {
                write!(f, "max_size must be between 1 and {MAX_POOL_SIZE}, got {n}")
            }
            BuildError::MinIdleAboveMaxSize { min_idle, max_size } => write!(
                f,
                "min_idle ({min_idle}) must not be above max_size ({max_size})"
            ),
            BuildError::ZeroDuration(name) => write!(f, "{name} must be longer than zero"),
            BuildError::HeartbeatTimeoutNotBelowInterval => {
                f.write_str("heartbeat_timeout must be shorter than heartbeat_interval")
            }
            BuildError::Jitter(j) => {
                write!(f, "heartbeat_jitter must be within 0.0..=0.5, got {j}")
            }
            BuildError::ZeroCount(name) => write!(f, "{name} must be at least 1"),
            BuildError::Backoff => {
                f.write_str("refill_backoff_min must not be above refill_backoff_max")
            }
        }
    }
}

impl std::error::Error for BuildError {}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.max_size == 0 || self.max_size > MAX_POOL_SIZE {
            return Err(BuildError::MaxSize(self.max_size));
        }
        if self.min_idle > self.max_size {
            return Err(BuildError::MinIdleAboveMaxSize {
                min_idle: self.min_idle,
                max_size: self.max_size,
            });
        }
        let positive = [
            ("wait_timeout", Some(self.wait_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("heartbeat_timeout", Some(self.heartbeat_timeout)),
            ("heartbeat_interval", self.heartbeat_interval),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("refill_backoff_min", Some(self.refill_backoff_min)),
            ("close_timeout", Some(self.close_timeout)),
            ("adaptive_heartbeat_floor", self.adaptive_heartbeat_floor),
            ("leak_threshold", self.leak_threshold),
        ];
        for (name, d) in positive {
            if d == Some(Duration::ZERO) {
                return Err(BuildError::ZeroDuration(name));
            }
        }
        if let Some(interval) = self.heartbeat_interval {
            if self.heartbeat_timeout >= interval {
                return Err(BuildError::HeartbeatTimeoutNotBelowInterval);
            }
        }
        if !(0.0..=0.5).contains(&self.heartbeat_jitter) {
            return Err(BuildError::Jitter(self.heartbeat_jitter));
        }
        if self.heartbeat_failures == 0 {
            return Err(BuildError::ZeroCount("heartbeat_failures"));
        }
        if self.max_concurrent_probes == 0 {
            return Err(BuildError::ZeroCount("max_concurrent_probes"));
        }
        if self.refill_backoff_min > self.refill_backoff_max {
            return Err(BuildError::Backoff);
        }
        Ok(())
    }

    /// How often the sentinel wakes: often enough that the coarse clock and
    /// every deadline it enforces (queued checkouts' `wait_timeout` among them)
    /// are late by at most a tenth of the shortest interval, and never busier
    /// than every 10 ms.
    pub(crate) fn sentinel_tick(&self) -> Duration {
        let shortest = [
            Some(self.wait_timeout),
            Some(self.validate_after),
            self.heartbeat_interval,
            self.idle_timeout,
            self.max_lifetime,
        ]
        .into_iter()
        .flatten()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}
