//! Connecting: socket2 options, connect timeout, the tracked stream.
