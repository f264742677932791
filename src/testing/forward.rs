//! One proxied connection: two bounded, fault-aware pumps and the faults that
//! end the connection.
//!
//! Each direction is a reader that pushes timestamped chunks into a bounded
//! queue and a writer that delivers them as the *current* fault allows. The
//! fault is re-read at every step (a `watch` channel), so a change acts at
//! once, even on chunks already queued: blackholed chunks are dropped, delayed
//! ones wait for `arrival + delay` under the newest delay.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::fault::Fault;
use super::registry::Registration;
use super::sockets::close_with_reset;

/// Largest single read; together with `QUEUE_CHUNKS` this bounds the bytes
/// held per direction (256 KiB).
const CHUNK_SIZE: usize = 16 * 1024;
/// Chunks queued per direction before the reader stops reading (backpressure).
const QUEUE_CHUNKS: usize = 16;
/// Longest wait for the upstream handshake.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a graceful close, how long the client may keep sending before the
/// socket is dropped anyway.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// What a reader hands its writer.
enum Chunk {
    Data { bytes: Bytes, arrived: Instant },
    Eof { arrived: Instant },
}

impl Chunk {
    fn arrived(&self) -> Instant {
        match self {
            Chunk::Data { arrived, .. } | Chunk::Eof { arrived } => *arrived,
        }
    }
}

/// How the forwarding of a connection ended.
enum Ending {
    /// Both sides closed in turn.
    Finished,
    /// A socket failed (e.g. one side reset): pass the failure on as a reset.
    Failed,
    /// [`Fault::Reset`] or [`Fault::Close`] was set.
    Fault(Fault),
}

/// Runs one client connection from accept to close.
pub(crate) async fn serve(
    mut client: TcpStream,
    upstream_addr: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    registration: Registration,
) {
    let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream_addr));
    let mut upstream = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(error)) => {
                tracing::debug!(%error, %upstream_addr, "fault proxy: upstream connect failed");
                return close_with_reset(client);
            }
            Err(_elapsed) => {
                tracing::debug!(%upstream_addr, "fault proxy: upstream connect timed out");
                return close_with_reset(client);
            }
        },
        ending = ending_fault(&mut fault) => return end_client(client, ending, registration).await,
    };
    // Both legs without Nagle, so `Delay` and latency are what the test set.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let ending = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let both_ways = futures_util::future::try_join(
            pump(client_read, upstream_write, fault.clone()),
            pump(upstream_read, client_write, fault.clone()),
        );
        tokio::select! {
            forwarded = both_ways => match forwarded {
                Ok(_) => Ending::Finished,
                Err(_) => Ending::Failed,
            },
            ending = ending_fault(&mut fault) => Ending::Fault(ending),
        }
    };
    match ending {
        Ending::Finished => {}
        Ending::Failed => {
            close_with_reset(upstream);
            close_with_reset(client);
        }
        Ending::Fault(ending) => {
            drop(upstream);
            end_client(client, ending, registration).await;
        }
    }
}

/// Waits until the fault is one that ends the connection, and returns it.
async fn ending_fault(fault: &mut watch::Receiver<Fault>) -> Fault {
    let ending = fault.wait_for(|f| f.ends_connection()).await.map(|f| *f);
    match ending {
        Ok(ending) => ending,
        // The registry dropped the sender: the proxy is going away and this
        // task with it. Nothing will change the fault any more.
        Err(_) => std::future::pending().await,
    }
}

/// Carries out [`Fault::Reset`] or [`Fault::Close`] on the client.
async fn end_client(mut client: TcpStream, ending: Fault, registration: Registration) {
    drop(registration);
    if ending != Fault::Close {
        return close_with_reset(client);
    }
    if client.shutdown().await.is_err() {
        return;
    }
    // Read and drop what the client still sends until it closes too: closing
    // a socket with unread bytes would send RST instead of the FIN already sent.
    let mut sink = [0u8; 4096];
    let drain = async { while let Ok(1..) = client.read(&mut sink).await {} };
    let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
}

/// Forwards one direction until its reader sees EOF and the EOF is passed on,
/// or either side fails.
async fn pump(
    from: impl AsyncRead + Unpin,
    to: impl AsyncWrite + Unpin,
    fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    let (queue, queued) = mpsc::channel(QUEUE_CHUNKS);
    tokio::try_join!(
        receive(from, queue, fault.clone()),
        deliver(queued, to, fault)
    )?;
    Ok(())
}

/// Reads chunks and queues them; in [`Fault::Blackhole`] drops them at once,
/// so the sender is never blocked.
async fn receive(
    mut from: impl AsyncRead + Unpin,
    queue: mpsc::Sender<Chunk>,
    fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        let read = from.read_buf(&mut buf).await?;
        let arrived = Instant::now();
        let chunk = if read == 0 {
            Chunk::Eof { arrived }
        } else if *fault.borrow() == Fault::Blackhole {
            continue;
        } else {
            Chunk::Data {
                bytes: buf.freeze(),
                arrived,
            }
        };
        let eof = matches!(chunk, Chunk::Eof { .. });
        // A closed queue means the writer failed; `pump` reports its error.
        if queue.send(chunk).await.is_err() || eof {
            return Ok(());
        }
    }
}

/// Delivers queued chunks in order as the current fault allows.
async fn deliver(
    mut queued: mpsc::Receiver<Chunk>,
    mut to: impl AsyncWrite + Unpin,
    mut fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    while let Some(chunk) = queued.recv().await {
        if !wait_until_deliverable(&chunk, &mut fault).await {
            continue;
        }
        match chunk {
            Chunk::Data { bytes, .. } => to.write_all(&bytes).await?,
            Chunk::Eof { .. } => to.shutdown().await?,
        }
    }
    Ok(())
}

/// Waits until the current fault lets `chunk` through. Returns `false` if it
/// is to be dropped (data under [`Fault::Blackhole`]). An EOF is held, not
/// dropped, while blackholed: a cut path loses no FIN for good.
async fn wait_until_deliverable(chunk: &Chunk, fault: &mut watch::Receiver<Fault>) -> bool {
    loop {
        let current = *fault.borrow_and_update();
        let due = match current {
            Fault::Pass => return true,
            Fault::Blackhole if matches!(chunk, Chunk::Data { .. }) => return false,
            // A delay too long to represent is a delay that never ends.
            Fault::Delay(delay) => chunk.arrived().checked_add(delay),
            // Held: an EOF under Blackhole, or a fault that ends the
            // connection (the connection's task is about to drop this pump).
            Fault::Blackhole | Fault::Reset | Fault::Close => None,
        };
        let wait_for_due = async {
            match due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait_for_due => return true,
            changed = fault.changed() => {
                if changed.is_err() {
                    // The proxy is going away; hold the chunk until it does.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
