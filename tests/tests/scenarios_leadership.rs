//! Scenario tests of PreVote (thesis 9.6), CheckQuorum and the leader lease (thesis 6.2 and
//! 4.2.3), and leadership transfer (thesis 3.10).

use raftwal::raft::{ProposeError, Role, TransferError};
use raftwal_tests::scenario::{filter, Cluster, SCENARIO_LOG};
use raftwal_wire::message::{Message, MessageBody, RequestVote, RequestVoteResponse};
use raftwal_wire::types::{LogIndex, NodeId, Term};

#[test]
fn prevote_a_partitioned_replica_does_not_raise_its_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.term(3);
    cluster.isolate(3);
    // Many election timeouts alone: it keeps asking for pre-votes, never moves its term.
    cluster.ticks(3, 100).settle();
    assert_eq!(cluster.term(3), term);
    assert!(cluster.sent().iter().any(|m| m.from == NodeId(3) && m.kind_name() == "PreVote"));
    assert!(!cluster.sent().iter().any(|m| m.from == NodeId(3) && m.kind_name() == "RequestVote"));
}

#[test]
fn prevote_a_rejoining_replica_does_not_disrupt_a_healthy_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.term(1);
    cluster.isolate(3);
    cluster.ticks(3, 100);
    cluster.heal();
    cluster.drop_where(filter::all());
    // Replica 3 asked for pre-votes all along and never moved its term, so the leader's
    // heartbeats reach it in their own term and it simply follows again.
    cluster.run(&[1, 2, 3], 40);
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.term(1), term, "no election was forced on the cluster");
    assert_eq!(cluster.leader_of(3), Some(1));
}

#[test]
fn prevote_is_refused_to_a_log_that_is_behind() {
    let mut cluster = Cluster::with(3, |config| config.check_quorum = false);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.settle();
    cluster.heal();
    cluster.drop_where(filter::all());
    let term = cluster.term(2);
    cluster.time_out(3);
    assert_eq!(cluster.role(3), Role::PreCandidate);
    cluster.settle();
    assert_eq!(cluster.role(3), Role::Follower, "the pre-vote is lost");
    assert_eq!(cluster.term(2), term, "a pre-vote changes nobody's term");
    assert_eq!(cluster.term(3), term);
}

#[test]
fn prevote_is_refused_while_a_leader_is_heard() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    // Replica 3's timer fires (say its clock runs fast); replica 2 heard the leader recently.
    cluster.time_out(3);
    cluster.deliver_where(filter::kind_to("PreVote", 2));
    let answer = cluster.take(filter::kind_from("PreVoteResponse", 2));
    assert!(matches!(
        answer.first().map(|m| &m.body),
        Some(MessageBody::RequestVoteResponse(response)) if !response.granted
    ));
}

/// A pre-vote request from n3 to `to` for `term`, with n3's log.
fn pre_vote_from_3(cluster: &Cluster, to: u64, term: Term) -> Message {
    Message {
        log: SCENARIO_LOG,
        from: NodeId(3),
        to: NodeId(to),
        term,
        body: MessageBody::RequestVote(RequestVote {
            pre_vote: true,
            last_log_index: cluster.core(3).last_index(),
            last_log_term: cluster.core(3).last_term(),
            leadership_transfer: false,
        }),
    }
}

/// Whether each of the pre-vote answers on the wire grants (taking them off the wire).
fn pre_vote_grants(cluster: &mut Cluster) -> Vec<bool> {
    cluster
        .take(filter::kind("PreVoteResponse"))
        .iter()
        .map(|m| matches!(&m.body, MessageBody::RequestVoteResponse(r) if r.granted))
        .collect()
}

/// n1 campaigns in term 2 (its pre-vote passed); its vote requests are still on the wire.
fn n1_campaigns() -> Cluster {
    let mut cluster = Cluster::new(3);
    cluster.time_out(1).deliver(); // pre-votes
    cluster.deliver(); // their answers: n1 campaigns in term 2
    assert_eq!(cluster.role(1), Role::Candidate);
    cluster
}

#[test]
fn prevote_is_refused_for_an_election_timeout_after_a_vote() {
    // The race of simulator seeds 132,291 and 4,930,761: a replica that has just voted, for a
    // candidate or for itself, knows no leader yet and is not in lease. Were it to grant a
    // rival's pre-vote for the next term, the rival's election could depose the leader about to
    // win, through the higher term in its answer to that leader's first message.
    let mut cluster = n1_campaigns();
    cluster.drop_where(filter::to(3));
    cluster.deliver_where(filter::kind_to("RequestVote", 2));
    cluster.drop_where(filter::all()); // n2's grant is lost: n1 stays a candidate
    assert_eq!(cluster.core(2).vote(), Some(NodeId(1)));
    assert_eq!(cluster.leader_of(2), None, "n2 knows no leader: no lease shields it");
    let term = cluster.core(1).term();
    let asks =
        [pre_vote_from_3(&cluster, 1, term.next()), pre_vote_from_3(&cluster, 2, term.next())];
    cluster.inject(asks).deliver();
    assert_eq!(pre_vote_grants(&mut cluster), [false, false], "the candidate and its voter refuse");
    // An election timeout after its vote, n2 grants the same pre-vote (its own timer may have
    // fired meanwhile; its pre-candidacy is lost and changes nothing here).
    let timeout = cluster.config(2).election_timeout_ticks;
    cluster.ticks(2, timeout).drop_where(filter::all());
    assert_eq!(cluster.core(2).term(), term);
    let ask = pre_vote_from_3(&cluster, 2, term.next());
    cluster.inject([ask]).deliver();
    assert_eq!(pre_vote_grants(&mut cluster), [true], "the vote has aged");
}

#[test]
fn prevote_a_candidate_refused_by_a_majority_grants_at_once() {
    // Its vote for itself will produce no leader: waiting would only hold back a replica that
    // can win (simulator seed 5,041,387: two candidates whose logs were behind campaigned in
    // step and, with their voter, kept refusing the pre-votes of the two that could win).
    let mut cluster = n1_campaigns();
    cluster.drop_where(filter::all());
    let term = cluster.core(1).term();
    let refusal = |from: u64| Message {
        log: SCENARIO_LOG,
        from: NodeId(from),
        to: NodeId(1),
        term,
        body: MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote: false,
            granted: false,
        }),
    };
    cluster.inject([refusal(2), refusal(3)]).deliver();
    assert_eq!(cluster.role(1), Role::Follower, "the election is lost");
    let ask = pre_vote_from_3(&cluster, 1, term.next());
    cluster.inject([ask]).deliver();
    assert_eq!(pre_vote_grants(&mut cluster), [true]);
}

#[test]
fn check_quorum_an_isolated_leader_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    // Two CheckQuorum periods at most: the first may still count answers from before.
    cluster.ticks(1, 20);
    assert_eq!(cluster.role(1), Role::Follower);
    assert_eq!(cluster.leader_of(1), None);
    assert_eq!(cluster.propose(1, &["x"]), Err(ProposeError::NotLeader { leader: None }));
}

#[test]
fn check_quorum_a_leader_that_hears_a_majority_stays() {
    let mut cluster = Cluster::new(5);
    cluster.elect(1);
    let term = cluster.term(1);
    cluster.isolate(4).isolate(5);
    cluster.run(&[1, 2, 3, 4, 5], 50);
    assert_eq!(cluster.role(1), Role::Leader, "1, 2 and 3 are a majority");
    assert_eq!(cluster.term(1), term);
}

#[test]
fn check_quorum_a_one_way_partition_deposes_a_leader_nobody_hears() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    // The leader's outgoing links fail; it still hears the others, but they stop answering
    // because they no longer hear it.
    cluster.cut(1, 2).cut(1, 3);
    cluster.run_until(&[1, 2, 3], 100, |c| c.leader().is_some_and(|leader| leader != 1));
    cluster.heal();
    cluster.tick(1).settle();
    assert_eq!(cluster.role(1), Role::Follower);
}

#[test]
fn check_quorum_vote_requests_are_ignored_while_a_leader_is_heard() {
    // No PreVote: a replica that times out campaigns at once with a higher term.
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.elect(1);
    let term = cluster.term(1);
    cluster.time_out(3);
    assert_eq!(cluster.term(3), term + 1);
    cluster.deliver_where(filter::kind("RequestVote"));
    // Replica 2 and the leader heard the leader within the election timeout: they ignore it.
    assert_eq!(cluster.term(2), term);
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.term(1), term);
}

#[test]
fn transfer_to_an_up_to_date_follower_hands_over_leadership() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.settle();
    cluster.core_mut(1).transfer_leadership(NodeId(3)).expect("leader");
    cluster.step(1);
    assert!(cluster.wire().iter().any(|m| m.to == NodeId(3) && m.kind_name() == "TimeoutNow"));
    cluster.settle();
    assert_eq!(cluster.role(3), Role::Leader);
    assert_eq!(cluster.leader_of(1), Some(3));
    // Replica 3 campaigned without a pre-vote and the others set their lease aside for it.
    assert!(cluster.sent().iter().any(|m| matches!(
        &m.body,
        MessageBody::RequestVote(request) if request.leadership_transfer && m.from == NodeId(3)
    )));
}

#[test]
fn transfer_waits_for_the_target_to_catch_up() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    cluster.propose(1, &["a", "b"]).expect("leader");
    cluster.deliver();
    cluster.sync(1).sync(2).deliver();
    // Replica 3 holds the entries but has not made them durable, so it has not acknowledged.
    cluster.core_mut(1).transfer_leadership(NodeId(3)).expect("leader");
    cluster.step(1);
    assert!(
        !cluster.wire().iter().any(|m| m.kind_name() == "TimeoutNow"),
        "replica 3 is not known to hold every entry: it would lose the election"
    );
    cluster.sync(3);
    cluster.deliver();
    assert!(cluster.wire().iter().any(|m| m.to == NodeId(3) && m.kind_name() == "TimeoutNow"));
    cluster.set_auto_sync(true).sync_all().settle();
    assert_eq!(cluster.leader(), Some(3));
    assert_eq!(cluster.log_terms(3)[..3], [1, 1, 1]);
}

#[test]
fn transfer_refuses_proposals_and_gives_up_after_an_election_timeout() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.core_mut(1).transfer_leadership(NodeId(3)).expect("leader");
    cluster.step(1);
    assert_eq!(cluster.propose(1, &["x"]), Err(ProposeError::TransferInProgress { to: NodeId(3) }));
    cluster.ticks(1, 10);
    assert_eq!(cluster.core(1).transfer_target(), None);
    assert_eq!(cluster.role(1), Role::Leader, "2 still answers, so 1 still leads");
    assert!(cluster.propose(1, &["x"]).is_ok());
}

#[test]
fn transfer_is_refused_when_it_cannot_work() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let core = cluster.core_mut(1);
    assert_eq!(core.transfer_leadership(NodeId(1)), Err(TransferError::AlreadyLeader));
    assert_eq!(
        core.transfer_leadership(NodeId(9)),
        Err(TransferError::UnknownPeer { to: NodeId(9) })
    );
    core.transfer_leadership(NodeId(2)).expect("leader");
    assert_eq!(core.transfer_leadership(NodeId(3)), Err(TransferError::Busy { to: NodeId(2) }));
    assert_eq!(
        cluster.core_mut(2).transfer_leadership(NodeId(3)),
        Err(TransferError::NotLeader { leader: Some(NodeId(1)) })
    );
    cluster.step(1).settle();
    assert_eq!(cluster.leader(), Some(2));
    assert_eq!(cluster.commit(2), LogIndex(2), "the new leader commits its no-op");
}
