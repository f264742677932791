//! Reading a `tokio_postgres::Config` the way libpq would: which servers to
//! try in which order, and which socket options the client asked for.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, LoadBalanceHosts};

use crate::tcp::{InvalidOption, Keepalive, TcpOptions};

/// PostgreSQL's port when a config names none.
pub const DEFAULT_PORT: u16 = 5432;

/// The most hosts one manager tries per connect: bounded work.
const MAX_HOSTS: usize = 16;

/// One server a connect may try, from the config's `host`, `hostaddr` and
/// `port` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The name to resolve (at every connect) and to check the TLS
    /// certificate against; for a bare `hostaddr`, the IP as text.
    pub(crate) host: String,
    /// libpq's `hostaddr`: connect here without resolving `host`.
    pub(crate) addr: Option<IpAddr>,
    pub(crate) port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(addr) if addr.to_string() != self.host => {
                write!(f, "{} ({addr}) port {}", self.host, self.port)
            }
            _ => write!(f, "{} port {}", self.host, self.port),
        }
    }
}

/// The servers `config` names, in the order to try them (shuffled when it
/// says `load_balance_hosts=random`).
pub(crate) fn targets(config: &Config) -> Result<Vec<Target>, PgConfigError> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let count = hosts.len().max(hostaddrs.len());
    if count == 0 {
        return Err(PgConfigError::NoHost);
    }
    if count > MAX_HOSTS {
        return Err(PgConfigError::TooManyHosts { count });
    }
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(PgConfigError::HostaddrCount {
            hosts: hosts.len(),
            hostaddrs: hostaddrs.len(),
        });
    }
    let ports = config.get_ports();
    if ports.len() > 1 && ports.len() != count {
        return Err(PgConfigError::PortCount {
            hosts: count,
            ports: ports.len(),
        });
    }
    let mut targets = Vec::with_capacity(count);
    for i in 0..count {
        let addr = hostaddrs.get(i).copied();
        let host = match (hosts.get(i), addr) {
            (Some(Host::Tcp(name)), _) => name.clone(),
            #[cfg(unix)]
            (Some(Host::Unix(path)), _) => {
                return Err(PgConfigError::UnixSocket { path: path.clone() });
            }
            (None, Some(addr)) => addr.to_string(),
            (None, None) => unreachable!("count is the longer list's length"),
        };
        let port = match ports {
            [] => DEFAULT_PORT,
            [one] => *one,
            many => many[i],
        };
        targets.push(Target { host, addr, port });
    }
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        fastrand::shuffle(&mut targets);
    }
    Ok(targets)
}

/// tokio-postgres's own keepalive idle default; a config holding it is
/// taken as not having set it (the two cannot be told apart).
const CLIENT_DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// Merges the client's socket settings into `base` by one rule: a value the
/// client set explicitly wins, anything else stays as in `base`.
///
/// "Explicitly" means differing from `Config::new()`: `keepalives=0` turns
/// keepalive off; `keepalives_idle` other than tokio-postgres's 2 h default,
/// `keepalives_interval` and `keepalives_retries` replace those parts of
/// the keepalive policy (turning it on with the crate's default for the
/// parts not set, if `base` had it off); `tcp_user_timeout` replaces the
/// user timeout (`0` means the system default, as in libpq);
/// `connect_timeout` above zero replaces the connect timeout (`0`, libpq's
/// "wait forever", is not offered: the crate's bound stays).
pub(crate) fn merge_tcp_options(
    config: &Config,
    base: TcpOptions,
) -> Result<TcpOptions, PgConfigError> {
    let tcp = merge_unchecked(config, base);
    tcp.validate().map_err(PgConfigError::TcpOptions)?;
    Ok(tcp)
}

/// [`merge_tcp_options`] without the range check: where a bad value is
/// left for `connect` to report by name.
pub(crate) fn merge_unchecked(config: &Config, base: TcpOptions) -> TcpOptions {
    let mut tcp = base;
    if let Some(&timeout) = config.get_connect_timeout()
        && !timeout.is_zero()
    {
        tcp.connect_timeout = timeout;
    }
    if let Some(&timeout) = config.get_tcp_user_timeout() {
        tcp.user_timeout = (!timeout.is_zero()).then_some(timeout);
    }
    if !config.get_keepalives() {
        tcp.keepalive = None;
    } else {
        let idle =
            Some(config.get_keepalives_idle()).filter(|&d| d != CLIENT_DEFAULT_KEEPALIVE_IDLE);
        let interval = config.get_keepalives_interval();
        let retries = config.get_keepalives_retries();
        if idle.is_some() || interval.is_some() || retries.is_some() {
            let mut keepalive = tcp.keepalive.unwrap_or_default();
            keepalive = Keepalive::new(
                idle.unwrap_or(keepalive.idle),
                interval.unwrap_or(keepalive.interval),
                retries.unwrap_or(keepalive.retries),
            );
            tcp.keepalive = Some(keepalive);
        }
    }
    tcp
}

/// A `tokio_postgres::Config` (or connection string) this crate cannot
/// connect with.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgConfigError {
    /// The connection string did not parse.
    Parse(tokio_postgres::Error),
    /// The config names no `host` and no `hostaddr`.
    NoHost,
    /// More hosts than one connect will try (16).
    TooManyHosts {
        /// How many the config names.
        count: usize,
    },
    /// A Unix-domain socket directory: this crate's pooled sockets are TCP
    /// (keepalive and `TCP_USER_TIMEOUT` are what it adds), so it refuses
    /// one rather than silently connecting without them.
    UnixSocket {
        /// The directory the config names.
        path: std::path::PathBuf,
    },
    /// `port` lists neither one port nor one per host.
    PortCount {
        /// How many hosts.
        hosts: usize,
        /// How many ports.
        ports: usize,
    },
    /// `hostaddr` lists neither none nor one per host.
    HostaddrCount {
        /// How many hosts.
        hosts: usize,
        /// How many hostaddrs.
        hostaddrs: usize,
    },
    /// The config's socket settings, merged with the crate's, are out of
    /// the kernel's range.
    TcpOptions(InvalidOption),
}

impl fmt::Display for PgConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgConfigError::Parse(_) => f.write_str("invalid PostgreSQL connection string"),
            PgConfigError::NoHost => {
                f.write_str("the PostgreSQL config names no host (set host or hostaddr)")
            }
            PgConfigError::TooManyHosts { count } => write!(
                f,
                "the PostgreSQL config names {count} hosts; at most {MAX_HOSTS} are tried"
            ),
            PgConfigError::UnixSocket { path } => write!(
                f,
                "host {} is a Unix-domain socket directory; livepool's PostgreSQL manager \
                 connects over TCP only (use host=localhost)",
                path.display()
            ),
            PgConfigError::PortCount { hosts, ports } => write!(
                f,
                "the PostgreSQL config names {hosts} hosts and {ports} ports; \
                 give one port, or one per host"
            ),
            PgConfigError::HostaddrCount { hosts, hostaddrs } => write!(
                f,
                "the PostgreSQL config names {hosts} hosts and {hostaddrs} hostaddrs; \
                 give none, or one per host"
            ),
            PgConfigError::TcpOptions(_) => {
                f.write_str("the PostgreSQL config's socket settings are out of range")
            }
        }
    }
}

impl std::error::Error for PgConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgConfigError::Parse(e) => Some(e),
            PgConfigError::TcpOptions(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_ports_and_hostaddrs_pair_up_in_order() {
        let two = targets(&parse("host=db1,db2 port=5433,5434")).unwrap();
        let ports: Vec<_> = two.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(ports, [("db1", 5433), ("db2", 5434)]);
        let one = targets(&parse("host=a,b port=6000")).unwrap();
        assert!(one.iter().all(|t| t.port == 6000));
        let bare = targets(&parse("hostaddr=127.0.0.1")).unwrap();
        assert_eq!(bare[0].host, "127.0.0.1");
        assert_eq!(bare[0].port, DEFAULT_PORT);
        assert!(matches!(
            targets(&parse("host=a,b,c port=1,2")),
            Err(PgConfigError::PortCount { hosts: 3, ports: 2 })
        ));
        assert!(matches!(
            targets(&Config::new()),
            Err(PgConfigError::NoHost)
        ));
        assert!(matches!(
            targets(&parse("host=/var/run/postgresql")),
            Err(PgConfigError::UnixSocket { .. })
        ));
    }

    #[test]
    fn the_clients_explicit_settings_win_and_the_rest_stay_the_crates() {
        let base = TcpOptions::default();
        let untouched = merge_tcp_options(&parse("host=a"), base.clone()).unwrap();
        assert_eq!(untouched, base, "nothing set: the crate's defaults");

        let set = parse(
            "host=a keepalives_idle=61 keepalives_interval=7 keepalives_retries=4 \
             tcp_user_timeout=9 connect_timeout=3",
        );
        let merged = merge_tcp_options(&set, base.clone()).unwrap();
        assert_eq!(
            merged.keepalive,
            Some(Keepalive::new(
                Duration::from_secs(61),
                Duration::from_secs(7),
                4
            ))
        );
        assert_eq!(merged.user_timeout, Some(Duration::from_secs(9)));
        assert_eq!(merged.connect_timeout, Duration::from_secs(3));
        assert_eq!(merged.nodelay, base.nodelay);

        let partial =
            merge_tcp_options(&parse("host=a keepalives_interval=2"), base.clone()).unwrap();
        let default = Keepalive::default();
        assert_eq!(
            partial.keepalive,
            Some(Keepalive::new(
                default.idle,
                Duration::from_secs(2),
                default.retries
            ))
        );

        let mut off = parse("host=a keepalives=0");
        off.tcp_user_timeout(Duration::ZERO);
        let off = merge_tcp_options(&off, base).unwrap();
        assert_eq!(off.keepalive, None);
        assert_eq!(off.user_timeout, None);

        let out_of_range = merge_tcp_options(
            &parse("host=a keepalives_retries=1000"),
            TcpOptions::default(),
        );
        assert!(matches!(
            out_of_range,
            Err(PgConfigError::TcpOptions(InvalidOption::KeepaliveRetries(
                1000
            )))
        ));
    }
}
