//! Crash test on the simulated disk: a workload of appends, batches, segment roll-overs, hard
//! state saves, a truncation and a compaction is crashed at every write and sync point, with and
//! without a torn last write, and after a partial writeback (`Tear::Writeback`: any pages of the
//! unsynced writes and a prefix of the unsynced name changes survive, so index files that were
//! never synced are found and trusted, and unsynced batches survive with holes). After reopening,
//! the log must be a genuine log (every entry one that was written at its index), must hold every
//! entry that was reported durable (unless a truncation or compaction asking to drop it was under
//! way), and the hard state must be the last acknowledged one or the one being saved.
//!
//! With two batches allowed in flight, some rounds start a second batch before the first
//! completes; the pipelined runs let the disk run queued ops out of order (a later batch's
//! write and fdatasync before an earlier batch's write), so a crash can leave a hole: a durable
//! later batch behind a lost earlier one. Recovery must cut both (neither was reported durable)
//! and never report corruption for it; the test checks that such holes happened.
//!
//! The points include every background op (docs/format.md): the prepared segment's creation
//! and preallocation, its zero-fill writes and fdatasyncs, zeros ahead of the writer in the
//! active segment, roll-overs into the prepared segment (header, fdatasync, rename, directory
//! fsync) and truncations that make it the new last segment, and the recycling of compacted
//! segments (the rename that keeps a file, roll-overs into a recycled file, whose bytes after
//! the records hold an earlier use's); the clean run asserts that each kind happened.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::{Disk, LogOptions, LogStore, SimDisk, SimFaults, Tear, ZeroFill};
use raftwal_wire::types::{HardState, LogIndex, NodeId, Term};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use storage_common::{assert_genuine, entries, small_options};

/// What the workload did and what the log acknowledged.
#[derive(Default)]
struct Record {
    /// Every term ever written at each index.
    versions: BTreeMap<u64, BTreeSet<u64>>,
    /// The current log (index -> term), as the caller sees it.
    current: BTreeMap<u64, u64>,
    /// Entries up to here were reported durable (and not truncated since).
    durable: u64,
    /// A truncation under way: entries after it may be gone.
    truncating: Option<u64>,
    /// The highest index a compaction was asked for.
    compact_requested: u64,
    /// Every hard state the workload tried to save, in order.
    hard_states: Vec<HardState>,
    /// How many of them were acknowledged.
    hard_states_acked: usize,
    /// Truncations that made the segment prepared in the background the new last one.
    truncations_into_prepared: u32,
    /// Where the first truncation cut: a later one cuts below it, into the segment whose
    /// records after that cut stayed on disk.
    first_cut: Option<u64>,
}

const DIR: &str = "/logs/crash";

fn workload(log: &mut LogStore<SimDisk>, rec: &mut Record) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut term = 1;
    let save = |log: &mut LogStore<SimDisk>, rec: &mut Record, term: u64, commit: u64| {
        let hs =
            HardState { term: Term(term), vote: Some(NodeId(term % 3)), commit: LogIndex(commit) };
        rec.hard_states.push(hs);
        log.save_hard_state(hs).map_err(|x| e(&x))?;
        rec.hard_states_acked = rec.hard_states.len();
        Ok::<(), String>(())
    };
    save(log, rec, term, 0)?;
    for round in 0..40u64 {
        let next = log.last_index().get() + 1;
        let new = entries(next, round % 7 + 1, term);
        for x in &new {
            rec.versions.entry(x.index.get()).or_default().insert(term);
            rec.current.insert(x.index.get(), term);
        }
        log.append(&new).map_err(|x| e(&x))?;
        if round % 4 == 1 {
            // A second batch while the first is in flight (pipelined when allowed).
            log.submit().map_err(|x| e(&x))?;
            let more = entries(log.last_index().get() + 1, round % 5 + 2, term);
            for x in &more {
                rec.versions.entry(x.index.get()).or_default().insert(term);
                rec.current.insert(x.index.get(), term);
            }
            log.append(&more).map_err(|x| e(&x))?;
        }
        if round % 3 != 2 {
            // Leave some rounds' entries queued so that batches coalesce several appends.
            log.submit().map_err(|x| e(&x))?;
            rec.durable = log.process_completions().map_err(|x| e(&x))?.get();
        }
        let cut = match (round, rec.first_cut) {
            (12 | 29, _) => Some(log.last_index().get() - 9),
            (16, Some(first)) => Some(first - 2),
            _ => None,
        };
        if let Some(to) = cut {
            rec.first_cut.get_or_insert(to);
            rec.truncating = Some(to);
            let prepared_before = log.stats().roll_overs_prepared;
            log.truncate_after(LogIndex(to)).map_err(|x| e(&x))?;
            if log.stats().roll_overs_prepared > prepared_before {
                rec.truncations_into_prepared += 1;
            }
            rec.current.retain(|&i, _| i <= to);
            rec.durable = rec.durable.min(to);
            rec.truncating = None;
            term += 1;
            // The commit index stays below every later cut, as in Raft (a truncation never
            // removes committed entries; recovery relies on it).
            save(log, rec, term, rec.durable.saturating_sub(3))?;
        }
        if matches!(round, 21 | 26 | 31 | 36) {
            // Compacted segments' files are kept and reused as later segments (recycled).
            rec.compact_requested = rec.compact_requested.max(log.durable_index().get() / 2);
            log.compact_before(LogIndex(rec.compact_requested)).map_err(|x| e(&x))?;
        }
    }
    rec.durable = log.flush().map_err(|x| e(&x))?.get();
    Ok(())
}

fn check_recovered(log: &LogStore<SimDisk>, rec: &Record, what: &str) {
    log.check_invariants();
    let (first, last) = (log.first_index().get(), log.last_index().get());
    assert!(first <= rec.compact_requested.max(1), "{what}: compacted past the request ({first})");
    let mut required = rec.durable;
    if let Some(to) = rec.truncating {
        required = required.min(to);
    }
    assert!(last >= required, "{what}: durable entries lost: last {last} < {required}");
    let mut next = first;
    while next <= last {
        let got = log
            .read(LogIndex(next), 1 << 20)
            .unwrap_or_else(|e| panic!("{what}: read {next}: {e}"));
        for x in &got {
            assert_genuine(x);
            let i = x.index.get();
            let t = x.term.get();
            assert!(
                rec.versions.get(&i).is_some_and(|v| v.contains(&t)),
                "{what}: {i} has unwritten term {t}"
            );
            // The log is a prefix of the one the caller had at the crash (during a truncation,
            // the caller's log is still the one before it): never an entry a completed
            // truncation removed.
            assert_eq!(rec.current.get(&i), Some(&t), "{what}: entry {i} of term {t} is stale");
        }
        next += got.len() as u64;
    }
    let hs = log.hard_state();
    if rec.hard_states_acked > 0 {
        let at = rec.hard_states.iter().rposition(|h| *h == hs);
        assert!(
            at.is_some_and(|at| at + 1 >= rec.hard_states_acked),
            "{what}: hard state {hs:?} is not the last acknowledged one"
        );
    }
}

/// What the power losses with [`Tear::Writeback`] left: how many recoveries took a sealed
/// segment from its index file, kept entries never reported durable, and cut a torn tail.
#[derive(Debug, Default)]
struct WrittenBack {
    indexed: u32,
    unsynced_kept: u32,
    torn_cut: u32,
}

fn crash_everywhere(direct_io: bool, zero_fill: ZeroFill) {
    crash_everywhere_with(direct_io, zero_fill, 1, None);
}

/// `batches` in flight at most; `reorder`: the disk runs queued ops in an order drawn from it.
/// Returns how many recoveries cut a hole's later batch.
fn crash_everywhere_with(
    direct_io: bool,
    zero_fill: ZeroFill,
    batches: usize,
    reorder: Option<u64>,
) -> u32 {
    let dir = Path::new(DIR);
    let options =
        LogOptions { zero_fill, batches_in_flight_max: batches, ..small_options(direct_io) };
    let faults = SimFaults { reorder_seed: reorder, ..SimFaults::default() };
    let clean = Rc::new(SimDisk::new());
    clean.set_faults(faults);
    let (mut log, _) = LogStore::open(dir, options, clean.clone()).expect("open");
    let mut rec = Record::default();
    workload(&mut log, &mut rec).expect("the workload succeeds without faults");
    let points = clean.stats().points;
    let stats = log.stats();
    println!("clean run: {points} points, {stats:?}, {:?}", clean.stats());
    // The crash points include the background work: zero-fill ahead of the writer and over the
    // next segment, that segment's fdatasync, and roll-overs into it.
    assert!(stats.background_writes > 0 && stats.background_syncs > 0, "{stats:?}");
    if zero_fill == ZeroFill::Always {
        assert!(stats.background_bytes > 4096 * stats.background_writes / 2, "{stats:?}");
    }
    assert!(stats.roll_overs_prepared > rec.truncations_into_prepared as u64, "{stats:?}");
    // Later segments reuse the files of compacted ones, so crashes hit recycled segments too.
    assert!(stats.segments_recycled > 0 && stats.roll_overs_recycled > 0, "{stats:?}");
    // The truncations find a prepared segment ready and use it as the new last segment (at
    // least two of the three; at least one when pipelined batches fill segments differently).
    if batches == 1 {
        assert!(rec.truncations_into_prepared >= 2, "{stats:?}");
    } else {
        assert!(rec.truncations_into_prepared >= 1, "{stats:?}");
    }
    assert!(points > 80, "the workload should cross many write and sync points ({points})");
    if batches > 1 {
        assert!(stats.pipelined_batches > 5, "{stats:?}");
    } else {
        assert_eq!(stats.pipelined_batches, 0, "{stats:?}");
    }
    let mut crashed_runs = 0;
    // Recoveries that cut bytes although no torn write survived: a hole's later batch.
    let mut holes_cut = 0;
    let mut written_back = WrittenBack::default();
    for point in 0..points {
        let tears = [
            Tear::None,
            Tear::LastWrite { seed: point * 31 + 7 },
            Tear::Writeback { seed: point * 131 + 3 },
        ];
        for tear in tears {
            let what = format!(
                "crash at point {point} of {points} ({tear:?}, direct={direct_io}, {zero_fill:?}, \
                 batches={batches}, reorder={reorder:?})"
            );
            let disk = Rc::new(SimDisk::new());
            disk.set_faults(SimFaults { crash_at_point: Some(point), ..faults });
            let mut rec = Record::default();
            if let Ok((mut log, _)) = LogStore::open(dir, options, disk.clone()) {
                let outcome = workload(&mut log, &mut rec);
                // A crash in a background op (zero-fill, the next segment's preparation) does
                // not fail the workload when no later data op reaches the dead disk.
                assert!(
                    outcome.is_err() || disk.is_crashed(),
                    "{what}: the workload never reached the crash point"
                );
                disk.crash(tear);
                drop(log);
            } else {
                disk.crash(tear);
            }
            crashed_runs += 1;
            let (log, recovery) = LogStore::open(dir, options, disk.clone())
                .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            if tear == Tear::None && recovery.torn_tail_bytes > 0 {
                holes_cut += 1;
            }
            if let Tear::Writeback { .. } = tear {
                written_back.indexed += u32::from(recovery.segments_indexed > 0);
                written_back.unsynced_kept += u32::from(recovery.last_index.get() > rec.durable);
                written_back.torn_cut += u32::from(recovery.torn_tail_bytes > 0);
            }
            check_recovered(&log, &rec, &what);
        }
    }
    assert_eq!(crashed_runs, 3 * points);
    println!("{holes_cut} recoveries cut a batch that was durable behind a lost one");
    // The caches' writeback at the power loss kept what no fdatasync covered: index files
    // (never synced) that open then trusted, entries that were never reported durable, and
    // torn batches that recovery cut.
    println!("power losses after a partial writeback: {written_back:?}");
    assert!(
        written_back.indexed > 0 && written_back.unsynced_kept > 0 && written_back.torn_cut > 0,
        "{written_back:?}"
    );
    if reorder.is_none() {
        // In submission order a later batch is never durable before an earlier one.
        assert_eq!(holes_cut, 0);
    }
    holes_cut
}

/// The process is killed at every point (the machine stays up: what it wrote but did not sync
/// is still in the caches), restarts and recovers; then the power fails. Everything the
/// restarted log reported (its entries and hard state) must survive the power failure: recovery
/// makes durable what it reads before reporting it durable.
fn kill_then_power_loss_everywhere(batches: usize, reorder: Option<u64>) {
    let dir = Path::new(DIR);
    let options = LogOptions { batches_in_flight_max: batches, ..small_options(true) };
    let faults = SimFaults { reorder_seed: reorder, ..SimFaults::default() };
    let clean = Rc::new(SimDisk::new());
    clean.set_faults(faults);
    let (mut log, _) = LogStore::open(dir, options, clean.clone()).expect("open");
    workload(&mut log, &mut Record::default()).expect("the workload succeeds without faults");
    let points = clean.stats().points;
    // Restarts that read entries or a hard state no fdatasync had covered.
    let mut unsynced_seen = 0;
    for point in 0..points {
        let what = format!("kill at point {point} of {points} (batches={batches}, {reorder:?})");
        let disk = Rc::new(SimDisk::new());
        disk.set_faults(SimFaults { crash_at_point: Some(point), ..faults });
        let mut rec = Record::default();
        if let Ok((mut log, _)) = LogStore::open(dir, options, disk.clone()) {
            let outcome = workload(&mut log, &mut rec);
            assert!(outcome.is_err() || disk.is_crashed(), "{what}: never reached the point");
        }
        disk.restart_process();
        let (log, _) = LogStore::open(dir, options, disk.clone())
            .unwrap_or_else(|e| panic!("{what}: reopen after the kill: {e}"));
        check_recovered(&log, &rec, &what);
        let seen = (read_all(&log), log.hard_state());
        if seen.0.last().is_some_and(|&(i, _)| i > rec.durable)
            || rec.hard_states.len() > rec.hard_states_acked
                && seen.1 == rec.hard_states[rec.hard_states_acked]
        {
            unsynced_seen += 1;
        }
        drop(log);
        // Every other power loss finds part of what the restarted log wrote written back.
        let tear = if point % 2 == 0 { Tear::None } else { Tear::Writeback { seed: point } };
        disk.crash(tear);
        let (log, _) = LogStore::open(dir, options, disk.clone())
            .unwrap_or_else(|e| panic!("{what}: reopen after the power loss ({tear:?}): {e}"));
        let after = (read_all(&log), log.hard_state());
        assert_eq!(after.1, seen.1, "{what}: the hard state read at the restart was lost");
        assert!(
            after.0.len() >= seen.0.len() && after.0[..seen.0.len()] == seen.0[..],
            "{what}: entries the restarted log reported were lost: {} before, {} after",
            seen.0.len(),
            after.0.len()
        );
    }
    println!("{unsynced_seen} of {points} restarts read what no fdatasync had covered");
    assert!(unsynced_seen > 0, "no kill left unsynced data: the test does not exercise it");
}

/// Every (index, term) the log holds, front to back.
fn read_all(log: &LogStore<SimDisk>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = log.first_index().get();
    while next <= log.last_index().get() {
        let got = log.read(LogIndex(next), 1 << 20).expect("read");
        out.extend(got.iter().map(|x| (x.index.get(), x.term.get())));
        next += got.len() as u64;
    }
    out
}

#[test]
fn kill_then_power_loss_at_every_point() {
    kill_then_power_loss_everywhere(1, None);
}

#[test]
fn kill_then_power_loss_at_every_point_pipelined_out_of_order() {
    kill_then_power_loss_everywhere(2, Some(5));
}

#[test]
fn crash_at_every_point_pipelined_in_order() {
    crash_everywhere_with(true, ZeroFill::Always, 2, None);
}

/// The disk runs queued ops out of order: crashes leave holes, which recovery cuts.
#[test]
fn crash_at_every_point_pipelined_out_of_order() {
    let mut holes = 0;
    for seed in [1, 2, 3] {
        holes += crash_everywhere_with(true, ZeroFill::Always, 2, Some(seed));
        holes += crash_everywhere_with(true, ZeroFill::BatchBytesBelow(2048), 3, Some(seed + 100));
    }
    assert!(holes > 0, "no crash left a hole: the test does not exercise them");
}

#[test]
fn crash_at_every_point_pipelined_buffered_out_of_order() {
    let mut holes = 0;
    for seed in [7, 8, 9] {
        holes += crash_everywhere_with(false, ZeroFill::Always, 2, Some(seed));
    }
    assert!(holes > 0, "no crash left a hole: the test does not exercise them");
}

#[test]
fn crash_at_every_point_direct_io() {
    crash_everywhere(true, ZeroFill::Always);
}

#[test]
fn crash_at_every_point_buffered() {
    crash_everywhere(false, ZeroFill::Always);
}

#[test]
fn crash_at_every_point_without_zero_fill() {
    crash_everywhere(true, ZeroFill::Never);
}

/// The workload's batches range from a few hundred bytes to 6 KiB: zero-fill starts and stops.
#[test]
fn crash_at_every_point_zero_fill_by_batch_size() {
    crash_everywhere(true, ZeroFill::BatchBytesBelow(2048));
}

/// Opens the log in `dir`, votes and makes five entries durable, loses power, and checks that
/// the reopened log kept the vote and the entries.
fn vote_append_and_lose_power_then_reopen(disk: &Rc<SimDisk>, dir: &Path) {
    let (mut log, _) = LogStore::open(dir, small_options(true), disk.clone()).unwrap();
    let voted = HardState { term: Term(3), vote: Some(NodeId(2)), commit: LogIndex(0) };
    log.save_hard_state(voted).unwrap();
    log.append(&entries(1, 5, 3)).unwrap();
    assert_eq!(log.flush().unwrap(), LogIndex(5));
    disk.crash(Tear::None);
    drop(log);
    let (log, recovery) = LogStore::open(dir, small_options(true), disk.clone()).unwrap();
    assert_eq!(recovery.hard_state, voted, "the vote is lost with the log's directory");
    assert_eq!(read_all(&log), (1..=5).map(|i| (i, 3)).collect::<Vec<_>>());
}

/// A new log's directory is a name in its parent directory, and like a file's name it survives
/// a power loss only once that directory is fsynced: everything the log acknowledges (its vote,
/// its entries) lives under it. Opening a log in a directory that does not exist yet (nor its
/// parent) and losing power after the first vote and batch were durable keeps both.
#[test]
fn a_new_log_s_directory_outlives_a_power_loss() {
    let disk = Rc::new(SimDisk::new());
    let dir = Path::new("/data/node-1/log-0");
    vote_append_and_lose_power_then_reopen(&disk, dir);
}

/// The same after a kill between the directory's creation and its parent's fsync: the restart
/// finds the directory (the kernel still has it) with no log in it, and must not take it as
/// durable. (Its parent is durable, as a node's data directory is.)
#[test]
fn a_new_log_s_directory_left_by_a_killed_open_outlives_a_power_loss() {
    let disk = Rc::new(SimDisk::new());
    let dir = Path::new("/data/node-1/log-0");
    disk.create_dir_all(dir.parent().unwrap()).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    disk.create_dir_all(dir).unwrap();
    disk.restart_process();
    vote_append_and_lose_power_then_reopen(&disk, dir);
}
