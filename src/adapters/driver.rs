//! What the Redis and PostgreSQL connection wrappers share: the socket made
//! by [`crate::tcp`], the task that drives it and ends with the member, and
//! the bookkeeping that notices a command cut off half way.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Condition;
use crate::tcp::{self, ConnectError, TcpOptions};

/// Opens the member's socket to `host` (resolved now, every address tried
/// in turn) with livepool's options (keepalive, `TCP_USER_TIMEOUT`) and
/// notes its local address, by which tests and operators find the
/// connection in the server's own lists, and the server's address it
/// reached.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) async fn open_socket(
    host: &str,
    port: u16,
    opts: &TcpOptions,
) -> Result<(TcpStream, SocketAddr, SocketAddr), ConnectError> {
    let stream = tcp::connect_host(host, port, opts).await?;
    let ends = stream
        .peer_addr()
        .and_then(|peer| Ok((stream.local_addr()?, peer)));
    match ends {
        Ok((local_addr, peer)) => Ok((stream, local_addr, peer)),
        Err(source) => Err(ConnectError::Io {
            addr: stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port)),
            source,
        }),
    }
}

/// How long a client's driver may go on after its member is dropped, to
/// finish a clean goodbye (PostgreSQL's `Terminate`, flushing what is
/// queued). A dead or blackholed peer cannot hold it longer than this.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The spawned task that drives one client's socket (redis's multiplexer,
/// tokio-postgres's `Connection`). It ends with the member: when the
/// member is dropped the driver gets [`CLOSE_GRACE`] to close cleanly and
/// is then dropped, socket and all, so no task or server-side session
/// outlives its member.
#[derive(Debug)]
pub(crate) struct Driver {
    task: JoinHandle<()>,
    /// Dropped with the member; the task sees the channel close.
    _member: oneshot::Sender<()>,
}

impl Driver {
    /// Spawns `driver` on the current tokio runtime.
    pub(crate) fn spawn(driver: impl Future<Output = ()> + Send + 'static) -> Driver {
        let (member, member_gone) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut driver = std::pin::pin!(driver);
            tokio::select! {
                () = &mut driver => return,
                _ = member_gone => {}
            }
            let _ = tokio::time::timeout(CLOSE_GRACE, driver).await;
        });
        Driver {
            task,
            _member: member,
        }
    }

    /// True once the driver has stopped: the socket failed, the peer
    /// closed it, or the server ended the session. The client cannot
    /// send anything any more.
    pub(crate) fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits at most `bound` for the driver to end on its own (the client
    /// was dropped and the goodbye sent, or the peer closed), so a caller
    /// can tell when the server-side session is gone. Returns whether it
    /// ended; if not, dropping `self` gives it [`CLOSE_GRACE`] as usual.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) async fn stopped_within(mut self, bound: Duration) -> bool {
        tokio::time::timeout(bound, &mut self.task).await.is_ok()
    }
}

/// What a connection wrapper knows from its own commands: whether one is
/// running (if the member comes back while it is, the command was cut off
/// and the reply is still owed) and whether one failed in a way that
/// leaves the connection unusable.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the PostgreSQL adapter watches its wire instead
#[derive(Debug, Default)]
pub(crate) struct Usage {
    in_flight: bool,
    failed: bool,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the PostgreSQL adapter watches its wire instead
impl Usage {
    /// Runs one command, flagged as in flight until it finishes; an error
    /// that `is_fatal` calls fatal marks the connection broken.
    pub(crate) async fn track<T, E>(
        &mut self,
        command: impl Future<Output = Result<T, E>>,
        is_fatal: impl FnOnce(&E) -> bool,
    ) -> Result<T, E> {
        self.in_flight = true;
        let result = command.await;
        self.in_flight = false;
        if let Err(e) = &result {
            self.failed |= is_fatal(e);
        }
        result
    }

    /// The cheap check: `Broken` if the driver stopped or a command failed
    /// fatally, `Dirty` if a command was cut off, else `Ready`.
    pub(crate) fn condition(&self, driver: &Driver) -> Condition {
        if self.failed || driver.has_stopped() {
            Condition::Broken
        } else if self.in_flight {
            Condition::Dirty
        } else {
            Condition::Ready
        }
    }
}
