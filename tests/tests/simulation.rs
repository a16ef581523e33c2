//! The bounded simulation CI runs, the proof that the checker bites, determinism, and the seeds
//! that once failed (regressions).
//!
//! Run time: about 15 seconds in release mode on the 2-core CI machine (11 s of CPU); each test
//! runs its seeds on its own thread, so the test harness spreads them over the cores.

use raftwal::raft::InjectedBug;
use raftwal_tests::checker::Property;
use raftwal_tests::sim::{self, first_failure, PlantedBug, SimOptions};

fn run_clean(from: u64, count: u64, nodes: usize) {
    if let Some((_, failure)) = first_failure(from, count, Some(nodes), None) {
        panic!("{failure}");
    }
}

#[test]
fn ci_simulates_1000_seeds_of_three_replicas() {
    run_clean(0, 1000, 3);
}

#[test]
fn ci_simulates_1000_seeds_of_five_replicas() {
    run_clean(0, 1000, 5);
}

#[test]
fn ci_simulates_1000_more_seeds_of_mixed_sizes() {
    // Even seeds run three replicas, odd ones five (the `simulate` binary's default).
    if let Some((_, failure)) = first_failure(1_000_000, 1000, None, None) {
        panic!("{failure}");
    }
}

fn caught_within_2000_seeds(bug: PlantedBug, expected: &[Property]) {
    let (seeds, failure) = first_failure(0, 2000, None, Some(bug))
        .unwrap_or_else(|| panic!("{} was not caught within 2,000 seeds", bug.name()));
    assert!(seeds <= 2000);
    assert!(
        expected.contains(&failure.violation.property),
        "{} caught as {:?}, expected one of {expected:?}:\n{failure}",
        bug.name(),
        failure.violation.property
    );
    // The report names the seed and shows the events leading to the violation.
    let report = failure.to_string();
    assert!(report.contains(&format!("seed {}", failure.options.seed)));
    assert!(report.contains(&format!("--inject-bug {}", bug.name())));
    assert!(failure.trace.lines().count() > 10);
}

#[test]
fn planted_bug_commit_old_term_is_caught() {
    caught_within_2000_seeds(
        PlantedBug::Core(InjectedBug::CommitOldTerm),
        &[Property::LeaderCompleteness, Property::StateMachineSafety],
    );
}

#[test]
fn planted_bug_vote_not_durable_is_caught() {
    caught_within_2000_seeds(
        PlantedBug::Core(InjectedBug::VoteNotDurable),
        &[Property::PersistBeforeSend, Property::ElectionSafety],
    );
}

#[test]
fn planted_bug_ack_before_fsync_is_caught() {
    caught_within_2000_seeds(
        PlantedBug::Core(InjectedBug::AckBeforeFsync),
        &[Property::AcknowledgedDurability, Property::LeaderCompleteness],
    );
}

#[test]
fn planted_bug_no_election_restriction_is_caught() {
    caught_within_2000_seeds(
        PlantedBug::Core(InjectedBug::NoElectionRestriction),
        &[Property::LeaderCompleteness, Property::StateMachineSafety],
    );
}

#[test]
fn planted_bug_log_start_ack_early_is_caught() {
    caught_within_2000_seeds(
        PlantedBug::Core(InjectedBug::LogStartAckEarly),
        &[Property::PersistBeforeSend, Property::AcknowledgedDurability],
    );
}

#[test]
fn planted_bug_rejoin_without_query_is_caught() {
    // A wiped replica takes part at once as a fresh one: its lost copies of committed entries
    // are no longer protected, its lost acknowledgements no longer durable, its lost votes may
    // be cast again.
    caught_within_2000_seeds(
        PlantedBug::Core(InjectedBug::RejoinWithoutQuery),
        &[
            Property::LeaderCompleteness,
            Property::AcknowledgedDurability,
            Property::ElectionSafety,
            Property::StateMachineSafety,
        ],
    );
}

#[test]
fn planted_bug_reopen_poisoned_log_is_caught() {
    // A replica whose log a failed fsync poisoned restarts in the same boot, and recovery reads
    // the writes the fsync failed to make durable from the page cache (it does not drop the
    // cached pages first), so it claims them.
    caught_within_2000_seeds(
        PlantedBug::ReopenPoisonedLog,
        &[Property::DurableImage, Property::PersistBeforeSend, Property::AcknowledgedDurability],
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let mut disk_paths = (0, 0, 0, 0, 0, 0);
    for seed in [0, 3, 26, 77] {
        let options = SimOptions::new(seed, SimOptions::default_nodes(seed));
        let first = sim::run(&options).expect("clean seed");
        let second = sim::run(&options).expect("clean seed");
        assert_eq!(first, second);
        assert!(first.events > 1000 && first.acknowledged > 0, "a run does real work: {first:?}");
        disk_paths.0 += first.crashes_in_disk_ops;
        disk_paths.1 += first.torn_crashes;
        disk_paths.2 += first.poisoned;
        disk_paths.3 += first.pipelined_batches;
        disk_paths.4 += first.process_kills;
        disk_paths.5 += first.written_back_crashes;
    }
    // The replayed runs cover crashes inside disk operations, torn writes, poisoned logs,
    // pipelined batches, processes restarted in a boot that went on and power losses after a
    // partial writeback.
    let covered =
        [disk_paths.0, disk_paths.1, disk_paths.2, disk_paths.3, disk_paths.4, disk_paths.5];
    assert!(covered.iter().all(|&n| n > 0), "{disk_paths:?}");
    let bug = PlantedBug::Core(InjectedBug::NoElectionRestriction);
    let (_, caught) = first_failure(0, 50, None, Some(bug)).expect("caught within 50 seeds");
    let first = sim::run(&caught.options).expect_err("the failing seed fails again");
    let second = sim::run(&caught.options).expect_err("and again");
    assert_eq!(first.trace, caught.trace);
    assert_eq!(first.trace, second.trace);
    assert_eq!((first.at_us, second.at_us), (caught.at_us, caught.at_us));
}

/// A follower's truncation or log start that a full disk refuses is held, not given up: the
/// runtime-order loop keeps that `Ready` and retries it on later ticks, and a run's liveness
/// phase ends only once no replica holds one (every disk has room after the heal). Seed
/// 4,930,899 holds one (found by `simulate --verbose`; a change to the simulator may move it).
#[test]
fn a_write_a_full_disk_refused_is_held_until_there_is_room() {
    let options = SimOptions::new(4_930_899, SimOptions::default_nodes(4_930_899));
    let summary = sim::run(&options).expect("clean seed");
    assert!(summary.full_disk_holds > 0, "the seed no longer meets the case: {summary:?}");
}

/// Seeds that failed during development, each with the cause that was fixed. A seed replays
/// the exact failing run only with the simulator of its day (the profile a seed draws changes
/// when the simulator does), so each fix also has a scenario test where one could be written;
/// the seeds stay as extra coverage.
#[test]
fn regressions_seeds_that_once_failed() {
    let seeds: &[(u64, usize, &str)] = &[
        // A hard state (commit 8) survived a torn write without the entries that justified it;
        // the restarted replica claimed a stale entry committed. Fix: the persisted commit
        // index is capped at the durable index (scenario
        // durability_a_torn_write_never_leaves_a_commit_index_beyond_durable_entries).
        (7690, 3, "persisted commit beyond durable entries"),
        // Without PreVote, a candidate that could not win kept resetting everyone's election
        // timer, so timers stayed in step and votes split for over a second. Fix: a refused
        // vote request does not reset the election timer (paper Figure 2).
        (7683, 5, "election timers reset by refused vote requests"),
        // Stale acknowledgements switched a probing follower back to pipelining, each switch
        // resending a whole window: a message storm. Fix: only an answer to the current probe
        // switches, and a refusal whose hint is below the match index is stale.
        (7, 5, "message storm from stale answers"),
        // Checker ordering: acknowledgements were judged before the commit that covers them
        // was recorded.
        (0, 3, "checker ordering"),
        // Liveness under heavy reordering and tiny windows; fixed in the simulator (links keep
        // FIFO order like QUIC streams, and windows always carry a few hundred entries).
        (224, 3, "reordering livelock"),
        (178, 3, "one-message window"),
        (126, 3, "one-entry window"),
        // Head-of-line blocking behind a straggler after the faults healed.
        (5732, 3, "straggler after healing"),
        // The first 100,000-seed run on the real store: in the runtime's order a truncation
        // waits for the batch in flight before a full disk refuses its new segment, so the
        // durable index moved forward during a refused call; the simulator's full-disk check
        // took that for a change. Fixed in the check (only a waiting call may move it, forward).
        (78957, 5, "full-disk check and a truncation's wait"),
        // The second 100,000-seed run (seeds 100,000 on): a follower stepped a term-4 append
        // (answered with a Success for durable entries) and, in the same drain, a term-6
        // leader's append that replaced those entries; the Success left after the
        // replacement. Fix: the core drops answers to appends of a term it has left (scenario
        // s5_3_an_acknowledgement_from_an_older_term_never_leaves_after_the_entries_it_covers_are_replaced).
        (103261, 5, "older-term acknowledgement after its entries were replaced"),
        // CheckQuorum without PreVote, one-way delays to 15 ms: five leaders deposed within a
        // broadcast time of their election by a rival's higher term; 1,279 ms to recover.
        // Not a defect (docs/testing.md); such runs now get CHECK_QUORUM_ONLY_LIVENESS_FACTOR.
        (177550, 3, "CheckQuorum without PreVote over ten election timeouts"),
        // Pipelined batches (two in flight) on a disk that runs ops out of order: the later
        // batch's fdatasync failed (and, as Linux does, dropped the earlier batch's dirty
        // pages), then the earlier batch's own fdatasync succeeded and moved the durable index
        // over data that was not on disk. Fix: a failure poisons the log at once and nothing
        // in flight is reported durable after it (storage test
        // a_failed_fdatasync_of_a_pipelined_batch_leaves_every_batch_in_flight_not_durable).
        (44, 3, "pipelined batch durable after a later batch's failed fdatasync"),
        (87, 5, "pipelined batch durable after a later batch's failed fdatasync"),
        (1_000_293, 5, "pipelined batch durable after a later batch's failed fdatasync"),
        // A disk running ops out of order left the group writer with entries pending, no
        // batch in flight and a zero-fill write queued where the next batch had to go (the
        // store starts that batch once the write completes); the writer asserted that nothing
        // was pending. Fix in the drivers: such a store needs a disk step
        // (`LogStore::waits_for_background`).
        (193_021, 5, "a batch waiting for a zero-fill write in flight"),
        // A chunked batch found no space in a middle chunk; the fdatasync of the batch
        // pipelined behind it made the first chunk's entries durable; both were withdrawn and
        // the next batch, which clears those entries, came only after a later refresh (the disk
        // was full meanwhile): the store's checker had dropped the withdrawal's allowance. Fix
        // in the checker (`LogStore::has_withdrawn_records`; store test
        // records_of_withdrawn_batches_may_vanish_until_the_log_cleared_them).
        (1_144_984, 3, "withdrawn durable entries cleared after a later refresh"),
        // A rejoining follower far behind queued a Success for its committed, durable i310;
        // before the driver drained it, a LogStart for i311 replaced the core's log (not yet
        // the disk's), and the lemma check, made against the core at sending, found no i310.
        // The answer is true (the entry is committed and on disk); fixed in the checker: below
        // the core's base an acknowledged entry must be on disk.
        (3_030_781, 5, "a queued acknowledgement below a log start stepped before the drain"),
    ];
    for (seed, nodes, cause) in seeds {
        if let Err(failure) = sim::run(&SimOptions::new(*seed, *nodes)) {
            panic!("regression ({cause}):\n{failure}");
        }
    }
}
