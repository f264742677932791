//! Managers for real client libraries, each behind its own cargo feature.
//!
//! | feature    | manager                                   | heartbeat                 |
//! |------------|-------------------------------------------|---------------------------|
//! | `redis`    | `redis::RedisManager`                   | `PING` answered `PONG`    |
//! | `redis-tls` | `redis::RedisManager` with `rediss://` / `redis::RedisTls` (rustls, ring) | the same, over TLS |
//! | `postgres` | `postgres::PgManager`                   | an empty simple query     |
//! | `deadpool` | `deadpool::DeadpoolManager`             | the wrapped manager's `recycle` |
//!
//! (The managers named here exist only with their features on; docs.rs
//! builds with all of them.)
//!
//! The Redis and PostgreSQL managers open their sockets with
//! [`crate::tcp::connect`], so every member has kernel keepalive and
//! `TCP_USER_TIMEOUT` set before the client library ever sees it, and they
//! wrap the client in a connection type that remembers a command cut off half
//! way, so the pool evicts that member instead of handing it out again.
//!
//! ## Where the servers are
//!
//! `redis::RedisManager::from_env` and `postgres::PgManager::from_env`
//! (and this crate's tests and examples) read the server address from the
//! environment:
//!
//! | variable             | default          | what else is assumed |
//! |----------------------|------------------|----------------------|
//! | `LIVEPOOL_REDIS_ADDR` | `127.0.0.1:6379` | no password, database 0 |
//! | `LIVEPOOL_PG_ADDR`    | `127.0.0.1:5432` | user `postgres`, database `test`, trust authentication (no password), no TLS |
//!
//! Each is an `IP:port` pair; a host name is refused with an `EnvAddrError`
//! rather than resolved, so nothing blocks on DNS. For host names, build the
//! manager from the client's own configuration instead:
//! `RedisManager::from_url("redis://localhost:6379/0")`,
//! `PgManager::from_conn_str("host=localhost user=postgres")`; those names are
//! resolved at every connect.

#[cfg(feature = "deadpool")]
pub mod deadpool;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(any(feature = "redis", feature = "postgres"))]
mod driver;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod env;

#[cfg(any(feature = "redis", feature = "postgres"))]
pub use env::{EnvAddrError, addr_from_env};
