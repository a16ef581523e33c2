//! The follower's side of replication: the consistency check, merging entries, acknowledging.
//!
//! Owns: handling AppendEntries and heartbeats from the current leader, and the follower's
//! acknowledgements.
//! Must not: acknowledge an entry before storage reported it durable; overwrite a committed
//! entry; commit past what it shares with the leader.
//! Invariants:
//! 1. A success answer's `match_index` is at most the durable index (as reported through
//!    `persisted`, checked against the current log) and at most `leader_match`, the highest
//!    index known to match the current leader's log. Acknowledgements are computed from the
//!    durability report, not promised ahead of it: with group commit, a later write in the same
//!    fsync batch may overwrite entries before they ever become durable, and an answer promised
//!    for them would lie.
//! 2. The commit index moves to at most the last entry known to match the leader.

use crate::raft::core::{RaftCore, Role};
use crate::raft::errors::StepError;
use raftwal_wire::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, LogStart, MessageBody,
};
use raftwal_wire::types::{NodeId, Term};

impl RaftCore {
    /// Recognizes `from` as the leader of the current term (the message's term equals ours).
    fn accept_leader(&mut self, from: NodeId, kind: &'static str) -> Result<(), StepError> {
        if self.role == Role::Leader {
            // Two leaders in one term break Election Safety; refuse rather than follow.
            return Err(StepError::Malformed {
                kind,
                from,
                reason: "a second leader in this replica's own term",
            });
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term, Some(from));
        }
        self.election_elapsed = 0;
        self.rejoin_maybe_ask();
        Ok(())
    }

    /// Paper 5.3, the AppendEntries receiver.
    pub(super) fn handle_append_entries(
        &mut self,
        from: NodeId,
        append: AppendEntries,
    ) -> Result<(), StepError> {
        self.accept_leader(from, "AppendEntries")?;
        let AppendEntries { mut prev_log_index, mut prev_log_term, leader_commit, mut entries } =
            append;
        // Entries up to the commit index are known to match every later leader's log; skip
        // them, so a delayed message can never ask to touch them.
        let commit = self.log.commit();
        if prev_log_index < commit {
            let skip = usize::try_from(commit.distance_from(prev_log_index))
                .unwrap_or(usize::MAX)
                .min(entries.len());
            if let Some(last_skipped) = skip.checked_sub(1).and_then(|at| entries.get(at)) {
                prev_log_index = last_skipped.index;
                prev_log_term = last_skipped.term;
            }
            entries.drain(..skip);
            if prev_log_index < commit {
                // The whole message lies within the committed prefix, which this replica holds
                // and which matches every leader's log.
                self.answer_append(from, commit);
                return Ok(());
            }
        }
        if self.log.term_at(prev_log_index) != Some(prev_log_term) {
            self.reject_append(from, prev_log_index, prev_log_term);
            return Ok(());
        }
        let last_new = prev_log_index.plus(entries.len() as u64);
        if let Err(index) = self.log.append_from_leader(entries) {
            return Err(StepError::ConflictWithCommitted { from, term: self.term, index });
        }
        self.log.commit_to(leader_commit.min(last_new));
        self.answer_append(from, last_new);
        Ok(())
    }

    /// The leader compacted away the entries this replica lacks and names the entry its log now
    /// starts after. Every entry up to it is committed: a replica that holds it (or has
    /// committed past it) keeps its log; any other replaces its whole log with an empty one
    /// starting there (none of its entries after its commit index can be committed: they do
    /// not match the leader's, Log Matching). The answer is a success for `index`, sent once
    /// the replaced log is durable.
    pub(super) fn handle_log_start(
        &mut self,
        from: NodeId,
        start: LogStart,
    ) -> Result<(), StepError> {
        self.accept_leader(from, "LogStart")?;
        // `client_seqs` is the runtime's (its deduplication table), not the core's.
        let LogStart { index, term, leader_commit, client_seqs: _ } = start;
        let commit = self.log.commit();
        if index > commit && self.log.term_at(index) != Some(term) {
            self.log.reset_to(index, term);
            if self.bugs.has(crate::raft::bugs::InjectedBug::LogStartAckEarly) {
                self.leader_match = index;
                self.acknowledged = index;
                let success = AppendEntriesResponse::Success { match_index: index };
                self.send(from, MessageBody::AppendEntriesResponse(success));
            }
        }
        self.log.commit_to(leader_commit.min(index));
        self.answer_append(from, index);
        Ok(())
    }

    /// The leader's log matches this one up to `last_new`. Answer now if that is durable here
    /// already (a duplicate, or a probe of durable entries); otherwise the answer leaves when
    /// storage reports the entries durable ([`RaftCore::acknowledge_durable`]).
    fn answer_append(&mut self, leader: NodeId, last_new: raftwal_wire::types::LogIndex) {
        self.leader_match = self.leader_match.max(last_new);
        let durable = self.log.durable();
        if durable >= last_new {
            let match_index = durable.min(self.leader_match);
            self.acknowledged = self.acknowledged.max(match_index);
            self.send(
                leader,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }),
            );
        }
    }

    /// Storage reported more of the log durable: acknowledge to the leader what is now both
    /// durable and known to match its log (invariant 1).
    pub(super) fn acknowledge_durable(&mut self) {
        let Some(leader) = self.leader else {
            return;
        };
        if self.role != Role::Follower {
            return;
        }
        let match_index = self.log.durable().min(self.leader_match);
        if match_index > self.acknowledged {
            self.acknowledged = match_index;
            self.send(
                leader,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }),
            );
        }
    }

    /// Refuses an AppendEntries whose previous entry does not match, with a hint that lets the
    /// leader skip a whole term: the last entry at or below the rejected index whose term is at
    /// most the leader's previous term (any later entry cannot match).
    fn reject_append(
        &mut self,
        from: NodeId,
        rejected_index: raftwal_wire::types::LogIndex,
        prev_log_term: Term,
    ) {
        let search_from = rejected_index.min(self.log.last_index());
        let hint_index = self.log.find_conflict_by_term(search_from, prev_log_term);
        let hint_term = self.log.term_at(hint_index).unwrap_or(Term::ZERO);
        self.send(
            from,
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index,
                hint_index,
                hint_term,
            }),
        );
    }

    /// A heartbeat: the leader lives; learn the commit index (capped by the leader at what this
    /// follower is known to hold, invariant 2) and echo the read context.
    pub(super) fn handle_heartbeat(
        &mut self,
        from: NodeId,
        heartbeat: Heartbeat,
    ) -> Result<(), StepError> {
        self.accept_leader(from, "Heartbeat")?;
        let commit = heartbeat.leader_commit.min(self.log.last_index());
        self.log.commit_to(commit);
        self.send(
            from,
            MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_context: heartbeat.read_context,
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::{Config, EmptyLog, RaftCore};
    use bytes::Bytes;
    use raftwal_wire::message::{
        AppendEntries, AppendEntriesResponse, LogStart, Message, MessageBody,
    };
    use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};

    fn entry(index: u64, term: u64) -> Entry {
        let data = Bytes::from_static(b"x");
        Entry { index: LogIndex(index), term: Term(term), kind: EntryKind::Normal, data }
    }

    fn append(from: u64, term: u64, prev: (u64, u64), entries: Vec<Entry>) -> Message {
        let body = MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            leader_commit: LogIndex(0),
            entries,
        });
        Message { log: LogId(1), from: NodeId(from), to: NodeId(1), term: Term(term), body }
    }

    /// Why `Ready`'s step 3 drops the point of a `Ready` whose entries a later one replaced:
    /// after an A-B-A overwrite the stale point equals the new one, and the core, which cannot
    /// tell them apart, acknowledges on it. A driver that reports such a point would acknowledge
    /// entries the disk may not hold; the runtime and the simulator's drivers report only the
    /// newest durable point. If this test fails, the core learned to tell them apart and the
    /// contract can be relaxed.
    #[test]
    fn a_stale_report_after_an_aba_overwrite_is_taken_for_the_new_one() {
        // Five voters, so that leader 2 can win term 3 without the votes of 1 and 3.
        let voters = (1..=5).map(NodeId).collect();
        let mut c = RaftCore::new(Config::new(NodeId(1), LogId(1), voters)).expect("valid");
        // Ready A: entries 1..=5 of term 1 (leader 2).
        let a = (1..=5).map(|index| entry(index, 1)).collect();
        c.step(append(2, 1, (0, 0), a)).expect("valid");
        let ready_a = c.ready(&EmptyLog);
        // Ready B: leader 3 of term 2 replaces 4..=5 with its own entry 4.
        c.step(append(3, 2, (3, 1), vec![entry(4, 2)])).expect("valid");
        let _ready_b = c.ready(&EmptyLog);
        // Ready C: leader 2 of term 3 (its term-1 entries 4 and 5 are in its log) replaces 4.
        c.step(append(2, 3, (3, 1), vec![entry(4, 1), entry(5, 1)])).expect("valid");
        let ready_c = c.ready(&EmptyLog);
        assert_eq!(ready_a.persist_point(), ready_c.persist_point(), "the same (index, term)");
        // A's writes are durable, B's and C's not yet (Ready step 3): a crash now may leave
        // A's entries with B's write over them (1..=3, then 4 of term 2), so 4 and 5 are not
        // durable here.
        let (index, term) = ready_a.persist_point().expect("entries");
        c.persisted(index, term);
        let acked = c.ready(&EmptyLog).messages.iter().find_map(|m| match m.body {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                Some(match_index)
            }
            _ => None,
        });
        assert_eq!(acked, Some(LogIndex(5)), "the stale report acknowledges the restored entries");
    }

    fn log_start(from: u64, term: u64, index: u64, index_term: u64, commit: u64) -> Message {
        let body = MessageBody::LogStart(LogStart {
            index: LogIndex(index),
            term: Term(index_term),
            leader_commit: LogIndex(commit),
            client_seqs: Vec::new(),
        });
        Message { log: LogId(1), from: NodeId(from), to: NodeId(1), term: Term(term), body }
    }

    fn successes(messages: &[Message]) -> Vec<LogIndex> {
        messages
            .iter()
            .filter_map(|m| match m.body {
                MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                    match_index,
                }) => Some(match_index),
                _ => None,
            })
            .collect()
    }

    /// A follower with entries 1..=5: 1..=3 of term 1, 4..=5 of `tail_term`, all durable, the
    /// first three committed.
    fn follower_with_five(tail_term: u64) -> RaftCore {
        let voters = (1..=3).map(NodeId).collect();
        let mut c = RaftCore::new(Config::new(NodeId(1), LogId(1), voters)).expect("valid");
        let entries = (1..=5).map(|i| entry(i, if i <= 3 { 1 } else { tail_term })).collect();
        let mut first = append(2, tail_term, (0, 0), entries);
        if let MessageBody::AppendEntries(a) = &mut first.body {
            a.leader_commit = LogIndex(3);
        }
        c.step(first).expect("valid");
        let ready = c.ready(&EmptyLog);
        let (index, term) = ready.persist_point().expect("entries");
        c.persisted(index, term);
        c.ready(&EmptyLog);
        assert_eq!(c.commit_index(), LogIndex(3));
        c
    }

    #[test]
    fn a_follower_behind_the_leaders_first_entry_starts_its_log_after_it() {
        let mut c = follower_with_five(1);
        // Leader 3 of term 2 compacted through 8 (of term 2) and committed 9.
        c.step(log_start(3, 2, 8, 2, 9)).expect("valid");
        let ready = c.ready(&EmptyLog);
        assert_eq!(ready.log_start, Some((LogIndex(8), Term(2))), "the driver resets the log");
        assert!(ready.entries.is_empty());
        assert!(ready.must_sync);
        assert_eq!(ready.persist_point(), Some((LogIndex(8), Term(2))));
        assert!(
            successes(&ready.messages).is_empty(),
            "nothing is acknowledged before it is durable"
        );
        assert_eq!(c.first_index(), LogIndex(9));
        assert_eq!(c.last_index(), LogIndex(8));
        assert_eq!(c.term_at(LogIndex(8)), Some(Term(2)));
        assert_eq!(c.term_at(LogIndex(5)), None, "the old entries are gone");
        assert_eq!(c.commit_index(), LogIndex(8), "everything up to the start is committed");
        assert!(c.hard_state().commit <= LogIndex(3), "the persisted commit waits for the reset");
        c.check_invariants().expect("valid");
        // A late durability report of the old log is ignored; the reset's is acknowledged.
        c.persisted(LogIndex(5), Term(1));
        assert!(successes(&c.ready(&EmptyLog).messages).is_empty());
        c.persisted(LogIndex(8), Term(2));
        assert_eq!(successes(&c.ready(&EmptyLog).messages), vec![LogIndex(8)]);
        // The leader's entries follow.
        c.step(append(3, 2, (8, 2), vec![entry(9, 2), entry(10, 2)])).expect("valid");
        let ready = c.ready(&EmptyLog);
        assert_eq!(ready.entries.iter().map(|e| e.index.get()).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(ready.log_start, None);
        c.check_invariants().expect("valid");
    }

    #[test]
    fn a_follower_that_holds_the_named_entry_keeps_its_log() {
        let mut c = follower_with_five(1);
        c.step(log_start(3, 2, 4, 1, 6)).expect("valid");
        let ready = c.ready(&EmptyLog);
        assert_eq!(ready.log_start, None, "the log holds (4, 1): nothing to replace");
        assert_eq!(successes(&ready.messages), vec![LogIndex(4)]);
        assert_eq!(c.last_index(), LogIndex(5));
        assert_eq!(c.commit_index(), LogIndex(4));
        // Behind the commit index the log is known to match whatever the term says.
        c.step(log_start(3, 2, 2, 1, 6)).expect("valid");
        assert_eq!(c.ready(&EmptyLog).log_start, None);
        assert_eq!(c.first_index(), LogIndex(1));
    }

    #[test]
    fn a_follower_replaces_a_conflicting_uncommitted_suffix_but_never_committed_entries() {
        let mut c = follower_with_five(2);
        // Leader 3 of term 3: its entry 5 is of term 3, so entries 4 and 5 of term 2 here were
        // never committed.
        c.step(log_start(3, 3, 5, 3, 5)).expect("valid");
        assert_eq!(c.ready(&EmptyLog).log_start, Some((LogIndex(5), Term(3))));
        assert_eq!(c.term_at(LogIndex(5)), Some(Term(3)));
        c.check_invariants().expect("valid");
        // A start at or below the commit index changes nothing, whatever term it names.
        let mut c = follower_with_five(2);
        c.step(log_start(3, 3, 3, 2, 5)).expect("valid");
        assert_eq!(c.ready(&EmptyLog).log_start, None);
        assert_eq!(c.term_at(LogIndex(3)), Some(Term(1)));
    }

    #[test]
    fn malformed_log_starts_are_refused() {
        let mut c = follower_with_five(1);
        for (index, index_term, commit, term) in
            [(0, 1, 4, 2), (4, 0, 4, 2), (4, 3, 4, 2), (4, 1, 3, 2), (u64::MAX, 1, u64::MAX, 2)]
        {
            let refused = c.step(log_start(3, term, index, index_term, commit));
            assert!(refused.is_err(), "({index}, {index_term}, {commit}) in term {term}");
        }
        assert_eq!(c.last_index(), LogIndex(5));
    }
}
