//! PostgreSQL over TLS with rustls: the pool's own socket (keepalive,
//! `TCP_USER_TIMEOUT`) under `tokio-postgres-rustls`, the server's
//! certificate checked against the host name.
//!
//! ```text
//! cargo run --example postgres_tls --features postgres
//! LIVEPOOL_PG_CA_FILE=/etc/ssl/certs/ssl-cert-snakeoil.pem \
//!   cargo run --example postgres_tls --features postgres
//! ```
//!
//! The server is named by LIVEPOOL_PG_CONFIG (default
//! `host=localhost port=5432 user=postgres dbname=test sslmode=require`).
//! The certificates trusted are the PEM file LIVEPOOL_PG_CA_FILE (a private
//! CA, or a self-signed server certificate such as Debian's snakeoil one),
//! or else the system's roots. `sslmode=require` refuses a server without
//! TLS; `prefer` would fall back to plain text.

use std::sync::Arc;

use livepool::Pool;
use livepool::adapters::postgres::PgManager;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

const CONFIG_VAR: &str = "LIVEPOOL_PG_CONFIG";
const CA_VAR: &str = "LIVEPOOL_PG_CA_FILE";
const DEFAULT_CONFIG: &str = "host=localhost port=5432 user=postgres dbname=test sslmode=require";

/// The certificates to trust: the file named by [`CA_VAR`], or the
/// system's root store.
fn roots() -> Result<rustls::RootCertStore, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match std::env::var_os(CA_VAR) {
        Some(path) => CertificateDer::pem_file_iter(&path)?.collect::<Result<_, _>>()?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _unparsable) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("no usable certificate (set {CA_VAR} to a PEM file)").into());
    }
    Ok(roots)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The provider named, not the process default: nothing to panic on
    // when another crate in the build enables a second provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots()?)
        .with_no_client_auth();

    let conn_str = std::env::var(CONFIG_VAR).unwrap_or_else(|_| DEFAULT_CONFIG.to_owned());
    let manager = PgManager::from_conn_str(&conn_str)?
        .application_name("livepool-tls-example")
        .tls(MakeRustlsConnect::new(tls));
    let pool = Pool::builder()
        .name("example-postgres-tls")
        .max_size(2)
        .build(manager)?;

    let conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message += &format!(": {c}");
                cause = c.source();
            }
            return Err(format!(
                "{message}\n(a PostgreSQL with ssl=on for {conn_str:?}; {CA_VAR} names the CA to trust)"
            )
            .into());
        }
    };
    let row = conn
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    let (ssl, version): (bool, Option<String>) = (row.get(0), row.get(1));
    println!(
        "connected to {}: TLS {} ({})",
        conn.server_addr(),
        if ssl { "on" } else { "off" },
        version.as_deref().unwrap_or("no TLS version")
    );
    Ok(())
}
