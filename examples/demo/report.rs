//! What the demo prints: the header, one timeline block per phase (printed
//! when the phase is over, so printing never skews the times it reports),
//! and the summary tables with the final status.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use livepool::tcp::TcpOptions;
use livepool::{Config, Status};

use super::explain::explain;
use super::facts::{FaultRecord, Layer, facts};
use super::journal::Journal;
use super::text::{delay, millis, seconds, wrap};
use super::timeline::{self, LAYER_WIDTH, SINCE_WIDTH, TEXT_WIDTH};

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
        let facts = facts(&snapshot, from, to, began, target, self.pool_size);
        let mut out = String::new();
        timeline::render(&mut out, &snapshot, from, to, began, &facts, self.pool_size);
        print!("{out}");
        if let Some(fault) = fault {
            fault.facts = Some(facts);
        }
        to
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
            for line in wrap(
                &explain(f, facts, self.heartbeat_timeout, self.request_timeout),
                96,
            ) {
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
        let still_backing_off = if status.size < self.pool_size {
            faults.iter().rposition(|f| {
                f.facts
                    .as_ref()
                    .is_some_and(|facts| facts.refill_retry_in.is_some())
            })
        } else {
            None
        };
        if let Some(i) = still_backing_off {
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
}
