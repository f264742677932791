//! How long each fault goes unnoticed: time from injection to eviction, and
//! which layer noticed (the eviction reason), over many trials per fault.
//!
//! Each trial is its own server, fault proxy and pool (the rig of the fault
//! tests), so trials run side by side; each injects its fault at a random
//! moment of the heartbeat cycle. Fault 12 (kernel keepalive alone) needs root
//! and iproute2; without them its row says why it did not run.
//!
//! Issue 12's rows: a 10× round-trip spike (false evictions, the fixed
//! timeout against the adaptive one, both pools through one proxy in the
//! same trial), a silent blackhole under the adaptive timeout, the process
//! itself stalled (a runtime blocked for 2 s), and a server that refuses
//! heartbeats as too frequent. Callers run through every trial, and the
//! table says what they saw.
//!
//! `cargo bench --bench detection`; the table is printed and written to
//! `target/detection-summary.md`.

#[path = "../tests/fault_support/mod.rs"]
mod fault_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use fault_support::callers::{Callers, Tally};
use fault_support::netns::Netns;
use fault_support::{
    HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, Rig, WAIT_TIMEOUT, builder, failures_since,
    first_failure,
};
use livepool::protocol::{RpcManager, Server, ServerMode};
use livepool::tcp::{Keepalive, TcpOptions};
use livepool::testing::{Fault, FaultProxy};
use livepool::{EvictReason, Pool};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

/// Trials per fault.
const TRIALS: usize = 24;
/// Trials in flight at once.
const CONCURRENCY: usize = 8;
/// A trial that has not seen an eviction by then counts as a miss.
const GIVE_UP: Duration = Duration::from_secs(10);

const KEEPALIVE: Keepalive = Keepalive::new(Duration::from_secs(1), Duration::from_secs(1), 2);
const USER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Injection {
    /// On one cold idle member's connection, in the proxy.
    Proxy(Fault),
    /// On the server: every connection at once.
    Server(ServerMode),
}

struct Row {
    fault: String,
    how: &'static str,
    /// What was measured, or why nothing was.
    outcome: Result<Outcome, String>,
    misses: Vec<String>,
    /// The longest detection the design allows, if the row detects.
    bound: Option<Duration>,
    /// What callers saw meanwhile.
    callers: Seen,
}

enum Outcome {
    /// Time to the first failure eviction, by the reason that moved.
    Detected(Vec<(EvictReason, Duration)>),
    /// A row that measures something else: its own words and figures.
    Summary {
        layer: String,
        times: Vec<Duration>,
        trials: usize,
    },
}

/// Callers' tallies over a row's trials.
#[derive(Default)]
struct Seen {
    calls_ok: u64,
    get_errors: usize,
    call_errors: usize,
    ran: bool,
}

impl Seen {
    fn add(&mut self, tally: &Tally) {
        self.ran = true;
        self.calls_ok += tally.calls_ok();
        self.get_errors += tally.get_errors().len();
        self.call_errors += tally.call_errors().len();
    }

    fn render(&self) -> String {
        if !self.ran {
            return "no callers".to_owned();
        }
        format!(
            "{} calls ok, {} get errors, {} call errors",
            self.calls_ok, self.get_errors, self.call_errors
        )
    }
}

/// Callers per trial: few enough that the target member stays cold.
const CALLERS: usize = 2;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    let rows = runtime.block_on(all_rows());
    let table = render(&rows);
    println!("{table}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_owned());
    let path = std::path::Path::new(&target).join("detection-summary.md");
    match std::fs::write(&path, &table) {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

async fn all_rows() -> Vec<Row> {
    let faults = [
        (
            "1. peer sends RST",
            "proxy: Fault::Reset on one idle member",
            Injection::Proxy(Fault::Reset),
        ),
        (
            "2. peer sends FIN",
            "proxy: Fault::Close on one idle member",
            Injection::Proxy(Fault::Close),
        ),
        (
            "3. silent blackhole",
            "proxy: Fault::Blackhole on one idle member",
            Injection::Proxy(Fault::Blackhole),
        ),
        (
            "4. hung application",
            "server: ServerMode::Hang, all members",
            Injection::Server(ServerMode::Hang),
        ),
        (
            "5. heartbeat answered late",
            "proxy: Fault::Delay(heartbeat_timeout) each way, one member",
            Injection::Proxy(Fault::Delay(HEARTBEAT_TIMEOUT)),
        ),
        (
            "6. wrong-id reply",
            "server: ServerMode::WrongId, all members",
            Injection::Server(ServerMode::WrongId),
        ),
    ];
    let mut rows = Vec::new();
    for (fault, how, injection) in faults {
        let started = Instant::now();
        let (trials, misses, callers) = run_trials(injection).await;
        eprintln!(
            "{fault}: {} trials in {:?}",
            trials.len(),
            started.elapsed()
        );
        rows.push(Row {
            fault: fault.to_owned(),
            how,
            outcome: Ok(Outcome::Detected(trials)),
            misses,
            bound: Some(HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + HEARTBEAT_INTERVAL / 10),
            callers,
        });
    }
    rows.extend(liveness_rows().await);
    let started = Instant::now();
    let outcome = keepalive_trials().await;
    eprintln!("12. kernel keepalive: {:?}", started.elapsed());
    rows.push(Row {
        fault: format!(
            "12. peer vanished, heartbeats off (keepalive {}s/{}s×{}, user timeout {}s)",
            KEEPALIVE.idle.as_secs(),
            KEEPALIVE.interval.as_secs(),
            KEEPALIVE.retries,
            USER_TIMEOUT.as_secs()
        ),
        how: "netns: blackhole route for every reply, one idle member per pool",
        outcome: outcome.map(Outcome::Detected),
        misses: Vec::new(),
        bound: Some(
            KEEPALIVE.idle + KEEPALIVE.interval * KEEPALIVE.retries + Duration::from_millis(250),
        ),
        callers: Seen::default(),
    });
    rows
}

/// `TRIALS` trials of one fault, `CONCURRENCY` at a time.
async fn run_trials(injection: Injection) -> (Vec<(EvictReason, Duration)>, Vec<String>, Seen) {
    let (outcomes, seen) = many(TRIALS, CONCURRENCY, move || trial(injection)).await;
    let mut results = Vec::new();
    let mut misses = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(result) => results.push(result),
            Err(miss) => misses.push(miss),
        }
    }
    (results, misses, seen)
}

type TrialResult = Result<(EvictReason, Duration), String>;

/// One run's result and what its callers saw.
type Ran<T> = (Result<T, String>, Option<std::sync::Arc<Tally>>);

/// `n` runs of `one`, `at_once` at a time; each returns its result and
/// what its callers saw. A panicked run is an `Err` result.
async fn many<T, F, Fut>(n: usize, at_once: usize, one: F) -> (Vec<Result<T, String>>, Seen)
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Ran<T>> + Send + 'static,
{
    let mut results = Vec::new();
    let mut seen = Seen::default();
    let mut running = JoinSet::new();
    let mut collect = |done: Result<Ran<T>, tokio::task::JoinError>| match done {
        Ok((result, tally)) => {
            if let Some(tally) = tally {
                seen.add(&tally);
            }
            results.push(result);
        }
        Err(e) => results.push(Err(format!("trial panicked: {e}"))),
    };
    for _ in 0..n {
        if running.len() == at_once {
            if let Some(done) = running.join_next().await {
                collect(done);
            }
        }
        running.spawn(one());
    }
    while let Some(done) = running.join_next().await {
        collect(done);
    }
    (results, seen)
}

/// One rig, one fault at a random moment of the heartbeat cycle, the first
/// failure eviction after it; callers borrow and call throughout.
async fn trial(injection: Injection) -> (TrialResult, Option<std::sync::Arc<Tally>>) {
    let rig = match injection {
        Injection::Proxy(_) => Rig::through_proxy(builder("detection")).await,
        Injection::Server(_) => Rig::direct(builder("detection")).await,
    };
    let target = match injection {
        Injection::Proxy(_) => Some(rig.cold_target().await),
        Injection::Server(_) => {
            rig.wait_full().await;
            None
        }
    };
    let callers = Callers::start(&rig.pool, CALLERS, WAIT_TIMEOUT);
    sleep(HEARTBEAT_INTERVAL.mul_f64(fastrand::f64())).await;
    let before = rig.pool.status().counters.evicted;
    let injected = Instant::now();
    match (injection, target) {
        (Injection::Proxy(fault), Some(target)) => {
            if !rig.proxy().fault_connection(target.proxy_conn, fault) {
                let tally = callers.stop().await;
                return (
                    Err("target connection gone before the fault".to_owned()),
                    Some(tally),
                );
            }
        }
        (Injection::Server(mode), _) => rig.server.set_mode(mode),
        (Injection::Proxy(_), None) => unreachable!("proxy trials have a target"),
    }
    let first = first_failure(&rig.pool, &before, injected, GIVE_UP).await;
    rig.server.set_mode(ServerMode::Normal);
    let tally = callers.stop().await;
    rig.teardown().await;
    (
        first.map_err(|s| format!("nothing evicted within {GIVE_UP:?}: {s:?}")),
        Some(tally),
    )
}

/// Fault 12: `TRIALS` single-member pools into one namespace, their last
/// activity spread over the second before every packet is dropped.
async fn keepalive_trials() -> Result<Vec<(EvictReason, Duration)>, String> {
    let mut ns = Netns::create()?;
    let addr = ns.start_echo_server(7000).await?;
    let tcp = TcpOptions::default()
        .with_keepalive(KEEPALIVE)
        .with_user_timeout(USER_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(2));
    let mut pools = Vec::new();
    for _ in 0..TRIALS {
        let manager = RpcManager::new(addr)
            .tcp_options(tcp.clone())
            .request_timeout(None);
        let pool = Pool::builder()
            .name("detection-keepalive")
            .max_size(1)
            .no_heartbeats()
            .build(manager)
            .map_err(|e| e.to_string())?;
        pools.push(pool);
    }
    let mut spread = JoinSet::new();
    for pool in &pools {
        let pool = pool.clone();
        spread.spawn(async move {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
            conn.heartbeat().await.map_err(|e| e.to_string())
        });
    }
    while let Some(done) = spread.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let before: Vec<_> = pools.iter().map(|p| p.status().counters.evicted).collect();
    ns.drop_all_packets()?;
    let injected = Instant::now();
    let mut waits = JoinSet::new();
    for (pool, before) in pools.iter().zip(before) {
        let pool = pool.clone();
        waits.spawn(async move { first_failure(&pool, &before, injected, GIVE_UP * 2).await });
    }
    let mut results = Vec::new();
    while let Some(done) = waits.join_next().await {
        match done {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(s)) => return Err(format!("a member was never evicted: {s:?}")),
            Err(e) => return Err(format!("a trial panicked: {e}")),
        }
    }
    for pool in &pools {
        pool.close();
    }
    drop(pools);
    drop(ns);
    Ok(results)
}

fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Fault detection times\n");
    let _ = writeln!(
        out,
        "Pool (faults 1-6): {}. Each trial is its own server + fault proxy + pool; \
         the fault lands at a random moment of the heartbeat cycle; time is from \
         injection to the first failure eviction (status() polled every 2 ms). \
         Fault 12: heartbeats off, TcpOptions keepalive idle {:?} / interval {:?} / \
         retries {}, TCP_USER_TIMEOUT {:?}; sentinel tick 250 ms.\n",
        fault_support::settings(),
        KEEPALIVE.idle,
        KEEPALIVE.interval,
        KEEPALIVE.retries,
        USER_TIMEOUT,
    );
    let _ = writeln!(
        out,
        "| fault | injected | detecting layer (eviction reason: trials) | median | worst | bound | trials | callers saw |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "{}", render_row(row));
    }
    for row in rows {
        for miss in &row.misses {
            let _ = writeln!(out, "\n- {}: {miss}", row.fault);
        }
    }
    out
}

fn render_row(row: &Row) -> String {
    let bound = row.bound.map_or("-".to_owned(), ms);
    let callers = row.callers.render();
    let (layer, mut times, trials) = match &row.outcome {
        Err(why) => {
            let why = why.replace('|', "/");
            return format!(
                "| {} | {} | NOT RUN: {why} | - | - | {bound} | 0 | - |",
                row.fault, row.how
            );
        }
        Ok(Outcome::Detected(trials)) if trials.is_empty() => {
            let why = row.misses.first().map_or("", String::as_str);
            return format!(
                "| {} | {} | every trial missed: {why} | - | - | {bound} | 0 | {callers} |",
                row.fault, row.how
            );
        }
        Ok(Outcome::Detected(trials)) => {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for (reason, _) in trials {
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
            let layers: Vec<String> = reasons
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect();
            let times: Vec<Duration> = trials.iter().map(|(_, t)| *t).collect();
            (layers.join(", "), times, trials.len())
        }
        Ok(Outcome::Summary {
            layer,
            times,
            trials,
        }) => (layer.clone(), times.clone(), *trials),
    };
    times.sort();
    let (median, worst) = match (times.get(times.len() / 2), times.last()) {
        (Some(m), Some(w)) => (ms(*m), ms(*w)),
        _ => ("-".to_owned(), "-".to_owned()),
    };
    let missed = match row.misses.len() {
        0 => String::new(),
        n => format!(" ({n} missed)"),
    };
    format!(
        "| {} | {} | {layer} | {median} | {worst} | {bound} | {trials}{missed} | {callers} |",
        row.fault, row.how,
    )
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

// ---- Issue 12: adaptive timeout, stall, ping etiquette -------------------

/// The adaptive pool's ceiling: below the rig's interval (400 ms), above a
/// 10× spike of its round trips (about 200 ms).
const CEILING: Duration = Duration::from_millis(350);
const FLOOR: Duration = Duration::from_millis(20);
/// One way; a round trip through the proxy is about twice this.
const BASE_DELAY: Duration = Duration::from_millis(10);
/// Spike trials, and how many run at once (each holds two pools).
const SPIKE_TRIALS: usize = 8;
const SPIKE_CONCURRENCY: usize = 4;

fn adaptive(name: &str) -> livepool::Builder {
    builder(name)
        .heartbeat_timeout(CEILING)
        .adaptive_heartbeat_timeout(FLOOR)
}

async fn liveness_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let started = Instant::now();
    let (spikes, seen) = many(SPIKE_TRIALS, SPIKE_CONCURRENCY, || async {
        spike_trial().await
    })
    .await;
    eprintln!(
        "7-8. spike: {SPIKE_TRIALS} trials in {:?}",
        started.elapsed()
    );
    let (mut fixed, mut adapted, mut misses) = (Vec::new(), Vec::new(), Vec::new());
    for spike in spikes {
        match spike {
            Ok((f, a)) => {
                fixed.push(f);
                adapted.push(a);
            }
            Err(miss) => misses.push(miss),
        }
    }
    for (label, counts, how) in [
        (
            "7. round-trip spike 10×, fixed timeout 150 ms",
            &fixed,
            "proxy: Fault::Delay 10 ms ±20% per member, then 100 ms ±20% for 3 s (same proxy as 8)",
        ),
        (
            "8. round-trip spike 10×, adaptive (floor 20 ms, ceiling 350 ms)",
            &adapted,
            "same trials as 7: a second pool through the same proxy",
        ),
    ] {
        let total: u64 = counts.iter().sum();
        let trials_with = counts.iter().filter(|n| **n > 0).count();
        rows.push(Row {
            fault: label.to_owned(),
            how,
            outcome: Ok(Outcome::Summary {
                layer: format!(
                    "false evictions: {total} in all, in {trials_with} of {} trials",
                    counts.len()
                ),
                times: Vec::new(),
                trials: counts.len(),
            }),
            misses: misses.clone(),
            bound: None,
            callers: Seen {
                ran: true,
                ..Seen::default()
            },
        });
    }
    // Callers ran on both pools of each spike trial.
    if let Some(row) = rows.last_mut() {
        row.callers = seen;
    }
    if let Some(row) = rows.iter_mut().rev().nth(1) {
        row.callers.ran = false;
    }

    let started = Instant::now();
    let (outcomes, seen) = many(TRIALS, CONCURRENCY, || async {
        let rig = Rig::through_proxy(adaptive("detection-adaptive")).await;
        set_delay(rig.proxy(), BASE_DELAY);
        let target = rig.cold_target().await;
        let callers = Callers::start(&rig.pool, CALLERS, WAIT_TIMEOUT);
        sleep(Duration::from_secs(1) + HEARTBEAT_INTERVAL.mul_f64(fastrand::f64())).await;
        let before = rig.pool.status().counters.evicted;
        let injected = Instant::now();
        rig.proxy()
            .fault_connection(target.proxy_conn, Fault::Blackhole);
        let first = first_failure(&rig.pool, &before, injected, GIVE_UP).await;
        let tally = callers.stop().await;
        rig.teardown().await;
        (
            first.map_err(|s| format!("nothing evicted: {s:?}")),
            Some(tally),
        )
    })
    .await;
    eprintln!("9. adaptive blackhole: {:?}", started.elapsed());
    let (mut found, mut misses) = (Vec::new(), Vec::new());
    for o in outcomes {
        match o {
            Ok(r) => found.push(r),
            Err(m) => misses.push(m),
        }
    }
    rows.push(Row {
        fault: "9. silent blackhole, adaptive (floor 20 ms, ceiling 350 ms)".to_owned(),
        how: "proxy: Fault::Delay 10 ms on all, then Fault::Blackhole on one idle member",
        outcome: Ok(Outcome::Detected(found)),
        misses,
        bound: Some(HEARTBEAT_INTERVAL + CEILING + HEARTBEAT_INTERVAL / 10),
        callers: seen,
    });

    let started = Instant::now();
    rows.push(stall_row().await);
    eprintln!("10. stall: {:?}", started.elapsed());
    let started = Instant::now();
    rows.push(pings_row().await);
    eprintln!("11. too many pings: {:?}", started.elapsed());
    rows
}

/// Every connection of the proxy (and every new one) delayed by `d`.
fn set_delay(proxy: &FaultProxy, d: Duration) {
    proxy.set_fault(Fault::Delay(d));
    for conn in proxy.connections() {
        proxy.fault_connection(conn.id, Fault::Delay(d));
    }
}

/// Each connection's delay drawn afresh every 50 ms: `base` ± 20%.
async fn jitter(proxy: &FaultProxy, base: Duration, time: Duration) {
    proxy.set_fault(Fault::Delay(base));
    let until = Instant::now() + time;
    while Instant::now() < until {
        for conn in proxy.connections() {
            proxy.fault_connection(
                conn.id,
                Fault::Delay(base.mul_f64(0.8 + 0.4 * fastrand::f64())),
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Two pools (fixed and adaptive) through one proxy; 2 s at the base
/// delay, then 3 s at ten times it: the failure evictions of each during
/// the spike (every member is healthy throughout).
async fn spike_trial() -> (Result<(u64, u64), String>, Option<std::sync::Arc<Tally>>) {
    let server = fault_support::bind("127.0.0.1:0".parse().unwrap()).await;
    let proxy = FaultProxy::start(server.addr())
        .await
        .expect("start a proxy");
    proxy.set_fault(Fault::Delay(BASE_DELAY));
    let fixed = builder("spike-fixed")
        .build(fault_support::manager(proxy.addr()))
        .expect("valid");
    let adapted = adaptive("spike-adaptive")
        .build(fault_support::manager(proxy.addr()))
        .expect("valid");
    let patience = Instant::now();
    while fixed.status().idle < fault_support::MAX_SIZE
        || adapted.status().idle < fault_support::MAX_SIZE
    {
        if patience.elapsed() > Duration::from_secs(10) {
            return (Err("pools never filled".to_owned()), None);
        }
        sleep(Duration::from_millis(10)).await;
    }
    let callers = Callers::start(&adapted, CALLERS, WAIT_TIMEOUT);
    jitter(&proxy, BASE_DELAY, Duration::from_secs(2)).await;
    let before = (
        fixed.status().counters.evicted,
        adapted.status().counters.evicted,
    );
    jitter(&proxy, BASE_DELAY * 10, Duration::from_secs(3)).await;
    let after = (
        fixed.status().counters.evicted,
        adapted.status().counters.evicted,
    );
    let tally = callers.stop().await;
    fixed.close();
    adapted.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), proxy.shutdown()).await;
    server.shutdown().await;
    (
        Ok((
            failures_since(&after.0, &before.0),
            failures_since(&after.1, &before.1),
        )),
        Some(tally),
    )
}

/// The process stalls: each trial is a pool, server and callers on a
/// runtime of their own (one thread), which a task then blocks for 2 s
/// with `std::thread::sleep`, as a stopped container or a starved runtime
/// would. Measured: failure evictions in the 3 s after (every member is
/// healthy), stalls counted, and the time until every idle member was
/// re-validated (probed since the stall).
async fn stall_row() -> Row {
    let mut handles = Vec::new();
    for _ in 0..TRIALS / 3 {
        handles.push(std::thread::spawn(stall_trial));
    }
    let (mut times, mut false_evictions, mut counted, mut misses) = (Vec::new(), 0, 0, Vec::new());
    let mut seen = Seen::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok((time, evicted, stalls, tally))) => {
                times.push(time);
                false_evictions += evicted;
                counted += u64::from(stalls > 0);
                seen.add(&tally);
            }
            Ok(Err(e)) => misses.push(e),
            Err(_) => misses.push("trial panicked".to_owned()),
        }
    }
    let trials = times.len();
    Row {
        fault: "10. the process itself stalls 2 s".to_owned(),
        how: "std::thread::sleep(2 s) in a task of the pool's own (one-thread) runtime",
        outcome: Ok(Outcome::Summary {
            layer: format!(
                "stall counted in {counted} of {trials}; false evictions: {false_evictions}; time: until every idle member was re-probed"
            ),
            times,
            trials,
        }),
        misses,
        // Nothing probes them early: the heartbeats fall due (every member
        // aged through the stall), or a checkout probes a distrusted one.
        bound: Some(HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + HEARTBEAT_INTERVAL / 10),
        callers: seen,
    }
}

type StallResult = Result<(Duration, u64, u64, std::sync::Arc<Tally>), String>;

fn stall_trial() -> StallResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let rig = Rig::direct(builder("detection-stall")).await;
        rig.wait_full().await;
        let callers = Callers::start(&rig.pool, CALLERS, WAIT_TIMEOUT);
        sleep(HEARTBEAT_INTERVAL.mul_f64(1.0 + fastrand::f64())).await;
        let before = rig.pool.status();
        let probes_before = before.counters.probes_ok;
        tokio::spawn(async { std::thread::sleep(Duration::from_secs(2)) })
            .await
            .map_err(|e| e.to_string())?;
        let resumed = Instant::now();
        // Re-validated: at least one probe per idle member since.
        let mut revalidated = None;
        while resumed.elapsed() < Duration::from_secs(3) {
            let s = rig.pool.status();
            if revalidated.is_none() && s.counters.probes_ok >= probes_before + before.idle as u64 {
                revalidated = Some(resumed.elapsed());
            }
            sleep(Duration::from_millis(2)).await;
        }
        let after = rig.pool.status();
        let tally = callers.stop().await;
        rig.teardown().await;
        let evicted = failures_since(&after.counters.evicted, &before.counters.evicted);
        let stalls = after.counters.stalls - before.counters.stalls;
        let time = revalidated
            .ok_or_else(|| format!("idle members not re-probed within 3 s: {after:?}"))?;
        Ok((time, evicted, stalls, tally))
    })
}

/// A server that allows one heartbeat a second per connection, a pool
/// (the rig's) that sends one every 400 ms: time from the pool's start to
/// the last refusal (the interval has doubled to where the server is
/// content), failure evictions (none should be), callers' view.
async fn pings_row() -> Row {
    let (outcomes, seen) = many(TRIALS / 3, CONCURRENCY, || async {
        let server = Server::new()
            .min_heartbeat_interval(Duration::from_secs(1))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let pool = builder("detection-pings")
            .build(fault_support::manager(server.addr()))
            .expect("valid");
        let callers = Callers::start(&pool, CALLERS, WAIT_TIMEOUT);
        let started = Instant::now();
        let mut last_refusal = Duration::ZERO;
        let mut refused = 0;
        while started.elapsed() < Duration::from_secs(8) {
            let now = server.heartbeats_refused();
            if now != refused {
                refused = now;
                last_refusal = started.elapsed();
            }
            sleep(Duration::from_millis(5)).await;
        }
        let s = pool.status();
        let tally = callers.stop().await;
        pool.close();
        server.shutdown().await;
        let failures = failures_since(&s.counters.evicted, &livepool::Evictions::default());
        (
            Ok((last_refusal, failures, s.heartbeat_interval, refused)),
            Some(tally),
        )
    })
    .await;
    let (mut times, mut failures, mut intervals, mut misses) =
        (Vec::new(), 0, Vec::new(), Vec::new());
    for o in outcomes {
        match o {
            Ok((t, f, i, _)) => {
                times.push(t);
                failures += f;
                intervals.push(i.map_or("off".to_owned(), ms));
            }
            Err(m) => misses.push(m),
        }
    }
    intervals.sort();
    intervals.dedup();
    let trials = times.len();
    Row {
        fault: "11. server refuses heartbeats as too frequent (min 1 s; pool sends every 400 ms)"
            .to_owned(),
        how: "Server::min_heartbeat_interval(1 s): going-away too_many_pings",
        outcome: Ok(Outcome::Summary {
            layer: format!(
                "drained, interval doubled to {}; failure evictions: {failures}; time: start to the last refusal",
                intervals.join("/")
            ),
            times,
            trials,
        }),
        misses,
        bound: None,
        callers: seen,
    }
}
