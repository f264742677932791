//! Runs any `deadpool` manager under livepool (feature `deadpool`).
//!
//! Crates such as `deadpool-postgres` and `deadpool-redis` already know how to
//! make and check their connections: `create` opens one, `recycle` proves it
//! still works. [`DeadpoolManager`] maps `create` onto
//! [`Manager::connect`] and `recycle` onto [`Manager::heartbeat`], so those
//! connections get livepool's background heartbeats, eviction and refill
//! without a line of new code. Deadpool recycles on every checkout; livepool
//! probes idle members in the background and at checkout only past
//! `validate_after` (set it to zero for deadpool's behaviour).
//!
//! How thorough the heartbeat is, is the wrapped manager's choice: for
//! `deadpool-postgres`, `RecyclingMethod::Fast` only checks that the client is
//! open, `Verified` runs a query on the connection (the in-band probe this
//! crate is about).
//!
//! Deadpool's managers have no cheap check, so [`Manager::condition`] trusts
//! every connection; a caller that saw an error should
//! [`mark_broken`](crate::Pooled::mark_broken) its connection.
//!
//! ```
//! use livepool::Pool;
//! use livepool::adapters::deadpool::DeadpoolManager;
//! use deadpool::managed::{Metrics, RecycleResult};
//!
//! /// A deadpool manager someone already wrote.
//! struct Numbers;
//!
//! impl deadpool::managed::Manager for Numbers {
//!     type Type = u32;
//!     type Error = std::io::Error;
//!     async fn create(&self) -> Result<u32, std::io::Error> { Ok(7) }
//!     async fn recycle(&self, _: &mut u32, _: &Metrics) -> RecycleResult<std::io::Error> {
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder().build(DeadpoolManager::new(Numbers))?;
//! let conn = pool.get().await?;
//! assert_eq!(**conn, 7); // Pooled -> DeadpoolObject -> u32
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use ::deadpool::managed::{Manager as DeadpoolManagerTrait, Metrics, RecycleError};

use crate::Manager;

/// A livepool [`Manager`] made of a `deadpool` manager.
#[derive(Debug, Clone, Default)]
pub struct DeadpoolManager<M> {
    inner: M,
}

impl<M> DeadpoolManager<M> {
    /// Wraps `inner`, e.g. a `deadpool_postgres::Manager`.
    pub fn new(inner: M) -> Self {
        DeadpoolManager { inner }
    }

    /// The wrapped manager.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M> Manager for DeadpoolManager<M>
where
    M: DeadpoolManagerTrait + 'static,
    M::Type: 'static,
    M::Error: std::error::Error + Sync + 'static,
{
    type Connection = DeadpoolObject<M::Type>;
    type Error = DeadpoolManagerError<M::Error>;

    async fn connect(&self) -> Result<DeadpoolObject<M::Type>, DeadpoolManagerError<M::Error>> {
        let obj = self
            .inner
            .create()
            .await
            .map_err(DeadpoolManagerError::Create)?;
        Ok(DeadpoolObject {
            obj,
            metrics: Metrics::default(),
        })
    }

    async fn heartbeat(
        &self,
        conn: &mut DeadpoolObject<M::Type>,
    ) -> Result<(), DeadpoolManagerError<M::Error>> {
        match self.inner.recycle(&mut conn.obj, &conn.metrics).await {
            Ok(()) => {
                conn.metrics.recycle_count += 1;
                conn.metrics.recycled = Some(Instant::now());
                Ok(())
            }
            Err(RecycleError::Backend(e)) => Err(DeadpoolManagerError::Recycle(e)),
            Err(RecycleError::Message(message)) => {
                Err(DeadpoolManagerError::RecycleRefused(message))
            }
        }
    }
}

/// A connection made by a `deadpool` manager, with the [`Metrics`] its
/// `recycle` expects (when it was made, when and how often it was recycled,
/// which some managers use to decide how hard to check). Derefs to the
/// connection.
#[derive(Debug)]
pub struct DeadpoolObject<T> {
    obj: T,
    metrics: Metrics,
}

impl<T> DeadpoolObject<T> {
    /// Creation time and heartbeat history, as deadpool keeps them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The connection itself, e.g. after `Pooled::detach`.
    pub fn into_inner(self) -> T {
        self.obj
    }
}

impl<T> Deref for DeadpoolObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.obj
    }
}

impl<T> DerefMut for DeadpoolObject<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.obj
    }
}

/// Why the wrapped deadpool manager could not make or keep a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeadpoolManagerError<E> {
    /// `create` failed.
    Create(E),
    /// `recycle` failed with the backend's error: the connection is dead.
    Recycle(E),
    /// `recycle` refused the connection for a reason of its own (e.g. a
    /// wrong answer to its check).
    RecycleRefused(Cow<'static, str>),
}

impl<E> fmt::Display for DeadpoolManagerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadpoolManagerError::Create(_) => {
                f.write_str("deadpool manager could not create a connection")
            }
            DeadpoolManagerError::Recycle(_) => {
                f.write_str("deadpool manager's recycle check failed")
            }
            DeadpoolManagerError::RecycleRefused(why) => {
                write!(
                    f,
                    "deadpool manager's recycle check refused the connection: {why}"
                )
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for DeadpoolManagerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The backend's error may repeat its own cause in its text
            // (a `RedisError` does): report from the first new level.
            DeadpoolManagerError::Create(e) | DeadpoolManagerError::Recycle(e) => {
                Some(crate::chain::cause_once(e))
            }
            DeadpoolManagerError::RecycleRefused(_) => None,
        }
    }
}
