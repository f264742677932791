//! Error text with its causes, for tracing events and the pool's own errors.
//!
//! Many error types keep their Display short and put the reason in
//! `source()` ("could not connect" / "connection refused"). A log line or an
//! error message that shows only the top level says nothing useful, so the
//! pool writes the whole chain, joined with ": ".

use std::error::Error;
use std::fmt;

pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        // Bounded: a cyclic chain must not hang a log line.
        for _ in 0..16 {
            let Some(cause) = source else { break };
            let text = cause.to_string();
            write!(f, ": {text}")?;
            source = cause.source();
        }
        Ok(())
    }
}
