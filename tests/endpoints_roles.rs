//! Role routing against reference servers: after a failover (the primary
//! demoted, a replica promoted) a member on the old primary is evicted at
//! its next heartbeat and, from one heartbeat interval plus timeout on,
//! never handed to a caller that asks for a primary, even while callers
//! keep every member busy.

mod endpoints_support;

use std::time::{Duration, Instant};

use endpoints_support::{Callers, HEARTBEAT, PATIENCE, TIMEOUT, fixed_set, server};
use livepool::endpoints::{Member, Want};
use livepool::{EvictReason, Role};

#[tokio::test]
async fn after_a_failover_the_old_primary_serves_no_primary_checkout() {
    let a = server().await;
    let b = server().await;
    b.set_role(Role::Replica);
    let set = fixed_set(vec![("a".into(), a.addr()), ("b".into(), b.addr())]);
    for _ in 0..10 {
        let member = set.get(Want::Primary).await.unwrap();
        assert_eq!(Member::endpoint(&member), "a");
        assert_eq!(Member::role(&member), Some(Role::Primary));
    }
    // The set learns an endpoint's role from the members it hands out.
    let started = Instant::now();
    while set.endpoint_status(&"b".to_string()).unwrap().role != Some(Role::Replica) {
        assert!(started.elapsed() < PATIENCE, "b's role never learnt");
        drop(set.get(Want::Any).await.unwrap());
    }
    for _ in 0..10 {
        let reader = set.get(Want::PreferReplica).await.unwrap();
        assert_eq!(Member::endpoint(&reader), "b");
    }

    // Writers in a loop keep a's members busy through the failover.
    let writers = Callers::start(&set, 6, Want::Primary, Duration::from_micros(200));
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.set_role(Role::Replica);
    b.set_role(Role::Primary);
    let failover = Instant::now();
    // Heartbeats are jittered by up to 10 %, checkouts probe at validate_after.
    let bound = HEARTBEAT + HEARTBEAT / 10 + TIMEOUT;
    tokio::time::sleep(bound + Duration::from_millis(700)).await;
    let outcomes = writers.stop().await;

    let late: Vec<_> = outcomes
        .iter()
        .filter(|o| o.started > failover + bound && o.endpoint.as_deref() == Some("a"))
        .collect();
    let stale = outcomes
        .iter()
        .filter(|o| o.started > failover && o.endpoint.as_deref() == Some("a"))
        .count();
    let on_b = outcomes
        .iter()
        .filter(|o| o.started > failover + bound && o.endpoint.as_deref() == Some("b"))
        .count();
    println!(
        "failover: {stale} primary checkouts on the demoted a before detection, {} after {bound:?}, {on_b} on the promoted b",
        late.len()
    );
    assert!(
        late.is_empty(),
        "{} primary checkouts reached the demoted server after {bound:?}",
        late.len()
    );
    assert!(on_b > 0, "writes moved to the promoted server");
    let errors: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let status = set.endpoint_status(&"a".to_string()).unwrap();
    assert_eq!(status.role, Some(Role::Replica));
    let evicted = status.pool.counters.evicted;
    assert!(
        evicted.get(EvictReason::ProbeFailed) + evicted.get(EvictReason::Drained) > 0,
        "a's members were evicted for the role change: {evicted:?}"
    );
}

#[tokio::test]
async fn a_member_in_constant_use_still_learns_of_the_role_change() {
    let a = server().await;
    let set = livepool::endpoints::Endpoints::builder()
        .name("busy")
        .pool(endpoints_support::pool().max_size(2).min_idle(0))
        .wait_timeout(Duration::from_millis(300))
        .build(
            livepool::endpoints::discover::fixed([("a".to_string(), a.addr())]),
            endpoints_support::manager,
        )
        .unwrap();
    // More callers than members: a returned member goes straight to the
    // next caller and is never idle when the sentinel looks.
    let writers = Callers::start(&set, 4, Want::Primary, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.set_role(Role::Replica);
    let demoted = Instant::now();
    let bound = HEARTBEAT + HEARTBEAT / 10 + TIMEOUT;
    tokio::time::sleep(bound + Duration::from_millis(500)).await;
    let outcomes = writers.stop().await;
    let served_before = outcomes
        .iter()
        .filter(|o| o.started < demoted && o.error.is_none())
        .count();
    let handed_after: Vec<_> = outcomes
        .iter()
        .filter(|o| o.started > demoted + bound && o.endpoint.is_some())
        .collect();
    println!(
        "busy members: {served_before} served before the demotion, {} primary checkouts handed out after {bound:?}",
        handed_after.len()
    );
    assert!(served_before > 0);
    assert!(
        handed_after.is_empty(),
        "{} members of the demoted server handed to primary callers after {bound:?}",
        handed_after.len()
    );
}
