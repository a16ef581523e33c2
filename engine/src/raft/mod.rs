//! The sans-IO Raft consensus core.
//!
//! It owns no clock, thread, file, socket or random number generator: time arrives as `tick()`
//! calls, messages as `step()` calls, and everything the core wants done (persist, send, apply)
//! is drained from it as a `Ready` value.
