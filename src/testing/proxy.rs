//! The proxy's public handle and its accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::fault::Fault;
use super::forward::serve;
use super::registry::{Admission, Registry};
use super::sockets::close_with_reset;

/// How long the accept loop rests after a failed accept (e.g. out of file
/// descriptors), so it does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Longest [`FaultProxy::shutdown`] waits for its tasks before aborting them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// An in-process TCP proxy between a client (the pool) and one upstream
/// server, that injects a [`Fault`] into all connections or into one.
///
/// Every client connection gets its own upstream connection and its own task;
/// all tasks end when the proxy is shut down or dropped, so no connection
/// outlives the test that made it.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::time::Duration;
/// use livepool::testing::{Fault, FaultProxy};
///
/// let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await?;
/// let _client = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// tokio::time::sleep(Duration::from_millis(50)).await; // let the proxy accept it
/// let first = proxy.connections()[0].id;
/// proxy.fault_connection(first, Fault::Reset); // only this one dies
/// proxy.set_refusing(true); // and the "server" is down for new ones
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    registry: Arc<Registry>,
    stop: CancellationToken,
    accept_task: Option<JoinHandle<()>>,
}

/// One live connection through a [`FaultProxy`], as listed by
/// [`FaultProxy::connections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyConnection {
    /// Assigned in accept order, starting at 0; pass it to
    /// [`FaultProxy::fault_connection`].
    pub id: u64,
    /// The client's end: the local address of the pool's socket, so a test
    /// can tell which pooled connection this is.
    pub client_addr: SocketAddr,
    /// The fault in force on this connection now.
    pub fault: Fault,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`, listening on 127.0.0.1 on a free port
    /// (see [`addr`](Self::addr)), forwarding with [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let stop = CancellationToken::new();
        let accept_task = tokio::spawn(accept_loop(
            listener,
            upstream,
            Arc::clone(&registry),
            stop.clone(),
        ));
        Ok(FaultProxy {
            addr,
            upstream,
            registry,
            stop,
            accept_task: Some(accept_task),
        })
    }

    /// Where clients should connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server this proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Applies `fault` to every live connection at once, and to every
    /// connection accepted from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.registry.set_fault(fault);
    }

    /// The fault new connections start with (the last [`set_fault`](Self::set_fault)).
    pub fn fault(&self) -> Fault {
        self.registry.default_fault()
    }

    /// Applies `fault` to the live connection `id` only, at once. Returns
    /// `false` if no such connection is live (never was, or already ended).
    pub fn fault_connection(&self, id: u64, fault: Fault) -> bool {
        self.registry.fault_connection(id, fault)
    }

    /// The live connections, in accept order. A connection leaves the list
    /// when either side closes it or a [`Fault::Reset`] / [`Fault::Close`]
    /// ends it.
    pub fn connections(&self) -> Vec<ProxyConnection> {
        self.registry.connections()
    }

    /// While `true`, mimics a server that is down: each new connection is
    /// accepted and at once reset (RST), so the client's connect may succeed
    /// but its first read or write fails with `ConnectionReset` (or the
    /// connect itself fails, if the RST wins the race). Live connections are
    /// untouched. Refused connections count in [`refused`](Self::refused),
    /// not in [`accepted`](Self::accepted).
    pub fn set_refusing(&self, refuse: bool) {
        self.registry.set_refusing(refuse);
    }

    /// How many connections were accepted and proxied so far.
    pub fn accepted(&self) -> u64 {
        self.registry.accepted()
    }

    /// How many connections were reset at once because the proxy was refusing.
    pub fn refused(&self) -> u64 {
        self.registry.refused()
    }

    /// Stops listening and ends every connection, waiting (at most 5 s) until
    /// all the proxy's tasks have finished. Clients see EOF or a reset.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.accept_task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_WAIT, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Dropping the proxy ends its tasks too; they are aborted rather than
/// awaited, so the sockets close moments later, on the runtime's next turn.
impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
    }
}

/// Accepts clients until stopped. The connection tasks live in a `JoinSet`
/// owned by this task, so they end with it however it ends.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, client_addr)) => match registry.admit(client_addr) {
                    Admission::Refuse => close_with_reset(client),
                    Admission::Admit(registration, fault) => {
                        connections.spawn(serve(client, upstream, fault, registration));
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "fault proxy: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
    connections.shutdown().await;
}
