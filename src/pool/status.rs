//! `Pool::status()`: a snapshot of who holds how many members, and the counters
//! a dashboard charts (rates come from differencing two snapshots).

use std::fmt;
use std::time::Duration;

/// Why a member left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictReason {
    /// A heartbeat returned an error (background, or at checkout).
    ProbeFailed,
    /// A heartbeat did not answer within `heartbeat_timeout`.
    ProbeTimedOut,
    /// The sentinel's cheap check found it dead while idle: EOF, reset, a
    /// kernel keepalive timeout, or bytes nobody asked for. No traffic of ours
    /// was needed to notice.
    BrokenWhileIdle,
    /// The cheap check at checkout found it broken or dirty.
    BrokenOnCheckout,
    /// Returned broken: marked by the caller, or the cheap check said so.
    BrokenOnReturn,
    /// Returned with a request in flight or unread bytes: the stream is out of step.
    Dirty,
    /// The caller panicked while holding it; its state is unknown.
    CallerPanicked,
    /// A checkout was cancelled while it was probing this member, so the
    /// probe's outcome, and the stream's state, are unknown.
    ProbeCancelled,
    /// Idle longer than `idle_timeout` while the pool was above `min_idle`.
    IdleTimeout,
    /// Older than `max_lifetime` (with jitter).
    MaxLifetime,
    /// The caller took it out of the pool with `Pooled::detach`.
    Detached,
    /// The pool was closed.
    Closed,
    /// The server said it is going away, or the endpoint is being removed
    /// ([`Condition::Draining`](crate::Condition::Draining)).
    Drained,
    /// Made under a sentinel that has since ended (its runtime shut down):
    /// its I/O may be tied to a reactor that is gone, so it is replaced
    /// rather than handed out.
    RuntimeGone,
    /// A hook (`after_connect`, `before_acquire`, `after_release`) returned
    /// an error, timed out, panicked, or was cut off by a cancelled checkout.
    HookFailed,
    /// `before_acquire` or `after_release` refused it.
    HookRefused,
    /// Above a `max_size` lowered by `Pool::resize`: closed when idle or
    /// when returned.
    Resized,
}

impl EvictReason {
    /// Number of reasons; the length of [`Evictions`].
    pub const COUNT: usize = 17;

    /// Every reason, in a stable order.
    pub const ALL: [EvictReason; Self::COUNT] = [
        EvictReason::ProbeFailed,
        EvictReason::ProbeTimedOut,
        EvictReason::BrokenWhileIdle,
        EvictReason::BrokenOnCheckout,
        EvictReason::BrokenOnReturn,
        EvictReason::Dirty,
        EvictReason::CallerPanicked,
        EvictReason::ProbeCancelled,
        EvictReason::IdleTimeout,
        EvictReason::MaxLifetime,
        EvictReason::Detached,
        EvictReason::Closed,
        EvictReason::Drained,
        EvictReason::RuntimeGone,
        EvictReason::HookFailed,
        EvictReason::HookRefused,
        EvictReason::Resized,
    ];

    /// A stable snake_case name, for metrics labels and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::ProbeFailed => "probe_failed",
            EvictReason::ProbeTimedOut => "probe_timed_out",
            EvictReason::BrokenWhileIdle => "broken_while_idle",
            EvictReason::BrokenOnCheckout => "broken_on_checkout",
            EvictReason::BrokenOnReturn => "broken_on_return",
            EvictReason::Dirty => "dirty",
            EvictReason::CallerPanicked => "caller_panicked",
            EvictReason::ProbeCancelled => "probe_cancelled",
            EvictReason::IdleTimeout => "idle_timeout",
            EvictReason::MaxLifetime => "max_lifetime",
            EvictReason::Detached => "detached",
            EvictReason::Closed => "closed",
            EvictReason::Drained => "drained",
            EvictReason::RuntimeGone => "runtime_gone",
            EvictReason::HookFailed => "hook_failed",
            EvictReason::HookRefused => "hook_refused",
            EvictReason::Resized => "resized",
        }
    }

    /// True when the member left because something was wrong with it, as
    /// opposed to routine retirement (idle timeout, lifetime, detach, close).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            EvictReason::IdleTimeout
                | EvictReason::MaxLifetime
                | EvictReason::Detached
                | EvictReason::Closed
                | EvictReason::Drained
                | EvictReason::RuntimeGone
                | EvictReason::HookRefused
                | EvictReason::Resized
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Members evicted, counted by [`EvictReason`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions([u64; EvictReason::COUNT]);

impl Evictions {
    /// How many members left for `reason`.
    pub fn get(&self, reason: EvictReason) -> u64 {
        self.0[reason.index()]
    }

    /// All evictions, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (EvictReason, u64)> + '_ {
        EvictReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    pub(crate) fn add(&mut self, reason: EvictReason) {
        self.0[reason.index()] += 1;
    }
}

impl fmt::Debug for Evictions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.as_str(), n)),
            )
            .finish()
    }
}

/// Round-trip times of heartbeats that answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeRtt {
    /// Heartbeats measured.
    pub count: u64,
    /// Fastest answer.
    pub min: Duration,
    /// Slowest answer.
    pub max: Duration,
    /// Sum of all answers; `mean()` divides it.
    pub total: Duration,
}

impl ProbeRtt {
    /// The mean round trip, or zero before the first heartbeat.
    pub fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => self.total / (n.min(u32::MAX as u64) as u32),
        }
    }

    pub(crate) fn record(&mut self, rtt: Duration) {
        if self.count == 0 || rtt < self.min {
            self.min = rtt;
        }
        self.max = self.max.max(rtt);
        self.total = self.total.saturating_add(rtt);
        self.count += 1;
    }
}

/// Monotonic counters since the pool was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Connections opened.
    pub created: u64,
    /// Connect attempts that failed or timed out.
    pub connect_failures: u64,
    /// Members handed to callers.
    pub checkouts: u64,
    /// Checkouts that had to queue behind other callers.
    pub waits: u64,
    /// Time those checkouts spent queued, in all (bb8's `get_wait_time`):
    /// divide by `waits` for the mean. Measured only on checkouts that
    /// queued, so a checkout that finds an idle member reads no clock; and
    /// on the system's monotonic clock, not tokio's, so under a paused test
    /// clock it adds up real time, not virtual time.
    pub wait_time: Duration,
    /// Checkouts that gave up with `Error::Timeout`.
    pub wait_timeouts: u64,
    /// Heartbeats that answered in time (background and at checkout).
    pub probes_ok: u64,
    /// Heartbeats that failed or timed out.
    pub probes_failed: u64,
    /// Members that left the pool, by reason.
    pub evicted: Evictions,
    /// Heartbeat round trips.
    pub probe_rtt: ProbeRtt,
    /// Times the sentinel was found ended (its runtime shut down, or it
    /// panicked) and restarted by a checkout.
    pub sentinel_restarts: u64,
    /// Times the pool found the process itself had stalled (a timer far
    /// late, or the machine suspended): nobody was convicted for that time,
    /// and every idle member was re-validated before it was handed out.
    pub stalls: u64,
    /// Heartbeats answered, but later than the adaptive threshold: kept,
    /// not evicted (there was no faster round trip to witness against them).
    pub probes_late: u64,
    /// Heartbeats the server refused as too frequent (`too_many_pings`):
    /// the member was closed as drained and the interval doubled.
    pub heartbeats_refused: u64,
    /// Members borrowed longer than `leak_threshold` (each counted once).
    pub leaks: u64,
}

/// A snapshot of the pool, taken under its lock, so the counts add up:
/// `size == idle + in_use + probing + connecting + closing + returning`.
///
/// Export it as gauges and counters; a dashboard charts rates from two
/// snapshots:
///
/// ```
/// # use livepool::{Manager, Pool};
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> std::io::Result<()> { Ok(()) }
/// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder().name("orders-db").build(M).unwrap();
/// drop(pool.get().await.unwrap());
///
/// let status = pool.status();
/// assert_eq!(
///     status.size,
///     status.idle + status.in_use + status.probing + status.connecting + status.closing
///         + status.returning
/// );
/// let mut lines = vec![format!("pool_members{{state=\"idle\"}} {}", status.idle)];
/// for (reason, count) in status.counters.evicted.iter() {
///     lines.push(format!("pool_evictions_total{{reason=\"{reason}\"}} {count}"));
/// }
/// assert!(lines.iter().any(|l| l.contains("reason=\"probe_timed_out\"")));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The `max_size` in force: the configured one, or the last
    /// [`Pool::resize`](super::Pool::resize).
    pub max_size: usize,
    /// Members plus connects in progress: never above `max_size`, except
    /// after a shrink, while members borrowed before it are still out.
    pub size: usize,
    /// Members in the idle set, ready for checkout.
    pub idle: usize,
    /// Members held by callers.
    pub in_use: usize,
    /// Members being probed (by the sentinel or a checkout) or waiting for a re-probe.
    pub probing: usize,
    /// Connects in progress.
    pub connecting: usize,
    /// Evicted members whose close work (see
    /// [`Manager::close`](crate::Manager::close)) still runs: their places
    /// stay taken until it ends.
    pub closing: usize,
    /// Members returned by a caller that are running the `after_release`
    /// hook: never handed out until it says to keep them.
    pub returning: usize,
    /// Callers queued for a member.
    pub waiters: usize,
    /// Whether `close` was called.
    pub closed: bool,
    /// Counters since the pool was built.
    pub counters: Counters,
    /// The heartbeat interval in force: the configured one, doubled for
    /// each time the server refused heartbeats as too frequent.
    pub heartbeat_interval: Option<Duration>,
    /// What silence makes a probed member suspect now: the adaptive
    /// threshold, or `heartbeat_timeout` when adaptation is off.
    pub heartbeat_threshold: Duration,
}
