//! Test support: a TCP proxy that injects network faults on demand.
//!
//! A pool that "hands out only live connections" has to be tested against
//! connections that die in every way real ones do: reset, closed, silently
//! blackholed, slowed down, or refused outright because the server is down.
//! Killing a real Redis or PostgreSQL on cue is slow and cannot blackhole a
//! flow; firewall rules need root. [`FaultProxy`] sits in process between the
//! pool and any TCP server and does each of these to all connections or to one,
//! at once, from the test's own code. Tests, examples and benches of this crate
//! use it; it is behind the `testing` feature so it costs users nothing.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use livepool::testing::{Fault, FaultProxy};
//!
//! let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
//! // Point the pool at proxy.addr() instead of the server, then:
//! proxy.set_fault(Fault::Blackhole);
//! // ... check that the pool's heartbeat evicts every member ...
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod fault;
mod forward;
mod proxy;
mod registry;
mod sockets;

pub use fault::Fault;
pub use proxy::{FaultProxy, ProxyConnection};
pub use sockets::{close_with_reset, loopback_pair};
