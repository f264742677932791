//! Borrow PostgreSQL sessions from a livepool pool, then terminate one from
//! the server side and watch the pool notice before anyone borrows it.
//!
//! ```text
//! cargo run --example postgres --features postgres
//! ```
//!
//! The server is LIVEPOOL_PG_ADDR (default 127.0.0.1:5432), user postgres,
//! database test, trust authentication.

use std::time::Duration;

use livepool::adapters::postgres::{ADDR_VAR, PgManager};
use livepool::{EvictReason, Manager, Pool, Pooled};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = PgManager::from_env()?.application_name("livepool-example");
    let server = manager.addr();
    // One session outside the pool, to act as the server's administrator.
    let mut admin = match manager.connect().await {
        Ok(admin) => admin,
        Err(e) => {
            return Err(format!(
                "{e}\n(start PostgreSQL at {server} with user postgres, database test, \
                 or set {ADDR_VAR}=IP:port)"
            )
            .into());
        }
    };
    println!("PostgreSQL at {server}");

    let pool = Pool::builder()
        .name("example-postgres")
        .max_size(4)
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_timeout(Duration::from_millis(300))
        .build(manager)?;

    let mut conn = pool.get().await?;
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

    let mut conn = pool.get().await?;
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    println!("the next borrow got a fresh session: backend {pid}");
    Ok(())
}
