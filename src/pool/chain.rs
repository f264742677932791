//! Error text with its causes, for tracing events and the pool's own errors.
//!
//! Many error types keep their Display short and put the reason in
//! `source()` ("could not connect" / "connection refused"). A log line or an
//! error message that shows only the top level says nothing useful, so the
//! pool writes the whole chain, joined with ": ". Others put the cause in
//! their Display *and* in `source()`; a cause whose text the chain already
//! ends with is not written twice.

use std::error::Error;
use std::fmt;

pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.0.to_string();
        let mut source = self.0.source();
        // Bounded: a cyclic chain must not hang a log line.
        for _ in 0..16 {
            let Some(cause) = source else { break };
            let text = cause.to_string();
            if !written.ends_with(&text) {
                written.push_str(": ");
                written.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&written)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;
    use std::fmt;

    #[derive(Debug)]
    struct Wrapper {
        inner: std::io::Error,
        repeats_cause: bool,
    }

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.repeats_cause {
                write!(f, "could not connect: {}", self.inner)
            } else {
                f.write_str("could not connect")
            }
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.inner)
        }
    }

    fn refused(repeats_cause: bool) -> Wrapper {
        Wrapper {
            inner: std::io::Error::other("connection refused"),
            repeats_cause,
        }
    }

    #[test]
    fn a_short_display_gets_its_cause_appended() {
        assert_eq!(
            Chain(&refused(false)).to_string(),
            "could not connect: connection refused"
        );
    }

    #[test]
    fn a_cause_already_in_the_display_is_not_written_twice() {
        assert_eq!(
            Chain(&refused(true)).to_string(),
            "could not connect: connection refused"
        );
    }
}
