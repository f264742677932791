//! A pool configured from a TOML file, built against the in-process
//! reference server.
//!
//! ```sh
//! cargo run --example config_file --features serde
//! ORDERS_POOL_MAX_SIZE=2 cargo run --example config_file --features serde   # the environment wins
//! ```
//!
//! The file states only what differs from the defaults; durations are
//! written as people write them, and a setting can be turned `"off"`.
//! Environment variables under `ORDERS_POOL_` are laid over the file, and
//! `Pool::new` checks the result as it checks any other configuration.

use std::error::Error;
use std::net::SocketAddr;

use bytes::Bytes;
use livepool::Pool;
use livepool::config_file::PoolConfig;
use livepool::protocol::{RpcManager, Server};

const POOL_TOML: &str = r#"
name = "orders"
max_size = 4
min_idle = 1
wait_timeout = "2s"
heartbeat_interval = "10s"
heartbeat_timeout = "500ms"
idle_timeout = "5min"
max_lifetime = "off"
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let file: PoolConfig = toml::from_str(POOL_TOML)?;
    let config = file
        .overlay(PoolConfig::from_env("ORDERS_POOL")?)
        .into_config();

    let server = Server::new()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await?;
    let pool = Pool::new(RpcManager::new(server.addr()), config)?;

    let mut conn = pool.get().await?;
    let reply = conn.call(Bytes::from_static(b"hello")).await?;
    drop(conn);

    let config = pool.config();
    println!(
        "pool {:?}: max_size {}, min_idle {}",
        config.name, config.max_size, config.min_idle
    );
    println!(
        "wait_timeout {:?}, heartbeat every {:?} (timeout {:?}), idle_timeout {:?}, max_lifetime {:?}",
        config.wait_timeout,
        config.heartbeat_interval,
        config.heartbeat_timeout,
        config.idle_timeout,
        config.max_lifetime,
    );
    println!("echoed {:?}; {:?}", reply, pool.status());
    server.shutdown().await;
    Ok(())
}
