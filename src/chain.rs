//! Reporting other crates' errors in a chain that reads once.
//!
//! livepool's errors follow the std convention: `Display` says its own
//! level, `source()` gives the cause, so a reporter that walks the chain
//! (anyhow's `{:#}`, eyre, a tracing field of type `&dyn Error`) prints each
//! part once. Some client libraries write their cause into their own
//! `Display` *and* return it from `source()`: `redis::RedisError` prints
//! the I/O or server error it wraps, `tokio_postgres::Error` prints
//! "db error: " followed by the server's message. Returned as a source
//! as they are, the root cause would appear twice in every report.
//!
//! So where a livepool error's cause is such a foreign error, `source()`
//! returns [`cause_once`] of it: the first level of its chain whose text is
//! not already contained in the level above. The typed error stays in the
//! variant's field for code that matches on it (a SQLSTATE, a Redis error
//! kind); only the chain a reporter walks skips the repetition.

use std::error::Error;

/// The level of `error`'s chain to report as a cause: `error` itself, or,
/// while a level's `Display` already includes its source's text, that
/// source instead. Chains are finite, so the walk ends.
pub(crate) fn cause_once<'a>(error: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
    let mut level = error;
    while let Some(inner) = level.source() {
        let inner_text = inner.to_string();
        if inner_text.is_empty() || !level.to_string().contains(&inner_text) {
            break;
        }
        level = inner;
    }
    level
}

#[cfg(test)]
mod tests {
    use super::cause_once;
    use std::fmt;

    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "db error: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[derive(Debug)]
    struct OwnLevel(std::io::Error);

    impl fmt::Display for OwnLevel {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("handshake failed")
        }
    }

    impl std::error::Error for OwnLevel {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_level_that_repeats_its_source_is_skipped() {
        let repeats = Repeats(std::io::Error::other("connection reset"));
        assert_eq!(cause_once(&repeats).to_string(), "connection reset");
    }

    #[test]
    fn a_level_that_says_its_own_part_is_kept() {
        let own = OwnLevel(std::io::Error::other("connection reset"));
        assert_eq!(cause_once(&own).to_string(), "handshake failed");
    }
}
