//! Index files of sealed segments (docs/format.md, "Segment index files"): a sealed segment's
//! index stands for the scan of its records at open when it passes its checks; a missing,
//! damaged or stale one costs a scan (and is written again), never an entry; index files live
//! only beside sealed segments; a damaged record an index lets open skip is found when it is
//! read; and at every crash point of a workload that truncates, compacts, resets and reopens,
//! open recovers an allowed log, the same from the index files as from a scan.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::format::{decode_record, record_size_bytes, SegmentId};
use raftwal::storage::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use raftwal::storage::{Disk, LogOptions, LogStore, OpenError, ReadError, Recovery, SimDisk};
use raftwal::storage::{SimFaults, Tear};
use raftwal_wire::types::{LogIndex, Term};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::rc::Rc;
use storage_common::{append_durably, assert_genuine, assert_holds, entries, small_options};

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
    append_durably(log, count, term, 4);
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
    // The scans found what the index files list: they stay, and the segments beyond the
    // mapped ones read their offsets from them.
    assert_eq!(scanned.stats().indexes_written, 0, "valid index files are not written again");
    let sealed = names(&disk, ".seg").len() - 1;
    assert_eq!(scanned.unloaded_segments(), sealed - options().sealed_segments_mapped_max);
}

#[test]
fn open_asks_the_device_ahead_for_everything_the_index_checks_read() {
    let disk = Rc::new(SimDisk::new());
    written_log(&disk);
    // More segments than recovery asks for ahead of itself (64): it asks window by window.
    let (mut log, _) = open(&disk);
    write(&mut log, 4000, 5);
    drop(log);
    let segments = names(&disk, ".seg").len();
    assert!(segments > 100, "{segments} segments");
    disk.take_prefetches();
    let (_log, recovery) = open(&disk);
    assert_eq!(recovery.segments_indexed, segments - 1);
    let asked = disk.take_prefetches();
    let dir = Path::new(DIR);
    let covered = |name: &str, at: u64| {
        asked.iter().any(|(p, o, l)| p == &dir.join(name) && *o <= at && at < o + (*l).max(1))
    };
    let seg_names = names(&disk, ".seg");
    for name in &seg_names {
        // Every header and first record.
        assert!(covered(name, 0) && covered(name, SEGMENT_HEADER_BYTES as u64), "{name}");
    }
    for name in &seg_names[..segments - 1] {
        let index = name.replace(".seg", ".idx");
        assert!(asked.contains(&(dir.join(&index), 0, 0)), "{index} whole");
        // The last record and both sides of every term change: what the checks decode.
        let records = record_offsets(&disk, name);
        let (first, last) = (records[0].1, records[records.len() - 1].1);
        for (k, &(at, i)) in records.iter().enumerate() {
            let changes_here = k > 0 && term_of(i) != term_of(i - 1);
            let before_change = k + 1 < records.len() && term_of(i + 1) != term_of(i);
            if i == first || i == last || changes_here || before_change {
                assert!(covered(name, at as u64), "{name}: record {i} at {at} not asked for");
            }
        }
    }
    // The term changes of this log fall inside segments: those records were asked for too.
    assert!(asked.len() > 3 * (segments - 1), "{} requests", asked.len());
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

/// The directory the crash tests work in.
const CRASH_DIR: &str = "/logs/index-crash";

/// What the caller of `crash_workload` was told: the log as it sees it (appended entries
/// included, a truncation's or a reset's effect once it returned) and how far it is durable.
#[derive(Default)]
struct Told {
    /// index -> term of every entry of the caller's log.
    current: BTreeMap<u64, u64>,
    /// Entries up to here were reported durable (and not truncated since).
    durable: u64,
    /// A truncation or reset under way, to this index: entries after it may be gone.
    cutting: Option<u64>,
}

impl Told {
    fn append(&mut self, log: &mut LogStore<SimDisk>, count: u64, term: u64) -> Result<(), String> {
        let mut k = 0;
        while k < count {
            let n = (count - k).min(k % 4 + 1);
            let next = log.last_index().get() + 1;
            self.current.extend((next..next + n).map(|i| (i, term)));
            log.append(&entries(next, n, term)).map_err(|e| e.to_string())?;
            self.durable = log.flush().map_err(|e| e.to_string())?.get();
            k += n;
        }
        Ok(())
    }

    fn truncate(&mut self, log: &mut LogStore<SimDisk>, to: u64) -> Result<(), String> {
        self.cutting = Some(to);
        log.truncate_after(LogIndex(to)).map_err(|e| e.to_string())?;
        self.current.retain(|&i, _| i <= to);
        self.durable = self.durable.min(to);
        self.cutting = None;
        Ok(())
    }

    fn reset(&mut self, log: &mut LogStore<SimDisk>, to: u64, term: u64) -> Result<(), String> {
        self.cutting = Some(to.min(self.durable));
        log.reset_to(LogIndex(to), Term(term)).map_err(|e| e.to_string())?;
        self.current.clear();
        self.durable = to;
        self.cutting = None;
        Ok(())
    }

    /// A log recovered after a crash holds only entries of the caller's log, and every entry
    /// reported durable (unless a truncation or reset dropping it was under way).
    fn check(&self, log: &LogStore<SimDisk>, what: &str) {
        log.check_invariants();
        let required = self.cutting.map_or(self.durable, |to| self.durable.min(to));
        let last = log.last_index().get();
        assert!(last >= required, "{what}: durable entries lost: last {last} < {required}");
        for (i, term) in view(log).3 {
            assert_eq!(self.current.get(&i), Some(&term), "{what}: entry {i} of term {term}");
        }
    }
}

/// The `.seg` names of the log in `CRASH_DIR`, sorted.
fn crash_segments(disk: &SimDisk) -> Vec<SegmentId> {
    let mut ids: Vec<SegmentId> = disk
        .file_names(Path::new(CRASH_DIR))
        .iter()
        .filter_map(|n| SegmentId::parse_file_name(n))
        .collect();
    ids.sort();
    ids
}

/// Roll-overs; truncations into sealed segments, reopenings that take those segments from
/// their index files (which list the records cut after the live ones), and truncations
/// further back that clear the records cut from them (from `written_max`, which such a
/// segment's index file gave); a truncation that replaces a sealed segment; compactions whose
/// files are recycled; resets inside, below and beyond the log; and more reopenings.
fn crash_workload(disk: &Rc<SimDisk>, told: &mut Told) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let dir = Path::new(CRASH_DIR);
    let open = || LogStore::open(dir, options(), disk.clone()).map(|o| o.0).map_err(|x| e(&x));
    let mut log = open()?;
    told.append(&mut log, 150, 1)?;
    let ids = crash_segments(disk);
    // Cut into the segment before the active one, then into the one before that: its
    // records after the cut stay on disk, listed in its index file.
    let (a, b) = (ids[ids.len() - 3], ids[ids.len() - 2]);
    told.truncate(&mut log, b.0.get() + 3)?;
    told.append(&mut log, 60, 2)?;
    told.truncate(&mut log, a.0.get() + 3)?;
    told.append(&mut log, 80, 3)?;
    drop(log);
    let mut log = open()?;
    // Back into the segment before it, which is the last one for a moment while the later
    // ones go: its cut records are cleared first (its written_max came from its index file).
    told.truncate(&mut log, a.0.get() - 5)?;
    told.append(&mut log, 80, 4)?;
    let first = log.first_index().get();
    log.compact_before(LogIndex(first + 70)).map_err(|x| e(&x))?;
    told.append(&mut log, 100, 4)?;
    drop(log);
    let mut log = open()?;
    // Replace the last sealed segment.
    let ids = crash_segments(disk);
    told.truncate(&mut log, ids[ids.len() - 2].0.get() - 1)?;
    told.append(&mut log, 50, 5)?;
    let first = log.first_index().get();
    log.compact_before(LogIndex(first + 60)).map_err(|x| e(&x))?;
    let inside = log.last_index().get() - 30;
    told.reset(&mut log, inside, 6)?;
    told.append(&mut log, 90, 7)?;
    drop(log);
    let mut log = open()?;
    let below = log.first_index().get() - 5;
    told.reset(&mut log, below, 8)?;
    told.append(&mut log, 70, 8)?;
    let beyond = log.last_index().get() + 20;
    told.reset(&mut log, beyond, 9)?;
    told.append(&mut log, 70, 9)?;
    Ok(())
}

/// A copy of the files of `CRASH_DIR` on a new disk, as they are now (durable there).
fn copy_of(disk: &SimDisk) -> Rc<SimDisk> {
    let dir = Path::new(CRASH_DIR);
    let copy = Rc::new(SimDisk::new());
    for name in disk.file_names(dir) {
        copy.put_file(&dir.join(&name), &disk.file_bytes(&dir.join(&name)).unwrap());
    }
    copy
}

/// Everything a log shows: its first and last index, the term of each index from the one
/// before the first on, and every entry read, as (index, term) (each checked genuine).
#[derive(Debug, PartialEq, Eq)]
struct View(u64, u64, Vec<Option<Term>>, Vec<(u64, u64)>);

fn view(log: &LogStore<SimDisk>) -> View {
    let (first, last) = (log.first_index().get(), log.last_index().get());
    let terms = (first - 1..=last + 1).map(|i| log.term(LogIndex(i))).collect();
    let mut entries = Vec::new();
    let mut next = first;
    while next <= last {
        let got = log.read(LogIndex(next), 1 << 13).unwrap();
        for e in &got {
            assert_genuine(e);
            entries.push((e.index.get(), e.term.get()));
        }
        next += got.len() as u64;
    }
    View(first, last, terms, entries)
}

/// What a log opened from a crashed directory does next: cut into its sealed segments,
/// compact every sealed segment (recycling two files), write across several roll-overs into
/// the recycled files, reopen. Returns the log and what was recycled.
fn go_on(disk: &Rc<SimDisk>, mut log: LogStore<SimDisk>, check: bool) -> impl PartialEq + Debug {
    let before = log.stats();
    let last = log.last_index().get();
    let first = log.first_index().get();
    let mut term = log.term(LogIndex(last)).unwrap().get() + 1;
    if last > first + 45 {
        log.truncate_after(LogIndex(last - 45)).unwrap();
        crash_write(&mut log, 10, term);
        term += 1;
    }
    log.compact_before(log.last_index()).unwrap();
    crash_write(&mut log, 120, term);
    let stats = log.stats().since(&before);
    drop(log);
    let options = LogOptions { check_sealed_at_open: check, ..options() };
    let (log, _) = LogStore::open(Path::new(CRASH_DIR), options, disk.clone()).unwrap();
    (view(&log), stats.segments_recycled, stats.roll_overs_recycled)
}

fn crash_write(log: &mut LogStore<SimDisk>, count: u64, term: u64) {
    Told::default().append(log, count, term).unwrap();
}

/// At every write and sync point of `crash_workload`, a power loss (with and without a torn
/// last write, and after a partial writeback), a killed process, and a killed process whose
/// restart (which trusts index files read from the caches) is followed by a power loss after a
/// partial writeback. The directory left opens to an allowed log, the same whether open takes
/// the sealed segments from their index files or scans them all; and both logs go on the same.
/// Index files are never synced: only a writeback (or the caches, after a kill) saves them, so
/// the writebacks are what makes opens after a power loss trust index files at all.
#[test]
fn every_crash_point_opens_the_same_with_and_without_index_files() {
    let clean = Rc::new(SimDisk::new());
    crash_workload(&clean, &mut Told::default()).expect("the workload runs without faults");
    let points = clean.stats().points;
    let checking = LogOptions { check_sealed_at_open: true, ..options() };
    let dir = Path::new(CRASH_DIR);
    let mut indexed = 0;
    // Sealed segments opened from their index files after a power loss with a writeback.
    let mut indexed_after_writeback = 0;
    for point in 0..points {
        for crash in 0..5u64 {
            let what = format!("crash {crash} at point {point} of {points}");
            let disk = Rc::new(SimDisk::new());
            disk.set_faults(SimFaults { crash_at_point: Some(point), ..SimFaults::default() });
            let mut told = Told::default();
            let outcome = crash_workload(&disk, &mut told);
            assert!(outcome.is_err() || disk.is_crashed(), "{what}: no crash");
            match crash {
                0 => disk.restart_process(),
                1 => disk.crash(Tear::None),
                2 => disk.crash(Tear::LastWrite { seed: point * 7 + 3 }),
                3 => disk.crash(Tear::Writeback { seed: point * 131 + 5 }),
                _ => {
                    disk.restart_process();
                    let (log, _) = LogStore::open(dir, options(), disk.clone())
                        .unwrap_or_else(|e| panic!("{what}: open after the kill: {e}"));
                    drop(log);
                    disk.crash(Tear::Writeback { seed: point * 137 + 9 });
                }
            }
            let (scanning, trusting) = (copy_of(&disk), copy_of(&disk));
            let (scanned, r1) = LogStore::open(dir, checking, scanning.clone())
                .unwrap_or_else(|e| panic!("{what}: checking open: {e}"));
            let (trusted, r2) = LogStore::open(dir, options(), trusting.clone())
                .unwrap_or_else(|e| panic!("{what}: trusting open: {e}"));
            indexed += r2.segments_indexed;
            if crash >= 3 {
                indexed_after_writeback += r2.segments_indexed;
            }
            assert_eq!(
                (r1.first_index, r1.last_index, r1.torn_tail_bytes, r1.segments),
                (r2.first_index, r2.last_index, r2.torn_tail_bytes, r2.segments),
                "{what}: recoveries differ"
            );
            told.check(&trusted, &what);
            assert_eq!(view(&scanned), view(&trusted), "{what}: the logs differ");
            assert_eq!(
                go_on(&scanning, scanned, true),
                go_on(&trusting, trusted, false),
                "{what}: the logs went on differently"
            );
        }
    }
    println!(
        "{points} points, {indexed} sealed segments opened from their index files \
         ({indexed_after_writeback} after a writeback)"
    );
    assert!(indexed > points as usize, "the trusting opens took index files ({indexed})");
    assert!(indexed_after_writeback > 0, "no index file saved by a writeback was trusted");
}
