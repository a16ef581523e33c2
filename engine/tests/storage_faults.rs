//! Fault tests on the simulated disk: a failed fdatasync poisons the log (every later write
//! fails, the fdatasync is never retried); running out of space is a clear error that leaves
//! durable entries intact; truncation with a batch in flight; one fdatasync per batch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::{
    AppendError, CompletionError, FlushError, HardStateError, LogOptions, LogStore, SimDisk,
    SimFaults, SubmitError, Tear, TruncateError, ZeroFill,
};
use raftwal_wire::types::{HardState, LogIndex, NodeId, Term};
use std::path::Path;
use std::rc::Rc;
use storage_common::{
    append_durably, append_until_flush_fails, bytes_used, entries, one_segment_options,
    small_options,
};

const DIR: &str = "/logs/f";

fn open(disk: &Rc<SimDisk>) -> LogStore<SimDisk> {
    LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap().0
}

fn read_all(log: &LogStore<SimDisk>) -> Vec<u64> {
    storage_common::read_all(log, 1 << 20)
}

/// A log with 1 MiB segments and `batches` in flight at most, on a disk in manual mode.
fn open_manual_with_batches(
    batches: usize,
) -> (Rc<SimDisk>, LogStore<SimDisk>, raftwal::storage::LogOptions) {
    let disk = Rc::new(SimDisk::new());
    let options = raftwal::storage::LogOptions {
        segment_size_bytes: 1 << 20,
        batches_in_flight_max: batches,
        ..small_options(true)
    };
    let (log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    disk.set_manual(true);
    (disk, log, options)
}

/// fdatasyncs of the data path: background ones (of the segment prepared ahead) are not on it.
fn data_syncs(disk: &SimDisk) -> u64 {
    disk.stats().file_syncs - disk.stats().background_syncs
}

#[test]
fn failed_fsync_poisons_the_log_and_is_not_retried() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    log.append(&entries(1, 10, 1)).unwrap();
    assert_eq!(log.flush().unwrap(), LogIndex(10));
    log.append(&entries(11, 5, 1)).unwrap();
    disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    assert!(log.submit().unwrap());
    match log.process_completions() {
        Err(CompletionError::SyncFailed(_)) => {}
        other => panic!("expected a failed fdatasync, got {other:?}"),
    }
    let syncs_before = disk.stats().file_syncs;
    assert_eq!(log.durable_index(), LogIndex(10), "nothing after the failed batch is durable");
    assert!(log.poisoned().is_some());
    assert!(matches!(log.append(&entries(16, 1, 1)), Err(AppendError::Poisoned(_))));
    assert!(matches!(log.submit(), Err(SubmitError::Poisoned(_))));
    assert!(matches!(log.flush(), Err(FlushError::Submit(SubmitError::Poisoned(_)))));
    assert!(matches!(log.truncate_after(LogIndex(5)), Err(TruncateError::Poisoned(_))));
    assert!(matches!(log.save_hard_state(HardState::default()), Err(HardStateError::Poisoned(_))));
    assert_eq!(disk.stats().file_syncs, syncs_before, "the failed fdatasync was retried");
    // Reads of what is stored still work.
    assert_eq!(log.read(LogIndex(1), 1 << 20).unwrap().len(), 15);
    // After a restart, exactly the durable entries are there.
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk);
    assert_eq!(read_all(&log), (1..=10).collect::<Vec<_>>());
}

/// What a log reopened in the same boot (the process restarted, the machine did not) reports
/// after its batch's fdatasync, or its hard state's, failed: (entries, term).
fn reopened_in_the_same_boot(fail_hard_state: bool, keeps_stale_cache: bool) -> (Vec<u64>, Term) {
    let disk = Rc::new(SimDisk::new());
    disk.set_keeps_stale_cache(keeps_stale_cache);
    let mut log = open(&disk);
    log.append(&entries(1, 10, 1)).unwrap();
    assert_eq!(log.flush().unwrap(), LogIndex(10));
    log.save_hard_state(HardState { term: Term(4), vote: None, commit: LogIndex(0) }).unwrap();
    disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    if fail_hard_state {
        let hs = HardState { term: Term(5), vote: None, commit: LogIndex(0) };
        assert!(matches!(log.save_hard_state(hs), Err(HardStateError::Io(_))));
    } else {
        log.append(&entries(11, 5, 4)).unwrap();
        assert!(log.flush().is_err());
    }
    assert!(log.poisoned().is_some());
    drop(log);
    disk.restart_process();
    let log = open(&disk);
    let reopened = (read_all(&log), log.hard_state().term);
    drop(log);
    // What it reported survives a power loss.
    disk.crash(Tear::None);
    let log = open(&disk);
    if !keeps_stale_cache {
        assert_eq!((read_all(&log), log.hard_state().term), reopened);
    }
    reopened
}

#[test]
fn a_restart_in_the_same_boot_reads_what_a_failed_fsync_did_not_write() {
    // Linux keeps serving the pages a failed fdatasync could not write; recovery drops them
    // from the cache before it reads the last segment and the hard state.
    let durable = ((1..=10).collect::<Vec<_>>(), Term(4));
    assert_eq!(reopened_in_the_same_boot(false, false), durable);
    assert_eq!(reopened_in_the_same_boot(true, false), durable);
    // Without the drop, the restarted log would report what the device does not hold.
    assert_eq!(reopened_in_the_same_boot(false, true).0, (1..=15).collect::<Vec<_>>());
    assert_eq!(reopened_in_the_same_boot(true, true).1, Term(5));
}

#[test]
fn failed_hard_state_fsync_poisons() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    let hs = HardState { term: Term(4), vote: None, commit: LogIndex(0) };
    assert!(matches!(log.save_hard_state(hs), Err(HardStateError::Io(_))));
    assert!(matches!(log.append(&entries(1, 1, 1)), Err(AppendError::Poisoned(_))));
}

/// A hard state write the file system refuses for lack of space changes nothing: the log is
/// not poisoned, the saved state is the previous one (also for a reopen), and a later save
/// goes into the same slot and succeeds.
#[test]
fn a_hard_state_write_refused_for_lack_of_space_changes_nothing() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    let voted = HardState { term: Term(3), vote: Some(NodeId(2)), commit: LogIndex(0) };
    log.save_hard_state(voted).unwrap();
    disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    let next = HardState { term: Term(4), vote: None, commit: LogIndex(0) };
    assert!(matches!(log.save_hard_state(next), Err(HardStateError::NoSpace(_))));
    assert!(log.poisoned().is_none(), "a refused write poisoned the log");
    assert_eq!(log.hard_state(), voted);
    log.append(&entries(1, 1, 3)).unwrap();
    log.flush().unwrap();
    drop(log);
    let (log, recovery) =
        LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    assert_eq!(recovery.hard_state, voted, "the reopened log lost or changed the saved state");
    let mut log = log;
    log.save_hard_state(next).unwrap();
    log.save_hard_state(HardState { term: Term(5), ..next }).unwrap();
    drop(log);
    let (_, recovery) = LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    assert_eq!(recovery.hard_state.term, Term(5));
}

#[test]
fn out_of_space_is_a_clear_error_and_keeps_durable_entries() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    // Room for the hard state, the first segment and nothing more.
    let used = bytes_used(&disk, Path::new(DIR));
    disk.set_faults(SimFaults { capacity_bytes: Some(used + 1000), ..SimFaults::default() });
    let mut next = 1;
    let err = append_until_flush_fails(&mut log, &mut next);
    match &err {
        FlushError::Submit(SubmitError::NoSpace(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull)
        }
        other => panic!("expected no space, got {other}"),
    }
    assert!(err.to_string().contains("no space"), "unclear message: {err}");
    assert!(log.poisoned().is_none(), "running out of space does not poison the log");
    let durable = log.durable_index();
    assert!(durable.get() > 0 && durable < log.last_index());
    // Still readable, including the queued entries.
    assert_eq!(read_all(&log).len() as u64, log.last_index().get());
    // Space comes back (an operator freed some): the queued entries go out.
    disk.set_faults(SimFaults::default());
    assert_eq!(log.flush().unwrap(), log.last_index());
    let last = log.last_index();
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk);
    assert_eq!(log.last_index(), last);
    assert_eq!(read_all(&log).len() as u64, last.get());
}

#[test]
fn out_of_space_then_restart_keeps_every_durable_entry() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    let used = bytes_used(&disk, Path::new(DIR));
    disk.set_faults(SimFaults { capacity_bytes: Some(used + 20_000), ..SimFaults::default() });
    let mut next = 1;
    while log.flush().is_ok() {
        log.append(&entries(next, 3, 1)).unwrap();
        next += 3;
    }
    let durable = log.durable_index();
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk);
    assert_eq!(log.last_index(), durable);
    assert_eq!(read_all(&log), (1..=durable.get()).collect::<Vec<_>>());
}

#[test]
fn truncation_waits_for_the_batch_in_flight() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    log.append(&entries(1, 20, 1)).unwrap();
    log.flush().unwrap();
    disk.set_manual(true);
    log.append(&entries(21, 10, 1)).unwrap();
    assert!(log.submit().unwrap());
    assert!(log.has_in_flight());
    log.append(&entries(31, 5, 1)).unwrap();
    // Cut into the batch in flight: it must land first, then be cut durably.
    log.truncate_after(LogIndex(25)).unwrap();
    assert!(!log.has_in_flight());
    assert_eq!(log.last_index(), LogIndex(25));
    assert_eq!(log.durable_index(), LogIndex(25));
    log.check_invariants();
    log.append(&entries(26, 3, 2)).unwrap();
    disk.set_manual(false);
    log.flush().unwrap();
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk);
    assert_eq!(read_all(&log), (1..=28).collect::<Vec<_>>());
    assert_eq!(log.term(LogIndex(25)), Some(Term(1)));
    assert_eq!(log.term(LogIndex(26)), Some(Term(2)));
}

#[test]
fn truncating_only_queued_entries_needs_no_disk_io() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    log.append(&entries(1, 5, 1)).unwrap();
    log.flush().unwrap();
    log.append(&entries(6, 5, 1)).unwrap();
    let points = disk.stats().points;
    log.truncate_after(LogIndex(7)).unwrap();
    assert_eq!(disk.stats().points, points);
    assert_eq!(log.flush().unwrap(), LogIndex(7));
}

/// A batch above `write_chunk_first_bytes` is written in chunks that double up to
/// `write_chunk_bytes`, then synced once; a batch no larger than the first chunk is one op.
#[test]
fn a_large_batch_goes_out_in_doubling_chunks_and_one_fdatasync() {
    let disk = Rc::new(SimDisk::new());
    let options = raftwal::storage::LogOptions {
        segment_size_bytes: 1 << 20,
        batch_bytes_max: 1 << 20,
        write_chunk_first_bytes: 4 << 10,
        write_chunk_bytes: 16 << 10,
        zero_fill: raftwal::storage::ZeroFill::Never,
        ..small_options(true)
    };
    let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    // Records of exactly 1 KiB (32-byte header + 992 bytes), so chunk boundaries fall on
    // block boundaries and no partial block is carried between chunks.
    let data = bytes::Bytes::from(vec![7u8; 992]);
    assert_eq!(raftwal::storage::format::record_size_bytes(data.len()), 1024);
    let batch: Vec<_> = (1..=60u64)
        .map(|i| raftwal_wire::types::Entry {
            index: LogIndex(i),
            term: Term(1),
            kind: raftwal_wire::types::EntryKind::Normal,
            data: data.clone(),
        })
        .collect();
    let stats = |disk: &SimDisk| {
        let s = disk.stats();
        (s.writes - s.background_writes, s.file_syncs - s.background_syncs)
    };
    let (writes_before, syncs_before) = stats(&disk);
    log.append(&batch).unwrap();
    assert!(log.submit().unwrap());
    while log.has_in_flight() {
        log.wait().unwrap();
    }
    let (writes, syncs) = stats(&disk);
    // 60 KiB in chunks of 4, 8, 16, 16 and 16 KiB: five writes, then one fdatasync.
    assert_eq!(writes - writes_before, 5, "chunk writes of one 60 KiB batch");
    assert_eq!(syncs - syncs_before, 1, "fdatasyncs of one batch");
    assert_eq!(log.durable_index(), LogIndex(60));
    // A batch no larger than the first chunk is one op: its write carries its fdatasync, so
    // the log is durable once that single op has run.
    disk.set_manual(true);
    let small: Vec<_> = (61..=64u64)
        .map(|i| raftwal_wire::types::Entry { index: LogIndex(i), ..batch[0].clone() })
        .collect();
    log.append(&small).unwrap();
    assert!(log.submit().unwrap());
    while disk.next_pending_is_background() {
        disk.run_pending(1);
    }
    assert_eq!(disk.run_pending(1), 1, "the small batch's op");
    log.process_completions().unwrap();
    assert_eq!(log.durable_index(), LogIndex(64), "one op wrote and synced the small batch");
    let (writes_after, syncs_after) = stats(&disk);
    assert_eq!((writes_after - writes, syncs_after - syncs), (1, 1), "a small batch");
}

/// Group commit: appends that arrive while a batch is in flight coalesce into the next batch,
/// and each batch costs exactly one fdatasync (segment creation, once per segment, aside).
#[test]
fn one_fdatasync_per_batch_and_appends_coalesce() {
    let (disk, mut log, _) = open_manual_with_batches(1);
    let syncs_before = data_syncs(&disk);
    let batches_before = log.stats().batches;
    let mut next = 1;
    for _ in 0..50 {
        // Three appends arrive while the previous batch is in flight...
        for _ in 0..3 {
            log.append(&entries(next, 2, 1)).unwrap();
            next += 2;
            let started = log.submit().unwrap();
            assert!(
                !started || log.stats().batches == batches_before + 1,
                "a batch started while one was in flight"
            );
        }
        // ...the disk finishes the batch (its chunk writes, then its fdatasync); the next
        // submit takes all queued appends at once.
        while log.has_in_flight() {
            disk.run_pending(usize::MAX);
            log.process_completions().unwrap();
        }
        assert!(log.submit().unwrap());
    }
    while log.has_in_flight() {
        disk.run_pending(usize::MAX);
        log.process_completions().unwrap();
    }
    let batches = log.stats().batches - batches_before;
    let syncs = data_syncs(&disk) - syncs_before;
    assert_eq!(syncs, batches, "fdatasyncs per batch");
    let data_writes = disk.stats().writes - disk.stats().background_writes;
    assert!(data_writes > batches, "batches above the chunk size go out in several writes");
    assert_eq!(batches, 51, "three appends per round coalesced into one batch");
    assert_eq!(log.durable_index().get(), next - 1);
}

/// Settings that cannot work are refused at open with an error naming them, before any file is
/// touched.
#[test]
fn invalid_options_are_refused_at_open() {
    let base = small_options(true);
    let bad = [
        raftwal::storage::LogOptions { segment_size_bytes: 20_000, ..base },
        raftwal::storage::LogOptions { zero_chunk_bytes: 0, ..base },
        raftwal::storage::LogOptions { write_chunk_bytes: 0, ..base },
        raftwal::storage::LogOptions { write_chunk_first_bytes: 0, ..base },
        raftwal::storage::LogOptions { batch_bytes_max: 0, ..base },
        raftwal::storage::LogOptions { batches_in_flight_max: 0, ..base },
        raftwal::storage::LogOptions { batches_in_flight_max: 9, ..base },
    ];
    for options in bad {
        let disk = Rc::new(SimDisk::new());
        match LogStore::open(Path::new(DIR), options, disk.clone()) {
            Err(raftwal::storage::OpenError::InvalidOptions(what)) => assert!(!what.is_empty()),
            other => panic!("{options:?} opened: {:?}", other.map(|_| ())),
        }
        assert_eq!(disk.stats().points, 0, "nothing was written for {options:?}");
    }
}

/// Pipelining: with `batches_in_flight_max` 2, appends that arrive while a batch is in flight
/// start a second batch at once (at the next block boundary), a third waits; when the disk
/// finishes the second batch first, nothing becomes durable until the first is; each batch
/// still costs one fdatasync. The log reads back whole, before and after reopening.
#[test]
fn a_second_batch_is_pipelined_and_durability_stays_in_order() {
    let (disk, mut log, options) = open_manual_with_batches(2);
    let syncs_before = data_syncs(&disk);
    let mut next = 1;
    for round in 0..30u64 {
        let before = log.stats();
        log.append(&entries(next, 1, 1)).unwrap();
        next += 1;
        assert!(log.submit().unwrap(), "round {round}: the first batch starts");
        log.append(&entries(next, 1, 1)).unwrap();
        next += 1;
        assert!(log.submit().unwrap(), "round {round}: the second batch is pipelined");
        log.append(&entries(next, 1, 1)).unwrap();
        next += 1;
        assert!(!log.submit().unwrap(), "round {round}: a third batch waits");
        assert!(!log.can_start_batch());
        let after = log.stats();
        assert_eq!(after.batches - before.batches, 2, "round {round}");
        assert_eq!(after.pipelined_batches - before.pipelined_batches, 1, "round {round}");
        log.check_invariants();
        let durable = log.durable_index();
        // The device finishes the pipelined batch (the newest op) first: it is not durable
        // before the first one is.
        assert!(disk.run_newest_pending());
        log.process_completions().unwrap();
        assert_eq!(log.durable_index(), durable, "round {round}: durable out of order");
        assert!(log.has_in_flight());
        disk.run_pending(usize::MAX);
        log.process_completions().unwrap();
        assert_eq!(log.durable_index(), durable.plus(2), "round {round}");
        log.check_invariants();
        // The third append goes out alone.
        while log.durable_index().get() < next - 1 {
            log.submit().unwrap();
            disk.run_pending(usize::MAX);
            log.process_completions().unwrap();
        }
    }
    let batches = log.stats().batches;
    assert_eq!(data_syncs(&disk) - syncs_before, batches, "one fdatasync per batch");
    assert_eq!(read_all(&log), (1..next).collect::<Vec<_>>());
    drop(log);
    disk.set_manual(false);
    let (log, recovery) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    assert_eq!(recovery.torn_tail_bytes, 0, "gaps before pipelined batches are not torn tails");
    assert_eq!(recovery.last_index, LogIndex(next - 1));
    assert_eq!(read_all(&log), (1..next).collect::<Vec<_>>());
    log.check_invariants();
}

/// fsyncgate with pipelined batches: the later batch's fdatasync fails first, which (as on
/// Linux) drops the dirty pages of the earlier batch too; that batch's own fdatasync then
/// "succeeds". Nothing may be reported durable after the failure: the log is poisoned at once,
/// the durable index stays, and after a crash the log holds at least what was durable before.
/// Opens a log on `disk` with `durable.0` entries of term `durable.1` made durable, then, with
/// the disk in manual mode, starts two batches of `counts` entries of `term`, the second
/// pipelined behind the first, and runs the background ops queued before them: exactly the two
/// batches' ops are left queued (each batch one op: the options must not chunk them).
fn two_batches_in_flight(
    disk: &Rc<SimDisk>,
    options: raftwal::storage::LogOptions,
    durable: (u64, u64),
    counts: [u64; 2],
    term: u64,
) -> LogStore<SimDisk> {
    let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    log.append(&entries(1, durable.0, durable.1)).unwrap();
    assert_eq!(log.flush().unwrap(), LogIndex(durable.0));
    disk.set_manual(true);
    log.append(&entries(durable.0 + 1, counts[0], term)).unwrap();
    assert!(log.submit().unwrap());
    log.append(&entries(durable.0 + 1 + counts[0], counts[1], term)).unwrap();
    assert!(log.submit().unwrap(), "pipelined");
    while disk.next_pending_is_background() {
        disk.run_pending(1);
    }
    assert_eq!(disk.pending_ops(), 2, "two batch ops queued");
    log
}

#[test]
fn a_failed_fdatasync_of_a_pipelined_batch_leaves_every_batch_in_flight_not_durable() {
    let disk = Rc::new(SimDisk::new());
    let options = raftwal::storage::LogOptions {
        segment_size_bytes: 1 << 20,
        batches_in_flight_max: 2,
        zero_fill: raftwal::storage::ZeroFill::Never,
        ..small_options(true)
    };
    let mut log = two_batches_in_flight(&disk, options, (4, 1), [2, 2], 1);
    // The first batch is written but its op has not finished; run the second batch's write
    // and failing fdatasync first.
    disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    assert!(disk.run_newest_pending());
    match log.process_completions() {
        Err(raftwal::storage::CompletionError::SyncFailed(_)) => {}
        other => panic!("expected the fdatasync failure, got {other:?}"),
    }
    assert!(log.poisoned().is_some(), "poisoned at once");
    // The first batch's op runs now; its fdatasync reports success, but the failed one has
    // dropped its dirty pages: it must not become durable.
    disk.run_pending(usize::MAX);
    assert_eq!(log.process_completions().unwrap(), LogIndex(4), "nothing in flight became durable");
    assert!(!log.has_in_flight());
    assert!(log.submit().is_err(), "a poisoned log takes no more batches");
    disk.crash(Tear::None);
    drop(log);
    let (log, recovery) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    assert!(recovery.last_index >= LogIndex(4), "{recovery:?}");
    log.check_invariants();
}

/// Two pipelined batches, A (16..=20) then B (21..=30); B's write and fdatasync finish first,
/// then A's write fails with ENOSPC, so both are withdrawn with B's records durable on disk
/// after the gap. A leader's conflicting entries 16..=20 of a lower term follow (their records
/// are sized so that, without clearing, B's first record would sit exactly where recovery
/// looks for index 21). `truncate_in_flight`: the truncation comes while A and B are still in
/// flight, so it is the truncation that meets the ENOSPC.
fn withdrawn_batch_records_never_come_back(truncate_in_flight: bool) {
    let disk = Rc::new(SimDisk::new());
    let options = raftwal::storage::LogOptions {
        segment_size_bytes: 1 << 20,
        batches_in_flight_max: 2,
        batch_bytes_max: 1 << 20,
        write_chunk_bytes: 1 << 20,
        write_chunk_first_bytes: 1 << 20,
        zero_fill: raftwal::storage::ZeroFill::Never,
        ..small_options(true)
    };
    let mut log = two_batches_in_flight(&disk, options, (15, 3), [5, 10], 5);
    assert!(disk.run_newest_pending(), "B is written and synced first");
    disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    if truncate_in_flight {
        log.truncate_after(LogIndex(15)).expect("a withdrawn batch does not fail a truncation");
    } else {
        disk.run_pending(usize::MAX);
        match log.process_completions() {
            Err(CompletionError::NoSpace(_)) => {}
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert_eq!(log.durable_index(), LogIndex(15));
        assert_eq!(log.last_index(), LogIndex(30), "withdrawn entries stay queued");
        log.truncate_after(LogIndex(15)).unwrap();
    }
    assert!(log.poisoned().is_none());
    assert_eq!(log.stats().withdrawn_batches, 2, "A and B");
    log.append(&entries(16, 5, 4)).unwrap();
    disk.set_manual(false);
    assert_eq!(log.flush().unwrap(), LogIndex(20));
    log.check_invariants();
    disk.crash(Tear::None);
    drop(log);
    let (log, recovery) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    assert_eq!(recovery.last_index, LogIndex(20), "{recovery:?}");
    assert_eq!(read_all(&log), (1..=20).collect::<Vec<_>>());
    assert_eq!(log.term(LogIndex(20)), Some(Term(4)));
}

#[test]
fn records_of_withdrawn_pipelined_batches_never_come_back() {
    withdrawn_batch_records_never_come_back(false);
}

#[test]
fn a_truncation_that_meets_enospc_withdraws_and_goes_on() {
    withdrawn_batch_records_never_come_back(true);
}

/// The first truncation cuts inside a segment and leaves its later records on disk; the
/// second cuts below it, which makes that segment the last one again. At every crash point
/// of the second truncation, recovery must find the log before it or a prefix of it, never
/// the records the first truncation removed.
#[test]
fn a_deeper_truncation_never_brings_back_what_an_earlier_one_cut() {
    let options = one_segment_options();
    let setup = |disk: &Rc<SimDisk>| {
        let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
        log.append(&entries(1, 100, 1)).unwrap();
        log.flush().unwrap();
        log.truncate_after(LogIndex(50)).unwrap();
        log.append(&entries(51, 10, 2)).unwrap();
        log.flush().unwrap();
        log
    };
    let probe = Rc::new(SimDisk::new());
    let mut log = setup(&probe);
    let before = probe.stats().points;
    log.truncate_after(LogIndex(40)).unwrap();
    let points = probe.stats().points - before;
    assert!(points >= 4, "the truncation crosses several points ({points})");
    for at in 0..=points {
        let disk = Rc::new(SimDisk::new());
        let log = setup(&disk);
        let (log, last) = crash_truncation_at(&disk, log, options, 40, at);
        for i in 1..=last {
            let term = if i <= 50 { 1 } else { 2 };
            assert_eq!(log.term(LogIndex(i)), Some(Term(term)), "crash at point {at}: index {i}");
        }
        assert!(last <= 60, "crash at point {at}: records the first truncation cut came back");
    }
}

/// A segment made under a smaller `segment_size_bytes` becomes the active one of a log opened
/// with a larger size: it is preallocated to the new size at open, so the writer never grows
/// the file (a crash could otherwise leave it cut inside a record, which recovery refuses).
#[test]
fn a_segment_made_under_a_smaller_size_is_preallocated_to_the_new_one() {
    let disk = Rc::new(SimDisk::new());
    let small = raftwal::storage::LogOptions {
        segment_size_bytes: 16 << 10,
        zero_fill: raftwal::storage::ZeroFill::Never,
        ..small_options(true)
    };
    let (mut log, _) = LogStore::open(Path::new(DIR), small, disk.clone()).unwrap();
    log.append(&entries(1, 5, 1)).unwrap();
    log.flush().unwrap();
    drop(log);
    let last = |disk: &SimDisk| {
        let mut segs: Vec<String> =
            disk.file_names(Path::new(DIR)).into_iter().filter(|n| n.ends_with(".seg")).collect();
        segs.sort();
        disk.file_bytes(&Path::new(DIR).join(segs.last().unwrap())).unwrap().len()
    };
    assert_eq!(last(&disk), 16 << 10);
    let large = raftwal::storage::LogOptions { segment_size_bytes: 64 << 10, ..small };
    let (mut log, _) = LogStore::open(Path::new(DIR), large, disk.clone()).unwrap();
    assert_eq!(last(&disk), 64 << 10, "grown to the new segment size at open");
    // Fill past the old size, crash with a torn write, reopen: a torn tail, not corruption.
    let mut next = 6;
    while log.stats().bytes_written < 24 << 10 {
        log.append(&entries(next, 4, 1)).unwrap();
        log.flush().unwrap();
        next += 4;
    }
    log.append(&entries(next, 4, 1)).unwrap();
    log.submit().unwrap();
    disk.crash(Tear::LastWrite { seed: 3 });
    drop(log);
    let (log, _) = LogStore::open(Path::new(DIR), large, disk.clone()).unwrap();
    assert!(log.last_index() >= LogIndex(next - 1));
}

/// A truncation to the last index of a segment replaces the next segment (which starts right
/// after it) by the new one, but first removes the segments after that one: for a moment the
/// segment it replaces is the last one. If an earlier truncation cut into that segment, the
/// records it cut follow its live ones; at a crash in that moment recovery must not read them
/// as entries.
#[test]
fn a_truncation_that_replaces_a_segment_never_brings_back_what_an_earlier_one_cut_from_it() {
    replaced_segment_truncation_at_every_point(false);
}

/// The same, while a reader holds payloads of the segment to clear: the truncation copies its
/// live records to a new file renamed over it instead of writing zeros into the file the
/// reader's payloads are views of; a crash at every point of that copy recovers as well.
#[test]
fn a_truncation_that_rewrites_a_held_segment_never_brings_back_what_an_earlier_one_cut() {
    replaced_segment_truncation_at_every_point(true);
}

fn replaced_segment_truncation_at_every_point(hold: bool) {
    let options = one_segment_options();
    // Segment 1 holds 1 to 50 (51 to 100 cut); segment 51 holds 51 to 55 of term 2 (56 to 60
    // cut); segment 56 holds 56 to 58 of term 3. Truncating after 50 replaces segment 51.
    let setup = |disk: &Rc<SimDisk>| {
        let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
        log.append(&entries(1, 100, 1)).unwrap();
        log.flush().unwrap();
        log.truncate_after(LogIndex(50)).unwrap();
        log.append(&entries(51, 10, 2)).unwrap();
        log.flush().unwrap();
        log.truncate_after(LogIndex(55)).unwrap();
        log.append(&entries(56, 3, 3)).unwrap();
        log.flush().unwrap();
        // A reader holds payloads read from segment 51's map (past the tail cache).
        let held = if hold { log.read(LogIndex(51), 1 << 20).unwrap() } else { Vec::new() };
        (log, held)
    };
    let probe = Rc::new(SimDisk::new());
    let (mut log, held) = setup(&probe);
    let copies: Vec<_> = held.iter().map(|e| e.data.to_vec()).collect();
    let before = probe.stats().points;
    let rewritten = log.stats().segments_rewritten;
    log.truncate_after(LogIndex(50)).unwrap();
    assert_eq!(log.stats().segments_rewritten - rewritten, u64::from(hold), "{:?}", log.stats());
    assert!(held.iter().map(|e| e.data.to_vec()).eq(copies), "a held payload changed");
    let points = probe.stats().points - before;
    assert!(points >= 4, "the truncation crosses several points ({points})");
    for at in 0..=points {
        let disk = Rc::new(SimDisk::new());
        let (log, _held) = setup(&disk);
        let (log, last) = crash_truncation_at(&disk, log, options, 50, at);
        // The log before the truncation, or a prefix of it: never 56 to 60 of term 2.
        assert!(last <= 58, "crash at point {at}: records an earlier truncation cut came back");
        for i in 1..=last {
            let term = match i {
                ..=50 => 1,
                51..=55 => 2,
                _ => 3,
            };
            assert_eq!(log.term(LogIndex(i)), Some(Term(term)), "crash at point {at}: index {i}");
        }
    }
}

/// Runs `log.truncate_after(to)` on `disk` with a crash at its `at`-th write or sync point,
/// reopens, and checks what every crash must leave: every entry up to `to`, and exactly those
/// when the truncation returned before the crash. Returns the reopened log and its last index.
fn crash_truncation_at(
    disk: &Rc<SimDisk>,
    mut log: LogStore<SimDisk>,
    options: raftwal::storage::LogOptions,
    to: u64,
    at: u64,
) -> (LogStore<SimDisk>, u64) {
    let crash_at = disk.stats().points + at;
    disk.set_faults(SimFaults { crash_at_point: Some(crash_at), ..SimFaults::default() });
    let cut = log.truncate_after(LogIndex(to)).is_ok() && !disk.is_crashed();
    disk.crash(Tear::None);
    drop(log);
    let (log, recovery) = LogStore::open(Path::new(DIR), options, disk.clone())
        .unwrap_or_else(|e| panic!("crash at point {at}: {e}"));
    let last = recovery.last_index.get();
    assert!(last >= to, "crash at point {at}: entries before the cut lost ({last})");
    if cut {
        assert_eq!(last, to, "crash after the truncation returned");
    }
    (log, last)
}

/// A truncation far back removes several segments, last first: each of them but the first is
/// the last segment for a moment. One of them holds records an earlier truncation cut after its
/// live ones; at a crash in that moment recovery must not read them as entries.
#[test]
fn a_truncation_never_brings_back_what_an_earlier_one_cut_from_a_later_segment() {
    let options = small_options(true);
    // 1 to 100 of term 1 (101 to 120 cut), 101 to 150 of term 2 (151 to 160 cut), 151 to 170
    // of term 3, on 16 KiB segments: the segments holding 100 and 150 keep their cut records.
    let setup = |disk: &Rc<SimDisk>| {
        let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
        for (from, count, term, cut) in [(1, 120, 1, 100), (101, 60, 2, 150), (151, 20, 3, 170)] {
            for k in 0..count {
                log.append(&entries(from + k, 1, term)).unwrap();
                if k % 5 == 4 {
                    log.flush().unwrap();
                }
            }
            log.flush().unwrap();
            log.truncate_after(LogIndex(cut)).unwrap();
        }
        log
    };
    let probe = Rc::new(SimDisk::new());
    let mut log = setup(&probe);
    let before = probe.stats().points;
    log.truncate_after(LogIndex(30)).unwrap();
    let points = probe.stats().points - before;
    for at in 0..=points {
        let disk = Rc::new(SimDisk::new());
        let log = setup(&disk);
        let (log, last) = crash_truncation_at(&disk, log, options, 30, at);
        assert!(last <= 170, "crash at point {at}: records an earlier truncation cut came back");
        for i in 1..=last {
            let term = match i {
                ..=100 => 1,
                101..=150 => 2,
                _ => 3,
            };
            assert_eq!(log.term(LogIndex(i)), Some(Term(term)), "crash at point {at}: index {i}");
        }
    }
}

/// A truncation that cuts only the last record of a sealed segment leaves that one record right
/// after the segment's live ones. Reopened, the log must still know the segment holds it (its
/// `written_max`, from the segment's index file or a scan of its bytes after the live records):
/// a truncation further back clears such records before the segment is the last one for a
/// moment, and a crash in that moment must not bring the cut entry back.
#[test]
fn a_single_record_an_earlier_truncation_cut_never_comes_back_after_a_restart() {
    for check_sealed_at_open in [false, true] {
        let options = raftwal::storage::LogOptions { check_sealed_at_open, ..small_options(true) };
        // 1 to 150 of term 1 on 16 KiB segments; then the last record of the segment before
        // the active one is cut, the log goes on in term 2 and is reopened.
        let setup = |disk: &Rc<SimDisk>| {
            let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
            append_durably(&mut log, 150, 1, 5);
            let (cut_from, _) = log.segment_extents().next_back().unwrap();
            let (sealed, _) = log.segment_extents().rev().nth(1).unwrap();
            let kept = cut_from.get() - 2;
            log.truncate_after(LogIndex(kept)).unwrap();
            log.append(&entries(kept + 1, 20, 2)).unwrap();
            log.flush().unwrap();
            drop(log);
            let (log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
            (log, kept, sealed.get())
        };
        let probe = Rc::new(SimDisk::new());
        let (mut log, kept, sealed) = setup(&probe);
        let to = sealed - 5;
        let before = probe.stats().points;
        log.truncate_after(LogIndex(to)).unwrap();
        let points = probe.stats().points - before;
        assert!(points >= 4, "the truncation crosses several points ({points})");
        for at in 0..=points {
            let disk = Rc::new(SimDisk::new());
            let (log, _, _) = setup(&disk);
            let (log, last) = crash_truncation_at(&disk, log, options, to, at);
            for i in 1..=last {
                let term = if i <= kept { 1 } else { 2 };
                assert_eq!(
                    log.term(LogIndex(i)),
                    Some(Term(term)),
                    "check_sealed_at_open {check_sealed_at_open}, crash at point {at}: index {i}"
                );
            }
        }
    }
}

/// 1 to 150 of term 1 on 16 KiB segments, cut 4 entries into the segment before the active one
/// (the rest of its records stay on disk), then 20 entries of term 2. Returns the log, the last
/// index kept of term 1, the first index of the segment cut into and that of the one before it.
fn cut_into_a_sealed_segment(
    disk: &Rc<SimDisk>,
    options: raftwal::storage::LogOptions,
) -> (LogStore<SimDisk>, u64, u64, u64) {
    let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    append_durably(&mut log, 150, 1, 5);
    let (cut_in, _) = log.segment_extents().rev().nth(1).unwrap();
    let (before_it, _) = log.segment_extents().rev().nth(2).unwrap();
    let kept = cut_in.get() + 3;
    log.truncate_after(LogIndex(kept)).unwrap();
    log.append(&entries(kept + 1, 20, 2)).unwrap();
    log.flush().unwrap();
    (log, kept, cut_in.get(), before_it.get())
}

/// Reopens the log `cut_into_a_sealed_segment` made after `trouble` hit a truncation (and the
/// process restarted), then truncates into the segment before the one cut into, crashing
/// (power loss) at each of its points: the entries that segment's cut records held never come
/// back.
fn cut_records_never_come_back_after(
    trouble: impl Fn(&Rc<SimDisk>, &mut LogStore<SimDisk>, u64, u64, u64),
    what: &str,
) {
    let options = small_options(true);
    let probe = Rc::new(SimDisk::new());
    let (mut log, _, _, before_it) = cut_into_a_sealed_segment(&probe, options);
    let to = before_it + 2;
    let start = probe.stats().points;
    log.truncate_after(LogIndex(to)).unwrap();
    let points = probe.stats().points - start;
    for crash_at in 0..=points {
        let what = format!("{what}, then a power loss at point {crash_at} of a truncation");
        let disk = Rc::new(SimDisk::new());
        let (mut log, kept, cut_in, before_it) = cut_into_a_sealed_segment(&disk, options);
        trouble(&disk, &mut log, kept, cut_in, before_it);
        disk.restart_process();
        drop(log);
        let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
        let at = disk.stats().points + crash_at;
        disk.set_faults(SimFaults { crash_at_point: Some(at), ..SimFaults::default() });
        let _ = log.truncate_after(LogIndex(to));
        disk.crash(Tear::None);
        drop(log);
        let (log, _) = LogStore::open(Path::new(DIR), options, disk.clone())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for i in 1..=log.last_index().get() {
            let term = if i <= kept { 1 } else { 2 };
            assert_eq!(log.term(LogIndex(i)), Some(Term(term)), "{what}: index {i}");
        }
    }
}

/// A truncation clears the records an earlier one cut from a sealed segment (its bytes after
/// its live records) before that segment is the last one for a moment: a write of zeros, then
/// an fdatasync. Killed between the two, the process restarts with the zeros in the page cache
/// and the records still on the device; recovery must not take the zeros for what the file
/// durably holds, or a truncation after the restart leaves the records there, and a power loss
/// while it makes that segment the last one brings them back.
#[test]
fn records_a_killed_truncation_was_clearing_never_come_back_after_a_power_loss() {
    let probe = Rc::new(SimDisk::new());
    let (mut log, _, _, before_it) = cut_into_a_sealed_segment(&probe, small_options(true));
    let start = probe.stats().points;
    log.truncate_after(LogIndex(before_it + 2)).unwrap();
    let points = probe.stats().points - start;
    for kill_at in 0..points {
        cut_records_never_come_back_after(
            |disk, log, _, _, before_it| {
                let at = disk.stats().points + kill_at;
                disk.set_faults(SimFaults { crash_at_point: Some(at), ..SimFaults::default() });
                assert!(log.truncate_after(LogIndex(before_it + 2)).is_err(), "no kill");
            },
            &format!("a kill at point {kill_at} of a truncation"),
        );
    }
}

/// The same when the fdatasync of those zeros failed (the log is poisoned and the process
/// restarts in the same boot): the zeros stay readable from the page cache, never written.
#[test]
fn records_a_truncation_failed_to_clear_never_come_back_after_a_power_loss() {
    cut_records_never_come_back_after(
        |disk, log, kept, _, _| {
            // A truncation into the segment cut into clears its cut records first.
            disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
            assert!(log.truncate_after(LogIndex(kept - 1)).is_err(), "the fdatasync failed");
        },
        "a failed fdatasync while clearing",
    );
}

/// A disk that cannot tell when a file was written keeps every segment from time-based
/// retention: an unknown age is never taken for an old one.
#[test]
fn a_disk_without_file_times_keeps_every_segment_from_age_retention() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    log.append(&entries(1, 150, 1)).unwrap();
    log.flush().unwrap();
    assert!(log.segment_extents().count() >= 5);
    let far_future = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1 << 40);
    assert_eq!(log.sealed_before(far_future), LogIndex(1));
}

const WITHDRAWN_DIR: &str = "/logs/withdrawn";

/// A log holding 1..=5 (term 1) durably whose batches 6..=19 and 20 (term 1) were withdrawn
/// after the first one's first chunk landed (made durable by the second one's fdatasync, which
/// covers the whole file) and its second chunk found no space; then a new leader's entries
/// replace 6.. (a truncation after 5, of queued entries only) and 6..=8 of term 2 are queued.
fn withdrawn_then_truncated(disk: &Rc<SimDisk>, options: LogOptions) -> LogStore<SimDisk> {
    let (mut log, _) = LogStore::open(Path::new(WITHDRAWN_DIR), options, disk.clone()).unwrap();
    log.append(&entries(1, 5, 1)).unwrap();
    assert_eq!(log.flush().unwrap(), LogIndex(5));
    log.append(&entries(6, 15, 1)).unwrap();
    disk.set_faults(SimFaults { no_space_after_writes: Some(1), ..SimFaults::default() });
    log.submit().unwrap();
    while log.has_in_flight() {
        let _ = log.wait();
        let _ = log.process_completions();
    }
    assert!(log.stats().withdrawn_batches > 0, "the batch was not withdrawn");
    assert!(log.has_withdrawn_records(), "nothing of the withdrawn batches reached the disk");
    assert_eq!(log.durable_index(), LogIndex(5));
    assert!(log.poisoned().is_none());
    log.truncate_after(LogIndex(5)).unwrap();
    log.append(&entries(6, 3, 2)).unwrap();
    assert_eq!(log.term(LogIndex(6)), Some(Term(2)));
    log
}

fn withdrawn_options(direct: bool) -> LogOptions {
    LogOptions { segment_size_bytes: 1 << 20, zero_fill: ZeroFill::Never, ..small_options(direct) }
}

/// Indexes after 5 recovery found with term 1: entries the truncation removed.
fn removed_entries_back(disk: &Rc<SimDisk>, options: LogOptions) -> Vec<u64> {
    let (log, recovery) = LogStore::open(Path::new(WITHDRAWN_DIR), options, disk.clone()).unwrap();
    (6..=recovery.last_index.get()).filter(|&i| log.term(LogIndex(i)) == Some(Term(1))).collect()
}

/// Records of withdrawn batches that a truncation removed (their entries were only queued, so
/// it needs no segment work) never come back after a kill or a power loss, with or without
/// writeback of what was not synced: the truncation clears them, durably, before it returns.
/// (Found by a review: recovery read 6..=10 of term 1 back.)
#[test]
fn records_of_withdrawn_batches_a_truncation_removed_never_come_back() {
    for direct in [true, false] {
        let options = withdrawn_options(direct);
        let disk = Rc::new(SimDisk::new());
        drop(withdrawn_then_truncated(&disk, options));
        disk.restart_process();
        assert_eq!(removed_entries_back(&disk, options), [0u64; 0], "killed, direct {direct}");
        for seed in [None, Some(0), Some(1), Some(2), Some(3)] {
            let disk = Rc::new(SimDisk::new());
            let log = withdrawn_then_truncated(&disk, options);
            disk.crash(seed.map_or(Tear::None, |seed| Tear::Writeback { seed }));
            drop(log);
            let back = removed_entries_back(&disk, options);
            assert_eq!(back, [0u64; 0], "power loss, direct {direct}, writeback {seed:?}");
        }
    }
}

/// A leader's log start after such a truncation: a crash at any of its write and sync points
/// recovers the old log (1..=5, and nothing of term 1 after it) or the new one (starting after
/// 7 of term 2), never the withdrawn records. (Found by a review: the reset dropped the records
/// to clear unwritten, and the first four crash points recovered 1..=10 of term 1.)
#[test]
fn a_crash_inside_a_log_start_after_a_withdrawal_recovers_the_old_log_or_the_new_one() {
    let options = withdrawn_options(true);
    let probe = Rc::new(SimDisk::new());
    let mut log = withdrawn_then_truncated(&probe, options);
    let before = probe.stats().points;
    log.reset_to(LogIndex(7), Term(2)).unwrap();
    let points = probe.stats().points - before;
    drop(log);
    for at in 0..points {
        let disk = Rc::new(SimDisk::new());
        let mut log = withdrawn_then_truncated(&disk, options);
        let fuse = disk.stats().points + at;
        disk.set_faults(SimFaults { crash_at_point: Some(fuse), ..SimFaults::default() });
        assert!(log.reset_to(LogIndex(7), Term(2)).is_err(), "the reset crossed the crash");
        disk.crash(Tear::None);
        drop(log);
        let (log, recovery) =
            LogStore::open(Path::new(WITHDRAWN_DIR), options, disk.clone()).unwrap();
        let (first, last) = (recovery.first_index.get(), recovery.last_index.get());
        let new_log = first == 8 && last == 7 && log.term(LogIndex(7)) == Some(Term(2));
        let old_log = first == 1 && (6..=last).all(|i| log.term(LogIndex(i)) == Some(Term(2)));
        assert!(new_log || old_log, "crash at point {at} of {points}: recovered {first}..={last}");
    }
}

/// A sealed segment that cannot be mapped (the process holds `vm.max_map_count` maps) is sealed
/// unmapped, and its entries are read from the file: the log neither fails nor loses anything.
/// (Found by a review: the failed map of a roll-over poisoned the log, so a node with many logs
/// failed them one after another once their sealed segments used up the process's maps.)
#[test]
fn a_segment_that_cannot_be_mapped_is_sealed_unmapped_and_read_from_its_file() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    disk.set_faults(SimFaults { maps_fail: true, ..SimFaults::default() });
    // About 350 bytes an entry in 16 KiB segments: several roll-overs.
    append_durably(&mut log, 400, 1, 7);
    assert_eq!(log.mapped_segments(), 0, "a map was made although every map fails");
    assert!(disk.file_names(Path::new(DIR)).len() >= 8, "{:?}", disk.file_names(Path::new(DIR)));
    assert_eq!(read_all(&log), (1..=400).collect::<Vec<_>>());
    // The log goes on: a truncation into a sealed segment, and appends after it.
    log.truncate_after(LogIndex(150)).unwrap();
    append_durably(&mut log, 50, 2, 7);
    let expected: Vec<u64> = (1..=200).collect();
    assert_eq!(read_all(&log), expected);
    // Reopened with maps available, everything is there.
    drop(log);
    disk.set_faults(SimFaults::default());
    let log = open(&disk);
    assert_eq!(read_all(&log), expected);
    assert!(log.mapped_segments() > 0);
}

/// Options for the two tests below: one sealed segment kept mapped, 256 KiB segments.
fn one_mapped_options() -> LogOptions {
    LogOptions {
        sealed_segments_mapped_max: 1,
        segment_size_bytes: 256 << 10,
        batch_bytes_max: 64 << 10,
        ..small_options(true)
    }
}

/// Appends `batches` batches of 1,000 eight-byte entries, each flushed.
fn append_small_batches(log: &mut LogStore<SimDisk>, batches: u64) {
    for _ in 0..batches {
        let next = log.last_index().get() + 1;
        let batch: Vec<raftwal_wire::types::Entry> = (next..next + 1000)
            .map(|i| raftwal_wire::types::Entry {
                index: LogIndex(i),
                term: Term(1),
                kind: raftwal_wire::types::EntryKind::Normal,
                data: bytes::Bytes::copy_from_slice(&i.to_le_bytes()),
            })
            .collect();
        log.append(&batch).unwrap();
        log.flush().unwrap();
    }
}

/// The indices of the log's entries, each checked to hold its own index as written by
/// `append_small_batches`.
fn read_small(log: &LogStore<SimDisk>) -> Vec<u64> {
    let mut got = Vec::new();
    let mut next = log.first_index();
    while next <= log.last_index() {
        for e in log.read(next, 1 << 20).unwrap() {
            assert_eq!(e.data.as_ref(), &e.index.get().to_le_bytes(), "entry {}", e.index);
            got.push(e.index.get());
            next = e.index.next();
        }
    }
    got
}

/// An index 2,500 entries into the log's second segment.
fn inside_the_second_segment(log: &LogStore<SimDisk>) -> u64 {
    let (second, _) = log.segment_extents().nth(1).unwrap();
    second.get() + 2500
}

/// Segments sealed unmapped give up their record offsets beyond the newest
/// `sealed_segments_mapped_max`, as mapped ones do: a node out of maps does not keep 4 bytes per
/// entry of every segment in memory. (Found by a review: only mapped segments were counted, so
/// a segment sealed unmapped kept its offsets until a restart.)
#[test]
fn segments_sealed_unmapped_give_up_their_offsets_beyond_the_newest() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), one_mapped_options(), disk.clone()).unwrap();
    disk.set_faults(SimFaults { maps_fail: true, ..SimFaults::default() });
    append_small_batches(&mut log, 40);
    log.check_invariants();
    let sealed = log.segment_extents().count() - 1;
    assert!(sealed >= 4, "{sealed} sealed segments");
    assert_eq!(log.mapped_segments(), 0);
    assert_eq!(log.unloaded_segments(), sealed - 1, "of {sealed} sealed segments");
    assert_eq!(read_small(&log), (1..=40_000).collect::<Vec<_>>());
}

/// A truncation into a sealed segment whose offsets were given up reads them back from the file
/// when it cannot map it: the log does not fail for want of a map. (Found by a review: the
/// offsets were read back only through a map, and the failed map poisoned the log.)
#[test]
fn a_truncation_into_a_segment_without_offsets_needs_no_map() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), one_mapped_options(), disk.clone()).unwrap();
    append_small_batches(&mut log, 30);
    assert!(log.unloaded_segments() >= 3);
    disk.set_faults(SimFaults { maps_fail: true, ..SimFaults::default() });
    let cut = inside_the_second_segment(&log);
    log.truncate_after(LogIndex(cut)).unwrap();
    log.check_invariants();
    assert_eq!(read_small(&log), (1..=cut).collect::<Vec<_>>());
    append_small_batches(&mut log, 2);
    assert_eq!(log.last_index(), LogIndex(cut + 2000));
}

/// With maps working, a segment whose offsets a truncation read back (and left unmapped) takes
/// no newer segment's place among the mapped ones, and gives its offsets up again once beyond
/// the newest.
#[test]
fn a_segment_whose_offsets_were_read_back_displaces_no_newer_mapped_one() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), one_mapped_options(), disk.clone()).unwrap();
    append_small_batches(&mut log, 30);
    assert!(log.unloaded_segments() >= 3);
    let cut = inside_the_second_segment(&log);
    log.truncate_after(LogIndex(cut)).unwrap();
    log.check_invariants();
    append_small_batches(&mut log, 30);
    log.check_invariants();
    let sealed = log.segment_extents().count() - 1;
    assert_eq!(log.mapped_segments(), 1);
    assert_eq!(log.unloaded_segments(), sealed - 1);
    assert_eq!(read_small(&log), (1..=cut + 30_000).collect::<Vec<_>>());
}
