//! The demo's record of the run: every event stamped with the time since the
//! start, so the timeline and the summary are computed from one source after
//! each phase, and nothing is printed while the run is going (printing would
//! disturb the timings it reports).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use livepool::EvictReason;
use tokio::time::Instant;

/// Something that happened, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A milestone of the scenario itself (pool ready, load started, ...).
    Note(String),
    /// A fault was injected; `fault` indexes the scenario's list of faults.
    FaultBegins { fault: usize, what: String },
    /// A fault was lifted (the hang ended, the server is back).
    FaultEnds { fault: usize, what: String },
    /// The pool opened a connection (tracing event "member connected").
    Connected { member: u64 },
    /// The pool evicted a member (tracing event "member evicted").
    Evicted { member: u64, reason: EvictReason },
    /// A connect failed: inside a caller's `get()` (which retries it), or
    /// the sentinel's refill, which waits `retry_in` before the next one.
    ConnectFailed { retry_in: Option<String> },
    /// A caller's `call` on a borrowed member failed; the caller marked the
    /// member broken and retried.
    CallFailed {
        caller: usize,
        member: u64,
        error: String,
    },
    /// A caller's `pool.get()` failed.
    GetFailed { caller: usize, error: String },
    /// A reply did not match its request: a stream out of step. Must never happen.
    WrongReply { caller: usize, member: u64 },
    /// A caller gave up on a request after retrying for the request deadline.
    Abandoned { caller: usize },
}

/// One event and when it happened.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Time since the start of the run.
    pub at: Duration,
    /// What happened.
    pub event: Event,
}

/// One request that a caller completed.
#[derive(Debug, Clone, Copy)]
pub struct Completed {
    /// When its reply arrived, since the start of the run.
    pub at: Duration,
    /// From the first `get()` to the reply, retries included.
    pub latency: Duration,
}

#[derive(Debug, Default)]
struct Records {
    events: Vec<Stamped>,
    completed: Vec<Completed>,
}

/// Shared by the scenario, the callers, the status monitor and the tracing layer.
#[derive(Debug)]
pub struct Journal {
    start: Instant,
    records: Mutex<Records>,
}

/// What the journal held at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every event, in time order.
    pub events: Vec<Stamped>,
    /// Every completed request, in completion order.
    pub completed: Vec<Completed>,
}

impl Journal {
    /// Starts the clock.
    pub fn new() -> Self {
        Journal {
            start: Instant::now(),
            records: Mutex::new(Records::default()),
        }
    }

    /// Time since the start of the run.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        // Every update is one push, so a panic elsewhere cannot leave the
        // records half written: a poisoned lock is still good to use.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `event` as happening now.
    pub fn record(&self, event: Event) {
        let at = self.now();
        self.records().events.push(Stamped { at, event });
    }

    /// Records a request that completed now after `latency`.
    pub fn completed(&self, latency: Duration) {
        let at = self.now();
        self.records().completed.push(Completed { at, latency });
    }

    /// A copy of everything recorded so far, sorted by time.
    pub fn snapshot(&self) -> Snapshot {
        let (mut events, mut completed) = {
            let records = self.records();
            (records.events.clone(), records.completed.clone())
        };
        // Entries from different threads may be pushed slightly out of order.
        events.sort_by_key(|e| e.at);
        completed.sort_by_key(|c| c.at);
        Snapshot { events, completed }
    }
}
