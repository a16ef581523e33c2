//! Appends waiting for their commit: the leader's list of callers to answer.
//!
//! Owns: [`Waiters`] (sorted by the last index each waits for) and the ways to answer one
//! ([`AppendReply`]: a local one-shot channel or a remote client's responder).
//! Must not: answer success before the commit index covers the waiter's last entry and the entry
//! there still has the waiter's term (an entry overwritten after a leader change never
//! committed, whatever index it had).
//!
//! Invariants:
//! 1. `queue` is sorted by `last`; a waiter is answered exactly once (success, or one failure).

use crate::error::{AppendError, LeaderInfo};
use crate::log::BatchPosition;
use crate::metrics::LogMetrics;
use crate::runtime::command::Reply;
use raftwal_wire::client::{
    Appended, AppendedBatch, ClientError, ClientResponse, ErrorCode, LeaderHint, NotLeader,
};
use raftwal_wire::transport::Responder;
use raftwal_wire::types::{LogId, LogIndex, Term};
use std::collections::VecDeque;
use std::time::Instant;

/// How to answer one append.
#[derive(Debug)]
pub(crate) enum AppendReply {
    /// The embedding API.
    Local(Reply<Result<BatchPosition, AppendError>>),
    /// A remote client; `batch` tells an AppendBatch from an Append.
    Remote { responder: Responder, batch: bool },
}

/// Why an append failed, in terms both kinds of callers understand.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    NotLeader(Option<LeaderInfo>),
    LeadershipLost(Option<LeaderInfo>),
    TransferInProgress,
    /// The leader's disk is this many payload bytes behind (at least), over the limit.
    Backlogged {
        undurable_bytes: usize,
        limit_bytes: usize,
    },
    /// The leader holds a `Ready` a full disk refused (module `replica`, invariant 3).
    DiskFull,
    TooLarge {
        size_bytes: usize,
        max_bytes: usize,
    },
    Forgotten,
    /// A retried batch of which only a prefix, from `first_index`, is in the log.
    PartialBatch {
        first_index: LogIndex,
    },
    EmptyBatch,
    Poisoned(String),
    /// The node stopped while the append waited for its commit: its entries may still commit.
    Interrupted,
}

fn hint(leader: Option<LeaderInfo>) -> Option<LeaderHint> {
    leader.map(|l| LeaderHint { node: l.node, client_addr: l.addr })
}

impl AppendReply {
    /// Answers with success.
    pub(crate) fn succeed(self, log: LogId, position: BatchPosition) {
        match self {
            AppendReply::Local(reply) => {
                let _ = reply.send(Ok(position));
            }
            AppendReply::Remote { responder, batch } => {
                let response = if batch {
                    ClientResponse::AppendedBatch(AppendedBatch {
                        log,
                        first_index: position.first_index,
                        count: u32::try_from(position.count).unwrap_or(u32::MAX),
                        term: position.term,
                    })
                } else {
                    ClientResponse::Appended(Appended {
                        log,
                        index: position.first_index,
                        term: position.term,
                    })
                };
                // A client that went away needs no answer.
                let _ = responder.respond(&response);
            }
        }
    }

    /// Answers with a failure.
    pub(crate) fn fail(self, log: LogId, failure: Failure) {
        match self {
            AppendReply::Local(reply) => {
                let error = match failure {
                    Failure::NotLeader(leader) => AppendError::NotLeader { log, leader },
                    Failure::LeadershipLost(_) => AppendError::LeadershipLost { log },
                    Failure::TransferInProgress => AppendError::TransferInProgress { log },
                    Failure::Backlogged { undurable_bytes, limit_bytes } => {
                        AppendError::Backlogged { log, undurable_bytes, limit_bytes }
                    }
                    Failure::DiskFull => AppendError::DiskFull { log },
                    Failure::TooLarge { size_bytes, max_bytes } => {
                        AppendError::TooLarge { size_bytes, max_bytes }
                    }
                    // Local appends carry no sequence numbers; these cannot arise for them, but
                    // an answer is still owed.
                    Failure::Forgotten | Failure::PartialBatch { .. } => {
                        AppendError::LeadershipLost { log }
                    }
                    Failure::EmptyBatch => AppendError::EmptyBatch,
                    Failure::Poisoned(reason) => AppendError::Poisoned { log, reason },
                    Failure::Interrupted => AppendError::Interrupted { log },
                };
                let _ = reply.send(Err(error));
            }
            AppendReply::Remote { responder, .. } => {
                let error =
                    |code, message: String| ClientResponse::Error(ClientError { code, message });
                let response = match failure {
                    // The client retries where the hint points, with the same sequence number:
                    // the log's deduplication makes that safe even if the entry did commit.
                    Failure::NotLeader(leader) | Failure::LeadershipLost(leader) => {
                        ClientResponse::NotLeader(NotLeader { log, leader: hint(leader) })
                    }
                    Failure::TransferInProgress => error(
                        ErrorCode::Overloaded,
                        "leadership transfer in progress; retry shortly".into(),
                    ),
                    Failure::Backlogged { undurable_bytes, limit_bytes } => error(
                        ErrorCode::Overloaded,
                        format!(
                            "the leader's disk is {undurable_bytes} bytes behind its appends (at \
                             most {limit_bytes} are held in memory); retry shortly"
                        ),
                    ),
                    Failure::DiskFull => error(
                        ErrorCode::Overloaded,
                        "the leader's disk is full; it takes no appends until there is room; \
                         retry shortly"
                            .into(),
                    ),
                    Failure::TooLarge { size_bytes, max_bytes } => error(
                        ErrorCode::InvalidRequest,
                        format!("entry of {size_bytes} bytes exceeds the maximum of {max_bytes}"),
                    ),
                    Failure::Forgotten => error(
                        ErrorCode::InvalidRequest,
                        "sequence number is older than the log's deduplication window: \
                         whether this append is in the log is unknown; read the log before \
                         appending it again"
                            .into(),
                    ),
                    Failure::PartialBatch { first_index } => error(
                        ErrorCode::InvalidRequest,
                        format!(
                            "only part of this batch is in the log (from index {first_index}); \
                             the rest was lost in a leader change: read from that index and \
                             append the missing entries as a new request"
                        ),
                    ),
                    Failure::EmptyBatch => error(ErrorCode::InvalidRequest, "empty batch".into()),
                    Failure::Poisoned(reason) => error(
                        ErrorCode::Poisoned,
                        format!("log refuses writes after a storage failure: {reason}"),
                    ),
                    // The client retries elsewhere with the same sequence numbers: the log's
                    // deduplication makes that safe even if the entries do commit.
                    Failure::Interrupted => {
                        error(ErrorCode::ShuttingDown, "node is shutting down".into())
                    }
                };
                let _ = responder.respond(&response);
            }
        }
    }
}

/// One append waiting for its entries `first..=last` (of `term`) to commit.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) first: LogIndex,
    pub(crate) last: LogIndex,
    pub(crate) term: Term,
    pub(crate) reply: AppendReply,
    /// When the request reached the shard (append latency).
    pub(crate) arrived: Instant,
}

/// The leader's appends waiting for commit. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    queue: VecDeque<Waiter>,
}

impl Waiters {
    /// Adds a waiter, keeping the queue sorted (a new proposal goes last; a retry attached to an
    /// entry already in the log goes where its index says).
    pub(crate) fn push(&mut self, waiter: Waiter) {
        let position = self.queue.partition_point(|w| w.last <= waiter.last);
        self.queue.insert(position, waiter);
    }

    /// Answers every waiter whose last entry is committed: success when the entry there still has
    /// the waiter's term, [`Failure::LeadershipLost`] when another leader's entry replaced it.
    pub(crate) fn complete(
        &mut self,
        log: LogId,
        commit: LogIndex,
        term_at: impl Fn(LogIndex) -> Option<Term>,
        leader: Option<LeaderInfo>,
        metrics: &LogMetrics,
        now: Instant,
    ) {
        while self.queue.front().is_some_and(|w| w.last <= commit) {
            let Some(w) = self.queue.pop_front() else { break };
            metrics.append_latency_us.observe_duration(now.saturating_duration_since(w.arrived));
            if term_at(w.last) == Some(w.term) {
                let count = w.last.distance_from(w.first.prev());
                w.reply.succeed(log, BatchPosition { first_index: w.first, count, term: w.term });
            } else {
                w.reply.fail(log, Failure::LeadershipLost(leader));
            }
        }
    }

    /// Answers every waiter with `failure`.
    pub(crate) fn fail_all(&mut self, log: LogId, failure: &Failure) {
        for w in self.queue.drain(..) {
            w.reply.fail(log, failure.clone());
        }
    }
}
