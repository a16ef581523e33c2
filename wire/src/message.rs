//! Raft peer messages.
//!
//! These are the values the sans-IO consensus core (`raftwal::raft`) consumes and produces, and
//! the values the codec puts on the wire between peers. Pure data, no I/O.
//!
//! Every message carries the sender's current term (`Message::term`), as in the Raft paper, except
//! where a field's doc says otherwise (PreVote).

use crate::client::{ClientId, ClientSeq};
use crate::types::{Entry, LogId, LogIndex, NodeId, Term};

/// One Raft message between two members of one log's group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The raft group (log) this message belongs to.
    pub log: LogId,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The sender's current term. For a PreVote request it is the term the sender *would*
    /// campaign in (its term + 1) without having moved to it; for a granted PreVote response it
    /// echoes that term.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of Raft messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// A candidate (or pre-candidate) asks for a vote (paper 5.2, thesis 9.6 for PreVote).
    RequestVote(RequestVote),
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse(RequestVoteResponse),
    /// The leader replicates entries, or probes for the point where the logs match (paper 5.3).
    AppendEntries(AppendEntries),
    /// The answer to [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendEntriesResponse),
    /// The leader asserts its leadership and spreads its commit index without entries.
    Heartbeat(Heartbeat),
    /// The answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse(HeartbeatResponse),
    /// The leader tells the transfer target to start an election at once (thesis 3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of a client (thesis 6.4).
    ReadIndex(ReadIndex),
    /// The answer to [`MessageBody::ReadIndex`].
    ReadIndexResponse(ReadIndexResponse),
    /// The leader no longer holds the entries this follower lacks: the follower's log is to
    /// start after the leader's entry `index` (an empty snapshot). Answered with
    /// [`AppendEntriesResponse::Success`] once the follower's log durably starts there.
    LogStart(LogStart),
}

/// Body of a vote request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestVote {
    /// A PreVote request: it changes no state on the receiver.
    pub pre_vote: bool,
    /// Index of the candidate's last log entry (for the election restriction, paper 5.4.1).
    pub last_log_index: LogIndex,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
    /// The election was started by a leadership transfer ([`MessageBody::TimeoutNow`]); receivers
    /// grant the vote even though they heard from a leader recently.
    pub leadership_transfer: bool,
}

/// Body of a vote response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestVoteResponse {
    /// Answers a PreVote request.
    pub pre_vote: bool,
    /// The vote (or pre-vote) was granted.
    pub granted: bool,
}

/// Body of an AppendEntries request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    /// Index of the entry just before `entries`.
    pub prev_log_index: LogIndex,
    /// Term of the entry at `prev_log_index`.
    pub prev_log_term: Term,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
    /// Entries to append, consecutive, starting at `prev_log_index + 1`; may be empty (probe).
    pub entries: Vec<Entry>,
}

/// Body of an AppendEntries response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendEntriesResponse {
    /// The follower's log matches the leader's up to `match_index`, and every entry up to it is
    /// on the follower's stable storage.
    Success {
        /// Highest index known to match the leader's log and to be durable on the follower.
        match_index: LogIndex,
    },
    /// The consistency check failed at `rejected_index` (the request's `prev_log_index`).
    Reject {
        /// The `prev_log_index` of the rejected request.
        rejected_index: LogIndex,
        /// Fast backtracking hint: the leader should retry at or below this index.
        hint_index: LogIndex,
        /// Term of the follower's entry at `hint_index` (0 if the follower has no entry there),
        /// so the leader can skip a whole conflicting term per round trip.
        hint_term: Term,
    },
}

/// Body of a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the leader knows this follower has
    /// (so a follower never commits entries it might not share with the leader).
    pub leader_commit: LogIndex,
    /// A ReadIndex round this heartbeat confirms leadership for, echoed in the response.
    pub read_context: Option<u64>,
}

/// Body of a heartbeat response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The `read_context` of the heartbeat this answers.
    pub read_context: Option<u64>,
}

/// Body of a read-index request forwarded from a follower to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadIndex {
    /// Chosen by the follower to match the response to its pending reads.
    pub request_id: u64,
}

/// Body of a read-index response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadIndexResponse {
    /// The request this answers.
    pub request_id: u64,
    /// The index a read must wait for, or `None` when the receiver could not serve it (it is not
    /// the leader, or it has not committed an entry of its term yet).
    pub read_index: Option<LogIndex>,
}

/// Body of a log-start message: the follower's log is to start after entry `index` of `term`.
///
/// The leader sends it when the entries a follower needs were compacted away from its own log.
/// Every entry up to `index` is committed, so a follower that holds `(index, term)` keeps its
/// log, and one that does not replaces its whole log with an empty one starting at `index + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStart {
    /// The last entry the follower's log is to start after (the leader's first index - 1).
    pub index: LogIndex,
    /// The term of the leader's entry at `index`.
    pub term: Term,
    /// The leader's commit index (at least `index`).
    pub leader_commit: LogIndex,
    /// For each client whose appends the leader's deduplication table remembers at or before
    /// `index`, the highest sequence number among them (or below which it forgot them): a
    /// follower that starts over never sees those entries, and refuses retries of them rather
    /// than append them again should it lead. Filled by the node's runtime, not by the
    /// consensus core (which sends it empty): in the order the leader would forget the clients
    /// (oldest last entry first), and no more than one frame holds
    /// ([`crate::codec::log_start_clients_max`]; the oldest clients are left out).
    pub client_seqs: Vec<(ClientId, ClientSeq)>,
}

impl Message {
    /// Memory the decoded message holds beyond its frame's bytes (which its entries' data
    /// share): its lists' elements. Inbound budgets charge the frame's size plus this, so that
    /// a frame of many tiny entries is counted for what it takes once decoded.
    pub fn decoded_extra_bytes(&self) -> usize {
        match &self.body {
            MessageBody::AppendEntries(a) => a.entries.len() * std::mem::size_of::<Entry>(),
            MessageBody::LogStart(l) => {
                l.client_seqs.len() * std::mem::size_of::<(ClientId, ClientSeq)>()
            }
            _ => 0,
        }
    }

    /// A short name of the message kind, for logs and traces.
    pub fn kind_name(&self) -> &'static str {
        match &self.body {
            MessageBody::RequestVote(v) if v.pre_vote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(v) if v.pre_vote => "PreVoteResponse",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResponse",
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex(_) => "ReadIndex",
            MessageBody::ReadIndexResponse(_) => "ReadIndexResponse",
            MessageBody::LogStart(_) => "LogStart",
        }
    }
}
