//! The errors of the core's operations, one enum per operation.
//!
//! Owns: [`ProposeError`], [`StepError`], [`ReadIndexError`], [`TransferError`], [`RestoreError`].
//! Must not: carry anything the caller cannot act on; every variant says what to do next.

use crate::raft::config::ConfigError;
use raftwal_wire::types::{LogId, LogIndex, NodeId, Term};
use thiserror::Error;

/// Why [`crate::raft::RaftCore::propose`] refused a batch. Nothing was appended.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica is not the leader. Send the batch to `leader` when it is known; otherwise wait
    /// for an election and retry.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this replica knows of in its current term, if any.
        leader: Option<NodeId>,
    },
    /// The leader is handing leadership to `to` and accepts no new entries meanwhile (so the
    /// target can catch up). Retry shortly, at `to`.
    #[error("leadership is being transferred to {to}")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// The batch held no payload.
    #[error("the batch is empty")]
    EmptyBatch,
    /// The log holds an entry at the largest index a log can hold ([`LAST_INDEX_MAX`]), or the
    /// batch would pass it: no entry can be appended any more. Only a peer's message naming an
    /// index near the top of the range (or a damaged disk) brings a log there.
    ///
    /// [`LAST_INDEX_MAX`]: crate::raft::LAST_INDEX_MAX
    #[error("the log is full: no entry can follow index {last_index}")]
    LogFull {
        /// The largest index a log can hold.
        last_index: LogIndex,
    },
}

/// Why [`crate::raft::RaftCore::step`] dropped a message. The core's state did not change; the
/// driver may count these, and should look at the sender if they persist.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The message belongs to another log.
    #[error("message for log {got}, this replica serves log {expected}")]
    WrongLog {
        /// This replica's log.
        expected: LogId,
        /// The message's log.
        got: LogId,
    },
    /// The message is addressed to another node.
    #[error("message addressed to {to}, this replica is {id}")]
    WrongRecipient {
        /// This replica.
        id: NodeId,
        /// The message's recipient.
        to: NodeId,
    },
    /// The sender is not a voter of this log (or is this replica itself).
    #[error("message from {from}, which is not a peer of this replica")]
    UnknownSender {
        /// The message's sender.
        from: NodeId,
    },
    /// The message breaks the protocol's rules; `reason` says which.
    #[error("malformed {kind} from {from}: {reason}")]
    Malformed {
        /// The message kind.
        kind: &'static str,
        /// The sender.
        from: NodeId,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// An AppendEntries asked to overwrite a committed entry. A correct leader never does this
    /// (Leader Completeness); the message was refused and the log kept.
    #[error("{from} in term {term} tried to overwrite committed entry {index}")]
    ConflictWithCommitted {
        /// The sender.
        from: NodeId,
        /// The sender's term.
        term: Term,
        /// The committed index it conflicts with.
        index: LogIndex,
    },
}

/// Why [`crate::raft::RaftCore::read_index`] could not start a read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ReadIndexError {
    /// No leader is known in the current term. Retry after an election.
    #[error("no leader is known")]
    NoLeader,
}

/// Why [`crate::raft::RaftCore::transfer_leadership`] refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can transfer leadership. Ask `leader`.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this replica knows of, if any.
        leader: Option<NodeId>,
    },
    /// The target is not a voter of this log.
    #[error("{to} is not a voter of this log")]
    UnknownPeer {
        /// The requested target.
        to: NodeId,
    },
    /// The target is this replica, which already leads.
    #[error("this replica already leads")]
    AlreadyLeader,
    /// Another transfer is under way. Wait for it to finish or time out.
    #[error("a transfer to {to} is under way")]
    Busy {
        /// The current transfer's target.
        to: NodeId,
    },
}

/// Why [`crate::raft::RaftCore::restore`] could not build a core from durable state.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hard state's vote names a node that is not a voter.
    #[error("the persisted vote names {vote}, which is not a voter")]
    UnknownVote {
        /// The persisted vote.
        vote: NodeId,
    },
    /// The persisted commit index lies beyond the stored log: storage lost entries that were
    /// durable and committed. Repair the log from peers before the replica runs.
    #[error("the persisted commit index {commit} lies beyond the stored log's end {last}")]
    CommitBeyondLog {
        /// The persisted commit index.
        commit: LogIndex,
        /// The stored log's last index.
        last: LogIndex,
    },
    /// The stored log breaks the [`crate::raft::LogSource`] invariants at `index` (a hole, or a
    /// term lower than the one before it). The storage must be repaired before the replica runs.
    #[error("the stored log is inconsistent at index {index}: {reason}")]
    InconsistentLog {
        /// Where the inconsistency was found.
        index: LogIndex,
        /// What is wrong there.
        reason: &'static str,
    },
}
