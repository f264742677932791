//! The fault matrix: every way a pooled connection dies, staged with real
//! loopback sockets against the reference server (through the fault proxy when
//! one member is to die alone), with callers working throughout.
//!
//! For each fault: (a) what callers see: `pool.get()` never fails while a live
//! connection can be had, and fails with the right typed error when none can;
//! (b) the pool evicts within heartbeat interval + timeout (three times over,
//! for a noisy machine), by the layer that should catch it; (c) afterwards
//! nothing leaked: the counts add up, all `max_size` members can be held at
//! once, and every socket on the test's ports is closed after teardown.
//!
//! Real time throughout (a proxy and a kernel are not on tokio's clock), with
//! short intervals; each test takes a few seconds.

mod fault_support;

use std::time::Duration;

use bytes::Bytes;
use fault_support::callers::Callers;
use fault_support::{
    HEARTBEAT_INTERVAL, MAX_SIZE, PATIENCE, REQUEST_TIMEOUT, Rig, WAIT_TIMEOUT, bind, borrow,
    builder, checked_status, detection_bound, echo, failures_since, sockets, time_to_evictions,
    wait_until,
};
use livepool::protocol::{ClientError, ServerMode};
use livepool::tcp::ConnectError;
use livepool::testing::Fault;
use livepool::{Cause, Condition, Error, EvictReason, Evictions, Phase};
use tokio::time::{Instant, sleep, timeout};

/// Callers per test: few enough that they only ever use the hot end of the
/// idle set, so a cold target is met by the pool's own watch first.
const CALLERS: usize = 2;

/// How long a caller gives `get` before calling it a hang.
fn get_limit() -> Duration {
    WAIT_TIMEOUT + Duration::from_secs(2)
}

/// Faults 1, 2, 3, 5: one idle member's connection is broken in the proxy.
/// The pool must evict exactly that member, for `expected`, in time; callers
/// never notice.
async fn one_member_dies(name: &str, fault: Fault, expected: EvictReason) -> Duration {
    let rig = Rig::through_proxy(builder(name)).await;
    let target = rig.cold_target().await;
    let callers = Callers::start(&rig.pool, CALLERS, get_limit());
    // Inject mid-cycle, with heartbeats and callers under way.
    sleep(HEARTBEAT_INTERVAL / 2).await;
    let before = checked_status(&rig.pool).counters.evicted;
    let injected = Instant::now();
    assert!(
        rig.proxy().fault_connection(target.proxy_conn, fault),
        "target connection {target:?} not live in the proxy"
    );
    let took = time_to_evictions(&rig.pool, &before, expected, 1, injected, detection_bound())
        .await
        .unwrap_or_else(|s| {
            panic!(
                "{fault:?}: no {expected} eviction within {:?}: {s:?}",
                detection_bound()
            )
        });
    // The evicted member is the target, and its socket is closed.
    let proxy_port = rig.pool_port();
    wait_until("the target's socket to close", PATIENCE, || {
        !sockets::open_tcp_sockets()
            .iter()
            .any(|s| s.local_port == target.local.port() && s.remote_port == proxy_port)
    })
    .await;
    // Callers carry on through a full heartbeat cycle after the eviction.
    sleep(HEARTBEAT_INTERVAL + fault_support::HEARTBEAT_TIMEOUT).await;
    let tally = callers.stop().await;
    assert_eq!(tally.get_errors(), Vec::<String>::new(), "{fault:?}");
    assert_eq!(
        tally.call_errors(),
        Vec::<String>::new(),
        "{fault:?}: the target was cold; no caller should have met it"
    );
    assert!(
        tally.calls_ok() > 10,
        "callers made too few calls: {tally:?}"
    );
    let after = checked_status(&rig.pool);
    assert_eq!(
        failures_since(&after.counters.evicted, &before),
        1,
        "{fault:?}: only the target should be evicted: {after:?}"
    );
    rig.assert_recovered().await;
    rig.teardown().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f01_peer_reset_is_evicted_by_the_sentinels_cheap_check() {
    let took = one_member_dies("f01-reset", Fault::Reset, EvictReason::BrokenWhileIdle).await;
    // No heartbeat is needed: the RST shows on the next sentinel tick.
    assert!(took < HEARTBEAT_INTERVAL, "RST noticed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02_peer_fin_is_evicted_by_the_sentinels_cheap_check() {
    let took = one_member_dies("f02-fin", Fault::Close, EvictReason::BrokenWhileIdle).await;
    assert!(took < HEARTBEAT_INTERVAL, "FIN noticed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f03_silent_blackhole_is_evicted_by_a_heartbeat_timeout() {
    one_member_dies(
        "f03-blackhole",
        Fault::Blackhole,
        EvictReason::ProbeTimedOut,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05_heartbeat_answered_after_the_timeout_is_evicted() {
    // Delay applies each way: the answer comes after twice the timeout.
    let fault = Fault::Delay(fault_support::HEARTBEAT_TIMEOUT);
    one_member_dies("f05-late", fault, EvictReason::ProbeTimedOut).await;
}

/// Faults 4 and 6: the server's application misbehaves on every connection.
/// The in-band heartbeat must catch it (`expected`) within the bound;
/// callers' calls fail (their own signal) but `get` never does.
///
/// `callers_first`: whether callers are already busy when the fault starts.
/// A fault that fails calls instantly (a wrong reply id) is found by the
/// callers' own traffic long before a heartbeat is due, and since connects
/// prove the application with a heartbeat, no replacement connects while it
/// lasts; so for it, the heartbeat layer is shown on an idle pool and the
/// callers join once it has been caught.
async fn server_misbehaves(
    name: &str,
    mode: ServerMode,
    expected: EvictReason,
    callers_first: bool,
) {
    let rig = Rig::direct(builder(name)).await;
    rig.wait_full().await;
    let mut callers = callers_first.then(|| Callers::start(&rig.pool, CALLERS, get_limit()));
    sleep(HEARTBEAT_INTERVAL / 2).await;
    let before = checked_status(&rig.pool).counters.evicted;
    let injected = Instant::now();
    rig.server.set_mode(mode);
    time_to_evictions(&rig.pool, &before, expected, 1, injected, detection_bound())
        .await
        .unwrap_or_else(|s| {
            panic!(
                "{mode:?}: no {expected} eviction within {:?}: {s:?}",
                detection_bound()
            )
        });
    let callers = callers
        .take()
        .unwrap_or_else(|| Callers::start(&rig.pool, CALLERS, get_limit()));
    // Every member there was is gone in time, found by a heartbeat or by a
    // caller's own failed call.
    let all_gone = detection_bound() + REQUEST_TIMEOUT;
    wait_until("every original member to be evicted", all_gone, || {
        failures_since(&checked_status(&rig.pool).counters.evicted, &before) >= MAX_SIZE as u64
    })
    .await;
    rig.server.set_mode(ServerMode::Normal);
    let calls_before = callers.tally.calls_ok();
    // Give the callers a clean stretch after recovery.
    sleep(REQUEST_TIMEOUT + HEARTBEAT_INTERVAL).await;
    let tally = callers.stop().await;
    assert_eq!(tally.get_errors(), Vec::<String>::new(), "{mode:?}");
    assert!(
        !callers_first || !tally.call_errors().is_empty(),
        "{mode:?}: callers should have met the misbehaving server"
    );
    assert!(
        tally.calls_ok() > calls_before,
        "{mode:?}: no successful call after the server recovered: {tally:?}"
    );
    rig.assert_recovered().await;
    rig.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f04_hung_application_is_evicted_by_a_heartbeat_timeout() {
    server_misbehaves(
        "f04-hang",
        ServerMode::Hang,
        EvictReason::ProbeTimedOut,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f06_wrong_reply_id_is_evicted_by_a_failed_heartbeat() {
    server_misbehaves(
        "f06-wrong-id",
        ServerMode::WrongId,
        EvictReason::ProbeFailed,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f07_server_restart_every_member_dies_and_callers_never_see_it() {
    let mut rig = Rig::direct(builder("f07-restart")).await;
    rig.wait_full().await;
    let addr = rig.server.addr();
    let callers = Callers::start(&rig.pool, CALLERS, get_limit());
    sleep(HEARTBEAT_INTERVAL / 2).await;
    let before = checked_status(&rig.pool).counters;
    let injected = Instant::now();
    timeout(PATIENCE, rig.server.shutdown())
        .await
        .expect("the server shuts down in time");
    wait_until("every member to be evicted", detection_bound(), || {
        failures_since(&checked_status(&rig.pool).counters.evicted, &before.evicted)
            >= MAX_SIZE as u64
    })
    .await;
    let all_dead_after = injected.elapsed();
    // The outage lasts well under the callers' wait timeout.
    sleep(Duration::from_millis(600).saturating_sub(injected.elapsed())).await;
    assert!(
        checked_status(&rig.pool).counters.connect_failures > before.connect_failures,
        "the pool should have tried and failed to reconnect during the outage"
    );
    rig.server = bind(addr).await;
    let restarted = Instant::now();
    let calls_at_restart = callers.tally.calls_ok();
    wait_until("a call to succeed after the restart", WAIT_TIMEOUT, || {
        callers.tally.calls_ok() > calls_at_restart
    })
    .await;
    let first_call_after = restarted.elapsed();
    sleep(HEARTBEAT_INTERVAL).await;
    let tally = callers.stop().await;
    assert_eq!(
        tally.get_errors(),
        Vec::<String>::new(),
        "callers wait longer than the outage: get must not fail"
    );
    assert!(
        all_dead_after < detection_bound(),
        "members noticed dead after {all_dead_after:?}"
    );
    assert!(
        first_call_after < Duration::from_secs(2),
        "callers back {first_call_after:?} after the restart"
    );
    rig.assert_recovered().await;
    rig.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f08_connect_refused_backs_off_and_says_why_then_recovers() {
    let wait = Duration::from_millis(800);
    let mut rig = Rig::direct(builder("f08-refused").wait_timeout(wait)).await;
    rig.wait_full().await;
    let addr = rig.server.addr();
    let before = checked_status(&rig.pool).counters;
    timeout(PATIENCE, rig.server.shutdown())
        .await
        .expect("the server shuts down in time");
    wait_until("every member to be evicted", detection_bound(), || {
        failures_since(&checked_status(&rig.pool).counters.evicted, &before.evicted)
            >= MAX_SIZE as u64
    })
    .await;

    // Backoff: with nothing listening, refills fail at once; a busy loop
    // would fail thousands of times in two seconds. With 50 ms..500 ms
    // backoff and six places to refill, a round at most every 250 ms.
    let quiet_from = checked_status(&rig.pool).counters.connect_failures;
    sleep(Duration::from_secs(2)).await;
    let failed = checked_status(&rig.pool).counters.connect_failures - quiet_from;
    assert!(
        (1..=60).contains(&failed),
        "{failed} connect failures in 2 s: expected a few, backing off"
    );

    // Callers: a typed timeout that says the pool was connecting and why.
    let gets = (0..3).map(|_| {
        let pool = rig.pool.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = timeout(PATIENCE, pool.get()).await;
            (result.map(|r| r.map(|_| ())), started.elapsed())
        })
    });
    for get in futures_util::future::join_all(gets).await {
        let (result, took) = get.expect("the caller task does not panic");
        let error = match result {
            Ok(Err(error)) => error,
            Ok(Ok(())) => panic!("get succeeded with the server down"),
            Err(_) => panic!("get hung past its wait timeout of {wait:?}"),
        };
        let refused = matches!(
            &error,
            Error::Timeout {
                phase: Phase::Connecting,
                ..
            }
        ) && matches!(
            error.cause(),
            Some(Cause::Connect(ClientError::Connect(ConnectError::Io { source, .. })))
                if source.kind() == std::io::ErrorKind::ConnectionRefused
        );
        assert!(
            refused,
            "expected Timeout while connecting, caused by a refused connect; got {error:?} ({error})"
        );
        assert!(
            took >= wait - Duration::from_millis(50) && took < wait + Duration::from_secs(1),
            "get gave up after {took:?}, wait_timeout is {wait:?}"
        );
    }

    // Recovery once the server is back.
    rig.server = bind(addr).await;
    rig.wait_full().await;
    echo(&mut *borrow(&rig.pool).await, "back").await;
    rig.assert_recovered().await;
    rig.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f09_member_returned_after_a_cancelled_request_is_evicted_dirty() {
    let rig = Rig::through_proxy(builder("f09-dirty")).await;
    rig.wait_full().await;
    let callers = Callers::start(&rig.pool, CALLERS, get_limit());
    let mut conn = borrow(&rig.pool).await;
    rig.server
        .set_mode(ServerMode::Slow(Duration::from_millis(400)));
    let cut_short = timeout(
        Duration::from_millis(50),
        conn.call(Bytes::from_static(b"cut short")),
    )
    .await;
    rig.server.set_mode(ServerMode::Normal);
    assert!(cut_short.is_err(), "the call should still be in flight");
    assert_eq!(conn.condition(), Condition::Dirty);
    let before = checked_status(&rig.pool).counters.evicted;
    drop(conn);
    // Evicted on return, at once; callers' calls during the slow moment were
    // slow, not failed.
    assert_one_more_eviction(&rig, &before, EvictReason::Dirty);
    callers_saw_nothing(rig, callers).await;
}

/// The pool counted exactly one more eviction for `reason` since `before`.
fn assert_one_more_eviction(rig: &Rig, before: &Evictions, reason: EvictReason) {
    let after = checked_status(&rig.pool).counters.evicted;
    assert_eq!(
        after.get(reason),
        before.get(reason) + 1,
        "{reason}: {after:?}"
    );
}

/// After a fault that callers must not notice: a heartbeat interval of calm,
/// then no failed `get` and no failed call, and the pool back in full health.
async fn callers_saw_nothing(rig: Rig, callers: Callers) {
    sleep(HEARTBEAT_INTERVAL).await;
    let tally = callers.stop().await;
    assert_eq!(tally.get_errors(), Vec::<String>::new());
    assert_eq!(tally.call_errors(), Vec::<String>::new());
    rig.assert_recovered().await;
    rig.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f10_caller_panic_evicts_its_member_and_the_pool_carries_on() {
    let rig = Rig::through_proxy(builder("f10-panic")).await;
    rig.wait_full().await;
    let callers = Callers::start(&rig.pool, CALLERS, get_limit());
    let before = checked_status(&rig.pool).counters.evicted;
    let pool = rig.pool.clone();
    let panicked = tokio::spawn(async move {
        let conn = pool.get().await.expect("get succeeds");
        // A caller bug while it holds a member (the message below is expected).
        panic!(
            "caller bug while holding member {}",
            livepool::Pooled::id(&conn)
        );
    })
    .await;
    assert!(panicked.is_err_and(|e| e.is_panic()));
    assert_one_more_eviction(&rig, &before, EvictReason::CallerPanicked);
    callers_saw_nothing(rig, callers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_close_wakes_waiters_and_closes_borrowed_members_on_return() {
    let rig = Rig::direct(builder("f11-close")).await;
    rig.wait_full().await;
    let mut borrowed = Vec::new();
    for _ in 0..MAX_SIZE {
        borrowed.push(borrow(&rig.pool).await);
    }
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = rig.pool.clone();
            tokio::spawn(async move { timeout(PATIENCE, pool.get_owned()).await })
        })
        .collect();
    wait_until("three waiters to queue", PATIENCE, || {
        checked_status(&rig.pool).waiters == 3
    })
    .await;

    rig.pool.close();
    for waiter in waiters {
        match waiter.await.expect("the waiter task does not panic") {
            Ok(Err(Error::Closed)) => {}
            Ok(Err(e)) => panic!("a waiter should get Error::Closed, got {e:?}"),
            Ok(Ok(_)) => panic!("a waiter got a member from a closed pool"),
            Err(_) => panic!("a waiter was left hanging by close"),
        }
    }
    assert!(matches!(rig.pool.get().await, Err(Error::Closed)));
    // Closing takes nothing from a caller: borrowed members still work.
    let s = checked_status(&rig.pool);
    assert_eq!(
        (s.in_use, s.size, s.waiters),
        (MAX_SIZE, MAX_SIZE, 0),
        "{s:?}"
    );
    assert_eq!(rig.server.connections(), MAX_SIZE);
    let reply = timeout(
        PATIENCE,
        borrowed[0].call(Bytes::from_static(b"still mine")),
    )
    .await
    .expect("call answers in time")
    .expect("a borrowed member still works after close");
    assert_eq!(reply, "still mine");

    let before = s.counters.evicted.get(EvictReason::Closed);
    drop(borrowed);
    let s = checked_status(&rig.pool);
    assert_eq!(s.size, 0, "{s:?}");
    assert_eq!(
        s.counters.evicted.get(EvictReason::Closed),
        before + MAX_SIZE as u64
    );
    wait_until("the server to see every connection close", PATIENCE, || {
        rig.server.connections() == 0
    })
    .await;
    rig.teardown().await;
}

/// A manager for a line protocol (`PING` → `PONG`, `GET k` → `VALUE k`) that,
/// like most real clients, keeps no request bookkeeping of its own and trusts
/// the pool's default `condition()`: what the pool's promise "a heartbeat cut
/// off half way is evicted" (see `Manager::heartbeat`) exists for.
mod line {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use livepool::Manager;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    pub struct LineManager(pub SocketAddr);

    impl Manager for LineManager {
        type Connection = BufReader<TcpStream>;
        type Error = std::io::Error;

        async fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
            Ok(BufReader::new(TcpStream::connect(self.0).await?))
        }

        async fn heartbeat(&self, conn: &mut BufReader<TcpStream>) -> std::io::Result<()> {
            match request(conn, "PING").await?.as_str() {
                "PONG" => Ok(()),
                other => Err(std::io::Error::other(format!(
                    "heartbeat answered {other:?}"
                ))),
            }
        }
    }

    /// Writes one line, reads one line.
    pub async fn request(conn: &mut BufReader<TcpStream>, line: &str) -> std::io::Result<String> {
        conn.get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        let mut answer = String::new();
        if conn.read_line(&mut answer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(answer.trim_end().to_owned())
    }

    /// Serves the line protocol; answers the next `PING` after `slow_ping`
    /// is set 300 ms late (a GC pause), in order, like any real server.
    pub async fn serve() -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slow_ping = Arc::new(AtomicBool::new(false));
        let slow = Arc::clone(&slow_ping);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let slow = Arc::clone(&slow);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let mut line = String::new();
                    while matches!(stream.read_line(&mut line).await, Ok(1..)) {
                        let answer = match line.trim_end() {
                            "PING" => {
                                if slow.swap(false, Ordering::SeqCst) {
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                }
                                "PONG\n".to_owned()
                            }
                            other => format!("VALUE {}\n", other.trim_start_matches("GET ")),
                        };
                        line.clear();
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, slow_ping, task)
    }
}

/// Pool bug: with `heartbeat_failures` above 1, a heartbeat that timed out is
/// kept as a suspect and re-probed on the same stream, although its reply may
/// still be on the way. The re-probe reads the late `PONG` of the first
/// heartbeat and passes; the member goes back to the idle set with the
/// re-probe's own `PONG` in flight, and the next caller reads `PONG` as the
/// answer to its `GET` (invariant 5). A timed-out heartbeat must evict at
/// once whatever `heartbeat_failures` says (only an error answer that leaves
/// the stream in step may be retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05b_a_timed_out_heartbeat_evicts_even_when_more_failures_are_allowed() {
    use std::sync::atomic::Ordering;

    let (addr, slow_ping, server) = line::serve().await;
    let pool = livepool::Pool::builder()
        .name("f05b-late-pong")
        .max_size(1)
        .min_idle(1)
        .heartbeat_interval(HEARTBEAT_INTERVAL)
        .heartbeat_timeout(fault_support::HEARTBEAT_TIMEOUT)
        .heartbeat_failures(2)
        .build(line::LineManager(addr))
        .unwrap();
    wait_until("the pool to fill", PATIENCE, || pool.status().idle == 1).await;
    slow_ping.store(true, Ordering::SeqCst);
    wait_until("a heartbeat to time out", PATIENCE, || {
        pool.status().counters.probes_failed >= 1
    })
    .await;
    // Past the re-probe of a suspect (retried after one heartbeat timeout).
    sleep(fault_support::HEARTBEAT_TIMEOUT * 3).await;
    let mut conn = timeout(PATIENCE, pool.get())
        .await
        .expect("get answers in time")
        .expect("get succeeds");
    let answer = timeout(PATIENCE, line::request(&mut conn, "GET a"))
        .await
        .expect("the server answers in time")
        .expect("the request succeeds");
    let status = pool.status();
    assert_eq!(
        answer, "VALUE a",
        "a caller read another request's answer: {status:?}"
    );
    assert_eq!(
        status.counters.evicted.get(EvictReason::ProbeTimedOut),
        1,
        "{status:?}"
    );
    drop(conn);
    pool.close();
    server.abort();
}
