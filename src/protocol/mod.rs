//! The reference framed protocol: codec, server, client and its Manager.
//!
//! A small protocol so the crate, its examples and its benchmarks run with
//! nothing else installed, and so every liveness failure can be staged on
//! loopback: the [`Server`] can be told to ignore heartbeats, hang, stall or
//! answer with the wrong request id, and the [`RpcConnection`] turns each of
//! those into a typed error and a [`Condition`](crate::Condition) the pool acts on.
//!
//! Two additions serve the endpoint layer: a server
//! reports its [`Role`](crate::Role) in every heartbeat reply
//! ([`ServerHandle::set_role`]; [`RpcManager::track_roles`] evicts members
//! whose server changed role), and a graceful shutdown
//! ([`ServerHandle::shutdown_gracefully`]) sends a going-away [`Event`] on
//! every connection, which turns it [`Draining`](crate::Condition::Draining):
//! finished, never handed out again, closed without an error.
//!
//! ```no_run
//! use bytes::Bytes;
//! use livepool::Manager;
//! use livepool::protocol::{RpcManager, Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::new().bind("127.0.0.1:0".parse()?).await?;
//! let manager = RpcManager::new(server.addr());
//! let mut conn = manager.connect().await?;
//! manager.heartbeat(&mut conn).await?;
//! assert_eq!(conn.call(Bytes::from_static(b"hi")).await?, "hi");
//! assert_eq!((server.requests(), server.heartbeats()), (1, 1));
//! # Ok(()) }
//! ```

pub(crate) mod client;
mod codec;
mod error;
mod frame;
mod manager;
mod server;

pub use client::{DEFAULT_REQUEST_TIMEOUT, RpcConnection};
pub use codec::{DEFAULT_MAX_BODY, FrameCodec, MAX_CONTROL_BODY};
pub use error::{BindError, ClientError, ProtocolError};
pub use frame::{Event, Flags, Frame, FrameKind, HEADER_LEN, MAGIC, Status};
pub use manager::RpcManager;
pub use server::{Echo, Handler, Reply, Server, ServerHandle, ServerMode};
