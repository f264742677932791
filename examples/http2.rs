//! Borrow HTTP/2 connections from a livepool pool, then watch a server's
//! graceful `GOAWAY` drain them (no caller error) and a blackholed path get
//! them evicted by the PING heartbeat, and the pool replace them each time.
//!
//! ```text
//! cargo run --example http2 --features http2
//! ```
//!
//! The server is an in-process HTTP/2 server (h2's server side, plaintext,
//! prior knowledge) on a loopback port; the pool reaches it through
//! livepool's fault proxy, so the example can cut the path.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use livepool::adapters::http2::{Http2Connection, Http2Manager};
use livepool::testing::{Fault, FaultProxy};
use livepool::{EvictReason, Pool};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, go_away) = start_server().await?;
    let proxy = FaultProxy::start(server).await?;
    println!(
        "HTTP/2 server at {server}, reached through a fault proxy at {}",
        proxy.addr()
    );

    let pool = Pool::builder()
        .name("example-http2")
        .max_size(4)
        .min_idle(2)
        .connect_timeout(Duration::from_secs(1))
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_timeout(Duration::from_millis(200))
        .build(Http2Manager::for_addr(proxy.addr()))?;
    pool.ready(Duration::from_secs(2)).await?;

    let mut conn = pool.get().await?;
    println!("GET /hello -> {}", get(&mut conn, "/hello").await?);
    drop(conn);
    show(&pool);

    println!("\nthe server sends GOAWAY (graceful shutdown) on every connection...");
    let open = pool.status().counters.created;
    go_away.send_modify(|n| *n += 1);
    // Every member open at the time is drained (idle ones by the sentinel's
    // cheap check, others at their checkout or return) and replaced.
    wait_until(&pool, |p| {
        let s = p.status();
        s.counters.evicted.get(EvictReason::Drained) >= open && s.idle >= 2
    })
    .await;
    let mut conn = pool.get().await?;
    println!(
        "GET /after-goaway -> {}",
        get(&mut conn, "/after-goaway").await?
    );
    drop(conn);
    show(&pool);

    println!("\nthe path goes silent (blackhole)...");
    proxy.set_fault(Fault::Blackhole);
    let (before, idle) = {
        let s = pool.status();
        (
            s.counters.evicted.get(EvictReason::ProbeTimedOut),
            s.idle as u64,
        )
    };
    let started = std::time::Instant::now();
    wait_until(&pool, |p| {
        p.status().counters.evicted.get(EvictReason::ProbeTimedOut) >= before + idle
    })
    .await;
    println!(
        "{idle} idle members evicted by unanswered PINGs within {:?}",
        started.elapsed()
    );
    proxy.set_fault(Fault::Pass);
    let mut conn = pool.get().await?;
    println!("GET /healed -> {}", get(&mut conn, "/healed").await?);
    drop(conn);
    show(&pool);

    pool.close();
    proxy.shutdown().await;
    Ok(())
}

/// One GET on a borrowed member; the body as text.
async fn get(conn: &mut Http2Connection, path: &str) -> Result<String, Box<dyn std::error::Error>> {
    let request = http::Request::get(format!("http://{}{path}", conn.authority())).body(())?;
    let (response, _no_body) = conn.send_request(request, true).await?;
    let mut body = response.await?.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8(text)?)
}

/// What the pool holds, and why it let members go.
fn show<M: livepool::Manager>(pool: &Pool<M>) {
    let s = pool.status();
    println!(
        "pool: {} members ({} idle, {} in use), {} created; evicted: {} drained, {} PING timed out",
        s.size,
        s.idle,
        s.in_use,
        s.counters.created,
        s.counters.evicted.get(EvictReason::Drained),
        s.counters.evicted.get(EvictReason::ProbeTimedOut),
    );
}

/// Polls `done` every 50 ms, for at most 10 s.
async fn wait_until<M: livepool::Manager>(pool: &Pool<M>, done: impl Fn(&Pool<M>) -> bool) {
    for _ in 0..200 {
        if done(pool) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("(gave up waiting)");
    show(pool);
}

/// An HTTP/2 server answering every request with `hello from <path>`; a
/// change on the returned channel sends a graceful `GOAWAY` on every
/// connection open at the time, while new ones are still accepted.
async fn start_server() -> std::io::Result<(SocketAddr, watch::Sender<u64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (go_away, _) = watch::channel(0u64);
    let shutdowns = go_away.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut shutdown = shutdowns.subscribe();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                loop {
                    tokio::select! {
                        request = conn.accept() => {
                            let Some(Ok((request, mut respond))) = request else { return };
                            let body = format!("hello from {}", request.uri().path());
                            if let Ok(mut send) = respond.send_response(http::Response::new(()), false) {
                                let _ = send.send_data(Bytes::from(body), true);
                            }
                        }
                        Ok(()) = shutdown.changed() => conn.graceful_shutdown(),
                    }
                }
            });
        }
    });
    Ok((addr, go_away))
}
