//! Turns the journal into what the demo prints: a header, one timeline block
//! per phase (printed when the phase is over), and a summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use livepool::tcp::TcpOptions;
use livepool::{Config, EvictReason, Status};

use super::journal::{Completed, Event, Journal, Snapshot, Stamped};

/// Events of one kind this close together share a timeline line.
const GROUP_SPAN: Duration = Duration::from_millis(100);
/// Timeline lines of one kind per phase; the rest are counted in a footnote.
const LINES_PER_KIND: usize = 3;
/// Ids listed on one line before "+N".
const IDS_PER_LINE: usize = 4;
/// Width of the event text column.
const TEXT_WIDTH: usize = 56;
/// Width of the layer column.
const LAYER_WIDTH: usize = 27;
/// Width of the "since fault" column.
const SINCE_WIDTH: usize = 9;
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

    fn name(self) -> &'static str {
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
    fn target(self) -> Option<u64> {
        match self {
            FaultKind::Reset { member } | FaultKind::Blackhole { member } => Some(member),
            FaultKind::Hang { .. } | FaultKind::Restart { .. } => None,
        }
    }

    /// A short name for the summary table.
    fn label(self) -> String {
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
    fn call_error_count(&self) -> usize {
        self.call_errors.values().sum()
    }

    fn get_error_count(&self) -> usize {
        self.get_errors.values().sum()
    }

    fn evictions(&self, layer: Layer) -> usize {
        self.evicted_by_layer.get(&layer).copied().unwrap_or(0)
    }

    fn evicted_for(&self, reason: EvictReason) -> usize {
        self.evicted_by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// What the header describes.
pub struct Setup<'a> {
    pub server: SocketAddr,
    pub proxy: SocketAddr,
    pub pool: &'a Config,
    pub tcp: &'a TcpOptions,
    pub callers: usize,
    pub think_time: Duration,
    pub request_timeout: Duration,
}

/// Prints as the run goes (a phase at a time) and at the end.
pub struct Report {
    pool_size: usize,
    heartbeat_timeout: Duration,
    request_timeout: Duration,
}

impl Report {
    pub fn new(pool_size: usize, heartbeat_timeout: Duration, request_timeout: Duration) -> Self {
        Report {
            pool_size,
            heartbeat_timeout,
            request_timeout,
        }
    }

    /// What runs, and how it is set up.
    pub fn header(&self, setup: &Setup<'_>) {
        let pool = setup.pool;
        let heartbeat = pool
            .heartbeat_interval
            .map_or("off".to_owned(), |d| format!("every {}", seconds(d)));
        let keepalive = setup.tcp.keepalive.map_or("off".to_owned(), |k| {
            format!(
                "idle {}, then {} probes {} apart",
                seconds(k.idle),
                k.retries,
                seconds(k.interval)
            )
        });
        let user_timeout = setup
            .tcp
            .user_timeout
            .map_or("system default".to_owned(), seconds);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "livepool demo: faults injected into a busy pool, and what caught them\n"
        );
        let _ = writeln!(
            out,
            "  reference server {}  <-  fault proxy {}  <-  pool \"{}\"",
            setup.server, setup.proxy, pool.name
        );
        let _ = writeln!(
            out,
            "  pool        {} members (max_size = min_idle = {}), wait_timeout {}",
            pool.max_size,
            pool.min_idle,
            seconds(pool.wait_timeout)
        );
        let _ = writeln!(
            out,
            "  heartbeat   {heartbeat} on idle members, timeout {}",
            millis(pool.heartbeat_timeout)
        );
        let _ = writeln!(
            out,
            "  TCP         keepalive {keepalive}; TCP_USER_TIMEOUT {user_timeout}"
        );
        let _ = writeln!(
            out,
            "  callers     {} tasks: get, call, return, pause ~{}; request timeout {};",
            setup.callers,
            millis(setup.think_time),
            seconds(setup.request_timeout)
        );
        let _ = writeln!(
            out,
            "              a failed call marks its member broken and the request is retried with backoff"
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>8}  {:<TEXT_WIDTH$} {:<LAYER_WIDTH$} {:>SINCE_WIDTH$}",
            "time s", "event", "caught by", "+fault"
        );
        let _ = writeln!(
            out,
            "{}",
            "-".repeat(8 + 2 + TEXT_WIDTH + 1 + LAYER_WIDTH + 1 + SINCE_WIDTH)
        );
        print!("{out}");
    }

    /// Prints the timeline from `from` to now and returns now. If `fault` is
    /// given, this phase is that fault's: its facts are worked out and kept.
    pub fn phase(
        &self,
        journal: &Journal,
        from: Duration,
        fault: Option<&mut FaultRecord>,
    ) -> Duration {
        let to = journal.now();
        let snapshot = journal.snapshot();
        let (began, target) = match &fault {
            Some(f) => (Some(f.began), f.kind.target()),
            None => (None, None),
        };
        let facts = self.facts(&snapshot, from, to, began, target);
        let mut out = String::new();
        self.timeline(&mut out, &snapshot, from, to, began, &facts);
        print!("{out}");
        if let Some(fault) = fault {
            fault.facts = Some(facts);
        }
        to
    }

    fn facts(
        &self,
        snapshot: &Snapshot,
        from: Duration,
        to: Duration,
        began: Option<Duration>,
        target: Option<u64>,
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
            last_failure.and_then(|after| self.full_again(&snapshot.events, after, to));
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
    fn full_again(&self, events: &[Stamped], after: Duration, to: Duration) -> Option<Duration> {
        let mut members: i64 = 0;
        let full = self.pool_size as i64;
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

    fn timeline(
        &self,
        out: &mut String,
        snapshot: &Snapshot,
        from: Duration,
        to: Duration,
        began: Option<Duration>,
        facts: &Facts,
    ) {
        let mut groups = group(window(&snapshot.events, from, to));
        if let Some(at) = facts.full_again {
            groups.push(Group::single(
                at,
                format!("pool back to {} live members", self.pool_size),
            ));
        }
        groups.sort_by_key(|g| g.first);
        // Lines shown per key; lines and events folded per key, in order of first fold.
        let mut shown: Vec<(&Key, usize)> = Vec::new();
        let mut folded: Vec<(&Key, usize, usize)> = Vec::new();
        for g in &groups {
            let lines = match shown.iter_mut().find(|(k, _)| *k == &g.key) {
                Some((_, n)) => n,
                None => {
                    shown.push((&g.key, 0));
                    &mut shown.last_mut().expect("just pushed").1
                }
            };
            if g.key != Key::Single && *lines >= LINES_PER_KIND {
                match folded.iter_mut().find(|(k, _, _)| *k == &g.key) {
                    Some((_, lines, events)) => {
                        *lines += 1;
                        *events += g.count;
                    }
                    None => folded.push((&g.key, 1, g.count)),
                }
                continue;
            }
            *lines += 1;
            let detected = facts
                .detected
                .is_some_and(|d| d.at == g.first && g.key == Key::Evicted(d.reason));
            if g.key == Key::Single {
                let _ = writeln!(out, "{:>8.3}  {}", g.first.as_secs_f64(), g.text());
                continue;
            }
            let layer = match &g.key {
                Key::Evicted(reason) => Layer::of(*reason).name(),
                Key::CallFailed(_) | Key::GetFailed(_) | Key::WrongReply | Key::Abandoned => {
                    "(seen by a caller)"
                }
                _ => "",
            };
            let since = match began {
                Some(b) if g.first >= b => format!("+{}", delay(g.first - b)),
                _ => String::new(),
            };
            let line = format!(
                "{:>8.3}  {:<TEXT_WIDTH$} {:<LAYER_WIDTH$} {:>SINCE_WIDTH$}{}",
                g.first.as_secs_f64(),
                g.text(),
                layer,
                since,
                if detected { "  <- detected" } else { "" }
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if !folded.is_empty() {
            let parts: Vec<String> = folded
                .iter()
                .map(|(key, lines, events)| {
                    format!("{lines} more \"{}\" lines ({events} events)", key.short())
                })
                .collect();
            let text = format!("(not shown: {})", parts.join(", "));
            for line in wrap(&text, 90) {
                let _ = writeln!(out, "{:>8}    {line}", "");
            }
        }
        if began.is_some() && facts.had_failures && facts.full_again.is_none() {
            let _ = writeln!(
                out,
                "{:>8}    the pool was NOT back to {} members by the end of this phase",
                "", self.pool_size
            );
        }
        if began.is_some() {
            let _ = writeln!(
                out,
                "{:>8}    this phase: {} requests done, slowest {}; {} call errors, {} get() errors",
                "",
                facts.requests,
                delay(facts.slowest),
                facts.call_error_count(),
                facts.get_error_count()
            );
            if let Some((a, b)) = facts.stall {
                let _ = writeln!(
                    out,
                    "{:>8}    no request completed for {} ({:.3} to {:.3})",
                    "",
                    delay(b - a),
                    a.as_secs_f64(),
                    b.as_secs_f64()
                );
            }
        }
    }

    /// The tables and the final status.
    pub fn summary(&self, faults: &[FaultRecord], status: &Status) {
        let mut out = String::new();
        let _ = writeln!(out, "\nDetection");
        let _ = writeln!(
            out,
            "  {:<30} {:<28} {:>8} {:>14} {:>10} {:>9} {:>9}",
            "fault",
            "first caught by",
            "after",
            "kernel/socket",
            "heartbeat",
            "use-time",
            "connects"
        );
        let _ = writeln!(out, "  {}", "-".repeat(30 + 28 + 8 + 14 + 10 + 9 + 9 + 6));
        for f in faults {
            let Some(facts) = &f.facts else { continue };
            let (layer, after) = match facts.detected {
                Some(d) => (Layer::of(d.reason).name().to_owned(), delay(d.at - f.began)),
                None => ("not detected".to_owned(), "-".to_owned()),
            };
            let _ = writeln!(
                out,
                "  {:<30} {:<28} {:>8} {:>14} {:>10} {:>9} {:>9}",
                f.kind.label(),
                layer,
                after,
                facts.evictions(Layer::Kernel),
                facts.evictions(Layer::Heartbeat),
                facts.evictions(Layer::UseTime),
                facts.connected
            );
        }
        let _ = writeln!(
            out,
            "  (the layer columns count members evicted in the fault's phase; connects count the replacements)"
        );

        let _ = writeln!(out, "\nWhat callers saw");
        let _ = writeln!(
            out,
            "  {:<30} {:>9} {:>12} {:>13} {:>16} {:>14}",
            "fault", "requests", "call errors", "get() errors", "slowest request", "longest stall"
        );
        let _ = writeln!(out, "  {}", "-".repeat(30 + 9 + 12 + 13 + 16 + 14 + 5));
        for f in faults {
            let Some(facts) = &f.facts else { continue };
            let stall = facts.stall.map_or("-".to_owned(), |(a, b)| delay(b - a));
            let _ = writeln!(
                out,
                "  {:<30} {:>9} {:>12} {:>13} {:>16} {:>14}",
                f.kind.label(),
                facts.requests,
                facts.call_error_count(),
                facts.get_error_count(),
                delay(facts.slowest),
                stall
            );
        }
        let _ = writeln!(out);
        for (i, f) in faults.iter().enumerate() {
            let Some(facts) = &f.facts else { continue };
            let _ = writeln!(out, "  {}. {}", i + 1, f.kind.label());
            for line in wrap(&self.explain(f, facts), 96) {
                let _ = writeln!(out, "     {line}");
            }
        }

        let c = &status.counters;
        let _ = writeln!(out, "\nFinal pool status");
        let _ = writeln!(
            out,
            "  size {} of {}: idle {}, in use {}, probing {}, connecting {}; waiters {}",
            status.size,
            status.max_size,
            status.idle,
            status.in_use,
            status.probing,
            status.connecting,
            status.waiters
        );
        if status.size < self.pool_size
            && let Some(i) = faults.iter().rposition(|f| {
                f.facts
                    .as_ref()
                    .is_some_and(|facts| facts.refill_retry_in.is_some())
            })
        {
            let _ = writeln!(
                out,
                "  (below min_idle {}: the sentinel's refill is still backing off after the connects \
                 that failed during fault {})",
                self.pool_size,
                i + 1
            );
        }
        let _ = writeln!(
            out,
            "  created {}, connect failures {}, checkouts {}, waits {}, wait timeouts {}",
            c.created, c.connect_failures, c.checkouts, c.waits, c.wait_timeouts
        );
        let _ = writeln!(
            out,
            "  heartbeats: {} ok, {} failed; round trip mean {}, max {}",
            c.probes_ok,
            c.probes_failed,
            delay(c.probe_rtt.mean()),
            delay(c.probe_rtt.max)
        );
        let evicted: Vec<String> = c
            .evicted
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  evicted {}: {}",
            c.evicted.total(),
            if evicted.is_empty() {
                "none".to_owned()
            } else {
                evicted.join(", ")
            }
        );
        print!("{out}");
    }

    /// What a person should take from one fault's numbers.
    fn explain(&self, fault: &FaultRecord, facts: &Facts) -> String {
        let mut text = String::new();
        let detected = facts.detected;
        match fault.kind {
            FaultKind::Reset { member } => {
                text.push_str(&format!("The proxy reset member #{member}'s connection. "));
                match detected.map(|d| d.reason) {
                    Some(EvictReason::BrokenOnCheckout) => text.push_str(
                        "The next checkout's cheap check (what the socket already shows, no I/O wait) \
                         saw the reset, evicted the member and handed that caller another one. ",
                    ),
                    Some(EvictReason::BrokenWhileIdle) => text.push_str(
                        "The sentinel's cheap check of idle members saw the reset before any caller \
                         took the member again, and evicted it. ",
                    ),
                    Some(EvictReason::BrokenOnReturn) => text.push_str(
                        "A caller had taken it again just before the reset, so its call got the \
                         reset as an error. ",
                    ),
                    Some(other) => {
                        text.push_str(&format!("It was evicted ({other}). "));
                    }
                    None => text.push_str("The pool did not evict it within the phase. "),
                }
            }
            FaultKind::Blackhole { member } => {
                text.push_str(&format!(
                    "Member #{member}'s connection went silent: the proxy kept both sockets open and \
                     dropped every byte, and its kernel still ACKs, so neither the socket nor kernel \
                     keepalive had anything to report. "
                ));
                match detected.map(|d| d.reason) {
                    Some(EvictReason::ProbeTimedOut) => text.push_str(&format!(
                        "The member was idle (callers stay on the few members at the top of the \
                         LIFO idle stack), so its next heartbeat went out when due and was not \
                         answered within {}: evicted. ",
                        millis(self.heartbeat_timeout)
                    )),
                    Some(other) => text.push_str(&format!(
                        "It was caught at use time ({other}) before its heartbeat was due. "
                    )),
                    None => text.push_str("The pool did not evict it within the phase. "),
                }
            }
            FaultKind::Hang { lasted } => {
                text.push_str(&format!(
                    "For {} the server read every request and heartbeat and answered none, while \
                     its kernel kept every connection up. Every call sent in that time waited for \
                     the callers' {} request timeout: no pool can make a hung server answer, and a \
                     heartbeat cannot probe a connection a caller is using. What the pool did: \
                     each timed-out member (its stream now out of step) was evicted, never reused \
                     ({} use-time evictions); idle members were probed and evicted when their \
                     heartbeat went unanswered ({} heartbeat evictions); the server still accepted \
                     connections, so replacements connected and get() never had to fail. ",
                    seconds(lasted),
                    seconds(self.request_timeout),
                    facts.evictions(Layer::UseTime),
                    facts.evictions(Layer::Heartbeat),
                ));
            }
            FaultKind::Restart { down } => {
                text.push_str(
                    "The server closed every connection and the proxy passed the FIN on. ",
                );
                let found: Vec<String> = [
                    (
                        EvictReason::BrokenWhileIdle,
                        "by the sentinel on idle members",
                    ),
                    (EvictReason::BrokenOnCheckout, "at checkout"),
                ]
                .into_iter()
                .filter(|(reason, _)| facts.evicted_for(*reason) > 0)
                .map(|(reason, where_)| {
                    format!("{} {where_} ({reason})", facts.evicted_for(reason))
                })
                .collect();
                if !found.is_empty() {
                    text.push_str(&format!(
                        "The cheap check caught dead members before anyone called on them: {} \
                         (the members the FIN closed, then replacements the proxy reset). ",
                        found.join(", ")
                    ));
                }
                text.push_str(&format!(
                    "For {} nothing listened on the port. The proxy, like a TCP load balancer \
                     with no backend, still accepted each connect and then reset it: {} \
                     connects inside get()s and {} refill connects failed outright (a get() \
                     retries its own within wait_timeout), while the others 'succeeded' and \
                     handed out a member the reset killed on its first call. ",
                    seconds(down),
                    facts.get_connect_failures,
                    facts.refill_failures,
                ));
            }
        }
        if let Some((at, retry_in)) = &facts.refill_retry_in {
            text.push_str(&format!(
                "After its last failed refill connect (at {:.3}) the sentinel waits about {retry_in} \
                 (with jitter) before it refills again; until then the pool stays below min_idle \
                 unless callers' get()s connect. ",
                at.as_secs_f64()
            ));
        }
        text.push_str(&self.caller_outcome(facts));
        text
    }

    fn caller_outcome(&self, facts: &Facts) -> String {
        let mut text = String::new();
        let calls = facts.call_error_count();
        if calls == 0 {
            text.push_str("No call failed. ");
        } else {
            let kinds: Vec<String> = facts
                .call_errors
                .iter()
                .map(|(error, n)| format!("{n} x \"{error}\""))
                .collect();
            text.push_str(&format!(
                "Callers saw {} ({}); each caller marked that member broken (so it was \
                 evicted, never reused) and retried its request. ",
                count(calls, "call error", "call errors"),
                kinds.join(", ")
            ));
        }
        let gets = facts.get_error_count();
        if gets == 0 {
            text.push_str("No get() failed. ");
        } else {
            let kinds: Vec<String> = facts
                .get_errors
                .iter()
                .map(|(error, n)| format!("{n} x \"{error}\""))
                .collect();
            text.push_str(&format!(
                "get() failed {} ({}). ",
                count(gets, "time", "times"),
                kinds.join(", ")
            ));
        }
        if facts.abandoned > 0 {
            text.push_str(&format!(
                "{} given up after retrying for 5 s. ",
                count(facts.abandoned, "request was", "requests were")
            ));
        }
        if facts.wrong_replies > 0 {
            text.push_str(&format!(
                "{} not match the request: a stream out of step was reused. ",
                count(facts.wrong_replies, "reply did", "replies did")
            ));
        }
        text.push_str(&format!(
            "The slowest request took {}",
            delay(facts.slowest)
        ));
        if let Some(lifted) = facts.lifted
            && let Some((a, b)) = facts.stall
        {
            if b >= lifted {
                text.push_str(&format!(
                    "; requests completed again {} after the fault was lifted",
                    delay(b.saturating_sub(lifted))
                ));
            } else {
                text.push_str(&format!(
                    "; the longest stretch without a reply was {}",
                    delay(b - a)
                ));
            }
        }
        text.push('.');
        text
    }
}

/// Events in `[from, to)`.
fn window(events: &[Stamped], from: Duration, to: Duration) -> impl Iterator<Item = &Stamped> {
    events.iter().filter(move |e| e.at >= from && e.at < to)
}

/// What a timeline line is about: lines with the same key may be merged and folded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Evicted(EvictReason),
    Connected,
    /// A connect inside a caller's `get()` failed (the `get()` retries).
    GetConnectFailed,
    /// A background refill connect failed (the sentinel backs off).
    RefillFailed,
    CallFailed(String),
    GetFailed(String),
    WrongReply,
    Abandoned,
    /// Never merged or folded: notes and fault boundaries.
    Single,
}

impl Key {
    /// What the fold footnote calls these lines.
    fn short(&self) -> String {
        match self {
            Key::Evicted(reason) => format!("evicted ({reason})"),
            Key::Connected => "connected".to_owned(),
            Key::GetConnectFailed => "connect failed in get()".to_owned(),
            Key::RefillFailed => "refill connect failed".to_owned(),
            Key::CallFailed(error) => format!("call failed: {error}"),
            Key::GetFailed(error) => format!("get() failed: {error}"),
            Key::WrongReply => "wrong reply".to_owned(),
            Key::Abandoned => "request given up".to_owned(),
            Key::Single => String::new(),
        }
    }
}

/// One timeline line: events of one key close together, or a single note.
struct Group {
    key: Key,
    first: Duration,
    count: usize,
    members: Vec<u64>,
    callers: Vec<usize>,
    /// The note's text, or the latest detail of the grouped events.
    text: String,
}

impl Group {
    fn new(key: Key, at: Duration, text: String) -> Self {
        Group {
            key,
            first: at,
            count: 0,
            members: Vec::new(),
            callers: Vec::new(),
            text,
        }
    }

    fn single(at: Duration, text: String) -> Self {
        let mut g = Group::new(Key::Single, at, text);
        g.count = 1;
        g
    }

    /// The line's text, fitted to the column (notes and fault lines are
    /// printed whole and run across the other columns).
    fn text(&self) -> String {
        let n = self.count;
        let members = list(&self.members, "#");
        let callers = {
            let mut sorted = self.callers.clone();
            sorted.sort_unstable();
            list(&sorted, "")
        };
        let text = match &self.key {
            Key::Single => return self.text.clone(),
            Key::Evicted(reason) if n == 1 => format!("evicted {members} ({reason})"),
            Key::Evicted(reason) => format!("evicted {n} ({reason}): {members}"),
            Key::Connected if n == 1 => format!("connected {members}"),
            Key::Connected => format!("connected {n}: {members}"),
            Key::GetConnectFailed if n == 1 => "connect failed inside a get(), retried".to_owned(),
            Key::GetConnectFailed => format!("{n} connects failed inside get()s, retried"),
            Key::RefillFailed => format!(
                "{n} refill connect{} failed; next refill in {}",
                if n == 1 { "" } else { "s" },
                self.text
            ),
            Key::CallFailed(error) if n == 1 => format!("caller {callers}: call failed: {error}"),
            Key::CallFailed(error) => format!("{n} calls failed: {error}"),
            Key::GetFailed(error) if n == 1 => format!("caller {callers}: get() failed: {error}"),
            Key::GetFailed(error) => format!("{n} get()s failed: {error}"),
            Key::WrongReply => format!("{n} WRONG REPLIES (callers {callers}) on {members}"),
            Key::Abandoned => format!("{n} requests given up after 5 s (callers {callers})"),
        };
        fit(&text, TEXT_WIDTH)
    }
}

/// Merges events of the same key that happen within `GROUP_SPAN` of the
/// first of them into one line.
fn group<'a>(events: impl Iterator<Item = &'a Stamped>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for e in events {
        let (key, member, caller, detail) = match &e.event {
            Event::Note(text) => {
                groups.push(Group::single(e.at, text.clone()));
                continue;
            }
            Event::FaultBegins { fault, what } => {
                groups.push(Group::single(
                    e.at,
                    format!("== FAULT {}: {what}", fault + 1),
                ));
                continue;
            }
            Event::FaultEnds { what, .. } => {
                groups.push(Group::single(e.at, format!("== {what}")));
                continue;
            }
            Event::Evicted { member, reason } => (Key::Evicted(*reason), Some(*member), None, None),
            Event::Connected { member } => (Key::Connected, Some(*member), None, None),
            Event::ConnectFailed { retry_in: None } => (Key::GetConnectFailed, None, None, None),
            Event::ConnectFailed {
                retry_in: Some(retry_in),
            } => (Key::RefillFailed, None, None, Some(retry_in.clone())),
            Event::CallFailed {
                caller,
                member,
                error,
            } => (
                Key::CallFailed(error.clone()),
                Some(*member),
                Some(*caller),
                None,
            ),
            Event::GetFailed { caller, error } => {
                (Key::GetFailed(error.clone()), None, Some(*caller), None)
            }
            Event::WrongReply { caller, member } => {
                (Key::WrongReply, Some(*member), Some(*caller), None)
            }
            Event::Abandoned { caller } => (Key::Abandoned, None, Some(*caller), None),
        };
        let open = groups
            .iter()
            .rposition(|g| g.key == key && e.at - g.first <= GROUP_SPAN);
        let index = open.unwrap_or_else(|| {
            groups.push(Group::new(key, e.at, String::new()));
            groups.len() - 1
        });
        let g = &mut groups[index];
        g.count += 1;
        if let Some(detail) = detail {
            g.text = detail;
        }
        if let Some(m) = member
            && !g.members.contains(&m)
        {
            g.members.push(m);
        }
        if let Some(c) = caller
            && !g.callers.contains(&c)
        {
            g.callers.push(c);
        }
    }
    groups
}

/// "#3 #4 #5" or "1 2", shortened with "+N" past `IDS_PER_LINE`.
fn list<T: std::fmt::Display>(items: &[T], prefix: &str) -> String {
    let mut parts: Vec<String> = items
        .iter()
        .take(IDS_PER_LINE)
        .map(|i| format!("{prefix}{i}"))
        .collect();
    if items.len() > IDS_PER_LINE {
        parts.push(format!("+{}", items.len() - IDS_PER_LINE));
    }
    parts.join(" ")
}

/// Cuts `text` to `width` characters, marking the cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// "1 call error", "3 call errors".
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "3 ms", "812 ms", "1.004 s", "0.2 ms".
pub fn delay(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

/// "300 ms" for settings.
fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// "2 s", "1.5 s" for settings.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}
