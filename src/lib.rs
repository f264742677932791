//! # livepool
//!
//! An async pool of long-lived connections for tokio that hands out only live
//! connections.
//!
//! (Crate docs are filled in as the layers land; see README.md.)

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapters;
pub mod manager;
pub mod pool;
pub mod protocol;
pub mod tcp;
#[cfg(feature = "testing")]
pub mod testing;

pub use manager::{Condition, Manager};
pub use pool::{
    BuildError, Builder, Cause, Config, Counters, Error, EvictReason, Evictions, IdleOrder, Phase,
    Pool, Pooled, ProbeRtt, Status,
};
