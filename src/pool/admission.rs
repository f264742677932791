//! A new connection becomes a member: the one connect path (`calls.rs`),
//! then the `after_connect` hook, then admission. Checkouts, the background
//! refill and `Pool::ready` all come this way, so no member reaches the
//! idle set or a caller without its hook having passed.

use tokio::time::Instant;

use super::calls::Failure;
use super::hooks::{Hook, HookFailure};
use super::member::Member;
use super::shared::{Hold, Shared};
use super::slot::Held;
use super::status::EvictReason;
use crate::Manager;

/// Why no member came of a connect.
pub(crate) enum Refused<E> {
    /// The connect itself failed.
    Connect(Failure<E>),
    /// It connected, but `after_connect` failed; the connection was evicted.
    Hook(HookFailure),
}

impl<M: Manager> Shared<M> {
    /// Connects into a place already reserved (held as `Connecting`),
    /// admits the member and runs `after_connect`. The member comes back
    /// held as probing ([`vet`](super::idle::State::vet)), for the caller
    /// to lend or give back. A failure has freed the place, or evicted the
    /// member through `evict`; a cancelled future frees whatever it held.
    pub(crate) async fn connect_member(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Member<M::Connection>, Refused<M::Error>> {
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let hold = Hold::new(self, Held::Connecting, None);
        let conn = match self.connect(deadline).await {
            Ok(conn) => conn,
            Err(failure) => {
                drop(hold);
                return Err(Refused::Connect(failure));
            }
        };
        hold.disarm();
        let mut member = {
            let mut st = self.lock();
            let id = st.admit();
            st.vet();
            self.new_member(id, st.epoch, conn)
        };
        let Some(hook) = &self.hooks.after_connect else {
            #[cfg(feature = "metrics")]
            self.metrics.created(started.elapsed());
            return Ok(member);
        };
        let hold = Hold::new(
            self,
            Held::Probing,
            Some((EvictReason::HookFailed, member.id)),
        );
        let info = self.member_info(&member);
        let id = member.id;
        let result = self
            .run_hook(
                Hook::AfterConnect,
                id,
                hook(&mut member.conn, info),
                deadline,
            )
            .await;
        hold.disarm();
        match result {
            Ok(()) => {
                #[cfg(feature = "metrics")]
                self.metrics.created(started.elapsed());
                Ok(member)
            }
            Err(failure) => {
                self.evict(member, EvictReason::HookFailed, Held::Probing);
                Err(Refused::Hook(failure))
            }
        }
    }
}
