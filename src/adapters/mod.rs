//! Managers for real client libraries, each behind its own cargo feature.
