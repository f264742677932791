//! What keeping 10,000 idle members alive costs: one pool, min_idle =
//! max_size = 10,000 over loopback to the reference server, a heartbeat every
//! second, measured over 10 s of steady state.
//!
//! Other sizes, one after another, with `LIVEPOOL_HEARTBEAT_SCALE_MEMBERS`
//! (`=1000,10000,100000`): each size is probed at the same rate, 10,000 probes
//! a second (so 100,000 members every 10 s; never faster than every second),
//! and a last table gives the CPU per probe of pool and floor at each size:
//! flat means the number of members costs nothing per probe. Above 20,000
//! members the server listens on several ports (one client address reaches
//! one server port through at most ~28,000 ephemeral ports), and as root the
//! bench raises the hard descriptor limit as well as the soft one.
//!
//! Measured, against the targets of DESIGN.md:
//!
//! * CPU time per wall second on the pool side (target ≤ 5% of one core). The
//!   server runs in a child process (this binary again, with
//!   `LIVEPOOL_HEARTBEAT_SCALE_ROLE=server`), so the CPU time of this process
//!   (`utime + stime` of `/proc/self/stat`, in clock ticks of 1/100 s) is the
//!   pool's alone; the server's is read from `/proc/<child>/stat`.
//! * The floor: after the pool is closed, the same heartbeats at the same
//!   rate (each of 10,000 raw `RpcConnection`s once per second, a tenth of
//!   them per 100 ms tick, 64 at a time, the same timeouts), sent by a plain
//!   loop with no pool. Over loopback most of a probe's CPU is the kernel's
//!   (the sender's `writev` also runs the receiver's TCP input), so the floor
//!   says what any heartbeat scheme pays; the pool's own cost is the rest.
//! * Probes per second: the pool's `probes_ok` and the server's heartbeat
//!   counter, each differenced over the window.
//! * Whether every member was probed once per interval ± jitter: the bench's
//!   manager wraps `RpcManager` and notes, per member, each successful
//!   heartbeat (an `Instant` and three relaxed atomics, some 50 ns against a
//!   loopback round trip); the bench reports per-member probe counts and the
//!   shortest and longest gap between two probes of one member.
//! * Pool bookkeeping per member (target ≤ 256 bytes): the RSS of a child
//!   process holding a pool of 10,000 members of a connection that takes no
//!   memory (`()`) minus that of one holding an empty pool, divided by 10,000.
//!   The sentinel fills the pool itself (as in the main measurement, so no
//!   other allocation leaves its mark on the heap) and both children run it
//!   with heartbeats for 2.5 s first, so every structure it keeps per member
//!   has been used. Also reported: this
//!   process's RSS per member with real connections (socket buffers of the
//!   codec included), which is the connection's cost, not the pool's.
//!
//! File descriptors: the pool holds one socket per member and so does the
//! server, which is one more reason it runs in its own process. The bench
//! raises the soft `RLIMIT_NOFILE` to the hard limit (the `rlimit` crate: a
//! safe wrapper, as benches are held to the crate's no-`unsafe` rule); if the
//! hard limit is still below 10,000 plus a margin, it measures fewer members
//! and says so.
//!
//! Under `cargo test --benches` it runs with 200 members for 2 s and writes
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use livepool::protocol::{ClientError, DEFAULT_MAX_BODY, RpcConnection, RpcManager, Server};
use livepool::tcp::TcpOptions;
use livepool::{Condition, Manager, Pool, Status};
use tokio::time::MissedTickBehavior;

use common::child::{CHILD_ANSWER, ChildProcess};
use common::{Table, fail, full_run, write_summary};

const ROLE_VAR: &str = "LIVEPOOL_HEARTBEAT_SCALE_ROLE";
/// Comma-separated member counts to measure, one after another (default
/// 10,000): `LIVEPOOL_HEARTBEAT_SCALE_MEMBERS=1000,10000,100000`.
const MEMBERS_VAR: &str = "LIVEPOOL_HEARTBEAT_SCALE_MEMBERS";
const MEMBERS: usize = 10_000;
const MEMBERS_TEST: usize = 200;
/// The probe rate every size is measured at (members / interval): 10,000
/// members at 1 s, 100,000 at 10 s. One rate for all sizes, so the cost per
/// probe says what the number of members costs, not what the rate does.
const PROBES_PER_SECOND: usize = 10_000;
/// The memory children's heartbeat interval.
const INTERVAL: Duration = Duration::from_secs(1);
/// Connections to one server port from one client address are bounded by
/// the ephemeral port range (about 28,000 on Linux by default); the server
/// listens on one port per this many members.
const MEMBERS_PER_PORT: usize = 20_000;
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(500);
/// The pool's default, spelled out because the bounds below depend on it.
const JITTER: f64 = 0.1;
/// The shortest window; at least three intervals are measured.
const WINDOW: Duration = Duration::from_secs(10);
const WINDOW_TEST: Duration = Duration::from_secs(2);

/// One size's schedule: its interval keeps the probe rate at
/// [`PROBES_PER_SECOND`] (never below 1 s), its tick is what
/// `Config::sentinel_tick` gives (a tenth of the interval, at most 250 ms),
/// and it settles for two intervals, so every member is probed at least
/// twice before the window and the window sees the steady state, not the fill.
#[derive(Clone, Copy)]
struct Scale {
    members: usize,
    interval: Duration,
    tick: Duration,
    window: Duration,
    settle: Duration,
}

impl Scale {
    fn new(members: usize, full: bool) -> Scale {
        let interval =
            Duration::from_secs_f64((members as f64 / PROBES_PER_SECOND as f64).max(1.0));
        let window = if full {
            WINDOW.max(interval * 3)
        } else {
            WINDOW_TEST
        };
        Scale {
            members,
            interval,
            tick: (interval / 10).min(Duration::from_millis(250)),
            window,
            settle: interval * 2,
        }
    }
}
/// Descriptors besides the sockets: stdio, the runtime's epoll and pipes, the
/// listener, /proc files.
const FD_MARGIN: u64 = 128;
/// Bound on filling the pool. The sentinel connects at most 16 members per
/// tick (100 ms), so 10,000 take about a minute.
const FILL_LIMIT: Duration = Duration::from_secs(300);
/// How long the memory children let the sentinel run before reading RSS.
const MEMORY_SETTLE: Duration = Duration::from_millis(2500);
/// Linux's USER_HZ, the unit of utime and stime in /proc/<pid>/stat; fixed at
/// 100 for the user-space ABI on every architecture tokio supports.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// The pool's default `max_concurrent_probes`, which the floor copies.
const CONCURRENT_PROBES: usize = 64;
const TARGET_CPU_SHARE: f64 = 0.05;
/// Issue 13: at most 128 bytes of pool bookkeeping per member.
const TARGET_BYTES_PER_MEMBER: f64 = 128.0;
/// Issue 13: pool CPU per probe within 1.15× of the plain loop's.
const TARGET_RATIO_TO_FLOOR: f64 = 1.15;

fn main() {
    match std::env::var(ROLE_VAR) {
        Ok(role) => child(&role),
        Err(_) => parent(),
    }
}

// ---------------------------------------------------------------- children

fn child(role: &str) {
    if let Some(spec) = role.strip_prefix("server:") {
        let numbers: Vec<usize> = spec
            .split(':')
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|e| fail("server role: connection and port counts", e))
            })
            .collect();
        match numbers[..] {
            [max_connections, ports] => serve(max_connections, ports),
            _ => fail("server role", spec),
        }
    } else if let Some(members) = role.strip_prefix("memory:") {
        let members = members
            .parse()
            .unwrap_or_else(|e| fail("memory role: member count", e));
        measure_memory(members);
    } else {
        fail(ROLE_VAR, format!("unknown role {role:?}"));
    }
}

/// The server child: listens on `ports` ports, prints `addr` and their
/// addresses, then answers each `stats` line on stdin with `heartbeats
/// requests connections` summed over them, until stdin closes.
fn serve(max_connections: usize, ports: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("server: building the runtime", e));
    let servers = runtime
        .block_on(async {
            let mut servers = Vec::with_capacity(ports);
            for _ in 0..ports.max(1) {
                let server = Server::new()
                    .max_connections(max_connections)
                    .bind("127.0.0.1:0".parse().map_err(|_| "bad address")?)
                    .await
                    .map_err(|e| e.to_string())?;
                servers.push(server);
            }
            Ok::<_, String>(servers)
        })
        .unwrap_or_else(|e| fail("server: binding", e));
    let addrs: Vec<String> = servers.iter().map(|s| s.addr().to_string()).collect();
    println!("addr {}", addrs.join(" "));
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(line) if line.trim() == "stats" => println!(
                "{} {} {}",
                servers.iter().map(|s| s.heartbeats()).sum::<u64>(),
                servers.iter().map(|s| s.requests()).sum::<u64>(),
                servers.iter().map(|s| s.connections() as u64).sum::<u64>()
            ),
            Ok(other) => fail("server: unknown command", other),
            Err(e) => fail("server: reading stdin", e),
        }
    }
    runtime.block_on(async {
        for server in servers {
            server.shutdown().await;
        }
    });
}

/// A connection that takes no memory: what is left is the pool's own.
struct NoConnection;

impl Manager for NoConnection {
    type Connection = ();
    type Error = std::io::Error;

    async fn connect(&self) -> std::io::Result<()> {
        Ok(())
    }

    async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> {
        Ok(())
    }
}

/// The memory child: a pool of `members` members of `()`, heartbeats on for a
/// while, then `rss_kb <VmRSS>` on stdout.
fn measure_memory(members: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("memory: building the runtime", e));
    runtime.block_on(async {
        // The sentinel fills the pool itself, as in the main measurement, so
        // nothing else (a Vec of borrowed guards, say) leaves its mark on the
        // heap. A short `validate_after` makes it tick every 10 ms, and it
        // connects up to 16 members a tick.
        let pool = Pool::builder()
            .name("memory")
            .max_size(members.max(1))
            .min_idle(members)
            .heartbeat_interval(INTERVAL)
            .heartbeat_timeout(HEARTBEAT_TIMEOUT)
            .validate_after(Duration::from_millis(100))
            .build(NoConnection)
            .unwrap_or_else(|e| fail("memory: building the pool", e));
        let filled = tokio::time::timeout(FILL_LIMIT, async {
            while pool.status().idle < members {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if filled.is_err() {
            fail("memory: filling the pool", format!("{:?}", pool.status()));
        }
        tokio::time::sleep(MEMORY_SETTLE).await;
        let status = pool.status();
        if status.size != members {
            fail(
                "memory: the pool lost members",
                format!("{} of {members}", status.size),
            );
        }
        let rss = rss_kib(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
            .unwrap_or_else(|| fail("memory", "no VmRSS in /proc/self/status"));
        println!("rss_kb {rss} probes_ok {}", status.counters.probes_ok);
        drop(pool);
    });
}

// ------------------------------------------------------------ measurements

/// Every successful heartbeat, per member: how many, and the shortest and
/// longest gap between two of them while the window is open.
struct ProbeLog {
    base: Instant,
    recording: AtomicBool,
    members: Vec<MemberProbes>,
    /// Heartbeats of members beyond the log (replacements for evicted ones).
    unlisted: AtomicU64,
}

struct MemberProbes {
    count: AtomicU64,
    /// Nanoseconds since `base`, plus one; 0 means never.
    last: AtomicU64,
    min_gap: AtomicU64,
    max_gap: AtomicU64,
}

impl ProbeLog {
    fn new(members: usize) -> Self {
        ProbeLog {
            base: Instant::now(),
            recording: AtomicBool::new(false),
            members: (0..members)
                .map(|_| MemberProbes {
                    count: AtomicU64::new(0),
                    last: AtomicU64::new(0),
                    min_gap: AtomicU64::new(u64::MAX),
                    max_gap: AtomicU64::new(0),
                })
                .collect(),
            unlisted: AtomicU64::new(0),
        }
    }

    fn record(&self, member: usize) {
        let Some(probes) = self.members.get(member) else {
            self.unlisted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.base.elapsed().as_nanos() as u64 + 1;
        probes.count.fetch_add(1, Ordering::Relaxed);
        let previous = probes.last.swap(now, Ordering::Relaxed);
        if previous != 0 && self.recording.load(Ordering::Relaxed) {
            let gap = now - previous;
            probes.min_gap.fetch_min(gap, Ordering::Relaxed);
            probes.max_gap.fetch_max(gap, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|m| m.count.load(Ordering::Relaxed))
            .collect()
    }

    /// Opens the window: gaps from now on count. A gap that starts before the
    /// window and ends in it counts too; it is still one member's interval.
    fn open(&self) {
        self.recording.store(true, Ordering::Relaxed);
    }

    fn close(&self) {
        self.recording.store(false, Ordering::Relaxed);
    }
}

/// `RpcManager`s (one per server port, taken in turn) plus a note in the
/// [`ProbeLog`] per successful heartbeat.
struct LoggingManager {
    inner: Vec<RpcManager>,
    log: Arc<ProbeLog>,
    next_port: AtomicUsize,
    next_index: AtomicUsize,
}

struct LoggedConnection {
    conn: RpcConnection,
    index: usize,
}

impl Manager for LoggingManager {
    type Connection = LoggedConnection;
    type Error = ClientError;

    async fn connect(&self) -> Result<LoggedConnection, ClientError> {
        let port = self.next_port.fetch_add(1, Ordering::Relaxed) % self.inner.len();
        let conn = self.inner[port].connect().await?;
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        Ok(LoggedConnection { conn, index })
    }

    async fn heartbeat(&self, c: &mut LoggedConnection) -> Result<(), ClientError> {
        self.inner[0].heartbeat(&mut c.conn).await?;
        self.log.record(c.index);
        Ok(())
    }

    fn condition(&self, c: &mut LoggedConnection) -> Condition {
        self.inner[0].condition(&mut c.conn)
    }
}

/// CPU time (user + system) of a process so far, from /proc/<pid>/stat.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| fail(&format!("reading /proc/{pid}/stat"), e));
    // The command name, in parentheses, may hold spaces: count from after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc(5), counted from field 3 (the state) here.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => {
            Duration::from_secs_f64((user + system) as f64 / CLOCK_TICKS_PER_SECOND)
        }
        _ => fail(&format!("parsing /proc/{pid}/stat"), stat),
    }
}

fn rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn own_rss_kib() -> u64 {
    rss_kib(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
        .unwrap_or_else(|| fail("reading /proc/self/status", "no VmRSS"))
}

/// Raises the soft descriptor limit to the hard one and says how many members
/// fit: each needs a socket here (and one in the server child, which inherits
/// the limit).
fn members_that_fit(wanted: usize) -> (usize, String) {
    // Root may raise the hard limit too (up to fs.nr_open); others keep it.
    let need = wanted as u64 + FD_MARGIN;
    if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if hard < need {
            let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, soft.max(need), need);
        }
    }
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let limit = match raised {
        Ok(limit) => limit,
        Err(e) => fail("raising RLIMIT_NOFILE", e),
    };
    let fit = limit.saturating_sub(FD_MARGIN) as usize;
    if fit >= wanted {
        (
            wanted,
            format!("RLIMIT_NOFILE soft limit raised to {limit}"),
        )
    } else {
        (
            fit,
            format!(
                "RLIMIT_NOFILE hard limit is {limit}: measuring {fit} members instead of {wanted} \
                 (each needs a socket, plus {FD_MARGIN} descriptors of margin)"
            ),
        )
    }
}

struct ServerStats {
    heartbeats: u64,
    connections: u64,
}

fn server_stats(server: &mut ChildProcess) -> ServerStats {
    let answer = server.ask("stats");
    let numbers: Vec<u64> = answer
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [heartbeats, _requests, connections] => ServerStats {
            heartbeats,
            connections,
        },
        _ => fail("the server's stats", answer),
    }
}

/// A snapshot of everything differenced over the window.
struct Snapshot {
    at: Instant,
    pool: Status,
    server: ServerStats,
    pool_cpu: Duration,
    server_cpu: Duration,
    counts: Vec<u64>,
}

fn snapshot(pool: &Pool<LoggingManager>, server: &mut ChildProcess, log: &ProbeLog) -> Snapshot {
    let server_pid = server.pid().to_string();
    Snapshot {
        at: Instant::now(),
        pool: pool.status(),
        server: server_stats(server),
        pool_cpu: cpu_time("self"),
        server_cpu: cpu_time(&server_pid),
        counts: log.counts(),
    }
}

fn memory_child(members: usize) -> (u64, u64) {
    let child = ChildProcess::spawn(ROLE_VAR, &format!("memory:{members}"), &[]);
    let line = child.line("memory report");
    child.finish();
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|n| n.parse().ok()),
        words.nth(1).and_then(|n| n.parse().ok()),
    ) {
        (Some("rss_kb"), Some(rss), Some(probes)) => (rss, probes),
        _ => fail("the memory child's report", line),
    }
}

/// The floor: the same heartbeats, at the same rate, with the same
/// concurrency and timeouts, sent by a plain loop over raw connections with
/// no pool. What the pool spends beyond it is the pool's own cost; what the
/// floor spends is the price of one TCP round trip per member per interval.
struct Floor {
    probes: u64,
    failed: u64,
    wall: Duration,
    cpu: Duration,
    server_cpu: Duration,
    server_heartbeats: u64,
}

async fn connect_all(
    addrs: &[std::net::SocketAddr],
    members: usize,
) -> Result<Vec<RpcConnection>, ClientError> {
    let opts = TcpOptions::default();
    futures_util::stream::iter(0..members)
        .map(|i| RpcConnection::connect(addrs[i % addrs.len()], &opts, DEFAULT_MAX_BODY))
        .buffer_unordered(16)
        .try_collect()
        .await
}

/// Each tick, heartbeats the next tenth of `conns` (so each once per
/// interval), `CONCURRENT_PROBES` at a time, until `stop`.
async fn probe_round_robin(
    mut conns: Vec<RpcConnection>,
    scale: Scale,
    stop: Instant,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> Vec<RpcConnection> {
    let per_tick =
        ((conns.len() as u128 * scale.tick.as_nanos() / scale.interval.as_nanos()) as usize).max(1);
    let mut ticker = tokio::time::interval(scale.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cursor = 0;
    while Instant::now() < stop {
        ticker.tick().await;
        let end = (cursor + per_tick).min(conns.len());
        futures_util::stream::iter(conns[cursor..end].iter_mut())
            .for_each_concurrent(CONCURRENT_PROBES, |conn| {
                let (ok, failed) = (&ok, &failed);
                async move {
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, conn.heartbeat()).await {
                        Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
            .await;
        cursor = if end >= conns.len() { 0 } else { end };
    }
    conns
}

fn measure_floor(
    runtime: &tokio::runtime::Runtime,
    server: &mut ChildProcess,
    addrs: &[std::net::SocketAddr],
    scale: Scale,
) -> Floor {
    let window = scale.window;
    let conns = runtime
        .block_on(connect_all(addrs, scale.members))
        .unwrap_or_else(|e| fail("floor: connecting", e));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + scale.settle + window + scale.interval;
    let task = runtime.spawn(probe_round_robin(
        conns,
        scale,
        stop,
        Arc::clone(&ok),
        Arc::clone(&failed),
    ));
    std::thread::sleep(scale.settle);
    let server_pid = server.pid().to_string();
    // The same readings at both ends of the window.
    let mut snapshot = || {
        (
            Instant::now(),
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            cpu_time("self"),
            cpu_time(&server_pid),
            server_stats(server).heartbeats,
        )
    };
    let before = snapshot();
    std::thread::sleep(window);
    let after = snapshot();
    let conns = runtime
        .block_on(task)
        .unwrap_or_else(|e| fail("floor: the probing task", e));
    drop(conns);
    Floor {
        wall: after.0 - before.0,
        probes: after.1 - before.1,
        failed: after.2 - before.2,
        cpu: after.3 - before.3,
        server_cpu: after.4 - before.4,
        server_heartbeats: after.5 - before.5,
    }
}

/// Waits (bounded) until the server has seen every connection of the closed
/// pool close, so the floor starts from the same place.
fn wait_for_server_connections(server: &mut ChildProcess, at_most: u64) {
    let deadline = Instant::now() + CHILD_ANSWER;
    while server_stats(server).connections > at_most {
        if Instant::now() >= deadline {
            fail(
                "waiting for the server to close the pool's connections",
                "timed out",
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(nanos: u64) -> String {
    format!("{:.0}", nanos as f64 / 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn parent() {
    let full = full_run();
    let sizes: Vec<usize> = match std::env::var(MEMBERS_VAR) {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|e| fail(&format!("{MEMBERS_VAR}={list}"), e))
            })
            .collect(),
        Err(_) => vec![if full { MEMBERS } else { MEMBERS_TEST }],
    };
    let mut texts = Vec::new();
    let mut per_size = Table::new(&[
        "members",
        "interval",
        "probes/s",
        "pool CPU per probe",
        "floor CPU per probe",
        "pool ÷ floor",
        "bookkeeping per member",
    ]);
    for wanted in sizes {
        let (members, fd_note) = members_that_fit(wanted);
        let outcome = measure(Scale::new(members, full), &fd_note);
        per_size.row(vec![
            members.to_string(),
            format!("{:?}", outcome.scale.interval),
            format!("{:.0}", outcome.probes_per_second),
            format!("{:.1} µs", outcome.pool_cpu_per_probe),
            format!("{:.1} µs", outcome.floor_cpu_per_probe),
            format!(
                "{:.2}×",
                outcome.pool_cpu_per_probe / outcome.floor_cpu_per_probe.max(f64::EPSILON)
            ),
            format!("{:.0} B", outcome.bookkeeping),
        ]);
        texts.push(outcome.text);
    }
    let mut text = texts.join("\n");
    text.push_str("\n## Cost per probe as members grow\n\n");
    text.push_str(&per_size.render());
    println!("\n{text}");
    if full {
        write_summary("heartbeat_scale", &text);
    }
}

/// What one size measured, for the table across sizes.
struct Outcome {
    scale: Scale,
    text: String,
    probes_per_second: f64,
    pool_cpu_per_probe: f64,
    floor_cpu_per_probe: f64,
    bookkeeping: f64,
}

fn measure(scale: Scale, fd_note: &str) -> Outcome {
    let Scale {
        members,
        interval,
        tick,
        window,
        settle,
    } = scale;
    println!("heartbeat_scale: {members} members every {interval:?}, {fd_note}");

    let ports = members.div_ceil(MEMBERS_PER_PORT).max(1);
    let mut server =
        ChildProcess::spawn(ROLE_VAR, &format!("server:{}:{ports}", members + 16), &[]);
    let addr_line = server.line("address");
    let addrs: Vec<std::net::SocketAddr> = addr_line
        .strip_prefix("addr ")
        .map(|list| {
            list.split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect()
        })
        .filter(|addrs: &Vec<_>| addrs.len() == ports)
        .unwrap_or_else(|| fail("the server's addresses", &addr_line));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("building the runtime", e));
    let log = Arc::new(ProbeLog::new(members));
    let manager = LoggingManager {
        inner: addrs.iter().map(|addr| RpcManager::new(*addr)).collect(),
        log: Arc::clone(&log),
        next_port: AtomicUsize::new(0),
        next_index: AtomicUsize::new(0),
    };
    let started = Instant::now();
    let pool = runtime
        .block_on(async {
            Pool::builder()
                .name("heartbeat_scale")
                .max_size(members)
                .min_idle(members)
                .heartbeat_interval(interval)
                .heartbeat_timeout(HEARTBEAT_TIMEOUT)
                .heartbeat_jitter(JITTER)
                .build(manager)
        })
        .unwrap_or_else(|e| fail("building the pool", e));

    // Fill: the sentinel connects on its own; wait until every member is idle.
    let filled = runtime.block_on(async {
        let deadline = Instant::now() + FILL_LIMIT;
        loop {
            let status = pool.status();
            if status.idle == members {
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let fill_time = filled.unwrap_or_else(|status| {
        fail(
            &format!("filling the pool within {FILL_LIMIT:?}"),
            format!("{status:?}"),
        )
    });
    println!(
        "filled {members} members in {:.1} s ({:.0} connects/s); settling for {settle:?}",
        fill_time.as_secs_f64(),
        members as f64 / fill_time.as_secs_f64()
    );
    std::thread::sleep(settle);

    log.open();
    let before = snapshot(&pool, &mut server, &log);
    std::thread::sleep(window);
    log.close();
    let after = snapshot(&pool, &mut server, &log);
    let rss_with_connections = own_rss_kib();

    let wall = after.at - before.at;
    let secs = wall.as_secs_f64();
    let pool_cpu_share = (after.pool_cpu - before.pool_cpu).as_secs_f64() / secs;
    let server_cpu_share = (after.server_cpu - before.server_cpu).as_secs_f64() / secs;
    let c0 = &before.pool.counters;
    let c1 = &after.pool.counters;
    let probes_ok = c1.probes_ok - c0.probes_ok;
    let probes_failed = c1.probes_failed - c0.probes_failed;
    let evicted = c1.evicted.total() - c0.evicted.total();
    let server_heartbeats = after.server.heartbeats - before.server.heartbeats;
    let rtt_count = c1.probe_rtt.count - c0.probe_rtt.count;
    let rtt_mean = (c1.probe_rtt.total.saturating_sub(c0.probe_rtt.total))
        .checked_div(rtt_count.max(1) as u32)
        .unwrap_or_default();

    // Per member.
    let mut counts: Vec<u64> = after
        .counts
        .iter()
        .zip(&before.counts)
        .map(|(a, b)| a - b)
        .collect();
    let mut count_histogram: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &counts {
        *count_histogram.entry(*c).or_default() += 1;
    }
    counts.sort_unstable();
    let mut max_gaps: Vec<u64> = log
        .members
        .iter()
        .map(|m| m.max_gap.load(Ordering::Relaxed))
        .collect();
    max_gaps.sort_unstable();
    let min_gap = log
        .members
        .iter()
        .map(|m| m.min_gap.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    let never = counts.iter().filter(|c| **c == 0).count();
    let interval_ns = interval.as_nanos() as u64;
    let tick_ns = tick.as_nanos() as u64;
    // Due at interval × (1 − up to jitter), found at the next tick, probed
    // behind at most the tick's other due members: interval + two ticks is
    // late, below interval × (1 − jitter) − a tick is early.
    let latest_ok = interval_ns + 2 * tick_ns;
    let earliest_ok = (interval_ns as f64 * (1.0 - JITTER)) as u64 - tick_ns;
    let max_gap = max_gaps.last().copied().unwrap_or(0);
    let schedule_ok = never == 0 && max_gap <= latest_ok && min_gap >= earliest_ok;

    // The floor, on the same server, once the pool's connections are gone.
    runtime.block_on(async { pool.close() });
    drop(pool);
    wait_for_server_connections(&mut server, 0);
    let floor = measure_floor(&runtime, &mut server, &addrs, scale);
    let floor_secs = floor.wall.as_secs_f64();
    let floor_cpu_share = floor.cpu.as_secs_f64() / floor_secs;
    let floor_server_share = floor.server_cpu.as_secs_f64() / floor_secs;
    let pool_cpu_per_probe =
        (after.pool_cpu - before.pool_cpu).as_secs_f64() * 1e6 / probes_ok.max(1) as f64;
    let floor_cpu_per_probe = floor.cpu.as_secs_f64() * 1e6 / floor.probes.max(1) as f64;

    // Memory.
    let (rss_empty, _) = memory_child(0);
    let (rss_full, memory_probes) = memory_child(members);
    let bookkeeping = (rss_full.saturating_sub(rss_empty) * 1024) as f64 / members as f64;

    let mut table = Table::new(&["measure", "value", "target", "verdict"]);
    table.row(vec![
        "pool-side CPU (share of one core)".into(),
        format!("{:.2}%", pool_cpu_share * 100.0),
        format!("≤ {:.0}%", TARGET_CPU_SHARE * 100.0),
        verdict(pool_cpu_share <= TARGET_CPU_SHARE).into(),
    ]);
    table.row(vec![
        "floor: same probes from a plain loop, no pool (share of one core)".into(),
        format!("{:.2}%", floor_cpu_share * 100.0),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "pool beyond the floor (share of one core)".into(),
        format!("{:+.2}%", (pool_cpu_share - floor_cpu_share) * 100.0),
        String::new(),
        String::new(),
    ]);
    let ratio_to_floor = pool_cpu_per_probe / floor_cpu_per_probe.max(f64::EPSILON);
    table.row(vec![
        "CPU per probe: pool / floor".into(),
        format!("{pool_cpu_per_probe:.1} µs / {floor_cpu_per_probe:.1} µs = {ratio_to_floor:.2}×"),
        format!("≤ {TARGET_RATIO_TO_FLOOR}×"),
        verdict(ratio_to_floor <= TARGET_RATIO_TO_FLOOR).into(),
    ]);
    table.row(vec![
        "server CPU, child process: pool run / floor run".into(),
        format!(
            "{:.2}% / {:.2}%",
            server_cpu_share * 100.0,
            floor_server_share * 100.0
        ),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "probes/s (pool probes_ok)".into(),
        format!("{:.0}", probes_ok as f64 / secs),
        format!(
            "≈ {:.0} (members / interval)",
            members as f64 / interval.as_secs_f64()
        ),
        String::new(),
    ]);
    table.row(vec![
        "heartbeats/s (server counter): pool run / floor run".into(),
        format!(
            "{:.0} / {:.0}",
            server_heartbeats as f64 / secs,
            floor.server_heartbeats as f64 / floor_secs
        ),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "floor probes/s (failed)".into(),
        format!("{:.0} ({})", floor.probes as f64 / floor_secs, floor.failed),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "probes failed / members evicted in window".into(),
        format!("{probes_failed} / {evicted}"),
        "0 / 0".into(),
        verdict(probes_failed == 0 && evicted == 0).into(),
    ]);
    table.row(vec![
        "probe round trip, mean".into(),
        format!("{:.0} µs", rtt_mean.as_secs_f64() * 1e6),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "probes per member in window: min / p50 / max".into(),
        format!(
            "{} / {} / {}",
            counts.first().copied().unwrap_or(0),
            percentile(&counts, 0.5),
            counts.last().copied().unwrap_or(0)
        ),
        format!("≈ {:.0}", secs / interval.as_secs_f64()),
        String::new(),
    ]);
    table.row(vec![
        "gap between probes of one member: min / p50 of max / p99 of max / max (ms)".into(),
        format!(
            "{} / {} / {} / {}",
            ms(min_gap),
            ms(percentile(&max_gaps, 0.5)),
            ms(percentile(&max_gaps, 0.99)),
            ms(max_gap)
        ),
        format!("within {}..={} ms", ms(earliest_ok), ms(latest_ok)),
        verdict(schedule_ok).into(),
    ]);
    table.row(vec![
        "members never probed in window".into(),
        never.to_string(),
        "0".into(),
        verdict(never == 0).into(),
    ]);
    table.row(vec![
        "pool bookkeeping per member (RSS delta, `()` connections)".into(),
        format!("{bookkeeping:.0} B"),
        format!("≤ {TARGET_BYTES_PER_MEMBER:.0} B"),
        verdict(bookkeeping <= TARGET_BYTES_PER_MEMBER).into(),
    ]);
    table.row(vec![
        "this process's RSS per member, real connections".into(),
        format!("{:.1} KiB", rss_with_connections as f64 / members as f64),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "time to fill by the sentinel".into(),
        format!(
            "{:.1} s ({:.0} connects/s)",
            fill_time.as_secs_f64(),
            members as f64 / fill_time.as_secs_f64()
        ),
        String::new(),
        String::new(),
    ]);

    let mut text = format!("# heartbeat_scale: {members} members\n\n");
    let _ = writeln!(
        text,
        "{members} idle members (min_idle = max_size), heartbeat every {interval:?} (jitter {JITTER}, \
         timeout {HEARTBEAT_TIMEOUT:?}), over loopback to the reference server in a child process \
         ({ports} ports); window {:.1} s after {settle:?} of settling; pool runtime: multi-thread, 2 workers; \
         {} CPUs. {fd_note}. Server connections at the end: {}; heartbeats of unlisted members: {}; \
         memory children: {rss_empty} KiB empty, {rss_full} KiB with {members} members \
         ({memory_probes} probes done).\n",
        secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        after.server.connections,
        log.unlisted.load(Ordering::Relaxed),
    );
    text.push_str(&table.render());
    text.push_str("\nProbes per member in the window (count: members):");
    for (count, n) in &count_histogram {
        let _ = write!(text, " {count}: {n};");
    }
    text.push('\n');
    server.finish();
    Outcome {
        scale,
        text,
        probes_per_second: probes_ok as f64 / secs,
        pool_cpu_per_probe,
        floor_cpu_per_probe,
        bookkeeping,
    }
}
