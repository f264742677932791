//! Balancing with one endpoint 10× slower: power of two choices (over
//! peak-EWMA × pending) against round robin and random, in one process
//! run, with the all-healthy p99 as the yardstick.
//!
//! Three in-process reference servers each take 1 ms per request (and per
//! heartbeat); the slow one sits behind the fault proxy with 5 ms added each
//! way, so it answers in about 11 ms. `CALLERS` tasks loop get → call →
//! return for `RUN` per scenario; latency is the caller's whole request.
//!
//! `cargo bench --bench balance` (`BALANCE_RUN_MS` shortens each run).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use livepool::Pool;
use livepool::endpoints::{Balance, Endpoints, Want, discover};
use livepool::protocol::{RpcManager, Server, ServerHandle, ServerMode};
use livepool::testing::{Fault, FaultProxy};

const CALLERS: usize = 16;
const SERVICE: Duration = Duration::from_millis(1);
const EXTRA_EACH_WAY: Duration = Duration::from_millis(5);
const WARMUP: Duration = Duration::from_millis(500);

struct Backend {
    _server: ServerHandle,
    proxy: FaultProxy,
}

async fn backend() -> Backend {
    let server = Server::new()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind loopback");
    server.set_mode(ServerMode::Slow(SERVICE));
    let proxy = FaultProxy::start(server.addr()).await.expect("proxy");
    Backend {
        _server: server,
        proxy,
    }
}

struct Measured {
    requests: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
    per_sec: f64,
    on_slow: f64,
}

async fn run(
    balance: Balance,
    addrs: &[SocketAddr],
    slow: Option<SocketAddr>,
    for_: Duration,
) -> Measured {
    let set = Endpoints::builder()
        .name("balance")
        .balance(balance)
        .pool(
            Pool::builder()
                .max_size(CALLERS)
                .min_idle(2)
                .heartbeat_interval(Duration::from_millis(200))
                .heartbeat_timeout(Duration::from_millis(150))
                .wait_timeout(Duration::from_secs(2)),
        )
        .wait_timeout(Duration::from_secs(5))
        .build(
            discover::fixed(addrs.iter().map(|a| (*a, *a))),
            |a: &SocketAddr| RpcManager::new(*a),
        )
        .expect("build the set");
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let set = set.clone();
            let stop = Arc::clone(&stop);
            let measuring = Arc::clone(&measuring);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let (ok, endpoint) = match set.get(Want::Any).await {
                        Ok(mut member) => {
                            let endpoint = *livepool::endpoints::Member::endpoint(&member);
                            (
                                member.call(Bytes::from_static(b"x")).await.is_ok(),
                                Some(endpoint),
                            )
                        }
                        Err(_) => (false, None),
                    };
                    if measuring.load(Ordering::Relaxed) {
                        seen.push((started.elapsed(), ok, endpoint));
                    }
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(WARMUP).await;
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    tokio::time::sleep(for_).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("caller"));
    }
    set.close();
    let mut took: Vec<Duration> = all.iter().map(|(t, _, _)| *t).collect();
    took.sort();
    let at = |q: usize| {
        took.get((took.len() * q / 100).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let on_slow = all
        .iter()
        .filter(|(_, _, e)| e.is_some() && *e == slow)
        .count();
    Measured {
        requests: all.len(),
        errors: all.iter().filter(|(_, ok, _)| !ok).count(),
        p50: at(50),
        p99: at(99),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        on_slow: on_slow as f64 / all.len().max(1) as f64,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let for_ = std::env::var("BALANCE_RUN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_millis);
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(backend().await);
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.proxy.addr()).collect();
    let slow = addrs[2];
    let mut rows = Vec::new();
    let baseline = run(Balance::PowerOfTwo, &addrs, None, for_).await;
    rows.push(("all healthy", "p2c", baseline));
    backends[2].proxy.set_fault(Fault::Delay(EXTRA_EACH_WAY));
    for (name, balance) in [
        ("p2c", Balance::PowerOfTwo),
        ("round robin", Balance::RoundRobin),
        ("random", Balance::Random),
    ] {
        rows.push((
            "one 10x slower",
            name,
            run(balance, &addrs, Some(slow), for_).await,
        ));
    }
    let base = &rows[0].2;
    let (base_p99, base_rate) = (base.p99, base.per_sec);
    println!(
        "\nbalance: {CALLERS} callers, 3 endpoints ({SERVICE:?} per request; the slow one +{EXTRA_EACH_WAY:?} each way), {for_:?} per run"
    );
    println!(
        "{:<15} {:<12} {:>9} {:>6} {:>10} {:>10} {:>9} {:>8} {:>11} {:>9}",
        "scenario",
        "balance",
        "requests",
        "errors",
        "p50",
        "p99",
        "req/s",
        "on slow",
        "p99/healthy",
        "rate/healthy"
    );
    for (scenario, balance, m) in &rows {
        println!(
            "{:<15} {:<12} {:>9} {:>6} {:>10.2?} {:>10.2?} {:>9.0} {:>7.1}% {:>10.2}x {:>11.2}x",
            scenario,
            balance,
            m.requests,
            m.errors,
            m.p50,
            m.p99,
            m.per_sec,
            m.on_slow * 100.0,
            m.p99.as_secs_f64() / base_p99.as_secs_f64(),
            m.per_sec / base_rate,
        );
    }
    let p2c = &rows[1].2;
    let ratio = p2c.p99.as_secs_f64() / base_p99.as_secs_f64();
    println!(
        "goal: p2c p99 within 1.5x of the all-healthy p99: {ratio:.2}x ({})",
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );
}
