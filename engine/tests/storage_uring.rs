//! The real io_uring disk: several logs share one ring with completions routed to the right
//! log, the eventfd signals completions, and segment roll-over, truncation, compaction, reset and
//! recovery work on real files, with and without O_DIRECT, in every fsync mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::disk::{OpenOptions, WriteOp, RING_ENTRIES_MIN};
use raftwal::storage::{Disk, FsyncMode, IoBuf, LogOptions, LogStore, UringDisk, UringOptions};
use raftwal_wire::types::{LogIndex, Term};
use std::path::Path;
use std::rc::Rc;
use storage_common::{entries, small_options};

fn disk(fsync_mode: FsyncMode) -> Rc<UringDisk> {
    Rc::new(UringDisk::new(UringOptions { fsync_mode, ..UringOptions::default() }).unwrap())
}

fn read_all(log: &LogStore<UringDisk>) -> Vec<u64> {
    storage_common::read_all(log, 4096)
}

/// Waits (with a generous deadline, never a fixed sleep) until the eventfd is readable.
fn eventfd_fires(disk: &UringDisk) -> bool {
    let mut pfd = libc::pollfd { fd: disk.event_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: polls one valid descriptor through a live pollfd.
    #[allow(unsafe_code)]
    let n = unsafe { libc::poll(&mut pfd, 1, 60_000) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

fn two_logs_share_one_ring(fsync_mode: FsyncMode, direct_io: bool) {
    let root = tempfile::tempdir().unwrap();
    let disk = disk(fsync_mode);
    let mut options = small_options(direct_io);
    if !direct_io && disk.concurrent_syncs_share_errors() {
        // Refused with buffered I/O when syncs run at once (below).
        options.batches_in_flight_max = 1;
    }
    let (mut a, _) = LogStore::open(&root.path().join("a"), options, disk.clone()).unwrap();
    let (mut b, _) = LogStore::open(&root.path().join("b"), options, disk.clone()).unwrap();
    for round in 0..30u64 {
        let (na, nb) = (a.last_index().get() + 1, b.last_index().get() + 1);
        a.append(&entries(na, 1 + round % 5, 1)).unwrap();
        b.append(&entries(nb, 1 + round % 3, 2)).unwrap();
        // One shard loop: submit what is queued, wait for the ring's signal, then let every
        // log take its own completions (a batch is capped in size, so this may take a few turns).
        while a.durable_index() < a.last_index() || b.durable_index() < b.last_index() {
            a.submit().unwrap();
            b.submit().unwrap();
            assert!(eventfd_fires(&disk), "the eventfd never fired");
            a.process_completions().unwrap();
            b.process_completions().unwrap();
        }
        assert_eq!(a.durable_index(), a.last_index());
        assert_eq!(b.durable_index(), b.last_index());
    }
    // Segments were prepared ahead and zero-filled through the ring, in every fsync mode.
    for stats in [a.stats(), b.stats()] {
        assert!(stats.roll_overs_prepared > 0 && stats.background_writes > 0, "{stats:?}");
        assert_eq!(stats.data_syncs, stats.batches, "{stats:?}");
    }
    let ring = disk.stats();
    assert!(ring.background_ops > 0 && ring.background_syncs > 0, "{ring:?}");
    // Single-write batches are durable writes under Dsync, and only there.
    assert_eq!(ring.dsync_writes > 0, fsync_mode == FsyncMode::Dsync, "{ring:?}");
    a.truncate_after(LogIndex(40)).unwrap();
    a.append(&entries(41, 3, 3)).unwrap();
    a.flush().unwrap();
    let b_durable = b.durable_index();
    b.compact_before(b_durable).unwrap();
    assert!(b.first_index() > LogIndex(1), "compaction removed no segment");
    // The compacted files are kept; b goes on into them (recycled segments, whose bytes after
    // the new records hold the old ones).
    while b.stats().roll_overs_recycled < 2 {
        let nb = b.last_index().get() + 1;
        b.append(&entries(nb, 20, 2)).unwrap();
        b.flush().unwrap();
        b.compact_before(b.durable_index().plus(1).min(LogIndex(nb))).unwrap();
    }
    let (b_first, b_durable) = (b.first_index(), b.durable_index());
    drop((a, b));
    let (a, ra) = LogStore::open(&root.path().join("a"), options, disk.clone()).unwrap();
    let (b, rb) = LogStore::open(&root.path().join("b"), options, disk.clone()).unwrap();
    assert_eq!(ra.torn_tail_bytes + rb.torn_tail_bytes, 0);
    assert_eq!(read_all(&a), (1..=43).collect::<Vec<_>>());
    assert_eq!(a.term(LogIndex(43)), Some(Term(3)));
    assert_eq!(read_all(&b), (b_first.get()..=b_durable.get()).collect::<Vec<_>>());
    a.check_invariants();
    b.check_invariants();
}

#[test]
fn ring_fsync_direct() {
    two_logs_share_one_ring(FsyncMode::Ring, true);
}

#[test]
fn ring_fsync_buffered() {
    two_logs_share_one_ring(FsyncMode::Ring, false);
}

#[test]
fn thread_fsync_direct() {
    two_logs_share_one_ring(FsyncMode::Thread, true);
}

#[test]
fn thread_fsync_buffered() {
    two_logs_share_one_ring(FsyncMode::Thread, false);
}

#[test]
fn dsync_direct() {
    two_logs_share_one_ring(FsyncMode::Dsync, true);
}

#[test]
fn dsync_buffered() {
    two_logs_share_one_ring(FsyncMode::Dsync, false);
}

#[test]
fn blocking_direct() {
    two_logs_share_one_ring(FsyncMode::Blocking, true);
}

/// Batches of 50 entries of about 1 KiB on default options: above the first chunk, so written in
/// chunks and ended by one fdatasync, in every mode (under `Dsync` too, whose single-write
/// batches carry their own durability).
fn large_batches_and_default_options(fsync_mode: FsyncMode) {
    let root = tempfile::tempdir().unwrap();
    let disk = disk(fsync_mode);
    let options = LogOptions { segment_size_bytes: 256 << 10, ..LogOptions::default() };
    let (mut log, _) = LogStore::open(root.path(), options, disk.clone()).unwrap();
    let mut next = 1;
    for _ in 0..40 {
        log.append(&entries(next, 50, 1)).unwrap();
        next += 50;
    }
    log.flush().unwrap();
    assert_eq!(read_all(&log).len(), 2000);
    assert_eq!(log.stats().data_syncs, log.stats().batches, "{:?}", log.stats());
    drop(log);
    let names = disk.list_dir(root.path()).unwrap();
    assert!(names.iter().filter(|n| n.ends_with(".seg")).count() > 1, "no roll-over: {names:?}");
    let (log, _) = LogStore::open(Path::new(root.path()), options, disk).unwrap();
    assert_eq!(log.last_index(), LogIndex(2000));
}

#[test]
fn large_batches_ring() {
    large_batches_and_default_options(FsyncMode::Ring);
}

#[test]
fn large_batches_dsync() {
    large_batches_and_default_options(FsyncMode::Dsync);
}

/// A failed fdatasync is reported, in every mode: a sync-only op (the fdatasync that ends a
/// chunked batch) on a file that cannot be synced (a FIFO: EINVAL) completes with the error,
/// marked as the sync's. Under `Dsync` in particular, only data writes carry `RWF_DSYNC`; the
/// sync-only op is a real fdatasync whose result must not be dropped.
#[test]
fn a_failed_fdatasync_is_reported_in_every_mode() {
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a live, NUL-terminated path.
    #[allow(unsafe_code)]
    let made = unsafe { libc::mkfifo(name.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo: {}", std::io::Error::last_os_error());
    for mode in [FsyncMode::Thread, FsyncMode::Ring, FsyncMode::Dsync, FsyncMode::Blocking] {
        let disk = disk(mode);
        let owner = disk.register();
        let file = disk.open(&fifo, OpenOptions { create_new: false, direct: false }).unwrap();
        let op = WriteOp {
            file,
            offset: 0,
            buf: IoBuf::default(),
            sync: true,
            tag: 7,
            background: false,
        };
        disk.submit(owner, op).unwrap();
        disk.wait(owner).unwrap();
        let mut done = Vec::new();
        disk.reap(owner, &mut done);
        assert_eq!(done.len(), 1, "{mode:?}");
        assert_eq!(done[0].tag, 7);
        assert!(done[0].result.is_err(), "{mode:?}: a failed fdatasync reported as success");
        assert!(done[0].sync_failed, "{mode:?}: the failure is the sync's");
        disk.close(file);
    }
}

/// Two buffered batches synced at once by kernel workers could lose a writeback error between
/// them (Linux reports it to one fdatasync of the file): the log refuses to pipeline them, and
/// allows it where the writer's thread runs the syncs one after the other.
#[test]
fn pipelined_buffered_batches_need_syncs_on_the_writers_thread() {
    for (mode, allowed) in [
        (FsyncMode::Ring, false),
        (FsyncMode::Dsync, false),
        (FsyncMode::Thread, true),
        (FsyncMode::Blocking, true),
    ] {
        let root = tempfile::tempdir().unwrap();
        let options = LogOptions { batches_in_flight_max: 2, ..small_options(false) };
        match LogStore::open(root.path(), options, disk(mode)) {
            Ok(_) => assert!(allowed, "{mode:?}: pipelined buffered batches accepted"),
            Err(e) => {
                assert!(!allowed, "{mode:?}: refused: {e}");
                assert!(e.to_string().contains("direct_io"), "{mode:?}: {e}");
            }
        }
        let direct = LogOptions { batches_in_flight_max: 2, ..small_options(true) };
        assert!(LogStore::open(&root.path().join("d"), direct, disk(mode)).is_ok(), "{mode:?}");
    }
}

/// Payloads read from a sealed segment are views of its file's pages. A truncation that makes a
/// sealed segment the last one clears the records an earlier truncation cut after its live
/// ones (while later segments still bound what recovery reads of it) and must not write into
/// a file a reader still holds payloads of, read before the earlier cut: the
/// held bytes would change under the reader (buffered, they did at once; with O_DIRECT once the
/// mapped pages are read again from the device). Such a segment is copied to a new file
/// instead, and the reader keeps the old one's pages.
#[test]
fn held_payloads_never_change_under_a_truncation() {
    for direct_io in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("log");
        let disk = disk(FsyncMode::Thread);
        let options = LogOptions { batches_in_flight_max: 1, ..small_options(direct_io) };
        let (mut log, _) = LogStore::open(&dir, options, disk.clone()).unwrap();
        log.append(&entries(1, 100, 1)).unwrap();
        log.flush().unwrap();
        // Entries 10 to 20 sit in the first segment, sealed since, past the tail cache.
        let held = log.read(LogIndex(10), 4096).unwrap();
        assert!(held.len() >= 5 && held.last().unwrap().index < LogIndex(25), "{}", held.len());
        let copies: Vec<Vec<u8>> = held.iter().map(|e| e.data.to_vec()).collect();
        // A first truncation cuts into the first segment: the records after 12 stay in its
        // bytes, bounded by the new segment 13. (The reader holds payloads of the segment
        // already, so its clearing there copies it: the store maps the copy from then on.)
        let rewritten = log.stats().segments_rewritten;
        log.truncate_after(LogIndex(12)).unwrap();
        log.append(&entries(13, 30, 2)).unwrap();
        log.flush().unwrap();
        // A deeper one makes the first segment the last one for a moment: its bytes after 12,
        // where the held payloads of 13 to 20 are, are cleared first.
        log.truncate_after(LogIndex(11)).unwrap();
        assert!(log.stats().segments_rewritten > rewritten, "{:?}", log.stats());
        log.append(&entries(12, 6, 3)).unwrap();
        log.flush().unwrap();
        let now: Vec<Vec<u8>> = held.iter().map(|e| e.data.to_vec()).collect();
        assert_eq!(now, copies, "a held payload changed (direct_io {direct_io})");
        drop(held);
        drop(log);
        let (log, _) = LogStore::open(&dir, options, disk.clone()).unwrap();
        assert_eq!(read_all(&log), (1..=17).collect::<Vec<_>>());
        assert_eq!(log.term(LogIndex(17)), Some(Term(3)));
    }
}

/// `reset_to` on real files: below the log (compacted), inside it and beyond it, each followed
/// by appends across roll-overs and a reopen that finds the new log.
#[test]
fn reset_on_real_files() {
    for direct_io in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("r");
        let options = LogOptions { batches_in_flight_max: 1, ..small_options(direct_io) };
        let disk = disk(FsyncMode::Ring);
        let (mut log, _) = LogStore::open(&dir, options, disk.clone()).unwrap();
        log.append(&entries(1, 150, 1)).unwrap();
        log.flush().unwrap();
        log.compact_before(LogIndex(100)).unwrap();
        assert!(log.first_index() > LogIndex(21));
        for (index, term) in [(20u64, 2u64), (60, 3), (500, 4)] {
            log.reset_to(LogIndex(index), Term(term)).unwrap();
            assert_eq!(log.first_index(), LogIndex(index + 1));
            assert_eq!(log.last_index(), LogIndex(index));
            log.append(&entries(index + 1, 100, term)).unwrap();
            log.flush().unwrap();
            drop(log);
            let (reopened, recovery) = LogStore::open(&dir, options, disk.clone()).unwrap();
            log = reopened;
            assert_eq!(recovery.first_index, LogIndex(index + 1));
            assert_eq!(recovery.last_index, LogIndex(index + 100));
            assert_eq!(log.term(LogIndex(index)), Some(Term(term)));
            assert_eq!(read_all(&log), (index + 1..=index + 100).collect::<Vec<_>>());
        }
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".base")), "{names:?}");
    }
}

/// `sealed_before` reads the sealed segments' modification times, oldest first: it names the
/// first segment written at or after the cutoff, never the segment being written, and stops
/// at the first segment that is not older (a younger segment keeps every later one).
#[test]
#[allow(clippy::disallowed_methods)] // Sets files' times against the wall clock.
fn sealed_before_goes_by_the_files_modification_times() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t");
    let options = LogOptions { batches_in_flight_max: 1, ..small_options(true) };
    let disk = disk(FsyncMode::Dsync);
    let (mut log, _) = LogStore::open(&dir, options, disk.clone()).unwrap();
    log.append(&entries(1, 150, 1)).unwrap();
    log.flush().unwrap();
    let starts: Vec<LogIndex> = log.segment_extents().map(|(first, _)| first).collect();
    assert!(starts.len() >= 5, "150 entries fill several segments: {starts:?}");
    let now = std::time::SystemTime::now();
    let hour = std::time::Duration::from_secs(3600);
    // Everything was written just now: nothing is older than an hour ago.
    assert_eq!(log.sealed_before(now - hour), starts[0]);
    // Every sealed segment is older than a moment from now: all may go, the active one stays.
    let later = now + hour;
    assert_eq!(log.sealed_before(later), *starts.last().unwrap());
    // The two oldest files were last written two hours ago: they may go, the rest stay.
    let age = |first: LogIndex, when: std::time::SystemTime| {
        let name = dir.join(format!("{:020}.seg", first.get()));
        let file = std::fs::File::options().write(true).open(name).unwrap();
        file.set_modified(when).unwrap();
    };
    age(starts[0], now - 2 * hour);
    age(starts[1], now - 2 * hour);
    assert_eq!(log.sealed_before(now - hour), starts[2]);
    // A younger segment before older ones keeps them: the ages are read oldest first.
    age(starts[3], now - 2 * hour);
    assert_eq!(log.sealed_before(now - hour), starts[2]);
    // Compacting there removes the two aged segments.
    log.compact_before(log.sealed_before(now - hour)).unwrap();
    assert_eq!(log.first_index(), starts[2]);
    assert_eq!(read_all(&log), (starts[2].get()..=150).collect::<Vec<_>>());
}

/// A ring must hold a write and the fdatasync linked after it, which are queued together: a
/// ring of one entry used to be accepted, and then refused every single-write batch under
/// `FsyncMode::Ring` (EBUSY), poisoning a log on a healthy disk at its first batch.
#[test]
fn a_ring_too_small_for_a_write_and_its_fdatasync_is_refused() {
    let small = UringDisk::new(UringOptions { ring_entries: 1, fsync_mode: FsyncMode::Ring });
    let error = small.expect_err("a ring of one entry cannot hold a write and its fdatasync");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    // The smallest ring allowed carries single-write batches, each with its linked fdatasync.
    let options = UringOptions { ring_entries: RING_ENTRIES_MIN, fsync_mode: FsyncMode::Ring };
    let disk = Rc::new(UringDisk::new(options).unwrap());
    let root = tempfile::tempdir().unwrap();
    let log_options = LogOptions { batches_in_flight_max: 4, ..small_options(true) };
    let (mut log, _) = LogStore::open(root.path(), log_options, disk).unwrap();
    for i in 1..=20u64 {
        log.append(&entries(i, 1, 1)).unwrap();
        log.submit().unwrap();
    }
    assert_eq!(log.flush().unwrap(), LogIndex(20));
    assert_eq!(read_all(&log), (1..=20).collect::<Vec<_>>());
}
