//! What the adapter tests (Redis, PostgreSQL, deadpool) share: the pool
//! settings, bounded waits on the pool's status and on the server's own view
//! of its sessions, and the fault scenarios every adapter must survive in
//! the same way. Each test file supplies only what is its server's own: how
//! to run a request, how to count or kill sessions.

// Each test file uses only part of this module.
#![allow(dead_code)]

pub mod redis_child;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use livepool::testing::{Fault, FaultProxy};
use livepool::{EvictReason, Evictions, Manager, Pool, Pooled, Status};
use tokio::time::{sleep, timeout};

pub const INTERVAL: Duration = Duration::from_millis(200);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(150);
/// Bound on every wait for something the pool or the server should do
/// within an interval or two: generous, the machine is shared.
pub const SLACK: Duration = Duration::from_secs(5);

/// A session name (`CLIENT SETNAME`, `application_name`) no other test (or
/// run) uses, so the server's own list can be compared with the pool.
pub fn unique_name(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "livepool-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Small pool, fast heartbeats without jitter, so faults show within a
/// fraction of a second.
pub fn builder() -> livepool::Builder {
    Pool::builder()
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .heartbeat_jitter(0.0)
}

/// Waits (bounded by `SLACK`) until `done` holds for the pool's status.
pub async fn wait_for_status<M: Manager>(
    pool: &Pool<M>,
    what: &str,
    done: impl Fn(&Status) -> bool,
) -> Status {
    let start = Instant::now();
    loop {
        let status = pool.status();
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < SLACK,
            "{what}: not within {SLACK:?}: {status:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded by `SLACK`) until the server lists exactly as many
/// sessions under `name` as the pool holds members; `listed` asks the
/// server how many it lists.
pub async fn assert_server_matches_pool<M: Manager>(
    pool: &Pool<M>,
    name: &str,
    listed: &mut impl AsyncFnMut() -> usize,
) {
    let start = Instant::now();
    loop {
        let members = pool.status().size;
        let listed = listed().await;
        if listed == members {
            return;
        }
        assert!(
            start.elapsed() < SLACK,
            "server lists {listed} sessions named {name}, the pool holds {members}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Gives back `conn`, the pool's only member, healthy: it goes idle and the
/// sentinel's heartbeats keep it there (two pass, nothing is evicted).
/// Returns the status by then.
pub async fn return_and_watch_it_heartbeat<M: Manager>(
    pool: &Pool<M>,
    conn: Pooled<'_, M>,
) -> Status {
    drop(conn);
    let status = pool.status();
    assert_eq!((status.idle, status.in_use), (1, 0), "{status:?}");
    let status = wait_for_status(pool, "two heartbeats", |s| s.counters.probes_ok >= 2).await;
    assert_eq!(status.counters.evicted.total(), 0, "{status:?}");
    assert_eq!(status.idle, 1);
    status
}

/// Gives back `conn`, whose request was cut off half way: the pool evicts
/// it as dirty rather than lend it again, and its server session (the
/// cut-off request and all) goes with it. `listed` counts the server's
/// sessions named `name`.
pub async fn return_cut_off_member<M: Manager>(
    pool: &Pool<M>,
    conn: Pooled<'_, M>,
    name: &str,
    mut listed: impl AsyncFnMut() -> usize,
) {
    drop(conn);
    let status = pool.status();
    assert_eq!(
        status.counters.evicted.get(EvictReason::Dirty),
        1,
        "{status:?}"
    );
    // A session cut off mid-query keeps its place while its close work (a
    // cancel request, for PostgreSQL) runs, then gives it up.
    assert_eq!(status.size, status.closing, "{status:?}");
    let started = std::time::Instant::now();
    while pool.status().size > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_server_matches_pool(pool, name, &mut listed).await;
}

/// Evictions counted as failures (not idle timeout, lifetime, ...).
fn failures(evictions: &Evictions) -> u64 {
    evictions
        .iter()
        .filter(|(reason, _)| reason.is_failure())
        .map(|(_, n)| n)
        .sum()
}

/// The proxy's id for the connection whose client end is `addr`.
fn proxy_id(proxy: &FaultProxy, addr: SocketAddr) -> u64 {
    proxy
        .connections()
        .into_iter()
        .find(|c| c.client_addr == addr)
        .map(|c| c.id)
        .expect("the proxy lists every member")
}

/// One idle member's path is blackholed and another's reset while a caller
/// runs `request` back to back: both are evicted within a heartbeat interval
/// plus its timeout (slack aside), as failures, the blackholed one by timing
/// out; the caller sees no error; and once the cut path heals the server
/// holds exactly the pool's members. Returns how many requests the caller
/// made.
///
/// `pool` reaches its server through `proxy` and names its sessions `name`;
/// `local_addr` is the member's socket address (to find it in the proxy);
/// `listed` counts the server's sessions named `name`; `request` is one
/// request on a borrowed member, given how many came before it.
pub async fn blackhole_and_reset_idle_members<M: Manager>(
    pool: &Pool<M>,
    proxy: &FaultProxy,
    name: &str,
    local_addr: impl Fn(&M::Connection) -> SocketAddr,
    mut listed: impl AsyncFnMut() -> usize,
    mut request: impl AsyncFnMut(&mut M::Connection, u64) -> Result<(), String>,
) -> u64 {
    // Three members; `hot` is returned last, so LIFO keeps handing it to the
    // caller below while the two cold ones sit idle.
    let (cold_a, cold_b, hot) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    let blackholed = proxy_id(proxy, local_addr(&cold_a));
    let reset = proxy_id(proxy, local_addr(&cold_b));
    drop(cold_a);
    drop(cold_b);
    drop(hot);
    assert_server_matches_pool(pool, name, &mut listed).await;

    // The caller runs requests back to back for the whole episode, in this
    // task, beside the episode.
    let stop = Cell::new(false);
    let caller = async {
        let mut done = 0u64;
        while !stop.get() {
            let mut conn = timeout(SLACK, pool.get())
                .await
                .map_err(|_| format!("get: not within {SLACK:?}"))?
                .map_err(|e| format!("get: {e}"))?;
            timeout(SLACK, request(&mut conn, done))
                .await
                .map_err(|_| format!("request {done}: not within {SLACK:?}"))??;
            done += 1;
            drop(conn);
            tokio::task::yield_now().await;
        }
        Ok::<u64, String>(done)
    };
    let episode = async {
        let before = pool.status().counters.evicted;
        let faulted = Instant::now();
        assert!(proxy.fault_connection(blackholed, Fault::Blackhole));
        assert!(proxy.fault_connection(reset, Fault::Reset));
        let status = wait_for_status(pool, "both faulted members evicted", |s| {
            s.counters.evicted.total() - before.total() >= 2
        })
        .await;
        let took = faulted.elapsed();
        // Detection within interval + timeout; the rest is slack for a busy machine.
        assert!(
            took < INTERVAL + HEARTBEAT_TIMEOUT + Duration::from_secs(2),
            "took {took:?}"
        );
        let evicted = status.counters.evicted;
        assert!(
            evicted.get(EvictReason::ProbeTimedOut) > before.get(EvictReason::ProbeTimedOut),
            "the blackholed member should fail its heartbeat by timing out: {status:?}"
        );
        assert_eq!(
            failures(&evicted) - failures(&before),
            2,
            "exactly the two faulted members, as failures: {status:?}"
        );
        stop.set(true);
    };
    // The caller stops within one request (each bounded by SLACK) of the
    // episode's end.
    let (done, ()) = timeout(SLACK * 4, async { tokio::join!(caller, episode) })
        .await
        .expect("caller finishes");
    let done = done.expect("the caller saw no error");
    assert!(done > 0);
    // A cut path carries no FIN: the server learns the evicted member is
    // gone once the path heals (or from its own keepalive, much later).
    proxy.fault_connection(blackholed, Fault::Pass);
    assert_server_matches_pool(pool, name, &mut listed).await;
    done
}

/// The server ends an idle member's session (`CLIENT KILL`,
/// `pg_terminate_backend`): the pool evicts it before anyone borrows it,
/// and the next borrow gets a new session.
///
/// `session_id` asks the server for a member's session id; `kill` makes the
/// server end that session (and checks it did); `listed` counts the
/// server's sessions named `name`, the name the pool's sessions carry.
pub async fn kill_an_idle_member_on_the_server<M: Manager>(
    pool: &Pool<M>,
    name: &str,
    mut session_id: impl AsyncFnMut(&mut M::Connection) -> i64,
    kill: impl AsyncFnOnce(i64),
    mut listed: impl AsyncFnMut() -> usize,
) {
    let mut conn = pool.get().await.unwrap();
    let victim = session_id(&mut conn).await;
    drop(conn);

    kill(victim).await;
    let status = wait_for_status(pool, "killed member evicted", |s| s.size == 0).await;
    assert_eq!(status.counters.checkouts, 1, "nobody borrowed meanwhile");
    let noticed = status.counters.evicted.get(EvictReason::BrokenWhileIdle)
        + status.counters.evicted.get(EvictReason::ProbeFailed);
    assert_eq!(noticed, 1, "{status:?}");

    let mut conn = pool.get().await.expect("the next borrow connects afresh");
    assert_ne!(session_id(&mut conn).await, victim);
    drop(conn);
    assert_server_matches_pool(pool, name, &mut listed).await;
}
