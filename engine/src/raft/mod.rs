//! The sans-IO Raft consensus core.
//!
//! It owns no clock, thread, file, socket or random number generator: time arrives as
//! [`RaftCore::tick`] calls, messages as [`RaftCore::step`] calls, proposals, reads and transfers
//! as method calls, and the storage's durability reports as [`RaftCore::persisted`]. Everything
//! the core wants done (persist, send, acknowledge) is drained from it as a [`Ready`] value.
//! Older log entries are read through the narrow [`LogSource`] trait the driver passes in; the
//! core keeps only the terms of all entries and a bounded cache of recent ones in memory.
//!
//! The files split the core by concern:
//! - `core`: the [`RaftCore`] state, inputs, getters and message validation;
//! - `election`: timers, PreVote, votes, role changes, CheckQuorum;
//! - `replication`: the leader's AppendEntries, heartbeats and their answers;
//! - `follower`: the follower's consistency check and acknowledgements;
//! - `commit`: the commit rule; `read_index`: ReadIndex; `transfer`: leadership transfer;
//! - `progress`: per-follower flow control; `log_view`, `term_runs`, `entry_cache`: the log;
//! - `validate`: the gateway for untrusted messages;
//! - `rejoin`: rejoining after the loss of the durable state;
//! - `ready`: the output value; `config`, `errors`, `log_source`, `rng`, `bugs`.
//!
//! docs/design.md describes the inputs, outputs and invariants in prose.

mod bugs;
mod commit;
mod config;
mod core;
mod election;
mod entry_cache;
mod errors;
mod follower;
mod log_source;
mod log_view;
mod progress;
mod read_index;
mod ready;
mod rejoin;
mod replication;
mod rng;
mod term_runs;
mod transfer;
mod validate;

#[cfg(feature = "bug-injection")]
pub use bugs::InjectedBug;
pub use config::{Config, ConfigError, ENTRY_OVERHEAD_BYTES};
pub use core::{InvariantViolation, Proposed, RaftCore, Role};
pub use errors::{ProposeError, ReadIndexError, RestoreError, StepError, TransferError};
pub use log_source::{EmptyLog, LogReadError, LogSource};
pub use log_view::LAST_INDEX_MAX;
pub use progress::{ProgressView, ReplicationState};
pub use read_index::READS_WAITING_MAX;
pub use ready::{ReadState, Ready};
pub use rejoin::REJOIN_READ_REQUEST_ID;
