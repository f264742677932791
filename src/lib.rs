//! # livepool
//!
//! An async pool of long-lived connections for tokio that hands out only live
//! connections.
//!
//! Long connections are fast (no handshake per request) but go stale in
//! silence: a peer host vanishes, a NAT forgets the flow, a firewall cuts an
//! idle connection, a server process hangs while its kernel still ACKs. Most
//! pools find out when a caller's request fails. livepool finds out first, with
//! three layers of liveness:
//!
//! | layer | what | catches |
//! |---|---|---|
//! | kernel | `SO_KEEPALIVE` with per-socket idle/interval/count, `TCP_USER_TIMEOUT` ([`tcp`]) | peer host gone, path cut, NAT state expired; bounds writes to a dead peer |
//! | in-band heartbeat | [`Manager::heartbeat`] on the **same** connection, sent by the sentinel to idle members only | all of the above plus a hung peer application; keeps middleboxes from cutting idle members |
//! | use-time | [`Manager::condition`]: EOF, errors, unread bytes, a request cut off half way | what the code using the connection saw |
//!
//! Members that fail are evicted and replaced; callers borrow with
//! [`Pool::get`] and return by dropping the [`Pooled`] guard, and never get a
//! member that failed its last check.
//!
//! ```
//! use std::time::Duration;
//! use livepool::{Condition, Manager, Pool};
//!
//! /// Any connection type works; here, an in-memory stand-in.
//! struct Session { healthy: bool }
//!
//! struct SessionManager;
//!
//! impl Manager for SessionManager {
//!     type Connection = Session;
//!     type Error = std::io::Error;
//!
//!     async fn connect(&self) -> std::io::Result<Session> {
//!         Ok(Session { healthy: true })
//!     }
//!
//!     // The in-band probe: one round trip on the connection itself.
//!     async fn heartbeat(&self, s: &mut Session) -> std::io::Result<()> {
//!         if s.healthy { Ok(()) } else { Err(std::io::Error::other("no answer")) }
//!     }
//!
//!     // What the connection already knows, with no I/O wait.
//!     fn condition(&self, s: &mut Session) -> Condition {
//!         if s.healthy { Condition::Ready } else { Condition::Broken }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder()
//!     .max_size(8)
//!     .min_idle(2)
//!     .heartbeat_interval(Duration::from_secs(15))
//!     .heartbeat_timeout(Duration::from_secs(2))
//!     .wait_timeout(Duration::from_secs(5))
//!     .build(SessionManager)?;
//!
//! let mut session = pool.get().await?;
//! session.healthy = false;  // something broke while we held it...
//! drop(session);            // ...so it is evicted, not returned
//!
//! let status = pool.status();
//! assert_eq!(status.counters.evicted.get(livepool::EvictReason::BrokenOnReturn), 1);
//! # Ok(()) }
//! ```
//!
//! The crate also ships a reference framed protocol with heartbeat frames
//! ([`protocol`]), a TCP layer that sets the kernel options for you ([`tcp`]),
//! adapters for real clients ([`adapters`], behind features) and, behind the
//! `testing` feature, the fault-injecting proxy its own tests use.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapters;
#[cfg(any(feature = "redis", feature = "postgres", feature = "deadpool"))]
mod chain;
#[cfg(feature = "serde")]
pub mod config_file;
pub mod endpoints;
mod loom;
pub mod manager;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod tcp;
#[cfg(feature = "testing")]
pub mod testing;
// The fuzz targets' bodies, shared by `fuzz/` and `tests/fuzz_regressions.rs`.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;

pub use manager::{Closing, Condition, Manager, Role};
pub use pool::{
    BuildError, Builder, Cause, Config, Counters, DrainReport, Error, EvictReason, Evictions, Hook,
    HookError, HookFailure, HookFuture, Hooks, HooksFor, IdleOrder, MemberInfo, NoHooks, Phase,
    Pool, Pooled, PooledOwned, ProbeRtt, Status, Verdict,
};

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
