//! Borrow Redis connections from a livepool pool, then watch the pool evict
//! members whose network path goes silent and replace them once it is back.
//!
//! ```text
//! cargo run --example redis --features redis
//! ```
//!
//! The server is LIVEPOOL_REDIS_ADDR (default 127.0.0.1:6379). The pool
//! reaches it through livepool's fault proxy, so the example can cut the path.

use std::time::Duration;

use livepool::adapters::redis::{ADDR_VAR, RedisManager};
use livepool::testing::{Fault, FaultProxy};
use livepool::{Manager, Pool, Pooled};
use redis::AsyncCommands;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let direct = RedisManager::from_env()?;
    let server = direct.addr();
    if let Err(e) = direct.connect().await {
        return Err(format!("{e}\n(start Redis at {server} or set {ADDR_VAR}=IP:port)").into());
    }
    let proxy = FaultProxy::start(server).await?;
    println!(
        "Redis at {server}, reached through a fault proxy at {}",
        proxy.addr()
    );

    let pool = Pool::builder()
        .name("example-redis")
        .max_size(4)
        .min_idle(2)
        .connect_timeout(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_timeout(Duration::from_millis(200))
        .build(RedisManager::new(proxy.addr()).client_name("livepool-example"))?;

    let mut conn = pool.get().await?;
    let _: () = conn.set_ex("livepool:example", "hello", 60).await?;
    let value: String = conn.get("livepool:example").await?;
    println!("member {} ran SET and GET: {value:?}", Pooled::id(&conn));
    drop(conn);

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
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await?;
    println!(
        "member {} answered {pong}: the pool reconnected",
        Pooled::id(&conn)
    );
    Ok(())
}
