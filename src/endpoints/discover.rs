//! Where endpoints come from: any `tower::discover::Discover` (a stream of
//! `Result<Change<K, V>, E>`), so Kubernetes endpoints, Consul, DNS SRV or a
//! config file plug in without this crate knowing them. Built in: a fixed
//! list, a channel for changes pushed by code, and DNS re-resolution of a
//! host name on a jittered interval.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
pub use tower::discover::{Change, Discover};

/// Most addresses one DNS answer contributes: a bound on what a resolver can
/// make the set build.
pub const MAX_RESOLVED: usize = 64;

/// A fixed list: inserts every endpoint once, then nothing more.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepool::endpoints::discover;
/// let addrs: Vec<std::net::SocketAddr> = vec!["127.0.0.1:7000".parse().unwrap()];
/// let list = discover::fixed(addrs.iter().map(|a| (*a, *a)));
/// # let _ = list;
/// # }
/// ```
pub fn fixed<K, V>(endpoints: impl IntoIterator<Item = (K, V)>) -> Fixed<K, V> {
    Fixed {
        pending: endpoints.into_iter().collect(),
    }
}

/// See [`fixed`].
#[derive(Debug)]
pub struct Fixed<K, V> {
    pending: VecDeque<(K, V)>,
}

impl<K, V> Unpin for Fixed<K, V> {}

impl<K, V> Stream for Fixed<K, V> {
    type Item = Result<Change<K, V>, Infallible>;

    /// After the list, pending for ever: a fixed list never removes.
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.pending.pop_front() {
            Some((key, value)) => Poll::Ready(Some(Ok(Change::Insert(key, value)))),
            None => Poll::Pending,
        }
    }
}

/// Changes pushed by code: the sender side of [`channel`].
#[derive(Debug)]
pub struct Changes<K, V> {
    tx: mpsc::Sender<Change<K, V>>,
}

impl<K, V> Clone for Changes<K, V> {
    fn clone(&self) -> Self {
        Changes {
            tx: self.tx.clone(),
        }
    }
}

/// The endpoint set is gone, so the change had nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetGone;

impl std::fmt::Display for SetGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the endpoint set no longer listens for changes")
    }
}

impl std::error::Error for SetGone {}

impl<K, V> Changes<K, V> {
    /// Adds (or replaces) the endpoint `key`.
    pub async fn insert(&self, key: K, value: V) -> Result<(), SetGone> {
        self.tx
            .send(Change::Insert(key, value))
            .await
            .map_err(|_| SetGone)
    }

    /// Removes the endpoint `key`: it drains.
    pub async fn remove(&self, key: K) -> Result<(), SetGone> {
        self.tx.send(Change::Remove(key)).await.map_err(|_| SetGone)
    }
}

/// A discovery fed by code, bounded to `capacity` changes in flight (at
/// least 1): what tests and the failover example use.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepool::endpoints::discover;
/// let (changes, discovery) = discover::channel::<&str, u16>(8);
/// changes.insert("a", 7000).await.unwrap();
/// # drop(discovery);
/// # }
/// ```
pub fn channel<K, V>(capacity: usize) -> (Changes<K, V>, Channel<K, V>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Changes { tx }, Channel { rx })
}

/// See [`channel`].
#[derive(Debug)]
pub struct Channel<K, V> {
    rx: mpsc::Receiver<Change<K, V>>,
}

impl<K, V> Stream for Channel<K, V> {
    type Item = Result<Change<K, V>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|change| change.map(Ok))
    }
}

/// Re-resolves `host` every `every` (±`jitter` of it, 0.0 to 0.5, so many
/// clients do not ask in lockstep) with the system resolver
/// (`tokio::net::lookup_host`), inserting new addresses and removing gone
/// ones. A failed lookup keeps the addresses known: a DNS blip must not
/// empty the set.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use livepool::endpoints::discover;
/// let discovery = discover::dns("localhost", 7000, Duration::from_secs(30), 0.1);
/// # drop(discovery);
/// # }
/// ```
pub fn dns(
    host: impl Into<String>,
    port: u16,
    every: Duration,
    jitter: f64,
) -> impl Stream<Item = Result<Change<SocketAddr, SocketAddr>, Infallible>> + Send + 'static {
    let host = host.into();
    resolve_every(every, jitter, move || {
        let target = (host.clone(), port);
        async move { tokio::net::lookup_host(target).await.map(|a| a.collect()) }
    })
}

/// [`dns`] with any resolver: `resolve` is called at once, then every
/// `every` (jittered); its answer, capped at [`MAX_RESOLVED`] addresses, is
/// diffed against the last one into inserts and removes. An error keeps the
/// last answer.
pub fn resolve_every<R, F>(
    every: Duration,
    jitter: f64,
    resolve: R,
) -> impl Stream<Item = Result<Change<SocketAddr, SocketAddr>, Infallible>> + Send + 'static
where
    R: FnMut() -> F + Send + 'static,
    F: Future<Output = std::io::Result<Vec<SocketAddr>>> + Send,
{
    let state = Resolving {
        known: BTreeSet::new(),
        queued: VecDeque::new(),
        first: true,
        every,
        jitter: jitter.clamp(0.0, 0.5),
        resolve,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(change) = state.queued.pop_front() {
                return Some((Ok(change), state));
            }
            if !state.first {
                let factor = 1.0 - state.jitter + 2.0 * state.jitter * fastrand::f64();
                tokio::time::sleep(state.every.mul_f64(factor)).await;
            }
            state.first = false;
            match (state.resolve)().await {
                Ok(mut addrs) => {
                    addrs.truncate(MAX_RESOLVED);
                    state.diff(addrs.into_iter().collect());
                }
                Err(err) => {
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        "re-resolving endpoints failed; keeping the known addresses"
                    );
                }
            }
        }
    })
}

struct Resolving<R> {
    known: BTreeSet<SocketAddr>,
    queued: VecDeque<Change<SocketAddr, SocketAddr>>,
    first: bool,
    every: Duration,
    jitter: f64,
    resolve: R,
}

impl<R> Resolving<R> {
    fn diff(&mut self, now: BTreeSet<SocketAddr>) {
        for gone in self.known.difference(&now) {
            self.queued.push_back(Change::Remove(*gone));
        }
        for new in now.difference(&self.known) {
            self.queued.push_back(Change::Insert(*new, *new));
        }
        self.known = now;
    }
}
