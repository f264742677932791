//! The pool core: borrowing, returning, and the sentinel that keeps idle
//! members honest. Nothing here knows about TCP or any protocol; it learns
//! everything about a connection through the [`Manager`].
//!
//! Layout: `config` (what a pool is built with), `member` (one member's
//! timestamps), `slot` (the ledger: who holds each place, and the named
//! transitions), `idle` (the idle set and the fair waiter queue), `shared`
//! (the moves between owners, under one lock), `calls` (the one probe path
//! and the one connect path), `checkout` (the `get` path), `pooled` (the
//! guard and the return path), `sentinel` (the background task), `status`
//! (snapshot and counters), `clock` (the coarse clock), `time` (arithmetic
//! that cannot overflow).

mod calls;
mod checkout;
mod clock;
mod config;
mod error;
mod idle;
mod member;
mod pooled;
mod sentinel;
mod shared;
mod slot;
mod status;
mod time;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

pub use config::{BuildError, Config, IdleOrder, MAX_POOL_SIZE};
pub use error::{Cause, Error, Phase};
pub use pooled::{Pooled, PooledOwned};
pub use status::{Counters, EvictReason, Evictions, ProbeRtt, Status};

use checkout::{Fast, Queue, Waited};
use shared::Shared;

use crate::Manager;

/// A pool of long-lived connections that hands out only live ones.
///
/// Cloning is cheap and gives another handle to the same pool. When the last
/// handle is dropped the pool closes: the sentinel stops, idle members are
/// closed, and members still borrowed are closed when returned.
///
/// ```
/// use livepool::{Manager, Pool};
/// use std::time::Duration;
///
/// struct Numbers;
///
/// impl Manager for Numbers {
///     type Connection = u64;
///     type Error = std::io::Error;
///     async fn connect(&self) -> std::io::Result<u64> { Ok(42) }
///     async fn heartbeat(&self, _: &mut u64) -> std::io::Result<()> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder()
///     .name("numbers")
///     .max_size(8)
///     .wait_timeout(Duration::from_secs(2))
///     .heartbeat_interval(Duration::from_secs(10))
///     .build(Numbers)?;
/// let conn = pool.get().await?;
/// assert_eq!(*conn, 42);
/// drop(conn);
/// assert_eq!(pool.status().idle, 1);
/// # Ok(()) }
/// ```
pub struct Pool<M: Manager> {
    handle: Arc<Handle<M>>,
}

/// Closes the pool when the last `Pool` clone goes. Guards hold `Shared`
/// directly, so a borrowed member does not keep the pool open.
struct Handle<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Drop for Handle<M> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared().config.name)
            .field("status", &self.status())
            .finish()
    }
}

impl Pool<NoManager> {
    /// Starts a configuration with the defaults of [`Config::default`].
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<M: Manager> Pool<M> {
    /// Builds a pool with `config`.
    ///
    /// Inside a tokio runtime the sentinel starts at once (and with it the
    /// refill to `min_idle`). Outside one (a `static` behind a `LazyLock`,
    /// say) it starts with the first checkout made inside a runtime. If the
    /// runtime it runs on shuts down while the pool lives on, the next
    /// checkout from another runtime starts it again there: a pool kept in
    /// a `static` across `#[tokio::test]` runtimes keeps working.
    pub fn new(manager: M, config: Config) -> Result<Self, BuildError> {
        config.validate()?;
        let shared = Shared::new(manager, config);
        shared.clock.refresh();
        if tokio::runtime::Handle::try_current().is_ok() {
            let mut st = shared.lock();
            // Inside a runtime, so this cannot fail.
            let _ = shared.ensure_sentinel(&mut st);
        }
        if shared.config.min_idle > 0 {
            shared.wake_sentinel.notify_one();
        }
        Ok(Pool {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared<M>> {
        &self.handle.shared
    }

    /// Borrows a live connection, waiting up to `wait_timeout` in all.
    ///
    /// Takes an idle member if there is one (probing it first if it has been
    /// idle for `validate_after`), else connects a new one if the pool is
    /// below `max_size`, else queues first-come first-served. Dead members
    /// met on the way are evicted and the next one tried. Dropping the future
    /// at any point leaks nothing.
    ///
    /// The guard borrows the pool, which makes a checkout cheaper than any
    /// reference count; use [`get_owned`](Self::get_owned) for a guard that
    /// must outlive the borrow.
    pub fn get(&self) -> impl Future<Output = Result<Pooled<'_, M>, Error<M::Error>>> + Send + '_ {
        let shared: &Shared<M> = self.shared();
        self.checkout(shared, Queue::Wait)
    }

    /// Like [`get`](Self::get), but the guard holds its own handle on the
    /// pool instead of borrowing it, so it can be moved into a spawned task or
    /// kept in a struct. Costs a reference count per checkout.
    ///
    /// ```
    /// # use livepool::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> std::io::Result<u32> { Ok(7) }
    /// #     async fn heartbeat(&self, _: &mut u32) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder().build(M)?;
    /// let conn = pool.get_owned().await?;
    /// let answer = tokio::spawn(async move { *conn + 1 }).await?; // returned when the task ends
    /// assert_eq!(answer, 8);
    /// # Ok(()) }
    /// ```
    pub fn get_owned(
        &self,
    ) -> impl Future<Output = Result<PooledOwned<M>, Error<M::Error>>> + Send + '_ {
        self.checkout(checkout::Owned(self.shared()), Queue::Wait)
    }

    /// Like [`get`](Self::get) but never queues: fails with
    /// [`Error::Exhausted`] when every member is in use and the pool is full.
    /// It may still connect or probe, bounded by their timeouts.
    pub fn try_get(
        &self,
    ) -> impl Future<Output = Result<Pooled<'_, M>, Error<M::Error>>> + Send + '_ {
        let shared: &Shared<M> = self.shared();
        self.checkout(shared, Queue::Never)
    }

    /// The fast path inline (no span, no clock read, no timer, no box); a
    /// plain wait behind other callers inline too, as it needs little state;
    /// anything more (connect, probe, retry) boxed out of line. Each step is
    /// decided in its own block so that nothing of it lives in this future's
    /// state across the await.
    async fn checkout<'a, 'p: 'a>(
        &'a self,
        lender: impl checkout::Lender<'p, M> + 'a,
        queue: Queue,
    ) -> Result<Pooled<'p, M>, Error<M::Error>> {
        let shared = self.shared();
        let step = {
            match shared.checkout_fast(lender, queue) {
                Fast::Done(pooled) => return Ok(pooled),
                Fast::Fail(e) => return Err(e),
                Fast::Queued(queued) => Ok(queued),
                Fast::Slow(next, attempt) => Err(self.slow(lender, queue, next, attempt)),
            }
        };
        let slow = match step {
            Err(slow) => slow,
            Ok(queued) => {
                let deadline = queued.deadline;
                let received = shared.wait(queued.rx).await;
                match shared.after_inline_wait(lender, received, deadline) {
                    Waited::Done(pooled) => return Ok(pooled),
                    Waited::Fail(e) => return Err(e),
                    Waited::Slow(next, attempt) => self.slow(lender, queue, next, attempt),
                }
            }
        };
        slow.await
    }

    /// Probing, connecting and retrying (and any queueing they lead to),
    /// inside a `checkout` span. Boxed: that state is large, and keeping it
    /// out of line keeps the `get()` future small and cheap to move on the
    /// fast path and on a first plain wait, which run with no span, no clock
    /// read and no timer. The slow path awaits I/O anyway, next to which one
    /// allocation is nothing.
    fn slow<'a, 'p: 'a>(
        &'a self,
        lender: impl checkout::Lender<'p, M> + 'a,
        queue: Queue,
        next: Option<checkout::Next<M::Connection>>,
        attempt: checkout::Attempt<M::Error>,
    ) -> SlowCheckout<'a, 'p, M> {
        let shared = self.shared();
        Box::pin(
            shared
                .checkout_slow(lender, queue, next, attempt)
                .instrument(tracing::debug_span!("checkout", pool = %shared.config.name)),
        )
    }

    /// A snapshot of counts and counters, taken under the pool's lock.
    pub fn status(&self) -> Status {
        self.shared().status()
    }

    /// Refuses new checkouts, wakes waiters with [`Error::Closed`], closes idle
    /// members and stops the sentinel. Members in use are closed when returned.
    pub fn close(&self) {
        self.shared().close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &Config {
        &self.shared().config
    }

    /// The manager, e.g. to read counters an adapter keeps.
    pub fn manager(&self) -> &M {
        &self.shared().manager
    }
}

/// The slow path of a checkout, boxed (see `Pool::slow`).
type SlowCheckout<'a, 'p, M> =
    Pin<Box<dyn Future<Output = Result<Pooled<'p, M>, Error<<M as Manager>::Error>>> + Send + 'a>>;

/// Sets a pool up; every setting has a default (see [`Config`]).
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl Builder {
    setters! {
        /// Members plus connects in progress never exceed this (default 10).
        max_size: usize;
        /// Members kept idle (or about to be) by background connects (default 0).
        min_idle: usize;
        /// How long `get` may take in all, retries included (default 30 s).
        wait_timeout: Duration;
        /// Bound on one connect (default 5 s).
        connect_timeout: Duration;
        /// A member idle this long is probed at checkout (default 30 s).
        validate_after: Duration;
        /// Bound on one heartbeat (default 3 s).
        heartbeat_timeout: Duration;
        /// Fraction of the interval heartbeats are spread over, 0.0 to 0.5 (default 0.1).
        heartbeat_jitter: f64;
        /// Consecutive failed heartbeats that evict (default 1).
        heartbeat_failures: u32;
        /// Heartbeats in flight at once (default 64).
        max_concurrent_probes: usize;
        /// Close idle members unused this long, above `min_idle` (default 10 min; `None`: never).
        idle_timeout: Option<Duration>;
        /// Retire members this old, with jitter (default 30 min; `None`: never).
        max_lifetime: Option<Duration>;
        /// LIFO (default) or FIFO.
        idle_order: IdleOrder;
        /// First delay after a failed background connect (default 100 ms).
        refill_backoff_min: Duration;
        /// Longest delay between background connects (default 10 s).
        refill_backoff_max: Duration;
        /// Bound on a connection's close work, its place held meanwhile (default 5 s).
        close_timeout: Duration;
    }

    /// A name for tracing events and spans.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Probe idle members in the background when their last proof of life is
    /// this old (default 15 s).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = Some(interval);
        self
    }

    /// No background heartbeats: only the kernel's keepalive and checkout
    /// validation watch idle members.
    pub fn no_heartbeats(mut self) -> Self {
        self.config.heartbeat_interval = None;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks the configuration and builds the pool; see [`Pool::new`].
    pub fn build<M: Manager>(self, manager: M) -> Result<Pool<M>, BuildError> {
        Pool::new(manager, self.config)
    }
}

/// Names the type behind `Pool::builder()` so callers need not name a manager
/// before they have one. It cannot be built.
#[doc(hidden)]
pub enum NoManager {}

impl Manager for NoManager {
    type Connection = ();
    type Error = std::convert::Infallible;
    async fn connect(&self) -> Result<(), Self::Error> {
        match *self {}
    }
    async fn heartbeat(&self, _: &mut ()) -> Result<(), Self::Error> {
        match *self {}
    }
}
