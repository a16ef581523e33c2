//! What the core asks its driver to do: the [`Ready`] value, drained after a batch of inputs.
//!
//! Owns: [`Ready`], [`ReadState`] and the core's internal [`Outbox`] that accumulates them.
//! Must not: perform any effect. The driver performs them, in the order documented on [`Ready`].
//! Invariants:
//! 1. A message in [`Ready::messages`] never depends on anything in the same or an earlier
//!    `Ready` that is not yet durable (it carries no vote, and acknowledges no entry, that could
//!    still be lost in a crash). Everything that does is in [`Ready::messages_after_persist`].
//!    Nor does it acknowledge entries the same `Ready` replaces: answers to appends of a term
//!    the replica left before the drain are dropped, not handed out.
//! 2. [`Ready::entries`] are consecutive; when the first one's index is at or below the stored
//!    log's last index, the stored suffix from that index on must be replaced (a follower
//!    overwriting a conflicting suffix, paper 5.3). It is never at or below a committed index.

use raftwal_wire::message::{AppendEntriesResponse, Message, MessageBody};
use raftwal_wire::types::{Entry, HardState, LogIndex, Term};

/// The outcome of a read-index request ([`crate::raft::RaftCore::read_index`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's request id.
    pub request_id: u64,
    /// Serve the read once this replica's commit index (or applied index) reaches this index.
    /// `None` when leadership could not be confirmed (the leader changed); retry the read.
    pub read_index: Option<LogIndex>,
}

/// Everything the core wants done, drained by [`crate::raft::RaftCore::ready`].
///
/// The driver's duties, in order:
/// 1. When `log_start` is `Some((index, term))`, replace the stored log with an empty one that
///    starts after entry `index` of `term` (the leader compacted away what this replica lacks;
///    every entry up to `index` is committed), after the writes of earlier `Ready`s. Then write
///    `hard_state` (when `Some`) and `entries` (replacing any stored suffix from the first
///    entry's index on) to storage. Writes of successive `Ready`s must reach the disk in order.
/// 2. Send `messages` at once (they may overtake the writes of step 1: a leader's AppendEntries go
///    out in parallel with its own disk write, thesis 10.2.1).
/// 3. When the writes of this `Ready` and of every earlier one are durable (fsynced), send
///    `messages_after_persist` and report [`Ready::persist_point`] through
///    [`crate::raft::RaftCore::persisted`]. Drop, never report, the point of a `Ready` whose
///    entries a later `Ready` replaced (its entries start at or below that point): entries
///    replaced and then written back by a third leader have the same `(index, term)` again, so
///    the core could not tell the stale report from the new one and would acknowledge entries
///    the disk may not hold. Reporting only the newest durable point satisfies this.
/// 4. Entries up to `committed` are committed: acknowledge the proposals they carry (check the
///    term with [`crate::raft::RaftCore::term_at`], an entry at that index may be another
///    leader's) and wake readers. Committed entries may not be durable on this replica yet; they
///    are durable on a majority.
/// 5. Answer the reads in `read_states`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Replace the stored log with an empty one starting after `(index, term)` before writing
    /// `entries` (step 1).
    pub log_start: Option<(LogIndex, Term)>,
    /// The hard state to persist, when it changed since the last `Ready`. Its commit index never
    /// exceeds what this replica already holds durably, so it may reach the disk before, after
    /// or without this `Ready`'s entries.
    pub hard_state: Option<HardState>,
    /// Entries to append (see invariant 2 in the module documentation).
    pub entries: Vec<Entry>,
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Messages to send only once this `Ready`'s writes (and all earlier ones) are durable:
    /// vote requests and grants, a follower's refusals and heartbeat answers.
    pub messages_after_persist: Vec<Message>,
    /// The new commit index, when it advanced since the last `Ready`.
    pub committed: Option<LogIndex>,
    /// Answers to read-index requests.
    pub read_states: Vec<ReadState>,
    /// Whether this `Ready`'s writes must be fsynced before `messages_after_persist` leave: it
    /// has entries, or the term or vote changed. When only the commit index changed, the hard
    /// state may be written lazily (the commit index is never needed for safety).
    pub must_sync: bool,
    /// The replica finished rejoining after the loss of its durable state (module `rejoin`):
    /// once this `Ready`'s hard state is durable, the driver may drop its rejoin marker, and
    /// the replica restarts normally from then on.
    pub rejoined: bool,
}

impl Ready {
    /// The `(index, term)` to report to [`crate::raft::RaftCore::persisted`] once this `Ready`'s
    /// writes are durable: its last entry, if it has entries, or else the start of a reset log.
    pub fn persist_point(&self) -> Option<(LogIndex, Term)> {
        self.entries.last().map(|entry| (entry.index, entry.term)).or(self.log_start)
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.log_start.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.committed.is_none()
            && self.read_states.is_empty()
            && !self.rejoined
    }
}

/// Messages and read answers accumulated between two `Ready`s.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<Message>,
    pub(crate) messages_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
}

impl Outbox {
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.read_states.is_empty()
    }
}

/// Whether a message may only leave after the preceding persist completes (invariant 1): a real
/// vote request or grant depends on the persisted term and vote; a follower's refusals and
/// heartbeat answers carry a term it should not forget. Pre-votes change no state anywhere, a
/// leader's messages depend only on a term that was durable before it could be elected, and a
/// follower's success answers are only ever computed from entries already reported durable.
pub(crate) fn needs_persist(body: &MessageBody) -> bool {
    match body {
        MessageBody::RequestVote(request) => !request.pre_vote,
        MessageBody::RequestVoteResponse(response) => !response.pre_vote,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { .. }) => false,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject { .. })
        | MessageBody::HeartbeatResponse(_) => true,
        MessageBody::AppendEntries(_)
        | MessageBody::LogStart(_)
        | MessageBody::Heartbeat(_)
        | MessageBody::TimeoutNow
        | MessageBody::ReadIndex(_)
        | MessageBody::ReadIndexResponse(_) => false,
    }
}
