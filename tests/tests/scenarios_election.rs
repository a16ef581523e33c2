//! Scenario tests of terms and leader election (Raft paper 5.1 and 5.2; 5.4.1 for the
//! election restriction). Each test name starts with the section it checks.

use raftwal::raft::{ProposeError, Role};
use raftwal_tests::scenario::{filter, Cluster};
use raftwal_wire::message::{MessageBody, RequestVote};
use raftwal_wire::types::{LogIndex, NodeId, Term};

fn vote_request(
    from: u64,
    to: u64,
    term: u64,
    last_index: u64,
    last_term: u64,
) -> raftwal_wire::message::Message {
    raftwal_wire::message::Message {
        log: raftwal_tests::scenario::SCENARIO_LOG,
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(last_index),
            last_log_term: Term(last_term),
            leadership_transfer: false,
        }),
    }
}

#[test]
fn s5_1_a_stale_leader_learns_the_new_term_and_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let old_term = cluster.term(1);
    cluster.isolate(1);
    cluster.run_until(&[2, 3], 100, |c| c.leader().is_some_and(|leader| leader != 1));
    let new_leader = cluster.leader().expect("a new leader");
    assert!(cluster.term(new_leader) > old_term);
    assert_eq!(cluster.role(1), Role::Leader, "the isolated leader does not know yet");
    cluster.heal();
    // The old leader's next heartbeat reaches a replica of the newer term, whose answer carries
    // that term; the old leader steps down.
    cluster.tick(1).settle();
    assert_eq!(cluster.role(1), Role::Follower);
    assert_eq!(cluster.term(1), cluster.term(new_leader));
}

#[test]
fn s5_1_a_message_from_an_older_term_changes_nothing() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.term(2);
    cluster.inject([vote_request(3, 2, term - 1, 100, term - 1)]).settle();
    assert_eq!(cluster.term(2), term);
    assert_eq!(cluster.core(2).vote(), Some(NodeId(1)));
    assert_eq!(cluster.leader_of(2), Some(1));
}

#[test]
fn s5_1_a_candidate_that_sees_a_higher_term_becomes_follower() {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.time_out(2);
    assert_eq!(cluster.role(2), Role::Candidate);
    let term = cluster.term(2);
    cluster.drop_where(filter::all());
    cluster.inject([vote_request(3, 2, term + 5, 0, 0)]).deliver();
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.term(2), term + 5);
}

#[test]
fn s5_2_a_follower_that_hears_nothing_times_out_and_wins() {
    let mut cluster = Cluster::new(3);
    assert_eq!(cluster.role(1), Role::Follower);
    cluster.elect(1);
    assert_eq!(cluster.term(1), 1);
    for node in [2, 3] {
        assert_eq!(cluster.role(node), Role::Follower);
        assert_eq!(cluster.leader_of(node), Some(1));
        assert_eq!(cluster.term(node), 1);
    }
}

#[test]
fn s5_2_five_replicas_elect_one_leader() {
    let mut cluster = Cluster::new(5);
    cluster.elect(4);
    for node in 1..=5 {
        assert_eq!(cluster.leader_of(node), Some(4));
    }
    let leaders = (1..=5).filter(|node| cluster.role(*node) == Role::Leader).count();
    assert_eq!(leaders, 1);
}

#[test]
fn s5_2_a_single_replica_elects_itself_and_commits_alone() {
    let mut cluster = Cluster::new(1);
    cluster.time_out(1);
    assert_eq!(cluster.role(1), Role::Leader);
    let proposed = cluster.propose(1, &["solo"]).expect("leader");
    assert_eq!(cluster.commit(1), proposed.last_index);
}

#[test]
fn s5_2_a_replica_grants_at_most_one_vote_per_term() {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.time_out(1);
    let term = cluster.term(1);
    // Replica 3 hears replica 1's request first and grants it.
    cluster.deliver_where(filter::kind_to("RequestVote", 3));
    assert_eq!(cluster.core(3).vote(), Some(NodeId(1)));
    // A competing candidate in the same term is refused.
    cluster.inject([vote_request(2, 3, term, 10, term)]).deliver_where(filter::to(3));
    let answers: Vec<_> = cluster
        .wire()
        .iter()
        .filter(|m| m.from == NodeId(3) && m.to == NodeId(2))
        .map(|m| m.body.clone())
        .collect();
    assert!(matches!(
        answers.as_slice(),
        [MessageBody::RequestVoteResponse(response)] if !response.granted
    ));
    assert_eq!(cluster.core(3).vote(), Some(NodeId(1)));
}

#[test]
fn s5_2_a_vote_leaves_only_after_it_is_durable() {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.set_auto_sync(false);
    cluster.time_out(1);
    // The candidate's own requests wait for its vote for itself to be durable.
    assert!(cluster.wire().is_empty());
    cluster.sync(1);
    assert_eq!(cluster.wire().len(), 2);
    cluster.deliver_where(filter::to(2));
    assert_eq!(cluster.core(2).vote(), Some(NodeId(1)));
    assert!(cluster.wire().iter().all(|m| m.from != NodeId(2)), "the grant waits for the fsync");
    assert_eq!(cluster.store(2).durable().hard_state().vote, None);
    cluster.sync(2);
    assert_eq!(cluster.store(2).durable().hard_state().vote, Some(NodeId(1)));
    assert!(cluster
        .wire()
        .iter()
        .any(|m| m.from == NodeId(2) && m.kind_name() == "RequestVoteResponse"));
}

#[test]
fn s5_2_a_candidate_accepts_a_leader_of_its_own_term() {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.time_out(1);
    cluster.time_out(2);
    let term = cluster.term(1);
    assert_eq!(cluster.term(2), term, "both campaign in the same term");
    // Replica 3 votes for 1, which wins; 2 hears 1's AppendEntries and follows.
    cluster.drop_where(filter::from(2));
    cluster.settle();
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.leader_of(2), Some(1));
    assert_eq!(cluster.term(2), term);
}

#[test]
fn s5_2_a_split_vote_is_resolved_by_randomized_timeouts() {
    let mut cluster = Cluster::with(4, |config| config.pre_vote = false);
    // Two candidates in the same term, each voted for by one other replica: nobody wins.
    cluster.time_out(1).time_out(2);
    cluster.deliver_where(|m| m.from == NodeId(1) && m.to == NodeId(3));
    cluster.deliver_where(|m| m.from == NodeId(2) && m.to == NodeId(4));
    cluster.drop_where(filter::kind("RequestVote"));
    cluster.settle();
    assert!(cluster.leader().is_none(), "a split vote elects nobody");
    // Time goes on; the randomized timeouts break the tie.
    cluster.run_until(&[1, 2, 3, 4], 200, |c| c.leader().is_some());
    let leaders = (1..=4).filter(|node| cluster.role(*node) == Role::Leader).count();
    assert_eq!(leaders, 1);
}

#[test]
fn s5_2_election_timeouts_are_random_but_fixed_by_the_seed() {
    let timeout_after = |seed: u64| {
        let mut cluster = Cluster::with(3, |config| config.timeout_seed = seed);
        let mut ticks = 0;
        while cluster.role(1) == Role::Follower {
            cluster.tick(1);
            ticks += 1;
        }
        ticks
    };
    let spread: std::collections::BTreeSet<u32> = (0..40).map(timeout_after).collect();
    assert!(spread.len() > 3, "timeouts vary with the seed: {spread:?}");
    assert!(spread.iter().all(|ticks| (10..20).contains(ticks)), "within [T, 2T): {spread:?}");
    assert_eq!(timeout_after(7), timeout_after(7), "the same seed, the same timeout");
}

#[test]
fn s5_2_a_candidate_refused_by_a_majority_returns_to_follower() {
    // Replica 3's log is behind: with the election restriction it cannot win.
    let mut cluster =
        Cluster::with_logs(&[vec![1, 1], vec![1, 1], vec![1]], |config| config.pre_vote = false);
    cluster.time_out(3).settle();
    assert_eq!(cluster.role(3), Role::Follower);
    assert_eq!(cluster.leader(), None);
}

#[test]
fn s5_2_a_proposal_to_a_follower_names_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(2);
    assert_eq!(
        cluster.propose(3, &["x"]),
        Err(ProposeError::NotLeader { leader: Some(NodeId(2)) })
    );
    let mut fresh = Cluster::new(3);
    assert_eq!(fresh.propose(1, &["x"]), Err(ProposeError::NotLeader { leader: None }));
}

#[test]
fn s5_4_1_a_vote_is_refused_to_a_log_with_an_older_last_term() {
    let mut cluster = Cluster::with_logs(&[vec![1, 1, 1, 1], vec![1, 2], vec![1, 2]], |config| {
        config.pre_vote = false
    });
    // Replica 1 has the longer log, but its last term (1) is older than 2's and 3's (2).
    cluster.time_out(1).settle();
    assert_ne!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.core(2).vote(), None);
    assert_eq!(cluster.core(3).vote(), None);
}

#[test]
fn s5_4_1_a_vote_is_refused_to_a_shorter_log_of_the_same_last_term() {
    let mut cluster = Cluster::with_logs(&[vec![1, 2], vec![1, 2, 2], vec![1, 2, 2]], |config| {
        config.pre_vote = false
    });
    cluster.time_out(1).settle();
    assert_ne!(cluster.role(1), Role::Leader);
    // The up-to-date replicas can win.
    cluster.run_until(&[2, 3], 100, |c| c.leader().is_some_and(|leader| leader != 1));
    let leader = cluster.leader().expect("a leader");
    assert_eq!(cluster.log_terms(leader)[..3], [1, 2, 2]);
}

#[test]
fn s5_4_1_a_replica_that_missed_commits_cannot_become_leader() {
    // Without PreVote and CheckQuorum nothing shields the others from the stale candidate's
    // requests: only the election restriction stops it.
    let mut cluster = Cluster::with(3, |config| {
        config.pre_vote = false;
        config.check_quorum = false;
    });
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a", "b", "c"]).expect("leader");
    cluster.settle().tick(1).settle();
    assert_eq!(cluster.commit(1), LogIndex(4));
    cluster.heal();
    cluster.drop_where(filter::all());
    let stale_term = cluster.term(3);
    cluster.time_out(3);
    assert_eq!(cluster.role(3), Role::Candidate);
    cluster.settle();
    // Both up-to-date replicas moved to the candidate's term, and both refused it.
    assert_ne!(cluster.role(3), Role::Leader);
    for node in [1, 2] {
        assert_eq!(cluster.term(node), stale_term + 1);
        assert_eq!(cluster.core(node).vote(), None);
    }
    let refusals = cluster
        .sent()
        .iter()
        .filter(|m| m.to == NodeId(3) && m.kind_name() == "RequestVoteResponse")
        .filter(|m| matches!(&m.body, MessageBody::RequestVoteResponse(r) if !r.granted))
        .count();
    assert_eq!(refusals, 2);
}
