//! Linearizable reads without writing to the log: ReadIndex (thesis 6.4).
//!
//! Owns: the leader's queue of reads waiting for leadership confirmation ([`ReadQueue`]), the
//! follower's forwarded reads, and [`RaftCore::read_index`].
//! Must not: answer a read before (a) the leader committed an entry of its term, so its commit
//! index is the cluster's, and (b) a majority acknowledged a heartbeat sent after the read was
//! registered, so no newer leader existed when it was.
//! Invariants:
//! 1. Read contexts grow strictly; a read registered while round `c` is open is confirmed only by
//!    acknowledgements of contexts `>= c`, all sent after it was registered.
//! 2. Reads are confirmed in registration order.
//! 3. When leadership ends, every pending read is answered with `None` (retry), as is a
//!    forwarded read that finds `READS_WAITING_MAX` reads waiting already. A follower's
//!    forwarded read is answered with `None` when its leader changes, or after an election
//!    timeout without an answer (the request or its answer was lost), so every read is answered.

use crate::raft::core::{RaftCore, Role};
use crate::raft::errors::ReadIndexError;
use crate::raft::ready::ReadState;
use crate::raft::rejoin::REJOIN_READ_REQUEST_ID;
use raftwal_wire::message::{MessageBody, ReadIndex, ReadIndexResponse};
use raftwal_wire::types::{LogIndex, NodeId};
use std::collections::VecDeque;

/// The most reads a leader keeps waiting (for its first commit in the term, or for a heartbeat
/// round) before it answers a follower's forwarded read with `None` at once (retry): a peer that
/// forwards reads without end must not grow the leader's queues without bound. Far above what
/// admission lets the nodes' clients have in flight.
pub const READS_WAITING_MAX: usize = 1 << 16;

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    context: u64,
    request_id: u64,
    /// Who asked: this replica, or the follower that forwarded the request.
    origin: NodeId,
    read_index: LogIndex,
}

/// The leader's reads in flight.
#[derive(Clone, Debug)]
pub(crate) struct ReadQueue {
    /// The context of the round reads join now; its heartbeat is not sent yet.
    next_context: u64,
    /// Reads joined `next_context` since the last heartbeat.
    round_open: bool,
    /// The last context sent in a heartbeat (0: none).
    last_sent_context: u64,
    confirming: VecDeque<PendingRead>,
    /// Reads waiting for the leader's first commit in its term: `(request_id, origin)`.
    awaiting_commit: Vec<(u64, NodeId)>,
}

impl Default for ReadQueue {
    fn default() -> ReadQueue {
        ReadQueue {
            next_context: 1,
            round_open: false,
            last_sent_context: 0,
            confirming: VecDeque::new(),
            awaiting_commit: Vec::new(),
        }
    }
}

impl ReadQueue {
    pub(crate) fn round_open(&self) -> bool {
        self.round_open
    }

    /// The last context a heartbeat carried (0: none): a follower can echo no later one.
    pub(crate) fn last_sent_context(&self) -> u64 {
        self.last_sent_context
    }

    /// The context a heartbeat sent now carries: it closes the open round (invariant 1), and
    /// repeats the latest context while reads wait, so a lost heartbeat does not stall them.
    pub(crate) fn context_for_heartbeat(&mut self) -> Option<u64> {
        if self.round_open {
            self.round_open = false;
            self.last_sent_context = self.next_context;
            self.next_context += 1;
        }
        (!self.confirming.is_empty()).then_some(self.last_sent_context)
    }
}

impl RaftCore {
    /// Starts a linearizable read identified by `request_id`. The answer arrives as a
    /// [`ReadState`] in a later `Ready`: serve the read once this replica's commit index reaches
    /// its `read_index`. A follower forwards the request to its leader.
    pub fn read_index(&mut self, request_id: u64) -> Result<(), ReadIndexError> {
        if self.role == Role::Leader {
            self.leader_read(request_id, self.config.id);
            return Ok(());
        }
        let Some(leader) = self.leader else {
            return Err(ReadIndexError::NoLeader);
        };
        self.forwarded_reads.push((request_id, 0));
        self.send(leader, MessageBody::ReadIndex(ReadIndex { request_id }));
        Ok(())
    }

    fn leader_read(&mut self, request_id: u64, origin: NodeId) {
        if !self.committed_in_term() {
            self.reads.awaiting_commit.push((request_id, origin));
            return;
        }
        // A rejoining follower's catch-up read is answered with the last index (module
        // `rejoin`, step 3): entries the leader may still commit on its lost acknowledgements.
        let read_index = if request_id == REJOIN_READ_REQUEST_ID && origin != self.config.id {
            self.log.last_index()
        } else {
            self.log.commit()
        };
        if self.config.voters.len() == 1 {
            self.answer_read(request_id, origin, Some(read_index));
            return;
        }
        let context = self.reads.next_context;
        self.reads.round_open = true;
        self.reads.confirming.push_back(PendingRead { context, request_id, origin, read_index });
    }

    /// The leader committed its first entry of the term: reads that waited for it join a round.
    pub(super) fn release_reads_awaiting_commit(&mut self) {
        let waiting = std::mem::take(&mut self.reads.awaiting_commit);
        for (request_id, origin) in waiting {
            self.leader_read(request_id, origin);
        }
    }

    /// Answers every read whose context a majority (the leader included) has acknowledged.
    pub(super) fn confirm_reads(&mut self) {
        self.scratch.clear();
        self.scratch.push(u64::MAX);
        self.scratch.extend(self.peers.iter().map(|progress| progress.read_context_acked));
        self.scratch.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = self.scratch[self.config.quorum() - 1];
        while let Some(read) = self.reads.confirming.front().copied() {
            if read.context > confirmed {
                break;
            }
            self.reads.confirming.pop_front();
            self.answer_read(read.request_id, read.origin, Some(read.read_index));
        }
    }

    fn answer_read(&mut self, request_id: u64, origin: NodeId, read_index: Option<LogIndex>) {
        if origin == self.config.id {
            self.out.read_states.push(ReadState { request_id, read_index });
        } else {
            self.send(
                origin,
                MessageBody::ReadIndexResponse(ReadIndexResponse { request_id, read_index }),
            );
        }
    }

    /// Invariant 3, on the leader.
    pub(super) fn fail_leader_reads(&mut self) {
        let confirming = std::mem::take(&mut self.reads.confirming);
        for read in confirming {
            self.answer_read(read.request_id, read.origin, None);
        }
        let waiting = std::mem::take(&mut self.reads.awaiting_commit);
        for (request_id, origin) in waiting {
            self.answer_read(request_id, origin, None);
        }
        self.reads.round_open = false;
    }

    /// Invariant 3, on a follower whose leader changed: its forwarded reads will not be answered.
    pub(super) fn fail_forwarded_reads(&mut self) {
        for (request_id, _) in self.forwarded_reads.drain(..) {
            self.out.read_states.push(ReadState { request_id, read_index: None });
        }
    }

    /// Invariant 3 when an answer never comes: a forwarded read waits at most an election
    /// timeout.
    pub(super) fn age_forwarded_reads(&mut self) {
        let limit = self.config.election_timeout_ticks;
        let mut position = 0;
        while position < self.forwarded_reads.len() {
            let (request_id, waited) = &mut self.forwarded_reads[position];
            *waited += 1;
            if *waited >= limit {
                let request_id = *request_id;
                self.forwarded_reads.swap_remove(position);
                self.out.read_states.push(ReadState { request_id, read_index: None });
            } else {
                position += 1;
            }
        }
    }

    /// A follower forwarded a read.
    pub(super) fn handle_read_index_request(&mut self, from: NodeId, request: ReadIndex) {
        let waiting = self.reads.confirming.len() + self.reads.awaiting_commit.len();
        if self.role == Role::Leader && waiting < READS_WAITING_MAX {
            if request.request_id == REJOIN_READ_REQUEST_ID {
                self.forget_follower_log(from);
            }
            self.leader_read(request.request_id, from);
        } else {
            self.answer_read(request.request_id, from, None);
        }
    }

    /// The leader answered a forwarded read. Only the leader the reads were forwarded to
    /// answers them (they fail when the leader changes): an answer from any other node is
    /// ignored. The ids are the runtime's, unique across its restarts, so an answer to a read
    /// of this replica's previous process matches none of the reads waiting now.
    pub(super) fn handle_read_index_response(&mut self, from: NodeId, response: ReadIndexResponse) {
        if self.rejoin.is_some()
            && self.rejoin_read_answered(response.request_id, response.read_index)
        {
            return;
        }
        if self.leader != Some(from) {
            return;
        }
        let Some(position) = self
            .forwarded_reads
            .iter()
            .position(|(request_id, _)| *request_id == response.request_id)
        else {
            return;
        };
        self.forwarded_reads.swap_remove(position);
        self.out
            .read_states
            .push(ReadState { request_id: response.request_id, read_index: response.read_index });
    }
}
