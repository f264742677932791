//! The `metrics` feature: names, labels and values as a recording backend
//! (metrics-util's `DebuggingRecorder`) sees them, after a scripted
//! sequence, checked against `Pool::status()`.
//!
//! Each test records into a recorder of its own (`with_local_recorder`
//! around the pool's build, which registers the handles), so tests in
//! this binary do not see each other's metrics.

#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::time::Duration;

use livepool::metrics::{
    COUNT, CREATE_TIME, EVICTION_REASON, EVICTIONS, HEARTBEAT_DURATION, HEARTBEAT_RESULT,
    HEARTBEATS, IDLE_MAX, IDLE_MIN, MAX, MEMBER_STATE, MEMBERS, PENDING_REQUESTS, POOL_NAME,
    SENTINEL_RESTARTS, STATE, TIMEOUTS, USE_TIME, WAIT_TIME,
};
use livepool::protocol::{RpcManager, Server};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Error, EvictReason, Manager, Pool, Status};
use metrics::Unit;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::{Instant, sleep};

/// A metric as the test names it: its name and its labels other than the
/// pool's name (which every test checks separately), sorted.
type Name = (String, Vec<(String, String)>);

/// Everything a recorder saw, summed over snapshots (a `DebuggingRecorder`
/// snapshot resets counters and gauges, and drains histograms).
#[derive(Default)]
struct Recorded {
    counters: HashMap<Name, u64>,
    gauges: HashMap<Name, f64>,
    histograms: HashMap<Name, Vec<f64>>,
    units: HashMap<String, Option<Unit>>,
    pools: Vec<String>,
}

impl Recorded {
    fn take(&mut self, snapshotter: &Snapshotter) {
        // Gauges are published on the sentinel's tick; each snapshot must
        // find them set again.
        self.gauges.clear();
        for (key, unit, _description, value) in snapshotter.snapshot().into_vec() {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let pool = labels
                .iter()
                .position(|(k, _)| k == POOL_NAME)
                .map(|i| labels.remove(i).1);
            self.pools
                .push(pool.unwrap_or_else(|| format!("none on {key:?}")));
            let name = key.key().name().to_owned();
            self.units.insert(name.clone(), unit);
            let id = (name, labels);
            match (key.kind(), value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    *self.counters.entry(id).or_default() += n
                }
                (MetricKind::Gauge, DebugValue::Gauge(v)) => {
                    self.gauges.insert(id, v.into_inner());
                }
                (MetricKind::Histogram, DebugValue::Histogram(vs)) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(vs.into_iter().map(|v| v.into_inner())),
                other => panic!("{:?} recorded as {other:?}", id.0),
            }
        }
    }

    fn counter(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        *self
            .counters
            .get(&id(name, label))
            .unwrap_or_else(|| panic!("no counter {name} {label:?}"))
    }

    fn gauge(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        *self
            .gauges
            .get(&id(name, label))
            .unwrap_or_else(|| panic!("no gauge {name} {label:?}: {:?}", self.gauges))
    }

    fn histogram(&self, name: &str) -> &[f64] {
        self.histograms.get(&id(name, None)).map_or(&[], |v| v)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.units.keys().cloned().collect();
        names.sort();
        names
    }

    /// Every gauge against one status, which must have been taken while
    /// nothing moved for more than a sentinel tick.
    fn assert_gauges_match(&self, s: &Status, min_idle: usize) {
        let n = |v: usize| v as f64;
        assert_eq!(self.gauge(COUNT, Some((STATE, "idle"))), n(s.idle), "{s:?}");
        assert_eq!(
            self.gauge(COUNT, Some((STATE, "used"))),
            n(s.in_use + s.probing + s.returning),
            "{s:?}"
        );
        assert_eq!(self.gauge(MAX, None), n(s.max_size));
        assert_eq!(self.gauge(IDLE_MAX, None), n(s.max_size));
        assert_eq!(self.gauge(IDLE_MIN, None), n(min_idle));
        assert_eq!(self.gauge(PENDING_REQUESTS, None), n(s.waiters), "{s:?}");
        let states = [
            ("idle", s.idle),
            ("in_use", s.in_use),
            ("probing", s.probing),
            ("connecting", s.connecting),
            ("closing", s.closing),
            ("returning", s.returning),
        ];
        for (state, count) in states {
            assert_eq!(
                self.gauge(MEMBERS, Some((MEMBER_STATE, state))),
                n(count),
                "{state}: {s:?}"
            );
        }
    }
}

fn id(name: &str, label: Option<(&str, &str)>) -> Name {
    (
        name.to_owned(),
        label
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into_iter()
            .collect(),
    )
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Connect, checkout, return, a timeout while queued, an eviction by a
/// heartbeat through the fault proxy, close: every metric's name, labels
/// and value match what `status()` says. Real time (a proxy is not on
/// tokio's clock), with generous slack.
#[tokio::test]
async fn a_scripted_sequence_records_what_status_reports() {
    const NAME: &str = "metrics-script";
    let server = Server::new()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let wait_timeout = Duration::from_secs(1);
    let pool = metrics::with_local_recorder(&recorder, || {
        Pool::builder()
            .name(NAME)
            .max_size(2)
            .wait_timeout(wait_timeout)
            .heartbeat_interval(Duration::from_millis(200))
            .heartbeat_timeout(Duration::from_millis(100))
            .build(RpcManager::new(proxy.addr()))
    })
    .unwrap();
    let mut seen = Recorded::default();

    // Connect twice (the pool is full), then a third checkout queues and
    // times out while the gauges show it pending.
    let held = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let queued = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    wait_for(
        "the third checkout to queue",
        Duration::from_secs(2),
        || pool.status().waiters == 1,
    )
    .await;
    sleep(Duration::from_millis(100)).await; // five sentinel ticks
    let status = pool.status();
    seen.take(&snapshotter);
    seen.assert_gauges_match(&status, 0);
    assert_eq!(seen.gauge(COUNT, Some((STATE, "used"))), 2.0);
    assert_eq!(seen.gauge(PENDING_REQUESTS, None), 1.0);
    let err = queued.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // Return both: each was used for at least the queued checkout's wait.
    let used_at_least = wait_timeout - Duration::from_millis(50);
    drop(held);

    // An eviction through the proxy: one idle member's connection goes
    // silent, so its next heartbeat times out.
    let target = proxy.connections()[0].id;
    assert!(proxy.fault_connection(target, Fault::Blackhole));
    wait_for(
        "the silent member's eviction, and a heartbeat on the other",
        Duration::from_secs(5),
        || {
            let c = pool.status().counters;
            c.evicted.get(EvictReason::ProbeTimedOut) == 1 && c.probes_ok >= 1
        },
    )
    .await;
    // Checkouts go on: the survivor, then a new member for the second.
    let again = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(again);

    pool.close();
    wait_for("the pool to empty", Duration::from_secs(2), || {
        pool.status().size == 0
    })
    .await;
    let status = pool.status();
    seen.take(&snapshotter);
    let c = &status.counters;

    // Names, units and labels.
    let mut expected = vec![
        COUNT,
        MAX,
        IDLE_MAX,
        IDLE_MIN,
        PENDING_REQUESTS,
        TIMEOUTS,
        CREATE_TIME,
        WAIT_TIME,
        USE_TIME,
        MEMBERS,
        HEARTBEATS,
        HEARTBEAT_DURATION,
        EVICTIONS,
        SENTINEL_RESTARTS,
    ];
    expected.sort();
    assert_eq!(seen.names(), expected);
    assert!(seen.pools.iter().all(|p| p == NAME), "{:?}", seen.pools);
    for histogram in [CREATE_TIME, WAIT_TIME, USE_TIME, HEARTBEAT_DURATION] {
        assert_eq!(seen.units[histogram], Some(Unit::Seconds), "{histogram}");
    }
    assert_eq!(seen.units[COUNT], Some(Unit::Count));

    // Counters, as status counts them.
    assert_eq!(seen.counter(TIMEOUTS, None), c.wait_timeouts);
    assert_eq!(c.wait_timeouts, 1);
    for reason in EvictReason::ALL {
        assert_eq!(
            seen.counter(EVICTIONS, Some((EVICTION_REASON, reason.as_str()))),
            c.evicted.get(reason),
            "{reason}"
        );
    }
    assert_eq!(c.evicted.get(EvictReason::ProbeTimedOut), 1);
    assert_eq!(c.evicted.get(EvictReason::Closed), 2);
    let ok = seen.counter(HEARTBEATS, Some((HEARTBEAT_RESULT, "ok")));
    let failed = seen.counter(HEARTBEATS, Some((HEARTBEAT_RESULT, "failed")));
    assert_eq!((ok, failed), (c.probes_ok, c.probes_failed));
    assert!(ok >= 1 && failed == 1, "ok {ok}, failed {failed}");
    assert_eq!(seen.counter(SENTINEL_RESTARTS, None), c.sentinel_restarts);

    // Histograms: one value per event, in seconds.
    assert_eq!(seen.histogram(CREATE_TIME).len() as u64, c.created);
    assert_eq!(c.created, 3);
    assert_eq!(seen.histogram(WAIT_TIME).len() as u64, c.checkouts);
    assert_eq!(c.checkouts, 4);
    let uses = seen.histogram(USE_TIME);
    assert_eq!(uses.len() as u64, c.checkouts, "every guard was returned");
    let long_uses = uses
        .iter()
        .filter(|s| **s >= used_at_least.as_secs_f64())
        .count();
    assert_eq!(long_uses, 2, "the two held across the timeout: {uses:?}");
    let rtts = seen.histogram(HEARTBEAT_DURATION);
    assert_eq!(rtts.len() as u64, c.probe_rtt.count);
    let total: f64 = rtts.iter().sum();
    assert!(
        (total - c.probe_rtt.total.as_secs_f64()).abs() < 1e-6,
        "{total} s recorded, {:?} counted",
        c.probe_rtt.total
    );
    let slowest = rtts.iter().copied().fold(0.0, f64::max);
    assert!((slowest - c.probe_rtt.max.as_secs_f64()).abs() < 1e-6);

    // Gauges after close: still the ledger's.
    seen.assert_gauges_match(&status, 0);
    proxy.shutdown().await;
}

struct Sevens;

impl Manager for Sevens {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> std::io::Result<u64> {
        Ok(7)
    }
    async fn heartbeat(&self, _: &mut u64) -> std::io::Result<()> {
        Ok(())
    }
}

/// A pool built outside any runtime (as in a `LazyLock`) registers nothing
/// until its first checkout, and then with the recorder in force there;
/// under virtual time the wait and use times are exact.
#[test]
fn a_pool_built_outside_a_runtime_registers_on_first_use() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = metrics::with_local_recorder(&recorder, || {
        Pool::builder()
            .name("metrics-lazy")
            .max_size(1)
            .min_idle(1)
            .build(Sevens)
    })
    .unwrap();
    assert!(
        snapshotter.snapshot().into_vec().is_empty(),
        "registered before any runtime"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let mut seen = Recorded::default();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let conn = pool.get().await.unwrap();
            sleep(Duration::from_secs(1)).await;
            drop(conn);
            // A second checkout that queues behind a holder for 2 s.
            let holder = pool.get_owned().await.unwrap();
            let waiter = tokio::spawn({
                let pool = pool.clone();
                async move { pool.get().await.map(drop) }
            });
            sleep(Duration::from_secs(2)).await;
            drop(holder);
            waiter.await.unwrap().unwrap();
            sleep(Duration::from_secs(1)).await; // ticks publish the gauges
        })
    });
    seen.take(&snapshotter);
    assert!(seen.pools.iter().all(|p| p == "metrics-lazy"));
    assert_eq!(seen.gauge(IDLE_MIN, None), 1.0);
    seen.assert_gauges_match(&pool.status(), 1);
    // The first connects (no time passes in a connect here); the second
    // takes the idle member; the third waits the 2 s exactly.
    assert_eq!(sorted(seen.histogram(WAIT_TIME)), [0.0, 0.0, 2.0]);
    assert_eq!(sorted(seen.histogram(USE_TIME)), [0.0, 1.0, 2.0]);
    assert_eq!(seen.histogram(CREATE_TIME), [0.0]);
}
