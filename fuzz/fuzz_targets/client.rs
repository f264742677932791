//! Fuzz target: see `livepool::fuzzing::client` for the input and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livepool::fuzzing::client(data));
