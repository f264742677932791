//! The faults a [`FaultProxy`](super::FaultProxy) can inject.

use std::time::Duration;

/// What the proxy does to a connection's traffic. Each one mimics a failure a
/// pooled connection meets in production, so tests can check that the pool
/// notices it and how fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Forward both ways unchanged: a healthy network.
    #[default]
    Pass,
    /// Keep both sockets open and forward nothing, in either direction (not
    /// even a FIN); what is sent is read and thrown away, so writes do not
    /// block. Mimics a cut path, a vanished host or a hung peer: the kernel
    /// reports nothing and only a heartbeat or a timeout can tell.
    Blackhole,
    /// Send RST to the client (`SO_LINGER` 0, then close) and close upstream:
    /// a crashed server or a firewall that killed the flow. The client's next
    /// read fails with `ConnectionReset`.
    Reset,
    /// Send FIN to the client (a graceful close) and close upstream: a server
    /// that closed an idle connection. The client's next read returns EOF.
    Close,
    /// Forward everything, each chunk held until this long after it arrived
    /// at the proxy, in order. It applies in each direction, so a request and
    /// its reply take at least twice this. Mimics a slow network or an
    /// overloaded peer, e.g. to make heartbeats time out.
    Delay(Duration),
}

impl Fault {
    /// Whether this fault ends the connection rather than shaping its traffic.
    pub(crate) fn ends_connection(self) -> bool {
        matches!(self, Fault::Reset | Fault::Close)
    }
}
