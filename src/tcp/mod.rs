//! Connecting: the kernel layer of liveness, and what the transport itself saw.
//!
//! A connection in ESTABLISHED state proves nothing. This module gives the
//! pool the two cheapest signals about a member, both without any protocol
//! traffic:
//!
//! * **Kernel options** ([`TcpOptions`], [`connect`], [`apply_options`]):
//!   keepalive and `TCP_USER_TIMEOUT` tuned so the kernel finds a vanished
//!   peer host in under a minute instead of over two hours, as a backup to the
//!   pool's in-band heartbeat (which also finds a peer process that is hung
//!   while its kernel still answers). `TCP_NODELAY` keeps small requests from
//!   waiting on Nagle's algorithm, and a connect timeout bounds the handshake.
//! * **Use-time signals** ([`Tracked`], [`socket_state`]): a wrapper that
//!   records the last read and write and any EOF or error the protocol code
//!   ran into, and a non-blocking peek that finds an idle socket closed, reset
//!   or holding bytes nobody asked for. Together they give
//!   [`Tracked::condition`], which the pool checks on every checkout and return.
//!
//! ```no_run
//! # async fn demo() -> Result<(), livepool::tcp::ConnectError> {
//! use livepool::tcp::{connect, TcpOptions, Tracked};
//! use livepool::Condition;
//!
//! let stream = connect("127.0.0.1:6379".parse().unwrap(), &TcpOptions::default()).await?;
//! let conn = Tracked::new(stream);
//! assert_eq!(conn.condition(), Condition::Ready);
//! # Ok(())
//! # }
//! ```

mod connect;
mod options;
mod socket_state;
mod tracked;

pub use connect::{ConnectError, connect, connect_host};
pub use options::{InvalidOption, Keepalive, TcpOptions, apply_options};
pub use socket_state::{SocketState, socket_state};
pub use tracked::Tracked;
