//! Outlier ejection, Envoy-style: an endpoint whose connects, heartbeats or
//! uses fail `failures` times in a row is taken out of rotation for a
//! jittered time that grows with each ejection, but never more than
//! `max_share` of the endpoints at once (when most endpoints fail at once the
//! fault is more likely ours, and keeping some in rotation is what a human
//! would do). An endpoint over the threshold is *down* whether or not the cap
//! let it be ejected; when every endpoint is down and none is due for a
//! retry, a checkout fails fast.

use std::time::Duration;

use tokio::time::Instant;

use super::error::Failure;

/// When an endpoint is ejected, and for how long.
///
/// ```
/// use std::time::Duration;
/// use livepool::endpoints::Ejection;
///
/// let ejection = Ejection {
///     failures: 3,
///     base: Duration::from_secs(1),
///     max: Duration::from_secs(30),
///     max_share: 0.5,
///     jitter: 0.2,
/// };
/// assert_eq!(ejection.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ejection {
    /// Failures in a row that take an endpoint down (default 5). At least 1.
    pub failures: u32,
    /// The first ejection's length; each further one doubles it (default 1 s).
    pub base: Duration,
    /// The longest ejection (default 30 s).
    pub max: Duration,
    /// Largest share of endpoints ejected at once, 0.0 to 1.0; at least one
    /// endpoint may always be ejected (default 0.5).
    pub max_share: f64,
    /// Each ejection is lengthened or shortened by up to this fraction, so
    /// endpoints that failed together do not return together (default 0.2,
    /// 0.0 to 0.5).
    pub jitter: f64,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            failures: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_share: 0.5,
            jitter: 0.2,
        }
    }
}

impl Ejection {
    /// Checks the settings; [`Builder::build`](super::Builder::build) calls it.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.failures == 0 {
            return Err("ejection failures must be at least 1");
        }
        if self.base.is_zero() || self.max < self.base {
            return Err("ejection base must be positive and not above max");
        }
        if !(0.0..=1.0).contains(&self.max_share) {
            return Err("ejection max_share must be within 0.0..=1.0");
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err("ejection jitter must be within 0.0..=0.5");
        }
        Ok(())
    }

    /// How many of `endpoints` may be ejected at once.
    pub(crate) fn cap(&self, endpoints: usize) -> usize {
        ((endpoints as f64 * self.max_share).floor() as usize).max(1)
    }

    /// The length of ejection number `nth` (0 for the first), jittered.
    fn length(&self, nth: u32) -> Duration {
        let grown = self.base.saturating_mul(1u32 << nth.min(16)).min(self.max);
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * fastrand::f64();
        grown.mul_f64(factor.max(0.0))
    }
}

/// One endpoint's failure record.
#[derive(Debug)]
pub(crate) struct Health<E> {
    /// Failures since the last success.
    pub(crate) in_row: u32,
    /// Times taken down since the last success: how long the next lasts.
    pub(crate) ejections: u32,
    /// While down: no retry before this.
    pub(crate) down_until: Option<Instant>,
    /// Whether the cap let it be taken out of rotation while down.
    pub(crate) ejected: bool,
    /// The latest failure.
    pub(crate) last: Option<Failure<E>>,
    /// The server said it is going away: avoid it while others are up.
    pub(crate) going_away_until: Option<Instant>,
}

impl<E> Default for Health<E> {
    fn default() -> Self {
        Health {
            in_row: 0,
            ejections: 0,
            down_until: None,
            ejected: false,
            last: None,
            going_away_until: None,
        }
    }
}

impl<E> Health<E> {
    /// Out of rotation now.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejected && self.down_until.is_some_and(|until| now < until)
    }

    /// Over the threshold and not yet due for a retry.
    pub(crate) fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|until| now < until)
    }

    pub(crate) fn is_going_away(&self, now: Instant) -> bool {
        self.going_away_until.is_some_and(|until| now < until)
    }

    /// Remaining ejection, for status.
    pub(crate) fn ejected_for(&self, now: Instant) -> Option<Duration> {
        if self.is_ejected(now) {
            self.down_until
                .map(|until| until.saturating_duration_since(now))
        } else {
            None
        }
    }

    /// Notes `count` failures. Returns the down time if this takes the
    /// endpoint down; `may_eject` says whether the cap allows ejecting it.
    pub(crate) fn fail(
        &mut self,
        failure: Failure<E>,
        count: u32,
        policy: &Ejection,
        now: Instant,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        self.in_row = self.in_row.saturating_add(count.max(1));
        self.last = Some(failure);
        if self.in_row < policy.failures || self.is_down(now) {
            return None;
        }
        let length = policy.length(self.ejections);
        self.ejections = self.ejections.saturating_add(1);
        self.down_until = Some(now.checked_add(length).unwrap_or(now));
        self.ejected = may_eject();
        Some(length)
    }

    /// A success: back in rotation, the next ejection starts short again.
    /// Returns whether it was down.
    pub(crate) fn succeed(&mut self) -> bool {
        let was_down = self.down_until.is_some();
        self.in_row = 0;
        self.ejections = 0;
        self.down_until = None;
        self.ejected = false;
        was_down
    }

    /// The server that went away was replaced: stop avoiding it.
    pub(crate) fn back_from_going_away(&mut self) {
        self.going_away_until = None;
    }

    /// The server is going away: avoid it for `avoid`.
    pub(crate) fn going_away(&mut self, avoid: Duration, now: Instant) {
        self.going_away_until = Some(now.checked_add(avoid).unwrap_or(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Ejection {
        Ejection {
            failures: 2,
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
            max_share: 0.5,
            jitter: 0.0,
        }
    }

    #[test]
    fn ejects_after_failures_in_row_for_a_growing_capped_time() {
        let now = Instant::now();
        let mut health = Health::<std::io::Error>::default();
        let policy = policy();
        assert_eq!(health.fail(Failure::Use, 1, &policy, now, || true), None);
        let first = health.fail(Failure::Use, 1, &policy, now, || true);
        assert_eq!(first, Some(Duration::from_secs(1)));
        assert!(health.is_ejected(now) && health.is_down(now));
        let mut later = now;
        let mut lengths = vec![];
        for _ in 0..5 {
            later += Duration::from_secs(10);
            lengths.push(
                health
                    .fail(Failure::Use, 1, &policy, later, || true)
                    .unwrap(),
            );
        }
        assert_eq!(
            lengths.iter().map(Duration::as_secs).collect::<Vec<_>>(),
            [2, 4, 5, 5, 5]
        );
        assert!(health.succeed());
        assert!(!health.is_down(later));
        assert_eq!(
            health.fail(Failure::Use, 2, &policy, later, || false),
            Some(Duration::from_secs(1))
        );
        assert!(
            health.is_down(later) && !health.is_ejected(later),
            "capped: down, not ejected"
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap_allows_one() {
        let policy = Ejection {
            jitter: 0.5,
            ..policy()
        };
        for _ in 0..100 {
            let length = policy.length(0);
            assert!(length >= Duration::from_millis(500) && length <= Duration::from_millis(1500));
        }
        assert_eq!(policy.cap(1), 1);
        assert_eq!(policy.cap(3), 1);
        assert_eq!(policy.cap(4), 2);
        assert!(
            Ejection {
                failures: 0,
                ..policy
            }
            .validate()
            .is_err()
        );
        assert!(
            Ejection {
                max_share: 1.5,
                ..policy
            }
            .validate()
            .is_err()
        );
    }
}
