//! Target (c): arbitrary bytes from a fake server reach callers through a
//! [`Pool`] of [`RpcConnection`](crate::protocol::RpcConnection)s: checkout
//! validation, eviction on return and reconnects all run on what the input
//! makes the server send.

use std::time::Duration;

use bytes::Bytes;

use super::client::{HANG, check};
use super::input::Input;
use super::server::{Expectation, FakeServer};
use crate::protocol::{ClientError, FrameKind, RpcManager};
use crate::{IdleOrder, Pool, Status};

/// Input: the pool's shape (1..3 members, probe at every checkout or never,
/// LIFO or FIFO), the body limit (8..64), the number of calls (1..8) and,
/// for each, whether the caller keeps the member while it makes the next
/// call; then the server's script. Each connection's connect heartbeat is
/// answered correctly so connects never back off; every later heartbeat (a
/// probe at checkout) and every call is answered from the script.
///
/// Checks: never a panic or a hang; `get()` always succeeds (the pool can
/// always connect); a member handed out is never one its own bookkeeping
/// knows to be broken or dirty; every call's result is what the model says
/// the bytes sent mean, so no caller ever gets another request's answer;
/// `status()` adds up after every step and never exceeds `max_size`.
pub fn pooled(data: &[u8]) {
    super::runtime::block_on(async {
        let mut input = Input::new(data);
        let shape = input.byte();
        let max_size = 1 + usize::from(shape % 3);
        let validate_after = if shape & 4 != 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        };
        let order = if shape & 8 != 0 {
            IdleOrder::Fifo
        } else {
            IdleOrder::Lifo
        };
        let max_body = 8 + usize::from(input.byte() % 57);
        let calls: Vec<u8> = (0..1 + input.byte() % 8).map(|_| input.byte()).collect();
        let mut server = FakeServer::start(input.rest(), max_body, true).await;
        let manager = RpcManager::new(server.addr)
            .max_body(max_body)
            .request_timeout(Some(HANG));
        let pool = Pool::builder()
            .name("fuzz")
            .max_size(max_size)
            .min_idle(0)
            .no_heartbeats()
            .validate_after(validate_after)
            .idle_order(order)
            .idle_timeout(None)
            .max_lifetime(None)
            .wait_timeout(HANG)
            .connect_timeout(HANG)
            .heartbeat_timeout(HANG)
            .build(manager)
            .expect("a valid pool configuration");
        let mut held = Vec::new();
        for (n, keep) in calls.into_iter().enumerate() {
            let mut conn = pool.get().await.expect("the pool can always connect");
            consistent(&pool.status());
            let body = Bytes::from(format!("call {n}"));
            let result = conn.call(body.clone()).await.map(Some);
            assert!(
                !matches!(result, Err(ClientError::Unusable { .. })),
                "the pool handed out a member it knew was unusable"
            );
            let expectation = next_call(&mut server);
            check(&result, expectation.as_ref(), FrameKind::Request, &body);
            if keep & 1 == 1 && held.len() + 1 < max_size {
                held.push(conn);
            } else {
                drop(conn);
            }
            consistent(&pool.status());
        }
        drop(held);
        consistent(&pool.status());
        pool.close();
        drop(pool);
        server.stop().await;
    });
}

/// The server's verdict on the latest business request, skipping the
/// heartbeats (connects and probes) answered since.
fn next_call(server: &mut FakeServer) -> Option<Expectation> {
    let mut last = None;
    while let Ok(e) = server.expectations.try_recv() {
        if e.kind == FrameKind::Request {
            last = Some(e);
        }
    }
    last
}

fn consistent(s: &Status) {
    assert_eq!(
        s.size,
        s.idle + s.in_use + s.probing + s.connecting,
        "status does not add up: {s:?}"
    );
    assert!(s.size <= s.max_size, "over max_size: {s:?}");
}
