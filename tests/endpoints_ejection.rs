//! Outlier ejection and fail-fast against reference servers behind the
//! fault proxy: an endpoint whose connects and heartbeats fail in a row
//! leaves rotation for a jittered, growing time, never more than the
//! configured share at once, and comes back when it heals; when every
//! endpoint is down `get` fails at once with each endpoint's cause.

mod endpoints_support;

use std::time::{Duration, Instant};

use endpoints_support::{Backend, Callers, PATIENCE, Set, eventually, fixed_set};
use livepool::endpoints::{Error, Want};
use livepool::testing::Fault;

async fn backends(n: usize) -> (Vec<Backend>, Set) {
    let mut backends = Vec::new();
    for _ in 0..n {
        backends.push(Backend::start().await);
    }
    let keys = ["a", "b", "c", "d"];
    let set = fixed_set(
        backends
            .iter()
            .zip(keys)
            .map(|(b, k)| (k.to_string(), b.addr()))
            .collect(),
    );
    eventually("every endpoint has idle members", || {
        set.status().endpoints.iter().all(|e| e.pool.idle >= 1)
    })
    .await;
    (backends, set)
}

/// The server goes down: live connections reset, new ones refused.
fn take_down(backend: &Backend) {
    backend.proxy.set_refusing(true);
    backend.proxy.set_fault(Fault::Reset);
}

fn bring_up(backend: &Backend) {
    backend.proxy.set_fault(Fault::Pass);
    backend.proxy.set_refusing(false);
}

/// The longest remaining ejection seen while polling `key` until its
/// ejection ends.
async fn ejection_seen(set: &Set, key: &str) -> Duration {
    let key = key.to_string();
    eventually("ejected", || {
        set.endpoint_status(&key)
            .is_some_and(|s| s.ejected_for.is_some())
    })
    .await;
    let mut longest = Duration::ZERO;
    let deadline = Instant::now() + PATIENCE;
    while let Some(left) = set.endpoint_status(&key).and_then(|s| s.ejected_for) {
        longest = longest.max(left);
        assert!(Instant::now() < deadline, "ejection never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    longest
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_for_growing_times_and_comes_back() {
    let (backends, set) = backends(4).await;
    take_down(&backends[3]);
    // base 300 ms ±20 %, then 600 ms ±20 %: the second is longer whatever
    // the jitter drew, and each within its jitter band.
    let first = ejection_seen(&set, "d").await;
    let second = ejection_seen(&set, "d").await;
    assert!(first <= Duration::from_millis(360), "first {first:?}");
    assert!(
        second > Duration::from_millis(400) && second <= Duration::from_millis(720),
        "second {second:?}"
    );
    let status = set.endpoint_status(&"d".to_string()).unwrap();
    assert!(status.last_failure.is_some(), "{status:?}");
    assert!(status.failures_in_row >= 3, "{status:?}");

    // While d is out, callers are served by the others without error.
    let callers = Callers::start(&set, 8, Want::Any, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    bring_up(&backends[3]);
    eventually("d back in rotation", || {
        set.endpoint_status(&"d".to_string())
            .is_some_and(|s| !s.down && s.failures_in_row == 0)
    })
    .await;
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = callers.stop().await;
    let errors: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let on_d = outcomes
        .iter()
        .filter(|o| o.started > back && o.endpoint.as_deref() == Some("d"))
        .count();
    assert!(on_d > 0, "d serves again once healed");
}

#[tokio::test]
async fn never_more_than_the_configured_share_is_ejected() {
    let (backends, set) = backends(4).await;
    for backend in &backends[1..] {
        take_down(backend);
    }
    // max_share 0.5 of 4: at most 2 ejected, though 3 are failing.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut most = 0;
    let mut down_most = 0;
    while Instant::now() < deadline {
        let status = set.status();
        most = most.max(status.ejected);
        down_most = down_most.max(status.down);
        assert!(
            status.ejected <= 2,
            "{} ejected: {status:?}",
            status.ejected
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(most, 2, "the cap is reached, not undershot");
    assert!(down_most >= 3, "all three failing ones are down");
    // The healthy one still serves.
    for _ in 0..20 {
        let member = set.get(Want::Any).await.expect("a serves");
        assert_eq!(livepool::endpoints::Member::endpoint(&member), "a");
    }
}

#[tokio::test]
async fn when_every_endpoint_is_down_get_fails_fast_with_each_cause() {
    let (backends, set) = backends(3).await;
    for backend in &backends {
        take_down(backend);
    }
    eventually("every endpoint down", || set.status().down == 3).await;
    let started = Instant::now();
    let err = set.get(Want::Any).await.expect_err("nothing is up");
    let took = started.elapsed();
    // wait_timeout is PATIENCE (5 s): failing fast means well before it.
    assert!(took < Duration::from_millis(100), "took {took:?}");
    match &err {
        Error::AllDown { endpoints } => {
            let mut keys: Vec<_> = endpoints.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort();
            assert_eq!(keys, ["a", "b", "c"]);
            assert!(
                endpoints.iter().all(|(_, cause)| cause.is_some()),
                "every endpoint carries its last cause: {err:?}"
            );
        }
        other => panic!("expected AllDown, got {other:?}"),
    }
    assert_eq!(err.to_string(), "every endpoint is down (3 endpoints)");
    assert!(std::error::Error::source(&err).is_some());

    // Healed, the set serves again without a rebuild.
    for backend in &backends {
        bring_up(backend);
    }
    let member = tokio::time::timeout(PATIENCE, async {
        loop {
            match set.get(Want::Any).await {
                Ok(member) => break member,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("serves again once healed");
    drop(member);
}
