//! The fault-injecting TCP proxy used by tests, examples and benches.
