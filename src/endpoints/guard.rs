//! The member a set hands out: a pool guard that also knows its endpoint,
//! so its return feeds the endpoint's load and health.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio::time::Instant;

use super::{Endpoint, Key};
use crate::{Condition, Manager, Pooled, PooledOwned, Role};

/// A checkout routed to an endpoint: counted as pending on it from the
/// moment it is routed (waiting included) until it ends, cancelled or not.
pub(crate) struct Routed<K: Key, M: Manager> {
    pub(crate) endpoint: Arc<Endpoint<K, M>>,
}

impl<K: Key, M: Manager> Routed<K, M> {
    pub(crate) fn new(endpoint: Arc<Endpoint<K, M>>) -> Self {
        endpoint.load.enter();
        Routed { endpoint }
    }
}

impl<K: Key, M: Manager> Drop for Routed<K, M> {
    fn drop(&mut self) {
        self.endpoint.load.leave();
    }
}

/// A connection borrowed from one endpoint of an
/// [`Endpoints`](super::Endpoints) set; derefs to the connection.
///
/// Dropping it returns the member to its endpoint's pool (which evicts it if
/// it is broken, dirty or draining) and tells the set how the use went: the
/// time it was held feeds the endpoint's round-trip estimate, a broken
/// return counts as a failure towards ejection. Its methods are associated
/// functions so they never shadow the connection's own.
pub struct Member<K: Key, M: Manager> {
    conn: Option<PooledOwned<M>>,
    routed: Routed<K, M>,
    role: Option<Role>,
    started: Instant,
    broken: bool,
}

impl<K: Key, M: Manager> Member<K, M> {
    pub(crate) fn new(routed: Routed<K, M>, conn: PooledOwned<M>, role: Option<Role>) -> Self {
        Member {
            conn: Some(conn),
            routed,
            role,
            started: Instant::now(),
            broken: false,
        }
    }

    /// The key of the endpoint it came from.
    pub fn endpoint(this: &Self) -> &K {
        &this.routed.endpoint.key
    }

    /// The role its server reported when it was handed out.
    pub fn role(this: &Self) -> Option<Role> {
        this.role
    }

    /// Evict instead of returning, and count a failure against the
    /// endpoint: use it after an error the manager cannot see.
    pub fn mark_broken(this: &mut Self) {
        this.broken = true;
    }

    fn pooled(&self) -> &PooledOwned<M> {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a Member holds its connection until drop"),
        }
    }
}

impl<K: Key, M: Manager> Deref for Member<K, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        self.pooled()
    }
}

impl<K: Key, M: Manager> DerefMut for Member<K, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a Member holds its connection until drop"),
        }
    }
}

impl<K: Key, M: Manager> fmt::Debug for Member<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("endpoint", &self.routed.endpoint.key)
            .field("id", &Pooled::id(self.pooled()))
            .field("role", &self.role)
            .finish()
    }
}

impl<K: Key, M: Manager> Drop for Member<K, M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if std::thread::panicking() {
            return; // the pool's guard evicts it as CallerPanicked
        }
        let endpoint = &self.routed.endpoint;
        let condition = if self.broken {
            Pooled::mark_broken(&mut conn);
            Condition::Broken
        } else {
            endpoint.pool.manager().condition_on_return(&mut conn)
        };
        drop(conn); // back to the pool, which judges it itself
        let now = Instant::now();
        endpoint.returned(condition, now.saturating_duration_since(self.started), now);
    }
}
