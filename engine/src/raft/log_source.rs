//! The narrow, read-only window through which the core sees the part of the log it does not keep
//! in memory.
//!
//! Owns: the [`LogSource`] trait and its error.
//! Must not: write. The core never writes the log itself; it hands entries to the driver in a
//! [`crate::raft::Ready`], and the driver writes them.
//! Invariants the core relies on (an implementation must keep them):
//! 1. The log is `first_index()..=last_index()` with no holes (`first_index() <= last_index() + 1`;
//!    entries before `first_index()` were compacted away and are committed); `term(i)` is `Some`
//!    for every `i` in `first_index() - 1..=last_index()` (`Some(Term::ZERO)` for `i = 0`) and
//!    never decreases with `i`.
//! 2. `read` returns consecutive entries starting exactly at `first`, never past `last`, and at
//!    least one entry when `first <= last` (even when that one entry exceeds `size_bytes_max`).
//! 3. The core only asks `read` for entries it was told are durable (through
//!    [`crate::raft::RaftCore::persisted`]) or that were durable when it was restored, so an
//!    implementation may serve reads from its durable image only.

use raftwal_wire::types::{Entry, LogIndex, Term};
use thiserror::Error;

/// Read-only access to the stored log, implemented by the storage engine (through an adapter in
/// the replica loop) and by the simulator's model disk.
pub trait LogSource {
    /// Index of the last stored entry; `LogIndex::ZERO` for an empty log. Used when the core is
    /// restored, to learn the log's extent.
    fn last_index(&self) -> LogIndex;

    /// Index of the first stored entry: 1 for a log never compacted; after compaction, the
    /// entries before it are gone and only the term of `first_index() - 1` is known.
    fn first_index(&self) -> LogIndex {
        LogIndex(1)
    }

    /// Term of the entry at `index` without I/O: `Some(Term::ZERO)` for index 0, `None` beyond
    /// the last stored entry.
    fn term(&self, index: LogIndex) -> Option<Term>;

    /// Consecutive entries from `first` up to at most `last`, stopping once their total size
    /// (payload plus [`crate::raft::ENTRY_OVERHEAD_BYTES`] each) reaches `size_bytes_max`; at
    /// least one entry when `first <= last`.
    fn read(
        &self,
        first: LogIndex,
        last: LogIndex,
        size_bytes_max: usize,
    ) -> Result<Vec<Entry>, LogReadError>;
}

/// Why [`LogSource::read`] could not return entries. The core treats every variant the same way:
/// it does not send that AppendEntries now, pauses the follower, and retries on a later heartbeat.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LogReadError {
    /// The entry is not (or no longer) stored.
    #[error("entry {index} is not stored")]
    Unavailable {
        /// The first index that could not be read.
        index: LogIndex,
    },
    /// The storage failed to read (I/O error, checksum mismatch); `reason` says what happened.
    #[error("storage read failed: {reason}")]
    Storage {
        /// What went wrong, for logs.
        reason: String,
    },
    /// The storage returned entries that contradict the core's view of the log (wrong index or
    /// term); the core refuses to send them.
    #[error("storage returned entry {index} with a term the core does not expect")]
    Inconsistent {
        /// The first index that disagreed.
        index: LogIndex,
    },
}

/// A source with no entries: the log of a fresh replica.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyLog;

impl LogSource for EmptyLog {
    fn last_index(&self) -> LogIndex {
        LogIndex::ZERO
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        (index == LogIndex::ZERO).then_some(Term::ZERO)
    }

    fn read(
        &self,
        first: LogIndex,
        _last: LogIndex,
        _size_bytes_max: usize,
    ) -> Result<Vec<Entry>, LogReadError> {
        Err(LogReadError::Unavailable { index: first })
    }
}
