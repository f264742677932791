//! Borrow Redis connections from a livepool pool, then watch the pool evict
//! members whose network path goes silent and replace them once it is back.
//!
//! ```text
//! cargo run --example redis --features redis
//! ```
//!
//! The server is the Redis URL in LIVEPOOL_REDIS_URL (default
//! `redis://localhost:6379/0`; `rediss://` with `--features redis-tls`, the
//! certificate checked against the system's roots or SSL_CERT_FILE).
//! The host name is resolved at every connect. For the second part the pool
//! reaches the server through livepool's fault proxy, so the example can cut
//! the path.

use std::time::Duration;

use livepool::adapters::redis::RedisManager;
use livepool::testing::{Fault, FaultProxy};
use livepool::{Manager, Pool, Pooled};
use redis::AsyncCommands;

/// The environment variable holding the server's URL.
const URL_VAR: &str = "LIVEPOOL_REDIS_URL";
const DEFAULT_URL: &str = "redis://localhost:6379/0";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let direct = RedisManager::from_url(&url)?.client_name("livepool-example");
    if let Err(e) = direct.connect().await {
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message += &format!(": {c}");
            cause = c.source();
        }
        return Err(format!("{message}\n(start Redis for {url} or set {URL_VAR})").into());
    }

    // The quick start: a pool from the URL, and the guard used as any
    // redis connection.
    let pool = Pool::builder()
        .name("example-redis")
        .max_size(4)
        .build(direct.clone())?;
    let mut conn = pool.get().await?;
    let _: () = conn.set_ex("livepool:example", "hello", 60).await?;
    let value: String = redis::cmd("GET")
        .arg("livepool:example")
        .query_async(&mut conn)
        .await?;
    println!(
        "{url}: member {} ran SET and GET: {value:?}",
        Pooled::id(&conn)
    );
    drop(conn);
    drop(pool);

    // The same server behind a fault proxy, same database and credentials.
    let server = tokio::net::lookup_host((direct.host(), direct.port()))
        .await?
        .next()
        .ok_or("the host resolved to no address")?;
    let proxy = FaultProxy::start(server).await?;
    println!(
        "Redis at {server}, reached through a fault proxy at {}",
        proxy.addr()
    );

    let manager = RedisManager::new(proxy.addr())
        .connection_info(direct.redis_settings().clone())
        .client_name("livepool-example");
    // A rediss:// server: TLS through the proxy too, the certificate
    // checked against the URL's host name (the system's roots, as for the
    // URL itself; SSL_CERT_FILE names others).
    #[cfg(feature = "redis-tls")]
    let manager = if direct.uses_tls() {
        use livepool::adapters::redis::RedisTls;
        manager.tls(RedisTls::native_roots()?.server_name(direct.host())?)
    } else {
        manager
    };
    let pool = Pool::builder()
        .name("example-redis-proxied")
        .max_size(4)
        .min_idle(2)
        .connect_timeout(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_timeout(Duration::from_millis(200))
        .build(manager)?;
    drop(pool.get().await?);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = pool.status();
    println!(
        "idle for 1.5 s: {} members, {} heartbeats answered (mean round trip {:?})",
        status.size,
        status.counters.probes_ok,
        status.counters.probe_rtt.mean()
    );

    println!("cutting the network path (every packet dropped, no FIN, no RST) ...");
    proxy.set_fault(Fault::Blackhole);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = pool.status();
    println!(
        "1.5 s later: {} heartbeats timed out, {} members evicted in all",
        status
            .counters
            .evicted
            .get(livepool::EvictReason::ProbeTimedOut),
        status.counters.evicted.total()
    );

    println!("restoring the path ...");
    proxy.set_fault(Fault::Pass);
    let mut conn = pool.get().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    println!(
        "member {} answered {pong}: the pool reconnected",
        Pooled::id(&conn)
    );
    Ok(())
}
