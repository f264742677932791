//! Fuzz target: see `livepool::fuzzing::codec` for the input and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livepool::fuzzing::codec(data));
