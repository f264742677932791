//! Endpoints: a set of per-endpoint pools behind one `get`, fed by
//! discovery, balanced by load, routed by role, with outlier ejection and
//! drain.
//!
//! Each endpoint is one [`Pool`], so every liveness guarantee holds per
//! endpoint; nothing in the pool learns about addresses or roles. Data flows
//! one way: discovery → the set → [choose](Balance) an endpoint → its
//! `Pool::get` → the role check → [`Member`] → caller.
//!
//! * Discovery is any [`tower::discover::Discover`] stream of
//!   `Change`s ([`discover::Change`]); built in: [`discover::fixed`],
//!   [`discover::channel`], [`discover::dns`]. A removed endpoint drains: no
//!   new checkouts, idle members closed at once, borrowed ones on return.
//! * [`Balance::PowerOfTwo`] picks the less loaded of two random endpoints
//!   (peak-EWMA round trip from heartbeats and use, × pending + 1).
//! * [`Ejection`]: endpoints failing in a row leave rotation for a jittered,
//!   growing time, never more than a share at once; when every endpoint is
//!   down, `get` fails at once with [`Error::AllDown`] and each endpoint's
//!   cause.
//! * [`Want`]: a member whose last known role does not match what was asked
//!   is never handed out (invariant 7); another endpoint is tried.
//! * A server that said it is going away is avoided while others are up.
//!
//! ```
//! use std::time::Duration;
//! use livepool::Pool;
//! use livepool::endpoints::{discover, Endpoints, Want};
//! use livepool::protocol::{RpcManager, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let a = Server::new().bind("127.0.0.1:0".parse()?).await?;
//! let b = Server::new().bind("127.0.0.1:0".parse()?).await?;
//! b.set_role(livepool::Role::Replica);
//! let set = Endpoints::builder()
//!     .name("rpc")
//!     .pool(Pool::builder().max_size(4).wait_timeout(Duration::from_secs(1)))
//!     .build(
//!         discover::fixed([(a.addr(), a.addr()), (b.addr(), b.addr())]),
//!         |addr: &std::net::SocketAddr| RpcManager::new(*addr).track_roles(true),
//!     )?;
//! for _ in 0..10 {
//!     let conn = set.get(Want::Primary).await?;
//!     assert_eq!(*livepool::endpoints::Member::endpoint(&conn), a.addr());
//! }
//! assert_eq!(set.status().live, 2);
//! # Ok(()) }
//! ```

mod choose;
pub mod discover;
mod eject;
mod error;
mod guard;
mod role;
mod status;

use std::fmt;
use std::future::poll_fn;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::discover::{Change, Discover};

pub use choose::Balance;
pub use eject::Ejection;
pub use error::{BuildError, Error, Failure};
pub use guard::Member;
pub use role::Want;
pub use status::{EndpointStatus, SetStatus};

use choose::Load;
use eject::Health;
use guard::Routed;

use crate::{Condition, Config, Manager, Pool, Role};

/// What identifies an endpoint: a discovery key, printed in tracing events
/// (`endpoint = %key`) and in each endpoint's pool name (`set/key`).
pub trait Key: Clone + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static {}

impl<T: Clone + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static> Key for T {}

/// The longest `wait_timeout` (and other setting) a set accepts: keeps every
/// deadline far from overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// Most endpoints tried by one checkout: a bound on its work, whatever the
/// deadline.
const MAX_ATTEMPTS: usize = 64;
/// Pauses between rounds of a checkout that found nothing to try (every
/// endpoint tried, or none of the wanted role), doubling up to the max.
const PAUSE_MIN: Duration = Duration::from_millis(5);
const PAUSE_MAX: Duration = Duration::from_millis(200);
/// How long a discovery that returned an error rests before it is polled again.
const DISCOVERY_RETRY: Duration = Duration::from_millis(100);
/// Most changes applied while building, before the task takes over.
const MAX_INITIAL_CHANGES: usize = 10_000;

/// A set of per-endpoint pools behind one [`get`](Self::get). Cloning gives
/// another handle to the same set; when the last one goes, every endpoint's
/// pool closes.
pub struct Endpoints<K: Key, M: Manager> {
    inner: Arc<Inner<K, M>>,
}

impl<K: Key, M: Manager> Clone for Endpoints<K, M> {
    fn clone(&self) -> Self {
        Endpoints {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Key, M: Manager> fmt::Debug for Endpoints<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("name", &self.inner.settings.name)
            .field("endpoints", &self.inner.snapshot().len())
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Settings {
    name: String,
    pool: Config,
    wait_timeout: Duration,
    balance: Balance,
    ejection: Ejection,
    observe_every: Duration,
    going_away_avoid: Duration,
}

/// Sets an endpoint set up; every setting has a default.
#[derive(Debug, Clone)]
pub struct Builder {
    settings: Settings,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            settings: Settings {
                name: "endpoints".to_string(),
                pool: Config::default(),
                wait_timeout: Duration::from_secs(10),
                balance: Balance::default(),
                ejection: Ejection::default(),
                observe_every: Duration::from_millis(100),
                going_away_avoid: Duration::from_secs(1),
            },
        }
    }
}

impl Builder {
    /// A name for tracing events; each endpoint's pool is named `name/key`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The configuration of every endpoint's pool. Its `wait_timeout` bounds
    /// one attempt on one endpoint; the set's own bounds the whole `get`.
    pub fn pool(mut self, pool: crate::Builder) -> Self {
        self.settings.pool = pool.config().clone();
        self
    }

    /// How long `get` may take in all, every endpoint tried (default 10 s).
    pub fn wait_timeout(mut self, wait: Duration) -> Self {
        self.settings.wait_timeout = wait;
        self
    }

    /// How checkouts are spread (default power of two choices).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.settings.balance = balance;
        self
    }

    /// When endpoints are ejected (see [`Ejection`]).
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.settings.ejection = ejection;
        self
    }

    /// How often each endpoint's pool counters are read for heartbeat
    /// round trips and failures (default 100 ms).
    pub fn observe_every(mut self, every: Duration) -> Self {
        self.settings.observe_every = every;
        self
    }

    /// How long an endpoint whose server said it is going away is avoided
    /// while others are up (default 1 s).
    pub fn going_away_avoid(mut self, avoid: Duration) -> Self {
        self.settings.going_away_avoid = avoid;
        self
    }

    fn validate(&self) -> Result<(), BuildError> {
        let s = &self.settings;
        s.pool.validate().map_err(BuildError::Pool)?;
        s.ejection.validate().map_err(BuildError::Ejection)?;
        for (what, d) in [
            ("wait_timeout", s.wait_timeout),
            ("observe_every", s.observe_every),
            ("going_away_avoid", s.going_away_avoid),
            ("ejection max", s.ejection.max),
        ] {
            if d.is_zero() || d > MAX_WAIT {
                return Err(BuildError::Duration(what));
            }
        }
        Ok(())
    }

    /// Builds the set: endpoints already waiting in `discovery` are added
    /// at once, the rest as they come, by a task on the current runtime.
    /// `manager` makes each endpoint's [`Manager`] from its discovered value.
    pub fn build<K, V, M, D, F>(
        self,
        discovery: D,
        manager: F,
    ) -> Result<Endpoints<K, M>, BuildError>
    where
        K: Key,
        V: Send + 'static,
        M: Manager,
        D: Discover<Key = K, Service = V> + Send + 'static,
        D::Error: fmt::Display + Send,
        F: Fn(&V) -> M + Send + Sync + 'static,
    {
        self.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let settings = self.settings;
        let observe_every = settings.observe_every;
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            settings,
            live: RwLock::new(Arc::from(Vec::new())),
            retired: Mutex::new(Vec::new()),
            changed: Notify::new(),
            turn: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stop: stop.clone(),
        });
        let mut discovery = Box::pin(discovery);
        let mut ended = false;
        for _ in 0..MAX_INITIAL_CHANGES {
            match poll_fn(|cx| discovery.as_mut().poll_discover(cx)).now_or_never() {
                Some(Some(Ok(change))) => inner.apply(change, &manager),
                Some(Some(Err(err))) => {
                    tracing::warn!(pool = %inner.settings.name, error = %err, "discovery failed");
                    break;
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        tokio::spawn(run(
            Arc::downgrade(&inner),
            discovery,
            manager,
            stop,
            ended,
            observe_every,
        ));
        Ok(Endpoints { inner })
    }
}

impl Endpoints<String, crate::pool::NoManager> {
    /// Starts a configuration with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<K: Key, M: Manager> Endpoints<K, M> {
    /// Borrows a live member whose role `want` accepts, from the endpoint
    /// the balancer picks, waiting up to the set's `wait_timeout` in all.
    ///
    /// An endpoint that fails (its pool gives no member in its own
    /// `wait_timeout`), is removed meanwhile, or hands out a member of the
    /// wrong role is left for another, so a caller sees an error only when
    /// no endpoint can serve: at once ([`Error::AllDown`]) when every
    /// endpoint is down, else when time runs out. Dropping the future
    /// leaks nothing.
    pub async fn get(&self, want: Want) -> Result<Member<K, M>, Error<K, M::Error>> {
        let inner = &*self.inner;
        let waited = inner.settings.wait_timeout;
        let start = Instant::now();
        let deadline = start.checked_add(waited).unwrap_or(start);
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<(K, Failure<M::Error>)> = None;
        let mut mismatched = false;
        let mut pauses = 0u32;
        for _ in 0..MAX_ATTEMPTS {
            if inner.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let live = inner.snapshot();
            let endpoint = match inner.decide(&live, want, &tried, pauses > 0, now) {
                Decision::Try(endpoint) => Arc::clone(endpoint),
                Decision::AllDown => return Err(inner.all_down(&live)),
                Decision::Empty => {
                    let changed = inner.changed.notified();
                    if inner.snapshot().is_empty() {
                        let _ = tokio::time::timeout_at(deadline, changed).await;
                    }
                    continue;
                }
                Decision::NoneLeft => {
                    tried.clear();
                    let pause = PAUSE_MIN.saturating_mul(1 << pauses.min(6)).min(PAUSE_MAX);
                    pauses = pauses.saturating_add(1);
                    let until = now.checked_add(pause).unwrap_or(deadline).min(deadline);
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            };
            tried.push(Arc::as_ptr(&endpoint) as usize);
            match inner.attempt(endpoint, want, deadline).await {
                Attempt::Got(member) => return Ok(member),
                Attempt::Failed(key, failure) => last = Some((key, failure)),
                Attempt::Mismatched => mismatched = true,
                Attempt::Skipped => {}
                Attempt::OutOfTime => break,
            }
        }
        let live = inner.snapshot();
        Err(if live.is_empty() {
            Error::NoEndpoints { waited }
        } else if last.is_none() && (mismatched || want == Want::Primary) {
            Error::NoRole {
                want,
                waited,
                roles: live.iter().map(|e| (e.key.clone(), e.role())).collect(),
            }
        } else {
            Error::Timeout { waited, last }
        })
    }

    /// Every endpoint's status, and the set's counts.
    pub fn status(&self) -> SetStatus<K, M::Error> {
        let inner = &*self.inner;
        let now = Instant::now();
        let live = inner.snapshot();
        let retired: Vec<_> = inner
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let endpoints: Vec<_> = live
            .iter()
            .chain(retired.iter())
            .map(|e| e.status(now))
            .collect();
        SetStatus {
            live: live.len(),
            down: endpoints.iter().filter(|e| !e.removed && e.down).count(),
            ejected: endpoints
                .iter()
                .filter(|e| !e.removed && e.ejected_for.is_some())
                .count(),
            draining: retired.len(),
            endpoints,
        }
    }

    /// The status of the endpoint `key`, if it is in the set (or draining).
    pub fn endpoint_status(&self, key: &K) -> Option<EndpointStatus<K, M::Error>> {
        self.status().endpoints.into_iter().find(|e| &e.key == key)
    }

    /// Refuses new checkouts and closes every endpoint's pool (members in
    /// use close when returned); discovery stops.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// What a checkout does next.
enum Decision<'a, K: Key, M: Manager> {
    Try(&'a Arc<Endpoint<K, M>>),
    AllDown,
    Empty,
    NoneLeft,
}

/// How one attempt on one endpoint went.
enum Attempt<K: Key, M: Manager> {
    Got(Member<K, M>),
    Failed(K, Failure<M::Error>),
    Mismatched,
    Skipped,
    OutOfTime,
}

/// The live endpoints as one shared, immutable list.
type List<K, M> = Arc<[Arc<Endpoint<K, M>>]>;

struct Inner<K: Key, M: Manager> {
    settings: Settings,
    /// The endpoints in discovery, replaced whole on every change so a
    /// checkout reads a consistent list with one lock and one count.
    live: RwLock<List<K, M>>,
    /// Removed endpoints whose members are not all closed yet.
    retired: Mutex<Vec<Arc<Endpoint<K, M>>>>,
    changed: Notify,
    turn: AtomicUsize,
    closed: AtomicBool,
    stop: CancellationToken,
}

impl<K: Key, M: Manager> Drop for Inner<K, M> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<K: Key, M: Manager> Inner<K, M> {
    fn snapshot(&self) -> List<K, M> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        let live = std::mem::replace(
            &mut *self.live.write().unwrap_or_else(PoisonError::into_inner),
            Arc::from(Vec::new()),
        );
        for endpoint in live.iter() {
            endpoint.pool.close();
        }
        self.changed.notify_waiters();
    }

    /// Applies one discovery change.
    fn apply<V>(self: &Arc<Self>, change: Change<K, V>, manager: &impl Fn(&V) -> M) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let name = &self.settings.name;
        let (key, added) = match change {
            Change::Insert(key, value) => {
                let mut config = self.settings.pool.clone();
                config.name = format!("{name}/{key}");
                match Pool::new(manager(&value), config) {
                    Ok(pool) => {
                        tracing::info!(pool = %name, endpoint = %key, "endpoint added");
                        let endpoint = Endpoint::new(key.clone(), pool, Arc::downgrade(self));
                        (key, Some(Arc::new(endpoint)))
                    }
                    Err(err) => {
                        tracing::error!(pool = %name, endpoint = %key, error = &err as &dyn std::error::Error, "endpoint not added: its pool could not be built");
                        return;
                    }
                }
            }
            Change::Remove(key) => (key, None),
        };
        let removed = {
            let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
            let (gone, mut kept): (Vec<_>, Vec<_>) =
                live.iter().cloned().partition(|e| e.key == key);
            kept.extend(added);
            *live = Arc::from(kept);
            gone
        };
        for endpoint in removed {
            tracing::info!(pool = %name, endpoint = %endpoint.key, reason = "removed", "endpoint draining");
            endpoint.removed.store(true, Ordering::Release);
            endpoint.pool.close();
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(endpoint);
        }
        self.changed.notify_waiters();
    }

    /// Reads every endpoint's pool counters; drops drained endpoints.
    fn observe(&self, now: Instant) {
        for endpoint in self.snapshot().iter() {
            endpoint.observe(self, now);
        }
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|e| e.pool.status().size > 0);
    }

    fn decide<'a>(
        &self,
        live: &'a [Arc<Endpoint<K, M>>],
        want: Want,
        tried: &[usize],
        desperate: bool,
        now: Instant,
    ) -> Decision<'a, K, M> {
        if live.is_empty() {
            return Decision::Empty;
        }
        if live.iter().all(|e| e.health().is_down(now)) {
            return Decision::AllDown;
        }
        // First choices (the wanted role, no server going away), then
        // servers going away, then, after a pause, endpoints last seen in
        // another role (roles change; the member check still guards).
        let tiers: &[(bool, bool)] = if desperate {
            &[(true, false), (true, true), (false, false), (false, true)]
        } else {
            &[(true, false), (true, true)]
        };
        let tiers = tiers.iter().copied().chain(
            (want == Want::PreferReplica)
                .then_some([(false, false), (false, true)])
                .into_iter()
                .flatten(),
        );
        for (preferred_only, going_away_ok) in tiers {
            let eligible = |e: &Arc<Endpoint<K, M>>| {
                if tried.contains(&(Arc::as_ptr(e) as usize)) {
                    return false;
                }
                if preferred_only && !want.prefers(e.role()) {
                    return false;
                }
                let health = e.health();
                !health.is_ejected(now) && (going_away_ok || !health.is_going_away(now))
            };
            let cost = |e: &Arc<Endpoint<K, M>>| e.load.cost(now);
            if let Some(endpoint) =
                choose::pick(self.settings.balance, live, eligible, cost, &self.turn)
            {
                return Decision::Try(endpoint);
            }
        }
        Decision::NoneLeft
    }

    async fn attempt(
        &self,
        endpoint: Arc<Endpoint<K, M>>,
        want: Want,
        deadline: Instant,
    ) -> Attempt<K, M> {
        let routed = Routed::new(endpoint);
        let endpoint = &routed.endpoint;
        // A checkout waiting on an endpoint that goes down meanwhile (its
        // connects failing, say) moves on at once rather than waiting out
        // the endpoint pool's own wait_timeout.
        let went_down = endpoint.went_down.notified();
        let result = tokio::select! {
            biased;
            result = tokio::time::timeout_at(deadline, endpoint.pool.get_owned()) => result,
            () = went_down => {
                let failure = endpoint.health().last.clone().unwrap_or(Failure::Use);
                return Attempt::Failed(endpoint.key.clone(), failure);
            }
        };
        match result {
            Err(_) => Attempt::OutOfTime,
            Ok(Err(crate::Error::Closed)) => Attempt::Skipped,
            Ok(Err(err)) => {
                let failure = Failure::Checkout(Arc::new(err));
                self.fail(endpoint, failure.clone(), 1, Instant::now());
                Attempt::Failed(endpoint.key.clone(), failure)
            }
            Ok(Ok(conn)) => {
                let role = endpoint.pool.manager().role(&conn);
                endpoint.set_role(role);
                if want.accepts(role) {
                    return Attempt::Got(Member::new(routed, conn, role));
                }
                tracing::debug!(
                    pool = %self.settings.name,
                    endpoint = %endpoint.key,
                    reason = "role_mismatch",
                    want = %want,
                    role = ?role,
                    "member not handed out; trying another endpoint"
                );
                Attempt::Mismatched
            }
        }
    }

    /// Counts failures against `endpoint`, ejecting it if the policy and
    /// the cap say so.
    fn fail(
        &self,
        endpoint: &Endpoint<K, M>,
        failure: Failure<M::Error>,
        count: u32,
        now: Instant,
    ) {
        let live = self.snapshot();
        let cap = self.settings.ejection.cap(live.len());
        let others_ejected = live
            .iter()
            .filter(|e| !std::ptr::eq(&***e, endpoint) && e.health().is_ejected(now))
            .count();
        let reason = failure.as_str();
        let down = endpoint
            .health()
            .fail(failure, count, &self.settings.ejection, now, || {
                others_ejected < cap
            });
        if let Some(length) = down {
            endpoint.went_down.notify_waiters();
            let ejected = endpoint.health().ejected;
            tracing::warn!(
                pool = %self.settings.name,
                endpoint = %endpoint.key,
                reason,
                ejected,
                down_ms = length.as_millis() as u64,
                "endpoint down"
            );
        }
    }

    /// Every endpoint with its latest failure.
    fn all_down(&self, live: &[Arc<Endpoint<K, M>>]) -> Error<K, M::Error> {
        Error::AllDown {
            endpoints: live
                .iter()
                .map(|e| (e.key.clone(), e.health().last.clone()))
                .collect(),
        }
    }
}

/// Pool counters as last read, to take differences from.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    probes: u64,
    probe_total: Duration,
    probes_ok: u64,
    probes_failed: u64,
    created: u64,
    connect_failures: u64,
    drained: u64,
}

/// One endpoint: its pool, load, health and last known role.
pub(crate) struct Endpoint<K: Key, M: Manager> {
    key: K,
    pool: Pool<M>,
    load: Load,
    health: Mutex<Health<M::Error>>,
    role: Mutex<Option<Role>>,
    seen: Mutex<Seen>,
    removed: AtomicBool,
    /// Wakes the checkouts waiting on this endpoint when it goes down.
    went_down: Notify,
    set: Weak<Inner<K, M>>,
}

impl<K: Key, M: Manager> Endpoint<K, M> {
    fn new(key: K, pool: Pool<M>, set: Weak<Inner<K, M>>) -> Self {
        Endpoint {
            key,
            pool,
            load: Load::new(Instant::now()),
            health: Mutex::new(Health::default()),
            role: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
            removed: AtomicBool::new(false),
            went_down: Notify::new(),
            set,
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health<M::Error>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn role(&self) -> Option<Role> {
        *self.role.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_role(&self, role: Option<Role>) {
        let mut known = self.role.lock().unwrap_or_else(PoisonError::into_inner);
        if *known != role {
            if let Some(set) = self.set.upgrade() {
                tracing::info!(pool = %set.settings.name, endpoint = %self.key, role = ?role, "endpoint role seen");
            }
            *known = role;
        }
    }

    fn succeed(&self) {
        if self.health().succeed() {
            if let Some(set) = self.set.upgrade() {
                tracing::info!(pool = %set.settings.name, endpoint = %self.key, "endpoint back in rotation");
            }
        }
    }

    fn going_away(&self, now: Instant) {
        if let Some(set) = self.set.upgrade() {
            self.health().going_away(set.settings.going_away_avoid, now);
        }
    }

    /// A member came back: feed the round trip and the health.
    fn returned(&self, condition: Condition, held: Duration, now: Instant) {
        match condition {
            Condition::Ready => {
                self.load.observe(held, now);
                self.succeed();
            }
            Condition::Draining => self.going_away(now),
            Condition::Dirty | Condition::Broken => {
                if let Some(set) = self.set.upgrade() {
                    set.fail(self, Failure::Use, 1, now);
                }
            }
        }
    }

    /// Differences of the pool's counters since the last look.
    fn observe(&self, set: &Inner<K, M>, now: Instant) {
        let counters = self.pool.status().counters;
        let now_seen = Seen {
            probes: counters.probe_rtt.count,
            probe_total: counters.probe_rtt.total,
            probes_ok: counters.probes_ok,
            probes_failed: counters.probes_failed,
            created: counters.created,
            connect_failures: counters.connect_failures,
            drained: counters.evicted.get(crate::EvictReason::Drained),
        };
        let before = std::mem::replace(
            &mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner),
            now_seen,
        );
        let probes = now_seen.probes.saturating_sub(before.probes);
        if probes > 0 {
            let total = now_seen.probe_total.saturating_sub(before.probe_total);
            self.load
                .observe(total / probes.min(u64::from(u32::MAX)) as u32, now);
        }
        let ok = now_seen.probes_ok.saturating_sub(before.probes_ok);
        let failed = now_seen.probes_failed.saturating_sub(before.probes_failed);
        let created = now_seen.created.saturating_sub(before.created);
        let connect_failed = now_seen
            .connect_failures
            .saturating_sub(before.connect_failures);
        if now_seen.drained > before.drained {
            self.going_away(now);
        } else if created > 0 && connect_failed == 0 {
            // New members and none drained: the server that went away has
            // been replaced (a server going away accepts no new
            // connections), so it need not be avoided any longer.
            self.health().back_from_going_away();
        }
        let count = |n: u64| n.min(u64::from(u32::MAX)) as u32;
        if failed > 0 && ok == 0 {
            set.fail(self, Failure::Heartbeats { failed }, count(failed), now);
        } else if connect_failed > 0 && created == 0 {
            set.fail(
                self,
                Failure::Connects {
                    failed: connect_failed,
                },
                count(connect_failed),
                now,
            );
        } else if (ok > 0 && failed == 0) || (created > 0 && connect_failed == 0) {
            self.succeed();
        }
    }

    fn status(&self, now: Instant) -> EndpointStatus<K, M::Error> {
        let health = self.health();
        EndpointStatus {
            key: self.key.clone(),
            pool: self.pool.status(),
            pending: self.load.pending(),
            rtt: self.load.rtt(now),
            role: self.role(),
            failures_in_row: health.in_row,
            down: health.is_down(now),
            ejected_for: health.ejected_for(now),
            going_away: health.is_going_away(now),
            removed: self.removed.load(Ordering::Acquire),
            last_failure: health.last.clone(),
        }
    }
}

/// The set's task: applies discovery changes and reads pool counters. It
/// holds the set weakly, so it ends with the set; no checkout waits on it
/// (ejections expire by the clock, read by the checkout itself).
async fn run<K, V, M, D, F>(
    set: Weak<Inner<K, M>>,
    mut discovery: Pin<Box<D>>,
    manager: F,
    stop: CancellationToken,
    mut ended: bool,
    every: Duration,
) where
    K: Key,
    M: Manager,
    D: Discover<Key = K, Service = V> + Send + 'static,
    D::Error: fmt::Display + Send,
    F: Fn(&V) -> M,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            change = poll_fn(|cx| discovery.as_mut().poll_discover(cx)), if !ended => {
                let failed = {
                    let Some(inner) = set.upgrade() else { return };
                    match change {
                        Some(Ok(change)) => {
                            inner.apply(change, &manager);
                            false
                        }
                        None => {
                            ended = true;
                            tracing::info!(pool = %inner.settings.name, "discovery ended; the endpoints known stay");
                            false
                        }
                        Some(Err(err)) => {
                            tracing::warn!(pool = %inner.settings.name, error = %err, "discovery failed");
                            true
                        }
                    }
                };
                if failed {
                    tokio::time::sleep(DISCOVERY_RETRY).await;
                }
            }
            _ = tick.tick() => {
                let Some(inner) = set.upgrade() else { return };
                inner.observe(Instant::now());
            }
        }
    }
}
