//! One member of the pool: its connection plus the timestamps that drive the
//! state machine of DESIGN.md.
//!
//! A `Member` value is owned by exactly one of: the idle set, one caller (inside
//! a `Pooled` guard or a checkout in progress), or the sentinel. It is moved,
//! never shared, so invariant 1 holds by construction; the pool's counters of
//! who holds how many are kept under the same lock as the moves.

/// A member lives in one heap allocation from connect to eviction, so that
/// every move between owners (idle set, caller, sentinel, waiter) copies a
/// pointer rather than the connection: a real client's connection is a few
/// hundred bytes, moved several times per checkout.
pub(crate) type Member<C> = Box<MemberData<C>>;

/// All times are coarse-clock milliseconds (see `clock.rs`).
pub(crate) struct MemberData<C> {
    pub(crate) conn: C,
    pub(crate) id: u64,
    /// When it connected: what a hook's `MemberInfo::age` measures.
    pub(crate) created_ms: u64,
    /// Times a caller returned it healthy (counted on return, next to
    /// `last_used_ms`, so checkout pays nothing for it).
    pub(crate) uses: u64,
    /// When the member retires (`max_lifetime` with jitter); `u64::MAX` if never.
    pub(crate) retire_at_ms: u64,
    /// Last time a caller returned it healthy: what `idle_timeout` measures.
    pub(crate) last_used_ms: u64,
    /// Last proof of life: a healthy return or a successful heartbeat. What
    /// `validate_after` and the heartbeat interval measure.
    pub(crate) last_ok_ms: u64,
    /// Spreads heartbeats: this member is probed this much before the interval
    /// is up, so a pool's members never probe in lockstep.
    pub(crate) probe_early_ms: u32,
    /// The sentinel epoch the member was made in (see `State::epoch`).
    pub(crate) epoch: u32,
    /// Consecutive failed heartbeats.
    pub(crate) failures: u32,
    /// The sentinel's cheap check found it dead (or draining) while idle;
    /// evicted on the same tick for this reason.
    pub(crate) doomed: Option<super::status::EvictReason>,
    /// Idle while the process itself stalled (see `stall.rs`): probed
    /// before it is handed out, whatever its age.
    pub(crate) distrusted: bool,
}

impl<C> MemberData<C> {
    pub(crate) fn idle_for(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_ok_ms)
    }
}
