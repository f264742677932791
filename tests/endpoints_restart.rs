//! What 16 callers in a loop see over three reference servers: a graceful
//! rolling restart costs them no error; a hard fault on one server (reset,
//! blackhole, hung application) costs at most the requests in flight on it
//! when it struck, and none after.

mod endpoints_support;

use std::time::{Duration, Instant};

use endpoints_support::{
    Backend, Callers, Outcome, PATIENCE, eventually, fixed_set, phase, print_phases,
};
use livepool::EvictReason;
use livepool::endpoints::Want;
use livepool::protocol::{Server, ServerHandle, ServerMode};
use livepool::testing::Fault;

const CALLERS: usize = 16;
const PACE: Duration = Duration::from_millis(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_rolling_restart_costs_callers_no_error() {
    let mut servers: Vec<ServerHandle> = Vec::new();
    for _ in 0..3 {
        servers.push(endpoints_support::server().await);
    }
    let set = fixed_set(
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("s{i}"), s.addr()))
            .collect(),
    );
    let callers = Callers::start(&set, CALLERS, Want::Any, PACE);
    let mut marks = vec![("steady".to_string(), Instant::now())];
    tokio::time::sleep(Duration::from_millis(400)).await;
    for (i, slot) in servers.iter_mut().enumerate() {
        marks.push((format!("restart s{i}"), Instant::now()));
        let addr = slot.addr();
        slot.shutdown_gracefully(PATIENCE).await;
        *slot = Server::new().bind(addr).await.expect("rebind the port");
        marks.push((format!("after s{i}"), Instant::now()));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Every restarted server serves again (its requests counter is its own).
    eventually("every restarted server serves", || {
        servers.iter().all(|s| s.requests() > 0)
    })
    .await;
    let end = Instant::now();
    let outcomes = callers.stop().await;
    let phases: Vec<_> = marks
        .iter()
        .enumerate()
        .map(|(i, (name, from))| {
            let to = marks.get(i + 1).map_or(end, |(_, t)| *t);
            phase(name, &outcomes, *from, to)
        })
        .collect();
    print_phases("rolling restart, 16 callers, 3 servers", &phases);
    let errors: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(errors.is_empty(), "callers saw errors: {errors:?}");
    // Callers kept being served between restarts. A restart phase itself
    // lasts only as long as the graceful shutdown and rebind (a few ms), so
    // it may see no request end inside it: no count is asked of it.
    assert!(
        phases
            .iter()
            .filter(|p| !p.name.starts_with("restart"))
            .all(|p| p.requests > 0),
        "{phases:?}"
    );
    // A graceful restart is no failure: nothing came back dirty or broken
    // (a going-away frame read behind a reply once left members looking
    // dirty, which counted against the restarting server).
    for e in set.status().endpoints {
        let evicted = e.pool.counters.evicted;
        assert_eq!(evicted.get(EvictReason::Dirty), 0, "{}: {evicted:?}", e.key);
        assert_eq!(
            evicted.get(EvictReason::BrokenOnReturn),
            0,
            "{}: {evicted:?}",
            e.key
        );
        assert!(
            evicted.get(EvictReason::Drained) > 0,
            "{}: {evicted:?}",
            e.key
        );
    }
}

/// What callers saw of a hard fault on one server.
struct Struck {
    /// Every request that failed.
    failed: Vec<Outcome>,
    /// When the first failure showed the fault to the set.
    detected: Option<Instant>,
}

/// Injects a hard fault on one of three servers under load.
async fn hard_fault(name: &str, strike: impl FnOnce(&Backend)) -> Struck {
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(Backend::start().await);
    }
    let set = fixed_set(
        backends
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("s{i}"), b.addr()))
            .collect(),
    );
    eventually("every endpoint has idle members", || {
        set.status().endpoints.iter().all(|e| e.pool.idle >= 1)
    })
    .await;
    // Requests take 2 ms at the server, so some are always in flight.
    for b in &backends {
        b.server
            .set_mode(ServerMode::Slow(Duration::from_millis(2)));
    }
    let callers = Callers::start(&set, CALLERS, Want::Any, PACE);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let struck = Instant::now();
    let in_use = set
        .endpoint_status(&"s2".to_string())
        .map_or(0, |s| s.pool.in_use);
    strike(&backends[2]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let end = Instant::now();
    let outcomes = callers.stop().await;
    let failed: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .cloned()
        .collect();
    let detected = failed.iter().map(|o| o.started + o.took).min();
    // Started after the strike: handed out in the blind time before
    // anything could tell (a hung server's kernel still ACKs).
    let blind = failed.iter().filter(|o| o.started >= struck).count();
    print_phases(
        &format!(
            "{name} on s2: {in_use} members in use on it when struck, {} requests failed ({blind} started after the strike), detected after {:?}",
            failed.len(),
            detected.map(|d| d.saturating_duration_since(struck))
        ),
        &[
            phase("before", &outcomes, outcomes[0].started, struck),
            phase("fault", &outcomes, struck, end),
        ],
    );
    Struck { failed, detected }
}

/// Only requests on the struck server fail, no more than it has members
/// (each carries one request at a time), and none started once the first
/// failure showed the fault.
fn assert_contained(name: &str, seen: &Struck) {
    let elsewhere: Vec<_> = seen
        .failed
        .iter()
        .filter(|o| o.endpoint.as_deref() != Some("s2"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "{name}: failures off s2: {elsewhere:?}"
    );
    assert!(
        seen.failed.len() <= 8,
        "{name}: {} failed, more than s2's 8 members could carry",
        seen.failed.len()
    );
    let after: Vec<_> = seen
        .failed
        .iter()
        .filter(|o| seen.detected.is_some_and(|d| o.started > d))
        .collect();
    assert!(
        after.is_empty(),
        "{name}: failed after detection: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_costs_at_most_the_requests_in_flight() {
    let seen = hard_fault("reset", |b| {
        b.proxy.set_refusing(true);
        b.proxy.set_fault(Fault::Reset);
    })
    .await;
    assert_contained("reset", &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_costs_at_most_the_requests_in_flight() {
    let seen = hard_fault("blackhole", |b| b.proxy.set_fault(Fault::Blackhole)).await;
    assert_contained("blackhole", &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_application_costs_at_most_the_requests_in_flight() {
    let seen = hard_fault("hang", |b| b.server.set_mode(ServerMode::Hang)).await;
    assert_contained("hang", &seen);
}
