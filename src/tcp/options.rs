//! Socket options for pooled connections, chosen to work with the in-band heartbeat.
//!
//! A pooled connection can sit idle for hours. The kernel defaults are tuned for
//! a different world: Linux waits 7200 s before the first keepalive probe, then
//! sends 9 probes 75 s apart, so a dead peer is noticed after more than two
//! hours, and a write to a dead peer is retried for about 15 minutes. The
//! defaults here bring both down to well under a minute, as the kernel-level
//! backup of the pool's heartbeat (every ~15 s), which catches what the kernel
//! cannot: a peer process that is hung while its kernel still answers.

use std::fmt;
use std::time::Duration;

use socket2::{SockRef, Socket, TcpKeepalive};

/// Linux's upper bound for `TCP_KEEPIDLE` and `TCP_KEEPINTVL`, in seconds
/// (`MAX_TCP_KEEPIDLE`, `MAX_TCP_KEEPINTVL`).
const MAX_KEEPALIVE_SECS: u64 = 32_767;
/// Linux's upper bound for `TCP_KEEPCNT` (`MAX_TCP_KEEPCNT`).
const MAX_KEEPALIVE_RETRIES: u32 = 127;
/// `TCP_USER_TIMEOUT` is read by the kernel as a non-negative `int` of milliseconds.
const MAX_USER_TIMEOUT_MILLIS: u128 = i32::MAX as u128;

/// How the kernel probes an idle connection (`SO_KEEPALIVE` with
/// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`).
///
/// Keepalive finds a peer *host* that is gone (crashed, unplugged, a NAT or
/// firewall that forgot the flow) without any help from the process, and its
/// probes keep such middleboxes from forgetting the flow in the first place.
/// It cannot find a peer *process* that is hung, because the peer's kernel
/// still answers; that is the in-band heartbeat's job.
///
/// The default (30 s idle, then 3 probes 5 s apart) declares a silent peer
/// dead at most 45 s after its last sign of life, even with heartbeats turned
/// off (about 35 s alongside the default `TCP_USER_TIMEOUT`, see
/// [`TcpOptions::user_timeout`]). Linux's own default (7200 s, 9 × 75 s) takes over two hours. The kernel
/// counts these in whole seconds; fractions are rounded up.
///
/// ```
/// use std::time::Duration;
/// use livepool::tcp::Keepalive;
///
/// let keepalive = Keepalive::new(Duration::from_secs(60), Duration::from_secs(10), 3);
/// assert_eq!(keepalive.dead_peer_after(), Duration::from_secs(90));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How long the connection must be silent before the first probe (`TCP_KEEPIDLE`).
    pub idle: Duration,
    /// Time between unanswered probes (`TCP_KEEPINTVL`).
    pub interval: Duration,
    /// Unanswered probes before the kernel drops the connection (`TCP_KEEPCNT`).
    pub retries: u32,
}

impl Keepalive {
    /// A keepalive policy; checked when the options are applied.
    pub const fn new(idle: Duration, interval: Duration, retries: u32) -> Self {
        Keepalive {
            idle,
            interval,
            retries,
        }
    }

    /// The longest a silent dead peer can go unnoticed by keepalive alone:
    /// `idle + interval × retries`. Useful to check a policy against the
    /// heartbeat interval and an idle-timeout middlebox in the path.
    pub fn dead_peer_after(&self) -> Duration {
        self.idle
            .saturating_add(self.interval.saturating_mul(self.retries))
    }
}

impl Default for Keepalive {
    /// 30 s idle, then 3 probes 5 s apart: a dead peer is noticed in ~45 s,
    /// and a probe goes out well before common NAT and load-balancer idle
    /// timeouts (60 s and up) forget the flow.
    fn default() -> Self {
        Keepalive::new(Duration::from_secs(30), Duration::from_secs(5), 3)
    }
}

/// How [`connect`](crate::tcp::connect) builds a pooled TCP connection.
///
/// Every field defaults to a value that suits a long-lived pooled connection
/// guarded by a heartbeat every ~15 s; see each field for why.
///
/// ```
/// use std::time::Duration;
/// use livepool::tcp::{Keepalive, TcpOptions};
///
/// let opts = TcpOptions::default()
///     .with_keepalive(Keepalive::new(Duration::from_secs(20), Duration::from_secs(5), 2))
///     .with_user_timeout(Duration::from_secs(20))
///     .with_connect_timeout(Duration::from_secs(2));
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// `TCP_NODELAY`. Default `true`: pooled connections carry small
    /// request/response messages, and Nagle's algorithm would hold each one
    /// back waiting for the previous reply's ACK (up to 40 ms with delayed ACKs).
    pub nodelay: bool,
    /// Kernel keepalive. Default `Some(Keepalive::default())`, a dead peer is
    /// noticed in ~45 s; `None` leaves `SO_KEEPALIVE` off, so an idle
    /// connection to a vanished host is found only by the heartbeat.
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT`: how long written data may stay unacknowledged before
    /// the kernel drops the connection. Default `Some(30 s)`.
    ///
    /// Keepalive never fires while data is in flight, so without this a write
    /// to a dead peer is retransmitted for ~15 minutes (`tcp_retries2`) and a
    /// request (or a heartbeat) hangs until its own timeout. With it, the
    /// socket fails with `TimedOut` and the pool sees the error. When both are
    /// set, Linux also uses it to end keepalive probing early: an idle dead
    /// peer is then dropped at the first probe past this timeout (~35 s with
    /// the defaults). Linux only; ignored on other systems. Rounded up to
    /// whole milliseconds.
    pub user_timeout: Option<Duration>,
    /// Longest wait for the TCP handshake. Default 5 s: a server that is down
    /// usually refuses at once, but a host that is gone drops the SYN and the
    /// kernel would retry it for over two minutes.
    pub connect_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            keepalive: Some(Keepalive::default()),
            user_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl TcpOptions {
    /// Sets `TCP_NODELAY`.
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Turns kernel keepalive on with this policy.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = Some(keepalive);
        self
    }

    /// Leaves `SO_KEEPALIVE` off.
    pub fn without_keepalive(mut self) -> Self {
        self.keepalive = None;
        self
    }

    /// Sets `TCP_USER_TIMEOUT`.
    pub fn with_user_timeout(mut self, timeout: Duration) -> Self {
        self.user_timeout = Some(timeout);
        self
    }

    /// Leaves `TCP_USER_TIMEOUT` at the system default (about 15 minutes of
    /// retransmissions on Linux).
    pub fn without_user_timeout(mut self) -> Self {
        self.user_timeout = None;
        self
    }

    /// Sets the longest wait for the TCP handshake.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Checks every value against what the kernel accepts, so a bad setting is
    /// reported by name instead of as an `EINVAL` from `setsockopt`.
    /// [`connect`](crate::tcp::connect) and [`apply_options`] call it first.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if self.connect_timeout.is_zero() {
            return Err(InvalidOption::ConnectTimeout(self.connect_timeout));
        }
        if let Some(keepalive) = &self.keepalive {
            if !keepalive_secs_in_range(keepalive.idle) {
                return Err(InvalidOption::KeepaliveIdle(keepalive.idle));
            }
            if !keepalive_secs_in_range(keepalive.interval) {
                return Err(InvalidOption::KeepaliveInterval(keepalive.interval));
            }
            if !(1..=MAX_KEEPALIVE_RETRIES).contains(&keepalive.retries) {
                return Err(InvalidOption::KeepaliveRetries(keepalive.retries));
            }
        }
        if let Some(timeout) = self.user_timeout
            && !(1..=MAX_USER_TIMEOUT_MILLIS).contains(&millis_rounded_up(timeout))
        {
            return Err(InvalidOption::UserTimeout(timeout));
        }
        Ok(())
    }
}

/// A [`TcpOptions`] value the kernel would reject (or silently misread).
///
/// ```
/// use std::time::Duration;
/// use livepool::tcp::{InvalidOption, Keepalive, TcpOptions};
///
/// let opts = TcpOptions::default()
///     .with_keepalive(Keepalive::new(Duration::from_secs(30), Duration::from_secs(5), 0));
/// assert_eq!(opts.validate(), Err(InvalidOption::KeepaliveRetries(0)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidOption {
    /// `connect_timeout` was zero: no connect could ever succeed.
    ConnectTimeout(Duration),
    /// `keepalive.idle` was outside 1 s ..= 32767 s.
    KeepaliveIdle(Duration),
    /// `keepalive.interval` was outside 1 s ..= 32767 s.
    KeepaliveInterval(Duration),
    /// `keepalive.retries` was outside 1 ..= 127.
    KeepaliveRetries(u32),
    /// `user_timeout` was zero (which the kernel reads as "system default"; use
    /// `None` for that) or over `i32::MAX` milliseconds (~24.8 days).
    UserTimeout(Duration),
}

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidOption::ConnectTimeout(d) => {
                write!(f, "connect_timeout is {d:?}; it must be above zero")
            }
            InvalidOption::KeepaliveIdle(d) => write!(
                f,
                "keepalive idle time is {d:?}; it must be between 1s and {MAX_KEEPALIVE_SECS}s"
            ),
            InvalidOption::KeepaliveInterval(d) => write!(
                f,
                "keepalive interval is {d:?}; it must be between 1s and {MAX_KEEPALIVE_SECS}s"
            ),
            InvalidOption::KeepaliveRetries(n) => write!(
                f,
                "keepalive retries is {n}; it must be between 1 and {MAX_KEEPALIVE_RETRIES}"
            ),
            InvalidOption::UserTimeout(d) => write!(
                f,
                "TCP user timeout is {d:?}; it must be between 1ms and {MAX_USER_TIMEOUT_MILLIS}ms \
                 (use None for the system default)"
            ),
        }
    }
}

impl std::error::Error for InvalidOption {}

impl From<InvalidOption> for std::io::Error {
    fn from(invalid: InvalidOption) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, invalid)
    }
}

/// Applies `opts` to a connected socket made elsewhere, for example one a
/// client library opened itself, so that it gets the same keepalive and
/// user-timeout policy as one from [`connect`](crate::tcp::connect).
///
/// `connect_timeout` is only validated. An invalid option is reported as an
/// `InvalidInput` error whose inner error is the [`InvalidOption`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use livepool::tcp::{apply_options, TcpOptions};
///
/// let stream = tokio::net::TcpStream::connect("127.0.0.1:6379").await?;
/// apply_options(&stream, &TcpOptions::default())?;
/// # Ok(())
/// # }
/// ```
pub fn apply_options(stream: &tokio::net::TcpStream, opts: &TcpOptions) -> std::io::Result<()> {
    opts.validate()?;
    apply_validated(&SockRef::from(stream), opts)
}

/// Sets every socket option in `opts`, which must have passed [`TcpOptions::validate`].
pub(crate) fn apply_validated(socket: &Socket, opts: &TcpOptions) -> std::io::Result<()> {
    socket.set_tcp_nodelay(opts.nodelay)?;
    match &opts.keepalive {
        Some(keepalive) => socket.set_tcp_keepalive(&kernel_keepalive(keepalive))?,
        None => socket.set_keepalive(false)?,
    }
    set_user_timeout(socket, opts.user_timeout)
}

fn kernel_keepalive(keepalive: &Keepalive) -> TcpKeepalive {
    let params = TcpKeepalive::new().with_time(secs_rounded_up(keepalive.idle));
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "macos",
        target_os = "ios",
        target_os = "windows",
    ))]
    let params = params
        .with_interval(secs_rounded_up(keepalive.interval))
        .with_retries(keepalive.retries);
    params
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(socket: &Socket, timeout: Option<Duration>) -> std::io::Result<()> {
    let timeout = timeout.map(|t| Duration::from_millis(millis_rounded_up(t) as u64));
    socket.set_tcp_user_timeout(timeout)
}

/// `TCP_USER_TIMEOUT` does not exist here; the heartbeat timeout is the only
/// bound on a write to a dead peer.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_socket: &Socket, _timeout: Option<Duration>) -> std::io::Result<()> {
    Ok(())
}

fn keepalive_secs_in_range(d: Duration) -> bool {
    !d.is_zero() && secs_rounded_up(d).as_secs() <= MAX_KEEPALIVE_SECS
}

fn secs_rounded_up(d: Duration) -> Duration {
    let whole = d.as_secs();
    Duration::from_secs(if d.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    })
}

fn millis_rounded_up(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}
