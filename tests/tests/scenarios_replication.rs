//! Scenario tests of log replication and commitment (Raft paper 5.3, 5.4.2, Figures 7 and 8;
//! Ongaro's thesis 10.2.1 for the leader's parallel disk write). Each test name starts with the
//! section it checks.

use bytes::Bytes;
use raftwal::raft::{ReplicationState, Role, StepError};
use raftwal_tests::scenario::{filter, Cluster, SCENARIO_LOG};
use raftwal_wire::message::{AppendEntries, AppendEntriesResponse, Message, MessageBody};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, NodeId, Term};

/// The heartbeats `leader` sent among `messages`: (to, commit index told, read context).
fn heartbeats_from(messages: &[Message], leader: u64) -> Vec<(NodeId, LogIndex, Option<u64>)> {
    messages
        .iter()
        .filter(|m| m.from == NodeId(leader))
        .filter_map(|m| match &m.body {
            MessageBody::Heartbeat(hb) => Some((m.to, hb.leader_commit, hb.read_context)),
            _ => None,
        })
        .collect()
}

fn rejections_to(cluster: &Cluster, leader: u64, follower: u64) -> usize {
    cluster
        .sent()
        .iter()
        .filter(|m| m.from == NodeId(follower) && m.to == NodeId(leader))
        .filter(|m| {
            matches!(
                m.body,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject { .. })
            )
        })
        .count()
}

#[test]
fn s5_3_the_leader_replicates_and_every_replica_commits() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let proposed = cluster.propose(1, &["a", "b", "c"]).expect("leader");
    cluster.settle();
    assert_eq!(cluster.commit(1), proposed.last_index);
    // Followers learn the commit index without waiting for another proposal or a heartbeat
    // tick: the leader tells a follower with nothing in flight at once.
    for node in 1..=3 {
        assert_eq!(cluster.log_terms(node), vec![1, 1, 1, 1]);
        assert_eq!(cluster.commit(node), proposed.last_index);
    }
    assert_eq!(cluster.acknowledged().len(), 1, "the client's batch is acknowledged once");
}

#[test]
fn s5_3_a_follower_missing_the_previous_entry_refuses_and_the_leader_backs_up() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a", "b"]).expect("leader");
    cluster.settle();
    cluster.heal();
    cluster.propose(1, &["c"]).expect("leader");
    // The pipelined AppendEntries for "c" reaches 3, which lacks "a" and "b": it refuses.
    cluster.settle();
    assert!(rejections_to(&cluster, 1, 3) >= 1);
    cluster.tick(1).settle();
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
    assert_eq!(cluster.commit(3), cluster.commit(1));
}

#[test]
fn s5_3_a_conflicting_uncommitted_suffix_is_overwritten() {
    // Replica 3 holds entries of term 2 that never reached a majority.
    let mut cluster =
        Cluster::with_logs_in_term(&[vec![1, 1], vec![1, 1], vec![1, 2, 2, 2]], 2, |_| {});
    cluster.elect(1);
    cluster.tick(1).settle();
    assert_eq!(cluster.log_terms(3), vec![1, 1, 3]);
    assert_eq!(cluster.durable_log_terms(3), vec![1, 1, 3]);
    assert_eq!(cluster.commit(3), LogIndex(3));
}

#[test]
fn s5_3_a_duplicated_older_append_never_truncates() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.propose(1, &["a"]).expect("leader");
    let first = cluster.take(filter::kind_to("AppendEntries", 2));
    cluster.inject(first.clone()).settle();
    cluster.propose(1, &["b", "c"]).expect("leader");
    cluster.settle();
    assert_eq!(cluster.log_terms(2), vec![1, 1, 1, 1]);
    // The first AppendEntries arrives again, late: it matches a prefix, so nothing is cut.
    cluster.inject(first).settle();
    assert_eq!(cluster.log_terms(2), vec![1, 1, 1, 1]);
}

#[test]
fn s5_3_fast_backtracking_skips_a_whole_term_per_round_trip() {
    let mut leader_log = vec![1, 1];
    leader_log.extend(std::iter::repeat_n(4, 40));
    let mut stale_log = vec![1, 1];
    stale_log.extend(std::iter::repeat_n(2, 30));
    stale_log.extend(std::iter::repeat_n(3, 30));
    let mut cluster =
        Cluster::with_logs_in_term(&[leader_log.clone(), leader_log, stale_log], 4, |_| {});
    cluster.elect(1);
    cluster.tick(1).settle();
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
    // One entry per round trip would take 60 refusals; a term per round trip takes one or two.
    let refusals = rejections_to(&cluster, 1, 3);
    assert!((1..=2).contains(&refusals), "{refusals} refusals");
}

#[test]
fn s5_3_a_follower_acknowledges_only_durable_entries() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.deliver_where(filter::kind_to("AppendEntries", 2));
    assert_eq!(cluster.core(2).last_index(), LogIndex(2), "appended in memory");
    assert!(
        cluster.wire().iter().all(|m| m.from != NodeId(2)),
        "no acknowledgement before the follower's fsync"
    );
    cluster.sync(2);
    let acks: Vec<_> = cluster.take(filter::kind_from("AppendEntriesResponse", 2));
    assert!(matches!(
        acks.as_slice(),
        [Message {
            body: MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                match_index: LogIndex(2)
            }),
            ..
        }]
    ));
}

#[test]
fn thesis_10_2_1_the_leader_sends_appends_before_its_own_write_completes() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    cluster.propose(1, &["a"]).expect("leader");
    assert_eq!(cluster.store(1).durable().last_index(), LogIndex(1), "the leader's write waits");
    assert_eq!(
        cluster.wire().iter().filter(|m| m.kind_name() == "AppendEntries").count(),
        2,
        "the AppendEntries left already"
    );
}

#[test]
fn thesis_10_2_1_the_leader_counts_its_own_copy_only_after_its_fsync() {
    let mut cluster = Cluster::new(5);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    let proposed = cluster.propose(1, &["a"]).expect("leader");
    // Two followers make it durable; the leader's own disk is slow.
    cluster.deliver_where(|m| m.to == NodeId(2) || m.to == NodeId(3));
    cluster.sync(2).sync(3);
    cluster.deliver_where(filter::to(1));
    assert!(cluster.commit(1) < proposed.last_index, "2 of 5 durable is not a majority");
    cluster.sync(1);
    assert_eq!(cluster.commit(1), proposed.last_index, "its own fsync completes the majority");
}

#[test]
fn thesis_10_2_1_followers_alone_can_form_the_majority() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    let proposed = cluster.propose(1, &["a"]).expect("leader");
    cluster.deliver_where(filter::kind("AppendEntries"));
    cluster.sync(2).sync(3);
    cluster.deliver_where(filter::to(1));
    assert_eq!(cluster.store(1).durable().last_index(), LogIndex(1), "the leader has not synced");
    assert_eq!(cluster.commit(1), proposed.last_index, "two followers are a majority of three");
}

#[test]
fn s5_3_heartbeats_carry_the_commit_index_capped_at_each_follower_match() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a", "b"]).expect("leader");
    cluster.settle();
    cluster.heal();
    cluster.drop_where(filter::all());
    cluster.tick(1);
    let heartbeats = cluster.take(filter::kind("Heartbeat"));
    let commit_for = |node: u64| {
        heartbeats.iter().find(|m| m.to == NodeId(node)).map(|m| match &m.body {
            MessageBody::Heartbeat(heartbeat) => heartbeat.leader_commit,
            _ => unreachable!("filtered heartbeats"),
        })
    };
    assert_eq!(commit_for(2), Some(LogIndex(3)));
    assert_eq!(commit_for(3), Some(LogIndex(1)), "3 is only known to hold the first entry");
}

#[test]
fn s5_3_an_idle_follower_hears_of_a_new_commit_at_once_and_only_up_to_its_match() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.settle();
    // Replica 3 misses the entry; replica 2 acknowledges it, which commits it.
    cluster.cut(1, 3);
    cluster.propose(1, &["a"]).expect("leader");
    cluster.settle();
    assert_eq!(cluster.commit(1), LogIndex(2));
    // No tick passed: the commit reached 2 by a heartbeat the commit itself caused, with no
    // read context (read-index rounds stay with the scheduled broadcasts).
    let told = heartbeats_from(cluster.sent(), 1);
    assert!(told.contains(&(NodeId(2), LogIndex(2), None)), "{told:?}");
    assert_eq!(cluster.commit(2), LogIndex(2));
    // Replica 3 has the AppendEntries for "a" in flight (lost): it is told nothing beyond what
    // it is known to hold.
    assert!(told.iter().all(|&(to, commit, _)| to != NodeId(3) || commit <= LogIndex(1)));
    assert_eq!(cluster.commit(3), LogIndex(1));
}

#[test]
fn s5_3_a_pipelining_follower_hears_of_a_new_commit_at_once_too() {
    // One entry per AppendEntries, so replica 2 has two in flight at once.
    let mut cluster = Cluster::with(3, |config| config.append_entry_count_max = 1);
    cluster.elect(1);
    cluster.settle();
    cluster.cut(1, 3);
    cluster.propose(1, &["a", "b"]).expect("leader");
    let appends = cluster.deliver_where(filter::kind_to("AppendEntries", 2));
    assert_eq!(appends, 2, "two AppendEntries in flight to replica 2");
    // Replica 2 acknowledged both; the leader hears only the first, which commits "a" while
    // "b" is still in flight to replica 2.
    let mut answers = cluster.take(filter::from(2));
    assert_eq!(answers.len(), 2, "{answers:?}");
    let second = answers.pop().expect("two answers");
    let before = cluster.sent().len();
    cluster.inject(answers);
    cluster.deliver_where(filter::from(2));
    assert_eq!(cluster.commit(1), LogIndex(2));
    // Replica 2 is told at once, not only with the leader's next AppendEntries: under load a
    // follower always has some in flight, and its subscribers would trail by a client's round
    // trip and more.
    let told = heartbeats_from(&cluster.sent()[before..], 1);
    assert_eq!(told, vec![(NodeId(2), LogIndex(2), None)]);
    cluster.deliver_where(filter::kind_to("Heartbeat", 2));
    assert_eq!(cluster.commit(2), LogIndex(2));
    // The second answer then commits "b", and replica 2 hears of it the same way.
    cluster.inject([second]);
    cluster.settle();
    assert_eq!(cluster.commit(1), LogIndex(3));
    assert_eq!(cluster.commit(2), LogIndex(3));
}

#[test]
fn s5_3_a_follower_commits_no_further_than_the_entries_it_received() {
    let mut cluster = Cluster::with(3, |config| config.append_entry_count_max = 1);
    cluster.elect(1);
    cluster.isolate(3);
    cluster.propose(1, &["a", "b", "c"]).expect("leader");
    cluster.settle();
    assert_eq!(cluster.commit(1), LogIndex(4));
    cluster.heal();
    cluster.drop_where(filter::all());
    // Replica 3 catches up one entry per message, each carrying the leader's commit index 4:
    // it may only commit what it received.
    for _ in 0..60 {
        cluster.tick(1);
        cluster.deliver();
        let last = cluster.core(3).last_index();
        assert!(cluster.commit(3) <= last, "commit {:?} beyond {last:?}", cluster.commit(3));
        if last == LogIndex(2) {
            assert_eq!(cluster.commit(3), LogIndex(2));
            return;
        }
    }
    panic!("replica 3 never caught up");
}

#[test]
fn s5_4_2_a_new_leader_appends_a_noop_of_its_term() {
    let mut cluster = Cluster::new(3);
    cluster.elect(2);
    assert_eq!(cluster.log_terms(2), vec![1]);
    assert_eq!(cluster.commit(2), LogIndex(1), "the no-op commits");
}

#[test]
fn s5_4_2_entries_of_an_earlier_term_commit_only_with_one_of_the_current_term() {
    // All three hold two entries of term 1 that were never known committed.
    let mut cluster = Cluster::with_logs(&[vec![1, 1], vec![1, 1], vec![1, 1]], |_| {});
    cluster.time_out(1).deliver();
    cluster.deliver();
    cluster.deliver();
    cluster.deliver();
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.term(1), 2);
    // The followers confirm they hold both term-1 entries (an empty probe at index 2)...
    let probes = cluster.take(filter::kind("AppendEntries"));
    let empty: Vec<Message> = probes
        .iter()
        .cloned()
        .map(|mut m| {
            if let MessageBody::AppendEntries(append) = &mut m.body {
                append.entries.clear();
            }
            m
        })
        .collect();
    cluster.inject(empty);
    cluster.deliver();
    cluster.deliver();
    assert_eq!(cluster.core(1).progress(NodeId(2)).map(|p| p.match_index), Some(LogIndex(2)));
    assert_eq!(cluster.commit(1), LogIndex(0), "a majority of term-1 entries is not counted");
    // ...and once the leader's term-2 no-op is on a majority, everything up to it commits.
    cluster.inject(probes).settle();
    assert_eq!(cluster.commit(1), LogIndex(3));
}

#[test]
fn figure_7_a_new_leader_brings_every_follower_log_in_line() {
    let logs = vec![
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6],       // the leader
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6],          // (a)
        vec![1, 1, 1, 4],                         // (b)
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],    // (c)
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d)
        vec![1, 1, 1, 4, 4, 4, 4],                // (e)
        vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],    // (f)
    ];
    let mut cluster = Cluster::with_logs_in_term(&logs, 7, |_| {});
    cluster.elect(1);
    assert_eq!(cluster.term(1), 8);
    cluster.tick(1).settle();
    let expected = vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8];
    for node in 1..=7 {
        assert_eq!(cluster.log_terms(node), expected, "replica {node}");
        assert_eq!(cluster.commit(node), LogIndex(11));
    }
    for follower in 2..=7 {
        assert!(rejections_to(&cluster, 1, follower) <= 1, "at most one refusal per follower");
    }
}

#[test]
fn figure_8_an_old_term_entry_on_a_majority_is_not_committed() {
    // Figure 8 (c): S1 leads term 4 with its term-2 entry at index 2; S5 holds a term-3 entry
    // there. One entry per AppendEntries lets S1 place index 2 on a majority before index 3.
    let logs = vec![vec![1, 2], vec![1, 2], vec![1], vec![1], vec![1, 3]];
    // Without CheckQuorum's lease the followers of S1 will hear S5 out once S1 is gone.
    let mut cluster = Cluster::with_logs_in_term(&logs, 3, |config| {
        config.append_entry_count_max = 1;
        config.check_quorum = false;
    });
    cluster.time_out(1).deliver(); // pre-votes
    cluster.deliver(); // pre-vote answers; S1 campaigns
    cluster.drop_where(filter::to(5));
    cluster.deliver(); // votes
    cluster.deliver(); // answers: S1 leads term 4
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.term(1), 4);
    // S1's first probes (previous entry 2, carrying its no-op at 3): S3 and S4 lack index 2
    // and refuse; S2 would take the no-op, so its probe is lost.
    cluster.drop_where(|m| m.to == NodeId(2) || m.to == NodeId(5));
    cluster.deliver_where(|m| m.to == NodeId(3) || m.to == NodeId(4));
    cluster.deliver_where(filter::to(1));
    // S1 backs up and sends index 2 alone (one entry per message); only S3 gets it.
    cluster.deliver_where(filter::kind_to("AppendEntries", 3));
    cluster.drop_where(filter::kind("AppendEntries"));
    cluster.deliver_where(filter::to(1));
    // S3's acknowledgement puts index 2 on a majority; S1 now sends its no-op: lost.
    cluster.drop_where(filter::kind("AppendEntries"));
    let holders = [1, 2, 3].iter().filter(|n| cluster.log_terms(**n).get(1) == Some(&2)).count();
    assert_eq!(holders, 3, "index 2 of term 2 is on a majority");
    assert_eq!(cluster.commit(1), LogIndex(0), "but it is not committed (paper 5.4.2)");
    // Figure 8 (d): S1 crashes; S5 wins with S2, S3, S4 and overwrites index 2. Time passes at
    // every survivor (a voter refuses pre-votes for an election timeout after its vote for S1);
    // the links among S2, S3 and S4 are cut so that none of them can win instead.
    cluster.crash(1);
    cluster.drop_where(filter::all());
    for (from, to) in [(2, 3), (2, 4), (3, 2), (3, 4), (4, 2), (4, 3)] {
        cluster.cut(from, to);
    }
    cluster.run_until(&[2, 3, 4, 5], 100, |c| c.leader() == Some(5));
    cluster.heal();
    cluster.tick(5).settle();
    for node in 2..=5 {
        assert_eq!(cluster.log_terms(node)[1], 3, "index 2 now holds S5's term-3 entry");
    }
}

#[test]
fn figure_8_once_an_entry_of_the_current_term_commits_the_old_one_is_safe() {
    // Figure 8 (e): S1 places its term-4 entry on a majority before crashing: index 2 and 3
    // commit, and S5 can no longer win.
    let logs = vec![vec![1, 2], vec![1, 2], vec![1], vec![1], vec![1, 3]];
    let mut cluster = Cluster::with_logs_in_term(&logs, 3, |_| {});
    cluster.isolate(5);
    cluster.elect(1);
    assert_eq!(cluster.commit(1), LogIndex(3));
    cluster.crash(1).heal();
    cluster.run_until(&[2, 3, 4, 5], 300, |c| c.leader().is_some());
    assert_ne!(cluster.leader(), Some(5));
    let leader = cluster.leader().expect("a leader");
    assert_eq!(cluster.log_terms(leader)[..3], [1, 2, 4]);
}

#[test]
fn durability_a_late_report_for_overwritten_entries_is_ignored() {
    let mut cluster = Cluster::with_logs_in_term(&[vec![1], vec![1], vec![1, 1, 1]], 1, |_| {});
    // Replica 3's entries 2 and 3 (term 1) are durable; a leader of term 2 overwrites them.
    cluster.elect(1);
    assert_eq!(cluster.log_terms(3), vec![1, 2]);
    let durable = cluster.core(3).durable_index();
    // The storage's report for the old entry 3 arrives late: the core ignores it.
    cluster.core_mut(3).persisted(LogIndex(3), Term(1));
    cluster.step(3);
    assert_eq!(cluster.core(3).durable_index(), durable);
    // A report for an entry the core does not have in that term is ignored too.
    cluster.core_mut(3).persisted(LogIndex(2), Term(1));
    assert_eq!(cluster.core(3).durable_index(), durable);
}

#[test]
fn durability_a_restart_keeps_exactly_what_was_durable() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.set_auto_sync(false);
    cluster.propose(1, &["a", "b"]).expect("leader");
    cluster.deliver_where(filter::to(2));
    assert_eq!(cluster.core(2).last_index(), LogIndex(3));
    cluster.crash(2).restart(2);
    assert_eq!(cluster.core(2).last_index(), LogIndex(1), "the unsynced entries are gone");
    assert_eq!(cluster.core(2).term(), Term(1));
    assert_eq!(cluster.core(2).vote(), Some(NodeId(1)), "the vote was durable");
    // The AppendEntries it lost in the crash is never acknowledged: after an election timeout
    // of silence the leader falls back to probing and sends the entries again.
    cluster.set_auto_sync(true).sync_all();
    cluster.run_until(&[1], 30, |c| c.log_terms(2).len() == 3);
    assert_eq!(cluster.log_terms(2), vec![1, 1, 1], "the leader brings it back");
}

#[test]
fn s5_3_a_malformed_append_is_refused_without_change() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let before = cluster.log_terms(2);
    let entry = |index: u64| Entry {
        index: LogIndex(index),
        term: Term(1),
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"x"),
    };
    let append = |entries: Vec<Entry>| Message {
        log: SCENARIO_LOG,
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(1),
            prev_log_term: Term(1),
            leader_commit: LogIndex(1),
            entries,
        }),
    };
    let holes = cluster.core_mut(2).step(append(vec![entry(2), entry(4)]));
    assert!(matches!(holes, Err(StepError::Malformed { .. })));
    let mut wrong_log = append(vec![entry(2)]);
    wrong_log.log = raftwal_wire::types::LogId(99);
    assert!(matches!(cluster.core_mut(2).step(wrong_log), Err(StepError::WrongLog { .. })));
    let mut stranger = append(vec![entry(2)]);
    stranger.from = NodeId(9);
    assert!(matches!(cluster.core_mut(2).step(stranger), Err(StepError::UnknownSender { .. })));
    cluster.step(2);
    assert_eq!(cluster.log_terms(2), before);
    assert_eq!(
        cluster.core(1).progress(NodeId(2)).map(|p| p.state),
        Some(ReplicationState::Replicate)
    );
}

#[test]
fn durability_a_torn_write_never_leaves_a_commit_index_beyond_durable_entries() {
    // Found by the simulator (seed 7690): replica 3 holds stale term-1 entries 2..4; the leader
    // of term 2 overwrites index 2 and tells it the commit index covers index 2. The replica's
    // write holds the hard state first, then the entries; it crashes with only the hard state
    // on disk. The persisted commit index must not claim the stale entry at 2 committed.
    let mut cluster =
        Cluster::with_logs_in_term(&[vec![1], vec![1], vec![1, 1, 1, 1]], 1, |config| {
            config.append_entry_count_max = 1;
        });
    cluster.isolate(3);
    cluster.elect(1);
    cluster.heal();
    cluster.drop_where(filter::all());
    cluster.set_auto_sync(false);
    // Bring replica 3 to the point where the leader's entry 2 (term 2) reaches it with commit 2.
    for _ in 0..60 {
        cluster.tick(1);
        cluster.sync(1).sync(2);
        cluster.deliver_where(|m| {
            m.to != NodeId(3) || m.kind_name() != "AppendEntries" || {
                matches!(&m.body, MessageBody::AppendEntries(a) if a.prev_log_index < LogIndex(2))
            }
        });
        if cluster.core(3).term_at(LogIndex(2)) == Some(Term(2)) {
            break;
        }
        cluster.sync(3);
    }
    assert_eq!(cluster.core(3).term_at(LogIndex(2)), Some(Term(2)));
    assert_eq!(cluster.commit(3), LogIndex(2));
    // The writer starts: the hard state is saved (durable) before the entry, whose batch waits
    // on the disk; the replica crashes with the hard state on disk and not the entry.
    cluster.begin_sync(3);
    assert_eq!(cluster.store(3).durable().hard_state().term, Term(2));
    assert_eq!(cluster.store(3).durable().last_index(), LogIndex(1), "the stale suffix is cut");
    // A persisted commit index of 2 would now lie beyond the durable log: restoring would fail.
    cluster.crash(3).restart(3);
    let core = cluster.core(3);
    assert!(core.commit_index() < LogIndex(2) || core.term_at(LogIndex(2)) == Some(Term(2)));
}

#[test]
fn s5_3_an_acknowledgement_from_an_older_term_never_leaves_after_the_entries_it_covers_are_replaced(
) {
    // Found by the simulator (seed 103261): a follower stepped a duplicate AppendEntries of term
    // t, whose answer acknowledged durable entries, and, before its driver drained the core, an
    // AppendEntries of a newer leader that replaced those entries. The drained `Ready` carried
    // both the replacement and the term-t acknowledgement, so the acknowledgement left after the
    // entries it covers were gone (Ready invariant 1). It must be dropped instead: its leader
    // is deposed, and Raft tolerates a lost message.
    let mut cluster =
        Cluster::with_logs_in_term(&[vec![1, 1], vec![1, 1], vec![1, 2, 2, 2]], 2, |_| {});
    cluster.isolate(3);
    cluster.elect(1);
    assert_eq!(cluster.term(1), 3);
    assert_eq!(cluster.log_terms(1), vec![1, 1, 3]);
    cluster.heal();
    let append = |from: u64, term: u64, prev: (u64, u64), commit: u64, entries| Message {
        log: SCENARIO_LOG,
        from: NodeId(from),
        to: NodeId(3),
        term: Term(term),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            leader_commit: LogIndex(commit),
            entries,
        }),
    };
    // Replica 3 still follows term 2: an append of that term that its log matches through i4
    // (durable) earns a Success for i4 ...
    let old = append(2, 2, (4, 2), 1, Vec::new());
    // ... and the term-3 leader's append, stepped before the driver drains, replaces i2..=i4.
    let leader_entries: Vec<Entry> = (2..=3)
        .map(|index| {
            let log = cluster.store(1).log().expect("n1 is up");
            log.read(LogIndex(index), usize::MAX).expect("n1 holds it")[0].clone()
        })
        .collect();
    let new = append(1, 3, (1, 1), 3, leader_entries);
    cluster.core_mut(3).step(old).expect("a valid message");
    cluster.core_mut(3).step(new).expect("a valid message");
    // Draining runs the checker on every message sent (PersistBeforeSend panics on a stale one).
    cluster.step(3);
    assert_eq!(cluster.log_terms(3), vec![1, 1, 3]);
    let stale = cluster.sent().iter().filter(|m| m.from == NodeId(3) && m.term < Term(3)).count();
    assert_eq!(stale, 0, "replica 3 sent a message of a term it had left");
    cluster.settle();
    assert_eq!(cluster.commit(3), LogIndex(3));
}
