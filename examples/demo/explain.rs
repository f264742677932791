//! The prose under the summary tables: for each fault, what happened, which
//! layer caught it, and what the callers saw, in the numbers of this run.

use std::time::Duration;

use livepool::EvictReason;

use super::facts::{Facts, FaultKind, FaultRecord, Layer};
use super::text::{count, delay, millis, seconds};

/// What a person should take from one fault's numbers. `heartbeat_timeout`
/// and `request_timeout` are the pool's and the callers' settings.
pub fn explain(
    fault: &FaultRecord,
    facts: &Facts,
    heartbeat_timeout: Duration,
    request_timeout: Duration,
) -> String {
    let mut text = String::new();
    let detected = facts.detected;
    match fault.kind {
        FaultKind::Reset { member } => {
            text.push_str(&format!("The proxy reset member #{member}'s connection. "));
            match detected.map(|d| d.reason) {
                Some(EvictReason::BrokenOnCheckout) => text.push_str(
                    "The next checkout's cheap check (what the socket already shows, no I/O wait) \
                     saw the reset, evicted the member and handed that caller another one. ",
                ),
                Some(EvictReason::BrokenWhileIdle) => text.push_str(
                    "The sentinel's cheap check of idle members saw the reset before any caller \
                     took the member again, and evicted it. ",
                ),
                Some(EvictReason::BrokenOnReturn) => text.push_str(
                    "A caller had taken it again just before the reset, so its call got the \
                     reset as an error. ",
                ),
                Some(other) => {
                    text.push_str(&format!("It was evicted ({other}). "));
                }
                None => text.push_str("The pool did not evict it within the phase. "),
            }
        }
        FaultKind::Blackhole { member } => {
            text.push_str(&format!(
                "Member #{member}'s connection went silent: the proxy kept both sockets open and \
                 dropped every byte, and its kernel still ACKs, so neither the socket nor kernel \
                 keepalive had anything to report. "
            ));
            match detected.map(|d| d.reason) {
                Some(EvictReason::ProbeTimedOut) => text.push_str(&format!(
                    "The member was idle (callers stay on the few members at the top of the \
                     LIFO idle stack), so its next heartbeat went out when due and was not \
                     answered within {}: evicted. ",
                    millis(heartbeat_timeout)
                )),
                Some(other) => text.push_str(&format!(
                    "A caller borrowed it before its heartbeat came due: callers take the \
                     most recently returned member first (LIFO), but when several need one at \
                     once they reach past the hot members into the cold ones, and the first \
                     cold one reached is the one probed longest ago. Its call went unanswered \
                     and the member was evicted at use time ({other}). "
                )),
                None => text.push_str("The pool did not evict it within the phase. "),
            }
        }
        FaultKind::Hang { lasted } => {
            text.push_str(&format!(
                "For {} the server read every request and heartbeat and answered none, while \
                 its kernel kept every connection up. Every call sent in that time waited for \
                 the callers' {} request timeout: no pool can make a hung server answer, and a \
                 heartbeat cannot probe a connection a caller is using. What the pool did: \
                 each timed-out member (its stream now out of step) was evicted, never reused \
                 ({} use-time evictions); idle members were probed and evicted when their \
                 heartbeat went unanswered ({} heartbeat evictions); the server still accepted \
                 connections, so replacements connected and get() never had to fail. ",
                seconds(lasted),
                seconds(request_timeout),
                facts.evictions(Layer::UseTime),
                facts.evictions(Layer::Heartbeat),
            ));
        }
        FaultKind::Restart { down } => {
            text.push_str("The server closed every connection and the proxy passed the FIN on. ");
            let found: Vec<String> = [
                (
                    EvictReason::BrokenWhileIdle,
                    "by the sentinel on idle members",
                ),
                (EvictReason::BrokenOnCheckout, "at checkout"),
            ]
            .into_iter()
            .filter(|(reason, _)| facts.evicted_for(*reason) > 0)
            .map(|(reason, where_)| format!("{} {where_} ({reason})", facts.evicted_for(reason)))
            .collect();
            if !found.is_empty() {
                text.push_str(&format!(
                    "The cheap check caught dead members before anyone called on them: {}; \
                     first the members the FIN closed, then replacements the proxy reset. ",
                    found.join(", ")
                ));
            }
            text.push_str(&format!(
                "For {} nothing listened on the port. The proxy, like a TCP load balancer \
                 with no backend, still accepted each connect and then reset it: {} \
                 connects inside get()s and {} refill connects failed outright (a get() \
                 retries its own within wait_timeout). A connect proves the server \
                 application with one heartbeat, so one the proxy accepted and then reset \
                 counts as a failed connect (backed off), never as a member. ",
                seconds(down),
                facts.get_connect_failures,
                facts.refill_failures,
            ));
        }
    }
    if let Some((at, retry_in)) = &facts.refill_retry_in {
        text.push_str(&format!(
            "After its last failed refill connect (at {:.3}) the sentinel backed off {retry_in} \
             (with jitter) before refilling again; any connect that succeeds meanwhile, a \
             caller's included, ends the backoff. ",
            at.as_secs_f64()
        ));
    }
    text.push_str(&caller_outcome(facts));
    text
}

/// What the callers saw, in a few sentences.
fn caller_outcome(facts: &Facts) -> String {
    let mut text = String::new();
    let calls = facts.call_error_count();
    if calls == 0 {
        text.push_str("No call failed. ");
    } else {
        let kinds: Vec<String> = facts
            .call_errors
            .iter()
            .map(|(error, n)| format!("{n} x \"{error}\""))
            .collect();
        text.push_str(&format!(
            "Callers saw {} ({}); each caller marked that member broken (so it was \
             evicted, never reused) and retried its request. ",
            count(calls, "call error", "call errors"),
            kinds.join(", ")
        ));
    }
    let gets = facts.get_error_count();
    if gets == 0 {
        text.push_str("No get() failed. ");
    } else {
        let kinds: Vec<String> = facts
            .get_errors
            .iter()
            .map(|(error, n)| format!("{n} x \"{error}\""))
            .collect();
        text.push_str(&format!(
            "get() failed {} ({}). ",
            count(gets, "time", "times"),
            kinds.join(", ")
        ));
    }
    if facts.abandoned > 0 {
        text.push_str(&format!(
            "{} given up after retrying for 5 s. ",
            count(facts.abandoned, "request was", "requests were")
        ));
    }
    if facts.wrong_replies > 0 {
        text.push_str(&format!(
            "{} not match the request: a stream out of step was reused. ",
            count(facts.wrong_replies, "reply did", "replies did")
        ));
    }
    text.push_str(&format!(
        "The slowest request took {}",
        delay(facts.slowest)
    ));
    if let (Some(lifted), Some((a, b))) = (facts.lifted, facts.stall) {
        if b >= lifted {
            text.push_str(&format!(
                "; requests completed again {} after the fault was lifted",
                delay(b.saturating_sub(lifted))
            ));
        } else {
            text.push_str(&format!(
                "; the longest stretch without a reply was {}",
                delay(b - a)
            ));
        }
    }
    text.push('.');
    text
}
