//! The errors of the log store's operations: one enum per operation, each variant saying what
//! the caller can do next.
//!
//! Two kinds of failure are kept apart. Recoverable ones (bad arguments, no space, an index out
//! of range) leave the log as it was. Fatal ones poison the log ([`Poisoned`]): after a failed
//! write or fdatasync the state of the disk is unknown, so the log refuses every later write and
//! the node must restart from what recovery finds (the fdatasync is never retried: fsyncgate).

use crate::storage::format::{HeaderError, SegmentId};
use raftwal_wire::types::{LogIndex, Term};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// The log refused an operation because an earlier write or fdatasync failed. Fatal: reopen the
/// log (recovery keeps exactly what is durable) or fail the node.
#[derive(Clone, Debug, thiserror::Error)]
#[error("log poisoned by an earlier failure: {0}")]
pub struct Poisoned(pub Arc<str>);

/// Where and why stored bytes are corrupt. Corruption is never repaired by dropping data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The file holding the bad bytes.
    pub file: PathBuf,
    /// The byte offset of the bad record or field in that file.
    pub offset: u64,
    /// The index the bad record should hold, when known.
    pub index: Option<LogIndex>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.file.display(), self.offset)?;
        if let Some(index) = self.index {
            write!(f, " (index {index})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why [`crate::storage::LogStore::open`] failed. Nothing was changed on disk except the
/// removal of leftover temporary files and the cut of a torn tail.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The options are inconsistent; fix them.
    #[error("invalid log options: {0}")]
    InvalidOptions(&'static str),
    /// A system call failed; the disk or directory is unusable.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The system error.
        source: io::Error,
    },
    /// The disk is full: creating the first segment or the hard state file failed.
    #[error("no space left while {0}")]
    NoSpace(String),
    /// A segment file is not a valid segment of this version (wrong magic, future version,
    /// empty or cut-short header). Inspect or move the file; raftwal will not guess.
    #[error("bad segment file {file}: {reason}")]
    BadSegment {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: HeaderError,
    },
    /// A segment belongs to another cluster or log, or its name and header disagree.
    #[error("segment {file} does not belong here: {reason}")]
    Foreign {
        /// The file.
        file: PathBuf,
        /// The mismatch.
        reason: String,
    },
    /// Stored data is corrupt before the last durable point: repair from a peer.
    #[error("corrupt log: {0}")]
    Corrupt(Corruption),
}

/// Why [`crate::storage::LogStore::append`] refused entries. The log is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// The entries do not continue the log: truncate first, or fix the indexes.
    #[error("entry index {got} does not follow {expected_prev}")]
    NotContiguous {
        /// The index the new entry should follow.
        expected_prev: LogIndex,
        /// The index it has.
        got: LogIndex,
    },
    /// An entry's term is lower than the term before it (a Raft log's terms never decrease).
    #[error("entry {index} has term {term}, below the previous term {prev_term}")]
    TermRegressed {
        /// The entry.
        index: LogIndex,
        /// Its term.
        term: Term,
        /// The term of the entry before it.
        prev_term: Term,
    },
    /// A payload is larger than a segment can hold.
    #[error("entry {index} payload of {payload_bytes} bytes exceeds the limit of {limit_bytes}")]
    EntryTooLarge {
        /// The entry.
        index: LogIndex,
        /// Its payload size.
        payload_bytes: usize,
        /// The largest payload allowed.
        limit_bytes: usize,
    },
}

/// Why [`crate::storage::LogStore::save_client_seqs`] failed. None poisons the log: the file's
/// other slot still holds what the last save wrote.
#[derive(Debug, thiserror::Error)]
pub enum ClientSeqsError {
    /// The disk is full; free space (compact) and save again.
    #[error("no space left to save the clients' sequence numbers: {0}")]
    NoSpace(io::Error),
    /// A system call failed.
    #[error("I/O error while saving the clients' sequence numbers: {0}")]
    Io(io::Error),
    /// More pairs than a slot holds (the caller's bug).
    #[error("{0} clients' sequence numbers, more than the file holds")]
    TooMany(usize),
    /// More gap ranges than a slot holds (the caller's bug).
    #[error("{0} ranges of clients' sequence numbers, more than the file holds")]
    TooManyGaps(usize),
}

/// Why [`crate::storage::LogStore::submit`] did not start a batch.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// A new segment could not be preallocated: the disk is full. Durable entries are intact and
    /// the pending ones stay queued; free space (compact) and submit again.
    #[error("no space left for a new segment: {0}")]
    NoSpace(io::Error),
    /// The disk refused the op or a segment could not be created; the log is now poisoned.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The system error.
        source: io::Error,
    },
}

/// Why [`crate::storage::LogStore::process_completions`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// The batch's fdatasync failed: the log is poisoned; nothing after the previous durable
    /// index may be acknowledged.
    #[error("fdatasync failed; log poisoned: {0}")]
    SyncFailed(io::Error),
    /// The batch's write failed: the log is poisoned.
    #[error("write failed; log poisoned: {0}")]
    WriteFailed(io::Error),
    /// The batch's write ran out of space; the batch was withdrawn and stays queued.
    #[error("no space left for a write: {0}")]
    NoSpace(io::Error),
}

/// Why [`crate::storage::LogStore::flush`] (append-and-wait for simple callers) failed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// Starting a batch failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// A batch failed.
    #[error(transparent)]
    Completion(#[from] CompletionError),
}

/// Why [`crate::storage::LogStore::read`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The index was compacted away; read from `first_index` or use a snapshot.
    #[error("index {index} is compacted; the log starts at {first_index}")]
    Compacted {
        /// The requested index.
        index: LogIndex,
        /// The first index still stored.
        first_index: LogIndex,
    },
    /// The index is past the end of the log.
    #[error("index {index} is beyond the last index {last_index}")]
    BeyondEnd {
        /// The requested index.
        index: LogIndex,
        /// The last index of the log.
        last_index: LogIndex,
    },
    /// Reading a segment failed.
    #[error("I/O error reading segment {segment}: {source}")]
    Io {
        /// The segment.
        segment: SegmentId,
        /// The system error.
        source: io::Error,
    },
    /// Stored bytes failed their checksum: repair from a peer.
    #[error("corrupt log: {0}")]
    Corrupt(Corruption),
}

/// Why [`crate::storage::LogStore::truncate_after`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TruncateError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// The index is before the compacted prefix: those entries are committed and gone.
    #[error("cannot truncate after {index}: the log starts at {first_index}")]
    Compacted {
        /// The requested index.
        index: LogIndex,
        /// The first index still stored.
        first_index: LogIndex,
    },
    /// No space for the new segment that ends the truncated log; nothing changed.
    #[error("no space left for the truncation's new segment: {0}")]
    NoSpace(io::Error),
    /// A batch in flight or a file operation failed; the log is now poisoned.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The system error.
        source: io::Error,
    },
}

/// Why [`crate::storage::LogStore::reset_to`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// The requested start cannot be a log's: index 0 with a term other than 0 (no entry 0
    /// exists, so its term is 0), or index `u64::MAX` (no entry can follow it). Nothing
    /// changed.
    #[error("cannot reset the log to start after index {index} of term {term}: {reason}")]
    InvalidStart {
        /// The requested index.
        index: LogIndex,
        /// The requested term.
        term: Term,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The saved hard state's commit index is above the requested index: the entries between
    /// were committed on this node's word, and a reset must never drop committed entries
    /// (recovery also relies on the commit index being in the log). Nothing changed.
    #[error(
        "cannot reset the log to start after index {index}: the saved commit index is {commit}"
    )]
    BelowCommit {
        /// The requested index.
        index: LogIndex,
        /// The saved commit index.
        commit: LogIndex,
    },
    /// No space for the new base segment (or for clearing the bytes of a segment that must be
    /// cleared first); the log is unchanged and usable, except that the batches that were in
    /// flight were waited for. Free space (compact) and try again.
    #[error("no space left for the reset's new segment: {0}")]
    NoSpace(io::Error),
    /// A batch in flight or a file operation failed; the log is now poisoned. Reopening it
    /// recovers either the old log (possibly without some of its entries after the index) or
    /// the reset one.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The system error.
        source: io::Error,
    },
}

/// Why [`crate::storage::LogStore::compact_before`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// Removing a segment failed; the log is now poisoned.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The system error.
        source: io::Error,
    },
}

/// Why [`crate::storage::LogStore::save_hard_state`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HardStateError {
    /// See [`Poisoned`].
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// Writing or syncing the hard state failed; the log is now poisoned and the new state
    /// must not be relied on (no message that depends on it may leave the node).
    #[error("I/O error while saving the hard state: {0}")]
    Io(io::Error),
    /// The file system refused the slot's write for lack of space: nothing changed (the saved
    /// state is the previous one) and the log is not poisoned; the new state is not saved, so
    /// nothing that depends on it may leave the node until a later save succeeds.
    #[error("no space to save the hard state: {0}")]
    NoSpace(io::Error),
}
