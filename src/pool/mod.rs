//! The pool core: borrowing, returning, the sentinel. Knows nothing of TCP or any protocol.
