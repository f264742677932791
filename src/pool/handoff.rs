//! A one-shot handoff from the pool to one queued caller: the channel a
//! [`Grant`](super::idle::Grant) travels on.
//!
//! It does what `tokio::sync::oneshot` did here, on a mutex from the
//! `crate::loom` shim, so that under `--cfg livepool_loom` the model in
//! `tests/loom_handoff.rs` explores every interleaving of a send (under the
//! pool's lock) against a waiter being woken, polled, or cancelled (outside
//! it). The one thing it adds is [`Receiver::cancel`]: close and take what
//! was sent in the meantime in one step, so a cancelled waiter either gets
//! the grant back to pass on, or the sender sees the channel closed and
//! keeps it: never neither (a lost member or place: invariant 4) and never
//! both.
//!
//! Cost: one allocation per queued checkout, as before, and three
//! uncontended locks of the slot (the waiter's first poll, the send, the
//! poll that receives; the pool's lock already orders the sender side).
//! Neither end locks again when dropped after that: the slot's cache line
//! moves between the two workers as few times as tokio's oneshot's state.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::loom::sync::{Arc, Mutex, MutexGuard};

/// Makes a connected pair: the pool keeps the sender in its waiter queue,
/// the caller awaits the receiver.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        receiver_gone: false,
        sender_gone: false,
    }));
    (
        Sender {
            slot: Some(Arc::clone(&slot)),
        },
        Receiver { slot },
    )
}

struct Slot<T> {
    /// Sent and not yet received.
    value: Option<T>,
    /// The task to wake when a value is sent or the sender is dropped.
    waker: Option<Waker>,
    /// The receiver was closed or dropped: a send is refused.
    receiver_gone: bool,
    /// The sender was used or dropped: nothing more will come.
    sender_gone: bool,
}

/// Locks a slot. No code panics while holding it, so a poisoned lock still
/// holds consistent data: take it rather than panic.
fn lock<T>(slot: &Mutex<Slot<T>>) -> MutexGuard<'_, Slot<T>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pool's end: sends at most once.
pub(crate) struct Sender<T> {
    /// Taken by `send`, so that its drop does not lock the slot again.
    slot: Option<Arc<Mutex<Slot<T>>>>,
}

impl<T> Sender<T> {
    /// Hands `value` over, or gives it back if the receiver is gone (a
    /// cancelled checkout): the caller then offers it to the next waiter.
    pub(crate) fn send(mut self, value: T) -> Result<(), T> {
        let Some(slot) = self.slot.take() else {
            return Err(value);
        };
        let waker = {
            let mut slot = lock(&slot);
            if slot.receiver_gone {
                return Err(value);
            }
            slot.value = Some(value);
            slot.sender_gone = true;
            slot.waker.take()
        };
        // Woken outside the lock, so the woken task never waits on it.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the receiver is gone: a cancelled waiter still queued.
    pub(crate) fn is_closed(&self) -> bool {
        self.slot
            .as_ref()
            .is_none_or(|slot| lock(slot).receiver_gone)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // After a send there is nothing to tell: `send` took the slot.
        let Some(slot) = self.slot.take() else {
            return;
        };
        let waker = {
            let mut slot = lock(&slot);
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Returned by the receiver when the sender went without sending: the pool
/// closed (`close` drops the waiter queue).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Dropped;

/// The caller's end.
pub(crate) struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Receiver<T> {
    /// Closes the channel and takes whatever was sent before: a waiter
    /// giving up (cancelled, or timed out on its own timer) passes that on.
    /// One step under the slot's lock, so no send lands in between.
    pub(crate) fn cancel(self) -> Option<T> {
        let mut slot = lock(&self.slot);
        slot.receiver_gone = true;
        slot.waker = None;
        slot.value.take()
    }

    /// Takes a value sent already, without waiting.
    #[cfg(livepool_loom)]
    pub(crate) fn try_take(&self) -> Option<T> {
        lock(&self.slot).value.take()
    }

    /// Closes the channel without taking what it holds.
    #[cfg(livepool_loom)]
    pub(crate) fn close(&self) {
        lock(&self.slot).receiver_gone = true;
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Dropped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.slot);
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Ok(value));
        }
        if slot.sender_gone {
            return Poll::Ready(Err(Dropped));
        }
        match &mut slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // What was sent and never received is dropped with the slot; the
        // pool's `Waiting` guard cancels first, so for grants nothing is.
        // The sender's handle is gone (it sent, or was dropped): nobody
        // will read `receiver_gone`, so there is nothing to tell and no
        // lock to take. Its count is only ever lowered from elsewhere, so
        // a stale 2 just means taking the lock as before.
        if Arc::strong_count(&self.slot) == 1 {
            return;
        }
        let mut slot = lock(&self.slot);
        slot.receiver_gone = true;
        slot.waker = None;
    }
}
