//! HTTP/2: a new connection per request vs livepool vs one shared
//! connection, against an in-process h2 server on loopback, every
//! competitor in one process run.
//!
//! - **connect per request**: [`Http2Manager::connect`] (livepool's TCP
//!   connect, the h2 handshake and the proving PING: the adapter's own
//!   path), one GET, then the connection is dropped;
//! - **livepool**: `Pool<Http2Manager>` (at most 16 members): `get`, one GET
//!   through the guard, return;
//! - **shared connection**: one h2 connection for everything, a clone of
//!   its `SendRequest` per request: the floor, with no liveness at all
//!   (no heartbeat, no eviction, no refill).
//!
//! One request is a GET answered with a 16-byte body, read in full. Tasks:
//! 1 and 16, on a multi-thread runtime with 2 workers.
//!
//! `cargo bench --bench http2_short_vs_long --features http2` runs 5,000
//! requests per competitor and task count and prints a Markdown table;
//! without `--bench` (as `cargo test --benches` does) it is a smoke run of
//! 100 requests.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use livepool::adapters::http2::{Http2Connection, Http2Manager};
use livepool::{Manager, Pool};
use tokio::net::TcpListener;
use tokio::time::timeout;

type BenchError = Box<dyn Error + Send + Sync>;

const FULL: usize = 5_000;
const SMOKE: usize = 100;
const TASKS: [usize; 2] = [1, 16];
const POOL_SIZE: usize = 16;
/// Bound on one request, connect or checkout included: nothing hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const BODY: &[u8] = b"0123456789abcdef";

enum Competitor {
    ConnectPerRequest(Box<Http2Manager>),
    Livepool(Pool<Http2Manager>),
    Shared(SendRequest<Bytes>, String),
}

impl Competitor {
    fn name(&self) -> &'static str {
        match self {
            Competitor::ConnectPerRequest(_) => "connect per request",
            Competitor::Livepool(_) => "livepool",
            Competitor::Shared(..) => "shared connection",
        }
    }

    async fn request(&self) -> Result<(), BenchError> {
        match self {
            Competitor::ConnectPerRequest(manager) => get(&mut manager.connect().await?).await,
            Competitor::Livepool(pool) => get(&mut *pool.get().await?).await,
            Competitor::Shared(sender, authority) => {
                let mut sender = sender.clone().ready().await?;
                let uri = format!("http://{authority}/");
                let (response, _) = sender.send_request(http::Request::get(uri).body(())?, true)?;
                read(response).await
            }
        }
    }
}

/// One GET on `conn`, read in full.
async fn get(conn: &mut Http2Connection) -> Result<(), BenchError> {
    let uri = format!("http://{}/", conn.authority());
    let (response, _) = conn
        .send_request(http::Request::get(uri).body(())?, true)
        .await?;
    read(response).await
}

/// Reads the response in full and checks it.
async fn read(response: h2::client::ResponseFuture) -> Result<(), BenchError> {
    let mut body = response.await?.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    if got != BODY {
        return Err(format!("unexpected body {got:?}").into());
    }
    Ok(())
}

/// `requests` requests over `tasks` tasks: (wall time, sorted latencies).
async fn measure(
    competitor: &Arc<Competitor>,
    tasks: usize,
    requests: usize,
) -> Result<(Duration, Vec<Duration>), BenchError> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let competitor = Arc::clone(competitor);
        let share = requests / tasks + usize::from(task < requests % tasks);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let begun = Instant::now();
                timeout(REQUEST_TIMEOUT, competitor.request())
                    .await
                    .map_err(|_| format!("a request took over {REQUEST_TIMEOUT:?}"))??;
                latencies.push(begun.elapsed());
            }
            Ok::<_, BenchError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let wall = start.elapsed();
    latencies.sort_unstable();
    Ok((wall, latencies))
}

/// An h2 server answering every request with [`BODY`].
async fn server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = conn.accept().await {
                    if let Ok(mut send) = respond.send_response(http::Response::new(()), false) {
                        let _ = send.send_data(Bytes::from_static(BODY), true);
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run(requests: usize) -> Result<String, BenchError> {
    let addr = server().await?;
    let manager = Http2Manager::for_addr(addr);
    let pool = Pool::builder()
        .name("http2-bench")
        .max_size(POOL_SIZE)
        .build(manager.clone())?;
    let shared = manager.connect().await?;
    let competitors = [
        Competitor::ConnectPerRequest(Box::new(manager)),
        Competitor::Livepool(pool.clone()),
        Competitor::Shared(shared.sender(), shared.authority().to_owned()),
    ]
    .map(Arc::new);

    let mut table = format!(
        "{requests} requests per row (GET, 16-byte body), 2 runtime workers, pool of {POOL_SIZE}.\n\n\
         | tasks | competitor | req/s | mean | p50 | p99 | livepool ÷ it: req/s | p50 |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n"
    );
    for tasks in TASKS {
        let mut rows = Vec::new();
        for competitor in &competitors {
            measure(competitor, tasks, requests.min(200)).await?; // warm-up
            let (wall, latencies) = measure(competitor, tasks, requests).await?;
            let n = latencies.len().max(1);
            let rate = latencies.len() as f64 / wall.as_secs_f64();
            let mean = latencies.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(u32::MAX);
            let p = |q: f64| latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
            eprintln!(
                "{tasks:>2} task(s) {:<20} {rate:>9.0} req/s",
                competitor.name()
            );
            rows.push((competitor.name(), rate, mean, p(0.50), p(0.99)));
        }
        let (_, live_rate, _, live_p50, _) = rows[1];
        for (name, rate, mean, p50, p99) in rows {
            table.push_str(&format!(
                "| {tasks} | {name} | {rate:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.2}× | {:.2}× |\n",
                micros(mean),
                micros(p50),
                micros(p99),
                live_rate / rate,
                micros(live_p50) / micros(p50).max(1e-6),
            ));
        }
    }
    pool.close();
    Ok(table)
}

fn main() -> ExitCode {
    let requests = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("http2_short_vs_long: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(requests)) {
        Ok(table) => {
            println!("\n{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("http2_short_vs_long: {e}");
            ExitCode::FAILURE
        }
    }
}
