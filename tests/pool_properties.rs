//! Random sequences of get / return / mark broken / make a connection die /
//! cancel a get / close, checking after every step that members never exceed
//! max_size, no member has two owners, no member is handed out after it failed
//! a probe, and the counters add up. A second property runs the same
//! sequences on pools built from random configurations, edge values
//! included (zero, one nanosecond, `Duration::MAX`): either the builder
//! refuses the configuration with an error naming the field, or nothing
//! panics, hangs or waits past `wait_timeout` plus one sentinel tick.

mod support;

use std::time::Duration;

use livepool::{Builder, Error, Pool, Pooled};
use proptest::prelude::*;
use support::{Death, FakeManager, assert_consistent};
use tokio::time::{sleep, timeout};

#[derive(Debug, Clone)]
enum Op {
    Get,
    TryGet,
    Return(usize),
    MarkBroken(usize),
    ReturnDirty(usize),
    Kill(u64, bool),
    CancelGet,
    Advance(u64),
    ConnectFails(bool),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Get),
        2 => Just(Op::TryGet),
        5 => any::<usize>().prop_map(Op::Return),
        1 => any::<usize>().prop_map(Op::MarkBroken),
        1 => any::<usize>().prop_map(Op::ReturnDirty),
        2 => (0u64..12, any::<bool>()).prop_map(|(id, visible)| Op::Kill(id, visible)),
        2 => Just(Op::CancelGet),
        3 => (1u64..8_000).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::ConnectFails),
        1 => Just(Op::Close),
    ]
}

const MAX: usize = 4;

fn typical() -> Builder {
    Pool::builder()
        .max_size(MAX)
        .min_idle(1)
        .wait_timeout(Duration::from_millis(500))
        .heartbeat_interval(Duration::from_secs(2))
        .heartbeat_timeout(Duration::from_millis(200))
        .validate_after(Duration::from_secs(3))
        .idle_timeout(Some(Duration::from_secs(20)))
        .max_lifetime(Some(Duration::from_secs(40)))
}

/// Durations at the edges and in between.
fn duration() -> impl Strategy<Value = Duration> {
    // Zero is refused for most fields, so it comes up rarely enough that
    // most configurations build and run.
    prop_oneof![
        1 => Just(Duration::ZERO),
        3 => Just(Duration::from_nanos(1)),
        3 => Just(Duration::from_millis(1)),
        3 => Just(Duration::from_millis(200)),
        3 => Just(Duration::from_secs(2)),
        3 => Just(Duration::from_secs(30)),
        4 => Just(Duration::MAX),
    ]
}

prop_compose! {
    fn config()(
        d in prop::collection::vec(duration(), 12),
        off in prop::collection::vec(any::<bool>(), 3),
    ) -> Builder {
        let mut b = typical()
            .wait_timeout(d[0])
            .connect_timeout(d[1])
            .validate_after(d[2])
            .heartbeat_timeout(d[3])
            .idle_timeout((!off[0]).then_some(d[4]))
            .max_lifetime((!off[1]).then_some(d[5]))
            .refill_backoff_min(d[6])
            .refill_backoff_max(d[7])
            .close_timeout(d[8])
            .heartbeat_interval(d[9]);
        if off[2] {
            b = b.no_heartbeats();
        }
        b
    }
}

async fn run(ops: Vec<Op>, builder: Builder) {
    let manager = FakeManager::new();
    let wait_timeout = builder.config().wait_timeout;
    let pool = match builder.build(manager.clone()) {
        Ok(pool) => pool,
        Err(refused) => {
            // Refused at build time, saying why: fine.
            assert!(!refused.to_string().is_empty());
            return;
        }
    };
    // What a get() may take at most: wait_timeout plus two sentinel ticks
    // (each at most 250 ms: the coarse clock's lag, and the tick that
    // enforces the deadline); `None` where the wait has no limit.
    let bound = (wait_timeout < Duration::from_secs(3600))
        .then(|| wait_timeout + Duration::from_millis(2 * 250 + 5));
    let mut held: Vec<Pooled<'_, FakeManager>> = Vec::new();
    let mut closed = false;
    for op in ops {
        match op {
            Op::Get | Op::TryGet => {
                let get = async {
                    if matches!(op, Op::Get) {
                        pool.get().await
                    } else {
                        pool.try_get().await
                    }
                };
                let got = match bound {
                    Some(bound) => timeout(bound, get)
                        .await
                        .unwrap_or_else(|_| panic!("get() took longer than {bound:?}")),
                    // No limit on the wait: a full pool would wait for ever.
                    None => match timeout(Duration::from_secs(5), get).await {
                        Ok(got) => got,
                        Err(_) => continue,
                    },
                };
                match got {
                    Ok(conn) => {
                        assert!(
                            !manager.failed_probe(conn.id),
                            "handed out {} after a failed probe",
                            conn.id
                        );
                        assert!(
                            !manager.visibly_dead(conn.id),
                            "handed out {}, which the cheap check sees dead",
                            conn.id
                        );
                        assert!(
                            !held.iter().any(|h| h.id == conn.id),
                            "member {} has two owners",
                            conn.id
                        );
                        held.push(conn);
                    }
                    Err(Error::Closed) => assert!(closed),
                    Err(Error::Exhausted) => assert!(matches!(op, Op::TryGet)),
                    Err(e) => assert!(e.is_timeout(), "{e:?}"),
                }
            }
            Op::Return(i) if !held.is_empty() => drop(held.swap_remove(i % held.len())),
            Op::MarkBroken(i) if !held.is_empty() => {
                let mut conn = held.swap_remove(i % held.len());
                Pooled::mark_broken(&mut conn);
            }
            Op::ReturnDirty(i) if !held.is_empty() => {
                held.swap_remove(i % held.len()).in_flight = true;
            }
            // Only connections that exist: a kill is something that happens to one.
            Op::Kill(id, visible) if id < manager.connects() => manager.kill(
                id,
                if visible {
                    Death::Visible
                } else {
                    Death::Silent
                },
            ),
            Op::CancelGet => {
                let _ = timeout(Duration::from_millis(1), pool.get()).await;
            }
            Op::Advance(ms) => sleep(Duration::from_millis(ms)).await,
            Op::ConnectFails(fails) => manager.set_connect_fails(fails),
            Op::Close => {
                pool.close();
                closed = true;
            }
            _ => {}
        }
        let status = pool.status();
        assert_consistent(&status);
        assert!(
            manager.max_open() <= MAX,
            "{} connections open at once",
            manager.max_open()
        );
        assert_eq!(status.in_use, held.len(), "{status:?}");
        assert_eq!(
            manager.open(),
            status.size - status.connecting,
            "connections open vs members: {status:?}"
        );
        assert!(status.closing <= status.size);
    }
    drop(held);
    pool.close();
    sleep(Duration::from_secs(1)).await;
    pool.close();
    let status = pool.status();
    assert_eq!(status.size, 0, "{status:?}");
    assert_eq!(manager.open(), 0, "leaked connections");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn pool_state_machine_holds_its_invariants(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(ops, typical()));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_configuration_is_refused_or_bounded(
        builder in config(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(ops, builder));
    }
}
