//! Short connections against long ones, over the reference protocol on
//! loopback: what a pool of long-lived connections saves, and what livepool's
//! liveness bookkeeping costs on top of a bare long connection.
//!
//! Each request is an echo of a 64-byte body. Four competitors, all in one run:
//!
//! * `short`: a new connection per request (connect, call, close);
//! * `raw_long`: one `RpcConnection` per task, kept for the whole run: the floor;
//! * `livepool`: `Pool<RpcManager>` (get, call, return), default settings
//!   except `max_size` = 16;
//! * `deadpool`: deadpool 0.13 with the equivalent manager (create =
//!   `RpcConnection::connect`, recycle = the connection's `condition()` is
//!   `Ready`, else an error), `max_size` = 16.
//!
//! with 1 and 16 client tasks. Two measurements per competitor and task count:
//!
//! 1. A fixed-iteration run (20,000 requests, in 4 rounds that rotate the
//!    order of the competitors so drift on a shared machine hits all alike)
//!    that times every request: requests/s, p50, p99 and p99.9 from a sorted
//!    `Vec<Duration>` (exact; no histogram crate needed at this size).
//! 2. criterion (`target/criterion/short_vs_long_*`), whose mean time per
//!    request is the inverse of the throughput.
//!
//! Then it prints a table and the ratios livepool / raw_long (target ≥ 0.97),
//! livepool / deadpool and livepool / short, writes them to
//! `target/short_vs_long-summary.md`, and draws the latency distributions of
//! every competitor side by side in `docs/short_vs_long.svg`.
//!
//! Runtime: one multi-thread tokio runtime with 2 workers runs the clients and
//! the echo server alike. The machine the bench was written for has 2 cores:
//! a separate server runtime would put 3 or more busy threads on them, and the
//! OS preempting one in the middle of a round trip would show up as tail
//! latency that belongs to neither side. In one runtime the server's
//! connection task and the client task it answers hand over through tokio's
//! scheduler, the same for every competitor, so the comparison stays fair.
//!
//! `short` leaves each closed connection in TIME_WAIT on the client side; the
//! bench relies on Linux reusing those for loopback (`net.ipv4.tcp_tw_reuse`,
//! default 2) and warns if it is off, as ports may then run out.
//!
//! Layouts: both of these run, one after the other, and are reported side by
//! side. `shared` is described above. `split` puts the server in a child
//! process pinned to CPU 1 and this process (clients and pools, one worker)
//! on CPU 0, with `taskset` (util-linux): nothing migrates between cores and
//! client and server never preempt each other, so its numbers are steady
//! from run to run where `shared` moves by ±10 %.
//!
//! Under `cargo test --benches` every step runs on a small scale and nothing
//! is written.

mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use livepool::protocol::{
    ClientError, DEFAULT_MAX_BODY, RpcConnection, RpcManager, Server, ServerHandle,
};
use livepool::tcp::TcpOptions;
use livepool::{Condition, Pool};
use plotters::prelude::*;
use tokio::runtime::Runtime;

use common::{Table, fail, full_run, write_summary};

const BODY_LEN: usize = 64;
const TASK_COUNTS: [usize; 2] = [1, 16];
/// Both pools get one member per task of the busiest case, so no task queues.
const POOL_SIZE: usize = 16;
const WORKERS: usize = 2;
/// Requests timed one by one, per competitor and task count.
const SAMPLED_REQUESTS: u64 = 20_000;
const SAMPLED_REQUESTS_TEST: u64 = 400;
const ROUNDS: u64 = 4;
const PLOT: &str = "docs/short_vs_long.svg";

type BoxError = Box<dyn Error + Send + Sync>;

/// Makes this binary the echo server of the `split` layout.
const ROLE_VAR: &str = "LIVEPOOL_SHORT_VS_LONG_ROLE";

/// The machine's CPUs, read before the `split` layout pins this process.
static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Where the server runs relative to the clients. Both are measured, one
/// after the other, and reported side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Server and clients in one multi-thread runtime of [`WORKERS`]
    /// workers: what an application with an in-process backend sees, and
    /// the layout of the earlier published figures. On 2 cores, whether a
    /// connection's server task lands on its client's worker moves the
    /// numbers from run to run.
    Shared,
    /// The server in a child process pinned to CPU 1 (one worker), the
    /// clients in this process pinned to CPU 0 (one worker): each side has a
    /// core of its own, nothing migrates, and the numbers are steady.
    Split,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Shared => "shared",
            Layout::Split => "split",
        }
    }

    fn describe(self) -> String {
        match self {
            Layout::Shared => format!(
                "server and clients in one multi-thread tokio runtime with {WORKERS} workers"
            ),
            Layout::Split => "server in a child process pinned to CPU 1 (1 worker), clients in \
                              this process pinned to CPU 0 (1 worker), with `taskset`"
                .to_owned(),
        }
    }
}

/// Pins every thread of this process (and those it starts later) to `cpus`.
fn pin_self(cpus: &str) -> Result<(), BoxError> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset exited with {status}").into())
    }
}

/// The `split` layout's server: echo on an ephemeral port, its address on
/// stdout, until stdin closes.
fn serve_child() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("server: building the runtime", e));
    let server = runtime
        .block_on(async {
            Server::new()
                .max_connections(4096)
                .bind("127.0.0.1:0".parse().map_err(|_| "bad address")?)
                .await
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| fail("server: binding", e));
    println!("addr {}", server.addr());
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    runtime.block_on(server.shutdown());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Competitor {
    Short,
    RawLong,
    Livepool,
    Deadpool,
}

impl Competitor {
    const ALL: [Competitor; 4] = [
        Competitor::Short,
        Competitor::RawLong,
        Competitor::Livepool,
        Competitor::Deadpool,
    ];

    fn name(self) -> &'static str {
        match self {
            Competitor::Short => "short",
            Competitor::RawLong => "raw_long",
            Competitor::Livepool => "livepool",
            Competitor::Deadpool => "deadpool",
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Competitor::Short => RGBColor(120, 120, 120),
            Competitor::RawLong => RGBColor(0, 0, 0),
            Competitor::Livepool => RGBColor(214, 39, 40),
            Competitor::Deadpool => RGBColor(31, 119, 180),
        }
    }
}

/// deadpool's side of the comparison: the same connection and the same cheap
/// check livepool's `RpcManager` uses on return, done by deadpool on checkout.
struct DeadpoolRpc {
    addr: std::net::SocketAddr,
    tcp: TcpOptions,
}

impl managed::Manager for DeadpoolRpc {
    type Type = RpcConnection;
    type Error = ClientError;

    async fn create(&self) -> Result<RpcConnection, ClientError> {
        RpcConnection::connect(self.addr, &self.tcp, DEFAULT_MAX_BODY).await
    }

    async fn recycle(&self, conn: &mut RpcConnection, _: &Metrics) -> RecycleResult<ClientError> {
        match conn.condition() {
            Condition::Ready => Ok(()),
            condition => Err(RecycleError::message(format!(
                "connection is {condition:?}"
            ))),
        }
    }
}

/// The server and every competitor's connections, built once and shared by
/// every round.
struct Bed {
    /// The in-process server of the `shared` layout; `None` when it runs in
    /// a child process.
    server: Option<ServerHandle>,
    addr: std::net::SocketAddr,
    tcp: TcpOptions,
    body: Bytes,
    /// `raw_long`'s connections: each task takes one for a round and puts it back.
    raw: Mutex<Vec<RpcConnection>>,
    livepool: Pool<RpcManager>,
    deadpool: managed::Pool<DeadpoolRpc>,
}

/// What one task uses to send its requests.
enum Client {
    Short,
    Raw(RpcConnection),
    Livepool,
    Deadpool,
}

impl Bed {
    /// Against the server at `addr`, or, with `None`, one started here.
    async fn new(addr: Option<std::net::SocketAddr>) -> Result<Bed, BoxError> {
        let (server, addr) = match addr {
            Some(addr) => (None, addr),
            None => {
                let server = Server::new()
                    .max_connections(4096)
                    .bind("127.0.0.1:0".parse()?)
                    .await?;
                let addr = server.addr();
                (Some(server), addr)
            }
        };
        let tcp = TcpOptions::default();
        let mut raw = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            raw.push(RpcConnection::connect(addr, &tcp, DEFAULT_MAX_BODY).await?);
        }
        let livepool = Pool::builder()
            .name("short_vs_long")
            .max_size(POOL_SIZE)
            .build(RpcManager::new(addr))?;
        let deadpool = managed::Pool::builder(DeadpoolRpc {
            addr,
            tcp: tcp.clone(),
        })
        .max_size(POOL_SIZE)
        .build()?;
        // Both pools open all their connections now, outside any measurement.
        let mut held = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            held.push(livepool.get().await?);
        }
        drop(held);
        let mut held = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            held.push(deadpool.get().await?);
        }
        drop(held);
        Ok(Bed {
            server,
            addr,
            tcp,
            body: Bytes::from(vec![b'x'; BODY_LEN]),
            raw: Mutex::new(raw),
            livepool,
            deadpool,
        })
    }

    fn client(&self, who: Competitor) -> Result<Client, BoxError> {
        Ok(match who {
            Competitor::Short => Client::Short,
            Competitor::RawLong => {
                let conn = self
                    .raw
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop();
                Client::Raw(conn.ok_or("more tasks than raw connections")?)
            }
            Competitor::Livepool => Client::Livepool,
            Competitor::Deadpool => Client::Deadpool,
        })
    }

    /// One request, everything included: connect and close for `short`, get
    /// and return for the pools.
    async fn request(&self, client: &mut Client) -> Result<(), BoxError> {
        let reply = match client {
            Client::Short => {
                let mut conn =
                    RpcConnection::connect(self.addr, &self.tcp, DEFAULT_MAX_BODY).await?;
                conn.call(self.body.clone()).await?
            }
            Client::Raw(conn) => conn.call(self.body.clone()).await?,
            Client::Livepool => {
                let mut conn = self.livepool.get().await?;
                conn.call(self.body.clone()).await?
            }
            Client::Deadpool => {
                let mut conn = self.deadpool.get().await?;
                conn.call(self.body.clone()).await?
            }
        };
        if reply.len() != BODY_LEN {
            return Err(format!("echo of {BODY_LEN} bytes came back as {}", reply.len()).into());
        }
        Ok(())
    }

    /// One task's share of a round; with `record`, the latency of each request.
    async fn task(
        &self,
        who: Competitor,
        requests: u64,
        record: bool,
    ) -> Result<Vec<Duration>, BoxError> {
        let mut client = self.client(who)?;
        let mut latencies = Vec::with_capacity(if record { requests as usize } else { 0 });
        let mut outcome = Ok(());
        for _ in 0..requests {
            let started = record.then(Instant::now);
            if let Err(e) = self.request(&mut client).await {
                outcome = Err(e);
                break;
            }
            if let Some(started) = started {
                latencies.push(started.elapsed());
            }
        }
        if let Client::Raw(conn) = client {
            self.raw
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
        outcome.map(|()| latencies)
    }
}

struct Round {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `requests` requests of `who`, split as evenly as can be over `tasks` tasks
/// started together; the wall time from the first spawn to the last join.
async fn round(
    bed: &Arc<Bed>,
    who: Competitor,
    tasks: usize,
    requests: u64,
    record: bool,
) -> Result<Round, BoxError> {
    let tasks_u64 = tasks as u64;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks_u64)
        .map(|i| {
            let share = requests / tasks_u64 + u64::from(i < requests % tasks_u64);
            let bed = Arc::clone(bed);
            tokio::spawn(async move { bed.task(who, share, record).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut first_error: Option<BoxError> = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(task_latencies)) => latencies.extend(task_latencies),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Box::new(e));
            }
        }
    }
    let elapsed = started.elapsed();
    match first_error {
        Some(e) => Err(e),
        None => Ok(Round { elapsed, latencies }),
    }
}

/// The fixed-iteration run of one competitor at one task count.
struct Sampled {
    requests: u64,
    elapsed: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
}

impl Sampled {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, `p` in 0.0..=1.0.
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }
}

type Key = (usize, Competitor);

/// Every competitor at every task count, `requests` each, timed per request,
/// in `ROUNDS` rounds with the order of competitors rotated each round.
async fn sample_all(bed: &Arc<Bed>, requests: u64) -> Result<BTreeMap<Key, Sampled>, BoxError> {
    let mut sampled: BTreeMap<Key, Sampled> = BTreeMap::new();
    let per_round = requests.div_ceil(ROUNDS);
    for tasks in TASK_COUNTS {
        for r in 0..ROUNDS as usize {
            for k in 0..Competitor::ALL.len() {
                let who = Competitor::ALL[(k + r) % Competitor::ALL.len()];
                let done = round(bed, who, tasks, per_round, true).await?;
                let entry = sampled.entry((tasks, who)).or_insert(Sampled {
                    requests: 0,
                    elapsed: Duration::ZERO,
                    latencies: Vec::new(),
                });
                entry.requests += per_round;
                entry.elapsed += done.elapsed;
                entry.latencies.extend(done.latencies);
            }
        }
    }
    for s in sampled.values_mut() {
        s.latencies.sort_unstable();
    }
    Ok(sampled)
}

/// What criterion's samples added up to, per benchmark: total requests and
/// total time, so the summary can quote criterion's run next to the sampled one.
#[derive(Default)]
struct CriterionTotals(Mutex<BTreeMap<Key, (u64, Duration)>>);

impl CriterionTotals {
    fn add(&self, key: Key, requests: u64, elapsed: Duration) {
        let mut totals = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = totals.entry(key).or_insert((0, Duration::ZERO));
        entry.0 += requests;
        entry.1 += elapsed;
    }

    fn mean(&self, key: Key) -> Option<Duration> {
        let totals = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        totals
            .get(&key)
            .filter(|(n, _)| *n > 0)
            .map(|(n, t)| t.div_f64(*n as f64))
    }
}

fn run_criterion(
    criterion: &mut Criterion,
    layout: Layout,
    runtime: &Runtime,
    bed: &Arc<Bed>,
    totals: &Arc<CriterionTotals>,
) {
    for tasks in TASK_COUNTS {
        // The shared layout keeps the group names of the earlier runs.
        let name = match layout {
            Layout::Shared => format!("short_vs_long_{tasks}_tasks"),
            Layout::Split => format!("short_vs_long_{}_{tasks}_tasks", layout.name()),
        };
        let mut group = criterion.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        for who in Competitor::ALL {
            group.bench_function(who.name(), |b| {
                b.to_async(runtime).iter_custom(|iters| {
                    let bed = Arc::clone(bed);
                    let totals = Arc::clone(totals);
                    async move {
                        match round(&bed, who, tasks, iters, false).await {
                            Ok(done) => {
                                totals.add((tasks, who), iters, done.elapsed);
                                done.elapsed
                            }
                            Err(e) => fail(&format!("{} with {tasks} tasks", who.name()), e),
                        }
                    }
                })
            });
        }
        group.finish();
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.3}×", a / b)
    } else {
        "–".to_owned()
    }
}

fn report(layout: Layout, sampled: &BTreeMap<Key, Sampled>, totals: &CriterionTotals) -> String {
    let mut table = Table::new(&[
        "tasks",
        "competitor",
        "requests",
        "req/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "criterion mean ns/req",
        "criterion req/s",
    ]);
    for ((tasks, who), s) in sampled {
        let mean = totals.mean((*tasks, *who));
        table.row(vec![
            tasks.to_string(),
            who.name().to_owned(),
            s.requests.to_string(),
            format!("{:.0}", s.per_second()),
            micros(s.percentile(0.50)),
            micros(s.percentile(0.99)),
            micros(s.percentile(0.999)),
            mean.map_or("–".into(), |m| format!("{:.0}", m.as_secs_f64() * 1e9)),
            mean.map_or("–".into(), |m| format!("{:.0}", 1.0 / m.as_secs_f64())),
        ]);
    }
    let mut ratios = Table::new(&[
        "tasks",
        "measured by",
        "livepool / raw_long (target ≥ 0.97×)",
        "livepool / deadpool",
        "livepool / short",
    ]);
    for tasks in TASK_COUNTS {
        let rate = |who: Competitor| sampled.get(&(tasks, who)).map_or(0.0, Sampled::per_second);
        ratios.row(vec![
            tasks.to_string(),
            "sampled req/s".into(),
            ratio(rate(Competitor::Livepool), rate(Competitor::RawLong)),
            ratio(rate(Competitor::Livepool), rate(Competitor::Deadpool)),
            ratio(rate(Competitor::Livepool), rate(Competitor::Short)),
        ]);
        let rate = |who: Competitor| {
            totals
                .mean((tasks, who))
                .map_or(0.0, |m| 1.0 / m.as_secs_f64())
        };
        ratios.row(vec![
            tasks.to_string(),
            "criterion req/s".into(),
            ratio(rate(Competitor::Livepool), rate(Competitor::RawLong)),
            ratio(rate(Competitor::Livepool), rate(Competitor::Deadpool)),
            ratio(rate(Competitor::Livepool), rate(Competitor::Short)),
        ]);
    }
    let mut out = format!("# short_vs_long, layout `{}`\n\n", layout.name());
    let _ = writeln!(
        out,
        "Echo of {BODY_LEN} bytes over the reference protocol on loopback; {} on a machine with {} CPUs. \
         Sampled: every request timed, in {ROUNDS} rounds rotating the competitors. \
         criterion: the mean over all of criterion's samples (its own estimates are in target/criterion/). \
         Ratios are of throughput (higher is better for livepool).\n",
        layout.describe(),
        CPUS.get().copied().unwrap_or(0)
    );
    out.push_str(&table.render());
    out.push('\n');
    out.push_str(&ratios.render());
    out
}

/// Percentile curves, one panel per task count: x in "nines" (0 = p0,
/// 1 = p90, 2 = p99, 3 = p99.9), y the latency on a log scale, so the
/// median and the tail both show.
fn plot(sampled: &BTreeMap<Key, Sampled>, path: &Path) -> Result<(), BoxError> {
    let max_nines = 3.0_f64;
    let steps = 300;
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, TASK_COUNTS.len()));
    for (panel, tasks) in panels.iter().zip(TASK_COUNTS) {
        let curves: Vec<(Competitor, Vec<(f64, f64)>)> = Competitor::ALL
            .iter()
            .filter_map(|who| sampled.get(&(tasks, *who)).map(|s| (*who, s)))
            .map(|(who, s)| {
                let points = (0..=steps)
                    .map(|i| {
                        let nines = max_nines * f64::from(i) / f64::from(steps);
                        let p = 1.0 - 10f64.powf(-nines);
                        (nines, s.percentile(p).as_secs_f64() * 1e6)
                    })
                    .collect();
                (who, points)
            })
            .collect();
        let all = curves.iter().flat_map(|(_, c)| c.iter().map(|(_, y)| *y));
        let (lo, hi) = all.fold((f64::MAX, 0.0_f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (lo, hi) = ((lo * 0.8).max(0.1), (hi * 1.25).max(1.0));
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{tasks} client task{}", if tasks == 1 { "" } else { "s" }),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_nines, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("percentile")
            .y_desc("latency per request (µs, log)")
            // Whole nines only: p0, p90, p99, p99.9.
            .x_labels(4)
            .x_label_formatter(&|nines| {
                let p = 100.0 * (1.0 - 10f64.powf(-nines));
                format!("p{}", (p * 10.0).round() / 10.0)
            })
            .y_label_formatter(&|micros| format!("{micros:.0}"))
            .draw()?;
        for (who, points) in curves {
            let colour = who.colour();
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(who.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// `short` needs the kernel to reuse loopback TIME_WAIT ports; say so if it won't.
fn warn_if_ports_may_run_out() {
    if let Ok(reuse) = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse") {
        if reuse.trim() == "0" {
            eprintln!(
                "warning: net.ipv4.tcp_tw_reuse is 0: `short` leaves a TIME_WAIT port per request \
                 and connects may fail with AddrNotAvailable"
            );
        }
    }
}

fn main() {
    if std::env::var(ROLE_VAR).is_ok_and(|role| role == "server") {
        serve_child();
        return;
    }
    let full = full_run();
    warn_if_ports_may_run_out();
    let _ = CPUS.set(std::thread::available_parallelism().map_or(0, |n| n.get()));
    let mut texts = Vec::new();
    for layout in [Layout::Shared, Layout::Split] {
        texts.push(measure(layout, full));
    }
    let text = texts.join("\n");
    println!("\n{text}");
    if full {
        write_summary("short_vs_long", &text);
    }
}

/// Every competitor at every task count in one layout: the sampled run,
/// criterion's, and the report (plus the latency plot for `shared`).
fn measure(layout: Layout, full: bool) -> String {
    let (workers, child) = match layout {
        Layout::Shared => (WORKERS, None),
        Layout::Split => {
            let child =
                common::child::ChildProcess::spawn(ROLE_VAR, "server", &["taskset", "-c", "1"]);
            if let Err(e) = pin_self("0") {
                fail("pinning the clients to CPU 0", e);
            }
            (1, Some(child))
        }
    };
    let addr = child.as_ref().map(|child| {
        let line = child.line("address");
        line.strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| fail("the server's address", &line))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("building the tokio runtime", e));
    let bed = Arc::new(
        runtime
            .block_on(Bed::new(addr))
            .unwrap_or_else(|e| fail("setting up the server and the pools", e)),
    );

    let requests = if full {
        SAMPLED_REQUESTS
    } else {
        SAMPLED_REQUESTS_TEST
    };
    println!(
        "short_vs_long ({}): timing {requests} requests per competitor and task count",
        layout.name()
    );
    let sampled = runtime
        .block_on(sample_all(&bed, requests))
        .unwrap_or_else(|e| fail("the sampled run", e));

    let totals = Arc::new(CriterionTotals::default());
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    run_criterion(&mut criterion, layout, &runtime, &bed, &totals);
    criterion.final_summary();

    let text = report(layout, &sampled, &totals);
    if full && layout == Layout::Shared {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(PLOT);
        let drawn = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(BoxError::from)
            .and_then(|()| plot(&sampled, &path));
        match drawn {
            Ok(()) => println!("latency plot written to {}", path.display()),
            Err(e) => fail(&format!("drawing {}", path.display()), e),
        }
    }
    runtime.block_on(async {
        bed.livepool.close();
        bed.deadpool.close();
        if let Some(server) = &bed.server {
            server.shutdown().await;
        }
    });
    if let Some(child) = child {
        child.finish();
    }
    text
}
