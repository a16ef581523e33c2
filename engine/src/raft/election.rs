//! Leader election: timers, PreVote, RequestVote, the election restriction and role changes.
//!
//! Owns: the transitions between roles ([`RaftCore::become_follower`], `become_pre_candidate`,
//! `campaign`, `become_leader`), vote granting and counting, the leader lease and CheckQuorum.
//! Must not: send a real vote grant or vote request before the vote is persisted (they go to
//! `messages_after_persist`); grant two votes in one term; grant a vote to a candidate whose log
//! is less up-to-date (paper 5.4.1).
//! Invariants:
//! 1. `vote` changes only from `None` (or to the same candidate) within a term, and is cleared
//!    only when the term increases.
//! 2. A tally counts each voter at most once.

use crate::raft::bugs::InjectedBug;
use crate::raft::core::{RaftCore, Role};
use crate::raft::log_view::LAST_INDEX_MAX;
use crate::raft::progress::Progress;
use raftwal_wire::message::{MessageBody, RequestVote, RequestVoteResponse};
use raftwal_wire::types::{EntryKind, LogIndex, NodeId, Term};

/// The answers received in one (pre-)election.
#[derive(Clone, Debug, Default)]
pub(crate) struct VoteTally {
    responses: Vec<(NodeId, bool)>,
}

impl VoteTally {
    fn reset(&mut self) {
        self.responses.clear();
    }

    /// Records `voter`'s answer; a repeated answer (a duplicated message) is ignored (invariant 2).
    fn record(&mut self, voter: NodeId, granted: bool) {
        if !self.responses.iter().any(|(seen, _)| *seen == voter) {
            self.responses.push((voter, granted));
        }
    }

    fn count(&self, granted: bool) -> usize {
        self.responses.iter().filter(|(_, answer)| *answer == granted).count()
    }
}

impl RaftCore {
    /// Whether this replica heard from a leader within the election timeout (and CheckQuorum,
    /// which guarantees a leader steps down once it loses its majority, is on). While it holds,
    /// vote requests are ignored (thesis 4.2.3) and pre-votes refused.
    pub(super) fn in_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_timeout_ticks
    }

    /// Restarts the election timer with a fresh random timeout in `[T, 2T)` (paper 5.2).
    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = self.config.election_timeout_ticks;
        self.randomized_election_timeout = base + self.rng.below(base);
    }

    /// Whether an election can follow the current term. The gateway refuses messages of the
    /// largest term (`validate`), so an election in it could never be won, and one after it
    /// does not exist: a replica that reached the term below it (a peer may send any term
    /// up to there) stays where it is rather than overflow. Likewise a replica whose log holds
    /// the largest index ([`LAST_INDEX_MAX`]: a peer may send entries or a log start up to
    /// there) does not campaign: the no-op a new leader appends would not fit.
    fn election_possible(&self) -> bool {
        self.term < Term(u64::MAX - 1) && self.log.last_index() < LAST_INDEX_MAX
    }

    /// A follower's or candidate's tick: start an election when the timer runs out.
    pub(super) fn tick_election(&mut self) {
        if self.rejoin.is_some() {
            self.tick_rejoin();
            return;
        }
        self.age_forwarded_reads();
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.randomized_election_timeout {
            if !self.election_possible() {
                self.reset_election_timer();
                return;
            }
            if self.config.pre_vote {
                self.become_pre_candidate();
            } else {
                self.campaign(false);
            }
        }
    }

    /// CheckQuorum (thesis 6.2): at the end of each election-timeout period, a leader that has
    /// not heard from a majority steps down. Returns whether it still leads.
    pub(super) fn check_quorum_period(&mut self) -> bool {
        if self.election_elapsed < self.config.election_timeout_ticks {
            return true;
        }
        self.election_elapsed = 0;
        let active = 1 + self.peers.iter().filter(|progress| progress.recent_active).count();
        for progress in &mut self.peers {
            progress.recent_active = false;
        }
        if self.config.check_quorum && active < self.config.quorum() {
            self.become_follower(self.term, None);
            return false;
        }
        true
    }

    /// Follows `leader` (or no one) in `term`, which is never below the current term, with a
    /// fresh election timer.
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.step_down(term, leader, true);
    }

    /// Follows `leader` (or no one) in `term`; restarts the election timer only if
    /// `reset_timer`.
    pub(super) fn step_down(&mut self, term: Term, leader: Option<NodeId>, reset_timer: bool) {
        assert!(term >= self.term, "the term never decreases");
        let leader_changed = term != self.term || leader != self.leader;
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.leave_leadership();
        let was_leader = self.role == Role::Leader;
        self.role = Role::Follower;
        self.leader = leader;
        // A former leader's elapsed count measured its CheckQuorum period, not silence from a
        // leader: it always starts a fresh timer.
        if reset_timer || was_leader {
            self.reset_election_timer();
        }
        if leader_changed {
            self.rejoin_leader_changed();
            self.fail_forwarded_reads();
            self.leader_match = LogIndex::ZERO;
            self.acknowledged = LogIndex::ZERO;
        }
    }

    /// Thesis 9.6: ask whether an election at `term + 1` could succeed before disturbing anyone.
    fn become_pre_candidate(&mut self) {
        self.leave_leadership();
        self.role = Role::PreCandidate;
        self.leader = None;
        self.fail_forwarded_reads();
        self.reset_election_timer();
        self.votes.reset();
        self.votes.record(self.config.id, true);
        if self.votes.count(true) >= self.config.quorum() {
            self.campaign(false);
            return;
        }
        let request = self.vote_request(true, false);
        let term = self.term.next();
        for peer in self.other_voters().collect::<Vec<_>>() {
            self.send_with_term(peer, term, MessageBody::RequestVote(request));
        }
    }

    /// Paper 5.2: move to a new term, vote for itself and ask everyone else. The requests wait
    /// for the new term and vote to be persisted.
    pub(super) fn campaign(&mut self, leadership_transfer: bool) {
        if !self.election_possible() {
            return;
        }
        self.leave_leadership();
        self.term = self.term.next();
        self.vote = Some(self.config.id);
        self.ticks_since_vote = 0;
        self.role = Role::Candidate;
        self.leader = None;
        self.fail_forwarded_reads();
        self.reset_election_timer();
        self.votes.reset();
        self.votes.record(self.config.id, true);
        if self.votes.count(true) >= self.config.quorum() {
            self.become_leader();
            return;
        }
        let request = self.vote_request(false, leadership_transfer);
        for peer in self.other_voters().collect::<Vec<_>>() {
            self.send(peer, MessageBody::RequestVote(request));
        }
    }

    fn vote_request(&self, pre_vote: bool, leadership_transfer: bool) -> RequestVote {
        RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            leadership_transfer,
        }
    }

    /// Paper 5.2 and 5.4.2: lead the term, probe every follower from the end of the log, and
    /// append a no-op of the new term so entries of earlier terms can be committed (section 8).
    pub(super) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate wins an election");
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.heartbeat_due = false;
        self.transfer = None;
        let last_index = self.log.last_index();
        let (count_max, size_bytes_max) =
            (self.config.inflight_message_count_max, self.config.inflight_size_bytes_max);
        self.peers = self
            .other_voters()
            .map(|peer| Progress::new(peer, last_index, count_max, size_bytes_max))
            .collect();
        self.log.append(self.term, EntryKind::Noop, bytes::Bytes::new());
        self.maybe_commit();
    }

    /// Drops the leader's state when it stops leading: pending reads fail, progress is forgotten.
    fn leave_leadership(&mut self) {
        if self.role == Role::Leader {
            self.fail_leader_reads();
            self.peers.clear();
            self.transfer = None;
            self.heartbeat_due = false;
        }
    }

    /// A vote or pre-vote request at `term` (never below the current term; a real request at a
    /// higher term already moved this replica to that term).
    pub(super) fn handle_request_vote(&mut self, from: NodeId, term: Term, request: RequestVote) {
        let up_to_date = self.log.is_up_to_date(request.last_log_term, request.last_log_index)
            || self.bugs.has(InjectedBug::NoElectionRestriction);
        if self.rejoin.is_some() {
            // A rejoining replica grants nothing (module `rejoin`); it refuses in its own term.
            let refusal = RequestVoteResponse { pre_vote: request.pre_vote, granted: false };
            self.send(from, MessageBody::RequestVoteResponse(refusal));
            return;
        }
        if request.pre_vote {
            // Grant when a real election at `term` could succeed: the term is newer, no leader
            // was heard from recently, and the log is at least as up-to-date. Refuse for an
            // election timeout after casting a vote (a candidate's own included): the election
            // voted in may be about to produce a leader this replica has not heard from yet,
            // and a rival's election for the next term would depose it (the higher term rides
            // on the rival's answer to that leader's first message). A candidate that lost
            // its election stops waiting (`handle_vote_response`).
            let voted_recently = self.ticks_since_vote < self.config.election_timeout_ticks;
            let granted = term > self.term && !self.in_lease() && !voted_recently && up_to_date;
            let answer_term = if granted { term } else { self.term };
            self.send_with_term(
                from,
                answer_term,
                MessageBody::RequestVoteResponse(RequestVoteResponse { pre_vote: true, granted }),
            );
            return;
        }
        // At most one vote per term (invariant 1); a follower that knows this term's leader
        // does not vote for anyone else.
        let can_vote = self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
        let granted = can_vote && up_to_date;
        if granted {
            self.vote = Some(from);
            self.ticks_since_vote = 0;
            self.reset_election_timer();
        }
        self.send(
            from,
            MessageBody::RequestVoteResponse(RequestVoteResponse { pre_vote: false, granted }),
        );
    }

    /// An answer to this replica's (pre-)vote request.
    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        response: RequestVoteResponse,
    ) {
        let current = if response.pre_vote {
            let expected_term = if response.granted { self.term.next() } else { self.term };
            self.role == Role::PreCandidate && term == expected_term
        } else {
            self.role == Role::Candidate && term == self.term
        };
        if !current {
            return;
        }
        self.votes.record(from, response.granted);
        let quorum = self.config.quorum();
        if self.votes.count(true) >= quorum {
            if response.pre_vote {
                self.campaign(false);
            } else {
                self.become_leader();
            }
        } else if self.votes.count(false) > self.config.voters.len() - quorum {
            // A majority refused: this election is lost; wait for a leader or the next timeout.
            if !response.pre_vote {
                // Its vote for itself produces no leader: pre-votes need not wait for it.
                self.ticks_since_vote = u32::MAX;
            }
            self.become_follower(self.term, None);
        }
    }
}
