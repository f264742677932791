//! A phase's timeline: one line per event, or per burst of like events,
//! with the layer that caught it and the time since the fault began.

use std::fmt::Write as _;
use std::time::Duration;

use livepool::EvictReason;

use super::facts::{Facts, Layer, window};
use super::journal::{Event, Snapshot, Stamped};
use super::text::{delay, fit, list, wrap};

/// Events of one kind this close together share a timeline line.
const GROUP_SPAN: Duration = Duration::from_millis(100);
/// Timeline lines of one kind per phase; the rest are counted in a footnote.
const LINES_PER_KIND: usize = 3;
/// Width of the event text column.
pub const TEXT_WIDTH: usize = 56;
/// Width of the layer column.
pub const LAYER_WIDTH: usize = 27;
/// Width of the "since fault" column.
pub const SINCE_WIDTH: usize = 9;

/// Writes the timeline lines of the phase from `from` to `to` into `out`.
pub fn render(
    out: &mut String,
    snapshot: &Snapshot,
    from: Duration,
    to: Duration,
    began: Option<Duration>,
    facts: &Facts,
    pool_size: usize,
) {
    let mut groups = group(window(&snapshot.events, from, to));
    if let Some(at) = facts.full_again {
        groups.push(Group::single(
            at,
            format!("pool back to {} live members", pool_size),
        ));
    }
    groups.sort_by_key(|g| g.first);
    // Lines shown per key; lines and events folded per key, in order of first fold.
    let mut shown: Vec<(&Key, usize)> = Vec::new();
    let mut folded: Vec<(&Key, usize, usize)> = Vec::new();
    for g in &groups {
        let lines = match shown.iter_mut().find(|(k, _)| *k == &g.key) {
            Some((_, n)) => n,
            None => {
                shown.push((&g.key, 0));
                &mut shown.last_mut().expect("just pushed").1
            }
        };
        if g.key != Key::Single && *lines >= LINES_PER_KIND {
            match folded.iter_mut().find(|(k, _, _)| *k == &g.key) {
                Some((_, lines, events)) => {
                    *lines += 1;
                    *events += g.count;
                }
                None => folded.push((&g.key, 1, g.count)),
            }
            continue;
        }
        *lines += 1;
        let detected = facts
            .detected
            .is_some_and(|d| d.at == g.first && g.key == Key::Evicted(d.reason));
        if g.key == Key::Single {
            let _ = writeln!(out, "{:>8.3}  {}", g.first.as_secs_f64(), g.text());
            continue;
        }
        let layer = match &g.key {
            Key::Evicted(reason) => Layer::of(*reason).name(),
            Key::CallFailed(_) | Key::GetFailed(_) | Key::WrongReply | Key::Abandoned => {
                "(seen by a caller)"
            }
            _ => "",
        };
        let since = match began {
            Some(b) if g.first >= b => format!("+{}", delay(g.first - b)),
            _ => String::new(),
        };
        let line = format!(
            "{:>8.3}  {:<TEXT_WIDTH$} {:<LAYER_WIDTH$} {:>SINCE_WIDTH$}{}",
            g.first.as_secs_f64(),
            g.text(),
            layer,
            since,
            if detected { "  <- detected" } else { "" }
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if !folded.is_empty() {
        let parts: Vec<String> = folded
            .iter()
            .map(|(key, lines, events)| {
                format!("{lines} more \"{}\" lines ({events} events)", key.short())
            })
            .collect();
        let text = format!("(not shown: {})", parts.join(", "));
        for line in wrap(&text, 90) {
            let _ = writeln!(out, "{:>8}    {line}", "");
        }
    }
    if began.is_some() && facts.had_failures && facts.full_again.is_none() {
        let _ = writeln!(
            out,
            "{:>8}    the pool was NOT back to {} members by the end of this phase",
            "", pool_size
        );
    }
    if began.is_some() {
        let _ = writeln!(
            out,
            "{:>8}    this phase: {} requests done, slowest {}; {} call errors, {} get() errors",
            "",
            facts.requests,
            delay(facts.slowest),
            facts.call_error_count(),
            facts.get_error_count()
        );
        if let Some((a, b)) = facts.stall {
            let _ = writeln!(
                out,
                "{:>8}    no request completed for {} ({:.3} to {:.3})",
                "",
                delay(b - a),
                a.as_secs_f64(),
                b.as_secs_f64()
            );
        }
    }
}

/// What a timeline line is about: lines with the same key may be merged and folded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Evicted(EvictReason),
    Connected,
    /// A connect inside a caller's `get()` failed (the `get()` retries).
    GetConnectFailed,
    /// A background refill connect failed (the sentinel backs off).
    RefillFailed,
    CallFailed(String),
    GetFailed(String),
    WrongReply,
    Abandoned,
    /// Never merged or folded: notes and fault boundaries.
    Single,
}

impl Key {
    /// What the fold footnote calls these lines.
    fn short(&self) -> String {
        match self {
            Key::Evicted(reason) => format!("evicted ({reason})"),
            Key::Connected => "connected".to_owned(),
            Key::GetConnectFailed => "connect failed in get()".to_owned(),
            Key::RefillFailed => "refill connect failed".to_owned(),
            Key::CallFailed(error) => format!("call failed: {error}"),
            Key::GetFailed(error) => format!("get() failed: {error}"),
            Key::WrongReply => "wrong reply".to_owned(),
            Key::Abandoned => "request given up".to_owned(),
            Key::Single => String::new(),
        }
    }
}

/// One timeline line: events of one key close together, or a single note.
struct Group {
    key: Key,
    first: Duration,
    count: usize,
    members: Vec<u64>,
    callers: Vec<usize>,
    /// The note's text, or the latest detail of the grouped events.
    text: String,
}

impl Group {
    fn new(key: Key, at: Duration, text: String) -> Self {
        Group {
            key,
            first: at,
            count: 0,
            members: Vec::new(),
            callers: Vec::new(),
            text,
        }
    }

    fn single(at: Duration, text: String) -> Self {
        let mut g = Group::new(Key::Single, at, text);
        g.count = 1;
        g
    }

    /// The line's text, fitted to the column (notes and fault lines are
    /// printed whole and run across the other columns).
    fn text(&self) -> String {
        let n = self.count;
        let members = list(&self.members, "#");
        let callers = {
            let mut sorted = self.callers.clone();
            sorted.sort_unstable();
            list(&sorted, "")
        };
        let text = match &self.key {
            Key::Single => return self.text.clone(),
            Key::Evicted(reason) if n == 1 => format!("evicted {members} ({reason})"),
            Key::Evicted(reason) => format!("evicted {n} ({reason}): {members}"),
            Key::Connected if n == 1 => format!("connected {members}"),
            Key::Connected => format!("connected {n}: {members}"),
            Key::GetConnectFailed if n == 1 => "connect failed inside a get(), retried".to_owned(),
            Key::GetConnectFailed => format!("{n} connects failed inside get()s, retried"),
            Key::RefillFailed => format!(
                "{n} refill connect{} failed; next refill in {}",
                if n == 1 { "" } else { "s" },
                self.text
            ),
            Key::CallFailed(error) if n == 1 => format!("caller {callers}: call failed: {error}"),
            Key::CallFailed(error) => format!("{n} calls failed: {error}"),
            Key::GetFailed(error) if n == 1 => format!("caller {callers}: get() failed: {error}"),
            Key::GetFailed(error) => format!("{n} get()s failed: {error}"),
            Key::WrongReply => format!("{n} WRONG REPLIES (callers {callers}) on {members}"),
            Key::Abandoned => format!("{n} requests given up after 5 s (callers {callers})"),
        };
        fit(&text, TEXT_WIDTH)
    }
}

/// Merges events of the same key that happen within `GROUP_SPAN` of the
/// first of them into one line.
fn group<'a>(events: impl Iterator<Item = &'a Stamped>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for e in events {
        let (key, member, caller, detail) = match &e.event {
            Event::Note(text) => {
                groups.push(Group::single(e.at, text.clone()));
                continue;
            }
            Event::FaultBegins { fault, what } => {
                groups.push(Group::single(
                    e.at,
                    format!("== FAULT {}: {what}", fault + 1),
                ));
                continue;
            }
            Event::FaultEnds { what, .. } => {
                groups.push(Group::single(e.at, format!("== {what}")));
                continue;
            }
            Event::Evicted { member, reason } => (Key::Evicted(*reason), Some(*member), None, None),
            Event::Connected { member } => (Key::Connected, Some(*member), None, None),
            Event::ConnectFailed { retry_in: None } => (Key::GetConnectFailed, None, None, None),
            Event::ConnectFailed {
                retry_in: Some(retry_in),
            } => (Key::RefillFailed, None, None, Some(retry_in.clone())),
            Event::CallFailed {
                caller,
                member,
                error,
            } => (
                Key::CallFailed(error.clone()),
                Some(*member),
                Some(*caller),
                None,
            ),
            Event::GetFailed { caller, error } => {
                (Key::GetFailed(error.clone()), None, Some(*caller), None)
            }
            Event::WrongReply { caller, member } => {
                (Key::WrongReply, Some(*member), Some(*caller), None)
            }
            Event::Abandoned { caller } => (Key::Abandoned, None, Some(*caller), None),
        };
        let open = groups
            .iter()
            .rposition(|g| g.key == key && e.at - g.first <= GROUP_SPAN);
        let index = open.unwrap_or_else(|| {
            groups.push(Group::new(key, e.at, String::new()));
            groups.len() - 1
        });
        let g = &mut groups[index];
        g.count += 1;
        if let Some(detail) = detail {
            g.text = detail;
        }
        if let Some(m) = member
            && !g.members.contains(&m)
        {
            g.members.push(m);
        }
        if let Some(c) = caller
            && !g.callers.contains(&c)
        {
            g.callers.push(c);
        }
    }
    groups
}
