//! What runs between the TCP connect and the HTTP/2 handshake: nothing for
//! plaintext HTTP/2 ([`Plaintext`]), a TLS handshake offering ALPN `h2` for
//! `https` servers, or any other wrapper a deployment needs.
//!
//! The manager opens the socket itself (so keepalive and
//! `TCP_USER_TIMEOUT` are set before the first byte) and hands it to
//! [`Transport::wrap`]; the whole connect, wrap included, is bounded by the
//! pool's `connect_timeout`.

use std::convert::Infallible;
use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Wraps a connected TCP stream before the HTTP/2 handshake.
///
/// A TLS transport (tokio-rustls, tokio-native-tls) connects with the
/// server name `host` and must offer ALPN `h2`; it should call a refused
/// certificate [permanent](Transport::is_permanent), so a checkout fails at
/// once instead of retrying for all of `wait_timeout`.
///
/// ```
/// use livepool::adapters::http2::Transport;
/// use tokio::net::TcpStream;
///
/// /// Plaintext, but only to hosts on an allow list.
/// struct AllowList(Vec<String>);
///
/// #[derive(Debug)]
/// struct NotAllowed(String);
/// impl std::fmt::Display for NotAllowed {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "{} is not on the allow list", self.0)
///     }
/// }
/// impl std::error::Error for NotAllowed {}
///
/// impl Transport for AllowList {
///     type Io = TcpStream;
///     type Error = NotAllowed;
///
///     async fn wrap(&self, tcp: TcpStream, host: &str) -> Result<TcpStream, NotAllowed> {
///         if self.0.iter().any(|h| h == host) {
///             Ok(tcp)
///         } else {
///             Err(NotAllowed(host.to_owned()))
///         }
///     }
///
///     fn is_permanent(&self, _: &NotAllowed) -> bool {
///         true
///     }
/// }
///
/// let manager = livepool::adapters::http2::Http2Manager::new("10.0.0.7", 8443)
///     .transport(AllowList(vec!["10.0.0.7".into()]));
/// # drop(manager);
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The stream the HTTP/2 connection runs on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Why wrapping failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Wraps `tcp`, connected to `host` (as the manager was given it: the
    /// name to verify a certificate against).
    fn wrap(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> impl Future<Output = Result<Self::Io, Self::Error>> + Send;

    /// Whether `error` will recur however often the pool retries (a
    /// certificate the server's name does not match, an untrusted CA). The
    /// default treats every error as transient.
    fn is_permanent(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}

/// Plaintext HTTP/2 with prior knowledge (`h2c`): the TCP stream as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plaintext;

impl Transport for Plaintext {
    type Io = TcpStream;
    type Error = Infallible;

    async fn wrap(&self, tcp: TcpStream, _host: &str) -> Result<TcpStream, Infallible> {
        Ok(tcp)
    }
}
