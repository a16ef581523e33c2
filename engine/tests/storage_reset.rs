//! `LogStore::reset_to`: the whole log replaced by an empty one that starts after
//! `(index, term)` (docs/format.md, "Reset"). The new start below, inside and beyond the old
//! log; the log going on after it (appends, roll-overs, truncation, compaction, reopening); a
//! crash at every write and sync point of a reset recovering to an allowed state (the old log,
//! without at most some of its entries after `index`, or the new one); no space during a reset.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::format::SegmentHeader;
use raftwal::storage::{
    LogOptions, LogStore, ReadError, ResetError, SimDisk, SimFaults, Tear, ZeroFill,
};
use raftwal_wire::types::{HardState, LogIndex, Term};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use storage_common::{assert_genuine, bytes_used, entries, small_options};

const DIR: &str = "/logs/reset";

fn open(disk: &Rc<SimDisk>, options: LogOptions) -> LogStore<SimDisk> {
    LogStore::open(Path::new(DIR), options, disk.clone()).expect("open").0
}

/// Appends `count` entries of `term` after the last one, flushing every few.
fn write(log: &mut LogStore<SimDisk>, count: u64, term: u64) {
    for k in 0..count {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, 1, term)).unwrap();
        if k % 5 == 4 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
}

/// Every entry the log holds, (index, term), each checked genuine.
fn contents(log: &LogStore<SimDisk>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = log.first_index();
    while next <= log.last_index() {
        let got = log.read(next, 1 << 20).unwrap();
        for e in &got {
            assert_genuine(e);
            out.push((e.index.get(), e.term.get()));
        }
        next = next.plus(got.len() as u64);
    }
    out
}

/// What a log looks like from outside: first index, the term before it, and its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shape {
    first: u64,
    prev_term: u64,
    entries: Vec<(u64, u64)>,
}

impl Shape {
    fn of(log: &LogStore<SimDisk>) -> Shape {
        let first = log.first_index().get();
        let prev_term = log.term(LogIndex(first - 1)).expect("the term before the first").get();
        Shape { first, prev_term, entries: contents(log) }
    }

    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
}

/// The old log used by most tests, on 16 KiB segments: 1 to 100 of term 1, 101 to 150 of term
/// 2 (101 to 120 of term 1 were cut), 151 to 170 of term 3 (151 to 160 of term 2 were cut): the
/// segments holding 100 and 150 keep the cut records after their live ones. With `compact`,
/// the segments before 120 are compacted away (their files kept for reuse).
fn old_log(disk: &Rc<SimDisk>, options: LogOptions, compact: bool) -> LogStore<SimDisk> {
    let mut log = open(disk, options);
    write(&mut log, 120, 1);
    log.truncate_after(LogIndex(100)).unwrap();
    write(&mut log, 60, 2);
    log.truncate_after(LogIndex(150)).unwrap();
    write(&mut log, 20, 3);
    if compact {
        log.compact_before(LogIndex(120)).unwrap();
    }
    log.check_invariants();
    log
}

fn old_term(i: u64) -> u64 {
    match i {
        ..=100 => 1,
        101..=150 => 2,
        _ => 3,
    }
}

/// Segment files (name, header), sorted.
fn segments(disk: &SimDisk) -> Vec<(String, SegmentHeader)> {
    let mut out: Vec<_> = disk
        .file_names(Path::new(DIR))
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .map(|n| {
            let bytes = disk.file_bytes(&Path::new(DIR).join(&n)).unwrap();
            (n, SegmentHeader::decode(&bytes).unwrap())
        })
        .collect();
    out.sort_by_key(|(n, _)| n.clone());
    out
}

/// Checks the state right after `reset_to(index, term)`.
fn assert_reset(log: &LogStore<SimDisk>, index: u64, term: u64) {
    log.check_invariants();
    assert_eq!(log.first_index(), LogIndex(index + 1));
    assert_eq!(log.last_index(), LogIndex(index));
    assert_eq!(log.durable_index(), LogIndex(index));
    assert_eq!(log.term(LogIndex(index)), Some(Term(term)));
    assert_eq!(log.last_term(), Term(term));
    assert_eq!(log.term(LogIndex(index + 1)), None);
    if index > 0 {
        assert_eq!(log.term(LogIndex(index - 1)), None);
        assert!(matches!(
            log.read(LogIndex(index), 100),
            Err(ReadError::Compacted { first_index, .. }) if first_index == LogIndex(index + 1)
        ));
    }
    assert!(log.read(LogIndex(index + 1), 100).unwrap().is_empty());
}

/// Resets the old log to `(index, term)` and runs the new log through appends, roll-overs,
/// reopening, truncation and compaction.
fn reset_and_go_on(index: u64, term: u64, compact: bool) {
    let options = small_options(true);
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, compact);
    let old_first = log.first_index().get();
    log.reset_to(LogIndex(index), Term(term)).unwrap();
    assert_reset(&log, index, term);
    // Only the base segment is left, flagged; its name says where the log starts.
    let segs = segments(&disk);
    assert_eq!(segs.len(), 1, "{segs:?} (old first {old_first})");
    assert_eq!(segs[0].1.first_index, LogIndex(index + 1));
    assert_eq!(segs[0].1.prev_term, Term(term));
    assert!(segs[0].1.base);
    assert!(!disk.file_names(Path::new(DIR)).iter().any(|n| n.ends_with(".base")));
    // Reopening (a crash right after it returned) finds the new log.
    disk.crash(Tear::None);
    drop(log);
    let (mut log, recovery) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    assert_eq!((recovery.first_index, recovery.last_index), (LogIndex(index + 1), LogIndex(index)));
    assert_reset(&log, index, term);
    // The log goes on: 150 entries cross several roll-overs.
    let t = term.max(1);
    write(&mut log, 150, t);
    assert!(segments(&disk).len() >= 4, "the appends roll over: {:?}", segments(&disk));
    let want: Vec<(u64, u64)> = (index + 1..=index + 150).map(|i| (i, t)).collect();
    assert_eq!(contents(&log), want);
    disk.crash(Tear::None);
    drop(log);
    let mut log = open(&disk, options);
    log.check_invariants();
    assert_eq!(Shape::of(&log), Shape { first: index + 1, prev_term: term, entries: want });
    // Truncation (down to the very start), then compaction.
    log.truncate_after(LogIndex(index + 100)).unwrap();
    write(&mut log, 10, t + 1);
    assert!(
        matches!(
            log.truncate_after(LogIndex(index.saturating_sub(1))),
            Err(raftwal::storage::TruncateError::Compacted { .. })
        ) || index == 0
    );
    log.compact_before(LogIndex(index + 80)).unwrap();
    let first = log.first_index().get();
    assert!(first > index + 1 && first <= index + 80, "compacted to {first}");
    disk.crash(Tear::None);
    drop(log);
    let mut log = open(&disk, options);
    log.check_invariants();
    let want: Vec<(u64, u64)> =
        (first..=index + 110).map(|i| (i, if i <= index + 100 { t } else { t + 1 })).collect();
    assert_eq!(contents(&log), want);
    log.truncate_after(LogIndex(first - 1)).unwrap();
    assert_eq!(log.last_index(), LogIndex(first - 1));
    write(&mut log, 3, t + 2);
    drop(log);
    let log = open(&disk, options);
    assert_eq!(log.last_index(), LogIndex(first + 2));
}

#[test]
fn reset_below_the_log() {
    // The old log starts after 120 (compacted): every segment starts after 51.
    reset_and_go_on(50, 4, true);
}

#[test]
fn reset_to_just_before_the_first_segment_replaces_it() {
    let disk = Rc::new(SimDisk::new());
    let first = old_log(&disk, small_options(true), true).first_index().get();
    reset_and_go_on(first - 1, 9, true);
}

#[test]
fn reset_inside_the_log() {
    // Inside a segment, below the segments that hold cut records, with another term than the
    // old log's there.
    reset_and_go_on(90, 5, false);
    // Inside the last segment, with the old log's term.
    reset_and_go_on(165, 3, false);
    // At the old log's last index.
    reset_and_go_on(170, 3, false);
}

#[test]
fn reset_at_a_segment_boundary_replaces_that_segment() {
    let disk = Rc::new(SimDisk::new());
    old_log(&disk, small_options(true), false);
    let segs = segments(&disk);
    let middle = segs[segs.len() / 2].1.first_index.get();
    reset_and_go_on(middle - 1, 2, false);
}

#[test]
fn reset_beyond_the_log() {
    reset_and_go_on(1000, 7, false);
    // A term below the old log's last one.
    reset_and_go_on(171, 1, false);
}

#[test]
fn reset_to_zero_and_invalid_starts() {
    let options = small_options(true);
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, false);
    let points = disk.stats().points;
    let refused = log.reset_to(LogIndex(0), Term(1));
    assert!(matches!(refused, Err(ResetError::InvalidStart { .. })), "{refused:?}");
    let refused = log.reset_to(LogIndex(u64::MAX), Term(1));
    assert!(matches!(refused, Err(ResetError::InvalidStart { .. })), "{refused:?}");
    log.save_hard_state(HardState { term: Term(3), vote: None, commit: LogIndex(60) }).unwrap();
    let points_saved = disk.stats().points;
    let refused = log.reset_to(LogIndex(59), Term(1));
    assert!(matches!(refused, Err(ResetError::BelowCommit { .. })), "{refused:?}");
    assert_eq!(disk.stats().points, points_saved, "a refused reset touches nothing");
    assert!(points_saved > points);
    assert_eq!(contents(&log), (1..=170).map(|i| (i, old_term(i))).collect::<Vec<_>>());
    log.save_hard_state(HardState { term: Term(3), vote: None, commit: LogIndex(0) }).unwrap();
    // Index 0 of term 0: a log as new, from index 1.
    log.reset_to(LogIndex(0), Term(0)).unwrap();
    assert_reset(&log, 0, 0);
    write(&mut log, 50, 1);
    drop(log);
    let log = open(&disk, options);
    assert_eq!(contents(&log), (1..=50).map(|i| (i, 1)).collect::<Vec<_>>());
    assert_eq!(log.term(LogIndex(0)), Some(Term(0)));
}

/// Batches in flight are waited for (their entries are dropped with the rest), queued entries
/// are dropped without being written.
#[test]
fn batches_in_flight_are_waited_for_and_queued_entries_dropped() {
    let options = LogOptions { segment_size_bytes: 1 << 20, ..small_options(true) };
    let disk = Rc::new(SimDisk::new());
    let mut log = open(&disk, options);
    write(&mut log, 20, 1);
    disk.set_manual(true);
    log.append(&entries(21, 10, 1)).unwrap();
    assert!(log.submit().unwrap());
    log.append(&entries(31, 5, 1)).unwrap();
    assert!(log.submit().unwrap(), "a second batch, pipelined");
    log.append(&entries(36, 5, 1)).unwrap();
    assert!(log.has_in_flight());
    log.reset_to(LogIndex(25), Term(4)).unwrap();
    assert!(!log.has_in_flight());
    assert!(!log.has_pending());
    assert_reset(&log, 25, 4);
    disk.set_manual(false);
    log.append(&entries(26, 3, 4)).unwrap();
    log.flush().unwrap();
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk, options);
    assert_eq!(
        Shape::of(&log),
        Shape { first: 26, prev_term: 4, entries: vec![(26, 4), (27, 4), (28, 4)] }
    );
}

/// A reset while a reader holds payloads mapped from a segment whose cut records must be
/// cleared: the payloads do not change.
#[test]
fn held_payloads_never_change_under_a_reset() {
    let options = small_options(true);
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, false);
    let held = log.read(LogIndex(95), 1 << 20).unwrap();
    let copies: Vec<Vec<u8>> = held.iter().map(|e| e.data.to_vec()).collect();
    let rewritten = log.stats().segments_rewritten;
    log.reset_to(LogIndex(90), Term(5)).unwrap();
    assert!(log.stats().segments_rewritten > rewritten, "copied, not written in place");
    assert!(held.iter().map(|e| e.data.to_vec()).eq(copies), "a held payload changed");
    assert_reset(&log, 90, 5);
}

/// Where a crash may leave the log during a reset (and the appends after it).
struct Expect {
    old: Shape,
    index: u64,
    term: u64,
    /// Terms of the entries appended after the reset.
    after: BTreeMap<u64, u64>,
    /// The reset returned before the crash.
    reset_done: bool,
    /// Entries up to here were reported durable after the reset.
    durable: u64,
}

impl Expect {
    /// Asserts that `log` is an allowed state: the old log without at most some of its
    /// entries after `index`, or (always, once the reset returned) the new log.
    fn check(&self, log: &LogStore<SimDisk>, what: &str) {
        log.check_invariants();
        let got = Shape::of(log);
        let new = got.first == self.index + 1
            && got.prev_term == self.term
            && got.last() >= self.durable.max(self.index)
            && got.entries.iter().all(|&(i, t)| self.after.get(&i) == Some(&t));
        let old = got.first == self.old.first
            && got.prev_term == self.old.prev_term
            && got.last() >= self.index.min(self.old.last())
            && got.entries.len() <= self.old.entries.len()
            && got.entries[..] == self.old.entries[..got.entries.len()];
        assert!(
            new || (old && !self.reset_done),
            "{what}: recovered {}..={} after term {} ({} entries), neither the old log {}..={} \
             nor the new one after ({}, {}) (reset returned: {})",
            got.first,
            got.last(),
            got.prev_term,
            got.entries.len(),
            self.old.first,
            self.old.last(),
            self.index,
            self.term,
            self.reset_done
        );
    }
}

/// Resets to `(index, term)` and appends 60 entries after it (across a roll-over or two).
fn reset_workload(
    log: &mut LogStore<SimDisk>,
    index: u64,
    term: u64,
    expect: &mut Expect,
) -> Result<(), String> {
    log.reset_to(LogIndex(index), Term(term)).map_err(|e| e.to_string())?;
    expect.reset_done = true;
    let t = term.max(1);
    for k in 0..6 {
        let new = entries(index + 1 + k * 10, 10, t);
        for e in &new {
            expect.after.insert(e.index.get(), t);
        }
        log.append(&new).map_err(|e| e.to_string())?;
        expect.durable = log.flush().map_err(|e| e.to_string())?.get();
    }
    Ok(())
}

/// Crashes `reset_workload` at each of its write and sync points, with and without a torn
/// last write and after a partial writeback, and also kills the process there and then loses
/// power after the restart (every other time after a partial writeback); every recovery must
/// be an allowed state. `setup` builds the old log (deterministically);
/// `index_of` picks the reset's index from the old log's first and last index.
fn crash_reset_everywhere(
    options: LogOptions,
    compact: bool,
    hold: bool,
    index_of: impl Fn(u64, u64) -> u64,
    term: u64,
) -> u64 {
    let setup = |disk: &Rc<SimDisk>| {
        let log = old_log(disk, options, compact);
        let held = if hold {
            log.read(LogIndex(log.first_index().get() + 3), 1 << 20).unwrap()
        } else {
            Vec::new()
        };
        (log, held)
    };
    let probe = Rc::new(SimDisk::new());
    let (mut log, _held) = setup(&probe);
    let old = Shape::of(&log);
    let index = index_of(old.first, old.last());
    let fresh = || Expect {
        old: old.clone(),
        index,
        term,
        after: BTreeMap::new(),
        reset_done: false,
        durable: 0,
    };
    let before = probe.stats().points;
    reset_workload(&mut log, index, term, &mut fresh()).expect("the workload runs without faults");
    let points = probe.stats().points - before;
    assert!(points >= 8, "the workload crosses many points ({points})");
    drop(log);
    let mut outcomes = (0, 0);
    for at in 0..=points {
        let tears = [
            Tear::None,
            Tear::LastWrite { seed: at * 13 + 5 },
            Tear::Writeback { seed: at * 131 + 7 },
            Tear::None,
        ];
        for tear in tears {
            // The second `Tear::None` of each point (an odd run) is a kill instead.
            let kill = tear == Tear::None && outcomes.0 % 2 == 1;
            outcomes.0 += 1;
            let what = format!("reset to ({index}, {term}): crash at point {at} of {points} ({tear:?}, kill {kill})");
            let disk = Rc::new(SimDisk::new());
            let (mut log, held) = setup(&disk);
            let mut expect = fresh();
            let crash_at = disk.stats().points + at;
            disk.set_faults(SimFaults { crash_at_point: Some(crash_at), ..SimFaults::default() });
            let outcome = reset_workload(&mut log, index, term, &mut expect);
            assert!(outcome.is_err() || disk.is_crashed() || at == points, "{what}: no crash");
            if kill {
                disk.restart_process();
            } else {
                disk.crash(tear);
            }
            drop(log);
            drop(held);
            let (log, _) = LogStore::open(Path::new(DIR), options, disk.clone())
                .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            expect.check(&log, &what);
            if log.first_index() == LogIndex(index + 1)
                && log.term(LogIndex(index)) == Some(Term(term))
            {
                outcomes.1 += 1;
            }
            if kill {
                // What the restarted log read is durable: a power loss now changes nothing.
                let seen = Shape::of(&log);
                drop(log);
                let power_loss =
                    if at % 2 == 0 { Tear::None } else { Tear::Writeback { seed: at * 137 + 3 } };
                disk.crash(power_loss);
                let (log, _) = LogStore::open(Path::new(DIR), options, disk.clone())
                    .unwrap_or_else(|e| {
                        panic!("{what}: reopen after the power loss ({power_loss:?}): {e}")
                    });
                assert_eq!(Shape::of(&log), seen, "{what}: the power loss changed the log");
            }
        }
    }
    // Some crashes come before the commit point and some after.
    assert!(outcomes.1 > 0 && outcomes.1 < outcomes.0, "{outcomes:?}");
    points
}

#[test]
fn crash_at_every_point_of_a_reset_below_the_log() {
    crash_reset_everywhere(small_options(true), true, false, |first, _| first - 40, 6);
}

#[test]
fn crash_at_every_point_of_a_reset_replacing_the_first_segment() {
    crash_reset_everywhere(small_options(true), true, false, |first, _| first - 1, 6);
}

/// Inside the log, below two segments that hold records cut by earlier truncations: each of
/// them is the last segment for a moment while the ones after it are removed.
#[test]
fn crash_at_every_point_of_a_reset_inside_the_log() {
    crash_reset_everywhere(small_options(true), false, false, |_, _| 90, 5);
    crash_reset_everywhere(small_options(false), false, false, |_, _| 90, 5);
}

/// The same while a reader holds payloads of a segment to clear: it is copied, not written.
#[test]
fn crash_at_every_point_of_a_reset_inside_the_log_with_held_payloads() {
    crash_reset_everywhere(small_options(true), false, true, |_, _| 60, 5);
}

#[test]
fn crash_at_every_point_of_a_reset_at_and_beyond_the_end() {
    crash_reset_everywhere(small_options(true), false, false, |_, last| last, 3);
    crash_reset_everywhere(small_options(true), false, false, |_, last| last + 500, 8);
}

#[test]
fn crash_at_every_point_of_a_reset_without_zero_fill_or_recycling() {
    let options = LogOptions {
        zero_fill: ZeroFill::Never,
        recycled_segments_max: 0,
        batches_in_flight_max: 1,
        ..small_options(true)
    };
    crash_reset_everywhere(options, true, false, |first, _| first - 10, 2);
    crash_reset_everywhere(options, false, false, |_, _| 130, 4);
}

/// No space for the base segment: a clear error, nothing changed, the log usable; once space
/// is back the reset goes through.
#[test]
fn no_space_for_the_base_segment_leaves_the_old_log_usable() {
    let options = LogOptions { recycled_segments_max: 0, ..small_options(true) };
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, false);
    // No room for another segment: the one prepared ahead (if any) is used up by a roll-over
    // first, and preparing the next one fails.
    let used = bytes_used(&disk, Path::new(DIR));
    disk.set_faults(SimFaults { capacity_bytes: Some(used + 2048), ..SimFaults::default() });
    let mut next = 171;
    while log.flush().is_ok() {
        log.append(&entries(next, 4, 3)).unwrap();
        next += 4;
    }
    let before = Shape::of(&log);
    let durable = log.durable_index();
    let names = disk.file_names(Path::new(DIR));
    let refused = log.reset_to(LogIndex(90), Term(5));
    assert!(matches!(refused, Err(ResetError::NoSpace(_))), "{refused:?}");
    assert!(log.poisoned().is_none(), "running out of space does not poison the log");
    log.check_invariants();
    assert_eq!(Shape::of(&log), before);
    assert_eq!(disk.file_names(Path::new(DIR)), names, "nothing removed or left behind");
    // Space comes back: the queued entries go out, and the reset works.
    disk.set_faults(SimFaults::default());
    assert_eq!(log.flush().unwrap(), log.last_index());
    assert!(log.last_index() > durable);
    log.reset_to(LogIndex(90), Term(5)).unwrap();
    assert_reset(&log, 90, 5);
}

/// A write that finds no space while the reset clears a segment's cut records: a clear error,
/// nothing changed.
#[test]
fn no_space_while_clearing_leaves_the_old_log_usable() {
    let options = small_options(true);
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, false);
    let before = Shape::of(&log);
    disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    let refused = log.reset_to(LogIndex(90), Term(5));
    assert!(matches!(refused, Err(ResetError::NoSpace(_))), "{refused:?}");
    assert!(log.poisoned().is_none());
    assert_eq!(Shape::of(&log), before);
    write(&mut log, 5, 3);
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk, options);
    let mut want = before.entries.clone();
    want.extend((171..=175).map(|i| (i, 3)));
    assert_eq!(Shape::of(&log).entries, want);
}

/// A failed fdatasync during a reset (here, of the clearing of a segment's cut records)
/// poisons the log; reopening finds the old log.
#[test]
fn a_failed_sync_during_a_reset_poisons_the_log() {
    let options = LogOptions { zero_fill: ZeroFill::Never, ..small_options(true) };
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, false);
    // Let the background work (the next segment's header zeros and fdatasync) finish first.
    for _ in 0..5 {
        log.wait().unwrap();
    }
    let old = Shape::of(&log);
    disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    let failed = log.reset_to(LogIndex(90), Term(5));
    assert!(matches!(failed, Err(ResetError::Io { .. })), "{failed:?}");
    assert!(log.poisoned().is_some());
    assert!(log.append(&entries(171, 1, 3)).is_err());
    assert!(matches!(log.reset_to(LogIndex(90), Term(5)), Err(ResetError::Poisoned(_))));
    disk.crash(Tear::None);
    drop(log);
    let log = open(&disk, options);
    assert_eq!(Shape::of(&log), old);
}

/// Two resets in a row, the second below the first (the new base segment sorts before the
/// first one's), each crashed at every point, recover to the log before it or after it.
#[test]
fn a_second_reset_below_the_first_one() {
    let options = small_options(true);
    let setup = |disk: &Rc<SimDisk>| {
        let mut log = old_log(disk, options, false);
        log.reset_to(LogIndex(500), Term(4)).unwrap();
        write(&mut log, 70, 4);
        log
    };
    let probe = Rc::new(SimDisk::new());
    let mut log = setup(&probe);
    let old = Shape::of(&log);
    let before = probe.stats().points;
    log.reset_to(LogIndex(300), Term(6)).unwrap();
    let points = probe.stats().points - before;
    drop(log);
    for at in 0..=points {
        let disk = Rc::new(SimDisk::new());
        let mut log = setup(&disk);
        disk.set_faults(SimFaults {
            crash_at_point: Some(disk.stats().points + at),
            ..SimFaults::default()
        });
        let done = log.reset_to(LogIndex(300), Term(6)).is_ok() && !disk.is_crashed();
        disk.crash(Tear::None);
        drop(log);
        let log = open(&disk, options);
        let expect = Expect {
            old: old.clone(),
            index: 300,
            term: 6,
            after: BTreeMap::new(),
            reset_done: done,
            durable: 0,
        };
        expect.check(&log, &format!("second reset, crash at point {at} of {points}"));
    }
}

/// A directory a reset left with its base segment still under its pending name: with a
/// segment left, the reset had not committed and the pending file goes; without, it had, and
/// the file becomes the base segment.
#[test]
fn a_pending_base_segment_is_finished_or_undone_at_open() {
    let options = small_options(true);
    let disk = Rc::new(SimDisk::new());
    let mut log = old_log(&disk, options, true);
    let first = log.first_index().get();
    log.reset_to(LogIndex(first - 30), Term(2)).unwrap();
    drop(log);
    let dir = Path::new(DIR);
    let base = segments(&disk)[0].0.clone();
    let pending = base.replace(".seg", ".base");
    let bytes = disk.file_bytes(&dir.join(&base)).unwrap();
    // Undone: an old segment is still there.
    let other = Rc::new(SimDisk::new());
    let log = old_log(&other, options, true);
    let old = Shape::of(&log);
    drop(log);
    other.put_file(&dir.join(&pending), &bytes);
    let log = open(&other, options);
    assert_eq!(Shape::of(&log), old);
    assert!(!other.file_names(dir).contains(&pending));
    // Finished: only the pending base segment is there.
    let fresh = Rc::new(SimDisk::new());
    let hard_state = dir.join(raftwal::storage::HARD_STATE_FILE);
    fresh.put_file(&hard_state, &disk.file_bytes(&hard_state).unwrap());
    fresh.put_file(&dir.join(&pending), &bytes);
    let log = open(&fresh, options);
    assert_reset(&log, first - 30, 2);
    assert_eq!(fresh.file_names(dir).iter().filter(|n| n.ends_with(".seg")).count(), 1);
    assert!(!fresh.file_names(dir).contains(&pending));
}
