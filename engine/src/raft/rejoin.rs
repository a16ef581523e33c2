//! Rejoining after the loss of a replica's durable Raft state (its log and hard state).
//!
//! A replica whose disk was replaced, or whose log directory an operator moved away, restarts
//! with term 0, no vote and an empty log. Taking part at once would be unsafe: it could vote a
//! second time in a term it voted in before the loss (two leaders in one term), acknowledge a
//! leader of a term below one it voted in (whose entries the leader it helped elect then
//! overwrites), or, with its empty log, vote for a candidate that lacks entries committed with
//! its own lost acknowledgements. A core built with [`crate::raft::Config::rejoin`] therefore
//! starts in the rejoin state and goes through:
//!
//! 1. **The term query.** Until it has heard from every peer at least once, it only learns
//!    their terms: any message from peer P tells P's term. At start, and then every election
//!    timeout, it sends every peer not yet heard from a probe: a PreVote request with its own
//!    term and log position (a peer refuses it and answers with its own term; pre-votes change
//!    no state anywhere). It grants no vote or pre-vote (it refuses them in its own term),
//!    never campaigns, and acknowledges nothing: AppendEntries, heartbeats, log starts and
//!    TimeoutNow are ignored, and their terms not adopted. Every term it could have voted in
//!    before the loss is at most the current term of some other replica (a candidate persists
//!    its term before it asks for votes), so hearing from all of them bounds it; a majority
//!    would not (the candidate it voted for may be the only replica that knows that term).
//!    The bound needs every message it counts to have been sent after the messages it answered
//!    before the loss: links that deliver in order (raftwal's per-peer streams) give that; the
//!    simulator, whose network reorders, drops what was sent to a wiped replica before the
//!    wipe.
//! 2. **Its own term.** With `Tq = max(own term, every peer's term)`, it moves to `Tq` and votes
//!    for itself there (it keeps a vote it already holds in `Tq`), so it never grants a vote in
//!    `Tq`; the hard state reaches the next `Ready` like any term or vote change. From here it
//!    is a follower of term `Tq` (it adopts higher terms as usual, accepts the leaders of its
//!    term), but it still grants no vote or pre-vote and never campaigns.
//! 3. **Catching up.** Once it knows a leader, it asks it for a read index with the reserved
//!    request id [`REJOIN_READ_REQUEST_ID`] (the ReadIndex forwarding of `read_index`; the
//!    answer never reaches [`crate::raft::Ready::read_states`]). The leader treats that request
//!    specially: it forgets what it knew of the replica's log (its progress restarts probing
//!    from the leader's end: the match index it holds is the lost log's, and would keep it from
//!    backing up to the empty one, and would count lost copies toward commitment), and once its
//!    leadership is confirmed it answers with its **last** index at registration, not its
//!    commit index. That index `c` covers every entry committed with the replica's lost
//!    acknowledgements, whenever the commit happens: an entry of an earlier term is held by
//!    every leader elected without this replica's vote (the other voters of that leader and
//!    the acknowledging majority overlap outside this replica) or with its vote cast before the
//!    loss (it held the entry then), and in the leader's own term the replica only acknowledged
//!    entries of the leader's log, which grows only. A commit index would not be enough: the
//!    leader may commit, after answering, entries it counts on the replica's stale match index.
//!    A `None` answer, a leader change, or no answer within an election timeout: it asks again,
//!    at most once per tick or heartbeat of its leader. While its durable index does not move
//!    for an election timeout it asks again too (a delayed acknowledgement sent before the loss
//!    can restore the leader's stale match index).
//! 4. **Done** when its durable index and its commit index both reach `c` (the leader that gave
//!    `c` still being its leader): it leaves the rejoin state, reports it once as
//!    [`crate::raft::Ready::rejoined`] (the driver drops its rejoin marker once that `Ready`'s
//!    hard state is durable), and behaves normally from then on; in the current term its
//!    recorded vote stands.
//!
//! A replica cannot rejoin while a peer is down (the query waits for it); the cluster itself
//! stays available while a majority is up.
//!
//! Owns: [`Rejoin`], the term query, the catch-up read and the leader's side of it.
//! Must not: grant a vote or pre-vote, campaign, or acknowledge anything before the query ends.
//! Invariants (checked by [`RaftCore::check_invariants`]):
//! 1. A rejoining replica is a follower (never a pre-candidate, candidate or leader).
//! 2. It holds no vote but for itself, or the vote it was restored with in that term.
//! 3. While the query runs, its term is the one it was restored with and it knows no leader.

use crate::raft::core::{RaftCore, Role};
use raftwal_wire::message::{MessageBody, ReadIndex, RequestVoteResponse};
use raftwal_wire::types::{LogIndex, NodeId, Term};

/// The request id of the read a rejoining replica asks its leader for (step 3). Reserved:
/// drivers never use it for their own reads.
pub const REJOIN_READ_REQUEST_ID: u64 = u64::MAX;

/// A rejoining replica's progress through the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejoin {
    /// The term and vote the core was restored with (invariant 2).
    restored: (Term, Option<NodeId>),
    phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Step 1: the highest term heard from each peer so far.
    Query { heard: Vec<(NodeId, Term)> },
    /// Steps 3 and 4.
    CatchUp(CatchUp),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct CatchUp {
    /// The read outstanding at this leader, with the ticks it has waited.
    asking: Option<(NodeId, u32)>,
    /// The index `c` confirmed by this leader.
    target: Option<(NodeId, LogIndex)>,
    /// Ticks since the durable index last moved while a target is set.
    stalled_ticks: u32,
    durable_seen: LogIndex,
}

impl Rejoin {
    pub(crate) fn new(term: Term, vote: Option<NodeId>) -> Rejoin {
        Rejoin { restored: (term, vote), phase: Phase::Query { heard: Vec::new() } }
    }
}

impl RaftCore {
    /// Whether this replica is rejoining after the loss of its durable state (it grants no
    /// votes, never campaigns, and until its term query ends acknowledges nothing).
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    /// Whether the term query (step 1) still runs.
    pub(super) fn rejoin_querying(&self) -> bool {
        matches!(&self.rejoin, Some(Rejoin { phase: Phase::Query { .. }, .. }))
    }

    /// Step 1 at start: probe every peer. A replica without peers has nothing to learn or catch
    /// up from (whatever it lost is lost): it is done at once.
    pub(super) fn start_rejoin(&mut self) {
        if self.config.voters.len() == 1 {
            self.rejoined = true;
        } else {
            self.rejoin = Some(Rejoin::new(self.term, self.vote));
            self.send_probes();
        }
    }

    /// A PreVote request with this replica's own term and log position to every peer not yet
    /// heard from: a peer refuses it and answers with its term.
    fn send_probes(&mut self) {
        let Some(Rejoin { phase: Phase::Query { heard }, .. }) = &self.rejoin else { return };
        let unheard: Vec<NodeId> =
            self.other_voters().filter(|peer| !heard.iter().any(|(p, _)| p == peer)).collect();
        let request = raftwal_wire::message::RequestVote {
            pre_vote: true,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            leadership_transfer: false,
        };
        for peer in unheard {
            self.send(peer, MessageBody::RequestVote(request));
        }
    }

    /// Step 1: a message arrived during the term query. Records its sender's term; returns
    /// whether the message is to be handled as usual (it ended the query), or was handled here
    /// (a vote request refused, a read refused, anything else ignored).
    pub(super) fn rejoin_hear(&mut self, from: NodeId, term: Term, body: &MessageBody) -> bool {
        let peers = self.config.voters.len() - 1;
        let Some(Rejoin { phase: Phase::Query { heard }, .. }) = &mut self.rejoin else {
            return true;
        };
        match heard.iter_mut().find(|(peer, _)| *peer == from) {
            Some((_, known)) => *known = (*known).max(term),
            None => heard.push((from, term)),
        }
        if heard.len() < peers {
            match body {
                MessageBody::RequestVote(request) => {
                    let refusal =
                        RequestVoteResponse { pre_vote: request.pre_vote, granted: false };
                    self.send(from, MessageBody::RequestVoteResponse(refusal));
                }
                MessageBody::ReadIndex(request) => {
                    let refusal = raftwal_wire::message::ReadIndexResponse {
                        request_id: request.request_id,
                        read_index: None,
                    };
                    self.send(from, MessageBody::ReadIndexResponse(refusal));
                }
                _ => {}
            }
            return false;
        }
        self.complete_term_query();
        true
    }

    /// Step 2: the term query ended; move to the highest term heard and vote for itself there.
    fn complete_term_query(&mut self) {
        let Some(rejoin) = &mut self.rejoin else { return };
        let Phase::Query { heard } = &rejoin.phase else { return };
        let highest = heard.iter().map(|(_, term)| *term).max().unwrap_or(Term::ZERO);
        rejoin.phase = Phase::CatchUp(CatchUp::default());
        if highest > self.term {
            self.term = highest;
            self.vote = Some(self.config.id);
        } else if self.vote.is_none() {
            self.vote = Some(self.config.id);
        }
        self.role = Role::Follower;
        self.leader = None;
        self.leader_match = LogIndex::ZERO;
        self.acknowledged = LogIndex::ZERO;
        self.reset_election_timer();
    }

    /// A rejoining replica's tick (instead of the election timer's): probes again every
    /// election timeout while querying; while catching up, ages the outstanding read, asks
    /// again after a stall, and asks its leader if nothing is outstanding.
    pub(super) fn tick_rejoin(&mut self) {
        self.age_forwarded_reads();
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        let timed_out = self.election_elapsed >= self.randomized_election_timeout;
        if timed_out {
            self.reset_election_timer();
        }
        if self.rejoin_querying() {
            if timed_out {
                self.send_probes();
            }
            return;
        }
        let limit = self.config.election_timeout_ticks;
        let durable = self.log.durable();
        if let Some(Rejoin { phase: Phase::CatchUp(catch_up), .. }) = &mut self.rejoin {
            if let Some((_, waited)) = &mut catch_up.asking {
                *waited += 1;
                if *waited >= limit {
                    catch_up.asking = None;
                }
            }
            if catch_up.target.is_some_and(|(_, target)| durable < target) {
                if durable > catch_up.durable_seen {
                    catch_up.durable_seen = durable;
                    catch_up.stalled_ticks = 0;
                } else {
                    catch_up.stalled_ticks += 1;
                    if catch_up.stalled_ticks >= limit {
                        catch_up.target = None;
                        catch_up.stalled_ticks = 0;
                    }
                }
            }
        }
        self.rejoin_maybe_ask();
        self.rejoin_check_done();
    }

    /// Step 3: ask the leader for the index to catch up to, unless a read is outstanding or
    /// the target is known.
    pub(super) fn rejoin_maybe_ask(&mut self) {
        let Some(leader) = self.leader.filter(|leader| *leader != self.config.id) else { return };
        let Some(Rejoin { phase: Phase::CatchUp(catch_up), .. }) = &mut self.rejoin else {
            return;
        };
        if catch_up.asking.is_some() || catch_up.target.is_some_and(|(from, _)| from == leader) {
            return;
        }
        catch_up.asking = Some((leader, 0));
        catch_up.target = None;
        self.send(leader, MessageBody::ReadIndex(ReadIndex { request_id: REJOIN_READ_REQUEST_ID }));
    }

    /// The leader answered the rejoin read (`read_index` of `None`: ask again later).
    /// Returns whether the answer was the rejoin read's.
    pub(super) fn rejoin_read_answered(
        &mut self,
        request_id: u64,
        read_index: Option<LogIndex>,
    ) -> bool {
        if request_id != REJOIN_READ_REQUEST_ID {
            return false;
        }
        let durable = self.log.durable();
        if let Some(Rejoin { phase: Phase::CatchUp(catch_up), .. }) = &mut self.rejoin {
            if let Some((leader, _)) = catch_up.asking {
                if Some(leader) == self.leader {
                    catch_up.asking = None;
                    catch_up.target = read_index.map(|index| (leader, index));
                    catch_up.durable_seen = durable;
                    catch_up.stalled_ticks = 0;
                }
            }
        }
        self.rejoin_check_done();
        true
    }

    /// The leader changed: the read outstanding and the target it gave are void.
    pub(super) fn rejoin_leader_changed(&mut self) {
        if let Some(Rejoin { phase: Phase::CatchUp(catch_up), .. }) = &mut self.rejoin {
            catch_up.asking = None;
            catch_up.target = None;
        }
    }

    /// Step 4: done once the durable and commit indexes reach the target of the current leader.
    pub(super) fn rejoin_check_done(&mut self) {
        let Some(Rejoin { phase: Phase::CatchUp(catch_up), .. }) = &self.rejoin else { return };
        let Some((leader, target)) = catch_up.target else { return };
        if self.leader == Some(leader)
            && self.role == Role::Follower
            && self.log.durable() >= target
            && self.log.commit() >= target
        {
            self.rejoin = None;
            self.rejoined = true;
        }
    }

    /// The leader's side of step 3: a rejoining follower asked for its catch-up index. What the
    /// leader knew of the follower's log is void: probe it again from the leader's end.
    pub(super) fn forget_follower_log(&mut self, follower: NodeId) {
        let last_index = self.log.last_index();
        if let Some(position) = self.peer_position(follower) {
            self.peers[position].forget_match(last_index);
        }
    }

    /// Invariants 1 to 3.
    pub(super) fn check_rejoin(&self) -> Result<(), &'static str> {
        let Some(rejoin) = &self.rejoin else { return Ok(()) };
        if self.role != Role::Follower {
            return Err("a rejoining replica is a follower (rejoin 1)");
        }
        let own = self.vote.is_none() || self.vote == Some(self.config.id);
        if !own && (self.term, self.vote) != rejoin.restored {
            return Err("a rejoining replica votes for no one but itself (rejoin 2)");
        }
        if matches!(rejoin.phase, Phase::Query { .. })
            && (self.term != rejoin.restored.0 || self.leader.is_some())
        {
            return Err("a querying replica keeps its term and follows no leader (rejoin 3)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::REJOIN_READ_REQUEST_ID;
    use crate::raft::{Config, EmptyLog, RaftCore, Ready, Role};
    use bytes::Bytes;
    use raftwal_wire::message::{
        AppendEntries, AppendEntriesResponse, Heartbeat, Message, MessageBody, ReadIndex,
        ReadIndexResponse, RequestVote, RequestVoteResponse,
    };
    use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};

    fn config(rejoin: bool) -> Config {
        let mut config = Config::new(NodeId(1), LogId(1), (1..=3).map(NodeId).collect());
        config.rejoin = rejoin;
        config.check_quorum = false;
        config
    }

    fn from(peer: u64, term: u64, body: MessageBody) -> Message {
        Message { log: LogId(1), from: NodeId(peer), to: NodeId(1), term: Term(term), body }
    }

    fn vote_request(pre_vote: bool) -> MessageBody {
        MessageBody::RequestVote(RequestVote {
            pre_vote,
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            leadership_transfer: false,
        })
    }

    fn refusal() -> MessageBody {
        MessageBody::RequestVoteResponse(RequestVoteResponse { pre_vote: true, granted: false })
    }

    fn heartbeat(commit: u64) -> MessageBody {
        MessageBody::Heartbeat(Heartbeat { leader_commit: LogIndex(commit), read_context: None })
    }

    /// Drains the core and reports its writes durable at once.
    fn drain(core: &mut RaftCore) -> Ready {
        let ready = core.ready(&EmptyLog);
        if let Some((index, term)) = ready.persist_point() {
            core.persisted(index, term);
        }
        ready
    }

    fn sent(ready: &Ready) -> Vec<Message> {
        ready.messages.iter().chain(&ready.messages_after_persist).cloned().collect()
    }

    fn grants(ready: &Ready) -> usize {
        sent(ready)
            .iter()
            .filter(|m| matches!(m.body, MessageBody::RequestVoteResponse(r) if r.granted))
            .count()
    }

    /// A rejoining replica whose query heard terms 5 and 7.
    fn queried() -> RaftCore {
        let mut core = RaftCore::new(config(true)).expect("valid");
        drain(&mut core);
        core.step(from(2, 5, refusal())).expect("valid");
        core.step(from(3, 7, refusal())).expect("valid");
        core
    }

    #[test]
    fn probes_go_out_at_start_and_again_to_the_peers_not_heard_from() {
        let mut core = RaftCore::new(config(true)).expect("valid");
        assert!(core.is_rejoining());
        let probes = sent(&drain(&mut core));
        let to: Vec<u64> = probes.iter().map(|m| m.to.get()).collect();
        assert_eq!(to, vec![2, 3]);
        assert!(probes
            .iter()
            .all(|m| m.term == Term(0)
                && matches!(m.body, MessageBody::RequestVote(r) if r.pre_vote)));
        core.step(from(2, 4, refusal())).expect("valid");
        let mut again = Vec::new();
        for _ in 0..2 * core.config().election_timeout_ticks {
            core.tick();
            again.extend(sent(&drain(&mut core)));
        }
        assert!(!again.is_empty(), "probes go out again every election timeout");
        assert!(again
            .iter()
            .all(|m| m.to == NodeId(3)
                && matches!(m.body, MessageBody::RequestVote(r) if r.pre_vote)));
        assert_eq!(core.term(), Term(0), "the query changes no term before it ends");
        core.check_invariants().expect("valid");
    }

    #[test]
    fn a_rejoining_replica_grants_no_vote_or_pre_vote_and_never_campaigns() {
        // While querying, and after the query.
        for query_done in [false, true] {
            let mut core =
                if query_done { queried() } else { RaftCore::new(config(true)).expect("valid") };
            drain(&mut core);
            let term = core.term().get();
            core.step(from(2, term + 1, vote_request(true))).expect("valid");
            core.step(from(2, term + 1, vote_request(false))).expect("valid");
            core.step(from(3, term + 2, vote_request(false))).expect("valid");
            let ready = drain(&mut core);
            assert_eq!(grants(&ready), 0, "query done: {query_done}");
            assert!(core.vote().is_none() || core.vote() == Some(NodeId(1)));
            for _ in 0..10 * core.config().election_timeout_ticks {
                core.tick();
                let ready = drain(&mut core);
                assert!(sent(&ready)
                    .iter()
                    .all(|m| !matches!(m.body, MessageBody::RequestVote(r) if !r.pre_vote)));
                assert_eq!(core.role(), Role::Follower);
                core.check_invariants().expect("valid");
            }
        }
        // The same requests are granted by a replica that is not rejoining.
        let mut core = RaftCore::new(config(false)).expect("valid");
        core.step(from(2, 1, vote_request(false))).expect("valid");
        assert_eq!(grants(&drain(&mut core)), 1);
    }

    #[test]
    fn a_replica_without_peers_rejoins_at_once() {
        let mut config = Config::new(NodeId(1), LogId(1), vec![NodeId(1)]);
        config.rejoin = true;
        let mut core = RaftCore::new(config).expect("valid");
        assert!(!core.is_rejoining());
        assert!(drain(&mut core).rejoined);
    }

    #[test]
    fn the_query_ends_in_the_highest_term_heard_with_a_vote_for_itself() {
        let mut core = RaftCore::new(config(true)).expect("valid");
        drain(&mut core);
        core.step(from(3, 7, refusal())).expect("valid");
        assert_eq!(core.term(), Term(0), "one peer is not enough");
        core.step(from(2, 5, refusal())).expect("valid");
        assert_eq!(core.term(), Term(7));
        assert_eq!(core.vote(), Some(NodeId(1)));
        let ready = drain(&mut core);
        let hard_state = ready.hard_state.expect("the term and vote are persisted");
        assert_eq!((hard_state.term, hard_state.vote), (Term(7), Some(NodeId(1))));
        assert!(ready.must_sync);
        assert!(core.is_rejoining(), "it still has to catch up");
        core.check_invariants().expect("valid");
    }

    #[test]
    fn nothing_is_acknowledged_before_the_query_ends() {
        let mut core = RaftCore::new(config(true)).expect("valid");
        drain(&mut core);
        let entry = Entry {
            index: LogIndex(1),
            term: Term(3),
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"x"),
        };
        let append = AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            leader_commit: LogIndex(1),
            entries: vec![entry],
        };
        core.step(from(2, 3, MessageBody::AppendEntries(append))).expect("valid");
        core.step(from(2, 3, heartbeat(1))).expect("valid");
        core.step(from(2, 3, MessageBody::TimeoutNow)).expect("valid");
        let ready = drain(&mut core);
        assert!(ready.entries.is_empty());
        assert!(sent(&ready).is_empty(), "{:?}", sent(&ready));
        assert_eq!(core.term(), Term(0), "the leader's term is not adopted");
        assert_eq!(core.leader(), None);
        assert_eq!(core.commit_index(), LogIndex(0));
        assert_eq!(core.role(), Role::Follower);
        core.check_invariants().expect("valid");
    }

    #[test]
    fn the_catch_up_read_goes_to_the_leader_and_is_asked_again_after_a_refusal() {
        let mut core = queried();
        drain(&mut core);
        core.step(from(2, 7, heartbeat(0))).expect("valid");
        let asked = |ready: &Ready| {
            sent(ready).iter().any(|m| {
                m.to == NodeId(2)
                    && m.body
                        == MessageBody::ReadIndex(ReadIndex { request_id: REJOIN_READ_REQUEST_ID })
            })
        };
        assert!(asked(&drain(&mut core)));
        // Not asked again while the read is outstanding.
        core.step(from(2, 7, heartbeat(0))).expect("valid");
        assert!(!asked(&drain(&mut core)));
        let none = ReadIndexResponse { request_id: REJOIN_READ_REQUEST_ID, read_index: None };
        core.step(from(2, 7, MessageBody::ReadIndexResponse(none))).expect("valid");
        let ready = drain(&mut core);
        assert!(ready.read_states.is_empty(), "the rejoin read is not the driver's");
        core.tick();
        assert!(asked(&drain(&mut core)), "asked again after a None answer");
        assert!(core.is_rejoining());
    }

    #[test]
    fn the_rejoin_ends_once_durable_and_committed_up_to_the_leaders_answer() {
        let mut core = queried();
        drain(&mut core);
        core.step(from(2, 7, heartbeat(0))).expect("valid");
        drain(&mut core);
        let answer =
            ReadIndexResponse { request_id: REJOIN_READ_REQUEST_ID, read_index: Some(LogIndex(2)) };
        core.step(from(2, 7, MessageBody::ReadIndexResponse(answer))).expect("valid");
        assert!(!drain(&mut core).rejoined);
        let entries = (1..=2)
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(7),
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"x"),
            })
            .collect();
        let append = AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            leader_commit: LogIndex(1),
            entries,
        };
        core.step(from(2, 7, MessageBody::AppendEntries(append))).expect("valid");
        let ready = drain(&mut core);
        assert!(!ready.rejoined, "committed up to 1 only");
        assert!(core.is_rejoining());
        core.step(from(2, 7, heartbeat(2))).expect("valid");
        let ready = drain(&mut core);
        assert!(ready.rejoined);
        assert!(!core.is_rejoining());
        assert!(!drain(&mut core).rejoined, "reported once");
        // Its vote in term 7 stands; in a later term it votes as usual.
        core.step(from(3, 7, vote_request(false))).expect("valid");
        assert_eq!(grants(&drain(&mut core)), 0);
        let mut request = vote_request(false);
        if let MessageBody::RequestVote(r) = &mut request {
            r.last_log_index = LogIndex(2);
            r.last_log_term = Term(7);
        }
        core.step(from(3, 8, request)).expect("valid");
        assert_eq!(grants(&drain(&mut core)), 1);
        core.check_invariants().expect("valid");
    }

    #[test]
    fn a_leader_answers_a_rejoin_read_with_its_last_index_and_probes_the_follower_again() {
        let mut core = RaftCore::new(config(false)).expect("valid");
        // Elected in term 1 with node 2's vote, after PreVote.
        while core.role() != Role::PreCandidate {
            core.tick();
        }
        let pre = RequestVoteResponse { pre_vote: true, granted: true };
        core.step(from(2, 1, MessageBody::RequestVoteResponse(pre))).expect("valid");
        let vote = RequestVoteResponse { pre_vote: false, granted: true };
        core.step(from(2, 1, MessageBody::RequestVoteResponse(vote))).expect("valid");
        assert_eq!(core.role(), Role::Leader);
        let success = |index: u64| {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                match_index: LogIndex(index),
            })
        };
        drain(&mut core);
        core.step(from(3, 1, success(1))).expect("valid");
        assert_eq!(core.commit_index(), LogIndex(1), "the no-op is committed");
        // Node 3 acknowledges more entries, then loses its disk.
        core.propose((0..4).map(|_| (EntryKind::Normal, Bytes::from_static(b"y")))).expect("ok");
        core.ready(&EmptyLog); // not durable here yet
        core.step(from(3, 1, success(5))).expect("valid");
        assert_eq!(core.progress(NodeId(3)).expect("leader").match_index, LogIndex(5));
        let ask = MessageBody::ReadIndex(ReadIndex { request_id: REJOIN_READ_REQUEST_ID });
        core.step(from(3, 1, ask)).expect("valid");
        let progress = core.progress(NodeId(3)).expect("leader");
        assert_eq!(progress.match_index, LogIndex(0), "what it knew of node 3's log is void");
        assert_eq!(progress.next_index, LogIndex(6));
        // The read's heartbeat round: node 2 confirms the leadership.
        let ready = core.ready(&EmptyLog);
        let context = sent(&ready).iter().find_map(|m| match m.body {
            MessageBody::Heartbeat(h) if m.to == NodeId(2) => h.read_context,
            _ => None,
        });
        let echo = raftwal_wire::message::HeartbeatResponse { read_context: context };
        core.step(from(2, 1, MessageBody::HeartbeatResponse(echo))).expect("valid");
        let answer = sent(&core.ready(&EmptyLog)).into_iter().find_map(|m| match m.body {
            MessageBody::ReadIndexResponse(r) if m.to == NodeId(3) => Some(r),
            _ => None,
        });
        // Its commit index is 1; its last index is 5, which it could still commit counting
        // node 3's lost copy (its own write completes and node 3's match said 5).
        let answer = answer.expect("answered");
        assert_eq!(answer.read_index, Some(LogIndex(5)));
        assert_eq!(answer.request_id, REJOIN_READ_REQUEST_ID);
        core.persisted(LogIndex(5), Term(1));
        assert_eq!(core.commit_index(), LogIndex(1), "node 3's lost copy is not counted");
        core.check_invariants().expect("valid");
    }
}
