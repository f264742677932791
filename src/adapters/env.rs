//! Server addresses from the environment, so tests, examples and small
//! programs can be pointed at another server without a code change.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};

/// Reads a server address from the environment variable `var`, or returns
/// `default` when it is unset, so tests, examples and small programs can
/// be pointed at another server without a code change.
///
/// ```
/// use livepool::adapters::addr_from_env;
///
/// let addr = addr_from_env("MY_APP_CACHE_ADDR", "127.0.0.1:6379".parse().unwrap())?;
/// assert_eq!(addr.port(), 6379);
/// # Ok::<(), livepool::adapters::EnvAddrError>(())
/// ```
pub fn addr_from_env(var: &'static str, default: SocketAddr) -> Result<SocketAddr, EnvAddrError> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(raw)) => Err(EnvAddrError {
            var,
            value: raw.to_string_lossy().into_owned(),
            source: None,
        }),
        Ok(value) => value.trim().parse().map_err(|source| EnvAddrError {
            var,
            value,
            source: Some(source),
        }),
    }
}

/// An address variable that is set but is not an `IP:port` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAddrError {
    var: &'static str,
    value: String,
    source: Option<AddrParseError>,
}

impl EnvAddrError {
    /// The variable that held the bad value.
    pub fn var(&self) -> &'static str {
        self.var
    }
}

impl fmt::Display for EnvAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {:?} is not an IP:port address (e.g. 127.0.0.1:6379; host names are not resolved)",
            self.var, self.value
        )
    }
}

impl std::error::Error for EnvAddrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
