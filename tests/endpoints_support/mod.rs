//! What the endpoint-set tests share: reference servers (optionally behind
//! the fault proxy), a set over them with short timings, and callers in a
//! loop whose every request is recorded, so a test can say what callers saw
//! in each phase (requests, errors, p99).

#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use livepool::Pool;
use livepool::endpoints::{Balance, Ejection, Endpoints, Member, Want, discover};
use livepool::protocol::{RpcManager, Server, ServerHandle};
use livepool::testing::FaultProxy;
use tokio::task::JoinHandle;

/// Bound on every wait for something that should happen: far above what
/// loopback needs, so a noisy machine does not fail a test.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// Each endpoint's heartbeat interval in these tests.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// Each endpoint's heartbeat (and connect) timeout.
pub const TIMEOUT: Duration = Duration::from_millis(150);
/// Each call's timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(300);

pub type Set = Endpoints<String, RpcManager>;

pub async fn server() -> ServerHandle {
    Server::new()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind loopback")
}

/// A reference server behind a fault proxy: the set connects to the proxy.
pub struct Backend {
    pub server: ServerHandle,
    pub proxy: FaultProxy,
}

impl Backend {
    pub async fn start() -> Backend {
        let server = server().await;
        let proxy = FaultProxy::start(server.addr()).await.expect("start proxy");
        Backend { server, proxy }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }
}

/// The manager every endpoint gets: roles tracked, calls bounded.
pub fn manager(addr: &SocketAddr) -> RpcManager {
    RpcManager::new(*addr)
        .request_timeout(Some(CALL_TIMEOUT))
        .track_roles(true)
}

/// Per-endpoint pools with short timings: a fault is noticed within a few
/// hundred milliseconds.
pub fn pool() -> livepool::Builder {
    Pool::builder()
        .max_size(8)
        .min_idle(2)
        .heartbeat_interval(HEARTBEAT)
        .heartbeat_timeout(TIMEOUT)
        .validate_after(HEARTBEAT)
        .connect_timeout(TIMEOUT)
        .wait_timeout(Duration::from_millis(500))
        .refill_backoff_max(Duration::from_millis(200))
}

/// An ejection policy that acts within these tests' time.
pub fn ejection() -> Ejection {
    Ejection {
        failures: 3,
        base: Duration::from_millis(300),
        max: Duration::from_secs(2),
        max_share: 0.5,
        jitter: 0.2,
    }
}

/// A set over `(key, address)` pairs that never change.
pub fn fixed_set(endpoints: Vec<(String, SocketAddr)>) -> Set {
    Endpoints::builder()
        .name("test")
        .pool(pool())
        .wait_timeout(PATIENCE)
        .ejection(ejection())
        .observe_every(Duration::from_millis(50))
        .balance(Balance::PowerOfTwo)
        .build(discover::fixed(endpoints), manager)
        .expect("build the set")
}

/// Waits until `check` holds, failing the test after [`PATIENCE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request as a caller saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started: Instant,
    pub took: Duration,
    /// The endpoint that served it (`None` if `get` failed).
    pub endpoint: Option<String>,
    /// What failed, if anything.
    pub error: Option<String>,
}

/// Callers in a loop: each gets a member, makes one call, returns it.
pub struct Callers {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Callers {
    /// `n` callers asking for `want`, each pausing `pace` between requests
    /// (so the machine is not saturated and timings mean something).
    pub fn start(set: &Set, n: usize, want: Want, pace: Duration) -> Callers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..n)
            .map(|_| {
                let set = set.clone();
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        seen.push(one_request(&set, want).await);
                        tokio::time::sleep(pace).await;
                    }
                    seen
                })
            })
            .collect();
        Callers { stop, tasks }
    }

    /// Stops every caller and gathers what they saw, in start order.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("caller task"));
        }
        all.sort_by_key(|o| o.started);
        all
    }
}

async fn one_request(set: &Set, want: Want) -> Outcome {
    let started = Instant::now();
    let (endpoint, error) = match set.get(want).await {
        Err(err) => (None, Some(format!("get: {err:?}"))),
        Ok(mut member) => {
            let endpoint = Member::endpoint(&member).clone();
            match member.call(Bytes::from_static(b"ping")).await {
                Ok(reply) if reply == "ping" => (Some(endpoint), None),
                Ok(reply) => (Some(endpoint), Some(format!("wrong reply {reply:?}"))),
                Err(err) => (Some(endpoint), Some(format!("call: {err}"))),
            }
        }
    };
    Outcome {
        started,
        took: started.elapsed(),
        endpoint,
        error,
    }
}

/// What callers saw in one phase.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub requests: usize,
    pub errors: usize,
    pub p99: Duration,
}

/// The requests started in `[from, to)`.
pub fn phase(name: &str, outcomes: &[Outcome], from: Instant, to: Instant) -> Phase {
    let inside: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.started >= from && o.started < to)
        .collect();
    let mut took: Vec<Duration> = inside.iter().map(|o| o.took).collect();
    took.sort();
    let p99 = took
        .get((took.len() * 99 / 100).min(took.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Phase {
        name: name.to_string(),
        requests: inside.len(),
        errors: inside.iter().filter(|o| o.error.is_some()).count(),
        p99,
    }
}

/// Prints phases as a table (visible with `--nocapture`).
pub fn print_phases(title: &str, phases: &[Phase]) {
    println!("{title}");
    println!(
        "{:<24} {:>9} {:>7} {:>10}",
        "phase", "requests", "errors", "p99"
    );
    for p in phases {
        println!(
            "{:<24} {:>9} {:>7} {:>10.1?}",
            p.name, p.requests, p.errors, p.p99
        );
    }
}
