//! The rig the fault tests and the detection bench share: the reference server,
//! optionally the fault proxy in front of it, a pool pointed at whichever
//! comes first, and the checks every fault ends with (counts that add up, no
//! leaked permit, no leaked socket).
//!
//! Real loopback sockets and real time throughout: a fault proxy and a kernel
//! do not run on tokio's virtual clock.

#![allow(dead_code)]

pub mod callers;
pub mod netns;
pub mod sockets;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use livepool::PooledOwned;
use livepool::protocol::{RpcConnection, RpcManager, Server, ServerHandle};
use livepool::tcp::TcpOptions;
use livepool::testing::FaultProxy;
use livepool::{Builder, EvictReason, Evictions, Pool, Pooled, Status};
use tokio::time::{Instant, sleep, timeout};

/// Background heartbeat interval of every rig pool.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(400);
/// Bound on one heartbeat.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(150);
/// Members per pool, all kept idle by the sentinel (`min_idle == max_size`).
pub const MAX_SIZE: usize = 6;
/// Bound on a caller's call: long enough for any healthy reply on a busy
/// machine, short enough that a hung server shows up in seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `get` may take.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the tests read `status()` while waiting for an eviction.
const POLL: Duration = Duration::from_millis(2);
/// Patience for things that happen in milliseconds when the machine is idle.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The longest a fault may go unnoticed: a member probed just before the
/// fault is probed again one interval later, and the probe gives up after the
/// timeout. Three times that, for a shared, noisy machine.
pub fn detection_bound() -> Duration {
    (HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT) * 3
}

/// The pool settings of every rig, for reports.
pub fn settings() -> String {
    format!(
        "max_size = min_idle = {MAX_SIZE}, heartbeat_interval {HEARTBEAT_INTERVAL:?} \
         (jitter 0.1), heartbeat_timeout {HEARTBEAT_TIMEOUT:?}, heartbeat_failures 1, \
         sentinel tick {:?}, refill backoff 50ms..500ms",
        HEARTBEAT_INTERVAL / 10
    )
}

/// The rig's pool configuration; tests adjust it before building.
pub fn builder(name: &str) -> Builder {
    Pool::builder()
        .name(name)
        .max_size(MAX_SIZE)
        .min_idle(MAX_SIZE)
        .heartbeat_interval(HEARTBEAT_INTERVAL)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .wait_timeout(WAIT_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .refill_backoff_min(Duration::from_millis(50))
        .refill_backoff_max(Duration::from_millis(500))
}

/// A manager for `addr` with a short request timeout and connect timeout.
pub fn manager(addr: SocketAddr) -> RpcManager {
    RpcManager::new(addr)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .tcp_options(TcpOptions::default().with_connect_timeout(Duration::from_secs(1)))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One pooled member the test will break, singled out by its socket.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The pool's id for it (as in tracing events).
    pub member: u64,
    /// Its local address: how the proxy knows it.
    pub local: SocketAddr,
    /// Its connection id in the proxy, for `fault_connection`.
    pub proxy_conn: u64,
}

/// Server, optional proxy, pool.
pub struct Rig {
    pub server: ServerHandle,
    pub proxy: Option<FaultProxy>,
    pub pool: Pool<RpcManager>,
}

impl Rig {
    /// Pool → fault proxy → server.
    pub async fn through_proxy(builder: Builder) -> Rig {
        let server = bind(loopback()).await;
        let proxy = FaultProxy::start(server.addr())
            .await
            .expect("start the fault proxy on loopback");
        let pool = builder
            .build(manager(proxy.addr()))
            .expect("the rig's pool settings are valid");
        Rig {
            server,
            proxy: Some(proxy),
            pool,
        }
    }

    /// Pool → server, no proxy: for faults of the server itself.
    pub async fn direct(builder: Builder) -> Rig {
        let server = bind(loopback()).await;
        let pool = builder
            .build(manager(server.addr()))
            .expect("the rig's pool settings are valid");
        Rig {
            server,
            proxy: None,
            pool,
        }
    }

    pub fn proxy(&self) -> &FaultProxy {
        self.proxy.as_ref().expect("this rig has a proxy")
    }

    /// The port the pool connects to.
    pub fn pool_port(&self) -> u16 {
        match &self.proxy {
            Some(proxy) => proxy.addr().port(),
            None => self.server.addr().port(),
        }
    }

    /// Every port this rig listens on.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = vec![self.server.addr().port()];
        ports.extend(self.proxy.as_ref().map(|p| p.addr().port()));
        ports
    }

    /// Waits until the sentinel has filled the pool with idle members.
    pub async fn wait_full(&self) {
        wait_until("the pool to fill to min_idle", PATIENCE, || {
            let s = checked_status(&self.pool);
            s.idle == s.max_size
        })
        .await;
    }

    /// Fills the pool, then singles out one member and leaves it at the cold
    /// end of the idle set: callers (LIFO) take the hot end, so only the
    /// pool's own watch (sentinel, cheap check) meets the target.
    pub async fn cold_target(&self) -> Target {
        self.wait_full().await;
        let mut held = Vec::new();
        for _ in 0..MAX_SIZE {
            held.push(borrow(&self.pool).await);
        }
        let first = &held[0];
        let member = Pooled::id(first);
        let local = first
            .local_addr()
            .expect("a connected member has a local address");
        // Returned first, it lies under the others: the cold end.
        for conn in held {
            drop(conn);
        }
        let proxy = self.proxy();
        let mut proxy_conn = None;
        wait_until(
            "the proxy to list the target's connection",
            PATIENCE,
            || {
                proxy_conn = proxy
                    .connections()
                    .into_iter()
                    .find(|c| c.client_addr == local)
                    .map(|c| c.id);
                proxy_conn.is_some()
            },
        )
        .await;
        Target {
            member,
            local,
            proxy_conn: proxy_conn.unwrap_or_default(),
        }
    }

    /// No leaked permit or member: once the pool is full again, all
    /// `max_size` members can be held at once, one more is refused, and every
    /// member has exactly one open client socket.
    pub async fn assert_recovered(&self) {
        self.wait_full().await;
        let mut held = Vec::new();
        for _ in 0..MAX_SIZE {
            held.push(borrow(&self.pool).await);
        }
        let s = checked_status(&self.pool);
        assert_eq!((s.size, s.in_use), (MAX_SIZE, MAX_SIZE), "{s:?}");
        match timeout(PATIENCE, self.pool.try_get()).await {
            Ok(Err(livepool::Error::Exhausted)) => {}
            other => panic!(
                "with all {MAX_SIZE} members held, try_get must be Exhausted, got {:?}",
                other.map(|r| r.map(|c| Pooled::id(&c)))
            ),
        }
        for conn in &mut held {
            echo(conn, "after").await;
        }
        drop(held);
        self.wait_full().await;
        let port = self.pool_port();
        wait_until("one client socket per member", PATIENCE, || {
            sockets::clients_of(port) == checked_status(&self.pool).size
        })
        .await;
    }

    /// Closes the pool, stops proxy and server, and checks that every socket
    /// touching the rig's ports is closed and the server saw its connections go.
    pub async fn teardown(self) {
        let ports = self.ports();
        self.pool.close();
        wait_until("the closed pool to drop every member", PATIENCE, || {
            checked_status(&self.pool).size == 0
        })
        .await;
        let closed = self.pool.status();
        assert!(closed.closed && closed.idle == 0, "{closed:?}");
        drop(self.pool);
        if let Some(proxy) = self.proxy {
            timeout(PATIENCE * 2, proxy.shutdown())
                .await
                .expect("the proxy shuts down in time");
        }
        wait_until("the server to see every connection close", PATIENCE, || {
            self.server.connections() == 0
        })
        .await;
        timeout(PATIENCE, self.server.shutdown())
            .await
            .expect("the server shuts down in time");
        let mut left = Vec::new();
        let settled = timeout(PATIENCE, async {
            loop {
                left = sockets::touching(&ports);
                if left.is_empty() {
                    return;
                }
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            settled.is_ok(),
            "sockets still open on ports {ports:?} after teardown: {left:?}"
        );
    }
}

/// Borrows a member; the test fails if `get` errors or takes over [`PATIENCE`].
pub async fn borrow(pool: &Pool<RpcManager>) -> PooledOwned<RpcManager> {
    match timeout(PATIENCE, pool.get_owned()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("get failed: {e} ({e:?})"),
        Err(_) => panic!("get hung past {PATIENCE:?}"),
    }
}

/// One call that must come back, in time, with its own body.
pub async fn echo(conn: &mut RpcConnection, body: &'static str) {
    match timeout(PATIENCE, conn.call(Bytes::from_static(body.as_bytes()))).await {
        Ok(Ok(reply)) => assert_eq!(reply, body, "the echo server answered something else"),
        Ok(Err(e)) => panic!("call {body:?} failed: {e} ({e:?})"),
        Err(_) => panic!("call {body:?} hung past {PATIENCE:?}"),
    }
}

/// Binds a reference server on `addr`.
pub async fn bind(addr: SocketAddr) -> ServerHandle {
    Server::new()
        .bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind a reference server on {addr}: {e}"))
}

/// `status()`, checked: the counts add up and the member ledger balances.
pub fn checked_status(pool: &Pool<RpcManager>) -> Status {
    let s = pool.status();
    assert_accounts(&s);
    s
}

/// Every snapshot must add up: `size == idle + in_use + probing + connecting`,
/// never above `max_size`, and members made minus members gone is members held.
pub fn assert_accounts(s: &Status) {
    assert!(s.size <= s.max_size, "size above max_size: {s:?}");
    assert_eq!(
        s.size,
        s.idle + s.in_use + s.probing + s.connecting,
        "counts do not add up: {s:?}"
    );
    assert_eq!(
        s.counters.created - s.counters.evicted.total(),
        (s.size - s.connecting) as u64,
        "created - evicted != members: {s:?}"
    );
}

/// Failure evictions (not routine retirement) since `before`.
pub fn failures_since(now: &Evictions, before: &Evictions) -> u64 {
    EvictReason::ALL
        .iter()
        .filter(|r| r.is_failure())
        .map(|r| now.get(*r) - before.get(*r))
        .sum()
}

/// Polls `status()` from `since` until `count` more members were evicted
/// for `reason` than in `before`; returns how long it took, or the last status.
pub async fn time_to_evictions(
    pool: &Pool<RpcManager>,
    before: &Evictions,
    reason: EvictReason,
    count: u64,
    since: Instant,
    limit: Duration,
) -> Result<Duration, Status> {
    loop {
        let s = checked_status(pool);
        if s.counters.evicted.get(reason) >= before.get(reason) + count {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            return Err(s);
        }
        sleep(POLL).await;
    }
}

/// Polls `status()` from `since` until any failure eviction happens; returns
/// the reason that moved first and how long it took, or the last status.
pub async fn first_failure(
    pool: &Pool<RpcManager>,
    before: &Evictions,
    since: Instant,
    limit: Duration,
) -> Result<(EvictReason, Duration), Status> {
    loop {
        let s = checked_status(pool);
        let moved = EvictReason::ALL
            .iter()
            .find(|r| r.is_failure() && s.counters.evicted.get(**r) > before.get(**r));
        if let Some(reason) = moved {
            return Ok((*reason, since.elapsed()));
        }
        if since.elapsed() > limit {
            return Err(s);
        }
        sleep(POLL).await;
    }
}

/// Waits until `done()` holds, panicking with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        sleep(Duration::from_millis(5)).await;
    }
}
