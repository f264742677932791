//! Where a [`RedisManager`](super::RedisManager) connects: a host (a name or
//! an IP literal) and a port, read from a URL or a `redis::ConnectionInfo`,
//! and whether the connection is TLS.
//!
//! Why the manager keeps the name rather than an address: the name is
//! resolved again at every connect (through [`crate::tcp::connect_host`]),
//! so a DNS change reaches the next member, and every address it resolves
//! to is tried in turn.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ::redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The server of a manager, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Server {
    /// A host name, or an IP literal (IPv6 without brackets).
    pub(super) host: String,
    pub(super) port: u16,
    /// Set when `host` is an IP literal: nothing to resolve.
    pub(super) addr: Option<SocketAddr>,
    /// `rediss://` (or `ConnectionAddr::TcpTls`).
    pub(super) tls: bool,
}

impl Server {
    pub(super) fn from_addr(addr: SocketAddr) -> Self {
        Server {
            host: addr.ip().to_string(),
            port: addr.port(),
            addr: Some(addr),
            tls: false,
        }
    }

    fn from_host(host: String, port: u16, tls: bool) -> Self {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = bare
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Server {
            host: match addr {
                Some(addr) => addr.ip().to_string(),
                None => host,
            },
            port,
            addr,
            tls,
        }
    }
}

/// Reads what the manager needs from anything the `redis` crate accepts as
/// connection info (a URL string, a [`ConnectionInfo`], a `(host, port)`
/// pair).
pub(super) fn parse(
    info: impl IntoConnectionInfo,
) -> Result<(Server, RedisConnectionInfo), RedisConfigError> {
    let info: ConnectionInfo = info
        .into_connection_info()
        .map_err(RedisConfigError::Invalid)?;
    let server = match info.addr() {
        ConnectionAddr::Tcp(host, port) => Server::from_host(host.clone(), *port, false),
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        } => {
            if !cfg!(feature = "redis-tls") {
                return Err(RedisConfigError::TlsNotEnabled);
            }
            if *insecure {
                return Err(RedisConfigError::InsecureTls);
            }
            if tls_params.is_some() {
                return Err(RedisConfigError::TlsParams);
            }
            Server::from_host(host.clone(), *port, true)
        }
        ConnectionAddr::Unix(path) => return Err(RedisConfigError::UnixSocket(path.clone())),
        // The enum is non-exhaustive: a kind of address added later.
        _ => return Err(RedisConfigError::UnsupportedAddress),
    };
    if server.host.is_empty() {
        return Err(RedisConfigError::NoHost);
    }
    Ok((server, info.redis_settings().clone()))
}

/// A Redis URL or connection info the manager cannot use.
///
/// ```
/// # #[cfg(feature = "redis")] {
/// use livepool::adapters::redis::{RedisConfigError, RedisManager};
///
/// let err = RedisManager::from_url("redis+unix:///run/redis.sock").unwrap_err();
/// assert!(matches!(err, RedisConfigError::UnixSocket(_)));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The `redis` crate could not read it (not a Redis URL, a bad
    /// database number, an unknown `protocol`).
    Invalid(::redis::RedisError),
    /// It names a Unix socket: this manager connects over TCP only (its
    /// liveness rests on the socket's keepalive and user timeout).
    UnixSocket(PathBuf),
    /// It names no host.
    NoHost,
    /// A kind of address this manager does not know.
    UnsupportedAddress,
    /// `rediss://`, but livepool was built without its `redis-tls` feature.
    TlsNotEnabled,
    /// `rediss://...#insecure`: certificate checks off. Refused; to trust a
    /// private CA, give it with `RedisManager::tls`.
    InsecureTls,
    /// The connection info carries the `redis` crate's own TLS parameters
    /// (from `Client::build_with_tls`), which cannot be read from outside
    /// that crate: give the CA and client certificate with
    /// `RedisManager::tls` instead, so none is silently dropped.
    TlsParams,
}

impl fmt::Display for RedisConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisConfigError::Invalid(_) => f.write_str("not a usable Redis connection URL or info"),
            RedisConfigError::UnixSocket(path) => write!(
                f,
                "Redis at the Unix socket {} is not supported (TCP only)",
                path.display()
            ),
            RedisConfigError::NoHost => f.write_str("the Redis connection info names no host"),
            RedisConfigError::UnsupportedAddress => {
                f.write_str("the Redis connection info names a kind of address not supported")
            }
            RedisConfigError::TlsNotEnabled => f.write_str(
                "a TLS Redis URL (rediss://) needs livepool's `redis-tls` feature",
            ),
            RedisConfigError::InsecureTls => f.write_str(
                "rediss://...#insecure (no certificate check) is refused; give the CA with RedisManager::tls",
            ),
            RedisConfigError::TlsParams => f.write_str(
                "the connection info's own TLS parameters cannot be read; give them with RedisManager::tls",
            ),
        }
    }
}

impl std::error::Error for RedisConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisConfigError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_host_port_database_and_credentials() {
        let (server, info) = parse("redis://user:p%40ss@localhost:6380/2").unwrap();
        assert_eq!(server.host, "localhost");
        assert_eq!(server.port, 6380);
        assert_eq!(server.addr, None);
        assert!(!server.tls);
        assert_eq!(info.db(), 2);
        assert_eq!(info.username(), Some("user"));
        assert_eq!(info.password(), Some("p@ss"));
    }

    #[test]
    fn an_ip_literal_needs_no_lookup() {
        let (server, _) = parse("redis://[::1]:6379/").unwrap();
        assert_eq!(server.host, "::1");
        assert_eq!(server.addr, Some("[::1]:6379".parse().unwrap()));
        let (server, info) = parse("redis://127.0.0.1").unwrap();
        assert_eq!(server.addr, Some("127.0.0.1:6379".parse().unwrap()));
        assert_eq!(info.db(), 0);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        assert!(matches!(
            parse("redis+unix:///tmp/r.sock"),
            Err(RedisConfigError::UnixSocket(_))
        ));
        assert!(matches!(
            parse("http://localhost"),
            Err(RedisConfigError::Invalid(_))
        ));
        assert!(matches!(
            parse("redis://localhost/notanumber"),
            Err(RedisConfigError::Invalid(_))
        ));
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn rediss_is_tls_and_insecure_is_refused() {
        let (server, _) = parse("rediss://cache.internal:6380/1").unwrap();
        assert!(server.tls);
        assert!(matches!(
            parse("rediss://cache.internal#insecure"),
            Err(RedisConfigError::InsecureTls)
        ));
    }

    #[cfg(not(feature = "redis-tls"))]
    #[test]
    fn rediss_without_the_feature_is_refused() {
        assert!(parse("rediss://cache.internal:6380/1").is_err());
    }
}
