//! The return path of a pool with an `after_release` hook. A guard's `Drop`
//! cannot await, so the member goes back through a short spawned task that
//! runs the hook; meanwhile it is held by the return (`Status::returning`),
//! so no caller can have it, and `drain` waits for it like for a borrowed
//! one. A pool without the hook never comes here.

use super::hooks::{Hook, Verdict};
use super::idle::End;
use super::member::Member;
use super::shared::{Hold, Shared};
use super::slot::Held;
use super::status::EvictReason;
use crate::Manager;

/// Starts the return of a healthy member (held by its caller) through
/// `after_release`. Outside a runtime (a guard dropped after its runtime
/// shut down) the hook cannot run, and a member whose hook did not say
/// yes is never reused: it is evicted.
pub(crate) fn after_release<M: Manager>(shared: &Shared<M>, member: Member<M::Connection>) {
    let (Ok(runtime), Some(owned)) = (tokio::runtime::Handle::try_current(), shared.handle())
    else {
        tracing::warn!(pool = %shared.config.name, member = member.id, reason = EvictReason::HookFailed.as_str(), "no tokio runtime to run the after_release hook on; the member is closed");
        shared.evict(member, EvictReason::HookFailed, Held::Caller);
        return;
    };
    {
        let mut st = shared.lock();
        if st.closed {
            // Evicted on return anyway: no hook to run.
            drop(st);
            shared.put_back(member, Held::Caller, End::Hot);
            return;
        }
        st.begin_return();
    }
    runtime.spawn(async move {
        let shared = &*owned;
        let mut member = member;
        let Some(hook) = &shared.hooks.after_release else {
            shared.put_back(member, Held::Returning, End::Hot);
            return;
        };
        let id = member.id;
        let hold = Hold::new(shared, Held::Returning, Some((EvictReason::HookFailed, id)));
        let info = shared.member_info(&member);
        let result = shared
            .run_hook(Hook::AfterRelease, id, hook(&mut member.conn, info), None)
            .await;
        hold.disarm();
        match result {
            Ok(Verdict::Keep) => shared.put_back(member, Held::Returning, End::Hot),
            Ok(Verdict::Refuse) => shared.evict(member, EvictReason::HookRefused, Held::Returning),
            Err(_) => shared.evict(member, EvictReason::HookFailed, Held::Returning),
        }
    });
}
