//! Fault 12: the kernel layer alone. Heartbeats off; the peer is a server in a
//! network namespace of our own whose packets we drop, so no FIN, no RST and no
//! answer ever reaches us. Only `SO_KEEPALIVE` (for an idle member) and
//! `TCP_USER_TIMEOUT` (for a member with a request in flight) can tell.
//!
//! Needs root and iproute2 (`ip`) only: the packets are swallowed by a
//! blackhole route inside the namespace. If the namespace cannot be made the
//! test fails and says why: a silent skip would hide that the kernel layer
//! went untested.

mod fault_support;

use std::time::Duration;

use bytes::Bytes;
use fault_support::netns::Netns;
use fault_support::{assert_accounts, borrow, echo, sockets, time_to_evictions};
use livepool::protocol::{ClientError, RpcManager};
use livepool::tcp::{Keepalive, TcpOptions};
use livepool::{EvictReason, Pool, Pooled};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout};

const KEEPIDLE: Duration = Duration::from_secs(1);
const KEEPINTVL: Duration = Duration::from_secs(1);
const KEEPCNT: u32 = 2;
const USER_TIMEOUT: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_kernel_keepalive_and_user_timeout_find_a_vanished_peer_without_heartbeats() {
    let _serial = SERIAL.lock().await;
    let fds_before = sockets::fd_count();
    let mut ns = Netns::create().unwrap_or_else(|why| {
        panic!(
            "cannot build the network namespace this test needs: {why}\n\
             (it must run as root with iproute2 installed; .ci/run installs it if missing)"
        )
    });
    let ns_name = ns.name.clone();
    let addr = ns
        .start_echo_server(7000)
        .await
        .unwrap_or_else(|why| panic!("cannot start the server in the namespace: {why}"));

    let keepalive = Keepalive::new(KEEPIDLE, KEEPINTVL, KEEPCNT);
    let tcp = TcpOptions::default()
        .with_keepalive(keepalive)
        .with_user_timeout(USER_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(2));
    // No request timeout: the kernel is what must fire.
    let manager = RpcManager::new(addr).tcp_options(tcp).request_timeout(None);
    let pool = Pool::builder()
        .name("f12-keepalive")
        .max_size(2)
        .min_idle(0)
        .no_heartbeats()
        .wait_timeout(Duration::from_secs(5))
        .build(manager)
        .expect("valid pool settings");

    // The path works before the fault: both members answer.
    let mut idle = borrow(&pool).await;
    let mut busy = borrow(&pool).await;
    echo(&mut idle, "hello").await;
    echo(&mut busy, "hello").await;
    drop(idle);
    let before = pool.status().counters.evicted;
    assert_eq!(pool.status().idle, 1);

    ns.drop_all_packets()
        .unwrap_or_else(|why| panic!("cannot drop packets in the namespace: {why}"));
    let injected = Instant::now();

    // A write to the vanished peer: retransmitted unanswered until
    // TCP_USER_TIMEOUT gives up, well before any request timeout would.
    let write = tokio::spawn(async move {
        let started = Instant::now();
        let result = timeout(PATIENCE * 2, busy.call(Bytes::from_static(b"lost"))).await;
        (result, started.elapsed(), busy)
    });

    // The idle member: keepalive probes go unanswered and the kernel drops
    // the connection; the sentinel's cheap check sees the socket error.
    let dead_peer_after = keepalive.dead_peer_after();
    let bound = dead_peer_after + Duration::from_secs(7);
    let took = time_to_evictions(
        &pool,
        &before,
        EvictReason::BrokenWhileIdle,
        1,
        injected,
        bound,
    )
    .await
    .unwrap_or_else(|s| panic!("the idle member was not evicted within {bound:?}: {s:?}"));
    assert!(
        took < bound,
        "idle member evicted after {took:?}; keepalive gives up after {dead_peer_after:?}"
    );
    assert!(
        took >= KEEPIDLE,
        "evicted after {took:?}, before the first keepalive probe could even be sent"
    );

    let (result, write_took, mut busy) = write.await.expect("the writer task does not panic");
    match result {
        Ok(Err(ClientError::Io(error))) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::TimedOut,
            "expected ETIMEDOUT from TCP_USER_TIMEOUT, got {error:?}"
        ),
        Ok(other) => panic!("expected an I/O timeout from the kernel, got {other:?}"),
        Err(_) => panic!("the call to a vanished peer hung past {:?}", PATIENCE * 2),
    }
    assert!(
        write_took >= USER_TIMEOUT / 2 && write_took < USER_TIMEOUT + Duration::from_secs(4),
        "the write failed after {write_took:?}; TCP_USER_TIMEOUT is {USER_TIMEOUT:?}"
    );
    eprintln!(
        "f12: idle member evicted {took:?} after the cut; the write failed after {write_took:?}"
    );
    // Returned after the failure, the busy member is evicted too.
    assert_eq!(busy.condition(), livepool::Condition::Broken);
    let id = Pooled::id(&busy);
    drop(busy);
    let s = pool.status();
    assert_accounts(&s);
    assert_eq!(
        (s.size, s.counters.evicted.get(EvictReason::BrokenOnReturn)),
        (0, 1),
        "member {id} should be evicted on return: {s:?}"
    );

    pool.close();
    drop(pool);
    drop(ns);
    assert!(
        !Netns::exists(&ns_name),
        "namespace {ns_name} still exists after cleanup"
    );
    let mut fds_after = sockets::fd_count();
    let settle = Instant::now();
    while fds_after > fds_before && settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fds_after = sockets::fd_count();
    }
    assert!(
        fds_after <= fds_before,
        "file descriptors leaked: {fds_before} before, {fds_after} after"
    );
}

/// Both tests make namespaces and run commands (pipes are descriptors too):
/// one at a time, so the descriptor count of the first is its own.
static SERIAL: Mutex<()> = Mutex::const_new(());

#[test]
fn the_namespace_is_removed_even_when_the_test_panics() {
    let _serial = SERIAL.blocking_lock();
    let ns = Netns::create()
        .unwrap_or_else(|why| panic!("cannot build the network namespace this test needs: {why}"));
    let name = ns.name.clone();
    assert!(Netns::exists(&name), "namespace {name} was not made");
    let unwound = std::panic::catch_unwind(move || {
        let _owned = ns;
        panic!("a failing test body (this message is expected)");
    });
    assert!(unwound.is_err());
    assert!(
        !Netns::exists(&name),
        "namespace {name} left behind by a panicking test"
    );
}
