//! The bodies of the fuzz targets, shared by `fuzz/` (cargo-fuzz, libFuzzer)
//! and `tests/fuzz_regressions.rs` (the same functions over a seed corpus and
//! deterministic pseudo-random inputs on the stable toolchain, so CI runs
//! them without cargo-fuzz).
//!
//! Each target takes any byte string and panics on a finding: a panic of the
//! code under test, or a disagreement with [`model`], an independent reading
//! of the wire format. Not part of the crate's API.

mod client;
mod codec;
mod input;
pub mod model;
mod pooled;
mod runtime;
mod server;

pub use client::client;
pub use codec::codec;
pub use input::Input;
pub use pooled::pooled;
