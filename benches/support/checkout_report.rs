//! What the `checkout` bench remembers while criterion runs (which
//! benchmarks ran, which failed, the fairness of scenario D) and the summary
//! table it prints and writes once criterion is done.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The competitors in table order: the floor first, the subject second.
pub const ORDER: [&str; 5] = ["floor", "livepool", "deadpool", "bb8", "mobc"];

/// How evenly the tasks of one contended round were served: when each task
/// finished its share of checkouts, relative to the round's start. Under
/// first-come first-served service every task progresses at the same rate and
/// they all finish together; a pool that lets a returning task take its
/// object straight back (barging) finishes some tasks early and starves others.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub first: Duration,
    pub last: Duration,
    /// Standard deviation over mean of the tasks' finish times.
    pub cv: f64,
}

impl Spread {
    /// `None` for no tasks.
    pub fn of(finish_times: &[Duration]) -> Option<Spread> {
        let first = *finish_times.iter().min()?;
        let last = *finish_times.iter().max()?;
        let secs: Vec<f64> = finish_times.iter().map(Duration::as_secs_f64).collect();
        let n = secs.len() as f64;
        let mean = secs.iter().sum::<f64>() / n;
        let variance = secs.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        let cv = if mean > 0.0 {
            variance.sqrt() / mean
        } else {
            0.0
        };
        Some(Spread { first, last, cv })
    }

    /// Last finish minus first finish.
    pub fn range(&self) -> Duration {
        self.last - self.first
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first task done at {:.2} ms, last at {:.2} ms, spread {:.2} ms ({:.0}% of the round), CV {:.3}",
            ms(self.first),
            ms(self.last),
            ms(self.range()),
            100.0 * self.range().as_secs_f64() / self.last.as_secs_f64().max(f64::MIN_POSITIVE),
            self.cv
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One scenario as the table shows it.
pub struct ScenarioLabel {
    pub id: &'static str,
    /// The criterion group, hence the directory its estimates are in.
    pub group: &'static str,
    pub summary: &'static str,
}

/// What happened during this process's run. Criterion calls the bench
/// closures on this thread only, so a `RefCell` suffices.
#[derive(Default)]
pub struct Record {
    ran: RefCell<BTreeSet<(&'static str, &'static str)>>,
    failures: RefCell<BTreeMap<(&'static str, &'static str), String>>,
    fairness: RefCell<BTreeMap<&'static str, Spread>>,
}

impl Record {
    pub fn mark_ran(&self, scenario: &'static str, pool: &'static str) {
        self.ran.borrow_mut().insert((scenario, pool));
    }

    pub fn ran(&self, scenario: &'static str, pool: &'static str) -> bool {
        self.ran.borrow().contains(&(scenario, pool))
    }

    /// Keeps the first failure of each benchmark and prints it at once, so a
    /// stalled pool is visible while the run goes on.
    pub fn fail(&self, scenario: &'static str, pool: &'static str, why: String) {
        self.failures
            .borrow_mut()
            .entry((scenario, pool))
            .or_insert_with(|| {
                eprintln!("\nFAILED: scenario {scenario}, {pool}: {why}");
                why
            });
    }

    pub fn failed(&self, scenario: &'static str, pool: &'static str) -> bool {
        self.failures.borrow().contains_key(&(scenario, pool))
    }

    pub fn fairness(&self, pool: &'static str, spread: Spread) {
        self.fairness.borrow_mut().insert(pool, spread);
    }

    /// The table: criterion's median time per get+return for each
    /// competitor and scenario that ran in this process, its ratio to the
    /// floor and to livepool, then the fairness of scenario D. `None` when
    /// criterion wrote no estimate (its `--test` and `--list` modes).
    pub fn summary(
        &self,
        scenarios: &[ScenarioLabel],
        criterion_dir: &Path,
        started: SystemTime,
    ) -> Option<String> {
        let mut measured = 0;
        let mut out = String::new();
        out.push_str(
            "ns per get+return: criterion's median of per-iteration times \
             (a contended iteration's time divided by its get+return count), \
             read from target/criterion/<group>/<pool>/new/estimates.json.\n\n",
        );
        for scenario in scenarios {
            let _ = writeln!(out, "- {}: {}", scenario.id, scenario.summary);
        }
        out.push('\n');
        out.push_str("| scenario | pool | ns/op | × floor | × livepool |\n");
        out.push_str("|---|---|---:|---:|---:|\n");
        for scenario in scenarios {
            let median = |pool: &'static str| {
                if self.failed(scenario.id, pool) || !self.ran(scenario.id, pool) {
                    return None;
                }
                median_ns(criterion_dir, scenario.group, pool, started)
            };
            let floor = median("floor");
            let livepool = median("livepool");
            for pool in ORDER {
                if !self.ran(scenario.id, pool) {
                    continue;
                }
                let cell = match (
                    self.failures.borrow().get(&(scenario.id, pool)),
                    median(pool),
                ) {
                    (Some(why), _) => format!("FAILED: {why} | | "),
                    (None, None) => "n/a | | ".to_owned(),
                    (None, Some(ns)) => {
                        measured += 1;
                        format!("{ns:.0} | {} | {}", ratio(ns, floor), ratio(ns, livepool))
                    }
                };
                let _ = writeln!(out, "| {} | {pool} | {cell} |", scenario.id);
            }
        }
        let fairness = self.fairness.borrow();
        if !fairness.is_empty() {
            out.push_str(
                "\nScenario D fairness (outside criterion; median of 5 rounds): when each \
                 task finished its share, from the round's start. Small spread and CV: \
                 first-come first-served.\n\n",
            );
            out.push_str("| pool | first done ms | last done ms | spread ms | CV |\n");
            out.push_str("|---|---:|---:|---:|---:|\n");
            for pool in ORDER {
                if let Some(s) = fairness.get(pool) {
                    let _ = writeln!(
                        out,
                        "| {pool} | {:.2} | {:.2} | {:.2} | {:.3} |",
                        ms(s.first),
                        ms(s.last),
                        ms(s.range()),
                        s.cv
                    );
                }
            }
        }
        (measured > 0).then_some(out)
    }
}

fn ratio(ns: f64, base: Option<f64>) -> String {
    match base {
        Some(base) if base > 0.0 => format!("{:.2}", ns / base),
        _ => "n/a".to_owned(),
    }
}

/// Criterion's median estimate for one benchmark, if it was written by this
/// process (an older file would mix runs).
fn median_ns(dir: &Path, group: &str, function: &str, started: SystemTime) -> Option<f64> {
    let path: PathBuf = [dir, Path::new(group), Path::new(function)]
        .iter()
        .collect::<PathBuf>()
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < started {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}
