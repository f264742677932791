//! The livepool demo: faults injected into a busy pool, and what caught each
//! one, how fast, and what the callers saw.
//!
//! ```sh
//! cargo run --release --example demo
//! RUST_LOG=livepool=debug cargo run --release --example demo   # also the pool's own log, on stderr
//! ```
//!
//! Everything runs in this process, on loopback: the reference server, the
//! fault-injecting proxy in front of it, and a pool of 8 connections to the
//! proxy used by 6 caller tasks. Then, a few seconds apart:
//!
//! 1. one member's connection is reset (RST), as by a crashed peer or a firewall;
//! 2. one member's connection is silently blackholed: both sockets stay open and
//!    nothing gets through, as with a cut path or a vanished host;
//! 3. the server application hangs: it reads requests and heartbeats and
//!    answers none, while its kernel keeps every connection up;
//! 4. the server restarts: every connection closes, the port is dead for
//!    1.5 s, then a new server listens on it.
//!
//! The pool's tracing events ("member connected", "member evicted", with the
//! member and the reason) are captured by a small `tracing` layer, so the
//! timeline shows exactly which member went and which layer of liveness
//! caught it. Nothing is printed while a phase runs, so printing never skews
//! the times reported.

#[path = "demo/capture.rs"]
mod capture;
#[path = "demo/explain.rs"]
mod explain;
#[path = "demo/facts.rs"]
mod facts;
#[path = "demo/journal.rs"]
mod journal;
#[path = "demo/load.rs"]
mod load;
#[path = "demo/report.rs"]
mod report;
#[path = "demo/text.rs"]
mod text;
#[path = "demo/timeline.rs"]
mod timeline;

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use livepool::Pool;
use livepool::protocol::{RpcManager, Server, ServerHandle, ServerMode};
use livepool::tcp::{Keepalive, TcpOptions};
use livepool::testing::{Fault, FaultProxy};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

use capture::PoolEvents;
use facts::{FaultKind, FaultRecord};
use journal::{Event, Journal};
use load::{Caller, Members};
use report::Report;

/// Members in the pool, all kept ready (`max_size` = `min_idle`).
const POOL_SIZE: usize = 8;
/// Tasks sending requests.
const CALLERS: usize = 6;
/// An idle member is probed when its last proof of life is this old.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A probe not answered within this evicts the member.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a caller's call waits for its reply: far above the ~0.1 ms a
/// reply takes on loopback, short enough that a hung server costs a caller
/// one second per attempt rather than the protocol's default 30 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `get()` may take, retries included.
const WAIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Load before the first fault, to show the quiet state.
const WARM_UP: Duration = Duration::from_secs(2);
/// Time given to each fault's detection and recovery before the next one.
const BETWEEN_FAULTS: Duration = Duration::from_secs(3);
/// How long the server application hangs.
const HANG_FOR: Duration = Duration::from_secs(2);
/// How long nothing listens on the server's port during the restart.
const DOWN_FOR: Duration = Duration::from_millis(1500);
/// Longest wait for the callers to finish their last request at the end.
const DRAIN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    let journal = Arc::new(Journal::new());
    // The pool's events always go to the journal; its log lines go to stderr
    // only when asked for with RUST_LOG.
    let log = std::env::var_os("RUST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::from_default_env())
    });
    let pool_events = PoolEvents::new(Arc::clone(&journal)).with_filter(filter::filter_fn(|m| {
        m.is_event() && m.target().starts_with("livepool::pool")
    }));
    tracing_subscriber::registry()
        .with(pool_events)
        .with(log)
        .init();

    match run(journal).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {}", load::describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Why the demo could not run to the end (its setup failed, or the server
/// could not be restarted); a fault the pool fails to handle is not an error
/// here but a finding, shown in the report.
#[derive(Debug)]
struct DemoError {
    doing: &'static str,
    source: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "while {}", self.doing)
    }
}

impl Error for DemoError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// Names the step that failed.
trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T, DemoError>;
}

impl<T, E: Into<Box<dyn Error + Send + Sync>>> Doing<T> for Result<T, E> {
    fn doing(self, doing: &'static str) -> Result<T, DemoError> {
        self.map_err(|e| DemoError {
            doing,
            source: e.into(),
        })
    }
}

/// A step that did not finish in time.
#[derive(Debug)]
struct TookTooLong(Duration);

impl fmt::Display for TookTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not done within {:?}", self.0)
    }
}

impl Error for TookTooLong {}

async fn run(journal: Arc<Journal>) -> Result<(), DemoError> {
    let server = Server::new()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .doing("starting the reference server")?;
    let server_addr = server.addr();
    let proxy = FaultProxy::start(server_addr)
        .await
        .doing("starting the fault proxy")?;
    let tcp = TcpOptions::default()
        .with_keepalive(Keepalive::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            2,
        ))
        .with_user_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(1));
    let manager = RpcManager::new(proxy.addr())
        .tcp_options(tcp.clone())
        .request_timeout(Some(REQUEST_TIMEOUT));
    let pool = Pool::builder()
        .name("demo")
        .max_size(POOL_SIZE)
        .min_idle(POOL_SIZE)
        .heartbeat_interval(HEARTBEAT_INTERVAL)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .wait_timeout(WAIT_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .build(manager)
        .doing("building the pool")?;

    let report = Report::new(POOL_SIZE, HEARTBEAT_TIMEOUT, REQUEST_TIMEOUT);
    report.header(&report::Setup {
        server: server_addr,
        proxy: proxy.addr(),
        pool: pool.config(),
        tcp: &tcp,
        callers: CALLERS,
        think_time: load::THINK_TIME,
        request_timeout: REQUEST_TIMEOUT,
    });

    wait_until_full(&pool).await?;
    let members = Arc::new(Members::default());
    learn_sockets(&pool, &members).await?;
    journal.record(Event::Note(format!(
        "pool ready: {POOL_SIZE} members connected and idle"
    )));

    let (stop, stopped) = watch::channel(false);
    let mut callers = JoinSet::new();
    for index in 1..=CALLERS {
        let caller = Caller {
            index,
            pool: pool.clone(),
            journal: Arc::clone(&journal),
            members: Arc::clone(&members),
            stop: stopped.clone(),
        };
        callers.spawn(caller.run());
    }
    journal.record(Event::Note(format!(
        "{CALLERS} callers start: get, call, return, pause ~{} ms",
        load::THINK_TIME.as_millis()
    )));
    tokio::time::sleep(WARM_UP).await;

    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut shown = report.phase(&journal, Duration::ZERO, None);

    // 1. RST on a member the callers are using, while it sits idle between two uses.
    let (member, conn, idle_for) = pick_member(&proxy, &members, Pick::InUse).await?;
    let fault = begin(
        &journal,
        &mut faults,
        FaultKind::Reset { member },
        format!(
            "RST on member #{member}, in use by callers (idle now, given back {} ago)",
            text::delay(idle_for)
        ),
    );
    proxy.fault_connection(conn, Fault::Reset);
    tokio::time::sleep(BETWEEN_FAULTS).await;
    shown = report.phase(&journal, shown, faults.get_mut(fault));

    // 2. Blackhole on a member no caller is using: only a heartbeat can tell.
    let (member, conn, idle_for) = pick_member(&proxy, &members, Pick::Idlest).await?;
    let fault = begin(
        &journal,
        &mut faults,
        FaultKind::Blackhole { member },
        format!(
            "blackhole on member #{member}, idle (no caller had it for {:.1} s)",
            idle_for.as_secs_f64()
        ),
    );
    proxy.fault_connection(conn, Fault::Blackhole);
    tokio::time::sleep(BETWEEN_FAULTS).await;
    shown = report.phase(&journal, shown, faults.get_mut(fault));

    // 3. The application hangs while its kernel keeps the connections up.
    let fault = begin(
        &journal,
        &mut faults,
        FaultKind::Hang { lasted: HANG_FOR },
        format!(
            "server application hangs for {} s: reads everything, answers nothing",
            HANG_FOR.as_secs()
        ),
    );
    server.set_mode(ServerMode::Hang);
    tokio::time::sleep(HANG_FOR).await;
    server.set_mode(ServerMode::Normal);
    journal.record(Event::FaultEnds {
        fault,
        what: "hang over: the server answers again".to_owned(),
    });
    tokio::time::sleep(BETWEEN_FAULTS).await;
    shown = report.phase(&journal, shown, faults.get_mut(fault));

    // 4. Restart: every connection closes, the port is dead for a while.
    let fault = begin(
        &journal,
        &mut faults,
        FaultKind::Restart { down: DOWN_FOR },
        format!(
            "server restart: shut down, port closed for {:.1} s, then a new server",
            DOWN_FOR.as_secs_f64()
        ),
    );
    server.shutdown().await;
    drop(server);
    tokio::time::sleep(DOWN_FOR).await;
    let server = rebind(server_addr).await?;
    journal.record(Event::FaultEnds {
        fault,
        what: format!("new server listening on {server_addr}"),
    });
    tokio::time::sleep(BETWEEN_FAULTS).await;

    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while callers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        callers.abort_all();
    }
    journal.record(Event::Note("callers stopped".to_owned()));
    report.phase(&journal, shown, faults.get_mut(fault));
    report.summary(&faults, &pool.status());

    pool.close();
    server.shutdown().await;
    proxy.shutdown().await;
    Ok(())
}

/// Records the start of a fault and returns its index.
fn begin(
    journal: &Journal,
    faults: &mut Vec<FaultRecord>,
    kind: FaultKind,
    title: String,
) -> usize {
    let index = faults.len();
    let began = journal.now();
    journal.record(Event::FaultBegins {
        fault: index,
        what: title,
    });
    faults.push(FaultRecord {
        kind,
        began,
        facts: None,
    });
    index
}

/// Waits for the sentinel to connect `min_idle` members.
async fn wait_until_full(pool: &Pool<RpcManager>) -> Result<(), DemoError> {
    let limit = Duration::from_secs(5);
    let deadline = Instant::now() + limit;
    while pool.status().idle < POOL_SIZE {
        if Instant::now() >= deadline {
            return Err(TookTooLong(limit)).doing("waiting for the pool to connect its members");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Borrows every member once, so the demo knows which proxied connection is
/// which member and can aim a fault at one.
async fn learn_sockets(pool: &Pool<RpcManager>, members: &Members) -> Result<(), DemoError> {
    let mut held = Vec::with_capacity(POOL_SIZE);
    for _ in 0..POOL_SIZE {
        let conn = pool.get().await.doing("borrowing each member once")?;
        members.borrowed(livepool::Pooled::id(&conn), &conn);
        held.push(conn);
    }
    for conn in held {
        let member = livepool::Pooled::id(&conn);
        drop(conn);
        members.returned(member);
    }
    Ok(())
}

/// Which member a fault is aimed at; never one a caller holds right now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// One the callers are using: given back within the last `RECENT`. Not
    /// the very last one given back, which is on top of the LIFO idle stack
    /// and so likely to be in a caller's hands again by the time the proxy
    /// acts on the fault: the second last.
    InUse,
    /// The one no caller has borrowed for the longest.
    Idlest,
}

/// How recently a member must have been given back to count as in use.
const RECENT: Duration = Duration::from_millis(50);

/// No member fits: the callers have not seen any idle member whose connection is live.
#[derive(Debug)]
struct NoTarget;

impl fmt::Display for NoTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no idle member whose connection the proxy knows")
    }
}

impl Error for NoTarget {}

/// Picks an idle member and its connection through the proxy; returns the
/// member, the proxy's connection id, and how long ago a caller gave it back
/// (`InUse`) or last borrowed it (`Idlest`). The callers may all be holding
/// members at the moment, so it tries again for a little while.
async fn pick_member(
    proxy: &FaultProxy,
    members: &Members,
    pick: Pick,
) -> Result<(u64, u64, Duration), DemoError> {
    const TRIES: u32 = 200;
    for _ in 0..TRIES {
        let live = proxy.connections();
        let now = Instant::now();
        let mut idle: Vec<(u64, u64, Duration)> = members
            .snapshot()
            .into_iter()
            .filter_map(|(member, seen)| {
                let returned = seen.returned?;
                let conn = live.iter().find(|c| c.client_addr == seen.addr)?;
                let since = match pick {
                    Pick::InUse => returned,
                    Pick::Idlest => seen.last_borrowed,
                };
                Some((member, conn.id, now.saturating_duration_since(since)))
            })
            .collect();
        // Most recent first for `InUse`, least recent first for `Idlest`.
        idle.sort_by_key(|&(member, _, ago)| match pick {
            Pick::InUse => (ago, member),
            Pick::Idlest => (Duration::MAX - ago, member),
        });
        let found = match pick {
            Pick::InUse => idle.into_iter().filter(|m| m.2 <= RECENT).nth(1),
            Pick::Idlest => idle.into_iter().next(),
        };
        if let Some(found) = found {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(NoTarget).doing("choosing a member to fault")
}

/// Binds a new server on the old one's port, retrying briefly in case the
/// port is not free yet.
async fn rebind(addr: SocketAddr) -> Result<ServerHandle, DemoError> {
    let mut tries = 0;
    loop {
        match Server::new().bind(addr).await {
            Ok(server) => return Ok(server),
            Err(error) if tries >= 20 => {
                return Err(error).doing("restarting the server on the same port");
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
