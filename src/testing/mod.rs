//! The fault-injecting TCP proxy used by tests, examples and benches.
//!
//! STAND-IN (to be replaced by the `tcp` branch): the contract's signatures
//! over a simple forwarder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to a connection's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward both ways.
    #[default]
    Pass,
    /// Forward nothing, keep both sockets open.
    Blackhole,
    /// RST the client, close upstream.
    Reset,
    /// FIN the client, close upstream.
    Close,
    /// Forward each chunk after this delay.
    Delay(Duration),
}

/// One live connection through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyConnection {
    /// Accept order.
    pub id: u64,
    /// The client's end (the pool socket's local address).
    pub client_addr: SocketAddr,
    /// The fault in force.
    pub fault: Fault,
}

#[derive(Default)]
struct Registry {
    default_fault: Fault,
    next_id: u64,
    live: BTreeMap<u64, (SocketAddr, watch::Sender<Fault>)>,
}

/// An in-process TCP proxy that injects faults.
pub struct FaultProxy {
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Mutex::new(Registry::default()));
        let reg = Arc::clone(&registry);
        let accept_task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            while let Ok((client, client_addr)) = listener.accept().await {
                let (id, rx) = {
                    let mut r = reg.lock().unwrap_or_else(PoisonError::into_inner);
                    let id = r.next_id;
                    r.next_id += 1;
                    let (tx, rx) = watch::channel(r.default_fault);
                    r.live.insert(id, (client_addr, tx));
                    (id, rx)
                };
                let reg = Arc::clone(&reg);
                tasks.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, rx).await;
                    }
                    reg.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .live
                        .remove(&id);
                });
            }
        });
        Ok(FaultProxy {
            addr,
            registry,
            accept_task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to every live connection and to new ones.
    pub fn set_fault(&self, fault: Fault) {
        let mut r = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        r.default_fault = fault;
        for (_, tx) in r.live.values() {
            tx.send_replace(fault);
        }
    }

    /// Applies `fault` to connection `id` only.
    pub fn fault_connection(&self, id: u64, fault: Fault) -> bool {
        let r = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        match r.live.get(&id) {
            Some((_, tx)) => {
                tx.send_replace(fault);
                true
            }
            None => false,
        }
    }

    /// The live connections, in accept order.
    pub fn connections(&self) -> Vec<ProxyConnection> {
        let r = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        r.live
            .iter()
            .map(|(id, (client_addr, tx))| ProxyConnection {
                id: *id,
                client_addr: *client_addr,
                fault: *tx.borrow(),
            })
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn forward(mut client: TcpStream, mut server: TcpStream, mut fault: watch::Receiver<Fault>) {
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let current = *fault.borrow_and_update();
        match current {
            Fault::Reset => {
                let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
                return;
            }
            Fault::Close => return,
            _ => {}
        }
        tokio::select! {
            changed = fault.changed() => if changed.is_err() { return },
            read = client.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if !pass(current, &mut server, &up[..n]).await { return },
            },
            read = server.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if !pass(current, &mut client, &down[..n]).await { return },
            },
        }
    }
}

async fn pass(fault: Fault, to: &mut TcpStream, bytes: &[u8]) -> bool {
    match fault {
        Fault::Blackhole => true,
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            to.write_all(bytes).await.is_ok()
        }
        _ => to.write_all(bytes).await.is_ok(),
    }
}
