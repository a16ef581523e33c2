//! The leader's side of log replication: AppendEntries, heartbeats, and the answers to them.
//!
//! Owns: building AppendEntries from the log (batched, within each follower's window), the
//! heartbeat schedule, fast backtracking on rejections (paper 5.3, thesis 5.3 optimization),
//! and the leader's tick.
//! Must not: send entries past a follower's window, or read storage for entries the cache holds.
//! Invariants:
//! 1. An AppendEntries's `prev_log_term` is the leader's term at `prev_log_index`, and its
//!    entries are the leader's entries that follow it.
//! 2. A heartbeat's commit index never exceeds what the follower is known to hold, so a
//!    follower never commits an entry it might not share with the leader.

use crate::raft::core::{RaftCore, Role};
use crate::raft::errors::StepError;
use crate::raft::log_source::LogSource;
use crate::raft::progress::ReplicationState;
use raftwal_wire::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, LogStart, MessageBody,
};
use raftwal_wire::types::{LogIndex, NodeId};

impl RaftCore {
    /// A leader's tick: CheckQuorum, transfer timeout, heartbeat schedule, stalled pipelines.
    pub(super) fn tick_leader(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if !self.check_quorum_period() {
            return;
        }
        self.tick_transfer();
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.heartbeat_due = true;
        }
        let stall_ticks = self.config.election_timeout_ticks;
        for progress in &mut self.peers {
            progress.tick(stall_ticks);
        }
    }

    /// Whether the leader has AppendEntries or heartbeats to send at the next `ready`.
    pub(super) fn replication_pending(&self) -> bool {
        let last_index = self.log.last_index();
        self.heartbeat_due
            || self.reads.round_open()
            || self.peers.iter().any(|progress| progress.wants_append(last_index))
            || (0..self.peers.len()).any(|position| self.commit_to_tell(position).is_some())
    }

    /// Sends every AppendEntries the followers' windows allow, then the due heartbeats, then
    /// the new commit index to followers that nothing else would tell soon.
    pub(super) fn flush_replication<S: LogSource + ?Sized>(&mut self, source: &S) {
        assert_eq!(self.role, Role::Leader, "only a leader replicates");
        for position in 0..self.peers.len() {
            self.send_appends(position, source);
        }
        if self.heartbeat_due || self.reads.round_open() {
            self.heartbeat_due = false;
            self.broadcast_heartbeat();
        }
        self.notify_commit();
    }

    /// A follower learns the commit index from the next AppendEntries or heartbeat. A follower
    /// with nothing in flight would wait for the next heartbeat (up to a heartbeat interval, 50
    /// ms by default), and one with AppendEntries in flight for the leader's next one, which
    /// under a closed-loop load leaves only after the clients heard of this commit and sent
    /// more (a client's round trip and two wake-ups at least), before it applies and delivers
    /// to its subscribers what the leader committed. So every follower that is pipelining and
    /// was not told this commit by an AppendEntries of this turn gets a heartbeat now, its
    /// commit capped at its match index as every heartbeat's (invariant 2). It carries no read
    /// context: read-index rounds stay with the broadcasts.
    fn notify_commit(&mut self) {
        for position in 0..self.peers.len() {
            let Some(tell) = self.commit_to_tell(position) else { continue };
            let progress = &mut self.peers[position];
            progress.commit_sent = tell;
            let to = progress.node;
            let heartbeat = Heartbeat { leader_commit: tell, read_context: None };
            self.send(to, MessageBody::Heartbeat(heartbeat));
        }
    }

    /// The commit index `notify_commit` would send the follower at `position` now, if any.
    fn commit_to_tell(&self, position: usize) -> Option<LogIndex> {
        let progress = &self.peers[position];
        let tell = self.log.commit().min(progress.match_index);
        let replicating = progress.state == ReplicationState::Replicate;
        (replicating && tell > progress.commit_sent).then_some(tell)
    }

    fn send_appends<S: LogSource + ?Sized>(&mut self, position: usize, source: &S) {
        let last_index = self.log.last_index();
        while self.peers[position].wants_append(last_index) {
            let next = self.peers[position].next_index;
            let prev_log_index = next.prev();
            if prev_log_index < self.log.base() {
                self.send_log_start(position);
                continue;
            }
            let prev_log_term = self
                .log
                .term_at(prev_log_index)
                .expect("a follower's next index is at most the leader's last index + 1");
            let batch = match self.log.entries_for_send(
                next,
                self.config.append_size_bytes_max,
                self.config.append_entry_count_max,
                source,
            ) {
                Ok(batch) => batch,
                Err(_) => {
                    // Storage could not serve the entries now: wait for the next heartbeat
                    // answer to try again rather than spin.
                    self.log_read_failures += 1;
                    let progress = &mut self.peers[position];
                    progress.become_probe();
                    progress.probe_paused = true;
                    return;
                }
            };
            let last_sent = prev_log_index.plus(batch.entries.len() as u64);
            self.peers[position].sent_append(last_sent, batch.size_bytes);
            let to = self.peers[position].node;
            let leader_commit = self.log.commit();
            let progress = &mut self.peers[position];
            progress.commit_sent = progress.commit_sent.max(leader_commit.min(last_sent));
            let append = AppendEntries {
                prev_log_index,
                prev_log_term,
                leader_commit,
                entries: batch.entries,
            };
            self.send(to, MessageBody::AppendEntries(append));
        }
    }

    /// The follower needs entries this leader compacted away: its log is to start after the
    /// leader's base instead (the entries up to it are committed). Sent like an AppendEntries
    /// that ends at the base, on the same ordered stream, so in Replicate state the entries
    /// after it follow at once.
    fn send_log_start(&mut self, position: usize) {
        let index = self.log.base();
        let term = self.log.term_at(index).expect("the base's term is known");
        let leader_commit = self.log.commit();
        let progress = &mut self.peers[position];
        progress.sent_append(index, 0);
        progress.commit_sent = progress.commit_sent.max(leader_commit.min(index));
        let to = progress.node;
        // The driver adds what its deduplication table knows (`LogStart::client_seqs`).
        let start = LogStart { index, term, leader_commit, client_seqs: Vec::new() };
        self.send(to, MessageBody::LogStart(start));
    }

    fn broadcast_heartbeat(&mut self) {
        let read_context = self.reads.context_for_heartbeat();
        let commit = self.log.commit();
        for position in 0..self.peers.len() {
            let progress = &mut self.peers[position];
            let heartbeat =
                Heartbeat { leader_commit: commit.min(progress.match_index), read_context };
            progress.commit_sent = progress.commit_sent.max(heartbeat.leader_commit);
            let to = progress.node;
            self.send(to, MessageBody::Heartbeat(heartbeat));
        }
    }

    /// The driver could not hand a message to `peer` (no link to it, or its send window was
    /// full), so entries in flight to it may be lost. The leader stops pipelining to it and
    /// probes again once the follower answers a heartbeat: without this, a lost AppendEntries in
    /// the middle of a window would only be noticed after an election timeout of silence.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        let Some(position) = self.peer_position(peer) else {
            return;
        };
        let progress = &mut self.peers[position];
        progress.become_probe();
        // Stay quiet until a heartbeat answer shows the peer is back: probing a peer with no
        // link would fail again at once.
        progress.probe_paused = true;
    }

    /// A follower's answer to an AppendEntries.
    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        response: AppendEntriesResponse,
    ) -> Result<(), StepError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(position) = self.peer_position(from) else {
            return Ok(());
        };
        self.peers[position].recent_active = true;
        match response {
            AppendEntriesResponse::Success { match_index } => {
                if match_index > self.log.last_index() {
                    return Err(StepError::Malformed {
                        kind: "AppendEntriesResponse",
                        from,
                        reason: "acknowledges entries the leader never had",
                    });
                }
                if self.peers[position].handle_success(match_index) {
                    self.maybe_commit();
                }
                self.maybe_send_timeout_now(position);
            }
            AppendEntriesResponse::Reject { rejected_index, hint_index, hint_term } => {
                // The follower's entry at `hint_index` has `hint_term`; the leader's last entry
                // that could match it is the last one at or below it with a term no higher.
                let next_hint = self.log.find_conflict_by_term(hint_index, hint_term).next();
                self.peers[position].handle_reject(rejected_index, hint_index, next_hint);
            }
        }
        Ok(())
    }

    /// A follower's answer to a heartbeat: it is alive (CheckQuorum), a paused probe may go
    /// again, and it confirms leadership for read-index rounds up to the echoed context. An echo
    /// of a context no heartbeat carried is refused: counted, it would confirm every later
    /// round for that follower before it heard of them.
    pub(super) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        response: HeartbeatResponse,
    ) -> Result<(), StepError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        if response.read_context.is_some_and(|context| context > self.reads.last_sent_context()) {
            return Err(StepError::Malformed {
                kind: "HeartbeatResponse",
                from,
                reason: "echoes a read context no heartbeat carried",
            });
        }
        let Some(position) = self.peer_position(from) else {
            return Ok(());
        };
        let progress = &mut self.peers[position];
        progress.recent_active = true;
        if progress.state == ReplicationState::Probe {
            progress.resume_probe();
        }
        if let Some(context) = response.read_context {
            progress.read_context_acked = progress.read_context_acked.max(context);
            self.confirm_reads();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::{Config, EmptyLog, RaftCore, ReplicationState, Role, StepError};
    use bytes::Bytes;
    use raftwal_wire::message::{
        AppendEntriesResponse, Heartbeat, HeartbeatResponse, LogStart, Message, MessageBody,
        RequestVoteResponse,
    };
    use raftwal_wire::types::{EntryKind, LogId, LogIndex, NodeId, Term};

    fn answer(core: &RaftCore, from: u64, term: Term, body: MessageBody) -> Message {
        Message { log: LogId(1), from: NodeId(from), to: core.id(), term, body }
    }

    /// Node 1 of three, elected with node 2's votes.
    fn leader() -> RaftCore {
        let voters = (1..=3).map(NodeId).collect();
        let mut core = RaftCore::new(Config::new(NodeId(1), LogId(1), voters)).expect("valid");
        for _ in 0..100 {
            if core.role() == Role::Leader {
                return core;
            }
            core.tick();
            let ready = core.ready(&EmptyLog);
            if let Some((index, term)) = ready.persist_point() {
                core.persisted(index, term);
            }
            let requests = ready.messages.iter().chain(&ready.messages_after_persist);
            let votes: Vec<Message> = requests
                .filter_map(|m| match m.body {
                    MessageBody::RequestVote(r) if m.to == NodeId(2) => {
                        let body = RequestVoteResponse { pre_vote: r.pre_vote, granted: true };
                        Some(answer(&core, 2, m.term, MessageBody::RequestVoteResponse(body)))
                    }
                    _ => None,
                })
                .collect();
            for vote in votes {
                core.step(vote).expect("valid");
            }
        }
        panic!("node 1 was not elected");
    }

    fn sent_to(ready_messages: &[Message], to: u64) -> Vec<MessageBody> {
        ready_messages.iter().filter(|m| m.to == NodeId(to)).map(|m| m.body.clone()).collect()
    }

    #[test]
    fn a_leader_tells_a_follower_behind_its_first_entry_where_its_log_starts() {
        let mut core = leader();
        let term = core.term();
        let payloads = (0..10).map(|_| (EntryKind::Normal, Bytes::from_static(b"x")));
        let proposed = core.propose(payloads).expect("leader");
        let ready = core.ready(&EmptyLog);
        let (index, entry_term) = ready.persist_point().expect("entries");
        core.persisted(index, entry_term);
        let success = |m: u64| {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                match_index: LogIndex(m),
            })
        };
        core.step(answer(&core, 2, term, success(proposed.last_index.get()))).expect("valid");
        assert_eq!(core.commit_index(), proposed.last_index);
        core.ready(&EmptyLog);
        // Compaction stops at what is committed and durable.
        assert_eq!(core.compact_before(LogIndex(1_000)), proposed.last_index.next());
        assert_eq!(core.compact_before(LogIndex(3)), proposed.last_index.next(), "never back");
        core.check_invariants().expect("valid");
        // Node 3 never answered; its probe is refused at the start of the log.
        let reject = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
            rejected_index: LogIndex(0),
            hint_index: LogIndex(0),
            hint_term: Term(0),
        });
        core.step(answer(&core, 3, term, reject)).expect("valid");
        let ready = core.ready(&EmptyLog);
        let start = LogStart {
            index: proposed.last_index,
            term,
            leader_commit: proposed.last_index,
            client_seqs: Vec::new(),
        };
        assert_eq!(sent_to(&ready.messages, 3), vec![MessageBody::LogStart(start)]);
        // Its answer switches it to pipelining from the start on.
        core.step(answer(&core, 3, term, success(proposed.last_index.get()))).expect("valid");
        let progress = core.progress(NodeId(3)).expect("leader");
        assert_eq!(progress.state, ReplicationState::Replicate);
        assert_eq!(progress.match_index, proposed.last_index);
        let more = core.propose([(EntryKind::Normal, Bytes::from_static(b"y"))]).expect("leader");
        let ready = core.ready(&EmptyLog);
        let to_3 = sent_to(&ready.messages, 3);
        assert!(
            matches!(&to_3[..], [MessageBody::AppendEntries(a)]
                if a.prev_log_index == proposed.last_index
                    && a.entries.first().map(|e| e.index) == Some(more.first_index)),
            "{to_3:?}"
        );
        core.check_invariants().expect("valid");
    }

    #[test]
    fn a_pipelining_leader_sends_the_start_then_the_entries_after_it() {
        let mut core = leader();
        let term = core.term();
        let proposed =
            core.propose([(EntryKind::Normal, Bytes::from_static(b"a"))]).expect("leader");
        let ready = core.ready(&EmptyLog);
        let (index, entry_term) = ready.persist_point().expect("entries");
        core.persisted(index, entry_term);
        let success = |m: LogIndex| {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index: m })
        };
        // Node 3 holds only the leader's no-op: it pipelines from there.
        core.step(answer(&core, 2, term, success(proposed.last_index))).expect("valid");
        core.step(answer(&core, 3, term, success(proposed.first_index.prev()))).expect("valid");
        core.ready(&EmptyLog);
        // Node 3's window is not full, but its next entry is compacted away.
        core.report_unreachable(NodeId(3));
        core.step(answer(&core, 3, term, success(proposed.first_index.prev()))).expect("valid");
        assert_eq!(core.compact_before(proposed.last_index.next()), proposed.last_index.next());
        let more = core.propose([(EntryKind::Normal, Bytes::from_static(b"b"))]).expect("leader");
        let ready = core.ready(&EmptyLog);
        let to_3 = sent_to(&ready.messages, 3);
        assert!(
            matches!(&to_3[..], [MessageBody::LogStart(s), MessageBody::AppendEntries(a)]
                if s.index == proposed.last_index
                    && a.prev_log_index == proposed.last_index
                    && a.entries.first().map(|e| e.index) == Some(more.first_index)),
            "{to_3:?}"
        );
        core.check_invariants().expect("valid");
    }

    /// The read context a heartbeat carries names a round of reads; a follower's echo of it
    /// confirms this leader for that round. An echo of a context no heartbeat carried yet (here
    /// u64::MAX) used to be recorded as the follower's acknowledgement of every round to come:
    /// with it, a later read was confirmed by the leader and that echo alone, without a majority
    /// hearing from the leader after the read arrived (a deposed leader could serve stale reads).
    #[test]
    fn an_echo_of_a_read_context_never_sent_confirms_no_later_read() {
        let mut core = leader();
        let term = core.term();
        let ready = core.ready(&EmptyLog);
        let (index, entry_term) = ready.persist_point().expect("the no-op");
        core.persisted(index, entry_term);
        let success = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
            match_index: core.last_index(),
        });
        core.step(answer(&core, 2, term, success)).expect("valid");
        assert_eq!(core.commit_index(), core.last_index(), "the no-op commits: reads may go");
        core.ready(&EmptyLog);
        let echo = |context: u64| {
            MessageBody::HeartbeatResponse(HeartbeatResponse { read_context: Some(context) })
        };
        let context_sent = |ready: &crate::raft::Ready| {
            ready.messages.iter().find_map(|m| match m.body {
                MessageBody::Heartbeat(Heartbeat { read_context: Some(context), .. }) => {
                    Some(context)
                }
                _ => None,
            })
        };
        // A first read, confirmed by node 2's echo of its round.
        core.read_index(1).expect("leader");
        let first_round = context_sent(&core.ready(&EmptyLog)).expect("a read round");
        core.step(answer(&core, 2, term, echo(first_round))).expect("valid");
        assert_eq!(core.ready(&EmptyLog).read_states.len(), 1);
        // Node 3 echoes a context no heartbeat carried.
        let refused = core.step(answer(&core, 3, term, echo(u64::MAX)));
        // A second read; its round's heartbeat goes out, and only an old echo of node 2's comes
        // back (a duplicate): nobody confirmed the leader after the read arrived.
        core.read_index(2).expect("leader");
        let second_round = context_sent(&core.ready(&EmptyLog)).expect("a read round");
        assert!(second_round > first_round);
        core.step(answer(&core, 2, term, echo(first_round))).expect("valid");
        assert!(core.ready(&EmptyLog).read_states.is_empty(), "the read waits for a majority");
        core.step(answer(&core, 3, term, echo(second_round))).expect("valid");
        let answered = core.ready(&EmptyLog).read_states;
        assert_eq!(answered.iter().map(|r| r.request_id).collect::<Vec<_>>(), vec![2]);
        assert!(matches!(refused, Err(StepError::Malformed { .. })), "{refused:?}");
    }
}
