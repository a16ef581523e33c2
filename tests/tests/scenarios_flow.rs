//! Scenario tests of replication flow control (batching, the in-flight window, probing) and of
//! reordered, duplicated and lost messages (paper 5.3: "the leader retries AppendEntries
//! indefinitely"; 5.5: RPCs are idempotent).

use raftwal::raft::{ReplicationState, Role};
use raftwal_tests::scenario::{filter, Cluster};
use raftwal_wire::message::{AppendEntriesResponse, Message, MessageBody};
use raftwal_wire::types::{LogIndex, NodeId};

fn appends_in(messages: &[Message], to: u64) -> Vec<(u64, usize)> {
    messages
        .iter()
        .filter(|m| m.to == NodeId(to))
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries(append) => {
                Some((append.prev_log_index.get(), append.entries.len()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn flow_control_many_proposals_travel_in_one_append() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    // Ten proposals before the replica loop drains the core: one AppendEntries per follower.
    for round in 0..10 {
        cluster
            .core_mut(1)
            .propose([(
                raftwal_wire::types::EntryKind::Normal,
                bytes::Bytes::from(vec![round; 16]),
            )])
            .expect("leader");
    }
    cluster.step(1);
    assert_eq!(appends_in(cluster.wire(), 2), vec![(1, 10)]);
    assert_eq!(appends_in(cluster.wire(), 3), vec![(1, 10)]);
}

#[test]
fn flow_control_the_window_bounds_messages_in_flight() {
    let mut cluster = Cluster::with(3, |config| {
        config.append_entry_count_max = 2;
        config.inflight_message_count_max = 3;
    });
    cluster.elect(1);
    cluster.drop_where(filter::all());
    for batch in 0..10 {
        cluster.propose(1, &[&format!("p{batch}")]).expect("leader");
    }
    assert_eq!(appends_in(cluster.wire(), 2).len(), 3, "three messages fill the window");
    let progress = cluster.core(1).progress(NodeId(2)).expect("leader");
    assert_eq!(progress.state, ReplicationState::Replicate);
    assert_eq!(progress.inflight_message_count, 3);
    // Acknowledgements open the window again and the rest follows.
    cluster.settle();
    assert_eq!(cluster.log_terms(2).len(), 11);
    assert_eq!(cluster.commit(1), LogIndex(11));
}

#[test]
fn flow_control_the_window_bounds_bytes_in_flight() {
    let mut cluster = Cluster::with(3, |config| {
        config.append_size_bytes_max = 1_000;
        config.inflight_size_bytes_max = 2_500;
    });
    cluster.elect(1);
    cluster.drop_where(filter::all());
    let big = "x".repeat(900);
    let payloads: Vec<&str> = (0..8).map(|_| big.as_str()).collect();
    cluster.propose(1, &payloads).expect("leader");
    let sent = appends_in(cluster.wire(), 2);
    assert!(sent.iter().all(|(_, count)| *count == 1), "one 932-byte entry per 1000-byte message");
    assert_eq!(sent.len(), 3, "the third message crosses 2,500 bytes and closes the window");
    let progress = cluster.core(1).progress(NodeId(2)).expect("leader");
    assert!(progress.inflight_size_bytes >= 2_500);
    cluster.settle();
    assert_eq!(cluster.log_terms(2).len(), 9);
}

#[test]
fn flow_control_a_probe_waits_for_its_answer() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.settle();
    // Replica 3 lost an entry; once it refuses, the leader probes it one message at a time.
    cluster.heal();
    cluster.propose(1, &["b"]).expect("leader");
    cluster.deliver_where(filter::to(3));
    cluster.deliver_where(filter::kind_from("AppendEntriesResponse", 3));
    assert_eq!(cluster.core(1).progress(NodeId(3)).map(|p| p.state), Some(ReplicationState::Probe));
    assert_eq!(appends_in(cluster.wire(), 3).len(), 1, "a single probe");
    cluster.propose(1, &["c", "d"]).expect("leader");
    assert_eq!(appends_in(cluster.wire(), 3).len(), 1, "no second message before the answer");
    cluster.settle();
    assert_eq!(
        cluster.core(1).progress(NodeId(3)).map(|p| p.state),
        Some(ReplicationState::Replicate)
    );
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
}

#[test]
fn flow_control_a_lost_append_is_sent_again_after_the_pipeline_stalls() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.drop_where(filter::kind_to("AppendEntries", 3));
    cluster.settle();
    assert_eq!(cluster.log_terms(3).len(), 1, "the only message for 3 was lost");
    // No later message reveals the gap; an election timeout without acknowledgement does.
    cluster.run_until(&[1], 30, |c| c.log_terms(3).len() == 2);
    assert_eq!(cluster.role(1), Role::Leader);
}

#[test]
fn flow_control_old_entries_are_read_back_through_the_log_source() {
    // A tiny cache: entries that are durable leave memory, and a follower that falls behind is
    // served from the store through the LogSource seam.
    let mut cluster = Cluster::with(3, |config| config.entry_cache_size_bytes_max = 1);
    cluster.elect(1);
    cluster.isolate(3);
    for batch in 0..5 {
        cluster.propose(1, &[&format!("entry {batch}")]).expect("leader");
        cluster.settle();
    }
    assert!(cluster.core(1).cached_size_bytes() < 100, "durable entries were evicted");
    cluster.heal();
    cluster.run_until(&[1], 30, |c| c.log_terms(3) == c.log_terms(1));
    assert_eq!(cluster.core(1).log_read_failures(), 0);
}

#[test]
fn reordered_appends_that_arrive_out_of_order_are_safe() {
    let mut cluster = Cluster::with(3, |config| config.append_entry_count_max = 1);
    cluster.elect(1);
    cluster.drop_where(filter::all());
    cluster.propose(1, &["a", "b", "c"]).expect("leader");
    let mut to_two = cluster.take(filter::kind_to("AppendEntries", 2));
    assert_eq!(to_two.len(), 3);
    to_two.reverse();
    cluster.inject(to_two);
    cluster.deliver_where(filter::to(2));
    // Entries 3 and 4 arrived before 2: refused, nothing appended out of order.
    assert_eq!(cluster.log_terms(2), vec![1, 1]);
    cluster.settle();
    cluster.run_until(&[1], 30, |c| c.log_terms(2) == c.log_terms(1));
}

#[test]
fn reordered_a_stale_acknowledgement_is_harmless() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.deliver_where(filter::kind("AppendEntries"));
    let early = cluster.take(filter::kind_from("AppendEntriesResponse", 2));
    cluster.settle();
    cluster.propose(1, &["b"]).expect("leader");
    cluster.settle();
    let before = cluster.core(1).progress(NodeId(2)).expect("leader");
    assert_eq!(before.match_index, LogIndex(3));
    // The old acknowledgement (match 2) arrives late: the match index never goes back.
    cluster.inject(early).settle();
    let after = cluster.core(1).progress(NodeId(2)).expect("leader");
    assert_eq!(after.match_index, LogIndex(3));
    assert_eq!(after.state, ReplicationState::Replicate);
}

#[test]
fn reordered_a_stale_refusal_does_not_disturb_the_pipeline() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.settle();
    cluster.heal();
    cluster.propose(1, &["b"]).expect("leader");
    cluster.deliver_where(filter::to(3));
    let refusal = cluster.take(filter::kind_from("AppendEntriesResponse", 3));
    assert!(matches!(
        refusal.as_slice(),
        [Message {
            body: MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject { .. }),
            ..
        }]
    ));
    // Replica 3 catches up by the stall path, then the old refusal arrives.
    cluster.run_until(&[1], 30, |c| c.log_terms(3) == c.log_terms(1));
    let before = cluster.core(1).progress(NodeId(3)).expect("leader");
    cluster.inject(refusal).settle();
    let after = cluster.core(1).progress(NodeId(3)).expect("leader");
    assert_eq!(
        after.state,
        ReplicationState::Replicate,
        "a refusal older than the match is ignored"
    );
    assert_eq!(after.match_index, before.match_index);
}

#[test]
fn duplicated_messages_are_harmless() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    for round in 0..5 {
        cluster.propose(1, &[&format!("p{round}")]).expect("leader");
        let copies: Vec<Message> = cluster.wire().to_vec();
        cluster.inject(copies);
        cluster.settle();
        let copies: Vec<Message> = cluster.sent().iter().rev().take(4).cloned().collect();
        cluster.inject(copies).settle();
    }
    cluster.tick(1).settle();
    for node in 1..=3 {
        assert_eq!(cluster.log_terms(node), vec![1; 6]);
        assert_eq!(cluster.commit(node), LogIndex(6));
    }
}

#[test]
fn reordered_a_vote_answer_from_an_old_term_is_ignored() {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.time_out(1);
    cluster.deliver();
    let old_answers = cluster.take(filter::kind("RequestVoteResponse"));
    // Replica 1 times out again and campaigns in a later term; the old grants arrive now.
    cluster.drop_where(filter::all());
    while cluster.term(1) < 2 {
        cluster.tick(1);
    }
    assert_eq!(cluster.role(1), Role::Candidate);
    cluster.drop_where(filter::all());
    cluster.inject(old_answers).settle();
    assert_eq!(cluster.role(1), Role::Candidate, "grants for term 1 do not elect in term 2");
}
