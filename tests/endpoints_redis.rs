//! A Redis failover under write load, with two redis-server processes of
//! the test's own (ports 16200 and 16201) as primary and replica: after
//! `REPLICAOF NO ONE` on the replica and `REPLICAOF` on the old primary,
//! writes asking for a primary stop reaching the demoted server within one
//! heartbeat interval plus timeout (counted as `READONLY` replies).

#![cfg(feature = "redis")]

#[path = "adapter_support/redis_child.rs"]
#[allow(dead_code)]
mod redis_child;

use redis_child::RedisChild;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use livepool::Pool;
use livepool::Role;
use livepool::adapters::redis::RedisManager;
use livepool::endpoints::{Endpoints, Member, Want, discover};
use redis::aio::MultiplexedConnection;

const HEARTBEAT: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(150);
const PRIMARY_PORT: u16 = 16200;
const REPLICA_PORT: u16 = 16201;

/// A redis-server of the test's own, ended by pid on drop.
struct Child {
    /// Held only so the child process ends when this drops.
    _server: RedisChild,
    addr: SocketAddr,
}

impl Child {
    async fn start(port: u16, replica_of: Option<u16>) -> Child {
        let (port_arg, primary) = (port.to_string(), replica_of.map(|p| p.to_string()));
        let mut args = vec!["--port", &port_arg];
        if let Some(primary) = &primary {
            args.extend(["--replicaof", "127.0.0.1", primary]);
        }
        let server = RedisChild::start_with(port, &args).await;
        Child {
            addr: server.addr,
            _server: server,
        }
    }

    async fn admin(&self) -> MultiplexedConnection {
        redis::Client::open(format!("redis://{}/", self.addr))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection to the child redis-server")
    }
}

/// How one write went.
#[derive(Debug)]
struct Write {
    started: Instant,
    endpoint: Option<&'static str>,
    readonly: bool,
    error: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_no_write_reaches_the_demoted_primary() {
    let primary = Child::start(PRIMARY_PORT, None).await;
    let replica = Child::start(REPLICA_PORT, Some(PRIMARY_PORT)).await;
    let mut primary_admin = primary.admin().await;
    let mut replica_admin = replica.admin().await;
    let manager = |addr: &SocketAddr| {
        RedisManager::new(*addr)
            .client_name("endpoints-failover")
            .track_roles(true)
    };
    let set = Endpoints::builder()
        .name("redis")
        .pool(
            Pool::builder()
                .max_size(8)
                .min_idle(2)
                .heartbeat_interval(HEARTBEAT)
                .heartbeat_timeout(TIMEOUT)
                .validate_after(HEARTBEAT)
                .wait_timeout(Duration::from_millis(500)),
        )
        .wait_timeout(Duration::from_secs(5))
        .build(
            discover::fixed([("primary", primary.addr), ("replica", replica.addr)]),
            manager,
        )
        .unwrap();
    // Before: writes go to the primary only; reads may go to the replica.
    for _ in 0..5 {
        let member = set.get(Want::Primary).await.unwrap();
        assert_eq!(*Member::endpoint(&member), "primary");
        assert_eq!(Member::role(&member), Some(Role::Primary));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let set = set.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut writes = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let write = match set.get(Want::Primary).await {
                        Err(err) => Write {
                            started,
                            endpoint: None,
                            readonly: false,
                            error: Some(format!("get: {err}")),
                        },
                        Ok(mut member) => {
                            let endpoint = *Member::endpoint(&member);
                            let result: redis::RedisResult<()> = redis::cmd("SET")
                                .arg(format!("w{w}"))
                                .arg(n)
                                .query_async(&mut *member)
                                .await;
                            Write {
                                started,
                                endpoint: Some(endpoint),
                                readonly: result
                                    .as_ref()
                                    .is_err_and(|e| e.code() == Some("READONLY")),
                                error: result.err().map(|e| e.to_string()),
                            }
                        }
                    };
                    writes.push(write);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                writes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The failover: promote the replica, then demote the old primary.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut replica_admin)
        .await
        .unwrap();
    let demoted = Instant::now();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(REPLICA_PORT)
        .query_async(&mut primary_admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for writer in writers {
        writes.extend(writer.await.unwrap());
    }

    let bound = HEARTBEAT + HEARTBEAT / 10 + TIMEOUT;
    let readonly: Vec<&Write> = writes.iter().filter(|w| w.readonly).collect();
    let last_readonly = readonly
        .iter()
        .map(|w| w.started.saturating_duration_since(demoted))
        .max();
    let late: Vec<_> = readonly
        .iter()
        .filter(|w| w.started > demoted + bound)
        .collect();
    let after = writes.iter().filter(|w| w.started > demoted + bound);
    let on_new_primary = after
        .clone()
        .filter(|w| w.endpoint == Some("replica") && w.error.is_none())
        .count();
    let other_errors: Vec<_> = writes
        .iter()
        .filter(|w| w.error.is_some() && !w.readonly)
        .collect();
    println!(
        "redis failover: {} writes, {} READONLY (the last started {:?} after the demotion; bound {bound:?}), \
         {} after the bound, {on_new_primary} writes on the promoted server after it, {} other errors",
        writes.len(),
        readonly.len(),
        last_readonly,
        late.len(),
        other_errors.len()
    );
    assert!(late.is_empty(), "READONLY after {bound:?}: {late:?}");
    assert!(on_new_primary > 0, "writes moved to the promoted server");
    assert!(other_errors.is_empty(), "{other_errors:?}");
    let status = set.endpoint_status(&"primary").unwrap();
    assert_eq!(status.role, Some(Role::Replica), "{status:?}");
}
