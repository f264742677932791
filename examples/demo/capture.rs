//! A `tracing` layer that turns the pool's own events into journal entries.
//!
//! Polling `Pool::status()` would show that *some* member was evicted for
//! *some* reason within the polling interval; the pool's tracing events name
//! the member and the reason at the moment it happens, which is what a
//! timeline of "which fault was caught by which layer, and when" needs.

use std::fmt;
use std::sync::Arc;

use livepool::EvictReason;
use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::journal::{Event, Journal};

/// Captures "member connected", "member evicted" and the failed connects
/// ("connect failed" inside a `get()`, "refill connect failed" in the sentinel).
pub struct PoolEvents {
    journal: Arc<Journal>,
}

impl PoolEvents {
    /// A layer that records into `journal`.
    pub fn new(journal: Arc<Journal>) -> Self {
        PoolEvents { journal }
    }
}

/// The fields of one pool event that the demo reads.
#[derive(Default)]
struct Fields {
    message: String,
    member: Option<u64>,
    reason: Option<String>,
    retry_in: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "retry_in_ms" {
            self.retry_in = Some(format!("{value} ms"));
        }
        if field.name() == "member" {
            self.member = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "reason" {
            self.reason = Some(value.to_owned());
        }
    }
}

/// The reason a "member evicted" event names, by its `as_str` spelling.
fn parse_reason(name: &str) -> Option<EvictReason> {
    EvictReason::ALL.into_iter().find(|r| r.as_str() == name)
}

impl<S: Subscriber> Layer<S> for PoolEvents {
    fn on_event(&self, event: &TracingEvent<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let entry = match (fields.message.as_str(), fields.member) {
            ("member connected", Some(member)) => Event::Connected { member },
            ("member evicted", Some(member)) => {
                match fields.reason.as_deref().and_then(parse_reason) {
                    Some(reason) => Event::Evicted { member, reason },
                    None => return,
                }
            }
            ("connect failed" | "connect timed out", _) => Event::ConnectFailed { retry_in: None },
            ("refill connect failed" | "refill connect timed out", _) => Event::ConnectFailed {
                retry_in: Some(fields.retry_in.unwrap_or_default()),
            },
            _ => return,
        };
        self.journal.record(entry);
    }
}
