//! Metrics export through the [`metrics`](https://docs.rs/metrics) facade
//! (the `metrics` feature), so any exporter works: Prometheus, StatsD,
//! OpenTelemetry, or a test's recording backend.
//!
//! # What is exported
//!
//! Every metric carries the label `db.client.connection.pool.name` = the
//! pool's [`name`](crate::Builder::name). The OpenTelemetry semantic
//! conventions for database client connection pools:
//!
//! | name | kind | unit | what |
//! |---|---|---|---|
//! | `db.client.connection.count` | gauge | connections | by `db.client.connection.state`: `idle` = [`Status::idle`], `used` = [`Status::in_use`] + [`Status::probing`] + [`Status::returning`] |
//! | `db.client.connection.max` | gauge | connections | [`Status::max_size`] (changed by [`Pool::resize`](crate::Pool::resize)) |
//! | `db.client.connection.idle.max` | gauge | connections | [`Status::max_size`]: nothing else caps the idle set |
//! | `db.client.connection.idle.min` | gauge | connections | [`Config::min_idle`](crate::Config::min_idle) |
//! | `db.client.connection.pending_requests` | gauge | requests | [`Status::waiters`] |
//! | `db.client.connection.timeouts` | counter | timeouts | [`Counters::wait_timeouts`] |
//! | `db.client.connection.create_time` | histogram | seconds | a connect plus its `after_connect` hook, for each member made |
//! | `db.client.connection.wait_time` | histogram | seconds | `get()` called to guard in hand, for each checkout that succeeded; zero for one served from the idle set at once (it takes one decision under the lock, and is not timed) |
//! | `db.client.connection.use_time` | histogram | seconds | guard handed out to guard dropped, for each member returned |
//!
//! The crate's own:
//!
//! | name | kind | unit | what |
//! |---|---|---|---|
//! | `livepool.members` | gauge | connections | by `livepool.member.state`: `idle`, `in_use`, `probing`, `connecting`, `closing`, `returning`, the [`Status`] fields of those names; they add up to [`Status::size`] |
//! | `livepool.heartbeats` | counter | heartbeats | by `livepool.heartbeat.result`: `ok` = [`Counters::probes_ok`], `failed` = [`Counters::probes_failed`]; their sum is the heartbeats sent that ended |
//! | `livepool.heartbeat.duration` | histogram | seconds | the round trip of every heartbeat that answered ([`Counters::probe_rtt`]) |
//! | `livepool.evictions` | counter | members | by `livepool.eviction.reason`: [`EvictReason::as_str`] ([`Counters::evicted`]) |
//! | `livepool.sentinel.restarts` | counter | restarts | [`Counters::sentinel_restarts`] |
//!
//! The names are the constants of this module; exporters that do not allow
//! dots (Prometheus) turn them into underscores.
//!
//! # Cost
//!
//! The handles (counters, gauges, histograms, with their labels) are
//! registered once per pool, when it is built inside a runtime, else on its
//! first checkout or [`Pool::ready`](crate::Pool::ready) (so a pool built
//! in a `LazyLock` before `main` installs the exporter still reaches it). After that, recording is a pointer
//! dereference and the exporter's atomic update: no string formatting, no
//! label allocation, no lookup. What the feature adds to a checkout is two
//! clock reads (when the guard is handed out and when it is dropped; a
//! third when the checkout has to wait) and two histogram records; without
//! the feature none of it is compiled, and `get()` is the same future.
//!
//! # Gauges are sampled on the sentinel's tick
//!
//! The gauges are read from the same ledger as [`Pool::status`](crate::Pool::status),
//! under the pool's lock, by the pool's background task on every tick
//! (`wait_timeout`, `validate_after` and the other intervals divided by ten,
//! between 10 and 250 ms), and once more on every change after the pool
//! closes (its background task has stopped by then). Why the tick and not
//! every ledger change: a checkout and its return change the ledger twice,
//! and publishing the gauges each time would put a dozen calls into the
//! exporter on the hot path, more instructions than the checkout itself;
//! an exporter only samples gauges when it is scraped, seconds apart, so a
//! value at most one tick old loses nothing. All the gauges of one tick
//! come from one snapshot taken under the lock (and are set under it, so
//! an older snapshot never overwrites a newer one), so they add up as
//! `Status` does. Counters and histograms are recorded where the event
//! happens, next to the `Status` counter they mirror, so they are never
//! behind.
//!
//! # Example
//!
//! A service installs its exporter once, in `main` (say
//! `metrics_exporter_prometheus::PrometheusBuilder::new().install()?`);
//! here a recording backend in force for the pool's build only, as a test
//! would use:
//!
//! ```
//! use livepool::metrics::{POOL_NAME, WAIT_TIME};
//! use livepool::{Manager, Pool};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//!
//! struct Numbers;
//!
//! impl Manager for Numbers {
//!     type Connection = u64;
//!     type Error = std::io::Error;
//!     async fn connect(&self) -> std::io::Result<u64> { Ok(7) }
//!     async fn heartbeat(&self, _: &mut u64) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // Built inside a runtime: the handles are registered now, with this recorder.
//! let pool = metrics::with_local_recorder(&recorder, || {
//!     Pool::builder().name("orders-db").build(Numbers)
//! })?;
//! drop(pool.get().await?);
//!
//! let snapshot = snapshotter.snapshot().into_vec();
//! let (key, _, _, waits) = snapshot
//!     .iter()
//!     .find(|(key, ..)| key.key().name() == WAIT_TIME)
//!     .expect("a wait time was recorded");
//! assert!(matches!(waits, DebugValue::Histogram(values) if values.len() == 1));
//! let label = key.key().labels().next().expect("labelled");
//! assert_eq!((label.key(), label.value()), (POOL_NAME, "orders-db"));
//! # Ok(()) }
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

#[cfg(doc)]
use crate::pool::Counters;
use crate::pool::{EvictReason, Status};

/// The label every metric carries: the pool's name.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// The label of [`COUNT`]: `idle` or `used`.
pub const STATE: &str = "db.client.connection.state";
/// Open connections by [`STATE`].
pub const COUNT: &str = "db.client.connection.count";
/// The maximum number of open connections allowed.
pub const MAX: &str = "db.client.connection.max";
/// The maximum number of idle open connections allowed.
pub const IDLE_MAX: &str = "db.client.connection.idle.max";
/// The minimum number of idle open connections kept.
pub const IDLE_MIN: &str = "db.client.connection.idle.min";
/// Checkouts queued for a member.
pub const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
/// Checkouts that gave up with [`Error::Timeout`](crate::Error::Timeout).
pub const TIMEOUTS: &str = "db.client.connection.timeouts";
/// Seconds to make a member: connect and `after_connect`.
pub const CREATE_TIME: &str = "db.client.connection.create_time";
/// Seconds a successful checkout took.
pub const WAIT_TIME: &str = "db.client.connection.wait_time";
/// Seconds a member was borrowed.
pub const USE_TIME: &str = "db.client.connection.use_time";
/// Places by [`MEMBER_STATE`], as [`Status`] counts them.
pub const MEMBERS: &str = "livepool.members";
/// The label of [`MEMBERS`].
pub const MEMBER_STATE: &str = "livepool.member.state";
/// Heartbeats that ended, by [`HEARTBEAT_RESULT`].
pub const HEARTBEATS: &str = "livepool.heartbeats";
/// The label of [`HEARTBEATS`]: `ok` or `failed`.
pub const HEARTBEAT_RESULT: &str = "livepool.heartbeat.result";
/// Seconds of a heartbeat's round trip.
pub const HEARTBEAT_DURATION: &str = "livepool.heartbeat.duration";
/// Members that left the pool, by [`EVICTION_REASON`].
pub const EVICTIONS: &str = "livepool.evictions";
/// The label of [`EVICTIONS`]: [`EvictReason::as_str`].
pub const EVICTION_REASON: &str = "livepool.eviction.reason";
/// Times the pool's background task was found ended and restarted.
pub const SENTINEL_RESTARTS: &str = "livepool.sentinel.restarts";

/// The states of [`MEMBERS`], in the order of [`Handles::members`].
const MEMBER_STATES: [&str; 6] = [
    "idle",
    "in_use",
    "probing",
    "connecting",
    "closing",
    "returning",
];

/// One pool's metrics: registered once (see the module docs), then only
/// dereferenced.
#[derive(Default)]
pub(crate) struct PoolMetrics {
    handles: OnceLock<Handles>,
}

/// Every handle a pool records into, labels bound.
struct Handles {
    /// The configuration's, for its gauge.
    min_idle: usize,
    idle: Gauge,
    used: Gauge,
    max: Gauge,
    idle_max: Gauge,
    idle_min: Gauge,
    pending: Gauge,
    members: [Gauge; MEMBER_STATES.len()],
    timeouts: Counter,
    create_time: Histogram,
    wait_time: Histogram,
    use_time: Histogram,
    heartbeats_ok: Counter,
    heartbeats_failed: Counter,
    heartbeat_duration: Histogram,
    evictions: [Counter; EvictReason::COUNT],
    sentinel_restarts: Counter,
}

impl PoolMetrics {
    /// Registers the handles with the recorder in force now, if not done
    /// yet.
    pub(crate) fn register(&self, pool: &str, min_idle: usize) {
        self.handles.get_or_init(|| {
            describe();
            Handles::new(pool, min_idle)
        });
    }

    #[inline]
    fn get(&self) -> Option<&Handles> {
        self.handles.get()
    }

    /// Sets every gauge from one snapshot of the ledger.
    pub(crate) fn publish(&self, status: &Status) {
        let Some(h) = self.get() else { return };
        h.idle.set(status.idle as f64);
        h.used
            .set((status.in_use + status.probing + status.returning) as f64);
        h.max.set(status.max_size as f64);
        h.idle_max.set(status.max_size as f64);
        h.idle_min.set(h.min_idle as f64);
        h.pending.set(status.waiters as f64);
        let states = [
            status.idle,
            status.in_use,
            status.probing,
            status.connecting,
            status.closing,
            status.returning,
        ];
        for (gauge, n) in h.members.iter().zip(states) {
            gauge.set(n as f64);
        }
    }

    #[inline]
    pub(crate) fn timed_out(&self) {
        if let Some(h) = self.get() {
            h.timeouts.increment(1);
        }
    }

    pub(crate) fn created(&self, took: Duration) {
        if let Some(h) = self.get() {
            h.create_time.record(took);
        }
    }

    #[inline]
    pub(crate) fn waited(&self, took: Duration) {
        if let Some(h) = self.get() {
            h.wait_time.record(took);
        }
    }

    #[inline]
    pub(crate) fn used(&self, took: Duration) {
        if let Some(h) = self.get() {
            h.use_time.record(took);
        }
    }

    /// A heartbeat ended: its round trip if it answered in time.
    pub(crate) fn heartbeat(&self, answered: Option<Duration>) {
        let Some(h) = self.get() else { return };
        match answered {
            Some(rtt) => {
                h.heartbeats_ok.increment(1);
                h.heartbeat_duration.record(rtt);
            }
            None => h.heartbeats_failed.increment(1),
        }
    }

    #[inline]
    pub(crate) fn evicted(&self, reason: EvictReason) {
        if let Some(h) = self.get() {
            h.evictions[reason.index()].increment(1);
        }
    }

    pub(crate) fn sentinel_restarted(&self) {
        if let Some(h) = self.get() {
            h.sentinel_restarts.increment(1);
        }
    }
}

impl Handles {
    fn new(pool: &str, min_idle: usize) -> Self {
        let name = || pool.to_owned();
        let gauge = |key: &'static str| metrics::gauge!(key, POOL_NAME => name());
        let counter = |key: &'static str| metrics::counter!(key, POOL_NAME => name());
        let histogram = |key: &'static str| metrics::histogram!(key, POOL_NAME => name());
        Handles {
            min_idle,
            idle: metrics::gauge!(COUNT, POOL_NAME => name(), STATE => "idle"),
            used: metrics::gauge!(COUNT, POOL_NAME => name(), STATE => "used"),
            max: gauge(MAX),
            idle_max: gauge(IDLE_MAX),
            idle_min: gauge(IDLE_MIN),
            pending: gauge(PENDING_REQUESTS),
            members: MEMBER_STATES
                .map(|state| metrics::gauge!(MEMBERS, POOL_NAME => name(), MEMBER_STATE => state)),
            timeouts: counter(TIMEOUTS),
            create_time: histogram(CREATE_TIME),
            wait_time: histogram(WAIT_TIME),
            use_time: histogram(USE_TIME),
            heartbeats_ok: metrics::counter!(HEARTBEATS, POOL_NAME => name(), HEARTBEAT_RESULT => "ok"),
            heartbeats_failed: metrics::counter!(HEARTBEATS, POOL_NAME => name(), HEARTBEAT_RESULT => "failed"),
            heartbeat_duration: histogram(HEARTBEAT_DURATION),
            evictions: EvictReason::ALL.map(|reason| {
                metrics::counter!(EVICTIONS, POOL_NAME => name(), EVICTION_REASON => reason.as_str())
            }),
            sentinel_restarts: counter(SENTINEL_RESTARTS),
        }
    }
}

/// Units and help texts, for exporters that show them.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    let count = Unit::Count;
    describe_gauge!(
        COUNT,
        count,
        "The number of connections that are currently in state described by the state attribute."
    );
    describe_gauge!(
        MAX,
        count,
        "The maximum number of open connections allowed."
    );
    describe_gauge!(
        IDLE_MAX,
        count,
        "The maximum number of idle open connections allowed."
    );
    describe_gauge!(
        IDLE_MIN,
        count,
        "The minimum number of idle open connections allowed."
    );
    describe_gauge!(
        PENDING_REQUESTS,
        count,
        "The number of current pending requests for an open connection."
    );
    describe_counter!(
        TIMEOUTS,
        count,
        "The number of connection timeouts that have occurred trying to obtain a connection from the pool."
    );
    describe_histogram!(
        CREATE_TIME,
        Unit::Seconds,
        "The time it took to create a new connection."
    );
    describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "The time it took to obtain an open connection from the pool."
    );
    describe_histogram!(
        USE_TIME,
        Unit::Seconds,
        "The time between borrowing a connection and returning it to the pool."
    );
    describe_gauge!(
        MEMBERS,
        count,
        "Places in the pool by who holds them; they add up to the pool's size."
    );
    describe_counter!(
        HEARTBEATS,
        count,
        "In-band heartbeats that ended, by result."
    );
    describe_histogram!(
        HEARTBEAT_DURATION,
        Unit::Seconds,
        "Round trip of heartbeats that answered in time."
    );
    describe_counter!(EVICTIONS, count, "Members that left the pool, by reason.");
    describe_counter!(
        SENTINEL_RESTARTS,
        count,
        "Times the pool's background task was found ended and restarted."
    );
}
