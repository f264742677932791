//! The borrowed-connection guard. Dropping it is the return path: the cheap
//! check decides between reuse and eviction (invariant 5).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::idle::End;
use super::member::Member;
use super::shared::Shared;
use super::slot::Held;
use super::status::EvictReason;
use crate::{Condition, Manager};

/// A connection borrowed from a [`Pool`](super::Pool); derefs to the connection.
///
/// Dropping it returns the member, unless the caller [marked it
/// broken](Pooled::mark_broken), the manager's cheap check says it is broken or
/// dirty (a request was cut off half way, unread bytes wait), the caller is
/// panicking, or it is past `max_lifetime`: then it is evicted and its place
/// freed. Its methods are associated functions (`Pooled::detach(conn)`) so they
/// never shadow the connection's own.
///
/// ```
/// # use livepool::{Condition, Manager, Pool, Pooled};
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = Vec<u8>;
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> std::io::Result<Vec<u8>> { Ok(Vec::new()) }
/// #     async fn heartbeat(&self, _: &mut Vec<u8>) -> std::io::Result<()> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder().max_size(2).build(M)?;
/// let mut conn = pool.get().await?;
/// conn.push(1); // Deref to the connection
/// if conn.len() > 100 {
///     // Something went wrong mid-request: never hand this one out again.
///     Pooled::mark_broken(&mut conn);
/// }
/// drop(conn); // back to the pool
/// # Ok(()) }
/// ```
pub struct Pooled<'a, M: Manager> {
    pub(super) shared: Home<'a, M>,
    pub(super) member: Option<Member<M::Connection>>,
    pub(super) broken: bool,
    /// When the checkout handed it out, for the use time (`metrics`
    /// feature); set by `Shared::lent` with the clock read that ends
    /// the wait time.
    #[cfg(feature = "metrics")]
    pub(super) lent_at: Option<tokio::time::Instant>,
    /// Its entry in the pool's loans, when leak detection is on.
    pub(crate) loan: Option<super::leak::LoanKey>,
}

/// Where a guard returns its member: a borrow of the pool (`get`), which costs
/// nothing, or a shared handle (`get_owned`), for a guard that must outlive
/// the borrow (moved into a spawned task), at the price of a reference count
/// on a cache line every checkout touches.
pub(crate) enum Home<'a, M: Manager> {
    Borrowed(&'a Shared<M>),
    Owned(Arc<Shared<M>>),
}

impl<M: Manager> Deref for Home<'_, M> {
    type Target = Shared<M>;

    #[inline]
    fn deref(&self) -> &Shared<M> {
        match self {
            Home::Borrowed(shared) => shared,
            Home::Owned(shared) => shared,
        }
    }
}

/// A borrowed connection that owns its way home: what
/// [`Pool::get_owned`](super::Pool::get_owned) returns, for moving into a
/// spawned task or storing in a struct.
pub type PooledOwned<M> = Pooled<'static, M>;

impl<'a, M: Manager> Pooled<'a, M> {
    /// Reports the round trip of a request made on this connection, for
    /// the adaptive heartbeat timeout (see
    /// [`Config::adaptive_heartbeat_floor`](super::Config::adaptive_heartbeat_floor)):
    /// a busy member's requests tell the pool what the endpoint's round
    /// trips are now, before any idle member's heartbeat does. Costs a
    /// short lock; does nothing when adaptation is off.
    ///
    /// ```
    /// # use livepool::{Manager, Pool, Pooled};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn heartbeat(&self, _: &mut ()) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::{Duration, Instant};
    ///
    /// let pool = Pool::builder()
    ///     .heartbeat_timeout(Duration::from_secs(2)) // the ceiling
    ///     .adaptive_heartbeat_timeout(Duration::from_millis(20)) // the floor
    ///     .build(M)?;
    /// let conn = pool.get().await?;
    /// let sent = Instant::now();
    /// // ... a request and its reply on `conn` ...
    /// Pooled::record_round_trip(&conn, sent.elapsed());
    /// # Ok(()) }
    /// ```
    pub fn record_round_trip(this: &Self, rtt: std::time::Duration) {
        let adaptive = &this.shared.adaptive;
        if adaptive.is_on() {
            let now = tokio::time::Instant::now();
            adaptive.record(now.checked_sub(rtt).unwrap_or(now), rtt);
        }
    }

    /// Evict instead of returning: use it after an error that leaves the
    /// connection in an unknown state the manager cannot see.
    pub fn mark_broken(this: &mut Self) {
        this.broken = true;
    }

    /// Takes the connection out of the pool for good. Its place is freed at
    /// once for other callers.
    pub fn detach(mut this: Self) -> M::Connection {
        if let Some(loan) = this.loan.take() {
            this.shared.leaks.end(loan);
        }
        let member = this.take_member();
        super::shared::log_eviction(&this.shared.config.name, member.id, EvictReason::Detached);
        let mut st = this.shared.lock();
        this.shared
            .evicted(&mut st, Held::Caller, EvictReason::Detached, false);
        drop(st);
        member.conn
    }

    /// The member's id, as it appears in tracing events.
    pub fn id(this: &Self) -> u64 {
        this.member().id
    }

    fn member(&self) -> &Member<M::Connection> {
        match &self.member {
            Some(member) => member,
            None => unreachable!("a Pooled guard holds its member until drop or detach"),
        }
    }

    fn take_member(&mut self) -> Member<M::Connection> {
        match self.member.take() {
            Some(member) => member,
            None => unreachable!("a Pooled guard holds its member until drop or detach"),
        }
    }
}

impl<M: Manager> Deref for Pooled<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.member().conn
    }
}

impl<M: Manager> DerefMut for Pooled<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        match &mut self.member {
            Some(member) => &mut member.conn,
            None => unreachable!("a Pooled guard holds its member until drop or detach"),
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<'_, M>
where
    M::Connection: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("id", &self.member().id)
            .field("conn", &self.member().conn)
            .finish()
    }
}

impl<M: Manager> Drop for Pooled<'_, M> {
    fn drop(&mut self) {
        let Some(mut member) = self.member.take() else {
            return;
        };
        let shared = &*self.shared;
        #[cfg(feature = "metrics")]
        if let Some(lent_at) = self.lent_at {
            shared.metrics.used(lent_at.elapsed());
        }
        if !shared.plain_return {
            return self.return_with_extras(member);
        }
        let verdict = self.verdict(&mut member.conn);
        let now = shared.clock.now_ms();
        match verdict.or(retired(&member, now)) {
            Some(reason) => shared.evict(member, reason, Held::Caller),
            None => {
                member.last_used_ms = now;
                member.last_ok_ms = now;
                member.uses = member.uses.wrapping_add(1);
                shared.put_back(member, Held::Caller, End::Hot);
            }
        }
    }
}

impl<M: Manager> Pooled<'_, M> {
    /// Why the member may not go back: marked broken, its caller
    /// panicked, or the manager's cheap check on return.
    #[inline(always)]
    fn verdict(&self, conn: &mut M::Connection) -> Option<EvictReason> {
        if self.broken {
            Some(EvictReason::BrokenOnReturn)
        } else if std::thread::panicking() {
            Some(EvictReason::CallerPanicked)
        } else {
            match self.shared.check_on_return(conn) {
                Condition::Ready => None,
                Condition::Dirty => Some(EvictReason::Dirty),
                Condition::Broken => Some(EvictReason::BrokenOnReturn),
                Condition::Draining => Some(EvictReason::Drained),
            }
        }
    }

    /// The return of a pool with any of the optional steps (see
    /// `Shared::plain_return`): the loan crossed off, the round trip
    /// learned, `last_ok` only where a use proves life, `after_release`.
    #[inline(never)]
    fn return_with_extras(&mut self, mut member: Member<M::Connection>) {
        let shared = &*self.shared;
        if let Some(loan) = self.loan.take() {
            shared.leaks.end(loan);
        }
        let verdict = self.verdict(&mut member.conn);
        if verdict.is_none() && shared.adaptive.is_on() {
            shared.learn_round_trip(&mut member.conn);
        }
        let now = shared.clock.now_ms();
        match verdict.or(retired(&member, now)) {
            Some(reason) => shared.evict(member, reason, Held::Caller),
            None => {
                member.last_used_ms = now;
                if shared.use_proves_alive {
                    member.last_ok_ms = now;
                }
                member.uses = member.uses.wrapping_add(1);
                if shared.hooks.after_release.is_some() {
                    super::returning::after_release(shared, member);
                } else {
                    shared.put_back(member, Held::Caller, End::Hot);
                }
            }
        }
    }
}

/// Past its `max_lifetime`: retired on return.
#[inline(always)]
fn retired<C>(member: &Member<C>, now_ms: u64) -> Option<EvictReason> {
    (now_ms >= member.retire_at_ms).then_some(EvictReason::MaxLifetime)
}
