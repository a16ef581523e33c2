//! The gateway where untrusted messages enter the core, and the answer to messages from older
//! terms.
//!
//! Owns: [`RaftCore::validate`] (shape checks: right log, right recipient, known sender, and the
//! protocol rules a message's fields must obey) and [`RaftCore::handle_stale_term`].
//! Must not: change state. A refused message changes nothing; everything downstream of the
//! gateway assumes its checks held (consecutive entries, non-decreasing terms no higher than the
//! sender's, hints at or below the refused index).
//! Invariants: every `StepError` it returns names the rule that was broken.

use crate::raft::core::RaftCore;
use crate::raft::errors::StepError;
use raftwal_wire::message::{
    AppendEntriesResponse, HeartbeatResponse, Message, MessageBody, RequestVoteResponse,
};
use raftwal_wire::types::{LogIndex, NodeId, Term};

impl RaftCore {
    /// Refuses messages that are not for this replica or break the protocol's shape: the gateway
    /// where untrusted input enters the core (everything downstream assumes it).
    pub(super) fn validate(&self, message: &Message) -> Result<(), StepError> {
        if message.log != self.config.log {
            return Err(StepError::WrongLog { expected: self.config.log, got: message.log });
        }
        if message.to != self.config.id {
            return Err(StepError::WrongRecipient { id: self.config.id, to: message.to });
        }
        if message.from == self.config.id || !self.config.voters.contains(&message.from) {
            return Err(StepError::UnknownSender { from: message.from });
        }
        let malformed =
            |reason| StepError::Malformed { kind: message.kind_name(), from: message.from, reason };
        // The top of the range is no real term or position: no election can follow the last
        // term, and no entry can follow the last index. Refusing them here keeps every `next()`
        // downstream (checked arithmetic in release builds) from overflowing on a peer's values.
        if message.term == Term(u64::MAX) {
            return Err(malformed("the term is the largest possible; no election could follow"));
        }
        match &message.body {
            MessageBody::AppendEntries(append) => {
                // The last entry must leave room for one more index: the loop below steps past
                // it, and so does every later AppendEntries.
                let room = u64::MAX - append.prev_log_index.get();
                if room <= append.entries.len() as u64 {
                    return Err(malformed("no entry can follow the previous index"));
                }
                if append.prev_log_term > message.term {
                    return Err(malformed("previous entry's term is above the leader's term"));
                }
                if append.prev_log_index == LogIndex::ZERO && append.prev_log_term != Term::ZERO {
                    return Err(malformed("index 0 has term 0"));
                }
                let mut expected_index = append.prev_log_index.next();
                let mut previous_term = append.prev_log_term;
                for entry in &append.entries {
                    if entry.index != expected_index {
                        return Err(malformed(
                            "entries are not consecutive after the previous one",
                        ));
                    }
                    if entry.term < previous_term || entry.term > message.term {
                        return Err(malformed("entry terms decrease or exceed the leader's term"));
                    }
                    expected_index = expected_index.next();
                    previous_term = entry.term;
                }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index,
                hint_index,
                ..
            }) => {
                if hint_index > rejected_index {
                    return Err(malformed("the hint is above the rejected index"));
                }
                if *rejected_index == LogIndex(u64::MAX) {
                    return Err(malformed("no AppendEntries can follow the rejected index"));
                }
            }
            MessageBody::RequestVote(request) => {
                if request.last_log_term > message.term {
                    return Err(malformed("the candidate's last term is above its term"));
                }
                if request.last_log_index == LogIndex::ZERO && request.last_log_term != Term::ZERO {
                    return Err(malformed("index 0 has term 0"));
                }
            }
            MessageBody::LogStart(start) => {
                if start.index == LogIndex::ZERO || start.term == Term::ZERO {
                    return Err(malformed("a log starts after an entry of some term"));
                }
                if start.index == LogIndex(u64::MAX) {
                    return Err(malformed("no entry can follow the start"));
                }
                if start.term > message.term {
                    return Err(malformed("the entry's term is above the leader's term"));
                }
                if start.leader_commit < start.index {
                    return Err(malformed("the leader's commit is below the start it names"));
                }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { .. })
            | MessageBody::RequestVoteResponse(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::HeartbeatResponse(_)
            | MessageBody::TimeoutNow
            | MessageBody::ReadIndex(_)
            | MessageBody::ReadIndexResponse(_) => {}
        }
        Ok(())
    }

    /// A message from an older term. A stale leader gets an answer carrying the current term,
    /// so it steps down; a stale pre-candidate gets a refusal with the current term, so it
    /// catches up. Everything else is dropped.
    pub(super) fn handle_stale_term(&mut self, from: NodeId, body: &MessageBody) {
        match body {
            MessageBody::AppendEntries(_)
            | MessageBody::LogStart(_)
            | MessageBody::Heartbeat(_) => self.send(
                from,
                MessageBody::HeartbeatResponse(HeartbeatResponse { read_context: None }),
            ),
            MessageBody::RequestVote(request) if request.pre_vote => self.send(
                from,
                MessageBody::RequestVoteResponse(RequestVoteResponse {
                    pre_vote: true,
                    granted: false,
                }),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::{Config, RaftCore, Role, StepError};
    use bytes::Bytes;
    use raftwal_wire::message::{
        AppendEntries, AppendEntriesResponse, Heartbeat, Message, MessageBody, RequestVoteResponse,
    };
    use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};

    fn core() -> RaftCore {
        let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut config = Config::new(NodeId(1), LogId(1), voters);
        config.election_timeout_ticks = 4;
        RaftCore::new(config).expect("a valid configuration")
    }

    fn from_2(term: u64, body: MessageBody) -> Message {
        Message { log: LogId(1), from: NodeId(2), to: NodeId(1), term: Term(term), body }
    }

    /// An AppendEntries of term 1 from node 2 after `prev_log_index` (of term 1).
    fn append_from_2(prev_log_index: u64, entries: Vec<Entry>) -> Message {
        let append = AppendEntries {
            prev_log_index: LogIndex(prev_log_index),
            prev_log_term: Term(1),
            leader_commit: LogIndex(0),
            entries,
        };
        from_2(1, MessageBody::AppendEntries(append))
    }

    // A peer's message carries any u64 its sender chose. Values at the top of the range are
    // refused at the gateway; they must not reach arithmetic that overflows (overflow checks
    // are on in release builds, so that would be a panic of the shard thread).

    #[test]
    fn an_append_after_the_last_index_is_refused_not_a_panic() {
        let mut c = core();
        let probe_past_the_end = append_from_2(u64::MAX, Vec::new());
        assert!(matches!(c.step(probe_past_the_end), Err(StepError::Malformed { .. })));
    }

    #[test]
    fn an_entry_at_the_last_index_is_refused_not_a_panic() {
        // The previous index is one below the top, so the gateway lets it through; the entry
        // that follows sits at the last possible index, and nothing can follow it.
        let mut c = core();
        let top = Entry {
            index: LogIndex(u64::MAX),
            term: Term(1),
            kind: EntryKind::Normal,
            data: Bytes::new(),
        };
        let entry_at_the_top = append_from_2(u64::MAX - 1, vec![top]);
        assert!(matches!(c.step(entry_at_the_top), Err(StepError::Malformed { .. })));
    }

    #[test]
    fn the_last_term_is_refused_not_a_panic_at_the_next_election() {
        // A term no election can follow: adopting it would make the next campaign overflow.
        let mut c = core();
        let last_term = from_2(
            u64::MAX,
            MessageBody::Heartbeat(Heartbeat { leader_commit: LogIndex(0), read_context: None }),
        );
        let result = c.step(last_term);
        // Long past the election timeout: the replica campaigns in the next term.
        for _ in 0..100 {
            c.tick();
        }
        assert!(matches!(result, Err(StepError::Malformed { .. })));
        assert!(c.term() < Term(u64::MAX));
    }

    #[test]
    fn the_term_below_the_last_is_adopted_without_a_panic_at_later_elections() {
        // A heartbeat at the largest term the gateway lets through: the replica follows it. An
        // election from there would be in the last term, which every node refuses, and the one
        // after it would overflow: none starts, whether a transfer or the timer asks for it.
        for pre_vote in [false, true] {
            let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
            let mut config = Config::new(NodeId(1), LogId(1), voters);
            config.election_timeout_ticks = 4;
            config.pre_vote = pre_vote;
            let mut c = RaftCore::new(config).expect("a valid configuration");
            let heartbeat = Heartbeat { leader_commit: LogIndex(0), read_context: None };
            c.step(from_2(u64::MAX - 1, MessageBody::Heartbeat(heartbeat))).expect("valid");
            // A leadership transfer skips PreVote.
            c.step(from_2(u64::MAX - 1, MessageBody::TimeoutNow)).expect("valid");
            for _ in 0..100 {
                c.tick();
            }
            assert!(c.term() >= Term(u64::MAX - 1));
        }
    }

    #[test]
    fn a_reject_of_the_last_index_is_refused_not_a_panic() {
        // A refusal of an AppendEntries "after" the last possible index, sent to a leader that
        // is probing the follower.
        let mut c = core();
        while c.role() != Role::PreCandidate {
            c.tick();
        }
        let pre_vote = RequestVoteResponse { pre_vote: true, granted: true };
        c.step(from_2(1, MessageBody::RequestVoteResponse(pre_vote))).expect("pre-vote granted");
        let vote = RequestVoteResponse { pre_vote: false, granted: true };
        c.step(from_2(1, MessageBody::RequestVoteResponse(vote))).expect("vote granted");
        assert_eq!(c.role(), Role::Leader);
        let reject = AppendEntriesResponse::Reject {
            rejected_index: LogIndex(u64::MAX),
            hint_index: LogIndex(0),
            hint_term: Term(0),
        };
        let result = c.step(from_2(1, MessageBody::AppendEntriesResponse(reject)));
        assert!(matches!(result, Err(StepError::Malformed { .. })));
    }
}

#[cfg(test)]
mod top_of_the_log {
    use crate::raft::{Config, EmptyLog, ProposeError, RaftCore, Role, LAST_INDEX_MAX};
    use bytes::Bytes;
    use raftwal_wire::message::{LogStart, Message, MessageBody, RequestVoteResponse};
    use raftwal_wire::types::{EntryKind, LogId, LogIndex, NodeId, Term};

    fn from_2(term: u64, body: MessageBody) -> Message {
        Message { log: LogId(1), from: NodeId(2), to: NodeId(1), term: Term(term), body }
    }

    /// A follower whose log a leader started after `top` (the gateway lets a log start through
    /// up to the last index but one).
    fn started_after(top: LogIndex, pre_vote: bool) -> RaftCore {
        let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut config = Config::new(NodeId(1), LogId(1), voters);
        config.election_timeout_ticks = 4;
        config.pre_vote = pre_vote;
        let mut c = RaftCore::new(config).expect("a valid configuration");
        let start =
            LogStart { index: top, term: Term(1), leader_commit: top, client_seqs: Vec::new() };
        c.step(from_2(1, MessageBody::LogStart(start))).expect("valid");
        let ready = c.ready(&EmptyLog);
        let (index, term) = ready.persist_point().expect("a reset");
        c.persisted(index, term);
        c.ready(&EmptyLog);
        assert_eq!(c.last_index(), top);
        c
    }

    /// Before the fix, a replica at the top won an election and its no-op (or the next
    /// proposal) went to index u64::MAX: the next `last_index + 1` overflowed (a panic of the
    /// shard thread: overflow checks are on in release builds).
    #[test]
    fn a_replica_whose_log_is_full_neither_panics_nor_passes_the_last_index() {
        for top in [LAST_INDEX_MAX, LogIndex(u64::MAX - 2), LogIndex(u64::MAX - 3)] {
            for pre_vote in [false, true] {
                let mut c = started_after(top, pre_vote);
                let mut led = false;
                for round in 0..100 {
                    c.tick();
                    let term = c.term().get();
                    for pre_vote in [true, false] {
                        let vote = RequestVoteResponse { pre_vote, granted: true };
                        let vote_term = if pre_vote && c.role() == Role::PreCandidate {
                            term + 1
                        } else {
                            term
                        };
                        let _ = c.step(from_2(vote_term, MessageBody::RequestVoteResponse(vote)));
                    }
                    if c.role() == Role::Leader {
                        led = true;
                        let before = c.last_index();
                        let x = || (EntryKind::Normal, Bytes::from_static(b"x"));
                        match c.propose([x(), x()]) {
                            Ok(proposed) => assert!(proposed.last_index <= LAST_INDEX_MAX),
                            Err(ProposeError::LogFull { .. }) => {
                                assert_eq!(c.last_index(), before, "a refused batch is taken back")
                            }
                            Err(other) => panic!("round {round}: {other}"),
                        }
                        let _ = c.propose([x()]);
                    }
                    let ready = c.ready(&EmptyLog);
                    if let Some((index, term)) = ready.persist_point() {
                        c.persisted(index, term);
                    }
                    c.check_invariants().expect("valid");
                    assert!(c.last_index() <= LAST_INDEX_MAX, "round {round}");
                }
                // A log with room for the no-op elects its replica, which then fills it; a
                // full one does not.
                assert_eq!(led, top < LAST_INDEX_MAX, "log started after {top}");
                assert_eq!(c.last_index(), LAST_INDEX_MAX, "the leader filled its log");
            }
        }
    }
}
