//! The sync types the pool's handoff is built on: loom's under
//! `--cfg livepool_loom`, std's otherwise, as tokio does for its own
//! primitives. (A cfg of our own, not `loom`: RUSTFLAGS reach every crate,
//! and tokio built with `cfg(loom)` leaves out `tokio::net`.) Code that goes
//! through this shim is what `tests/loom_handoff.rs` model-checks: loom can
//! only explore interleavings at operations on its own types, so the model
//! runs the real handoff (`pool::handoff`) rather than a copy of it.

#[cfg(livepool_loom)]
pub(crate) mod sync {
    pub(crate) use ::loom::sync::{Arc, Mutex, MutexGuard};
}

#[cfg(not(livepool_loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
}
