//! Endpoints failing over: three reference servers behind the fault proxy,
//! one endpoint set over them, 12 readers and 4 writers in a loop, and a
//! run of the things that happen to real fleets, a few seconds apart:
//!
//! 1. discovery adds a fourth server, then removes it (it drains);
//! 2. a graceful rolling restart: each server sends its going-away frame,
//!    finishes what is in flight, and a new one takes its port;
//! 3. a hard kill: one server's connections are reset and its port refuses
//!    for two seconds;
//! 4. a hung application: one server reads and never answers, its kernel
//!    still ACKing;
//! 5. a role change: one server is demoted to read-only; writers (asking
//!    for a primary) must leave it, readers may stay.
//!
//! ```sh
//! cargo run --release --example failover
//! ```
//!
//! The set's own tracing events (endpoint added, draining, down, back, role
//! seen) are captured and printed as a timeline after each phase, so
//! printing never skews what is measured; a table of what callers saw per
//! phase (requests completed in it, errors, p99) ends the run.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use livepool::endpoints::discover::{self, Changes};
use livepool::endpoints::{Ejection, Endpoints, Member, Want};
use livepool::protocol::{RpcManager, Server, ServerHandle, ServerMode};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Pool, Role};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

const READERS: usize = 12;
const WRITERS: usize = 4;
const HEARTBEAT: Duration = Duration::from_millis(250);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// How long each caller rests between requests.
const PACE: Duration = Duration::from_millis(1);

type Set = Endpoints<String, RpcManager>;

/// One reference server and the proxy in front of it; the set only knows
/// the proxy's address, so a server can be restarted, killed or hung
/// behind it.
struct Backend {
    server: ServerHandle,
    proxy: FaultProxy,
}

impl Backend {
    async fn start() -> Backend {
        let server = Server::new()
            .bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("bind loopback");
        server.set_mode(ServerMode::Slow(Duration::from_micros(500)));
        let proxy = FaultProxy::start(server.addr()).await.expect("proxy");
        Backend { server, proxy }
    }

    /// A graceful restart: going-away, finish in flight, a new server on
    /// the same port.
    async fn restart(&mut self) {
        let addr = self.server.addr();
        self.server
            .shutdown_gracefully(Duration::from_secs(5))
            .await;
        self.server = Server::new().bind(addr).await.expect("rebind the port");
        self.server
            .set_mode(ServerMode::Slow(Duration::from_micros(500)));
    }
}

/// The set's tracing events, with when they happened.
#[derive(Default)]
struct Timeline {
    start: Mutex<Option<Instant>>,
    lines: Mutex<Vec<(Instant, String)>>,
}

impl Timeline {
    fn note(&self, line: impl Into<String>) {
        self.lines
            .lock()
            .expect("timeline")
            .push((Instant::now(), line.into()));
    }

    /// Prints what was noted since the last call.
    fn flush(&self) {
        let start = self
            .start
            .lock()
            .expect("timeline")
            .unwrap_or_else(Instant::now);
        for (at, line) in self.lines.lock().expect("timeline").drain(..) {
            println!(
                "  {:>6.2}s  {line}",
                at.saturating_duration_since(start).as_secs_f64()
            );
        }
    }
}

/// Captures the set's events (target `livepool::endpoints`) into the timeline.
struct Capture(Arc<Timeline>);

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "pool" => {}
            name => self.rest.push(format!("{name}={value:?}")),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.rest.push(format!("{}={value}", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("livepool::endpoints") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0
            .note(format!("{:<26} {}", fields.message, fields.rest.join(" ")));
    }
}

/// One request as a caller saw it.
struct Outcome {
    started: Instant,
    took: Duration,
    endpoint: Option<String>,
    write: bool,
    /// What failed, if anything.
    error: Option<String>,
}

impl Outcome {
    /// When the caller saw the result: what a phase counts it by, so a
    /// request in flight when a fault struck counts in that fault's phase.
    fn ended(&self) -> Instant {
        self.started + self.took
    }
}

struct Callers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Callers {
    fn start(set: &Set) -> Callers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..READERS + WRITERS)
            .map(|i| {
                let (set, stop) = (set.clone(), Arc::clone(&stop));
                let write = i < WRITERS;
                let want = if write { Want::Primary } else { Want::Any };
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let (endpoint, error) = match set.get(want).await {
                            Ok(mut member) => {
                                let key = Member::endpoint(&member).clone();
                                let call = member.call(Bytes::from_static(b"x")).await;
                                (Some(key), call.err().map(|e| e.to_string()))
                            }
                            Err(e) => (None, Some(e.to_string())),
                        };
                        seen.push(Outcome {
                            started,
                            took: started.elapsed(),
                            endpoint,
                            write,
                            error,
                        });
                        tokio::time::sleep(PACE).await;
                    }
                    seen
                })
            })
            .collect();
        Callers { stop, tasks }
    }

    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("caller"));
        }
        all
    }
}

/// What callers saw in one phase.
struct Row {
    name: &'static str,
    requests: usize,
    errors: usize,
    p99: Duration,
    note: String,
}

fn row(name: &'static str, outcomes: &[Outcome], from: Instant, to: Instant, note: String) -> Row {
    let inside: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.ended() >= from && o.ended() < to)
        .collect();
    let mut took: Vec<Duration> = inside.iter().map(|o| o.took).collect();
    took.sort();
    let p99 = took
        .get((took.len() * 99 / 100).min(took.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Row {
        name,
        requests: inside.len(),
        errors: inside.iter().filter(|o| o.error.is_some()).count(),
        p99,
        note,
    }
}

/// Runs one phase: `act`, then `settle` for the set to show its effect.
async fn phase<F: std::future::Future<Output = ()>>(
    name: &'static str,
    timeline: &Timeline,
    marks: &mut Vec<(&'static str, Instant)>,
    act: F,
    settle: Duration,
) {
    marks.push((name, Instant::now()));
    timeline.note(format!("--- {name}"));
    act.await;
    tokio::time::sleep(settle).await;
    timeline.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let timeline = Arc::new(Timeline::default());
    tracing_subscriber::registry()
        .with(Capture(Arc::clone(&timeline)))
        .init();
    let mut backends = Vec::new();
    for _ in 0..4 {
        backends.push(Backend::start().await);
    }
    let (changes, discovery): (Changes<String, SocketAddr>, _) = discover::channel(8);
    let set: Set = Endpoints::builder()
        .name("failover")
        .pool(
            Pool::builder()
                .max_size(8)
                .min_idle(2)
                .heartbeat_interval(HEARTBEAT)
                .heartbeat_timeout(HEARTBEAT_TIMEOUT)
                .validate_after(HEARTBEAT)
                .connect_timeout(HEARTBEAT_TIMEOUT)
                .wait_timeout(Duration::from_millis(500))
                .refill_backoff_max(Duration::from_millis(500)),
        )
        .ejection(Ejection {
            failures: 3,
            base: Duration::from_millis(500),
            ..Ejection::default()
        })
        .wait_timeout(Duration::from_secs(3))
        .build(discovery, |addr: &SocketAddr| {
            RpcManager::new(*addr)
                .request_timeout(Some(CALL_TIMEOUT))
                .track_roles(true)
        })
        .expect("build the set");
    *timeline.start.lock().expect("timeline") = Some(Instant::now());
    println!(
        "failover: {READERS} readers (any role) and {WRITERS} writers (primary only) over s0..s2, each behind the fault proxy\n"
    );
    for (i, b) in backends.iter().take(3).enumerate() {
        changes
            .insert(format!("s{i}"), b.proxy.addr())
            .await
            .expect("set");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let callers = Callers::start(&set);
    let mut marks = Vec::new();
    let ms = Duration::from_millis;

    phase("steady", &timeline, &mut marks, async {}, ms(1500)).await;
    let s3 = backends[3].proxy.addr();
    phase(
        "discovery adds s3",
        &timeline,
        &mut marks,
        async {
            changes.insert("s3".into(), s3).await.expect("set");
        },
        ms(1500),
    )
    .await;
    phase(
        "discovery removes s3",
        &timeline,
        &mut marks,
        async {
            changes.remove("s3".into()).await.expect("set");
        },
        ms(1500),
    )
    .await;
    for i in 0..3 {
        let name = [
            "rolling restart s0",
            "rolling restart s1",
            "rolling restart s2",
        ][i];
        let backend = &mut backends[i];
        phase(name, &timeline, &mut marks, backend.restart(), ms(800)).await;
    }
    phase(
        "hard kill s1",
        &timeline,
        &mut marks,
        async {
            backends[1].proxy.set_refusing(true);
            backends[1].proxy.set_fault(Fault::Reset);
        },
        ms(2000),
    )
    .await;
    phase(
        "s1 back",
        &timeline,
        &mut marks,
        async {
            backends[1].proxy.set_fault(Fault::Pass);
            backends[1].proxy.set_refusing(false);
        },
        ms(2000),
    )
    .await;
    phase(
        "s2 hangs",
        &timeline,
        &mut marks,
        async {
            backends[2].server.set_mode(ServerMode::Hang);
        },
        ms(2000),
    )
    .await;
    phase(
        "s2 answers again",
        &timeline,
        &mut marks,
        async {
            backends[2]
                .server
                .set_mode(ServerMode::Slow(Duration::from_micros(500)));
        },
        ms(2000),
    )
    .await;
    let demoted_at = Instant::now();
    phase(
        "s0 demoted to read-only",
        &timeline,
        &mut marks,
        async {
            backends[0].server.set_role(Role::ReadOnly);
        },
        ms(2000),
    )
    .await;
    let end = Instant::now();
    let outcomes = callers.stop().await;
    set.close();

    let detect = HEARTBEAT + HEARTBEAT / 10 + HEARTBEAT_TIMEOUT;
    let rows: Vec<Row> = marks
        .iter()
        .enumerate()
        .map(|(i, (name, from))| {
            let to = marks.get(i + 1).map_or(end, |(_, t)| *t);
            let on = |key: &str| {
                outcomes
                    .iter()
                    .filter(|o| o.ended() >= *from && o.ended() < to)
                    .filter(|o| o.endpoint.as_deref() == Some(key))
                    .count()
            };
            let note = match *name {
                "discovery adds s3" => format!("{} served by s3", on("s3")),
                "discovery removes s3" => {
                    format!("{} served by s3 (in flight at removal)", on("s3"))
                }
                "s0 demoted to read-only" => {
                    let late_writes = outcomes
                        .iter()
                        .filter(|o| o.write && o.started > demoted_at + detect)
                        .filter(|o| o.endpoint.as_deref() == Some("s0"))
                        .count();
                    format!(
                        "{late_writes} writes on s0 after {detect:?}; {} reads on s0",
                        on("s0")
                    )
                }
                _ => String::new(),
            };
            // The first error of the phase, and where.
            let first_error = outcomes
                .iter()
                .filter(|o| o.ended() >= *from && o.ended() < to)
                .find_map(|o| Some((o.endpoint.as_deref()?, o.error.as_deref()?)));
            let note = match first_error {
                Some((key, error)) => format!("{note} first error: {key}: {error}"),
                None => note,
            };
            row(name, &outcomes, *from, to, note)
        })
        .collect();
    println!("\nwhat callers saw, per phase");
    println!(
        "{:<24} {:>9} {:>7} {:>10}  note",
        "phase", "requests", "errors", "p99"
    );
    for r in &rows {
        println!(
            "{:<24} {:>9} {:>7} {:>10.1?}  {}",
            r.name, r.requests, r.errors, r.p99, r.note
        );
    }
    let errors: usize = rows.iter().map(|r| r.errors).sum();
    println!("\n{} requests, {errors} errors in all", outcomes.len());
}
