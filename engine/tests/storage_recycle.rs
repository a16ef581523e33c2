//! Recycled segments: `compact_before` keeps the files of compacted segments and later
//! segments reuse them (docs/format.md, "Recycled segments"). A recycled file still holds its
//! earlier use's records after the new ones; these tests check that they never come back as
//! entries, that a file is reused only where that is safe (no reader holds a payload mapped from
//! it, no record it holds has an index at or above the new segment's first), and that restarts
//! neither cut nor rewrite what they should not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use bytes::Bytes;
use raftwal::storage::format::{encode_record, record_size_bytes, SegmentHeader};
use raftwal::storage::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use raftwal::storage::{FlushError, LogOptions, LogStore, SimDisk, SimFaults, SubmitError};
use raftwal::storage::{Tear, ZeroFill};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};
use std::path::Path;
use std::rc::Rc;
use storage_common::{
    append_durably, append_until_flush_fails, assert_holds, bytes_used, entries, entry, read_all,
    small_options,
};

const DIR: &str = "/logs/recycle";

fn options() -> LogOptions {
    small_options(true)
}

fn open(disk: &Rc<SimDisk>) -> LogStore<SimDisk> {
    LogStore::open(Path::new(DIR), options(), disk.clone()).expect("open").0
}

/// Appends `count` entries of `term` and waits until they are durable.
fn write(log: &mut LogStore<SimDisk>, count: u64, term: u64) {
    append_durably(log, count, term, 3);
}

/// The header of every segment file, by name.
fn headers(disk: &SimDisk) -> Vec<(String, SegmentHeader)> {
    disk.file_names(Path::new(DIR))
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .map(|n| {
            let bytes = disk.file_bytes(&Path::new(DIR).join(&n)).unwrap();
            (n, SegmentHeader::decode(&bytes).unwrap())
        })
        .collect()
}

/// A log that compacts behind its writer reuses the compacted files; a clean restart reads
/// exactly the log (the earlier use's records after the last one are neither entries nor a torn
/// tail), and so does a crash that loses the last batch.
#[test]
fn compacted_files_are_reused_and_their_old_records_never_come_back() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    for _ in 0..12 {
        write(&mut log, 40, 1);
        log.compact_before(LogIndex(log.durable_index().get().saturating_sub(30))).unwrap();
        log.check_invariants();
    }
    let stats = log.stats();
    assert!(stats.segments_recycled >= 4, "{stats:?}");
    assert!(stats.roll_overs_recycled >= 4, "{stats:?}");
    let recycled = headers(&disk).iter().filter(|(_, h)| h.recycled).count();
    assert!(recycled > 0, "a live segment is a recycled file");
    let (first, last) = (log.first_index().get(), log.last_index().get());
    drop(log);
    let (log, recovery) = LogStore::open(Path::new(DIR), options(), disk.clone()).unwrap();
    assert_eq!(recovery.torn_tail_bytes, 0, "a clean restart cut bytes");
    assert_holds(&log, first, last, |_| 1);
    drop(log);

    // The power fails with a batch in flight, its write torn: recovery cuts it and nothing else.
    let mut log = open(&disk);
    log.append(&entries(last + 1, 20, 1)).unwrap();
    log.submit().unwrap();
    disk.crash(Tear::LastWrite { seed: 3 });
    drop(log);
    let (log, _) = LogStore::open(Path::new(DIR), options(), disk.clone()).unwrap();
    assert!(log.last_index().get() >= last);
    assert_holds(&log, first, log.last_index().get(), |_| 1);
}

/// A payload read from a mapped sealed segment is a slice of its map: while a reader holds one,
/// the file is removed at compaction (its map stays valid), not recycled (its bytes would change
/// under the reader). A payload read from a segment no longer mapped
/// (`sealed_segments_mapped_max`) is a copy, and the file is recycled under it.
#[test]
fn a_payload_a_reader_holds_keeps_its_file_from_being_recycled() {
    for mapped_max in [usize::MAX, 0] {
        let disk = Rc::new(SimDisk::new());
        let options = LogOptions { sealed_segments_mapped_max: mapped_max, ..options() };
        let mut log = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap().0;
        write(&mut log, 120, 1);
        let held: Vec<Entry> = log.read(LogIndex(1), 4096).unwrap();
        assert!(!held.is_empty());
        let copy: Vec<Entry> = held.iter().map(|e| entry(e.index.get(), e.term.get())).collect();
        // Segments 1 to 3 go: the first one, if the reader maps it, is removed; the others are
        // kept.
        log.compact_before(LogIndex(100)).unwrap();
        let names = disk.file_names(Path::new(DIR));
        let first_kept = names.contains(&"recycled-00000000000000000001.tmp".to_owned());
        assert_eq!(first_kept, mapped_max == 0, "{mapped_max}: {names:?}");
        assert!(names.iter().any(|n| n.starts_with("recycled-")), "{names:?}");
        write(&mut log, 200, 1);
        assert!(log.stats().roll_overs_recycled > 0, "a kept file was reused");
        assert_eq!(held, copy, "{mapped_max}: a held payload changed");
    }
}

/// A truncation leaves the records it cut in the bytes of the segment it cut into. When that
/// segment is compacted, its file may not serve a segment whose first index is at or below
/// those records (they would read as the new segment's own): it is removed instead.
#[test]
fn a_file_holding_cut_records_is_never_reused_below_them() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    // Segment 1 gets entries of term 1; the cut at 5 leaves 6.. of term 1 in its bytes.
    write(&mut log, 20, 1);
    assert_eq!(log.first_index(), LogIndex(1));
    log.truncate_after(LogIndex(5)).unwrap();
    write(&mut log, 60, 2);
    // Compacting before 6 keeps the file of segment 1 (entries 1 to 5 live, up to 20 cut).
    let recycled_before = log.stats().segments_recycled;
    log.compact_before(LogIndex(6)).unwrap();
    assert_eq!(log.first_index(), LogIndex(6));
    assert!(log.stats().segments_recycled > recycled_before, "{:?}", log.stats());
    // One more roll-over, after which that file is the segment prepared ahead.
    let rolled = log.stats().roll_overs_prepared;
    while log.stats().roll_overs_prepared == rolled {
        write(&mut log, 5, 2);
    }
    // A new leader cuts back to 5: the new segment 6 must not be that file, whose records 6 to
    // 20 of term 1 would follow the new ones (a restart would take them for records of
    // batches written after the new ones were durable: corruption).
    let recycled_rolls = log.stats().roll_overs_recycled;
    log.truncate_after(LogIndex(5)).unwrap();
    assert_eq!(log.stats().roll_overs_recycled, recycled_rolls, "the file was reused below");
    write(&mut log, 3, 3);
    assert_holds(&log, 6, 8, |_| 3);
    drop(log);
    let (log, _) = LogStore::open(Path::new(DIR), options(), disk.clone()).unwrap();
    assert_holds(&log, 6, 8, |_| 3);
    assert_eq!(read_all(&log, 1 << 20), vec![6, 7, 8]);
}

/// A recycled file's bytes after the new records are its earlier use's, payloads included, and
/// a payload may hold bytes that form valid records (a copy of some log's segment, say). Here
/// the payload of entry 1 holds records of indexes 906 to 913 where, once its file serves
/// segment 778, the records of 778 to 905 end: a restart must not read them as entries nobody
/// appended.
#[test]
fn records_held_in_an_earlier_use_s_payloads_never_read_as_entries() {
    let options =
        LogOptions { zero_fill: ZeroFill::Never, batches_in_flight_max: 1, ..small_options(true) };
    let (segment, empty) = (options.segment_size_bytes as usize, record_size_bytes(0));
    let plain = |index: u64, data: Vec<u8>| Entry {
        index: LogIndex(index),
        term: Term(1),
        kind: EntryKind::Normal,
        data: Bytes::from(data),
    };
    // Segment 1: entries 1 (8000 bytes) and 2 (4000 bytes), then 3 to 9 (empty) fill it.
    // Segments 10 and 394 hold 384 empty entries each; the file of segment 1, compacted once
    // segment 10 is active, serves segment 778. Its 128 records end at the block boundary 8192,
    // which the payload of entry 1 crosses 4064 bytes in.
    let (first_fill, per_segment) =
        (2 + (segment - 4096 - 8032 - 4032) / empty, (segment - 4096) / empty);
    let reused_first = (first_fill + 1 + 2 * per_segment) as u64;
    assert_eq!(reused_first, 778);
    let boundary = SEGMENT_HEADER_BYTES + 128 * empty;
    let mut payload = vec![0u8; 8000];
    for k in 0..8 {
        let at = boundary - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES + k * empty;
        let index = LogIndex(reused_first + 128 + k as u64);
        encode_record(&mut payload[at..at + empty], index, Term(1), EntryKind::Normal, 0, &[]);
    }
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    log.append(&[plain(1, payload), plain(2, vec![7; 4000])]).unwrap();
    log.flush().unwrap();
    let mut next = 3;
    while next < reused_first + 128 {
        log.append(&[plain(next, Vec::new())]).unwrap();
        log.flush().unwrap();
        next += 1;
        if log.first_index() == LogIndex(1) && log.stats().roll_overs_prepared > 0 {
            log.compact_before(LogIndex(next)).unwrap();
        }
        if next == reused_first + 1 {
            assert_eq!(log.stats().roll_overs_recycled, 1, "{:?}", log.stats());
        }
    }
    let last = log.last_index();
    drop(log);
    let (log, recovery) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    assert_eq!(
        recovery.last_index,
        last,
        "entries nobody appended: {:?}",
        log.read(last.next(), 99)
    );
}

/// The remedy for a full disk is compaction; with recycling it keeps the compacted files
/// instead of freeing their space. When the log ran out of space preparing its next segment,
/// the next segment must then come from a kept file: the queued entries go out.
#[test]
fn compaction_after_running_out_of_space_lets_the_log_go_on() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk);
    // Room for the hard state and three segment files (two segments and the one prepared
    // ahead): the fourth, prepared after the second roll-over, does not fit.
    let used = bytes_used(&disk, Path::new(DIR));
    let segment = options().segment_size_bytes;
    let capacity = used + 2 * segment + 1000;
    disk.set_faults(SimFaults { capacity_bytes: Some(capacity), ..SimFaults::default() });
    let mut next = 1;
    let err = append_until_flush_fails(&mut log, &mut next);
    assert!(matches!(err, FlushError::Submit(SubmitError::NoSpace(_))), "{err}");
    // Every segment but the active one goes; their files are kept for reuse.
    log.compact_before(log.durable_index()).unwrap();
    assert!(log.stats().segments_recycled > 0, "{:?}", log.stats());
    let last = log.last_index();
    assert_eq!(log.flush().unwrap(), last, "the queued entries went out");
    log.append(&entries(last.get() + 1, 20, 1)).unwrap();
    log.flush().unwrap();
    let (first, last) = (log.first_index().get(), log.last_index().get());
    drop(log);
    disk.set_faults(SimFaults::default());
    let log = open(&disk);
    assert_holds(&log, first, last, |_| 1);
}
