//! The application: a few tasks that borrow a connection, make one call, give
//! it back and pause, over and over, the way request handlers use a pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use livepool::protocol::RpcManager;
use livepool::{Pool, Pooled};
use tokio::sync::watch;
use tokio::time::Instant;

use super::journal::{Event, Journal};

/// Pause between two requests of one caller, on average (it varies by ±50%
/// so the callers do not run in lockstep).
pub const THINK_TIME: Duration = Duration::from_millis(10);
/// First pause before a caller retries a failed request; doubles each time.
pub const RETRY_FIRST: Duration = Duration::from_millis(20);
/// Longest pause between retries.
pub const RETRY_MAX: Duration = Duration::from_millis(320);
/// A caller gives a request up after retrying this long.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Which socket each member uses and when a caller last had it, as seen by
/// the callers (the pool does not say): lets the scenario aim a fault at one
/// member's connection through the proxy.
#[derive(Debug, Default)]
pub struct Members {
    seen: Mutex<HashMap<u64, Seen>>,
}

/// What the callers know about one member.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The member's local address: the proxy lists it as `client_addr`.
    pub addr: SocketAddr,
    /// The last time a caller borrowed it.
    pub last_borrowed: Instant,
    /// The last time a caller gave it back; `None` while a caller holds it.
    pub returned: Option<Instant>,
}

impl Members {
    fn seen(&self) -> MutexGuard<'_, HashMap<u64, Seen>> {
        // Each update is one insert or one field: a poisoned map is still consistent.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that a caller holds `member` now.
    pub fn borrowed(&self, member: u64, conn: &Pooled<'_, RpcManager>) {
        let now = Instant::now();
        let mut seen = self.seen();
        match seen.get_mut(&member) {
            Some(entry) => {
                entry.last_borrowed = now;
                entry.returned = None;
            }
            None => {
                if let Ok(addr) = conn.local_addr() {
                    seen.insert(
                        member,
                        Seen {
                            addr,
                            last_borrowed: now,
                            returned: None,
                        },
                    );
                }
            }
        }
    }

    /// Notes that `member` went back to the pool (or was evicted) now.
    pub fn returned(&self, member: u64) {
        if let Some(entry) = self.seen().get_mut(&member) {
            entry.returned = Some(Instant::now());
        }
    }

    /// Every member seen so far, with what is known of it.
    pub fn snapshot(&self) -> Vec<(u64, Seen)> {
        self.seen().iter().map(|(&id, &seen)| (id, seen)).collect()
    }
}

/// What one caller task needs.
pub struct Caller {
    /// 1-based, as shown in the timeline.
    pub index: usize,
    pub pool: Pool<RpcManager>,
    pub journal: Arc<Journal>,
    pub members: Arc<Members>,
    /// Becomes `true` when the run is over.
    pub stop: watch::Receiver<bool>,
}

impl Caller {
    /// Runs requests until told to stop.
    pub async fn run(self) {
        let mut sequence = 0u64;
        while !*self.stop.borrow() {
            sequence += 1;
            let body = Bytes::from(format!("caller {} request {sequence}", self.index));
            self.request(body).await;
            tokio::time::sleep(THINK_TIME.mul_f64(0.5 + fastrand::f64())).await;
        }
    }

    /// One request, retried with backoff until it succeeds or
    /// `REQUEST_DEADLINE` passes. Every failure is journaled.
    async fn request(&self, body: Bytes) {
        let started = Instant::now();
        let mut pause = RETRY_FIRST;
        loop {
            match self.attempt(&body).await {
                Ok(()) => {
                    self.journal.completed(started.elapsed());
                    return;
                }
                Err(Retry) if started.elapsed() >= REQUEST_DEADLINE => {
                    self.journal.record(Event::Abandoned { caller: self.index });
                    return;
                }
                Err(Retry) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn attempt(&self, body: &Bytes) -> Result<(), Retry> {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(error) => {
                self.journal.record(Event::GetFailed {
                    caller: self.index,
                    error: error.to_string(),
                });
                return Err(Retry);
            }
        };
        let member = Pooled::id(&conn);
        self.members.borrowed(member, &conn);
        let outcome = match conn.call(body.clone()).await {
            Ok(reply) if reply == *body => Ok(()),
            Ok(_) => {
                Pooled::mark_broken(&mut conn);
                self.journal.record(Event::WrongReply {
                    caller: self.index,
                    member,
                });
                Err(Retry)
            }
            Err(error) => {
                // The connection is in an unknown state: never reuse it.
                Pooled::mark_broken(&mut conn);
                self.journal.record(Event::CallFailed {
                    caller: self.index,
                    member,
                    error: without_os_code(&describe(&error)),
                });
                Err(Retry)
            }
        };
        drop(conn);
        self.members.returned(member);
        outcome
    }
}

/// A failed attempt; the request is retried.
struct Retry;

/// "Connection reset by peer (os error 104)" without " (os error 104)":
/// the code adds nothing for a reader and makes the line too long.
fn without_os_code(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text.to_owned(),
    }
}

/// The error and its innermost cause, e.g. "connection I/O failed: Connection
/// reset by peer (os error 104)".
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
