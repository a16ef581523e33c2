//! Maps of sealed segments (`LogOptions::sealed_segments_mapped_max`): only the newest sealed
//! segments stay mapped, older ones are read with `pread`, and a segment a reader holds
//! payloads of stays mapped until they are dropped (the store must know while they live that
//! its file may not be written).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::{Disk, LogOptions, LogStore, SimDisk};
use raftwal_wire::types::LogIndex;
use std::path::Path;
use std::rc::Rc;
use storage_common::{append_durably, assert_genuine, small_options};

const DIR: &str = "/logs/maps";

fn options(mapped_max: usize) -> LogOptions {
    LogOptions { sealed_segments_mapped_max: mapped_max, ..small_options(true) }
}

fn write(log: &mut LogStore<SimDisk>, count: u64) {
    append_durably(log, count, 1, 5);
    log.check_invariants();
}

fn assert_reads_back(log: &LogStore<SimDisk>) {
    let mut next = log.first_index();
    while next <= log.last_index() {
        let got = log.read(next, 3000).unwrap();
        assert_eq!(got[0].index, next);
        got.iter().for_each(assert_genuine);
        next = next.plus(got.len() as u64);
    }
}

fn segments(disk: &SimDisk) -> usize {
    disk.file_names(Path::new(DIR)).iter().filter(|n| n.ends_with(".seg")).count()
}

#[test]
fn only_the_newest_sealed_segments_stay_mapped_and_the_older_ones_read_back() {
    for mapped_max in [0, 3] {
        let disk = Rc::new(SimDisk::new());
        let (mut log, _) =
            LogStore::open(Path::new(DIR), options(mapped_max), disk.clone()).unwrap();
        write(&mut log, 300);
        assert!(segments(&disk) > mapped_max + 3, "{} segments", segments(&disk));
        assert_eq!(log.mapped_segments(), mapped_max);
        assert_reads_back(&log);
        drop(log);
        let (log, _) = LogStore::open(Path::new(DIR), options(mapped_max), disk.clone()).unwrap();
        log.check_invariants();
        assert_eq!(log.mapped_segments(), mapped_max, "after reopening");
        assert_reads_back(&log);
    }
}

#[test]
fn a_segment_a_reader_holds_stays_mapped_until_the_payload_is_dropped() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), options(1), disk.clone()).unwrap();
    write(&mut log, 100);
    // Read from the newest sealed segment (mapped: the payload is a slice of its map).
    let sealed_last = log.segment_extents().rev().nth(1).unwrap().0;
    let held = log.read(sealed_last, 0).unwrap();
    assert_eq!(log.mapped_segments(), 1);
    // Two more roll-overs: the held segment stays mapped beside the newest one.
    let before = segments(&disk);
    while segments(&disk) < before + 2 {
        write(&mut log, 10);
    }
    assert_eq!(log.mapped_segments(), 2, "the held segment is still mapped");
    assert_genuine(&held[0]);
    drop(held);
    let before = segments(&disk);
    while segments(&disk) < before + 1 {
        write(&mut log, 10);
    }
    assert_eq!(log.mapped_segments(), 1, "released, it is unmapped at the next roll-over");
    assert_reads_back(&log);
}

/// Entries with 8-byte payloads: a record of 40 bytes, so a 256 KiB segment holds more records
/// than a read takes offsets from an index file at once (4,096).
fn tiny(from: u64, count: u64, term: u64) -> Vec<raftwal_wire::types::Entry> {
    (from..from + count)
        .map(|i| raftwal_wire::types::Entry {
            index: LogIndex(i),
            term: raftwal_wire::types::Term(term),
            kind: raftwal_wire::types::EntryKind::Normal,
            data: bytes::Bytes::copy_from_slice(&(i ^ (term << 40)).to_le_bytes()),
        })
        .collect()
}

fn assert_tiny(e: &raftwal_wire::types::Entry, term_of: impl Fn(u64) -> u64) {
    let i = e.index.get();
    assert_eq!(e.term.get(), term_of(i), "term of {i}");
    assert_eq!(e.data[..], (i ^ (term_of(i) << 40)).to_le_bytes(), "payload of {i}");
}

/// Appends `batches` durable batches of 1,000 tiny entries of term 1.
fn append_tiny_batches(log: &mut LogStore<SimDisk>, batches: u64) {
    for _ in 0..batches {
        let next = log.last_index().get() + 1;
        log.append(&tiny(next, 1000, 1)).unwrap();
        log.flush().unwrap();
    }
}

fn tiny_options(mapped_max: usize) -> LogOptions {
    LogOptions { segment_size_bytes: 256 << 10, batch_bytes_max: 64 << 10, ..options(mapped_max) }
}

/// Reads every entry of `log` in runs of up to `max_bytes` (checking each); returns how many
/// reads it took.
fn read_tiny(log: &LogStore<SimDisk>, max_bytes: usize, term_of: &dyn Fn(u64) -> u64) -> usize {
    let (mut next, mut reads) = (log.first_index(), 0);
    while next <= log.last_index() {
        let got = log.read(next, max_bytes).unwrap();
        for (k, e) in got.iter().enumerate() {
            assert_eq!(e.index, next.plus(k as u64), "a read's entries follow each other");
        }
        got.iter().for_each(|e| assert_tiny(e, term_of));
        next = next.plus(got.len() as u64);
        reads += 1;
    }
    reads
}

#[test]
fn unmapped_segments_give_up_their_offsets_and_read_them_from_their_index_files() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), tiny_options(1), disk.clone()).unwrap();
    append_tiny_batches(&mut log, 40);
    log.check_invariants();
    let sealed = segments(&disk) - 1;
    assert!(sealed >= 4, "{sealed} sealed segments");
    assert_eq!(log.unloaded_segments(), sealed - 1, "all but the newest sealed one");
    // One read of everything crosses the reads of offsets (4,096 records at a time) and the
    // segments.
    assert_eq!(read_tiny(&log, 64 << 20, &|_| 1), 1);
    drop(log);
    let (log, _) = LogStore::open(Path::new(DIR), tiny_options(1), disk.clone()).unwrap();
    log.check_invariants();
    assert_eq!(log.unloaded_segments(), sealed - 1, "after reopening");
    read_tiny(&log, 3000, &|_| 1);
}

#[test]
fn a_truncation_into_a_segment_without_its_offsets_cuts_exactly_there() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), tiny_options(0), disk.clone()).unwrap();
    append_tiny_batches(&mut log, 30);
    assert!(log.unloaded_segments() >= 3);
    // Cut in the middle of the second segment, which holds no offsets in memory.
    let (second, _) = log.segment_extents().nth(1).unwrap();
    let cut = second.get() + 2500;
    log.truncate_after(LogIndex(cut)).unwrap();
    log.check_invariants();
    assert_eq!(log.last_index(), LogIndex(cut));
    let next = cut + 1;
    log.append(&tiny(next, 9000, 2)).unwrap();
    log.flush().unwrap();
    let term_of = move |i: u64| if i > cut { 2 } else { 1 };
    read_tiny(&log, 1 << 20, &term_of);
    drop(log);
    let (log, _) = LogStore::open(Path::new(DIR), tiny_options(0), disk.clone()).unwrap();
    assert_eq!(log.last_index(), LogIndex(cut + 9000));
    read_tiny(&log, 1 << 20, &term_of);
}

#[test]
fn a_damaged_or_missing_index_file_under_a_running_log_is_a_read_error_never_a_wrong_entry() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), tiny_options(0), disk.clone()).unwrap();
    append_tiny_batches(&mut log, 12);
    let (first, _) = log.segment_extents().next().unwrap();
    let index = Path::new(DIR).join(raftwal::storage::SegmentId(first).index_file_name());
    let len = disk.file_bytes(&index).unwrap().len();
    let mut errors = 0;
    // Bits of the offsets (after the header fields and one term change), a few hundred apart.
    for offset in (112..len - 4).step_by(397) {
        for bit in [0u8, 3, 7] {
            assert!(disk.flip_bit(&index, offset, bit));
            let mut next = first;
            while next <= log.last_index() {
                match log.read(next, 4096) {
                    Ok(got) => {
                        got.iter().for_each(|e| assert_tiny(e, |_| 1));
                        next = next.plus(got.len() as u64);
                    }
                    Err(raftwal::storage::ReadError::Corrupt(_)) => {
                        errors += 1;
                        next = next.next();
                    }
                    Err(e) => panic!("reading {next}: {e}"),
                }
            }
            assert!(disk.flip_bit(&index, offset, bit));
        }
    }
    assert!(errors > 0, "some flipped offsets were noticed");
    disk.remove(&index).unwrap();
    match log.read(first, 4096) {
        Err(raftwal::storage::ReadError::Io { .. }) => {}
        other => panic!("reading with the index file gone: {other:?}"),
    }
}
