//! Checkout cost in instructions, for `valgrind --tool=callgrind`: a fixed
//! number of get + use + return, so two builds (before and after a change)
//! are compared by instruction count, which is repeatable on a shared,
//! noisy machine where wall time is not.
//!
//! ```text
//! cargo bench --bench checkout_instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/deps/checkout_instructions-* uncontended 200000
//! ```
//!
//! Scenarios: `uncontended` (one task, an idle member always there: the
//! fast path) and `queued` (16 tasks, 4 members, each kept across a yield:
//! the inline wait and the hand-off to the oldest waiter).
//!
//! Built with `--features metrics`, `LIVEPOOL_BENCH_RECORDER=1` installs
//! metrics-util's `DebuggingRecorder` first (atomic counters and gauges,
//! histograms in an `AtomicBucket`, as the Prometheus exporter keeps
//! them), so the figure includes an exporter's side; without it the
//! handles are the facade's no-ops.

use std::hint::black_box;
use std::time::Duration;

use livepool::{Manager, Pool};

struct Counters;

impl Manager for Counters {
    type Connection = Box<u64>;
    type Error = std::io::Error;
    async fn connect(&self) -> std::io::Result<Box<u64>> {
        Ok(Box::new(0))
    }
    async fn heartbeat(&self, _: &mut Box<u64>) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let scenario = args.next().unwrap_or_else(|| "uncontended".into());
    let ops: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    #[cfg(feature = "metrics")]
    if std::env::var_os("LIVEPOOL_BENCH_RECORDER").is_some() {
        metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .expect("no recorder installed yet");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let never = Duration::from_secs(3600);
        let pool = Pool::builder()
            .max_size(4)
            .wait_timeout(never)
            .validate_after(never)
            .heartbeat_interval(never)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None)
            .build(Counters)
            .expect("pool");
        drop(pool.get().await.expect("warm up"));
        match scenario.as_str() {
            "uncontended" => {
                for _ in 0..ops {
                    let mut conn = pool.get().await.expect("checkout");
                    **conn = black_box(conn.wrapping_add(1));
                }
            }
            "queued" => {
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            for _ in 0..ops / 16 {
                                let mut conn = pool.get().await.expect("checkout");
                                **conn = black_box(conn.wrapping_add(1));
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
            }
            other => panic!("unknown scenario {other}: uncontended or queued"),
        }
        println!(
            "{scenario}: {ops} checkouts, {:?}",
            pool.status().counters.checkouts
        );
    });
}
