//! Scenario tests of the cluster on real storage faults: a failed fsync poisons a replica's log
//! and the replica stops (fsyncgate: never retry), a full disk changes nothing durable, a torn
//! write leaves a prefix that recovery cuts cleanly. Every step also runs the checker, which
//! judges durability against each simulated disk's durable image.

use raftwal_tests::scenario::{filter, Cluster};
use raftwal_wire::message::MessageBody;
use raftwal_wire::types::{LogIndex, NodeId};
use std::collections::BTreeSet;

#[test]
fn durability_a_failed_fsync_poisons_a_follower_and_the_majority_goes_on() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.fail_next_sync(2);
    let proposed = cluster.propose(1, &["a", "b"]).expect("leader");
    cluster.settle();
    assert!(!cluster.is_up(2), "the failed fsync poisoned n2's log and it stopped");
    assert_eq!(cluster.durable_log_terms(2), vec![1], "the failed batch never became durable");
    assert_eq!(cluster.commit(1), proposed.last_index, "n1 and n3 are a majority");
    // Restarted from its disk, n2 holds only what was durable and catches up.
    cluster.restart(2);
    cluster.run_until(&[1], 10, |c| c.durable_log_terms(2) == vec![1, 1, 1]);
    assert_eq!(cluster.commit(2), proposed.last_index);
}

#[test]
fn durability_a_vote_whose_fsync_fails_never_leaves() {
    let mut cluster = Cluster::with(3, |config| config.pre_vote = false);
    cluster.fail_next_sync(2);
    cluster.elect(1);
    assert!(!cluster.is_up(2), "saving its vote failed: n2's log is poisoned");
    let granted_by_2 = cluster.sent().iter().any(|m| {
        m.from == NodeId(2) && matches!(&m.body, MessageBody::RequestVoteResponse(r) if r.granted)
    });
    assert!(!granted_by_2, "a grant that depends on a failed fsync must not leave");
    assert_eq!(cluster.store(2).durable().hard_state().vote, None);
    cluster.restart(2).tick(1).settle();
    assert_eq!(cluster.core(2).leader(), Some(NodeId(1)));
}

#[test]
fn durability_a_full_disk_loses_nothing_and_the_replica_catches_up_once_freed() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.fill_disk(3, Some(0));
    // About 130 bytes a record: a 16 KiB segment fills after about a hundred entries. n3 had
    // prepared its next segment before its disk filled, so it rolls over into that one, but
    // the segment after it cannot be allocated.
    let last = propose_300_records(&mut cluster);
    assert_eq!(cluster.commit(1), last, "n1 and n2 commit without n3");
    assert!(cluster.is_up(3), "a full disk does not stop the replica");
    let durable_3 = cluster.durable_log_terms(3);
    let durable_1 = cluster.durable_log_terms(1).len();
    assert!(durable_3.len() < 240, "n3's log could not grow: {} entries", durable_3.len());
    assert!(durable_3.len() < durable_1, "n3 fell behind: {} of {durable_1}", durable_3.len());
    // Everything n3 made durable survives a crash, and its disk is still full after it.
    cluster.crash(3).restart(3);
    assert_eq!(cluster.durable_log_terms(3), durable_3);
    cluster.fill_disk(3, None);
    cluster.run_until(&[1], 20, |c| c.durable_log_terms(3) == c.durable_log_terms(1));
}

#[test]
fn durability_a_torn_batch_leaves_a_clean_prefix() {
    // n2 crashes after its batch's write reached the disk in part and before its fdatasync; the
    // seed picks how many sectors survived. Whatever survived, the restart recovers a prefix of
    // the batch that contains every entry that was durable, and the checker finds the recovery
    // equal to the disk's durable image.
    let mut outcomes = BTreeSet::new();
    for seed in 0..8 {
        let mut cluster = Cluster::new(3);
        cluster.elect(1);
        cluster.set_auto_sync(false);
        let payloads: Vec<String> = (0..12).map(|k| format!("{k:0>300}")).collect();
        let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
        cluster.propose(1, &payloads).expect("leader");
        cluster.deliver_where(filter::to(2));
        cluster.begin_sync(2);
        cluster.crash_mid_batch(2, seed).restart(2);
        let kept = cluster.durable_log_terms(2).len();
        assert!((1..=13).contains(&kept), "a prefix of the log: {kept} entries");
        outcomes.insert(kept);
        cluster.set_auto_sync(true).sync_all();
        cluster.run_until(&[1], 10, |c| c.durable_log_terms(2).len() == 13);
    }
    assert!(outcomes.len() > 1, "different tears keep different prefixes: {outcomes:?}");
}

#[test]
fn compaction_a_follower_behind_the_leaders_first_index_starts_its_log_over() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.crash(3);
    // About 130 bytes a record: 300 entries fill a few 16 KiB segments while n3 is down.
    let last = propose_300_records(&mut cluster);
    assert_eq!(cluster.commit(1), last);
    let first = cluster.compact(1, last.next());
    assert!(first > LogIndex(100), "whole segments went: the log starts at {first:?}");
    assert_eq!(cluster.store(1).durable().first_index(), first);
    // n2 compacts less: each replica's compaction is its own.
    let first_2 = cluster.compact(2, LogIndex(50));
    assert!(first_2 < first);
    // n3 needs entries n1 no longer has: n1 tells it where its log starts, and n3 replaces its
    // log (durably, before it acknowledges) and follows.
    cluster.restart(3);
    cluster.run_until(&[1], 20, |c| c.commit(3) == last);
    let starts: Vec<_> = cluster
        .sent()
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::LogStart(start) if m.to == NodeId(3) => Some(start.index),
            _ => None,
        })
        .collect();
    assert!(starts.contains(&first.prev()), "{starts:?}");
    assert_eq!(cluster.core(3).first_index(), first);
    assert_eq!(cluster.store(3).durable().first_index(), first);
    assert_eq!(cluster.store(3).durable().last_index(), last);
    // The log goes on from there, and n3 restarts from the log it was given.
    let more = cluster.propose(1, &["after"]).expect("leader").last_index;
    cluster.settle();
    assert_eq!(cluster.commit(3), more);
    cluster.crash(3).restart(3);
    assert_eq!(cluster.core(3).first_index(), first);
    cluster.run_until(&[1], 10, |c| c.commit(3) == more);
}

/// Proposes 300 entries of 100 bytes at leader n1, ten at a time, letting each batch settle;
/// returns the last index. About 130 bytes a record, so they fill a few 16 KiB segments.
fn propose_300_records(cluster: &mut Cluster) -> LogIndex {
    let payload = "x".repeat(100);
    let mut last = LogIndex(1);
    for _ in 0..30 {
        let batch = vec![payload.as_str(); 10];
        last = cluster.propose(1, &batch).expect("leader").last_index;
        cluster.settle();
    }
    last
}
