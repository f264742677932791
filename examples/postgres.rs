//! Borrow PostgreSQL sessions from a livepool pool, then terminate one from
//! the server side and watch the pool notice before anyone borrows it.
//!
//! ```text
//! cargo run --example postgres --features postgres
//! ```
//!
//! The server is named by a libpq-style connection string: LIVEPOOL_PG_CONFIG,
//! or `host=localhost port=5432 user=postgres dbname=test` (trust
//! authentication). The host name is resolved at every connect.

use std::time::Duration;

use livepool::adapters::postgres::PgManager;
use livepool::{EvictReason, Manager, Pool, Pooled};

/// The environment variable holding the connection string.
const CONFIG_VAR: &str = "LIVEPOOL_PG_CONFIG";
const DEFAULT_CONFIG: &str = "host=localhost port=5432 user=postgres dbname=test";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conn_str = std::env::var(CONFIG_VAR).unwrap_or_else(|_| DEFAULT_CONFIG.to_owned());
    let manager = PgManager::from_conn_str(&conn_str)?.application_name("livepool-example");
    let server = format!("{conn_str:?}");
    // One session outside the pool, to act as the server's administrator.
    let admin = match manager.connect().await {
        Ok(admin) => admin,
        Err(e) => {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message += &format!(": {c}");
                cause = c.source();
            }
            return Err(format!(
                "{message}\n(start PostgreSQL for {server}, or set {CONFIG_VAR} to a connection string)"
            )
            .into());
        }
    };
    println!("PostgreSQL at {} ({server})", admin.server_addr());

    let pool = Pool::builder()
        .name("example-postgres")
        .max_size(4)
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_timeout(Duration::from_millis(300))
        .build(manager)?;

    let conn = pool.get().await?;
    let row = conn
        .query_one("SELECT version(), pg_backend_pid()", &[])
        .await?;
    let (version, pid): (String, i32) = (row.get(0), row.get(1));
    println!("member {} is backend {pid}: {version}", Pooled::id(&conn));
    drop(conn);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    println!(
        "idle for 1.2 s: {} heartbeats (empty queries) answered",
        pool.status().counters.probes_ok
    );

    admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await?;
    println!("terminated backend {pid} from another session ...");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let evicted = pool.status().counters.evicted;
    println!(
        "the pool noticed without a borrow: {} evicted by the cheap check, {} by a heartbeat",
        evicted.get(EvictReason::BrokenWhileIdle),
        evicted.get(EvictReason::ProbeFailed)
    );

    let conn = pool.get().await?;
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    println!("the next borrow got a fresh session: backend {pid}");
    Ok(())
}
