//! The consensus core: one replica of one log, driven by inputs and drained for outputs.
//!
//! Owns: [`RaftCore`], its role and term, and the dispatch of every input to the module that
//! handles it (election, replication, follower, commit, read index, transfer).
//! Must not: perform I/O, read a clock, spawn threads or draw entropy. Time is `tick()`, the
//! network is `step()`, storage is the [`Ready`] it hands out and the [`LogSource`] it reads.
//! Invariants (checked by [`RaftCore::check_invariants`]):
//! 1. A leader leads itself and voted for itself in its term; a candidate voted for itself.
//! 2. Only a leader tracks follower progress; every tracked follower satisfies the progress
//!    invariants.
//! 3. The log view's invariants hold (commit and durable marks within the log, every entry not
//!    durable or not handed out is cached).
//! 4. The commit index handed to the driver never exceeds the core's commit index.

use crate::raft::bugs::{BugSet, InjectedBug};
use crate::raft::config::{Config, ConfigError};
use crate::raft::election::VoteTally;
use crate::raft::errors::{ProposeError, RestoreError, StepError};
use crate::raft::log_source::{EmptyLog, LogSource};
use crate::raft::log_view::{LogView, LAST_INDEX_MAX};
use crate::raft::progress::{Progress, ProgressView};
use crate::raft::read_index::ReadQueue;
use crate::raft::ready::{needs_persist, Outbox, Ready};
use crate::raft::rejoin::Rejoin;
use crate::raft::rng::TimeoutRng;
use crate::raft::transfer::Transfer;
use bytes::Bytes;
use raftwal_wire::message::{Message, MessageBody};
use raftwal_wire::types::{EntryKind, HardState, LogIndex, NodeId, Term};
use thiserror::Error;

/// A replica's role (paper 5.1), with PreVote's pre-candidate (thesis 9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without changing its term.
    PreCandidate,
    /// Campaigns for leadership in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Where [`RaftCore::propose`] placed a batch: consecutive entries `first_index..=last_index`,
/// all of term `term`. The batch is acknowledged once the commit index reaches `last_index`
/// and the entry there still has term `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// Index of the batch's first entry.
    pub first_index: LogIndex,
    /// Index of the batch's last entry.
    pub last_index: LogIndex,
    /// The leader's term, the term of every entry of the batch.
    pub term: Term,
}

/// A broken internal invariant found by [`RaftCore::check_invariants`]: a bug in the core.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("raft core invariant broken on {node}: {what}")]
pub struct InvariantViolation {
    /// The replica.
    pub node: NodeId,
    /// The invariant.
    pub what: &'static str,
}

/// One replica of one Raft log, as a sans-IO state machine.
#[derive(Debug)]
pub struct RaftCore {
    pub(super) config: Config,
    pub(super) term: Term,
    pub(super) vote: Option<NodeId>,
    pub(super) role: Role,
    pub(super) leader: Option<NodeId>,
    pub(super) log: LogView,
    /// Ticks since the election timer was reset (followers, candidates) or since the current
    /// CheckQuorum period began (leaders).
    pub(super) election_elapsed: u32,
    pub(super) randomized_election_timeout: u32,
    /// Ticks since this replica last cast a vote (for a candidate or, campaigning, for itself);
    /// `u32::MAX` before its first since start, and once its own election is lost. Pre-votes
    /// are refused for an election timeout after a vote.
    pub(super) ticks_since_vote: u32,
    pub(super) votes: VoteTally,
    /// The followers' progress; empty unless leader.
    pub(super) peers: Vec<Progress>,
    pub(super) heartbeat_elapsed: u32,
    pub(super) heartbeat_due: bool,
    pub(super) transfer: Option<Transfer>,
    pub(super) reads: ReadQueue,
    /// Follower: the highest index known to match the current leader's log.
    pub(super) leader_match: LogIndex,
    /// Follower: the highest match index acknowledged to the current leader.
    pub(super) acknowledged: LogIndex,
    /// Read requests this follower forwarded to its leader and not yet answered, with the ticks
    /// they have waited.
    pub(super) forwarded_reads: Vec<(u64, u32)>,
    pub(super) rng: TimeoutRng,
    pub(super) out: Outbox,
    pub(super) handed_hard_state: HardState,
    pub(super) handed_commit: LogIndex,
    pub(super) bugs: BugSet,
    pub(super) log_read_failures: u64,
    /// Reused buffer for quorum computations (no allocation per commit check).
    pub(super) scratch: Vec<u64>,
    /// The rejoin protocol's progress while this replica rejoins after losing its durable
    /// state (`rejoin`); `None` otherwise.
    pub(super) rejoin: Option<Rejoin>,
    /// The rejoin ended since the last `Ready` (reported as `Ready::rejoined`).
    pub(super) rejoined: bool,
}

impl RaftCore {
    /// A fresh replica with an empty log and a zero hard state.
    pub fn new(config: Config) -> Result<RaftCore, ConfigError> {
        RaftCore::restore(config, HardState::default(), &EmptyLog).map_err(|error| match error {
            RestoreError::Config(config_error) => config_error,
            // An empty log and a zero hard state cannot be inconsistent.
            RestoreError::UnknownVote { .. }
            | RestoreError::InconsistentLog { .. }
            | RestoreError::CommitBeyondLog { .. } => {
                unreachable!("an empty log with a zero hard state restores: {error}")
            }
        })
    }

    /// A replica restarting from its durable state: the persisted hard state and the stored log
    /// (all of which the core treats as durable).
    ///
    /// The term becomes the larger of the persisted term and the last entry's term (an entry's
    /// term may reach the disk before the hard state that recorded it; no vote was cast in a term
    /// the hard state does not know, so the vote is then empty). A persisted commit index beyond
    /// the stored log means storage lost committed entries, and is refused.
    pub fn restore<S: LogSource + ?Sized>(
        config: Config,
        hard_state: HardState,
        source: &S,
    ) -> Result<RaftCore, RestoreError> {
        config.validate()?;
        if let Some(vote) = hard_state.vote {
            if !config.voters.contains(&vote) {
                return Err(RestoreError::UnknownVote { vote });
            }
        }
        let log = LogView::restore(source, hard_state.commit, config.entry_cache_size_bytes_max)?;
        let (term, vote) = if log.last_term() > hard_state.term {
            (log.last_term(), None)
        } else {
            (hard_state.term, hard_state.vote)
        };
        let handed_commit = log.commit();
        let mut core = RaftCore {
            rng: TimeoutRng::new(config.timeout_seed),
            randomized_election_timeout: config.election_timeout_ticks,
            scratch: Vec::with_capacity(config.voters.len()),
            config,
            term,
            vote,
            role: Role::Follower,
            leader: None,
            log,
            election_elapsed: 0,
            ticks_since_vote: u32::MAX,
            votes: VoteTally::default(),
            peers: Vec::new(),
            heartbeat_elapsed: 0,
            heartbeat_due: false,
            transfer: None,
            reads: ReadQueue::default(),
            forwarded_reads: Vec::new(),
            leader_match: LogIndex::ZERO,
            acknowledged: LogIndex::ZERO,
            out: Outbox::default(),
            handed_hard_state: hard_state,
            handed_commit,
            bugs: BugSet::default(),
            log_read_failures: 0,
            rejoin: None,
            rejoined: false,
        };
        core.reset_election_timer();
        if core.config.rejoin {
            core.start_rejoin();
        }
        Ok(core)
    }

    /// Plants a known bug (test builds only; see the `bugs` module).
    #[cfg(feature = "bug-injection")]
    pub fn inject_bug(&mut self, bug: InjectedBug) {
        self.bugs.insert(bug);
        if bug == InjectedBug::RejoinWithoutQuery && self.rejoin.take().is_some() {
            // The replica takes part at once, as a fresh one: its probes are not sent.
            self.out = Outbox::default();
        }
    }

    /// One unit of logical time. Followers and candidates count toward their election timeout;
    /// a leader counts toward its heartbeat interval and its CheckQuorum period.
    pub fn tick(&mut self) {
        self.ticks_since_vote = self.ticks_since_vote.saturating_add(1);
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(),
        }
    }

    /// Handles one message from a peer. A message that is not for this replica, or that breaks
    /// the protocol, is refused with an error and changes nothing.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        self.validate(&message)?;
        let Message { from, term, body, .. } = message;
        if self.rejoin_querying() && !self.rejoin_hear(from, term, &body) {
            return Ok(());
        }
        let result = self.step_message(from, term, body);
        self.rejoin_check_done();
        result
    }

    fn step_message(
        &mut self,
        from: NodeId,
        term: Term,
        body: MessageBody,
    ) -> Result<(), StepError> {
        if term > self.term {
            match &body {
                // A pre-vote request carries the term its sender would campaign in; it changes
                // no one's term. A granted pre-vote echoes that term back.
                MessageBody::RequestVote(request) if request.pre_vote => {}
                MessageBody::RequestVoteResponse(response)
                    if response.pre_vote && response.granted => {}
                // Thesis 4.2.3: a replica that heard from a leader within the election timeout
                // ignores vote requests, so a disruptive server cannot depose a working leader.
                MessageBody::RequestVote(request)
                    if !request.leadership_transfer && self.in_lease() =>
                {
                    return Ok(());
                }
                // Paper 5.2 (Figure 2): a vote request moves the term forward but resets the
                // election timer only if the vote is granted. Resetting it for every request
                // would let a candidate that cannot win (its log is behind) keep everyone's
                // timers in step, and in-step timers split the votes again and again.
                MessageBody::RequestVote(_) => self.step_down(term, None, false),
                _ => {
                    let from_leader = matches!(
                        body,
                        MessageBody::AppendEntries(_)
                            | MessageBody::LogStart(_)
                            | MessageBody::Heartbeat(_)
                            | MessageBody::TimeoutNow
                    );
                    self.become_follower(term, from_leader.then_some(from));
                }
            }
        } else if term < self.term {
            self.handle_stale_term(from, &body);
            return Ok(());
        }
        match body {
            MessageBody::RequestVote(request) => self.handle_request_vote(from, term, request),
            MessageBody::RequestVoteResponse(response) => {
                self.handle_vote_response(from, term, response)
            }
            MessageBody::AppendEntries(append) => return self.handle_append_entries(from, append),
            MessageBody::AppendEntriesResponse(response) => {
                return self.handle_append_response(from, response)
            }
            MessageBody::Heartbeat(heartbeat) => return self.handle_heartbeat(from, heartbeat),
            MessageBody::HeartbeatResponse(response) => {
                return self.handle_heartbeat_response(from, response)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndex(request) => self.handle_read_index_request(from, request),
            MessageBody::ReadIndexResponse(response) => {
                self.handle_read_index_response(from, response)
            }
            MessageBody::LogStart(start) => return self.handle_log_start(from, start),
        }
        Ok(())
    }

    /// Appends a batch of payloads as consecutive entries of the leader's term. Replication
    /// starts at the next [`RaftCore::ready`], so many calls between two `ready`s share their
    /// AppendEntries.
    pub fn propose<I>(&mut self, payloads: I) -> Result<Proposed, ProposeError>
    where
        I: IntoIterator<Item = (EntryKind, Bytes)>,
    {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some(transfer) = &self.transfer {
            return Err(ProposeError::TransferInProgress { to: transfer.to });
        }
        let first_index = self.log.last_index().next();
        for (kind, data) in payloads {
            if self.log.last_index() >= LAST_INDEX_MAX {
                // Nothing of the batch was handed out yet: take back what went in.
                if self.log.last_index() >= first_index {
                    self.log.truncate_from(first_index);
                }
                return Err(ProposeError::LogFull { last_index: LAST_INDEX_MAX });
            }
            self.log.append(self.term, kind, data);
        }
        let last_index = self.log.last_index();
        if last_index < first_index {
            return Err(ProposeError::EmptyBatch);
        }
        Ok(Proposed { first_index, last_index, term: self.term })
    }

    /// The driver's report that storage holds this replica's log durably up to `(index, term)`.
    /// Reports may arrive late (pipelined group commit): one whose entry was overwritten since
    /// (its term no longer matches) is ignored.
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        if !self.log.mark_durable(index, term) {
            return;
        }
        match self.role {
            Role::Leader => self.maybe_commit(),
            Role::Follower => self.acknowledge_durable(),
            Role::PreCandidate | Role::Candidate => {}
        }
        self.rejoin_check_done();
    }

    /// Forgets the entries before `first`: the driver compacted them away from storage (or is
    /// about to) and they need not be sent to followers any more; a follower that still needs
    /// them is told to start its log after the new first index - 1 ([`MessageBody::LogStart`]).
    /// Only committed entries that are durable here are compacted: `first` is clamped to
    /// `min(commit, durable) + 1`. Returns the log's first index afterwards.
    pub fn compact_before(&mut self, first: LogIndex) -> LogIndex {
        let limit = self.log.commit().min(self.log.durable()).next();
        self.log.compact_before(first.min(limit));
        self.log.base().next()
    }

    /// Index of the first entry the core's log holds (1 unless compacted or reset).
    pub fn first_index(&self) -> LogIndex {
        self.log.base().next()
    }

    /// The log start the next [`RaftCore::ready`] hands the driver (`Ready::log_start`): the
    /// `(index, term)` a stepped [`MessageBody::LogStart`] made this replica start its log
    /// after, if it replaced the log (it keeps a log that holds that entry or committed past it).
    pub fn pending_log_start(&self) -> Option<(LogIndex, Term)> {
        self.log.pending_start()
    }

    /// Whether [`RaftCore::ready`] would return something to do.
    pub fn has_ready(&self) -> bool {
        self.hard_state() != self.handed_hard_state
            || self.log.has_pending_start()
            || self.log.has_unstable()
            || !self.out.is_empty()
            || self.log.commit() > self.handed_commit
            || self.rejoined
            || (self.role == Role::Leader && self.replication_pending())
    }

    /// Drains everything the core wants done (see [`Ready`] for the driver's duties). As leader
    /// it builds the AppendEntries now, batching every entry proposed since the last call;
    /// `source` serves entries no longer in the core's cache.
    pub fn ready<S: LogSource + ?Sized>(&mut self, source: &S) -> Ready {
        if self.role == Role::Leader {
            self.flush_replication(source);
        }
        let hard_state = self.hard_state();
        let previous = self.handed_hard_state;
        self.handed_hard_state = hard_state;
        let vote_changed = hard_state.term != previous.term || hard_state.vote != previous.vote;
        let log_start = self.log.take_pending_start();
        let entries = self.log.take_unstable();
        let commit = self.log.commit();
        let committed = (commit > self.handed_commit).then_some(commit);
        self.handed_commit = self.handed_commit.max(commit);
        let mut messages = std::mem::take(&mut self.out.messages);
        let mut messages_after_persist = std::mem::take(&mut self.out.messages_after_persist);
        // Answers to appends of a term this replica has left since they were queued speak for
        // a log this `Ready` may change: a newer leader's entries, stepped in the same batch of
        // inputs, can replace the entries an older-term Success acknowledged (invariant 1 of
        // `Ready`). Their leader is deposed and Raft tolerates a lost message: drop them.
        let term = self.term;
        let current = |m: &Message| {
            m.term >= term || !matches!(m.body, MessageBody::AppendEntriesResponse(_))
        };
        messages.retain(current);
        messages_after_persist.retain(current);
        Ready {
            must_sync: vote_changed || !entries.is_empty() || log_start.is_some(),
            hard_state: (hard_state != previous).then_some(hard_state),
            log_start,
            entries,
            messages,
            messages_after_persist,
            committed,
            read_states: std::mem::take(&mut self.out.read_states),
            rejoined: std::mem::take(&mut self.rejoined),
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The vote cast in the current term, if any.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The hard state to persist, as it is now (it reaches the driver through the next `Ready`).
    ///
    /// Its commit index is capped at the durable index: storage may make a hard state durable
    /// before entries written with it (they may sit in different files, and a crash may tear a
    /// write), and a persisted commit index must never cover an entry that a crash could still
    /// take back, or a restarted replica would claim an older entry at that index committed.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit().min(self.log.durable()),
        }
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit()
    }

    /// Index of the last entry of the log (including entries not yet durable).
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// Term of the last entry of the log.
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }

    /// The highest index known durable on this replica (reported through `persisted`).
    pub fn durable_index(&self) -> LogIndex {
        self.log.durable()
    }

    /// Term of the entry at `index`: `Term::ZERO` for 0, `None` beyond the log's end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// Bytes of entries held in the core's cache.
    pub fn cached_size_bytes(&self) -> usize {
        self.log.cached_size_bytes()
    }

    /// The leader's view of `peer`'s replication; `None` unless leader (or for an unknown peer).
    pub fn progress(&self, peer: NodeId) -> Option<ProgressView> {
        self.peers.iter().find(|progress| progress.node == peer).map(Progress::view)
    }

    /// The target of the leadership transfer under way, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.as_ref().map(|transfer| transfer.to)
    }

    /// How many times reading older entries through the [`LogSource`] failed.
    pub fn log_read_failures(&self) -> u64 {
        self.log_read_failures
    }

    /// Checks the core's internal invariants (module documentation); the simulator calls it
    /// after every step.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let violation = |what| InvariantViolation { node: self.config.id, what };
        self.log.check().map_err(violation)?;
        self.check_rejoin().map_err(violation)?;
        match self.role {
            Role::Leader => {
                if self.leader != Some(self.config.id) || self.vote != Some(self.config.id) {
                    return Err(violation("a leader leads itself and voted for itself (1)"));
                }
            }
            Role::Candidate => {
                if self.vote != Some(self.config.id) {
                    return Err(violation("a candidate voted for itself (1)"));
                }
            }
            Role::Follower | Role::PreCandidate => {
                if !self.peers.is_empty() || self.transfer.is_some() {
                    return Err(violation("only a leader tracks progress (2)"));
                }
            }
        }
        let last = self.log.last_index();
        for progress in &self.peers {
            progress.check(last).map_err(violation)?;
        }
        if self.handed_commit > self.log.commit() {
            return Err(violation("the handed-out commit index never passes the commit (4)"));
        }
        Ok(())
    }

    /// Queues a message stamped with the current term.
    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    /// Queues a message; it waits for the persist or leaves at once according to its kind
    /// (`ready::needs_persist`).
    pub(super) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let after_persist = needs_persist(&body) && !self.sends_vote_early(&body);
        let message = Message { log: self.config.log, from: self.config.id, to, term, body };
        if after_persist {
            self.out.messages_after_persist.push(message);
        } else {
            self.out.messages.push(message);
        }
    }

    /// The planted `vote-not-durable` bug sends vote grants without waiting for the persist.
    fn sends_vote_early(&self, body: &MessageBody) -> bool {
        self.bugs.has(InjectedBug::VoteNotDurable)
            && matches!(body, MessageBody::RequestVoteResponse(response) if !response.pre_vote)
    }

    /// The other voters.
    pub(super) fn other_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let id = self.config.id;
        self.config.voters.iter().copied().filter(move |voter| *voter != id)
    }

    /// Position of `peer` among the tracked followers.
    pub(super) fn peer_position(&self, peer: NodeId) -> Option<usize> {
        self.peers.iter().position(|progress| progress.node == peer)
    }
}
