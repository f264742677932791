//! Hooks: the caller's own async code at three points of a member's life,
//! each bounded by `hook_timeout`, each failure typed and never handed out.
//!
//! * `after_connect` runs on every new member before it is admitted (a
//!   checkout's connect, the background refill, `Pool::ready`): `SET
//!   search_path`, `SELECT` a Redis database, prepare statements. A failure
//!   closes the connection and counts as a failed connect: the checkout backs
//!   off and tries again within its `wait_timeout`.
//! * `before_acquire` runs on a member taken from the pool (idle, or handed
//!   over by a caller returning it), after the cheap check and any probe,
//!   before the caller gets it. It may refuse the member: evicted, and the
//!   checkout takes the next. It does not run on a member just connected
//!   (`after_connect` did), as in sqlx.
//! * `after_release` runs on a member a caller returned healthy, before it
//!   goes back: it may refuse (evicted), to roll back a transaction left
//!   open, say. The guard's `Drop` cannot await, so the member goes back
//!   through a short spawned task, counted as `returning` and never handed
//!   out meanwhile. With no `after_release` hook the return path is the
//!   same as ever.
//!
//! Why boxed closures on the [`Builder`](super::Builder) rather than a
//! `Hooks` trait: a hook is usually one line that captures some setting
//! (`search_path`), and the clients users already know (sqlx's
//! `PoolOptions::after_connect`) take closures of exactly this shape; a
//! trait would need a type, an impl and boxed futures for the same line. The
//! first hook names the connection type (`|conn: &mut MyConn, meta|`),
//! after which the builder knows it and `build` accepts only a manager of
//! that type: a mismatch does not compile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::calls::{Failure, bounded};
use super::member::Member;
use super::shared::Shared;
use super::status::EvictReason;
use crate::Manager;

/// What a hook returns on failure: any error, boxed. `?` on any
/// `std::error::Error` converts into it.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future a hook closure returns: `Box::pin(async move { ... })`.
pub type HookFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, HookError>> + Send + 'c>>;

/// Which hook ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hook {
    /// On every new member, before it is admitted.
    AfterConnect,
    /// On a member taken from the pool, before a caller gets it.
    BeforeAcquire,
    /// On a member a caller returned, before it goes back.
    AfterRelease,
}

impl Hook {
    /// The builder method's name, for log fields and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::AfterConnect => "after_connect",
            Hook::BeforeAcquire => "before_acquire",
            Hook::AfterRelease => "after_release",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a hook failed. The member it ran on is evicted.
#[derive(Debug)]
#[non_exhaustive]
pub enum HookFailure {
    /// The hook returned an error (its `source()` is reached through
    /// [`Cause::Hook`](super::Cause::Hook)).
    Error(HookError),
    /// It did not finish within `hook_timeout` (the value given).
    TimedOut(Duration),
    /// It panicked; contained.
    Panicked,
}

/// What `before_acquire` and `after_release` decide about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it out (`before_acquire`) or put it back (`after_release`).
    Keep,
    /// Evict it, counted as `hook_refused`; a checkout takes the next.
    Refuse,
}

/// What a hook knows of the member it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The member's id, as in tracing events and [`Pooled::id`](super::Pooled::id).
    pub id: u64,
    /// Time since it connected.
    pub age: Duration,
    /// Time since a caller last returned it (since it connected, if never
    /// used); zero in `after_release`.
    pub idle_for: Duration,
    /// How many times a caller returned it healthy (counting this return,
    /// in `after_release`).
    pub uses: u64,
}

type Connected<C> = dyn for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, ()> + Send + Sync;
type Judge<C> = dyn for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync;

/// The hooks a builder was given, for connections of type `C`. Made by the
/// builder's `after_connect`, `before_acquire` and `after_release`.
pub struct Hooks<C> {
    pub(crate) after_connect: Option<Arc<Connected<C>>>,
    pub(crate) before_acquire: Option<Arc<Judge<C>>>,
    pub(crate) after_release: Option<Arc<Judge<C>>>,
}

/// A builder with no hook yet, which builds a pool of any manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl<C> Hooks<C> {
    pub(crate) fn none() -> Self {
        Hooks {
            after_connect: None,
            before_acquire: None,
            after_release: None,
        }
    }

    pub(crate) fn set_after_connect<F>(&mut self, hook: F)
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, ()> + Send + Sync + 'static,
    {
        self.after_connect = Some(Arc::new(hook));
    }

    pub(crate) fn set_before_acquire<F>(&mut self, hook: F)
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync + 'static,
    {
        self.before_acquire = Some(Arc::new(hook));
    }

    pub(crate) fn set_after_release<F>(&mut self, hook: F)
    where
        F: for<'c> Fn(&'c mut C, MemberInfo) -> HookFuture<'c, Verdict> + Send + Sync + 'static,
    {
        self.after_release = Some(Arc::new(hook));
    }
}

impl<C> Clone for Hooks<C> {
    fn clone(&self) -> Self {
        Hooks {
            after_connect: self.after_connect.clone(),
            before_acquire: self.before_acquire.clone(),
            after_release: self.after_release.clone(),
        }
    }
}

impl<C> fmt::Debug for Hooks<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("after_connect", &self.after_connect.is_some())
            .field("before_acquire", &self.before_acquire.is_some())
            .field("after_release", &self.after_release.is_some())
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoHooks {}
    impl<C> Sealed for super::Hooks<C> {}
}

/// The hooks a builder holds, fitting connections of type `C`: none (any
/// manager), or hooks written for `C`. Implemented by the crate only.
pub trait HooksFor<C>: sealed::Sealed {
    #[doc(hidden)]
    fn into_hooks(self) -> Hooks<C>;
}

impl<C> HooksFor<C> for NoHooks {
    fn into_hooks(self) -> Hooks<C> {
        Hooks::none()
    }
}

impl<C> HooksFor<C> for Hooks<C> {
    fn into_hooks(self) -> Hooks<C> {
        self
    }
}

/// Default bound on one run of a hook.
pub(crate) const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);

impl<M: Manager> Shared<M> {
    /// What a hook is told about `member`. Reads the clock: a hook awaits
    /// anyway, and a stale coarse clock would make a member look younger.
    pub(crate) fn member_info(&self, member: &Member<M::Connection>) -> MemberInfo {
        let now = self.clock.refresh();
        MemberInfo {
            id: member.id,
            age: Duration::from_millis(now.saturating_sub(member.created_ms)),
            idle_for: Duration::from_millis(now.saturating_sub(member.last_used_ms)),
            uses: member.uses,
        }
    }

    /// Runs one hook, bounded by `hook_timeout` and the caller's deadline,
    /// a panic contained. A failure is logged here, once, with the member.
    pub(crate) async fn run_hook<T>(
        &self,
        hook: Hook,
        member: u64,
        work: HookFuture<'_, T>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<T, HookFailure> {
        let limit = self.hook_timeout;
        let failure = match bounded(limit, deadline, work).await {
            Ok(value) => return Ok(value),
            Err(Failure::Error(e) | Failure::Permanent(e) | Failure::Drained(e)) => {
                HookFailure::Error(e)
            }
            Err(Failure::TimedOut(_) | Failure::DeadlinePassed) => HookFailure::TimedOut(limit),
            Err(Failure::Panicked) => HookFailure::Panicked,
        };
        let (pool, reason) = (&self.config.name, EvictReason::HookFailed.as_str());
        match &failure {
            HookFailure::Error(e) => {
                tracing::warn!(pool = %pool, member, reason, hook = hook.as_str(), error = &**e as &dyn std::error::Error, "hook failed")
            }
            HookFailure::TimedOut(limit) => {
                tracing::warn!(pool = %pool, member, reason, hook = hook.as_str(), timeout = ?limit, "hook timed out")
            }
            HookFailure::Panicked => {
                tracing::error!(pool = %pool, member, reason, hook = hook.as_str(), "hook panicked")
            }
        }
        Err(failure)
    }
}
