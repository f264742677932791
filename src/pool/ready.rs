//! `Pool::ready`: wait until `min_idle` members (at least one) are
//! connected, so a service can refuse to start against a dead backend.
//!
//! It connects on its own, through the same path as checkouts and the
//! refill (connect, `after_connect`, admission), rather than watching the
//! background refill: that way it holds each failure itself, returns the
//! first permanent one at once, and depends on no background task.

use std::time::Duration;

use tokio::time::Instant;

use super::admission::Refused;
use super::calls::Failure;
use super::checkout::connect_cause;
use super::error::{Cause, Error};
use super::hooks::Hook;
use super::idle::End;
use super::shared::Shared;
use super::slot::Held;
use super::time::{doubled, jittered, later};
use crate::Manager;

const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

impl<M: Manager> Shared<M> {
    pub(crate) async fn ready(&self, timeout: Duration) -> Result<(), Error<M::Error>> {
        // A pool built outside a runtime may meet one here first: its
        // members' create times count too.
        #[cfg(feature = "metrics")]
        self.metrics
            .register(&self.config.name, self.config.min_idle);
        let wanted = self.config.min_idle.max(1);
        let deadline = later(Instant::now(), timeout);
        let mut cause: Option<Cause<M::Error>> = None;
        let mut backoff = RETRY_FIRST;
        loop {
            let (connected, reserved) = {
                let mut st = self.lock();
                if st.closed {
                    return Err(Error::Closed);
                }
                let connected = st.connected();
                let reserved = connected < wanted && st.reserve();
                (connected, reserved)
            };
            if connected >= wanted {
                return Ok(());
            }
            let not_ready = |cause: Option<Cause<M::Error>>| Error::NotReady {
                connected,
                wanted,
                waited: timeout,
                cause: cause.map(Box::new),
            };
            if reserved {
                match self.connect_member(Some(deadline)).await {
                    Ok(member) => {
                        self.put_back(member, Held::Probing, End::Hot);
                        backoff = RETRY_FIRST;
                        continue;
                    }
                    Err(Refused::Connect(Failure::Permanent(e))) => {
                        return Err(Error::Permanent(e));
                    }
                    Err(Refused::Connect(Failure::DeadlinePassed)) => {
                        return Err(not_ready(cause));
                    }
                    Err(Refused::Connect(failure)) => {
                        cause = Some(connect_cause(failure, self.config.connect_timeout));
                    }
                    Err(Refused::Hook(failure)) => {
                        cause = Some(Cause::Hook {
                            hook: Hook::AfterConnect,
                            failure: Some(failure),
                        });
                    }
                }
            }
            // After a failure, or while the pool is full of connects in
            // flight (the refill's): wait a little, then count again.
            let resume = later(Instant::now(), jittered(backoff)).min(deadline);
            backoff = doubled(backoff).min(RETRY_MAX);
            tokio::time::sleep_until(resume).await;
            if resume >= deadline {
                let connected = self.lock().connected();
                if connected >= wanted {
                    return Ok(());
                }
                return Err(Error::NotReady {
                    connected,
                    wanted,
                    waited: timeout,
                    cause: cause.map(Box::new),
                });
            }
        }
    }
}
