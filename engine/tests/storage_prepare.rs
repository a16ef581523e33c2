//! Background preparation of segments on the simulated disk: roll-overs use the segment
//! prepared ahead; a leftover prepared file is never read as part of the log, whatever it
//! holds; a failed background fdatasync or write does not poison the log and roll-over falls
//! back to creating a segment; zero-fill never changes a stored record; each policy does what
//! it says.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::{Disk, LogOptions, LogStore, SimDisk, SimFaults, Tear, ZeroFill};
use std::path::Path;
use std::rc::Rc;
use storage_common::{entries, small_options};

const DIR: &str = "/logs/p";
const SPARE: &str = "next-segment.tmp";

fn open(disk: &Rc<SimDisk>, options: LogOptions) -> LogStore<SimDisk> {
    LogStore::open(Path::new(DIR), options, disk.clone()).unwrap().0
}

fn read_all(log: &LogStore<SimDisk>) -> Vec<u64> {
    storage_common::read_all(log, 1 << 20)
}

/// Appends `rounds` batches of `per_batch` entries, flushing each.
fn fill(log: &mut LogStore<SimDisk>, rounds: u64, per_batch: u64) {
    for _ in 0..rounds {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, per_batch, 1)).unwrap();
        log.flush().unwrap();
        log.check_invariants();
    }
}

/// Lets the background work run to its end (no batch pending).
fn settle(log: &mut LogStore<SimDisk>) {
    for _ in 0..10_000 {
        log.wait().unwrap();
        log.check_invariants();
    }
}

#[test]
fn roll_overs_use_the_segment_prepared_ahead() {
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk, small_options(true));
    fill(&mut log, 60, 5);
    let stats = log.stats();
    assert_eq!(stats.segments_created, 1, "only the first segment is made on the spot: {stats:?}");
    assert!(stats.roll_overs_prepared >= 3, "{stats:?}");
    assert!(stats.background_writes > 0 && stats.background_syncs > 0, "{stats:?}");
    let names = disk.file_names(Path::new(DIR));
    assert!(names.contains(&SPARE.to_owned()), "the next segment is ready: {names:?}");
    let last = log.last_index().get();
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk, small_options(true));
    assert_eq!(read_all(&log), (1..=last).collect::<Vec<_>>());
    assert!(!disk.file_names(Path::new(DIR)).contains(&SPARE.to_owned()), "open removes it");
}

/// Whatever a crash leaves in the prepared file (zeros, a torn zero-fill, even a complete
/// segment whose records continue the log), open removes it and never reads it.
#[test]
fn a_leftover_prepared_segment_is_never_read() {
    let disk = Rc::new(SimDisk::new());
    let options = small_options(true);
    let mut log = open(&disk, options);
    fill(&mut log, 30, 5);
    let last = log.last_index().get();
    // A complete, valid segment that continues the log, under the prepared file's name.
    let (other, _) = LogStore::open(Path::new("/logs/other"), options, disk.clone()).unwrap();
    drop(other);
    let mut writer = LogStore::open(Path::new("/logs/other"), options, disk.clone()).unwrap().0;
    writer.append(&entries(1, last + 20, 1)).unwrap();
    writer.flush().unwrap();
    drop(writer);
    let donor = disk
        .file_names(Path::new("/logs/other"))
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .find(|n| {
            let first: u64 = n.trim_end_matches(".seg").parse().unwrap();
            first > last
        })
        .expect("the donor log has a segment after our last index");
    let bytes = disk.file_bytes(&Path::new("/logs/other").join(&donor)).unwrap();
    disk.crash(Tear::None);
    drop(log);
    let spare = Path::new(DIR).join(SPARE);
    let _ = disk.remove(&spare);
    let f = disk
        .open(&spare, raftwal::storage::disk::OpenOptions { create_new: true, direct: false })
        .unwrap();
    disk.write_at(f, 0, &bytes).unwrap();
    disk.sync(f).unwrap();
    disk.close(f);
    disk.sync_dir(Path::new(DIR)).unwrap();
    let mut log = open(&disk, options);
    assert_eq!(read_all(&log), (1..=last).collect::<Vec<_>>(), "the prepared file was read");
    assert!(!disk.file_names(Path::new(DIR)).contains(&SPARE.to_owned()));
    // The log goes on, preparing a fresh next segment.
    fill(&mut log, 30, 5);
    assert_eq!(read_all(&log).len() as u64, last + 150);
}

#[test]
fn a_failed_background_fdatasync_does_not_poison_and_roll_over_falls_back() {
    let disk = Rc::new(SimDisk::new());
    let options = small_options(true);
    let mut log = open(&disk, options);
    fill(&mut log, 1, 3);
    // No batch is pending: the next fdatasync is a background one (of the prepared segment).
    let bg_syncs = disk.stats().background_syncs;
    disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    for _ in 0..1000 {
        log.wait().unwrap();
        if !disk.faults().fail_next_sync {
            break;
        }
    }
    assert!(!disk.faults().fail_next_sync, "no background fdatasync ran");
    assert_eq!(disk.stats().background_syncs, bg_syncs + 1, "the failed one was background");
    assert!(log.poisoned().is_none(), "a failed background fdatasync poisoned the log");
    let created = log.stats().segments_created;
    fill(&mut log, 60, 5);
    assert!(log.stats().segments_created > created, "roll-over did not fall back");
    assert!(log.stats().roll_overs_prepared > 0, "preparation resumed after the roll-over");
    let last = log.last_index().get();
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk, options);
    assert_eq!(read_all(&log), (1..=last).collect::<Vec<_>>());
}

#[test]
fn a_crash_during_background_work_keeps_the_log_exact() {
    // A crash at each point of a quiet log's background work (zero-fill ahead of the writer,
    // the prepared segment's creation, zero-fill and fdatasync), with a torn last write.
    let options = LogOptions { segment_size_bytes: 64 * 1024, ..small_options(true) };
    let base = Rc::new(SimDisk::new());
    let mut log = open(&base, options);
    fill(&mut log, 3, 4);
    let start = base.stats().points;
    settle(&mut log);
    let background_points = base.stats().points - start;
    assert!(background_points > 5, "the quiet log did background work ({background_points})");
    drop(log);
    for k in 0..background_points {
        let disk = Rc::new(SimDisk::new());
        let mut log = open(&disk, options);
        fill(&mut log, 3, 4);
        let at = disk.stats().points + k;
        disk.set_faults(SimFaults { crash_at_point: Some(at), ..SimFaults::default() });
        for _ in 0..1000 {
            if log.wait().is_err() || disk.is_crashed() {
                break;
            }
        }
        assert!(disk.is_crashed(), "point {k} was not reached");
        disk.crash(Tear::LastWrite { seed: k * 13 + 5 });
        drop(log);
        let log = open(&disk, options);
        log.check_invariants();
        assert_eq!(read_all(&log), (1..=12).collect::<Vec<_>>(), "crash at background point {k}");
    }
}

#[test]
fn zero_fill_never_changes_a_stored_record() {
    // Manual mode: background zero-fill writes queue up behind batches and run interleaved
    // with them; every record stays readable and genuine after each step.
    let disk = Rc::new(SimDisk::new());
    let options = LogOptions { zero_chunk_bytes: 4096, ..small_options(true) };
    let mut log = open(&disk, options);
    disk.set_manual(true);
    let mut next = 1;
    for round in 0..200u64 {
        log.append(&entries(next, 1 + round % 4, 1)).unwrap();
        next += 1 + round % 4;
        log.submit().unwrap();
        disk.run_pending(1 + (round % 3) as usize);
        log.process_completions().unwrap();
        log.check_invariants();
        let stored = read_all(&log);
        assert_eq!(stored.len() as u64, log.last_index().get());
    }
    disk.set_manual(false);
    let last = log.flush().unwrap().get();
    assert!(log.stats().background_writes > 10, "{:?}", log.stats());
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk, options);
    assert_eq!(read_all(&log), (1..=last).collect::<Vec<_>>());
}

#[test]
fn policies() {
    // Zero-fill writes of 8 KiB; a prepared segment's header block alone is 4 KiB.
    let run = |zero_fill: ZeroFill, per_batch: u64| {
        let disk = Rc::new(SimDisk::new());
        let options = LogOptions {
            segment_size_bytes: 32 * 1024,
            zero_fill,
            zero_chunk_bytes: 8 * 1024,
            ..small_options(true)
        };
        let mut log = open(&disk, options);
        fill(&mut log, 60, per_batch);
        settle(&mut log);
        log.stats()
    };
    // Never: only the header block of each prepared segment.
    let never = run(ZeroFill::Never, 4);
    assert!(never.roll_overs_prepared > 0, "{never:?}");
    assert_eq!(never.background_bytes, 4096 * never.background_writes, "{never:?}");
    // Always: whole segments, in 8 KiB writes.
    let always = run(ZeroFill::Always, 4);
    assert!(always.background_bytes > 4 * never.background_bytes, "{always:?} vs {never:?}");
    // Batches of 5 entries hold about 1.8 KiB: below 1 KiB zero-fill stops, below 8 KiB it
    // runs.
    let below_small = run(ZeroFill::BatchBytesBelow(1024), 5);
    let below_large = run(ZeroFill::BatchBytesBelow(8192), 5);
    assert_eq!(
        below_small.background_bytes,
        4096 * below_small.background_writes,
        "{below_small:?}"
    );
    assert!(
        below_large.background_bytes > 4 * below_small.background_bytes,
        "{below_large:?} vs {below_small:?}"
    );
}
