//! Checkout cost: get + use + return of a trivial object (a `Box<u64>` counter
//! bumped on each use), so what is measured is the pool's own cost, against
//! the usual competitors and a floor, all in the same process and the same
//! criterion group per scenario so criterion reports them side by side.
//!
//! Each competitor runs with its cheapest checkout settings:
//! - **floor**: a fair tokio `Semaphore` bounding a `std::sync::Mutex<Vec<_>>`
//!   of idle objects (acquire a permit + pop; push + release).
//! - **livepool**: defaults, except `heartbeat_interval` and `validate_after`
//!   of one hour: heartbeats are on, as in production, but none falls due
//!   during a run, and no checkout probes. The sentinel still wakes every
//!   250 ms (its coarsest tick) to refresh the coarse clock: a few lock
//!   acquisitions per second, negligible. No tracing subscriber is installed,
//!   so the `checkout` span is disabled.
//! - **deadpool 0.13** (managed, `rt_tokio_1`): no timeouts (its default), and
//!   `recycle` returns `Ok` at once, like `RecyclingMethod::Fast`.
//! - **bb8 0.9**: `test_on_check_out(false)`, no idle timeout and no max
//!   lifetime (so no reaper). Its `connection_timeout` cannot be turned off
//!   (30 s default): every `get` runs under a tokio timeout.
//! - **mobc 0.9**: `test_on_check_out(false)`, no health-check interval, no
//!   idle or max lifetime, `get_timeout(None)`, `max_idle = max_open`. Its
//!   return path spawns a task per return (that is how mobc works).
//!
//! Every pool is filled to its size before measuring, so no connect is timed.
//!
//! Scenarios (one criterion group each, time reported per get+return):
//! - **A**: one task, pool 16, current-thread runtime.
//! - **B**: 64 tasks, pool 8, multi-thread runtime with 2 workers; one
//!   iteration = every task does 100 get+return.
//! - **C**: 16 tasks, pool 16, 2 workers (no queueing: as many objects as tasks).
//! - **D**: as B, but each task holds its object across one `yield_now`, so
//!   most tasks are queued. Outside criterion's timing, each competitor also
//!   runs 5 rounds in which every task's finish time is recorded; the spread
//!   and coefficient of variation of those times show whether service is
//!   first-come first-served.
//!
//! Every round runs under a timeout: a pool that loses a wakeup is reported
//! as FAILED (and its remaining iterations skipped), not left to hang.
//!
//! After criterion's groups a summary table (criterion's median per
//! get+return, ratios to the floor and to livepool, D's fairness) is printed
//! and written to `target/checkout-summary.md`.
//!
//! Run: `cargo bench --bench checkout` (a few minutes on 2 cores); criterion's
//! `--quick` and name filters work: `cargo bench --bench checkout -- --quick D`.

#[path = "support/checkout_pools.rs"]
mod pools;
#[path = "support/checkout_report.rs"]
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use pools::{Bb8, Competitor, Deadpool, Floor, Hold, Livepool, Mobc, PoolFailed};
use report::{Record, ScenarioLabel, Spread};

/// A round that takes this long has lost a wakeup or starved a task: a
/// healthy one takes milliseconds.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a failed or skipped iteration reports to criterion, so it stands out.
const FAILED_ITERATION: Duration = Duration::from_secs(1);

/// Real time spent by each skipped call of a failed benchmark.
const SKIPPED_ITERATIONS_PAUSE: Duration = Duration::from_millis(50);

/// Rounds of scenario D whose finish times are recorded, per competitor.
const FAIRNESS_ROUNDS: usize = 5;

/// How long every pool's objects are held at once while filling it.
const FILL_HOLD: Duration = Duration::from_millis(20);

#[derive(Clone, Copy)]
enum Threads {
    Current,
    Workers(usize),
}

struct Scenario {
    label: ScenarioLabel,
    tasks: usize,
    pool_size: usize,
    /// Get+returns each task does per criterion iteration.
    ops_per_task: u64,
    hold: Hold,
    threads: Threads,
}

impl Scenario {
    fn ops_per_iteration(&self) -> u64 {
        self.tasks as u64 * self.ops_per_task
    }

    fn runtime(&self) -> std::io::Result<Runtime> {
        match self.threads {
            Threads::Current => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Threads::Workers(n) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .enable_all()
                .build(),
        }
    }
}

fn scenarios() -> [Scenario; 4] {
    [
        Scenario {
            label: ScenarioLabel {
                id: "A",
                group: "checkout-A-1task-pool16",
                summary: "1 task, pool 16, current-thread",
            },
            tasks: 1,
            pool_size: 16,
            ops_per_task: 1,
            hold: Hold::Touch,
            threads: Threads::Current,
        },
        Scenario {
            label: ScenarioLabel {
                id: "B",
                group: "checkout-B-64tasks-pool8",
                summary: "64 tasks, pool 8, 2 workers",
            },
            tasks: 64,
            pool_size: 8,
            ops_per_task: 100,
            hold: Hold::Touch,
            threads: Threads::Workers(2),
        },
        Scenario {
            label: ScenarioLabel {
                id: "C",
                group: "checkout-C-16tasks-pool16",
                summary: "16 tasks, pool 16, 2 workers",
            },
            tasks: 16,
            pool_size: 16,
            ops_per_task: 100,
            hold: Hold::Touch,
            threads: Threads::Workers(2),
        },
        Scenario {
            label: ScenarioLabel {
                id: "D",
                group: "checkout-D-64tasks-pool8-yield",
                summary: "64 tasks, pool 8, 2 workers, held across a yield",
            },
            tasks: 64,
            pool_size: 8,
            ops_per_task: 100,
            hold: Hold::TouchAcrossYield,
            threads: Threads::Workers(2),
        },
    ]
}

/// Why a measured run produced no time.
#[derive(Debug)]
enum RunFailed {
    Pool(PoolFailed),
    Panicked(tokio::task::JoinError),
    Stalled { unfinished: usize, of: usize },
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailed::Pool(e) => write!(f, "{e}"),
            RunFailed::Panicked(e) => write!(f, "a task panicked: {e}"),
            RunFailed::Stalled { unfinished, of } => write!(
                f,
                "{unfinished} of {of} tasks still unfinished after {ROUND_TIMEOUT:?} \
                 (lost wakeup or starvation)"
            ),
        }
    }
}

impl std::error::Error for RunFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunFailed::Pool(e) => Some(e),
            RunFailed::Panicked(e) => Some(e),
            RunFailed::Stalled { .. } => None,
        }
    }
}

/// One contended round: every task does its share of get+returns. Returns
/// how long the round took and when each task finished, from the round's start.
async fn round<C: Competitor>(
    pool: &C,
    scenario: &Scenario,
) -> Result<(Duration, Vec<Duration>), RunFailed> {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..scenario.tasks {
        let pool = pool.clone();
        let (ops, hold) = (scenario.ops_per_task, scenario.hold);
        tasks.spawn(async move {
            for _ in 0..ops {
                pool.get_use_return(hold).await?;
            }
            Ok::<_, PoolFailed>(started.elapsed())
        });
    }
    let mut finished = Vec::with_capacity(scenario.tasks);
    let joined = tokio::time::timeout(ROUND_TIMEOUT, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(at)) => finished.push(at),
                Ok(Err(e)) => return Err(RunFailed::Pool(e)),
                Err(e) => return Err(RunFailed::Panicked(e)),
            }
        }
        Ok(())
    })
    .await;
    let elapsed = started.elapsed();
    match joined {
        Ok(Ok(())) => Ok((elapsed, finished)),
        Ok(Err(e)) => Err(e),
        // Dropping the set aborts the stalled tasks.
        Err(_elapsed) => Err(RunFailed::Stalled {
            unfinished: scenario.tasks - finished.len(),
            of: scenario.tasks,
        }),
    }
}

/// `iters` criterion iterations, as time per get+return times `iters`.
async fn measure<C: Competitor>(
    pool: &C,
    scenario: &Scenario,
    iters: u64,
) -> Result<Duration, RunFailed> {
    if scenario.tasks == 1 {
        // Scenario A: the loop runs in the runtime's own task, no spawning.
        let started = Instant::now();
        let limit = ROUND_TIMEOUT + Duration::from_micros(iters);
        let ops = async {
            for _ in 0..iters * scenario.ops_per_task {
                pool.get_use_return(scenario.hold).await?;
            }
            Ok(())
        };
        return match tokio::time::timeout(limit, ops).await {
            Ok(Ok(())) => Ok(started.elapsed() / scenario.ops_per_task as u32),
            Ok(Err(e)) => Err(RunFailed::Pool(e)),
            Err(_elapsed) => Err(RunFailed::Stalled {
                unfinished: 1,
                of: 1,
            }),
        };
    }
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += round(pool, scenario).await?.0;
    }
    Ok(total.div_f64(scenario.ops_per_iteration() as f64))
}

/// Builds the pool and makes it create all its objects (every one held at
/// once), so no connect is timed.
async fn filled<C: Competitor>(size: usize) -> Result<C, RunFailed> {
    let pool = C::build(size).await.map_err(RunFailed::Pool)?;
    let mut holders = JoinSet::new();
    for _ in 0..size {
        let pool = pool.clone();
        holders.spawn(async move { pool.get_use_return(Hold::TouchAcrossSleep(FILL_HOLD)).await });
    }
    while let Some(joined) = holders.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(RunFailed::Pool(e)),
            Err(e) => return Err(RunFailed::Panicked(e)),
        }
    }
    // Let returns that complete in a spawned task (mobc's) land.
    tokio::time::sleep(FILL_HOLD).await;
    Ok(pool)
}

/// What criterion is told about iterations of a failed benchmark. It takes
/// a little real time, or criterion's warm-up (which runs until real time has
/// passed, doubling the iterations) would never end.
async fn skipped(iters: u64) -> Duration {
    tokio::time::sleep(SKIPPED_ITERATIONS_PAUSE).await;
    FAILED_ITERATION.saturating_mul(u32::try_from(iters).unwrap_or(u32::MAX))
}

fn bench_one<C: Competitor>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    scenario: &Scenario,
    record: &Record,
) {
    let id = scenario.label.id;
    let mut pool: Option<C> = None;
    group.bench_function(C::NAME, |b| {
        if pool.is_none() && !record.failed(id, C::NAME) {
            record.mark_ran(id, C::NAME);
            match runtime.block_on(filled::<C>(scenario.pool_size)) {
                Ok(built) => pool = Some(built),
                Err(e) => record.fail(id, C::NAME, e.to_string()),
            }
        }
        let pool = pool.as_ref();
        b.to_async(runtime).iter_custom(|iters| async move {
            let Some(pool) = pool.filter(|_| !record.failed(id, C::NAME)) else {
                return skipped(iters).await;
            };
            match measure(pool, scenario, iters).await {
                Ok(time) => time,
                Err(e) => {
                    record.fail(id, C::NAME, e.to_string());
                    skipped(iters).await
                }
            }
        });
    });
    // Some pools spawn tasks when dropped: drop inside the runtime.
    runtime.block_on(async move { drop(pool) });
}

/// Scenario D's fairness, once per competitor that ran it: the round with the
/// median coefficient of variation out of a few.
fn fairness<C: Competitor>(runtime: &Runtime, scenario: &Scenario, record: &Record) {
    let id = scenario.label.id;
    if !record.ran(id, C::NAME) || record.failed(id, C::NAME) {
        return;
    }
    let result = runtime.block_on(async {
        let pool = filled::<C>(scenario.pool_size).await?;
        round(&pool, scenario).await?;
        let mut spreads = Vec::with_capacity(FAIRNESS_ROUNDS);
        for _ in 0..FAIRNESS_ROUNDS {
            let (_, finished) = round(&pool, scenario).await?;
            spreads.extend(Spread::of(&finished));
        }
        spreads.sort_by(|a, b| a.cv.total_cmp(&b.cv));
        Ok::<_, RunFailed>(spreads.get(spreads.len() / 2).copied())
    });
    match result {
        Ok(Some(spread)) => {
            println!("scenario {id} fairness, {:<8}: {spread}", C::NAME);
            record.fairness(C::NAME, spread);
        }
        Ok(None) => {}
        Err(e) => record.fail(id, C::NAME, format!("fairness run: {e}")),
    }
}

fn bench_scenario(c: &mut Criterion, scenario: &Scenario, record: &Record) {
    let runtime = match scenario.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("scenario {}: no runtime: {e}", scenario.label.id);
            return;
        }
    };
    let mut group = c.benchmark_group(scenario.label.group);
    group.throughput(Throughput::Elements(1));
    bench_one::<Floor>(&mut group, &runtime, scenario, record);
    bench_one::<Livepool>(&mut group, &runtime, scenario, record);
    bench_one::<Deadpool>(&mut group, &runtime, scenario, record);
    bench_one::<Bb8>(&mut group, &runtime, scenario, record);
    bench_one::<Mobc>(&mut group, &runtime, scenario, record);
    group.finish();
    if matches!(scenario.hold, Hold::TouchAcrossYield) {
        fairness::<Floor>(&runtime, scenario, record);
        fairness::<Livepool>(&runtime, scenario, record);
        fairness::<Deadpool>(&runtime, scenario, record);
        fairness::<Bb8>(&runtime, scenario, record);
        fairness::<Mobc>(&runtime, scenario, record);
    }
}

/// Where cargo puts build output; criterion's directory and the summary go there.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn main() {
    let started = SystemTime::now();
    let criterion_dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"));
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .output_directory(&criterion_dir)
        .configure_from_args();
    let record = Record::default();
    let scenarios = scenarios();
    for scenario in &scenarios {
        bench_scenario(&mut c, scenario, &record);
    }
    c.final_summary();

    let labels: Vec<ScenarioLabel> = scenarios.into_iter().map(|s| s.label).collect();
    let Some(table) = record.summary(&labels, &criterion_dir, started) else {
        println!("no criterion estimates from this run (test or list mode): no summary table");
        return;
    };
    println!("\n{table}");
    let path = target_dir().join("checkout-summary.md");
    match std::fs::write(&path, &table) {
        Ok(()) => println!("summary written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
