//! Unit tests of the simulated node's storage: the durable image, the checks at the seams
//! (recovery, truncation, poison, full disk) and the log source the core reads.

use super::*;
use crate::checker::entry_hash;
use raftwal::raft::{LogSource, ENTRY_OVERHEAD_BYTES};
use raftwal::storage::format::SegmentId;
use raftwal::storage::HARD_STATE_FILE;
use raftwal_wire::types::{NodeId, Term};

const OPTIONS: LogOptions = crate::scenario::SCENARIO_LOG_OPTIONS;

fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(offset, term)| Entry {
            index: LogIndex(first + offset as u64),
            term: Term(*term),
            kind: EntryKind::Normal,
            data: bytes::Bytes::from(vec![b'x'; 100 + offset]),
        })
        .collect()
}

fn open(store: &mut SimStore) {
    store.open().expect("a consistent disk opens");
}

/// Appends and makes durable through the disk's queue, as the replica loop does.
fn write_durably(store: &mut SimStore, batch: &[Entry]) {
    store.log_mut().expect("open").append(batch).expect("continues the log");
    loop {
        let log = store.log_mut().expect("open");
        if !log.has_pending() && !log.has_in_flight() {
            break;
        }
        if !log.has_in_flight() {
            log.submit().expect("room on the disk");
        }
        store.disk().run_pending(1);
        store.log_mut().expect("open").process_completions().expect("no fault");
    }
    let log = store.log_mut().expect("open");
    assert_eq!(log.durable_index(), log.last_index());
}

/// Runs the disk until the log's background work (zeros, the next segment's preparation) is
/// done and nothing is queued, so that the next op on the disk is the next batch's.
fn settle_background(store: &mut SimStore) {
    for _ in 0..10_000 {
        if store.disk().pending_ops() == 0 {
            return;
        }
        store.disk().run_pending(usize::MAX);
        store.log_mut().expect("open").process_completions().expect("no fault");
    }
    panic!("the background work never finished");
}

#[test]
fn the_durable_image_holds_only_what_the_disk_completed() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    let batch = entries(1, &[1, 1, 2]);
    let log = store.log_mut().expect("open");
    log.append(&batch).expect("continues the log");
    log.submit().expect("room");
    assert_eq!(store.refresh(), Ok(None));
    assert_eq!(store.durable().last_index(), LogIndex(0), "queued on the disk, not run");
    store.disk().run_pending(1);
    assert_eq!(store.refresh(), Ok(None));
    assert_eq!(store.durable().last_index(), LogIndex(3), "the batch's fdatasync ran");
    for entry in &batch {
        let durable = store.durable().entry(entry.index).expect("durable");
        assert_eq!(durable.term, entry.term);
        assert_eq!(durable.hash, entry_hash(entry.kind, &entry.data));
    }
    let hard_state = HardState { term: Term(2), vote: Some(NodeId(3)), commit: LogIndex(1) };
    store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
    assert_eq!(store.refresh(), Ok(None));
    assert_eq!(store.durable().hard_state(), hard_state);
}

#[test]
fn the_image_reads_on_across_segments_and_matches_a_full_reading() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    // About 120 bytes a record: a 16 KiB segment holds about a hundred.
    for round in 0..10u64 {
        write_durably(&mut store, &entries(round * 40 + 1, &[1; 40]));
        assert_eq!(store.refresh(), Ok(None));
    }
    assert!(store.disk().durable_file_names(store.dir()).len() > 4, "several segments");
    let mut full = DurableImage::new(store.dir());
    assert_eq!(full.refresh(store.disk(), Reread::Full), Ok(None));
    assert_eq!(full.last_index(), LogIndex(400));
    for index in 1..=400 {
        assert_eq!(full.entry(LogIndex(index)), store.durable().entry(LogIndex(index)));
    }
}

#[test]
fn only_a_requested_truncation_may_remove_durable_entries() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1; 150]));
    assert_eq!(store.refresh(), Ok(None));
    store.truncate_after(LogIndex(120)).expect("truncated");
    assert_eq!(store.refresh(), Ok(Some(LogIndex(121))));
    assert_eq!(store.durable().last_index(), LogIndex(120));
    write_durably(&mut store, &entries(121, &[2]));
    assert_eq!(store.refresh(), Ok(None));
    // Now durable bytes change behind the store's back: a flipped bit in record 121, the
    // first of the segment the truncation started.
    let segment = store.dir().join(SegmentId(LogIndex(121)).file_name());
    assert!(store.disk().flip_bit(&segment, 4096 + 40, 1));
    // Any disk activity makes the next refresh look again (a hard state save here; a batch
    // would rewrite the damaged partial block from the store's memory and heal it).
    let hard_state = store.log().expect("open").hard_state();
    store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
    let error = store.refresh().expect_err("a durable entry vanished without a truncation");
    assert!(error.0.contains("no truncation removed it"), "{error}");
}

#[test]
fn a_sealed_segment_that_ends_early_is_an_image_error() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1; 150]));
    let first_segment = store.dir().join(SegmentId(LogIndex(1)).file_name());
    assert!(store.disk().flip_bit(&first_segment, 4096 + 10 * 136 + 9, 3));
    let mut image = DurableImage::new(store.dir());
    let error = image.refresh(store.disk(), Reread::Full).expect_err("a hole");
    assert!(error.0.contains("sealed durable segment"), "{error}");
}

#[test]
fn a_hard_state_that_goes_back_is_an_image_error() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    let hard_state = HardState { term: Term(3), vote: Some(NodeId(1)), commit: LogIndex(0) };
    store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
    assert_eq!(store.refresh(), Ok(None));
    assert!(store.disk().overwrite(&store.dir().join(HARD_STATE_FILE), 0, &[0; 1024]));
    write_durably(&mut store, &entries(1, &[3]));
    let error = store.refresh().expect_err("the vote of term 3 is gone");
    assert!(error.0.contains("went back"), "{error}");
}

/// A log whose batch of entry 3 failed its fdatasync, reopened in the same boot; recovery
/// trusts the page cache if `keeps_stale_cache`.
fn poisoned_then_reopened_in_place(keeps_stale_cache: bool) -> (SimStore, Result<(), String>) {
    let mut store = SimStore::new(OPTIONS);
    store.disk().set_keeps_stale_cache(keeps_stale_cache);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1, 1]));
    // The fault must strike the batch's fdatasync, not a background one (which would not
    // poison the log: it concerns no record).
    settle_background(&mut store);
    let log = store.log_mut().expect("open");
    log.append(&entries(3, &[1])).expect("continues");
    log.submit().expect("room");
    assert_eq!(store.disk().pending_ops(), 1, "only the batch is queued");
    store.fail_next_sync();
    store.disk().run_pending(1);
    let failed = store.log_mut().expect("open").process_completions();
    assert!(failed.is_err(), "the fdatasync failed");
    assert_eq!(store.confirm_poisoned(LogIndex(2)), Ok(()));
    store.kill();
    let reopened = store.open().map(|_| ()).map_err(|error| error.0);
    (store, reopened)
}

#[test]
fn a_recovery_that_claims_writes_the_disk_does_not_hold_durably_is_caught() {
    // Recovery that reads the write whose fdatasync failed from the cache (fsyncgate).
    let (mut store, reopened) = poisoned_then_reopened_in_place(true);
    let error = reopened.expect_err("recovery returns more than the durable image");
    assert!(error.contains("recovery disagrees"), "{error}");
    // After a reboot the disk holds what it really holds, and recovery agrees with it.
    assert_eq!(store.crash(Tear::None), Ok(None));
    open(&mut store);
    assert_eq!(store.log().expect("open").last_index(), LogIndex(2));
}

#[test]
fn a_recovery_in_the_same_boot_after_a_failed_fsync_agrees_with_the_disk() {
    let (store, reopened) = poisoned_then_reopened_in_place(false);
    assert_eq!(reopened, Ok(()));
    assert_eq!(store.log().expect("open").last_index(), LogIndex(2));
}

#[test]
fn a_healthy_log_is_not_taken_for_a_poisoned_one() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1]));
    let error = store.confirm_poisoned(LogIndex(1)).expect_err("not poisoned");
    assert!(error.contains("did not poison"), "{error}");
}

#[test]
fn a_full_disk_refuses_a_new_segment_and_loses_nothing() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1; 60]));
    store.set_full(Some(0));
    let log = store.log_mut().expect("open");
    log.append(&entries(61, &[1; 200])).expect("queued in memory");
    let mut refused = false;
    for _ in 0..50 {
        let log = store.log_mut().expect("open");
        if !log.has_in_flight() {
            match log.submit() {
                Err(SubmitError::NoSpace(_)) => {
                    refused = true;
                    break;
                }
                other => assert!(other.is_ok(), "{other:?}"),
            }
        }
        store.disk().run_pending(1);
        store.log_mut().expect("open").process_completions().expect("no fault");
    }
    assert!(refused, "the segment roll-over needs space");
    let log = store.log().expect("open");
    assert!(log.poisoned().is_none());
    let durable = log.durable_index();
    assert_eq!(store.refresh(), Ok(None));
    assert_eq!(store.crash(Tear::None), Ok(None));
    open(&mut store);
    assert_eq!(store.log().expect("open").last_index(), durable, "everything durable stays");
    assert!(store.is_full(), "a full disk stays full across a crash");
}

#[test]
fn the_log_source_counts_overhead_and_stops_at_last() {
    let mut store = SimStore::new(OPTIONS);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1; 10]));
    let source = store.source();
    // Entry i carries 99 + i payload bytes.
    let two = 101 + 102 + 2 * ENTRY_OVERHEAD_BYTES;
    let read = source.read(LogIndex(2), LogIndex(9), two).expect("stored");
    assert_eq!(read.iter().map(|e| e.index.get()).collect::<Vec<_>>(), [2, 3]);
    let read = source.read(LogIndex(2), LogIndex(9), two - 1).expect("stored");
    assert_eq!(read.iter().map(|e| e.index.get()).collect::<Vec<_>>(), [2]);
    let read = source.read(LogIndex(2), LogIndex(9), 1 << 20).expect("stored");
    assert_eq!(read.len(), 8, "never past last");
    assert_eq!(source.read(LogIndex(4), LogIndex(9), 0).expect("stored").len(), 1);
    assert!(source.read(LogIndex(11), LogIndex(12), usize::MAX).is_err());
}

#[test]
fn records_of_withdrawn_batches_may_vanish_until_the_log_cleared_them() {
    // A batch written in chunks: its first chunk lands, its second finds no space, its last
    // lands with the fdatasync that makes the first durable. The batch is withdrawn (never
    // reported durable), and the durable entries it left are cleared by the next batch, which
    // may come several refreshes later.
    let options = LogOptions {
        segment_size_bytes: 64 << 10,
        write_chunk_first_bytes: 4096,
        write_chunk_bytes: 4096,
        zero_fill: raftwal::storage::ZeroFill::Never,
        batches_in_flight_max: 2,
        ..OPTIONS
    };
    let mut store = SimStore::new(options);
    open(&mut store);
    write_durably(&mut store, &entries(1, &[1, 1]));
    settle_background(&mut store);
    let log = store.log_mut().expect("open");
    log.append(&entries(3, &[1; 150])).expect("continues");
    log.submit().expect("room");
    let chunks = store.disk().pending_ops();
    assert!(chunks >= 3, "the batch goes out in chunks");
    // A second batch, pipelined behind the first: its fdatasync covers the whole file.
    let log = store.log_mut().expect("open");
    log.append(&entries(153, &[1; 5])).expect("continues");
    log.submit().expect("room");
    assert!(store.disk().pending_ops() > chunks, "pipelined");
    store.disk().run_pending(1);
    store.no_space_next_write();
    store.disk().run_pending(usize::MAX);
    let failed = store.log_mut().expect("open").process_completions();
    assert!(matches!(failed, Err(raftwal::storage::CompletionError::NoSpace(_))), "{failed:?}");
    store.note_withdrawal();
    assert_eq!(store.log().expect("open").durable_index(), LogIndex(2));
    assert!(store.log().expect("open").has_withdrawn_records());
    assert_eq!(store.refresh(), Ok(None));
    assert!(store.durable().last_index() > LogIndex(2), "the first chunk's entries are durable");
    // Other disk activity and refreshes before the next batch.
    let hard_state = store.log().expect("open").hard_state();
    store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
    assert_eq!(store.refresh(), Ok(None));
    // The next batch clears them first: they vanish from the durable image, allowed.
    store.log_mut().expect("open").submit().expect("room again");
    assert!(!store.log().expect("open").has_withdrawn_records());
    assert_eq!(store.refresh(), Ok(Some(LogIndex(3))));
    // The entries are written again and become durable.
    while store.log().expect("open").durable_index() < LogIndex(157) {
        store.disk().run_pending(usize::MAX);
        let log = store.log_mut().expect("open");
        log.process_completions().expect("no fault");
        log.submit().expect("room");
    }
    assert_eq!(store.refresh(), Ok(None));
    assert_eq!(store.durable().last_index(), LogIndex(157));
}
