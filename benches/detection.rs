//! How long each fault goes unnoticed: time from injection to eviction, and
//! which layer noticed (the eviction reason), over many trials per fault.
//!
//! Each trial is its own server, fault proxy and pool (the rig of the fault
//! tests), so trials run side by side; each injects its fault at a random
//! moment of the heartbeat cycle. Fault 12 (kernel keepalive alone) needs root
//! and iproute2; without them its row says why it did not run.
//!
//! `cargo bench --bench detection`; the table is printed and written to
//! `target/detection-summary.md`.

#[path = "../tests/fault_support/mod.rs"]
mod fault_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use fault_support::netns::Netns;
use fault_support::{HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, Rig, builder, first_failure};
use livepool::protocol::{RpcManager, ServerMode};
use livepool::tcp::{Keepalive, TcpOptions};
use livepool::testing::Fault;
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
    outcome: Result<Vec<(EvictReason, Duration)>, String>,
    misses: Vec<String>,
}

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
        let (trials, misses) = run_trials(injection).await;
        eprintln!(
            "{fault}: {} trials in {:?}",
            trials.len(),
            started.elapsed()
        );
        rows.push(Row {
            fault: fault.to_owned(),
            how,
            outcome: Ok(trials),
            misses,
        });
    }
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
        outcome,
        misses: Vec::new(),
    });
    rows
}

/// `TRIALS` trials of one fault, `CONCURRENCY` at a time.
async fn run_trials(injection: Injection) -> (Vec<(EvictReason, Duration)>, Vec<String>) {
    let mut results = Vec::new();
    let mut misses = Vec::new();
    let mut running = JoinSet::new();
    for _ in 0..TRIALS {
        if running.len() == CONCURRENCY {
            collect(running.join_next().await, &mut results, &mut misses);
        }
        running.spawn(trial(injection));
    }
    while let Some(done) = running.join_next().await {
        collect(Some(done), &mut results, &mut misses);
    }
    (results, misses)
}

type TrialResult = Result<(EvictReason, Duration), String>;

fn collect(
    done: Option<Result<TrialResult, tokio::task::JoinError>>,
    results: &mut Vec<(EvictReason, Duration)>,
    misses: &mut Vec<String>,
) {
    match done {
        Some(Ok(Ok(result))) => results.push(result),
        Some(Ok(Err(miss))) => misses.push(miss),
        Some(Err(e)) => misses.push(format!("trial panicked: {e}")),
        None => {}
    }
}

/// One rig, one fault at a random moment of the heartbeat cycle, the first
/// failure eviction after it.
async fn trial(injection: Injection) -> TrialResult {
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
    sleep(HEARTBEAT_INTERVAL.mul_f64(fastrand::f64())).await;
    let before = rig.pool.status().counters.evicted;
    let injected = Instant::now();
    match (injection, target) {
        (Injection::Proxy(fault), Some(target)) => {
            if !rig.proxy().fault_connection(target.proxy_conn, fault) {
                return Err("target connection gone before the fault".to_owned());
            }
        }
        (Injection::Server(mode), _) => rig.server.set_mode(mode),
        (Injection::Proxy(_), None) => unreachable!("proxy trials have a target"),
    }
    let first = first_failure(&rig.pool, &before, injected, GIVE_UP).await;
    rig.server.set_mode(ServerMode::Normal);
    rig.teardown().await;
    first.map_err(|s| format!("nothing evicted within {GIVE_UP:?}: {s:?}"))
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
        "| fault | injected | detecting layer (eviction reason: trials) | median | worst | trials |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
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
    let trials = match &row.outcome {
        Err(why) => {
            let why = why.replace('|', "/");
            return format!(
                "| {} | {} | NOT RUN: {why} | - | - | 0 |",
                row.fault, row.how
            );
        }
        Ok(trials) if trials.is_empty() => {
            let why = row.misses.first().map_or("", String::as_str);
            return format!(
                "| {} | {} | every trial missed: {why} | - | - | 0 |",
                row.fault, row.how
            );
        }
        Ok(trials) => trials,
    };
    let mut times: Vec<Duration> = trials.iter().map(|(_, t)| *t).collect();
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (reason, _) in trials {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    let layers: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{reason}: {n}"))
        .collect();
    let missed = match row.misses.len() {
        0 => String::new(),
        n => format!(" ({n} missed)"),
    };
    format!(
        "| {} | {} | {} | {} | {} | {}{missed} |",
        row.fault,
        row.how,
        layers.join(", "),
        ms(median),
        ms(worst),
        trials.len(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
