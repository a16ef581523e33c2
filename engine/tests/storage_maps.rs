//! Maps of sealed segments (`LogOptions::sealed_segments_mapped_max`): only the newest sealed
//! segments stay mapped, older ones are read with `pread`, and a segment a reader holds
//! payloads of stays mapped until they are dropped (the store must know while they live that
//! its file may not be written).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::{LogOptions, LogStore, SimDisk};
use std::path::Path;
use std::rc::Rc;
use storage_common::{assert_genuine, entries, small_options};

const DIR: &str = "/logs/maps";

fn options(mapped_max: usize) -> LogOptions {
    LogOptions { sealed_segments_mapped_max: mapped_max, ..small_options(true) }
}

fn write(log: &mut LogStore<SimDisk>, count: u64) {
    for _ in 0..count {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, 1, 1)).unwrap();
        if next.is_multiple_of(5) {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
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
