//! The pool core: borrowing, returning, and the sentinel that keeps idle
//! members honest. Nothing here knows about TCP or any protocol; it learns
//! everything about a connection through the [`Manager`].
//!
//! Layout: `config` (what a pool is built with), `member` (one member's
//! timestamps), `slot` (the ledger: who holds each place, and the named
//! transitions), `idle` (the idle set and the fair waiter queue), `shared`
//! (the moves between owners, under one lock), `calls` (the one probe path
//! and the one connect path), `admission` (connect, `after_connect`, admit),
//! `hooks` (the hook types and how one runs), `checkout` (the `get` path),
//! `pooled` (the guard and the return path), `returning` (the return path
//! through `after_release`), `sentinel` (the background task), `drain` and
//! `ready` (stopping and starting a service), `status` (snapshot and
//! counters), `clock` (the coarse clock), `time` (arithmetic that cannot
//! overflow), `timing` (the wait and use times of the `metrics` feature).
//!
//! Run time changes: [`Pool::resize`] (grow at once, shrink without taking
//! a member from a caller), [`Pool::drain`] (stop lending, wait for borrowed
//! members up to a deadline, report what was left), [`Pool::ready`] (wait
//! for `min_idle` members at startup, failing fast on a permanent error).

mod adaptive;
mod admission;
mod calls;
mod checkout;
mod clock;
mod config;
mod drain;
mod driven;
mod error;
mod get;
mod handoff;
mod hooks;
mod idle;
mod leak;
// The handoff model's entry points, for tests/loom_handoff.rs.
#[cfg(livepool_loom)]
#[doc(hidden)]
pub mod loom_model;
mod member;
mod pace;
mod pooled;
mod ready;
mod returning;
mod sentinel;
mod shared;
mod slot;
mod stall;
mod status;
mod time;
mod timing;
mod wait_clock;

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

pub use config::{BuildError, Config, IdleOrder, MAX_POOL_SIZE};
pub use drain::DrainReport;
pub use error::{Cause, Error, Phase};
pub use hooks::{
    Hook, HookError, HookFailure, HookFuture, Hooks, HooksFor, MemberInfo, NoHooks, Verdict,
};
pub use pooled::{Pooled, PooledOwned};
pub use status::{Counters, EvictReason, Evictions, ProbeRtt, Status};

use checkout::Queue;
use get::Checkout;
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
        Self::with_hooks(manager, config, Hooks::none(), hooks::DEFAULT_HOOK_TIMEOUT)
    }

    fn with_hooks(
        manager: M,
        config: Config,
        hooks: Hooks<M::Connection>,
        hook_timeout: Duration,
    ) -> Result<Self, BuildError> {
        config.validate()?;
        if hook_timeout.is_zero() {
            return Err(BuildError::ZeroDuration("hook_timeout"));
        }
        let shared = Shared::new(manager, config, hooks, hook_timeout);
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
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Pooled<'_, M>, Error<M::Error>>> + Send + '_ {
        let shared: &Shared<M> = self.shared();
        Checkout::new(shared, Queue::Wait, Location::caller())
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
    #[track_caller]
    pub fn get_owned(
        &self,
    ) -> impl Future<Output = Result<PooledOwned<M>, Error<M::Error>>> + Send + '_ {
        Checkout::new(
            checkout::Owned(self.shared()),
            Queue::Wait,
            Location::caller(),
        )
    }

    /// Like [`get`](Self::get) but never queues: fails with
    /// [`Error::Exhausted`] when every member is in use and the pool is full.
    /// It may still connect or probe, bounded by their timeouts.
    #[track_caller]
    pub fn try_get(
        &self,
    ) -> impl Future<Output = Result<Pooled<'_, M>, Error<M::Error>>> + Send + '_ {
        let shared: &Shared<M> = self.shared();
        Checkout::new(shared, Queue::Never, Location::caller())
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

    /// Changes `max_size` while the pool runs, validated as at build
    /// (between 1 and [`MAX_POOL_SIZE`], not below `min_idle`).
    ///
    /// Growing takes effect at once: callers queued for a member get the
    /// new places and connect. Shrinking closes idle members first, and
    /// never takes a member from a caller: members returned while the pool
    /// is still above the new maximum are closed (counted as
    /// [`EvictReason::Resized`]), and no place is handed on until it is
    /// within. [`Status::max_size`] reports the maximum in force;
    /// [`config`](Self::config) keeps the one built with.
    ///
    /// ```
    /// # use livepool::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder().max_size(4).build(M)?;
    /// let (a, b) = (pool.get().await?, pool.get().await?);
    /// pool.resize(1)?; // both stay with their callers
    /// assert_eq!(pool.status().in_use, 2);
    /// drop(a); // closed: the pool is above its new maximum
    /// drop(b); // kept: the pool is within it again
    /// assert_eq!((pool.status().size, pool.status().idle), (1, 1));
    /// assert!(pool.resize(0).is_err());
    /// # Ok(()) }
    /// ```
    pub fn resize(&self, max_size: usize) -> Result<(), BuildError> {
        let mut config = self.config().clone();
        config.max_size = max_size;
        config.validate()?;
        self.shared().resize(max_size);
        Ok(())
    }

    /// Stops the pool gracefully: lending stops at once (checkouts, queued
    /// or new, fail with [`Error::Closed`]), idle members are closed at
    /// once, and `drain` waits up to `within` for borrowed members to come
    /// back (each is closed on return) and for close work to end. The
    /// report says what was still out when it returned; a member returned
    /// later is closed then. [`close`](Self::close) is the same without the
    /// wait.
    ///
    /// ```
    /// # use livepool::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder().build(M)?;
    /// let conn = pool.get_owned().await?;
    /// let request = tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_millis(10)).await; // finishing a request
    ///     drop(conn);
    /// });
    /// let report = pool.drain(Duration::from_secs(5)).await;
    /// assert!(report.is_complete(), "{report:?}");
    /// assert!(pool.get().await.is_err()); // lending has stopped
    /// # request.await?;
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self, within: Duration) -> DrainReport {
        self.shared().drain(within).await
    }

    /// Waits until `min_idle` members (at least one) are connected, within
    /// `timeout`, connecting them itself: for a service to refuse to start
    /// against a dead backend. Fails at once with [`Error::Permanent`] on a
    /// connect error the manager calls permanent (a wrong password); when
    /// `timeout` passes, with [`Error::NotReady`], whose `source()` is the
    /// last failure (a connect error or timeout, or a failed
    /// `after_connect` hook).
    ///
    /// ```
    /// # use livepool::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder().max_size(8).min_idle(3).build(M)?;
    /// pool.ready(Duration::from_secs(10)).await?; // or refuse to start
    /// assert!(pool.status().idle >= 3);
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error<M::Error>> {
        self.shared().ready(timeout).await
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

/// Sets a pool up; every setting has a default (see [`Config`]).
///
/// Hooks are async closures given to [`after_connect`](Builder::after_connect),
/// [`before_acquire`](Builder::before_acquire) and
/// [`after_release`](Builder::after_release) (why closures and not a
/// trait: see the `hooks` module). The first hook names the connection
/// type; from then on the builder is a `Builder<Hooks<C>>`, which builds
/// only a pool of connections of that type.
///
/// ```
/// # use livepool::{Manager, Pool};
/// # struct Session { search_path: String }
/// # struct Db;
/// # impl Manager for Db {
/// #     type Connection = Session;
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> std::io::Result<Session> { Ok(Session { search_path: String::new() }) }
/// #     async fn heartbeat(&self, _: &mut Session) -> std::io::Result<()> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use livepool::Verdict;
///
/// let pool = Pool::builder()
///     .max_size(8)
///     .hook_timeout(Duration::from_secs(2))
///     .after_connect(|conn: &mut Session, _meta| {
///         Box::pin(async move {
///             conn.search_path = "app".into(); // `SET search_path TO app`, say
///             Ok(())
///         })
///     })
///     .before_acquire(|_conn, meta| {
///         // Refuse members used a thousand times: evicted, the next one is taken.
///         Box::pin(async move { Ok(if meta.uses < 1000 { Verdict::Keep } else { Verdict::Refuse }) })
///     })
///     .build(Db)?;
/// assert_eq!(pool.get().await?.search_path, "app");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder<H = NoHooks> {
    config: Config,
    hooks: H,
    hook_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config::default(),
            hooks: NoHooks,
            hook_timeout: hooks::DEFAULT_HOOK_TIMEOUT,
        }
    }
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

impl<H> Builder<H> {
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
        /// Leak detection: warn once about a member borrowed this long, with
        /// the call site of its `get()` (default `None`: off, costs nothing).
        leak_threshold: Option<Duration>;
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

    /// The adaptive heartbeat timeout with this floor; `heartbeat_timeout`
    /// is its ceiling (see [`Config::adaptive_heartbeat_floor`]).
    pub fn adaptive_heartbeat_timeout(mut self, floor: Duration) -> Self {
        self.config.adaptive_heartbeat_floor = Some(floor);
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

    /// Bound on one run of any hook (default 5 s). A hook that takes longer
    /// fails with [`HookFailure::TimedOut`] and its member is evicted.
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = timeout;
        self
    }

    /// Checks the configuration and builds the pool; see [`Pool::new`].
    pub fn build<M: Manager>(self, manager: M) -> Result<Pool<M>, BuildError>
    where
        H: HooksFor<M::Connection>,
    {
        Pool::with_hooks(
            manager,
            self.config,
            self.hooks.into_hooks(),
            self.hook_timeout,
        )
    }

    fn with<C>(self, hooks: Hooks<C>) -> Builder<Hooks<C>> {
        Builder {
            config: self.config,
            hooks,
            hook_timeout: self.hook_timeout,
        }
    }
}

/// The first hook: it names the connection type (`|conn: &mut MyConn, meta|`).
impl Builder<NoHooks> {
    /// Runs `hook` on every new member before it is admitted (a checkout's
    /// connect, the background refill, [`Pool::ready`]). An error, a panic
    /// or `hook_timeout` passing closes the connection, counted as
    /// [`EvictReason::HookFailed`]; the checkout backs off and connects
    /// again within its `wait_timeout`, and fails with a
    /// [`Cause::Hook`] if time runs out.
    pub fn after_connect<C, F>(self, hook: F) -> Builder<Hooks<C>>
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, ()> + Send + Sync + 'static,
    {
        self.with(Hooks::none()).after_connect(hook)
    }

    /// Runs `hook` on a member taken from the pool before a caller gets it
    /// (not on one just connected: `after_connect` ran on that).
    /// [`Verdict::Refuse`], an error, a panic or a timeout evicts the
    /// member and the checkout takes the next.
    pub fn before_acquire<C, F>(self, hook: F) -> Builder<Hooks<C>>
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync + 'static,
    {
        self.with(Hooks::none()).before_acquire(hook)
    }

    /// Runs `hook` on a member a caller returned healthy, before it goes
    /// back, in a short task (the guard's `Drop` cannot await), the member
    /// counted as `returning` meanwhile. [`Verdict::Refuse`], an error, a
    /// panic or a timeout evicts it.
    pub fn after_release<C, F>(self, hook: F) -> Builder<Hooks<C>>
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync + 'static,
    {
        self.with(Hooks::none()).after_release(hook)
    }
}

/// Further hooks, for the connection type the first one named.
impl<C> Builder<Hooks<C>> {
    /// See [`Builder::after_connect`](Builder#method.after_connect).
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, ()> + Send + Sync + 'static,
    {
        self.hooks.set_after_connect(hook);
        self
    }

    /// See [`Builder::before_acquire`](Builder#method.before_acquire).
    pub fn before_acquire<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync + 'static,
    {
        self.hooks.set_before_acquire(hook);
        self
    }

    /// See [`Builder::after_release`](Builder#method.after_release).
    pub fn after_release<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync + 'static,
    {
        self.hooks.set_after_release(hook);
        self
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
