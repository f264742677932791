//! TLS for Redis (feature `redis-tls`): rustls over the socket the crate
//! opened itself.
//!
//! Why not the `redis` crate's own TLS connect: it opens its own socket, so
//! the crate's [`TcpOptions`](crate::tcp::TcpOptions) (keepalive,
//! `TCP_USER_TIMEOUT`) would not apply and the member's liveness would rest
//! on the heartbeat alone. Here the TCP connection comes from
//! [`crate::tcp::connect_host`], the handshake runs over it with
//! `tokio-rustls`, and the encrypted stream is handed to the multiplexer
//! like a plain one.
//!
//! The crypto provider is rustls's `ring`, named explicitly, so a process
//! that also compiles another provider never fails on an ambiguous
//! process-wide default.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How a [`RedisManager`](super::RedisManager) checks the server's
/// certificate: a rustls [`ClientConfig`] (root certificates, a client
/// certificate for mutual TLS, protocol versions), and optionally the name
/// to check the certificate against instead of the configured host.
///
/// ```no_run
/// use livepool::adapters::redis::{RedisManager, RedisTls};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A private CA: trust exactly the certificates in this file.
/// let manager = RedisManager::from_url("rediss://cache.internal:6380/0")?
///     .tls(RedisTls::from_ca_file("/etc/redis/ca.crt")?);
/// # drop(manager); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl RedisTls {
    /// Any rustls client configuration, e.g. with a client certificate
    /// (`with_client_auth_cert`) for a server started with
    /// `--tls-auth-clients yes`.
    pub fn from_client_config(config: Arc<ClientConfig>) -> Self {
        RedisTls {
            config,
            server_name: None,
        }
    }

    /// Trusts the CA certificates in PEM text (one or more
    /// `BEGIN CERTIFICATE` sections), and nothing else.
    ///
    /// ```
    /// use livepool::adapters::redis::{RedisTls, RedisTlsError};
    ///
    /// let err = RedisTls::from_ca_pem(b"not a certificate").unwrap_err();
    /// assert!(matches!(err, RedisTlsError::NoCertificates { .. }));
    /// ```
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, RedisTlsError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| RedisTlsError::Pem { path: None, source })?;
        Self::trusting(certs, None)
    }

    /// Trusts the CA certificates in the PEM file at `path`, and nothing
    /// else. The file is read here, once.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, RedisTlsError> {
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| RedisTlsError::Pem {
                path: Some(path.to_owned()),
                source,
            })?;
        Self::trusting(certs, Some(path))
    }

    /// Trusts the operating system's root certificates (read by
    /// `rustls-native-certs`: the system store, or `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`). This is what a `rediss://` URL uses when no
    /// [`RedisManager::tls`](super::RedisManager::tls) is given.
    pub fn native_roots() -> Result<Self, RedisTlsError> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(RedisTlsError::NoNativeRoots {
                errors: found.errors,
            });
        }
        // A system store holds certificates rustls cannot parse (old
        // formats, expired roots): those are skipped, as every client does.
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(RedisTlsError::NoNativeRoots {
                errors: found.errors,
            });
        }
        Ok(Self::from_client_config(client_config(roots)?))
    }

    /// Checks the certificate against `name` (and sends it as SNI) instead
    /// of the host the manager connects to: for a server reached by an IP
    /// address or through a tunnel whose certificate names its public name.
    pub fn server_name(mut self, name: &str) -> Result<Self, RedisTlsError> {
        let name =
            ServerName::try_from(name.to_owned()).map_err(|source| RedisTlsError::ServerName {
                name: name.to_owned(),
                source,
            })?;
        self.server_name = Some(name);
        Ok(self)
    }

    fn trusting(
        certs: Vec<CertificateDer<'static>>,
        path: Option<&Path>,
    ) -> Result<Self, RedisTlsError> {
        let path = path.map(Path::to_owned);
        if certs.is_empty() {
            return Err(RedisTlsError::NoCertificates { path });
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|source| RedisTlsError::Rejected {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Self::from_client_config(client_config(roots)?))
    }

    /// Runs the TLS handshake over `stream`, bounded by `timeout`, checking
    /// the certificate against the configured name or else `host`.
    pub(super) async fn handshake(
        &self,
        host: &str,
        stream: TcpStream,
        timeout: Duration,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    RedisTlsError::ServerName {
                        name: host.to_owned(),
                        source: e,
                    },
                )
            })?,
        };
        let connect = TlsConnector::from(self.config.clone()).connect(name, stream);
        match tokio::time::timeout(timeout, connect).await {
            Ok(result) => result,
            Err(_elapsed) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no TLS handshake within {timeout:?}"),
            )),
        }
    }

    /// The process's system roots, read at the first TLS connect that needs
    /// them and kept (a failure is not kept: the next connect reads again).
    pub(super) fn default_roots() -> Result<RedisTls, RedisTlsError> {
        static NATIVE: OnceLock<RedisTls> = OnceLock::new();
        if let Some(tls) = NATIVE.get() {
            return Ok(tls.clone());
        }
        let tls = RedisTls::native_roots()?;
        Ok(NATIVE.get_or_init(|| tls).clone())
    }
}

/// A client configuration with the `ring` provider and its safe default
/// protocol versions, trusting `roots`, without a client certificate.
fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, RedisTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RedisTlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// True when a failed handshake was refused by TLS itself (a certificate
/// that does not verify, a name it does not cover, an alert from the
/// server, a peer that does not speak TLS): the same configuration fails
/// the same way every time. A reset or a timeout is not.
pub(super) fn is_refusal(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>() || inner.is::<RedisTlsError>())
}

/// TLS settings that could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisTlsError {
    /// The PEM text or file could not be read or parsed.
    Pem {
        /// The file, if it came from one.
        path: Option<PathBuf>,
        /// What the PEM reader said.
        source: rustls::pki_types::pem::Error,
    },
    /// The PEM text or file holds no certificate.
    NoCertificates {
        /// The file, if it came from one.
        path: Option<PathBuf>,
    },
    /// A certificate could not be used as a trust anchor.
    Rejected {
        /// The file, if it came from one.
        path: Option<PathBuf>,
        /// What rustls said.
        source: rustls::Error,
    },
    /// No usable root certificate was found on this system.
    NoNativeRoots {
        /// What went wrong reading the system's stores, if anything did.
        errors: Vec<rustls_native_certs::Error>,
    },
    /// Not a DNS name or IP address a certificate can be checked against.
    ServerName {
        /// The name given.
        name: String,
        /// What rustls said.
        source: InvalidDnsNameError,
    },
    /// rustls refused the configuration.
    Config(rustls::Error),
}

impl fmt::Display for RedisTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = |path: &Option<PathBuf>| match path {
            Some(path) => format!(" in {}", path.display()),
            None => String::new(),
        };
        match self {
            RedisTlsError::Pem { path, .. } => {
                write!(f, "could not read the PEM certificates{}", from(path))
            }
            RedisTlsError::NoCertificates { path } => {
                write!(f, "no PEM certificate found{}", from(path))
            }
            RedisTlsError::Rejected { path, .. } => {
                write!(f, "a CA certificate{} is not usable", from(path))
            }
            RedisTlsError::NoNativeRoots { errors } => {
                f.write_str("no usable root certificate on this system")?;
                // Siblings, not a chain: written here, as the tcp layer
                // does for the addresses of one name.
                for (i, e) in errors.iter().enumerate() {
                    let sep = if i == 0 { " (" } else { "; " };
                    write!(f, "{sep}{e}")?;
                }
                if !errors.is_empty() {
                    f.write_str(")")?;
                }
                Ok(())
            }
            RedisTlsError::ServerName { name, .. } => {
                write!(
                    f,
                    "{name:?} is not a name a certificate can be checked against"
                )
            }
            RedisTlsError::Config(_) => f.write_str("rustls refused the TLS configuration"),
        }
    }
}

impl std::error::Error for RedisTlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisTlsError::Pem { source, .. } => Some(source),
            RedisTlsError::Rejected { source, .. } | RedisTlsError::Config(source) => Some(source),
            RedisTlsError::ServerName { source, .. } => Some(source),
            RedisTlsError::NoCertificates { .. } | RedisTlsError::NoNativeRoots { .. } => None,
        }
    }
}
