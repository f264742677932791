//! The soak: 16 callers on one pool for `LIVEPOOL_SOAK_SECS` seconds (60 by
//! default) while random faults hit it through the fault proxy and the
//! server: reset, close, blackhole and delay of one connection, refused
//! connects, a hung server, replies with the wrong id, a server restart.
//! Callers also cut some of their own `get`s and calls short, so cancelled
//! waiters and members returned mid-request are part of the mix.
//!
//! Asserted: no caller ever gets a reply that is not its own (0 wrong
//! replies); `status()` adds up at every sample (taken every few
//! milliseconds throughout); once the faults stop the pool heals (full
//! again, every caller served) within [`HEAL_BOUND`]; and then the process
//! has the file descriptors and the pool the places it started with. The
//! figures are printed (`cargo test --test soak -- --nocapture`).
//!
//! The seed is printed and can be replayed with `LIVEPOOL_SOAK_SEED`.

mod fault_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fault_support::{MAX_SIZE, PATIENCE, Rig, bind, builder, sockets, wait_until};
use livepool::protocol::{RpcManager, ServerMode};
use livepool::testing::Fault;
use livepool::{EvictReason, Pool, Pooled, Status};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

const CALLERS: usize = 16;
/// How long a caller gives `get` before it gives up (counted, not a
/// failure while faults run: a refused or hung server can starve it).
const GET_LIMIT: Duration = Duration::from_secs(5);
/// From the last fault's end to a full pool and every caller served: the
/// detection bound of the fault rig (3 × (interval + timeout)) plus the
/// longest refill backoff and a request timeout, doubled for a loaded machine.
const HEAL_BOUND: Duration = Duration::from_secs(10);
/// How often `status()` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(3);

fn soak_duration() -> Duration {
    let secs = std::env::var("LIVEPOOL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs.max(1))
}

fn seed() -> u64 {
    std::env::var("LIVEPOOL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// What the callers saw, summed over all of them.
#[derive(Default)]
struct Tally {
    gets_ok: AtomicU64,
    /// `get` failed or took longer than [`GET_LIMIT`].
    gets_failed: AtomicU64,
    /// `get` cut short on purpose (a cancelled checkout).
    gets_cancelled: AtomicU64,
    calls_ok: AtomicU64,
    /// The call failed: the caller's own traffic met a fault.
    calls_failed: AtomicU64,
    /// The call cut short on purpose (the member goes back dirty).
    calls_cancelled: AtomicU64,
    /// A reply that was not the answer to this caller's request.
    wrong_replies: Mutex<Vec<String>>,
}

impl Tally {
    fn served(&self) -> u64 {
        self.calls_ok.load(Ordering::Relaxed)
    }
}

/// One caller's loop: borrow, call with a body no other call sends, check
/// the answer, return; now and then cut a `get` or a call short.
async fn caller(pool: Pool<RpcManager>, tally: Arc<Tally>, stop: Arc<AtomicBool>, n: usize) {
    let mut rng = fastrand::Rng::with_seed(n as u64);
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let cut_get = rng.u8(..) < 8;
        let limit = if cut_get {
            Duration::from_micros(rng.u64(50..3_000))
        } else {
            GET_LIMIT
        };
        let mut conn = match timeout(limit, pool.get()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(_)) => {
                tally.gets_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(_) if cut_get => {
                tally.gets_cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(_) => {
                tally.gets_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        tally.gets_ok.fetch_add(1, Ordering::Relaxed);
        let body = Bytes::from(format!("caller {n} round {round}"));
        let cut_call = rng.u8(..) < 8;
        let limit = if cut_call {
            Duration::from_micros(rng.u64(20..2_000))
        } else {
            PATIENCE
        };
        match timeout(limit, conn.call(body.clone())).await {
            Ok(Ok(reply)) if reply == body => {
                tally.calls_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(reply)) => {
                Pooled::mark_broken(&mut conn);
                tally
                    .wrong_replies
                    .lock()
                    .unwrap()
                    .push(format!("sent {body:?}, got {reply:?}"));
            }
            Ok(Err(_)) => {
                Pooled::mark_broken(&mut conn);
                tally.calls_failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                // Dropped mid-request: the pool must see it dirty.
                tally.calls_cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(conn);
        sleep(Duration::from_millis(rng.u64(0..4))).await;
    }
}

/// The full ledger: every place has one holder, none above `max_size`,
/// and members made minus members gone is members alive.
fn consistent(s: &Status) -> Result<(), String> {
    let held = s.idle + s.in_use + s.probing + s.connecting + s.closing + s.returning;
    if s.size != held {
        return Err(format!("size {} but {held} held: {s:?}", s.size));
    }
    if s.size > s.max_size {
        return Err(format!("size above max_size: {s:?}"));
    }
    let alive = (s.size - s.connecting - s.closing) as u64;
    if s.counters.created.checked_sub(s.counters.evicted.total()) != Some(alive) {
        return Err(format!("created - evicted != members alive: {s:?}"));
    }
    Ok(())
}

/// The faults, one at a time, each for a random stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Reset,
    Close,
    Blackhole,
    Delay,
    Refuse,
    Hang,
    WrongId,
    Restart,
}

const KINDS: [Kind; 8] = [
    Kind::Reset,
    Kind::Close,
    Kind::Blackhole,
    Kind::Delay,
    Kind::Refuse,
    Kind::Hang,
    Kind::WrongId,
    Kind::Restart,
];

/// Injects one fault of `kind`, holds it `hold`, then lifts it.
async fn inject(rig: &mut Rig, kind: Kind, hold: Duration, rng: &mut fastrand::Rng) {
    let proxy = rig.proxy();
    let mut one_connection = |fault| {
        let live = proxy.connections();
        if !live.is_empty() {
            let target = live[rng.usize(..live.len())].id;
            proxy.fault_connection(target, fault);
        }
    };
    match kind {
        Kind::Reset => one_connection(Fault::Reset),
        Kind::Close => one_connection(Fault::Close),
        Kind::Blackhole => one_connection(Fault::Blackhole),
        Kind::Delay => one_connection(Fault::Delay(Duration::from_millis(200))),
        Kind::Refuse => proxy.set_refusing(true),
        Kind::Hang => rig.server.set_mode(ServerMode::Hang),
        Kind::WrongId => rig.server.set_mode(ServerMode::WrongId),
        Kind::Restart => {
            let addr = rig.server.addr();
            timeout(PATIENCE, rig.server.shutdown())
                .await
                .expect("the server shuts down in time");
            sleep(hold).await;
            rig.server = bind(addr).await;
            return;
        }
    }
    sleep(hold).await;
    match kind {
        Kind::Refuse => rig.proxy().set_refusing(false),
        Kind::Hang | Kind::WrongId => rig.server.set_mode(ServerMode::Normal),
        // A blackholed or delayed connection stays so until it is evicted:
        // the pool must notice it, not the test lift it.
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_faults_with_16_callers() {
    let duration = soak_duration();
    let seed = seed();
    println!("soak: {duration:?}, {CALLERS} callers, seed {seed} (LIVEPOOL_SOAK_SEED)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut rig = Rig::through_proxy(builder("soak")).await;
    rig.wait_full().await;
    let fds_at_start = sockets::fd_count();
    let start_status = rig.pool.status();
    consistent(&start_status).unwrap();

    // Every few milliseconds, from start to finish: the ledger adds up.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let pool = rig.pool.clone();
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let (mut samples, mut bad) = (0u64, Vec::new());
            while sampling.load(Ordering::Relaxed) {
                samples += 1;
                if let Err(e) = consistent(&pool.status()) {
                    bad.push(e);
                }
                sleep(SAMPLE_EVERY).await;
            }
            (samples, bad)
        })
    };

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = JoinSet::new();
    for n in 0..CALLERS {
        callers.spawn(caller(
            rig.pool.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
            n,
        ));
    }

    let started = Instant::now();
    let mut injected: BTreeMap<Kind, u32> = BTreeMap::new();
    while started.elapsed() < duration {
        let kind = KINDS[rng.usize(..KINDS.len())];
        let hold = Duration::from_millis(rng.u64(100..900));
        inject(&mut rig, kind, hold, &mut rng).await;
        *injected.entry(kind).or_default() += 1;
        sleep(Duration::from_millis(rng.u64(50..500))).await;
    }
    // Faults over: lift any left on live connections.
    rig.proxy().set_fault(Fault::Pass);
    let faults_ended = Instant::now();
    let served_at_end = tally.served();

    // Healed: the pool full again and every caller served once more.
    let healed = async {
        loop {
            let s = rig.pool.status();
            if s.size == MAX_SIZE && tally.served() >= served_at_end + CALLERS as u64 * 2 {
                return faults_ended.elapsed();
            }
            sleep(Duration::from_millis(5)).await;
        }
    };
    let heal_time = timeout(HEAL_BOUND, healed).await.unwrap_or_else(|_| {
        panic!(
            "not healed {HEAL_BOUND:?} after the faults stopped: {:?}",
            rig.pool.status()
        )
    });

    stop.store(true, Ordering::Relaxed);
    let joined = timeout(Duration::from_secs(15), async {
        while let Some(result) = callers.join_next().await {
            result.expect("a caller panicked");
        }
    })
    .await;
    assert!(joined.is_ok(), "callers did not stop: a get or call hangs");
    sampling.store(false, Ordering::Relaxed);
    let (samples, bad_samples) = sampler.await.expect("the sampler panicked");

    // Back to the start: every place idle again, the same descriptors.
    wait_until("the pool to be full and idle", PATIENCE, || {
        let s = rig.pool.status();
        s.size == MAX_SIZE && s.idle == MAX_SIZE
    })
    .await;
    let mut fds_at_end = 0;
    let fds_settled = timeout(PATIENCE, async {
        loop {
            fds_at_end = sockets::fd_count();
            if fds_at_end == fds_at_start {
                return;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let end_status = rig.pool.status();

    let wrong = tally.wrong_replies.lock().unwrap().clone();
    let evicted: Vec<String> = EvictReason::ALL
        .iter()
        .filter_map(|r| {
            let n = end_status.counters.evicted.get(*r);
            (n > 0).then(|| format!("{r} {n}"))
        })
        .collect();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!("soak: faults injected {injected:?}");
    println!(
        "soak: gets ok {}, failed {}, cancelled {}; calls ok {}, failed {}, cancelled {}; wrong replies {}",
        load(&tally.gets_ok),
        load(&tally.gets_failed),
        load(&tally.gets_cancelled),
        load(&tally.calls_ok),
        load(&tally.calls_failed),
        load(&tally.calls_cancelled),
        wrong.len()
    );
    println!(
        "soak: status samples {samples}, inconsistent {}; members created {}, evicted: {}",
        bad_samples.len(),
        end_status.counters.created,
        evicted.join(", ")
    );
    println!(
        "soak: healed {heal_time:?} after the faults stopped (bound {HEAL_BOUND:?}); fds {fds_at_start} at start, {fds_at_end} at end; places {} of {} idle",
        end_status.idle, end_status.max_size
    );

    assert_eq!(
        wrong,
        Vec::<String>::new(),
        "callers got replies not theirs"
    );
    assert_eq!(
        bad_samples.first(),
        None,
        "status() did not add up ({} bad samples)",
        bad_samples.len()
    );
    assert!(
        fds_settled.is_ok(),
        "{fds_at_end} file descriptors at the end, {fds_at_start} at the start"
    );
    consistent(&end_status).unwrap();
    assert_eq!(
        (end_status.size, end_status.idle, end_status.in_use),
        (start_status.size, start_status.idle, start_status.in_use),
        "places not back to where they started"
    );
    assert!(
        load(&tally.calls_ok) > 0 && load(&tally.calls_failed) > 0,
        "the soak should both serve calls and meet faults"
    );
    rig.assert_recovered().await;
    rig.teardown().await;
}
