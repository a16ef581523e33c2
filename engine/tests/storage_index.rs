//! Index files of sealed segments (docs/format.md, "Segment index files"): a sealed segment's
//! index stands for the scan of its records at open when it passes its checks; a missing,
//! damaged or stale one costs a scan (and is written again), never an entry; index files live
//! only beside sealed segments; and a damaged record an index lets open skip is found when it
//! is read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::format::{decode_record, record_size_bytes, SegmentId};
use raftwal::storage::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use raftwal::storage::{Disk, LogOptions, LogStore, OpenError, ReadError, Recovery, SimDisk, Tear};
use raftwal_wire::types::{LogIndex, Term};
use std::path::Path;
use std::rc::Rc;
use storage_common::{assert_genuine, entries, small_options};

const DIR: &str = "/logs/index";

fn options() -> LogOptions {
    // One batch in flight: no pipelined gaps, so the records of a segment follow each other
    // and the walk below finds them all.
    LogOptions { batches_in_flight_max: 1, ..small_options(true) }
}

fn open_with(disk: &Rc<SimDisk>, options: LogOptions) -> (LogStore<SimDisk>, Recovery) {
    LogStore::open(Path::new(DIR), options, disk.clone()).expect("open")
}

fn open(disk: &Rc<SimDisk>) -> (LogStore<SimDisk>, Recovery) {
    open_with(disk, options())
}

/// Appends `count` entries of `term` and waits until they are durable.
fn write(log: &mut LogStore<SimDisk>, count: u64, term: u64) {
    for _ in 0..count {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, 1, term)).unwrap();
        if next.is_multiple_of(4) {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
}

fn names(disk: &SimDisk, suffix: &str) -> Vec<String> {
    disk.file_names(Path::new(DIR)).into_iter().filter(|n| n.ends_with(suffix)).collect()
}

/// Every index file stands beside a sealed segment (any but the last).
fn assert_indexes_beside_sealed_segments(disk: &SimDisk) {
    let segments = names(disk, ".seg");
    let sealed = &segments[..segments.len() - 1];
    for name in names(disk, ".idx") {
        let seg = name.replace(".idx", ".seg");
        assert!(sealed.contains(&seg), "{name} stands beside no sealed segment ({segments:?})");
    }
}

/// Checks that the log holds exactly `from..=to`, every entry genuine and of its term.
fn assert_holds(log: &LogStore<SimDisk>, from: u64, to: u64, term_of: impl Fn(u64) -> u64) {
    assert_eq!(log.first_index(), LogIndex(from));
    assert_eq!(log.last_index(), LogIndex(to));
    let mut next = from;
    while next <= to {
        let got = log.read(LogIndex(next), 1 << 20).unwrap();
        for e in &got {
            assert_genuine(e);
            assert_eq!(e.term.get(), term_of(e.index.get()), "entry {} of the wrong term", e.index);
            assert_eq!(log.term(e.index), Some(e.term), "term({}) disagrees", e.index);
        }
        next += got.len() as u64;
    }
}

/// The offsets of the records of segment `name` (records follow each other: no pipelining).
fn record_offsets(disk: &SimDisk, name: &str) -> Vec<(usize, u64)> {
    let bytes = disk.file_bytes(&Path::new(DIR).join(name)).unwrap();
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while let Ok(h) = decode_record(&bytes[at..]) {
        out.push((at, h.index.get()));
        at += record_size_bytes(h.payload_bytes as usize);
    }
    out
}

fn term_of(i: u64) -> u64 {
    match i {
        ..=70 => 1,
        71..=75 => 2,
        76..=160 => 3,
        _ => 5,
    }
}

/// 200 entries over several segments, with term changes inside segments.
fn written_log(disk: &Rc<SimDisk>) -> usize {
    let (mut log, _) = open(disk);
    write(&mut log, 70, 1);
    write(&mut log, 5, 2);
    write(&mut log, 85, 3);
    write(&mut log, 40, 5);
    let segments = names(disk, ".seg").len();
    assert!(segments >= 5, "the log spans several segments ({segments})");
    assert_eq!(log.stats().indexes_written as usize, segments - 1, "one index per roll-over");
    segments
}

#[test]
fn a_reopened_log_takes_its_sealed_segments_from_their_index_files() {
    let disk = Rc::new(SimDisk::new());
    let segments = written_log(&disk);
    assert_eq!(names(&disk, ".idx").len(), segments - 1);
    assert_indexes_beside_sealed_segments(&disk);
    let (mut log, recovery) = open(&disk);
    assert_eq!(recovery.segments, segments);
    assert_eq!(recovery.segments_indexed, segments - 1, "every sealed segment from its index");
    assert_eq!(recovery.last_index, LogIndex(200));
    assert_holds(&log, 1, 200, term_of);
    // The log goes on as if it had been scanned.
    write(&mut log, 60, 6);
    assert_holds(&log, 1, 260, |i| if i > 200 { 6 } else { term_of(i) });
    drop(log);
    let (scanned, recovery) =
        open_with(&disk, LogOptions { check_sealed_at_open: true, ..options() });
    assert_eq!(recovery.segments_indexed, 0);
    assert_holds(&scanned, 1, 260, |i| if i > 200 { 6 } else { term_of(i) });
}

#[test]
fn a_missing_damaged_or_cut_index_costs_a_scan_and_is_written_again() {
    let disk = Rc::new(SimDisk::new());
    let segments = written_log(&disk);
    let indexes = names(&disk, ".idx");
    let dir = Path::new(DIR);
    // One flipped bit, one cut short, one emptied (written, never synced, power lost), one
    // removed.
    assert!(disk.flip_bit(&dir.join(&indexes[0]), 100, 3));
    let len = disk.file_bytes(&dir.join(&indexes[1])).unwrap().len();
    assert!(disk.set_file_len(&dir.join(&indexes[1]), len - 4));
    assert!(disk.set_file_len(&dir.join(&indexes[2]), 0));
    let removed = dir.join(&indexes[3]);
    disk.remove(&removed).unwrap();
    let (log, recovery) = open(&disk);
    assert_eq!(recovery.segments_indexed, segments - 1 - 4);
    assert_holds(&log, 1, 200, term_of);
    assert!(disk.file_names(dir).contains(&indexes[3]), "{removed:?} written again");
    drop(log);
    let (log, recovery) = open(&disk);
    assert_eq!(recovery.segments_indexed, segments - 1, "the scans wrote the indexes again");
    assert_holds(&log, 1, 200, term_of);
}

/// Replaces the third segment of `written_log` by a truncation to just before it, writes it
/// again with entries of `term` (other sizes) until the log is back at 200 entries, and
/// returns the segment's id, its index file from before, and the records it holds now.
fn rewrite_third_segment(disk: &Rc<SimDisk>, term: u64) -> (SegmentId, Vec<u8>, u64) {
    written_log(disk);
    let dir = Path::new(DIR);
    let segments = names(disk, ".seg");
    let victim = SegmentId::parse_file_name(&segments[2]).unwrap();
    let old_index = disk.file_bytes(&dir.join(victim.index_file_name())).unwrap();
    let (mut log, _) = open(disk);
    log.truncate_after(victim.0.prev()).unwrap();
    assert!(
        !disk.file_names(dir).contains(&victim.index_file_name()),
        "the replaced segment's index went with it"
    );
    write(&mut log, 200 - victim.0.get() + 1, term);
    drop(log);
    let segments = names(disk, ".seg");
    let at = segments.iter().position(|n| *n == victim.file_name()).unwrap();
    let next = SegmentId::parse_file_name(&segments[at + 1]).unwrap();
    (victim, old_index, next.0.get() - victim.0.get())
}

#[test]
fn an_index_of_an_earlier_segment_of_the_same_name_is_refused() {
    // A rewrite whose segment holds no more records than the old index lists, and whose
    // header is the old one's: only the records can tell the index is not its own.
    let (disk, term, victim, old_index) = (7..40)
        .find_map(|term| {
            let disk = Rc::new(SimDisk::new());
            let (victim, old_index, live) = rewrite_third_segment(&disk, term);
            let listed = u32::from_le_bytes(old_index[72..76].try_into().unwrap()) as u64;
            (live <= listed).then_some((disk, term, victim, old_index))
        })
        .expect("some term makes larger entries");
    let dir = Path::new(DIR);
    let header = disk.file_bytes(&dir.join(victim.file_name())).unwrap();
    assert_eq!(header[..56], old_index[16..72], "the segment header is the old one's");
    let new_term = |i: u64| if i >= victim.0.get() { term } else { term_of(i) };
    let (_, recovery) = open(&disk);
    let indexed = recovery.segments_indexed;
    disk.put_file(&dir.join(victim.index_file_name()), &old_index);
    let (log, recovery) = open(&disk);
    assert_eq!(recovery.segments_indexed, indexed - 1, "the earlier segment's index is refused");
    assert_holds(&log, 1, 200, new_term);
}

#[test]
fn a_damaged_record_the_index_skips_is_found_when_read_and_by_a_checking_open() {
    let disk = Rc::new(SimDisk::new());
    written_log(&disk);
    let segments = names(&disk, ".seg");
    // A record in the middle of a sealed segment of one term (not one the index checks).
    let name = &segments[3];
    let records = record_offsets(&disk, name);
    let (offset, index) = records[records.len() / 2];
    assert!(disk.flip_bit(&Path::new(DIR).join(name), offset + RECORD_HEADER_BYTES - 4, 0));
    let (log, recovery) = open(&disk);
    assert_eq!(recovery.last_index, LogIndex(200));
    match log.read(LogIndex(index), 0) {
        Err(ReadError::Corrupt(c)) => assert_eq!(c.index, Some(LogIndex(index))),
        other => panic!("reading the damaged entry {index}: {other:?}"),
    }
    assert_genuine(&log.read(LogIndex(index + 1), 0).unwrap()[0]);
    drop(log);
    let checking = LogOptions { check_sealed_at_open: true, ..options() };
    match LogStore::open(Path::new(DIR), checking, disk.clone()) {
        Err(OpenError::Corrupt(c)) => assert_eq!(c.index, Some(LogIndex(index))),
        Err(e) => panic!("a checking open failed otherwise: {e}"),
        Ok(_) => panic!("a checking open accepted a damaged sealed record"),
    }
}

#[test]
fn index_files_stand_only_beside_sealed_segments_through_truncation_compaction_and_reset() {
    let disk = Rc::new(SimDisk::new());
    written_log(&disk);
    let (mut log, _) = open(&disk);
    let mut term = 10;
    for round in 0..12u64 {
        match round % 4 {
            0 => {
                let cut = log.last_index().get() - 30 - round;
                log.truncate_after(LogIndex(cut)).unwrap();
            }
            1 => {
                let first = log.first_index().get();
                log.compact_before(LogIndex(first + 40)).unwrap();
            }
            2 => {
                let at = log.last_index().get() + 20;
                log.reset_to(LogIndex(at), Term(term)).unwrap();
            }
            _ => {
                drop(log);
                log = open(&disk).0;
            }
        }
        term += 1;
        write(&mut log, 90, term);
        assert_indexes_beside_sealed_segments(&disk);
        let (first, last) = (log.first_index(), log.last_index());
        let terms: Vec<_> = (first.get()..=last.get()).map(|i| log.term(LogIndex(i))).collect();
        drop(log);
        let (reopened, recovery) = open(&disk);
        assert!(recovery.segments_indexed > 0, "round {round}: no index used");
        assert_eq!((reopened.first_index(), reopened.last_index()), (first, last));
        let again: Vec<_> =
            (first.get()..=last.get()).map(|i| reopened.term(LogIndex(i))).collect();
        assert_eq!(again, terms, "round {round}: terms differ after reopening");
        let mut next = first;
        while next <= last {
            let got = reopened.read(next, 1 << 20).unwrap();
            got.iter().for_each(assert_genuine);
            next = next.plus(got.len() as u64);
        }
        log = reopened;
    }
}

#[test]
fn after_a_power_loss_unsynced_index_files_are_refused_and_written_again() {
    let disk = Rc::new(SimDisk::new());
    let segments = written_log(&disk);
    disk.crash(Tear::None);
    let (log, recovery) = open(&disk);
    assert_eq!(recovery.last_index, LogIndex(200));
    assert_eq!(recovery.segments_indexed, 0, "no index was synced");
    assert_holds(&log, 1, 200, term_of);
    drop(log);
    let (_, recovery) = open(&disk);
    assert_eq!(recovery.segments_indexed, segments - 1);
}
