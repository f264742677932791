//! The proxy's shared record of live connections and their faults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::fault::Fault;
use super::proxy::ProxyConnection;

/// What the test's handle and the proxy's tasks share.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The fault new connections start with.
    default_fault: Fault,
    refusing: bool,
    next_id: u64,
    /// Live connections by id; ids grow, so this is accept order.
    live: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    client_addr: SocketAddr,
    /// Each connection's tasks watch this, so a new fault acts at once.
    fault: watch::Sender<Fault>,
}

/// What the accept loop should do with a connection it just accepted.
pub(crate) enum Admission {
    /// Refusing: reset it at once.
    Refuse,
    /// Proxy it, starting from this fault; dropping the registration forgets it.
    Admit(Registration, watch::Receiver<Fault>),
}

impl Registry {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half updated (every change
        // is one statement), so a poisoned lock is still good to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn admit(self: &Arc<Self>, client_addr: SocketAddr) -> Admission {
        let mut state = self.state();
        if state.refusing {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Admission::Refuse;
        }
        let id = state.next_id;
        state.next_id += 1;
        let (fault, watcher) = watch::channel(state.default_fault);
        state.live.insert(id, Entry { client_addr, fault });
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            registry: Arc::clone(self),
            id,
        };
        Admission::Admit(registration, watcher)
    }

    pub(crate) fn set_fault(&self, fault: Fault) {
        let mut state = self.state();
        state.default_fault = fault;
        for entry in state.live.values() {
            entry.fault.send_replace(fault);
        }
    }

    pub(crate) fn default_fault(&self) -> Fault {
        self.state().default_fault
    }

    pub(crate) fn fault_connection(&self, id: u64, fault: Fault) -> bool {
        match self.state().live.get(&id) {
            Some(entry) => {
                entry.fault.send_replace(fault);
                true
            }
            None => false,
        }
    }

    pub(crate) fn connections(&self) -> Vec<ProxyConnection> {
        self.state()
            .live
            .iter()
            .map(|(&id, entry)| ProxyConnection {
                id,
                client_addr: entry.client_addr,
                fault: *entry.fault.borrow(),
            })
            .collect()
    }

    pub(crate) fn set_refusing(&self, refuse: bool) {
        self.state().refusing = refuse;
    }

    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A connection's place in the registry, held by its task; dropping it (the
/// task ended or was aborted) removes the connection from the live list.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.state().live.remove(&self.id);
    }
}
