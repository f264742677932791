//! Discovery against reference servers: an inserted endpoint starts
//! serving; a removed one drains (no new checkouts, idle members closed at
//! once, a borrowed one closed when returned) and no caller sees an error.

mod endpoints_support;

use std::time::Duration;

use bytes::Bytes;
use endpoints_support::{Callers, PATIENCE, eventually, manager, pool, server};
use livepool::endpoints::{Balance, Endpoints, Member, Want, discover};

#[tokio::test]
async fn an_inserted_endpoint_serves_and_a_removed_one_drains_without_caller_errors() {
    let a = server().await;
    let b = server().await;
    let (changes, discovery) = discover::channel(8);
    let set = Endpoints::builder()
        .name("discovery")
        .pool(pool())
        .wait_timeout(PATIENCE)
        .balance(Balance::RoundRobin)
        .build(discovery, manager)
        .unwrap();
    changes.insert("a".to_string(), a.addr()).await.unwrap();
    let first = set.get(Want::Any).await.expect("a serves");
    assert_eq!(Member::endpoint(&first), "a");
    drop(first);

    // Insert b: it starts serving (round robin reaches it at once).
    changes.insert("b".to_string(), b.addr()).await.unwrap();
    eventually("b in the set", || set.status().live == 2).await;
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..4 {
        served.insert(Member::endpoint(&set.get(Want::Any).await.unwrap()).clone());
    }
    assert_eq!(served.len(), 2, "both endpoints serve: {served:?}");
    eventually("a keeps its idle members", || a.connections() >= 2).await;

    // Callers in a loop while a is removed with a member of it borrowed.
    let callers = Callers::start(&set, 4, Want::Any, Duration::from_millis(2));
    let mut borrowed = loop {
        let member = set.get(Want::Any).await.unwrap();
        if Member::endpoint(&member) == "a" {
            break member;
        }
    };
    changes.remove("a".to_string()).await.unwrap();
    eventually("a removed", || set.status().live == 1).await;
    let removed_at = std::time::Instant::now();
    // Idle members closed at once: only the borrowed one (and members the
    // callers still hold) stay open, and none comes back to the idle set.
    eventually("a's idle members closed", || {
        set.endpoint_status(&"a".to_string())
            .is_some_and(|s| s.removed && s.pool.idle == 0)
    })
    .await;
    // The borrowed member still works for its holder.
    assert_eq!(
        borrowed.call(Bytes::from_static(b"still")).await.unwrap(),
        "still"
    );
    eventually("only the borrowed member left on a", || {
        a.connections() == 1
    })
    .await;
    assert!(
        removed_at.elapsed() < Duration::from_secs(1),
        "idle members closed at once, not after {:?}",
        removed_at.elapsed()
    );
    let after_remove = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(borrowed);
    eventually("the borrowed member closed on return", || {
        a.connections() == 0
    })
    .await;
    eventually("a no longer listed", || {
        set.endpoint_status(&"a".to_string()).is_none()
    })
    .await;
    let outcomes = callers.stop().await;
    let errors: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(errors.is_empty(), "callers saw errors: {errors:?}");
    let late_on_a = outcomes
        .iter()
        .filter(|o| o.started > after_remove && o.endpoint.as_deref() == Some("a"))
        .count();
    assert_eq!(late_on_a, 0, "no checkout from a after its removal");
    assert!(
        outcomes.iter().filter(|o| o.started > after_remove).count() > 10,
        "callers kept being served by b"
    );
}

#[tokio::test]
async fn dns_re_resolution_follows_a_name_to_its_new_address() {
    let old = server().await;
    let new = server().await;
    let answer = std::sync::Arc::new(std::sync::Mutex::new(vec![old.addr()]));
    let resolver = {
        let answer = std::sync::Arc::clone(&answer);
        move || {
            let addrs = answer.lock().unwrap().clone();
            async move { Ok(addrs) }
        }
    };
    let set = Endpoints::builder()
        .name("dns")
        .pool(pool())
        .wait_timeout(PATIENCE)
        .build(
            discover::resolve_every(Duration::from_millis(50), 0.1, resolver),
            manager,
        )
        .unwrap();
    let member = set.get(Want::Any).await.unwrap();
    assert_eq!(*Member::endpoint(&member), old.addr());
    drop(member);
    *answer.lock().unwrap() = vec![new.addr()];
    eventually("the old address drained", || old.connections() == 0).await;
    for _ in 0..5 {
        let member = set.get(Want::Any).await.unwrap();
        assert_eq!(*Member::endpoint(&member), new.addr());
    }
}
