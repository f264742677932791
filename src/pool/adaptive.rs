//! The adaptive heartbeat timeout: when a probe's silence convicts its
//! member, judged against the round trips this pool (one endpoint) has seen.
//!
//! # The model
//!
//! A probe is always bounded by `heartbeat_timeout`, the **ceiling**: no
//! answer by then evicts the member, as with a fixed timeout, so a silent
//! peer is gone within `heartbeat_interval + heartbeat_timeout` whatever the
//! round trips did. Adaptation only ever convicts *earlier*, and only on
//! evidence that the silence is the member's own:
//!
//! * the pool keeps the last [`WINDOW`] round trips of the endpoint
//!   (heartbeats; and requests, as the manager reports them on return with
//!   [`Manager::take_round_trip`](crate::Manager::take_round_trip), which the
//!   reference client does for its calls, or a caller with
//!   [`Pooled::record_round_trip`](super::Pooled::record_round_trip));
//! * a member is **suspect** once its probe has gone unanswered for
//!   `2 × max(window)`, clamped to `[floor, ceiling]` (Finagle's threshold
//!   for marking a session busy);
//! * a suspect is **convicted** early only when a *witness* exists: a round
//!   trip on the same endpoint that started after the suspect's probe and
//!   was answered within the threshold, once the threshold had passed for
//!   the suspect (see [`Adaptive::witnessed`]). The endpoint answers others
//!   quickly while this member is silent: a blackholed flow, a hung
//!   connection.
//!
//! Why a witness and not the threshold alone (Finagle, phi accrual): a round
//! trip spike hits every member of an endpoint at once (a GC pause on the
//! server, a congested link, a loaded proxy). A threshold learnt from the
//! past is exceeded by the first probe of the spike on *every* member: a
//! reconnect storm at the worst moment, which is what a fixed timeout does
//! too. With a witness, a spike has none (the other round trips are slow as
//! well), nobody is convicted before the ceiling, and the late answers
//! raise the threshold for the next probes.
//!
//! Why these parameters:
//!
//! * `2 × max`, not `mean + k·σ`: round trips are heavy tailed, and a window
//!   of a few dozen samples gives a σ that swings with one outlier; the max
//!   of a short window bounds what was actually seen, and doubling it leaves
//!   room for a round trip twice the worst recent one. (The witness rule
//!   makes the threshold's exact value matter less: it sets how long a
//!   silence needs before a faster round trip can convict.)
//! * [`WINDOW`] = 32: about two minutes of heartbeats on a pool of two or
//!   three members at the default interval, so a spike is forgotten in
//!   minutes, not hours, while one lucky fast sample cannot pull the
//!   threshold down (the max of 32 is what moves it).
//! * [`MIN_SAMPLES`] = 4: with fewer, the window knows nothing; the
//!   threshold is the ceiling (no early conviction).
//! * the floor (`adaptive_heartbeat_floor`): on loopback a round trip is
//!   tens of microseconds, and twice that is shorter than one scheduling
//!   delay of a busy runtime. The floor keeps the threshold above the
//!   process's own noise.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::time::later;

/// Round trips remembered per pool.
pub(crate) const WINDOW: usize = 32;
/// Samples needed before the threshold moves below the ceiling.
pub(crate) const MIN_SAMPLES: usize = 4;

/// The round trips of one endpoint and the threshold they give.
pub(crate) struct Adaptive {
    /// `None`: adaptation off, probes are bounded by the ceiling alone.
    floor: Option<Duration>,
    ceiling: Duration,
    window: Mutex<Window>,
    /// Notified on every recorded round trip, for suspects waiting for a
    /// witness.
    answered: Notify,
    /// A suspect found no witness when its threshold passed: the sentinel
    /// probes one idle member at once to find one (one request at a time,
    /// however many suspects: see [`Adaptive::witnessed`]).
    witness_wanted: AtomicBool,
}

struct Window {
    /// Microseconds, saturating; a ring of the last `len` samples.
    rtts: [u32; WINDOW],
    len: usize,
    next: usize,
    /// The round trip answered within the threshold most recently: when it
    /// started and when it was answered.
    fast: Option<(Instant, Instant)>,
}

impl Window {
    fn max(&self) -> Duration {
        let max = self.rtts[..self.len].iter().copied().max().unwrap_or(0);
        Duration::from_micros(u64::from(max))
    }
}

impl Adaptive {
    pub(crate) fn new(floor: Option<Duration>, ceiling: Duration) -> Self {
        Adaptive {
            floor: floor.map(|f| f.min(ceiling)),
            ceiling,
            window: Mutex::new(Window {
                rtts: [0; WINDOW],
                len: 0,
                next: 0,
                fast: None,
            }),
            answered: Notify::new(),
            witness_wanted: AtomicBool::new(false),
        }
    }

    /// Whether a suspect asked for a witness probe; clears the request.
    pub(crate) fn take_witness_request(&self) -> bool {
        self.witness_wanted.load(Ordering::Relaxed)
            && self.witness_wanted.swap(false, Ordering::Relaxed)
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether probes adapt at all.
    pub(crate) fn is_on(&self) -> bool {
        self.floor.is_some()
    }

    /// The suspicion threshold now: `2 × max(window)` within
    /// `[floor, ceiling]`; the ceiling while adaptation is off or the window
    /// holds fewer than [`MIN_SAMPLES`].
    pub(crate) fn threshold(&self) -> Duration {
        let Some(floor) = self.floor else {
            return self.ceiling;
        };
        let window = self.window();
        Self::threshold_of(&window, floor, self.ceiling)
    }

    fn threshold_of(window: &Window, floor: Duration, ceiling: Duration) -> Duration {
        if window.len < MIN_SAMPLES {
            return ceiling;
        }
        super::time::doubled(window.max()).clamp(floor, ceiling)
    }

    /// A round trip that started at `started` and took `rtt`: a heartbeat
    /// answered, or a request a caller reported. Returns whether it was
    /// slower than the threshold in force (a late answer).
    pub(crate) fn record(&self, started: Instant, rtt: Duration) -> bool {
        let Some(floor) = self.floor else {
            return false;
        };
        let late = {
            let mut window = self.window();
            let threshold = Self::threshold_of(&window, floor, self.ceiling);
            let late = rtt > threshold;
            if !late {
                window.fast = Some((started, later(started, rtt)));
            }
            let micros = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
            let at = window.next;
            window.rtts[at] = micros;
            window.next = (at + 1) % WINDOW;
            window.len = (window.len + 1).min(WINDOW);
            late
        };
        self.answered.notify_waiters();
        late
    }

    /// Completes when a probe that started at `started` may be convicted
    /// early: `threshold` has passed since it started, and a witness exists:
    /// a round trip that started after it and was answered within the
    /// threshold, *after* the threshold had passed for the suspect.
    ///
    /// That last condition is what makes a spike safe at its onset too: a
    /// suspect delayed by a spike was still in flight when the spike began,
    /// which is before its threshold passed (the threshold is above every
    /// recent round trip); a round trip answered after that moment was
    /// itself in flight during the spike, so it is slow, and witnesses
    /// nothing. Pending forever while adaptation is off.
    ///
    /// With no witness when the threshold passes, it asks for one: `wake`
    /// (the sentinel) probes an idle member at once. Without that, a pool
    /// whose members' heartbeats fall due together (they were connected
    /// together, and the jitter is a tenth of the interval) would often
    /// have no other round trip in flight before the ceiling. At most one
    /// request is pending at a time, so a spike (every probe a suspect) adds
    /// at most one probe per threshold, not one per member.
    pub(crate) async fn witnessed(&self, started: Instant, threshold: Duration, wake: &Notify) {
        if !self.is_on() || threshold >= self.ceiling {
            return std::future::pending().await;
        }
        let suspect_at = later(started, threshold);
        tokio::time::sleep_until(suspect_at).await;
        let mut asked = false;
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let witness = self.window().fast;
            if witness.is_some_and(|(began, answered)| began > started && answered >= suspect_at) {
                return;
            }
            if !asked {
                asked = true;
                self.witness_wanted.store(true, Ordering::Relaxed);
                wake.notify_one();
            }
            answered.await;
        }
    }
}

/// How one heartbeat ended, before the pool judges the member.
pub(crate) enum Answer<T, E> {
    /// The manager's future finished (with its value or error), or panicked.
    Done(std::thread::Result<Result<T, E>>),
    /// The ceiling (`limit`) passed with no answer.
    TimedOut,
    /// The caller's deadline came first.
    DeadlinePassed,
    /// Silent past the adaptive threshold (given) while a later round trip
    /// on the endpoint answered within it.
    Outpaced(Duration),
}

impl Adaptive {
    /// Runs one heartbeat under the model above: bounded by `ceiling` and
    /// the caller's `deadline`, convicted early only with a witness. A
    /// timer that fired far late (the process itself stalled, see
    /// `stall.rs`) convicts nobody: the probe gets one more full ceiling.
    pub(crate) async fn run<T, E>(
        &self,
        deadline: Option<Instant>,
        work: impl std::future::Future<Output = Result<T, E>>,
        wake: &Notify,
    ) -> (Answer<T, E>, Instant) {
        use futures_util::FutureExt;
        let started = Instant::now();
        let threshold = self.threshold();
        let own = later(started, self.ceiling);
        let mut until = deadline.map_or(own, |d| d.min(own));
        let work = std::panic::AssertUnwindSafe(work).catch_unwind();
        tokio::pin!(work);
        let witnessed = self.witnessed(started, threshold, wake);
        tokio::pin!(witnessed);
        let mut forgiven = false;
        loop {
            tokio::select! {
                biased;
                done = &mut work => return (Answer::Done(done), started),
                () = tokio::time::sleep_until(until) => {
                    if !forgiven && super::stall::woke_late(until) {
                        forgiven = true;
                        until = later(Instant::now(), self.ceiling);
                        continue;
                    }
                    let answer = if deadline.is_some_and(|d| d < own) && !forgiven {
                        Answer::DeadlinePassed
                    } else {
                        Answer::TimedOut
                    };
                    return (answer, started);
                }
                () = &mut witnessed => return (Answer::Outpaced(threshold), started),
            }
        }
    }
}

impl<M: crate::Manager> super::shared::Shared<M> {
    /// A caller returned a member healthy: the manager's record of its last
    /// request's round trip, if any, goes into the window. Out of line: the
    /// return path pays for it only with adaptation on.
    #[cold]
    #[inline(never)]
    pub(crate) fn learn_round_trip(&self, conn: &mut M::Connection) {
        let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.take_round_trip(conn)
        }));
        if let Ok(Some((started, rtt))) = taken {
            self.adaptive.record(started, rtt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_twice_the_window_max_within_floor_and_ceiling() {
        let a = Adaptive::new(Some(Duration::from_millis(5)), Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(
            a.threshold(),
            Duration::from_secs(1),
            "no samples: the ceiling"
        );
        for ms in [10, 20, 15, 12] {
            a.record(now, Duration::from_millis(ms));
        }
        assert_eq!(a.threshold(), Duration::from_millis(40));
        for _ in 0..WINDOW {
            a.record(now, Duration::from_micros(100));
        }
        assert_eq!(a.threshold(), Duration::from_millis(5), "the floor");
        a.record(now, Duration::from_secs(30));
        assert_eq!(a.threshold(), Duration::from_secs(1), "the ceiling");
        let off = Adaptive::new(None, Duration::from_secs(2));
        off.record(now, Duration::from_millis(1));
        assert_eq!(off.threshold(), Duration::from_secs(2));
    }
}
