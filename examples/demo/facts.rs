//! What one phase of the run showed: which layer caught the fault first and
//! how fast, evictions by layer, connects, and what the callers saw.

use std::collections::BTreeMap;
use std::time::Duration;

use livepool::EvictReason;

use super::journal::{Completed, Event, Snapshot, Stamped};
use super::text::seconds;

/// A gap between completed requests at least this long is worth reporting.
const NOTABLE_STALL: Duration = Duration::from_millis(100);

/// The three layers of liveness, in the order the tables show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// The socket itself said so (EOF, reset) with no traffic of ours.
    Kernel,
    /// An in-band heartbeat failed or went unanswered.
    Heartbeat,
    /// Found by the code using the connection: the checkout's check, or a
    /// caller's failed call.
    UseTime,
    /// Not a failure (idle timeout, lifetime, close).
    Routine,
}

impl Layer {
    /// Which layer caught a member evicted for `reason`.
    pub fn of(reason: EvictReason) -> Layer {
        match reason {
            EvictReason::BrokenWhileIdle => Layer::Kernel,
            EvictReason::ProbeFailed | EvictReason::ProbeTimedOut => Layer::Heartbeat,
            EvictReason::BrokenOnCheckout
            | EvictReason::BrokenOnReturn
            | EvictReason::Dirty
            | EvictReason::CallerPanicked
            | EvictReason::ProbeCancelled => Layer::UseTime,
            _ => Layer::Routine,
        }
    }

    /// How the timeline and the tables name it.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Kernel => "kernel/socket (cheap check)",
            Layer::Heartbeat => "in-band heartbeat",
            Layer::UseTime => "use-time",
            Layer::Routine => "routine",
        }
    }
}

/// Which fault, with what it needs for its explanation.
#[derive(Debug, Clone, Copy)]
pub enum FaultKind {
    /// RST on one member's connection.
    Reset { member: u64 },
    /// Everything dropped, both ways, on one member's connection.
    Blackhole { member: u64 },
    /// The server application answered nothing for this long.
    Hang { lasted: Duration },
    /// The server shut down, and nothing listened for this long.
    Restart { down: Duration },
}

impl FaultKind {
    /// The member the fault was aimed at, if it was aimed at one.
    pub fn target(self) -> Option<u64> {
        match self {
            FaultKind::Reset { member } | FaultKind::Blackhole { member } => Some(member),
            FaultKind::Hang { .. } | FaultKind::Restart { .. } => None,
        }
    }

    /// A short name for the summary table.
    pub fn label(self) -> String {
        match self {
            FaultKind::Reset { member } => format!("RST on member #{member}"),
            FaultKind::Blackhole { member } => format!("blackhole on member #{member}"),
            FaultKind::Hang { lasted } => format!("server hang ({})", seconds(lasted)),
            FaultKind::Restart { down } => format!("server restart ({} down)", seconds(down)),
        }
    }
}

/// One injected fault, and what its phase showed once it was over.
#[derive(Debug)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// When it was injected, since the start.
    pub began: Duration,
    /// Filled when its phase is printed.
    pub facts: Option<Facts>,
}

/// The first eviction a fault caused.
#[derive(Debug, Clone, Copy)]
pub struct Detection {
    pub at: Duration,
    pub reason: EvictReason,
}

/// What happened in one phase (from one fault to the next).
#[derive(Debug, Default)]
pub struct Facts {
    pub detected: Option<Detection>,
    pub evicted_by_layer: BTreeMap<Layer, usize>,
    /// Members evicted, by reason, in order of first eviction.
    pub evicted_by_reason: Vec<(EvictReason, usize)>,
    /// Connections opened, by the sentinel's refill or by a caller's `get()`.
    pub connected: usize,
    /// Connects that failed inside callers' `get()`s (which retried them).
    pub get_connect_failures: usize,
    /// Background refill connects that failed.
    pub refill_failures: usize,
    /// When the last refill failed, and the sentinel's wait before the next.
    pub refill_retry_in: Option<(Duration, String)>,
    /// Whether a member left for a failure in this phase.
    pub had_failures: bool,
    /// Call errors seen by callers, by message.
    pub call_errors: BTreeMap<String, usize>,
    /// `get()` errors seen by callers, by message.
    pub get_errors: BTreeMap<String, usize>,
    pub wrong_replies: usize,
    pub abandoned: usize,
    pub requests: usize,
    pub slowest: Duration,
    /// The longest stretch with no request completing: (from, to).
    pub stall: Option<(Duration, Duration)>,
    /// When the pool had all its members again after the fault's last eviction.
    pub full_again: Option<Duration>,
    /// When the fault was lifted, for faults that are.
    pub lifted: Option<Duration>,
}

impl Facts {
    pub fn call_error_count(&self) -> usize {
        self.call_errors.values().sum()
    }

    pub fn get_error_count(&self) -> usize {
        self.get_errors.values().sum()
    }

    pub fn evictions(&self, layer: Layer) -> usize {
        self.evicted_by_layer.get(&layer).copied().unwrap_or(0)
    }

    pub fn evicted_for(&self, reason: EvictReason) -> usize {
        self.evicted_by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// Works out what happened between `from` and `to`. `began` is when the
/// phase's fault began and `target` the member it was aimed at, if any.
pub fn facts(
    snapshot: &Snapshot,
    from: Duration,
    to: Duration,
    began: Option<Duration>,
    target: Option<u64>,
    pool_size: usize,
) -> Facts {
    let mut facts = Facts::default();
    let mut last_failure: Option<Duration> = None;
    for e in window(&snapshot.events, from, to) {
        match &e.event {
            Event::Evicted { member, reason } => {
                *facts
                    .evicted_by_layer
                    .entry(Layer::of(*reason))
                    .or_default() += 1;
                match facts
                    .evicted_by_reason
                    .iter_mut()
                    .find(|(r, _)| r == reason)
                {
                    Some((_, n)) => *n += 1,
                    None => facts.evicted_by_reason.push((*reason, 1)),
                }
                if reason.is_failure() {
                    last_failure = Some(e.at);
                    facts.had_failures = true;
                }
                let caused = match target {
                    Some(t) => t == *member,
                    None => reason.is_failure(),
                };
                if caused && facts.detected.is_none() && began.is_some() {
                    facts.detected = Some(Detection {
                        at: e.at,
                        reason: *reason,
                    });
                }
            }
            Event::Connected { .. } => facts.connected += 1,
            Event::ConnectFailed { retry_in: None } => facts.get_connect_failures += 1,
            Event::ConnectFailed {
                retry_in: Some(retry_in),
            } => {
                facts.refill_failures += 1;
                facts.refill_retry_in = Some((e.at, retry_in.clone()));
            }
            Event::CallFailed { error, .. } => {
                *facts.call_errors.entry(error.clone()).or_default() += 1;
            }
            Event::GetFailed { error, .. } => {
                *facts.get_errors.entry(error.clone()).or_default() += 1;
            }
            Event::WrongReply { .. } => facts.wrong_replies += 1,
            Event::Abandoned { .. } => facts.abandoned += 1,
            Event::FaultEnds { .. } => facts.lifted = Some(e.at),
            Event::Note(_) | Event::FaultBegins { .. } => {}
        }
    }
    facts.full_again =
        last_failure.and_then(|after| full_again(&snapshot.events, after, to, pool_size));
    let completed: Vec<&Completed> = snapshot
        .completed
        .iter()
        .filter(|c| c.at >= from && c.at < to)
        .collect();
    facts.requests = completed.len();
    facts.slowest = completed
        .iter()
        .map(|c| c.latency)
        .max()
        .unwrap_or_default();
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for c in &completed {
        if c.at - previous > longest {
            longest = c.at - previous;
            facts.stall = Some((previous, c.at));
        }
        previous = c.at;
    }
    if longest < NOTABLE_STALL {
        facts.stall = None;
    }
    facts
}

/// The first moment at or after `after` (and before `to`) when the pool
/// held all its members again, counting connects and evictions from the start.
fn full_again(
    events: &[Stamped],
    after: Duration,
    to: Duration,
    pool_size: usize,
) -> Option<Duration> {
    let mut members: i64 = 0;
    let full = pool_size as i64;
    for e in events.iter().take_while(|e| e.at < to) {
        match e.event {
            Event::Connected { .. } => members += 1,
            Event::Evicted { .. } => members -= 1,
            _ => continue,
        }
        if e.at >= after && members >= full {
            return Some(e.at);
        }
    }
    None
}

/// Events in `[from, to)`.
pub fn window(events: &[Stamped], from: Duration, to: Duration) -> impl Iterator<Item = &Stamped> {
    events.iter().filter(move |e| e.at >= from && e.at < to)
}
