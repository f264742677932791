//! A fake in-memory `Manager` whose connections can be made to fail in every
//! way the pool must handle, and which records what the pool did to them.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepool::{Condition, Manager};

/// How a fake connection dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// Only a heartbeat finds out (a silent blackhole, a hung peer).
    Silent,
    /// The cheap check sees it too (EOF, reset).
    Visible,
    /// Heartbeats never answer (a hung peer application).
    Hung,
    /// The manager itself has a bug: heartbeat and the cheap check panic.
    Panics,
    /// The manager's heartbeat alone panics; the cheap check passes.
    HeartbeatPanics,
    /// The heartbeat is answered twice: it succeeds, but leaves a stray
    /// reply unread (the connection is out of step).
    DoubledReply,
}

#[derive(Default, Debug)]
pub struct Shared {
    next_id: AtomicU64,
    pub connects: AtomicU64,
    pub heartbeats: AtomicU64,
    pub connect_fails: AtomicBool,
    /// Connect errors are reported as permanent (a wrong password, say).
    pub permanent: AtomicBool,
    /// Every connection fails the cheap check from birth (a server that
    /// accepts and closes at once).
    pub born_broken: AtomicBool,
    /// Closing a connection that had a request in flight takes this long
    /// (a PostgreSQL cancel request, say); the connection stays open until then.
    close_delay_ms: AtomicU64,
    connect_delay_ms: AtomicU64,
    heartbeat_delay_ms: AtomicU64,
    dead: Mutex<HashSet<u64>>,
    deaths: Mutex<Vec<(u64, Death)>>,
    /// Connections alive (made and not yet dropped): what the "server" sees.
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    /// Connections that failed a heartbeat: must never reach a caller again.
    pub failed_probe: Mutex<HashSet<u64>>,
    /// (connection id, virtual time) of every heartbeat started.
    pub probe_log: Mutex<Vec<(u64, tokio::time::Instant)>>,
}

#[derive(Clone, Default)]
pub struct FakeManager {
    pub shared: Arc<Shared>,
}

#[derive(Debug)]
pub struct FakeConn {
    pub id: u64,
    /// Set by a caller to simulate a request cut off half way.
    pub in_flight: bool,
    /// Session state a hook sets up (`SET search_path`, say).
    pub session: Option<String>,
    shared: Arc<Shared>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub struct FakeError(pub &'static str);

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for FakeError {}

impl FakeManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn kill(&self, id: u64, how: Death) {
        self.shared.dead.lock().unwrap().insert(id);
        self.shared.deaths.lock().unwrap().push((id, how));
    }

    fn death(&self, id: u64) -> Option<Death> {
        if !self.shared.dead.lock().unwrap().contains(&id) {
            return None;
        }
        self.shared
            .deaths
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| *d)
    }

    pub fn set_connect_fails(&self, fails: bool) {
        self.shared.connect_fails.store(fails, Ordering::SeqCst);
    }

    pub fn set_permanent(&self, permanent: bool) {
        self.shared.permanent.store(permanent, Ordering::SeqCst);
    }

    pub fn set_born_broken(&self, broken: bool) {
        self.shared.born_broken.store(broken, Ordering::SeqCst);
    }

    pub fn set_close_delay(&self, d: Duration) {
        self.shared
            .close_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_connect_delay(&self, d: Duration) {
        self.shared
            .connect_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_heartbeat_delay(&self, d: Duration) {
        self.shared
            .heartbeat_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::SeqCst)
    }

    pub fn heartbeats(&self) -> u64 {
        self.shared.heartbeats.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    pub fn max_open(&self) -> usize {
        self.shared.max_open.load(Ordering::SeqCst)
    }

    /// Dead in a way the cheap check sees: the pool must never hand it out.
    pub fn visibly_dead(&self, id: u64) -> bool {
        self.death(id) == Some(Death::Visible)
    }

    pub fn revive(&self, id: u64) {
        self.shared.dead.lock().unwrap().remove(&id);
    }

    pub fn probe_log(&self) -> Vec<(u64, tokio::time::Instant)> {
        self.shared.probe_log.lock().unwrap().clone()
    }

    pub fn failed_probe(&self, id: u64) -> bool {
        self.shared.failed_probe.lock().unwrap().contains(&id)
    }
}

impl Manager for FakeManager {
    type Connection = FakeConn;
    type Error = FakeError;

    async fn connect(&self) -> Result<FakeConn, FakeError> {
        let delay = self.shared.connect_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.shared.connect_fails.load(Ordering::SeqCst) {
            return Err(FakeError("connection refused"));
        }
        self.shared.connects.fetch_add(1, Ordering::SeqCst);
        let open = self.shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.max_open.fetch_max(open, Ordering::SeqCst);
        Ok(FakeConn {
            id: self.shared.next_id.fetch_add(1, Ordering::SeqCst),
            in_flight: false,
            session: None,
            shared: Arc::clone(&self.shared),
        })
    }

    async fn heartbeat(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.shared.heartbeats.fetch_add(1, Ordering::SeqCst);
        self.shared
            .probe_log
            .lock()
            .unwrap()
            .push((conn.id, tokio::time::Instant::now()));
        let delay = self.shared.heartbeat_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let result = match self.death(conn.id) {
            None => Ok(()),
            Some(Death::Hung) => {
                std::future::pending::<()>().await;
                Ok(())
            }
            Some(Death::Panics | Death::HeartbeatPanics) => {
                panic!("bug in the manager's heartbeat")
            }
            Some(Death::DoubledReply) => {
                conn.in_flight = true;
                Ok(())
            }
            Some(_) => Err(FakeError("peer gone")),
        };
        if result.is_err() {
            self.shared.failed_probe.lock().unwrap().insert(conn.id);
        }
        result
    }

    fn is_permanent(&self, _: &FakeError) -> bool {
        self.shared.permanent.load(Ordering::SeqCst)
    }

    /// A connection dropped with a request in flight takes `close_delay` to
    /// close (as a PostgreSQL session does until its cancel lands).
    fn close(&self, conn: FakeConn) -> livepool::Closing {
        let delay = self.shared.close_delay_ms.load(Ordering::SeqCst);
        if conn.in_flight && delay > 0 {
            livepool::Closing::after(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                drop(conn);
            })
        } else {
            drop(conn);
            livepool::Closing::done()
        }
    }

    fn condition(&self, conn: &mut FakeConn) -> Condition {
        if self.shared.born_broken.load(Ordering::SeqCst) {
            return Condition::Broken;
        }
        if conn.in_flight {
            return Condition::Dirty;
        }
        match self.death(conn.id) {
            Some(Death::Visible) => Condition::Broken,
            Some(Death::Panics) => panic!("bug in the manager's cheap check"),
            _ => Condition::Ready,
        }
    }
}

/// Records a hung heartbeat as failed once the pool gives up on it: the pool
/// drops the heartbeat future on timeout, so the fake cannot see it itself.
pub fn mark_hung_failed(manager: &FakeManager, id: u64) {
    manager.shared.failed_probe.lock().unwrap().insert(id);
}

/// Checks the counts `status()` reports add up.
pub fn assert_consistent(status: &livepool::Status) {
    assert!(status.size <= status.max_size, "size above max: {status:?}");
    assert_eq!(
        status.size,
        status.idle
            + status.in_use
            + status.probing
            + status.connecting
            + status.closing
            + status.returning,
        "counts do not add up: {status:?}"
    );
    let alive = status.counters.created - status.counters.evicted.total();
    assert_eq!(
        alive as usize,
        status.size - status.connecting - status.closing,
        "created - evicted != members: {status:?}"
    );
}

/// What the pool logged at a level and above, formatted as a person reads
/// it, from `capture_logs` until this is dropped (on this thread).
pub struct CapturedLogs {
    bytes: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl CapturedLogs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// Starts capturing what this thread logs at `level` and above.
pub fn capture_logs(level: tracing::Level) -> CapturedLogs {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer({
            let bytes = Arc::clone(&bytes);
            move || Writer(Arc::clone(&bytes))
        })
        .finish();
    CapturedLogs {
        bytes,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
