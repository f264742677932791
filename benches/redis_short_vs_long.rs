//! Redis: a new connection per command vs livepool vs deadpool-redis, against
//! the real server at `LIVEPOOL_REDIS_ADDR` (default 127.0.0.1:6379), every
//! competitor in one process run.
//!
//! A plain `main` (not criterion): each competitor runs a fixed number of
//! requests and every request's latency is kept, so the table can give p50
//! and p99 as well as requests/s and the mean.
//!
//! One request is one command on a small (16-byte) value, on a key of the
//! task's own: even requests `SET key value EX 300`, odd ones `GET key`,
//! checked against the value the task set just before. The competitors:
//!
//! - **connect per command**: [`RedisManager::connect`] for every request
//!   (livepool's `tcp::connect` with its socket options, then the `redis`
//!   crate's `MultiplexedConnection` handshake: the adapter's own path), the
//!   command, then the connection is dropped;
//! - **livepool**: `Pool<RedisManager>`: `get`, the command through the
//!   `Pooled` guard, return;
//! - **deadpool-redis** 0.23 (the same `redis` 1.x crate): `get` (which
//!   recycles with `UNWATCH` + `PING`, deadpool-redis's own check), the
//!   command, return.
//!
//! Both pools hold at most 16 connections and are warmed up before they are
//! measured. Tasks: 1 and 16, on a multi-thread runtime with 2 workers.
//!
//! `cargo bench --bench redis_short_vs_long --features redis` runs 10,000
//! requests per competitor and task count, prints the table and writes
//! `target/redis_short_vs_long-summary.md`; run without `--bench` (as
//! `cargo test --benches` does) it is a quick smoke run of a few hundred
//! requests that writes nothing.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livepool::adapters::redis::{ADDR_VAR, RedisManager};
use livepool::{Manager, Pool};
use redis::aio::ConnectionLike;
use tokio::time::timeout;

type BenchError = Box<dyn Error + Send + Sync>;

/// Requests per competitor and task count in a full run.
const FULL_REQUESTS: usize = 10_000;
/// Requests per competitor and task count in a smoke run.
const SMOKE_REQUESTS: usize = 200;
/// Unmeasured requests before each measured run: code paths warm, pools full.
const WARMUP_REQUESTS: usize = 200;
const TASK_COUNTS: [usize; 2] = [1, 16];
const WORKER_THREADS: usize = 2;
const POOL_SIZE: usize = 16;
/// Bound on one request, connect or checkout included: nothing hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The bench's keys expire on their own, even if a run is cut short.
const KEY_TTL_SECS: u64 = 300;

const CONNECT_PER_COMMAND: &str = "connect per command";
const LIVEPOOL: &str = "livepool";
const DEADPOOL_REDIS: &str = "deadpool-redis";

/// One way of getting a connection for a command.
enum Competitor {
    ConnectPerCommand(Box<RedisManager>),
    Livepool(Pool<RedisManager>),
    DeadpoolRedis(deadpool_redis::Pool),
}

impl Competitor {
    fn name(&self) -> &'static str {
        match self {
            Competitor::ConnectPerCommand(_) => CONNECT_PER_COMMAND,
            Competitor::Livepool(_) => LIVEPOOL,
            Competitor::DeadpoolRedis(_) => DEADPOOL_REDIS,
        }
    }

    /// Request `i` of a task on `key`: get a connection, run the command,
    /// give the connection back (or close it).
    async fn request(&self, key: &str, i: usize) -> Result<(), BenchError> {
        match self {
            Competitor::ConnectPerCommand(manager) => {
                let mut conn = manager
                    .connect()
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                command(&mut conn, key, i).await
            }
            Competitor::Livepool(pool) => {
                let mut conn = pool.get().await.map_err(|e| format!("livepool get: {e}"))?;
                command(&mut *conn, key, i).await
            }
            Competitor::DeadpoolRedis(pool) => {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| format!("deadpool-redis get: {e}"))?;
                command(&mut conn, key, i).await
            }
        }
    }
}

/// The value request `i` sets: small, and different each time, so a `GET`
/// that returned a stale or foreign value would be caught.
fn value(i: usize) -> String {
    format!("{i:016}")
}

/// The one command of request `i`: `SET` on even `i`, `GET` (checked) on odd.
async fn command(
    conn: &mut (impl ConnectionLike + Send),
    key: &str,
    i: usize,
) -> Result<(), BenchError> {
    if i % 2 == 0 {
        redis::cmd("SET")
            .arg(key)
            .arg(value(i))
            .arg("EX")
            .arg(KEY_TTL_SECS)
            .exec_async(conn)
            .await
            .map_err(|e| format!("SET {key}: {e}"))?;
    } else {
        let got: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(|e| format!("GET {key}: {e}"))?;
        let want = value(i - 1);
        if got.as_deref() != Some(want.as_str()) {
            return Err(format!("GET {key} returned {got:?}, expected {want:?}").into());
        }
    }
    Ok(())
}

/// What one competitor did with one task count.
struct Run {
    competitor: &'static str,
    tasks: usize,
    wall: Duration,
    /// Every request's latency, sorted.
    latencies: Vec<Duration>,
}

impl Run {
    fn requests_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn mean(&self) -> Duration {
        let total: Duration = self.latencies.iter().sum();
        total / u32::try_from(self.latencies.len().max(1)).unwrap_or(u32::MAX)
    }

    /// Nearest-rank percentile, `p` in (0, 1].
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.latencies.get(rank - 1).copied().unwrap_or_default()
    }
}

/// Runs `requests` requests spread over `tasks` tasks, each timed.
async fn measure(
    competitor: &Arc<Competitor>,
    tasks: usize,
    requests: usize,
    phase: &str,
) -> Result<Run, BenchError> {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let competitor = Arc::clone(competitor);
            let share = requests / tasks + usize::from(task < requests % tasks);
            let key = format!(
                "livepool-bench:{}:{}:{phase}:{tasks}:{task}",
                std::process::id(),
                competitor.name()
            );
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share);
                for i in 0..share {
                    let begun = Instant::now();
                    timeout(REQUEST_TIMEOUT, competitor.request(&key, i))
                        .await
                        .map_err(|_| format!("a request took over {REQUEST_TIMEOUT:?}"))??;
                    latencies.push(begun.elapsed());
                }
                Ok::<_, BenchError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let wall = start.elapsed();
    latencies.sort_unstable();
    Ok(Run {
        competitor: competitor.name(),
        tasks,
        wall,
        latencies,
    })
}

/// Fails with a message naming `LIVEPOOL_REDIS_ADDR` when there is no Redis.
async fn reachable_manager() -> Result<RedisManager, BenchError> {
    let manager = RedisManager::from_env()?;
    let addr = manager.addr();
    let unreachable = |why: String| -> BenchError {
        format!(
            "Redis is not reachable at {addr}: {why}. Start one there or set {ADDR_VAR}=IP:port"
        )
        .into()
    };
    match timeout(REQUEST_TIMEOUT, manager.connect()).await {
        Ok(Ok(_conn)) => Ok(manager),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {REQUEST_TIMEOUT:?}"))),
    }
}

async fn run_all(requests: usize) -> Result<Vec<Run>, BenchError> {
    let manager = reachable_manager().await?;
    let livepool = Pool::builder()
        .name("redis-bench")
        .max_size(POOL_SIZE)
        .build(manager.clone())?;
    let deadpool_redis = deadpool_redis::Config::from_url(format!("redis://{}/", manager.addr()))
        .builder()?
        .max_size(POOL_SIZE)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()?;
    let competitors = [
        Competitor::ConnectPerCommand(Box::new(manager)),
        Competitor::Livepool(livepool.clone()),
        Competitor::DeadpoolRedis(deadpool_redis.clone()),
    ]
    .map(Arc::new);

    let mut runs = Vec::new();
    for tasks in TASK_COUNTS {
        for competitor in &competitors {
            measure(competitor, tasks, WARMUP_REQUESTS.min(requests), "warmup").await?;
            let run = measure(competitor, tasks, requests, "measured").await?;
            eprintln!(
                "{:>2} task(s) {:<20} {:>9.0} req/s",
                run.tasks,
                run.competitor,
                run.requests_per_sec()
            );
            runs.push(run);
        }
    }
    livepool.close();
    deadpool_redis.close();
    Ok(runs)
}

/// A latency in µs, or in ms from 10 ms up.
fn latency(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.1} ms", micros / 1e3)
    }
}

fn find<'a>(runs: &'a [Run], competitor: &str, tasks: usize) -> Option<&'a Run> {
    runs.iter()
        .find(|r| r.competitor == competitor && r.tasks == tasks)
}

/// `livepool ÷ other`: requests/s (higher is better for livepool) and
/// latencies (lower is better for livepool).
fn ratio_cells(livepool: &Run, other: &Run) -> String {
    let latency = |p: f64| {
        livepool.percentile(p).as_secs_f64() / other.percentile(p).as_secs_f64().max(1e-12)
    };
    format!(
        "{:.2}× | {:.2}× | {:.2}×",
        livepool.requests_per_sec() / other.requests_per_sec(),
        latency(0.50),
        latency(0.99)
    )
}

/// The results as Markdown tables: one row per run, then the ratios.
fn tables(runs: &[Run], requests: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{requests} requests per row (one SET or GET of a 16-byte value each), \
         {WORKER_THREADS} runtime workers, pools of {POOL_SIZE}.\n"
    );
    let _ = writeln!(
        out,
        "| tasks | competitor | req/s | mean | p50 | p99 | wall |\n|---:|---|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {:.2} s |",
            run.tasks,
            run.competitor,
            run.requests_per_sec(),
            latency(run.mean()),
            latency(run.percentile(0.50)),
            latency(run.percentile(0.99)),
            run.wall.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "\nRatios, livepool ÷ other (req/s: above 1 is livepool faster; p50/p99: below 1 is livepool faster):\n\n\
         | tasks | ÷ {CONNECT_PER_COMMAND}: req/s | p50 | p99 | ÷ {DEADPOOL_REDIS}: req/s | p50 | p99 |\n\
         |---:|---:|---:|---:|---:|---:|---:|"
    );
    for tasks in TASK_COUNTS {
        let (Some(live), Some(short), Some(dead)) = (
            find(runs, LIVEPOOL, tasks),
            find(runs, CONNECT_PER_COMMAND, tasks),
            find(runs, DEADPOOL_REDIS, tasks),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {tasks} | {} | {} |",
            ratio_cells(live, short),
            ratio_cells(live, dead)
        );
    }
    out
}

/// Where cargo puts build output: `CARGO_TARGET_DIR`, else `target/` in the
/// package.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The 1/5/15-minute load averages, to judge how noisy a run was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn summary(table: &str, load_before: &str, load_after: &str) -> String {
    format!(
        "# Redis: connect per command vs livepool vs deadpool-redis\n\n\
         Written by `cargo bench --bench redis_short_vs_long --features redis` \
         (benches/redis_short_vs_long.rs), against the Redis at {ADDR_VAR}.\n\n\
         - connect per command: `RedisManager::connect` (livepool's `tcp::connect` and the \
         adapter's `redis` handshake) for every command, then drop.\n\
         - livepool: `Pool<RedisManager>`, get + command + return.\n\
         - deadpool-redis 0.23: get (recycles with `UNWATCH` + `PING`, its default) + command + return.\n\n\
         Load average before / after: {load_before} / {load_after}. The machine is shared: \
         the numbers are noisy, compare rows of the same run only.\n\n{table}"
    )
}

fn main() -> ExitCode {
    let full = std::env::args().any(|arg| arg == "--bench");
    let requests = if full { FULL_REQUESTS } else { SMOKE_REQUESTS };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("redis_short_vs_long: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load_before = load_average();
    let runs = match runtime.block_on(run_all(requests)) {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("redis_short_vs_long: {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = tables(&runs, requests);
    println!("\n{table}");
    if !full {
        println!(
            "(smoke run: pass --bench, as `cargo bench` does, for the full run and the summary file)"
        );
        return ExitCode::SUCCESS;
    }
    let path = target_dir().join("redis_short_vs_long-summary.md");
    let written = std::fs::create_dir_all(target_dir())
        .and_then(|()| std::fs::write(&path, summary(&table, &load_before, &load_average())));
    match written {
        Ok(()) => {
            println!("summary written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redis_short_vs_long: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
